"""Dashboard benchmark (prints numbers; not a test):

1. Training speed inside the app with a real browser attached (Chromium watching the live views,
   redrawn every second) vs the headless trainer on the same config. Target: ratio >= 0.9.
   Both runs are read back from their run folders: per-step images/s (the training step alone) and
   end-to-end images/s (training images / the run's wall time, evaluations included).
   The app runs twice: live views refreshed every second (the default) and every 2 s (a page setting).
   Order: headless, app 1 s, app 2 s, headless (the headless runs bracket the app runs against drift).
2. Server-side time to redraw the live views (the page's own "views drawn in N ms" caption: status
   plus the open tab; tabs are lazy): while training in the served app, on the Volume tab (the
   server competes with training for the 2 cores), and per view for a replayed run in-process with
   AppTest (no training running), with the sum over all six views. Target: median <= 100 ms.

    .venv/bin/python bench/bench_app.py [--prune-epochs 2] [--finetune-epochs 1] [--threads 0]
"""
from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bar_core.config import TrainConfig  # noqa: E402
from bar_core.runs import RunFolder, load_run  # noqa: E402
from bar_core.trainer import Trainer  # noqa: E402

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
DRAWN = re.compile(r"views drawn in (\d+) ms")
BROWSER_METRICS: list[dict] = []  # Chromium's own main-thread time while each in-app run trained


def run_speed(run_dir: Path) -> dict:
    run = load_run(run_dir)
    m = run.metrics
    train = m[m["phase"].isin(["prune", "finetune"])]
    batch = int(run.config["batch_size"])
    return {"steps": int(len(m)), "step_images_per_s": float(train["images_per_s"].median()),
            "end_to_end_images_per_s": float(len(m) * batch / run.summary["wall_seconds"]),
            "wall_seconds": float(run.summary["wall_seconds"]), "state": run.summary["state"],
            "volume_ratio": float(run.summary["volume_ratio"])}


def headless(cfg: TrainConfig, root: Path, name: str) -> dict:
    trainer = Trainer(cfg).prepare()
    trainer.run_folder = RunFolder.create(root / name, cfg)
    trainer.run()
    return run_speed(root / name)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def in_app(args, root: Path, name: str, refresh: float) -> tuple[dict, list[float]]:
    from playwright.sync_api import expect, sync_playwright

    port = free_port()
    env = {**os.environ, "BAR_RUNS_DIR": str(root)}
    log = open(root.parent / "server.log", "w")
    # exactly as `make run` serves it (python -m app: the launcher's flags), on a free port
    proc = subprocess.Popen([sys.executable, "-m", "app", "--server.port", str(port)], cwd=ROOT, env=env, stdout=log,
                            stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    redraws: list[float] = []
    try:
        for _ in range(200):
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                time.sleep(0.3)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            page.set_default_timeout(60_000)
            page.goto(url)
            expect(page.get_by_role("button", name="Start")).to_be_enabled(timeout=60_000)
            for label, value in (("Prune", args.prune_epochs), ("Fine-tune", args.finetune_epochs),
                                 ("Threads", args.threads)):
                box = page.get_by_label(label, exact=True)
                box.fill(str(value))
                box.press("Enter")
                page.wait_for_timeout(400)
            page.get_by_label("Run name (blank: automatic)").fill(name)
            page.get_by_label("Run name (blank: automatic)").press("Enter")
            page.wait_for_timeout(400)
            page.get_by_role("button", name="Start").click()
            expect(page.get_by_role("button", name="Stop")).to_be_enabled(timeout=60_000)
            cdp = page.context.new_cdp_session(page)
            cdp.send("Performance.enable")
            before = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            if refresh != 1.0:
                page.get_by_role("combobox", name="Live refresh").click()
                page.get_by_role("option", name=f"every {refresh:g} s").click()
            deadline = time.monotonic() + 900
            last = None
            caption = page.locator('[data-testid="stCaptionContainer"]', has_text=DRAWN).first
            while time.monotonic() < deadline:
                # Sparse polling: each DOM query is work for the browser, which shares the CPU with training.
                text = caption.inner_text(timeout=5000)
                if text != last:
                    redraws.append(float(DRAWN.search(text).group(1)))
                    last = text
                if (root / name / "summary.json").exists() and page.get_by_role("button", name="Start").is_enabled():
                    break
                page.wait_for_timeout(args.poll_ms)
            after = {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}
            BROWSER_METRICS.append({k: after.get(k, 0) - before.get(k, 0) for k in
                                    ("TaskDuration", "ScriptDuration", "LayoutDuration", "RecalcStyleDuration",
                                     "Nodes", "LayoutCount")} | {"redraws": len(redraws)})
            browser.close()
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    return run_speed(root / name), redraws


def replay_redraws(root: Path, n: int = 10) -> dict[str, list[float]]:
    """Server-side redraw time of each view of a replayed run, in-process (AppTest), no training
    running: the page's own caption (status + the open tab), n reruns per tab."""
    os.environ["BAR_RUNS_DIR"] = str(root)
    from streamlit.testing.v1 import AppTest

    from app.views.charts import TABS
    at = AppTest.from_file(str(ROOT / "app" / "main.py"), default_timeout=60)
    at.run()
    times: dict[str, list[float]] = {}
    for tab in TABS:
        at.session_state["view_tabs"] = tab
        at.run()  # the first draw of a tab fills its per-epoch memo; count the steady redraws after it
        for _ in range(n):
            at.run()
            caption = next(c.value for c in at.caption if DRAWN.search(c.value))
            times.setdefault(tab, []).append(float(DRAWN.search(caption).group(1)))
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--prune-epochs", type=int, default=2)
    ap.add_argument("--finetune-epochs", type=int, default=1)
    ap.add_argument("--threads", type=int, default=0, help="torch threads for both runs; 0 = torch's default")
    ap.add_argument("--poll-ms", type=int, default=2000,
                    help="how often the benchmark reads the page (each read costs the browser some CPU)")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit("needs Debian's chromium (/usr/bin/chromium): make test installs it")
    cfg = TrainConfig(prune_epochs=args.prune_epochs, finetune_epochs=args.finetune_epochs,
                      threads=args.threads or None)
    tmp = Path(tempfile.mkdtemp(prefix="bench-app-"))
    root = tmp / "runs"
    print(f"config: quick demo with prune_epochs={args.prune_epochs}, finetune_epochs={args.finetune_epochs}, "
          f"threads={args.threads or 'default'}; cpu cores: {os.cpu_count()}; load average before: "
          f"{os.getloadavg()[0]:.2f}", flush=True)
    h1 = headless(cfg, root, "headless-1")
    print(f"headless 1:            {h1}", flush=True)
    app, live_redraws = in_app(args, root, "app", 1.0)
    print(f"in app, refresh 1 s:   {app}", flush=True)
    app2, _ = in_app(args, root, "app-2s", 2.0)
    print(f"in app, refresh 2 s:   {app2}", flush=True)
    h2 = headless(cfg, root, "headless-2")
    print(f"headless 2:            {h2}", flush=True)
    per_tab = replay_redraws(root)
    med = statistics.median

    def base(key):
        return statistics.mean([h1[key], h2[key]])

    print("\n--- training speed (images/s); target: in-app / headless >= 0.9 ---")
    print(f"{'':28s}{'headless (mean of 2)':>21s}{'app, 1 s refresh':>18s}{'ratio':>7s}{'app, 2 s':>10s}{'ratio':>7s}")
    for key, label in (("step_images_per_s", "per training step (median)"),
                       ("end_to_end_images_per_s", "end to end (incl. evals)")):
        b = base(key)
        print(f"{label:28s}{b:21.0f}{app[key]:18.0f}{app[key] / b:7.2f}{app2[key]:10.0f}{app2[key] / b:7.2f}")
    for label, m in zip(("1 s", "2 s"), BROWSER_METRICS):
        print(f"Chromium main thread while the app trained ({label} refresh, {m['redraws']} redraws): busy "
              f"{m['TaskDuration']:.2f} s (script {m['ScriptDuration']:.2f}, style {m['RecalcStyleDuration']:.2f}, "
              f"layout {m['LayoutDuration']:.2f}): on a 2-core machine the browser takes CPU from training")
    print("\n--- server-side redraw of all views (ms) ---  target: median <= 100")
    if live_redraws:
        print(f"live, while training ({len(live_redraws)} redraws): median {med(live_redraws):.0f}, "
              f"p90 {sorted(live_redraws)[int(0.9 * (len(live_redraws) - 1))]:.0f}, max {max(live_redraws):.0f}")
    print("replay of the app's run, no training (in-process AppTest, median of 10 redraws per view):")
    for tab, ts in per_tab.items():
        print(f"  {tab:20s} {med(ts):6.0f}")
    print(f"  {'all six views (sum)':20s} {sum(med(ts) for ts in per_tab.values()):6.0f}")
    print(f"load average after: {os.getloadavg()[0]:.2f} (the 2 cores are shared with other work: "
          f"numbers move with it)")
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_app.json").write_text(json.dumps({
        "headless": [h1, h2], "app_refresh_1s": app, "app_refresh_2s": app2, "live_redraw_ms": live_redraws,
        "replay_redraw_ms": per_tab}, indent=2))


if __name__ == "__main__":
    main()
