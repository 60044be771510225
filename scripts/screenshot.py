"""Regenerate docs/screenshot.png from the real dashboard.

Serves the app (`python -m bar_app`) on a free localhost port with an empty runs folder, opens it in
Debian's Chromium through Playwright, presses Start on the quick demo (the default preset), waits
until the volume chart has drawn a few hundred training steps (V on its way down to the budget),
takes the screenshot (the window grows in height, if need be, until the whole chart is in it),
presses Stop and shuts the server down. Needs /usr/bin/chromium and the `playwright` package (requirements-test.txt); it
never runs `playwright install` and reaches nothing outside 127.0.0.1.

    .venv/bin/python scripts/screenshot.py [--out docs/screenshot.png] [--steps 300] [--width 1400 --height 900]
"""
from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

from bar_app.__main__ import stop_server, wait_healthy

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]
VOLUME_PLOT = ".st-key-chart_volume .js-plotly-plot"
# el._fullData holds the drawn traces with numpy arrays decoded (el.data may keep them base64-encoded)
VOLUME_POINTS = f"() => document.querySelector({VOLUME_PLOT!r})?._fullData?.[0]?.x?.length || 0"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]




def optimise_png(path: Path) -> None:
    """Re-encode with Pillow when it is installed (smaller file, same pixels); otherwise leave it."""
    try:
        from PIL import Image
    except ImportError:
        return
    with Image.open(path) as im:
        im.load()
        img = im.convert("RGB")
    img.save(path, optimize=True)


def shoot(url: str, out: Path, steps: int, width: int, height: int, timeout: float) -> int:
    from playwright.sync_api import expect, sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": width, "height": height})
            page.set_default_timeout(60_000)
            page.goto(url)
            expect(page.get_by_text("BAR Explorer").first).to_be_visible(timeout=90_000)
            start = page.get_by_role("button", name="Start")
            expect(start).to_be_enabled(timeout=90_000)
            start.click()
            expect(page.get_by_role("button", name="Stop")).to_be_enabled(timeout=90_000)
            page.wait_for_function(f"() => ({VOLUME_POINTS})() >= {steps}", timeout=timeout * 1000)
            # the page scrolls inside Streamlit's own container: grow the window until the chart fits
            box = page.locator(VOLUME_PLOT).first.bounding_box()
            if box and box["y"] + box["height"] + 24 > height:
                page.set_viewport_size({"width": width, "height": int(box["y"] + box["height"] + 24)})
            page.wait_for_timeout(2500)  # a redraw at the new size, with the metrics of the same refresh
            points = page.evaluate(VOLUME_POINTS)
            out.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(out))
            page.get_by_role("button", name="Stop").click()
            expect(start).to_be_enabled(timeout=90_000)
            return points
        finally:
            browser.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "screenshot.png")
    ap.add_argument("--steps", type=int, default=300, help="training steps the volume chart must show first")
    ap.add_argument("--width", type=int, default=1400)
    ap.add_argument("--height", type=int, default=900)
    ap.add_argument("--timeout", type=float, default=180.0, help="seconds to wait for those steps")
    args = ap.parse_args()
    if not Path(CHROMIUM).exists():
        sys.exit(f"needs Debian's chromium at {CHROMIUM} (make test installs it)")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bar-screenshot-") as tmp:
        env = {**os.environ, "BAR_RUNS_DIR": str(Path(tmp) / "runs")}
        log_path = Path(tmp) / "server.log"
        with open(log_path, "w") as log:
            proc = subprocess.Popen([sys.executable, "-m", "bar_app", "--server.port", str(port)], cwd=tmp, env=env,
                                    stdout=log, stderr=subprocess.STDOUT)
            try:
                wait_healthy(url, proc, timeout=120.0)
                points = shoot(url, args.out.resolve(), args.steps, args.width, args.height, args.timeout)
            except BaseException:
                print(log_path.read_text()[-3000:], file=sys.stderr)
                raise
            finally:
                stop_server(proc)
    optimise_png(args.out)
    print(f"{args.out}: {args.out.stat().st_size / 1024:.0f} KiB, volume chart with {points} steps")
    return 0


if __name__ == "__main__":
    sys.exit(main())
