"""A classroom of viewers against the training (prints numbers; not a test).

N = 1, 10, 30 viewers watch the quick demo train in one served app (`python -m bar_app`, as `make
run` serves it). Each viewer is its own Streamlit session, as a student's browser makes one: a
websocket on /_stcore/stream that asks for the page, then does what the page's live panels do — poll
the feed route (GET bar/feed?q=token:version,...) once a period and, when a panel's `watch` changes
(a new phase, a warning, the end), rerun the live fragment (and once a minute, the fragment's safety
rerun). The students' browsers run on their own laptops, so the viewers here draw nothing: what they
cost the training is the server's work for them. The first viewer presses "Start the quick demo".
With --chromium, one more round per N puts a real Chromium page (Playwright) among the viewers.

Reported per N (median over --rounds, each a fresh server and a fresh run): the run's training
images/s (steps × batch ÷ the run's wall time, evaluations included) and its ratio to 1 viewer, the
feed latency (median and p95 over every poll of every viewer), errors (failed polls, websocket
failures, exceptions in the page), and the viewers' own CPU seconds (this process). Target: 30
viewers keep ≥ 0.95× of 1 viewer's images/s, with no error.

    .venv/bin/python bench/bench_viewers.py [--viewers 1 10 30] [--rounds 2] [--chromium]
"""
from __future__ import annotations

import argparse
import asyncio
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_app import CHROMIUM, CHROMIUM_ARGS, free_port, run_speed

ROOT = Path(__file__).resolve().parent.parent
SAFETY_RERUN_S = 60.0  # bar_app/main.py: FEED_SAFETY_RERUN


class Viewer:
    """One Streamlit session that watches the page as a browser would, drawing nothing."""

    def __init__(self, port: int, stats: dict):
        self.port, self.stats = port, stats
        self.feeds: dict[str, dict] = {}   # token -> {"version", "watch", "period"}
        self.fragment: str | None = None   # the live fragment's id
        self.buttons: dict[str, str] = {}  # user key -> widget id
        self.finished = asyncio.Event()
        self.ws = None
        self.http: http.client.HTTPConnection | None = None

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
                    await asyncio.sleep(period)
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


def process_cpu_seconds(pid: int) -> float:
    """The server's CPU seconds so far (user + system, all its threads: the training's too), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def chromium_page(port: int, stop: asyncio.Event) -> None:
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(f"http://127.0.0.1:{port}")
        while not stop.is_set():
            time.sleep(0.5)
        browser.close()


async def one_round(n: int, chromium: bool, timeout: float) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bar-viewers-"))
    port = free_port()
    env = {**os.environ, "BAR_RUNS_DIR": str(root / "runs")}
    log = open(root / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bar_app", "--server.port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    stats = {"latency_ms": [], "errors": [], "reruns": 0, "bytes": 0}
    stop = asyncio.Event()
    cpu0 = time.process_time()
    try:
        wait_healthy(f"http://127.0.0.1:{port}", proc, timeout=120)
        first = Viewer(port, stats)
        tasks = [asyncio.create_task(first.watch(stop, start=True))]
        deadline = time.monotonic() + 120
        while not list((root / "runs").glob("*/config.json")) and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
        tasks += [asyncio.create_task(Viewer(port, stats).watch(stop)) for _ in range(n - 1)]
        if chromium:
            tasks.append(asyncio.create_task(asyncio.to_thread(chromium_page, port, stop)))
        deadline = time.monotonic() + timeout
        while not list((root / "runs").glob("*/summary.json")) and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
        server_cpu_s = process_cpu_seconds(proc.pid)
        stop.set()
        await asyncio.wait_for(asyncio.gather(*tasks), 60)
    finally:
        stop.set()
        stop_server(proc)
        log.close()
    runs = list((root / "runs").glob("*/summary.json"))
    if not runs:
        raise SystemExit(f"N={n}: the run did not finish within {timeout:.0f} s (server log: {root / 'server.log'})")
    speed = run_speed(runs[0].parent)
    lat = sorted(stats["latency_ms"])
    return {"n": n, "chromium": chromium, "images_per_s": speed["end_to_end_images_per_s"],
            "step_images_per_s": speed["step_images_per_s"], "wall_s": speed["wall_seconds"],
            "polls": len(lat), "latency_median_ms": statistics.median(lat) if lat else float("nan"),
            "latency_p95_ms": lat[int(0.95 * (len(lat) - 1))] if lat else float("nan"),
            "errors": stats["errors"], "reruns": stats["reruns"], "viewer_cpu_s": time.process_time() - cpu0,
            "server_cpu_s": server_cpu_s, "kb_per_poll": stats["bytes"] / 1024 / max(len(lat), 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--viewers", nargs="+", type=int, default=[1, 10, 30])
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--chromium", action="store_true", help="also a round per N with a real Chromium page among them")
    p.add_argument("--timeout", type=float, default=600)
    args = p.parse_args()
    results = {}
    for r in range(args.rounds):  # N interleaved within each round: drift hits every N alike
        for n in args.viewers:
            row = asyncio.run(one_round(n, False, args.timeout))
            results.setdefault((n, False), []).append(row)
            print(f"round {r + 1}, {n:>2} viewer(s): {row['images_per_s']:.0f} images/s end to end, feed "
                  f"{row['latency_median_ms']:.1f} / {row['latency_p95_ms']:.1f} ms (median / p95, {row['polls']} polls, {row['kb_per_poll']:.0f} kB each), "
                  f"{len(row['errors'])} errors, {row['reruns']} reruns, viewers' CPU {row['viewer_cpu_s']:.1f} s, "
                  f"server CPU {row['server_cpu_s']:.1f} s, per step {row['step_images_per_s']:.0f} images/s",
                  flush=True)
            for e in row["errors"][:3]:
                print("   ", e)
    if args.chromium:
        for n in args.viewers:
            row = asyncio.run(one_round(n, True, args.timeout))
            results.setdefault((n, True), []).append(row)
            print(f"with a Chromium page, {n:>2} viewer(s): {row['images_per_s']:.0f} images/s", flush=True)
    base = statistics.median(r["images_per_s"] for r in results[(args.viewers[0], False)])
    print(f"\n| viewers | images/s (median) | × {args.viewers[0]} viewer | feed median ms | feed p95 ms | errors |")
    print("|---|---|---|---|---|---|")
    for (n, chromium), rows in results.items():
        ips = statistics.median(r["images_per_s"] for r in rows)
        lat = sorted(x for r in rows for x in ([r["latency_median_ms"]]))
        p95 = max(r["latency_p95_ms"] for r in rows)
        print(f"| {n}{' + Chromium page' if chromium else ''} | {ips:.0f} | {ips / base:.2f} | {statistics.median(lat):.1f} | "
              f"{p95:.1f} | {sum(len(r['errors']) for r in rows)} |")


if __name__ == "__main__":
    main()
