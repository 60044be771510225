"""A classroom of viewers against the training (prints numbers; not a test).

N = 1, 10, 30 viewers watch the quick demo train in one served app (`python -m bar_app`, as `make
run` serves it). Each viewer is its own Streamlit session, as a student's browser makes one: a
websocket on /_stcore/stream that asks for the page, then does what the page's live panels do: poll
the feed route (GET bar/feed?q=token:version,...) at each of the server's ticks (the clock in its
answers) and, when a panel's `watch` changes (a new phase, a warning, the end), rerun the live
fragment (and once a minute, the fragment's safety rerun). The students' browsers run on their own
laptops, so the viewers here draw nothing: what they cost the training is the server's work for them
(and this process's, on the same machine). The first viewer presses "Start the quick demo". With
--chromium, one more round per N puts a real Chromium page (Playwright) among the viewers.

Reported per N (each round a fresh server and a fresh run, the Ns interleaved): the run's training
images/s (steps × batch ÷ the run's wall time, evaluations included), its ratio to the 1-viewer run
of the same round, the server's CPU seconds outside the training's threads, the feed latency
(median and p95 over every poll of every viewer), errors (failed polls, websocket failures,
exceptions in the page). Target: 30 viewers keep ≥ 0.95× of 1 viewer's images/s, with no error.

Runs of one setting differ by up to 20 % on a shared VM, more than the viewers cost. With
--alternate SECONDS all viewers but the first poll in turns of SECONDS and rest in the others, so that
one run gives the training's per-step images/s with and without them, side by side.

    .venv/bin/python bench/bench_viewers.py [--viewers 1 10 30] [--rounds 2] [--chromium]
    .venv/bin/python bench/bench_viewers.py --viewers 30 --rounds 3 --alternate 8 [--own-moments]
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import http.client
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg

from bar_app.__main__ import stop_server, wait_healthy
from bar_app.live_feed import CLOCK_HEADER
from bar_core.records import METRIC_COLUMNS

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app import CHROMIUM, CHROMIUM_ARGS, free_port, run_speed

ROOT = Path(__file__).resolve().parent.parent
TIME_COLUMN = METRIC_COLUMNS.index("time")  # in metrics.csv
SAFETY_RERUN_S = 60.0
OWN_MOMENTS = False  # --own-moments  # bar_app/main.py: FEED_SAFETY_RERUN


class Viewer:
    """One Streamlit session that watches the page as a browser would, drawing nothing."""

    def __init__(self, port: int, stats: dict, gate: asyncio.Event | None = None):
        self.port, self.stats = port, stats
        self.gate = gate  # --alternate: this viewer polls only while the gate is open
        self.feeds: dict[str, dict] = {}   # token -> {"version", "watch", "period"}
        self.fragment: str | None = None   # the live fragment's id
        self.buttons: dict[str, str] = {}  # user key -> widget id
        self.finished = asyncio.Event()
        self.ws = None
        self.http: http.client.HTTPConnection | None = None
        self.clock_offset: float | None = None  # the server's clock minus this one (perf_counter)

    async def rerun(self, fragment: str | None = None, trigger: str | None = None, auto: bool = False) -> None:
        msg = BackMsg()
        msg.rerun_script.query_string = ""
        msg.rerun_script.page_script_hash = ""
        if fragment:
            msg.rerun_script.fragment_id = fragment
            msg.rerun_script.is_auto_rerun = auto
        if trigger:
            msg.rerun_script.widget_states.widgets.add(id=trigger, trigger_value=True)
        self.finished.clear()
        await self.ws.send(msg.SerializeToString())

    def _read(self, raw: bytes) -> None:
        f = ForwardMsg()
        f.ParseFromString(raw)
        kind = f.WhichOneof("type")
        if kind == "script_finished":
            self.finished.set()
        if kind != "delta" or f.delta.WhichOneof("type") != "new_element":
            return
        el = f.delta.new_element
        sub = el.WhichOneof("type")
        if sub == "exception":
            self.stats["errors"].append(f"page exception: {el.exception.message[:120]}")
        elif sub == "button":
            self.buttons[el.button.id.rsplit("-", 1)[-1]] = el.button.id
        elif sub == "bidi_component" and el.bidi_component.component_name == "bar_live_plot":
            data = json.loads(el.bidi_component.json or "{}")
            feed = data.get("feed")
            if feed:
                self.feeds[feed["token"]] = {"version": feed.get("version", ""), "watch": data.get("watch"),
                                             "period": float(feed.get("period", 1.0))}
                if f.delta.fragment_id:
                    self.fragment = f.delta.fragment_id

    async def _listen(self) -> None:
        async for raw in self.ws:
            self._read(raw)

    def until_tick(self, period: float) -> float:
        """Seconds until the server's next tick, as the page's poller (bar_app/assets/live_plot.js) waits
        (with --own-moments, a period: each viewer polls at its own moment)."""
        if self.clock_offset is None or OWN_MOMENTS:
            return period
        wait = period - (time.perf_counter() + self.clock_offset) % period
        return wait + period if wait < 0.25 * period else wait

    def _poll_once(self) -> dict:
        """One poll over the viewer's kept-alive connection, as a browser's fetch() makes it."""
        q = ",".join(f"{t}:{f['version']}" for t, f in list(self.feeds.items())[:16])
        t0 = time.perf_counter()
        for attempt in (0, 1):  # the server may close an idle connection: open a new one once
            if self.http is None:
                self.http = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
            try:
                self.http.request("GET", f"/bar/feed?q={q}")
                r = self.http.getresponse()
                raw = r.read()
                break
            except (OSError, http.client.HTTPException):
                self.http.close()
                self.http = None
                if attempt:
                    raise
        clock = r.getheader(CLOCK_HEADER)
        if clock:  # the server read its clock about halfway through the round trip
            self.clock_offset = float(clock) - (t0 + time.perf_counter()) / 2
        if r.status != 200:
            raise ValueError(f"HTTP {r.status}")
        self.stats["latency_ms"].append(1000 * (time.perf_counter() - t0))
        self.stats["bytes"] += len(raw)
        return json.loads(raw)

    async def watch(self, stop: asyncio.Event, start: bool = False) -> None:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{self.port}/_stcore/stream", subprotocols=["streamlit"],
                                          max_size=2 ** 26, open_timeout=60) as ws:
                self.ws = ws
                listener = asyncio.create_task(self._listen())
                await self.rerun()
                await asyncio.wait_for(self.finished.wait(), 120)
                if start:
                    await self.rerun(trigger=self.buttons["start_quick_demo"])
                    await asyncio.wait_for(self.finished.wait(), 120)
                last_safety = time.monotonic()
                while not stop.is_set():
                    period = min((f["period"] for f in self.feeds.values()), default=1.0)
                    await asyncio.sleep(self.until_tick(period))
                    if self.gate is not None and not self.gate.is_set():
                        continue
                    if not self.feeds:
                        if time.monotonic() - last_safety > 2.0:  # no live panel yet: look again
                            await self.rerun()
                            last_safety = time.monotonic()
                        continue
                    try:
                        answer = await asyncio.to_thread(self._poll_once)
                    except (OSError, http.client.HTTPException, ValueError) as exc:
                        self.stats["errors"].append(f"feed poll: {exc}")
                        continue
                    rerun = False
                    for token, panel in answer.items():
                        feed = self.feeds.get(token)
                        if feed is None:
                            continue
                        if panel is False:  # withdrawn (the page republished): ask for the page again
                            rerun = True
                        elif isinstance(panel, dict):
                            if "error" in panel:
                                self.stats["errors"].append(f"feed build: {panel['error']}")
                            feed["version"] = panel.get("version", feed["version"])
                            if "watch" in panel and panel["watch"] != feed["watch"]:
                                rerun = True
                    now = time.monotonic()
                    if rerun or now - last_safety > SAFETY_RERUN_S:
                        self.feeds.clear()
                        await self.rerun(self.fragment, auto=not rerun)
                        self.stats["reruns"] += 1
                        last_safety = now
                listener.cancel()
        except Exception as exc:  # noqa: BLE001 - a viewer that fails is an error of the round
            self.stats["errors"].append(f"viewer: {type(exc).__name__}: {exc}")


def _cpu_seconds(stat_file: Path) -> float:
    fields = stat_file.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """The server's CPU seconds so far (user + system, all its threads: the training's too), from /proc."""
    return _cpu_seconds(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> dict[int, float]:
    """CPU seconds so far of each of the server's threads, by thread id (threads that ended are left out)."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out[int(task.name)] = _cpu_seconds(task / "stat")
        except (OSError, ValueError):
            pass
    return out


def cpu_outside_training(before: dict[int, float], after: dict[int, float], wall: float) -> float:
    """CPU seconds the server spent on anything but the training over `wall` seconds: every thread but
    the training's, which are those busy for at least half of the time (torch's threads spin while they
    wait for each other; the server's threads for the page, the feeds and the sessions never come near)."""
    deltas = [after[t] - before.get(t, 0.0) for t in after]
    return sum(d for d in deltas if d < 0.5 * wall)


def chromium_page(port: int, stop: asyncio.Event) -> None:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}")
        while not stop.is_set():
            time.sleep(0.5)
        browser.close()


def one_round(n: int, chromium: bool, timeout: float, alternate: float = 0.0) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bar-viewers-"))
    port = free_port()
    env = {**os.environ, "BAR_RUNS_DIR": str(root / "runs")}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bar_app", "--server.port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    stats = {"latency_ms": [], "errors": [], "reruns": 0, "bytes": 0}
    cpu0 = time.process_time()

    gate = asyncio.Event() if alternate else None
    windows: list[tuple[float, bool]] = []  # (perf_counter, whether the extra viewers poll from then on)
    origin = [float("inf")]  # the trainer's perf_counter at its time 0, from above (metrics.csv's `time`)

    async def toggle(stop: asyncio.Event) -> None:
        while not stop.is_set():
            gate.clear() if gate.is_set() else gate.set()
            windows.append((time.perf_counter(), gate.is_set()))
            await asyncio.sleep(alternate)

    async def find_origin(stop: asyncio.Event) -> None:
        """The trainer's clock is perf_counter too (CLOCK_MONOTONIC, one per machine): each row read
        bounds its origin from above, and a read right after a flush comes within a step of it."""
        while not stop.is_set():
            for csv in (root / "runs").glob("*/metrics.csv"):
                with open(csv, "rb") as f:
                    f.seek(max(0, csv.stat().st_size - 4096))
                    rows = f.read().decode(errors="replace").splitlines()
                try:
                    origin[0] = min(origin[0], time.perf_counter() - float(rows[-1].split(",")[TIME_COLUMN]))
                except (IndexError, ValueError):
                    pass
            await asyncio.sleep(0.1)

    async def watch() -> tuple[float, float]:
        stop = asyncio.Event()
        tasks = []
        try:
            first = Viewer(port, stats)
            tasks.append(asyncio.create_task(first.watch(stop, start=True)))
            deadline = time.monotonic() + 120
            while not list((root / "runs").glob("*/config.json")) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
            threads0, t0 = thread_cpu_seconds(proc.pid), time.monotonic()
            tasks += [asyncio.create_task(Viewer(port, stats, gate).watch(stop)) for _ in range(n - 1)]
            if alternate:
                tasks += [asyncio.create_task(toggle(stop)), asyncio.create_task(find_origin(stop))]
            if chromium:
                tasks.append(asyncio.create_task(asyncio.to_thread(chromium_page, port, stop)))
            deadline = time.monotonic() + timeout
            while not list((root / "runs").glob("*/summary.json")) and time.monotonic() < deadline:
                await asyncio.sleep(0.5)
            server_cpu_s = process_cpu_seconds(proc.pid)
            outside_s = cpu_outside_training(threads0, thread_cpu_seconds(proc.pid), time.monotonic() - t0)
            stop.set()
            await asyncio.wait_for(asyncio.gather(*tasks), 60)
            return server_cpu_s, outside_s
        finally:
            stop.set()

    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
        server_cpu_s, outside_s = asyncio.run(watch())
    finally:
        stop_server(proc)
        log.close()
    runs = list((root / "runs").glob("*/summary.json"))
    if not runs:
        raise SystemExit(f"N={n}: the run did not finish within {timeout:.0f} s (server log: {root / 'server.log'})")
    speed = run_speed(runs[0].parent)
    ab = alternating_speed(runs[0].parent, windows, origin[0]) if alternate else None
    lat = sorted(stats["latency_ms"])
    return {"n": n, "chromium": chromium, "images_per_s": speed["end_to_end_images_per_s"],
            "step_images_per_s": speed["step_images_per_s"], "wall_s": speed["wall_seconds"],
            "polls": len(lat), "latency_median_ms": statistics.median(lat) if lat else float("nan"),
            "latency_p95_ms": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
            "errors": stats["errors"], "reruns": stats["reruns"], "viewer_cpu_s": time.process_time() - cpu0,
            "server_cpu_s": server_cpu_s, "server_outside_training_s": outside_s,
            "kb_per_poll": stats["bytes"] / 1024 / max(len(lat), 1), "alternating": ab}


def alternating_speed(run_dir: Path, windows: list[tuple[float, bool]], origin: float, settle: float = 1.5) -> dict:
    """--alternate: the training steps' images/s while all viewers poll and while only the first one
    does, in one run (the machine's drift between runs cancels). Steps within `settle` s of a switch
    are left out (the viewers' reruns and polls of a switch land there)."""
    from bar_core.runs import load_run

    m = load_run(run_dir).metrics
    m = m[m["phase"].isin(["prune", "finetune"])]
    switches = [t for t, _ in windows]
    on, off = [], []
    for t, ips in zip(m["time"] + origin, m["images_per_s"]):
        i = bisect.bisect_right(switches, t) - 1
        if i < 0 or t - switches[i] < settle or (i + 1 < len(switches) and switches[i + 1] - t < 0.2):
            continue
        (on if windows[i][1] else off).append(float(ips))
    return {"on": statistics.median(on) if on else float("nan"), "off": statistics.median(off) if off else float("nan"),
            "steps_on": len(on), "steps_off": len(off)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", nargs="+", type=int, default=[1, 10, 30])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chromium", action="store_true", help="also a round per N with a real Chromium page among them")
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--alternate", type=float, default=0.0, metavar="SECONDS",
                   help="in each run, all viewers but the first poll in turns of SECONDS and rest in the others: "
                        "the training's speed with and without them from one run (no drift between runs)")
    p.add_argument("--own-moments", action="store_true",
                   help="viewers poll once a period from their own start, not at the server's ticks (what the "
                        "ticks save)")
    args = p.parse_args()
    global OWN_MOMENTS
    OWN_MOMENTS = args.own_moments
    results = {}
    for r in range(args.rounds):  # N interleaved within each round: drift hits every N alike
        for n in args.viewers:
            row = one_round(n, False, args.timeout, args.alternate)
            results.setdefault((n, False), []).append(row)
            print(f"round {r + 1}, {n:>2} viewer(s): {row['images_per_s']:.0f} images/s end to end, feed "
                  f"{row['latency_median_ms']:.1f} / {row['latency_p95_ms']:.1f} ms (median / p95, {row['polls']} polls, {row['kb_per_poll']:.0f} kB each), "
                  f"{len(row['errors'])} errors, {row['reruns']} reruns, viewers' CPU {row['viewer_cpu_s']:.1f} s, "
                  f"server CPU {row['server_cpu_s']:.1f} s ({row['server_outside_training_s']:.2f} s outside training), per step {row['step_images_per_s']:.0f} images/s",
                  flush=True)
            ab = row["alternating"]
            if ab and n > 1:
                print(f"    in this run, per step: {ab['on']:.0f} images/s while {n} viewers poll ({ab['steps_on']} steps), "
                      f"{ab['off']:.0f} while 1 does ({ab['steps_off']} steps): {ab['on'] / ab['off']:.3f}x", flush=True)
            for e in row["errors"][:3]:
                print("   ", e)
    if args.chromium:
        for n in args.viewers:
            row = one_round(n, True, args.timeout)
            results.setdefault((n, True), []).append(row)
            print(f"with a Chromium page, {n:>2} viewer(s): {row['images_per_s']:.0f} images/s", flush=True)
    first = args.viewers[0]
    print(f"\n| viewers | images/s (median) | × {first} viewer (median, range over rounds) | server CPU outside training, s "
          "(median) | feed median ms | feed p95 ms | errors |")
    print("|---|---|---|---|---|---|---|")
    for (n, chromium), rows in results.items():
        # each round's ratio to the first N of the same round: the machine's drift between rounds cancels
        ratios = [r["images_per_s"] / b["images_per_s"] for r, b in zip(rows, results[(first, False)])]
        ips = statistics.median(r["images_per_s"] for r in rows)
        outside = statistics.median(r["server_outside_training_s"] for r in rows)
        lat = statistics.median(r["latency_median_ms"] for r in rows)
        p95 = max(r["latency_p95_ms"] for r in rows)
        print(f"| {n}{' + Chromium page' if chromium else ''} | {ips:.0f} | {statistics.median(ratios):.2f} "
              f"({min(ratios):.2f}-{max(ratios):.2f}) | {outside:.2f} | {lat:.1f} | {p95:.1f} | "
              f"{sum(len(r['errors']) for r in rows)} |")
    if args.alternate:
        print(f"\nOne run each, all viewers polling ÷ only the first polling (turns of {args.alternate:g} s), per step:")
        for (n, _), rows in results.items():
            ratios = [r["alternating"]["on"] / r["alternating"]["off"] for r in rows if n > 1 and r["alternating"]]
            if ratios:
                print(f"  {n} viewers: {statistics.median(ratios):.3f} (rounds: {', '.join(f'{x:.3f}' for x in ratios)})")

if __name__ == "__main__":
    main()
