"""The real app in Debian's Chromium: `streamlit run` on a free port, driven by Playwright.

Starts the quick demo (shipped Fashion-MNIST subset and teacher) with fewer epochs picked in the form,
waits until V reaches the budget, checks that every view drew real data, saves screenshots to
tests/artifacts/, stops the job from the page and replays its run folder, switching between all views
while training, stopped and replaying. Any uncaught error in the page fails the test.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bar_app.__main__ import FLAGS as SERVER_FLAGS
from bar_app.__main__ import PAGE as SERVED_PAGE
from bar_app.__main__ import stop_server, wait_healthy
from bar_app.views.registry import LABELS as TABS
from tests.helpers import free_port

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]

CHART_TABS = {"chart_volume": "Volume & budget", "chart_barrier": "Barrier", "chart_hist": "Gates",
              "chart_heatmap": "Gates", "chart_icdf": "Hard Concrete", "chart_conn": "Connectivity",
              "chart_kept": "Connectivity", "chart_training": "Accuracy & speed",
              "chart_sandbox": "Barrier sandbox", "chart_replay": "Replay"}




@pytest.fixture
def server(tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    if not (ROOT / "bar_core" / "assets" / "teachers" / "resnet8-fashion-mnist-subset.pt").is_file():
        pytest.skip("the shipped teacher is missing")
    port = free_port()
    env = {**os.environ, "BAR_RUNS_DIR": str(tmp_path / "runs")}
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(SERVED_PAGE), *SERVER_FLAGS,
                             "--server.port", str(port)], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc)
        yield url, tmp_path / "runs"
    finally:
        stop_server(proc, timeout=15)
        log.close()


@pytest.fixture
def page():
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        # tall enough that a whole tab (Streamlit scrolls inside the page, not the window) is on screen
        pg = browser.new_page(viewport={"width": 1500, "height": 2300})
        pg.set_default_timeout(30_000)
        external = []
        pg.on("request", lambda r: None if r.url.startswith(("http://127.0.0.1", "ws://127.0.0.1", "data:", "blob:"))
              else external.append(r.url))
        pg.external_requests = external
        # Uncaught exceptions and rejections, and errors the page's code logs; not Chromium's own
        # "Failed to load resource" lines, which it writes for the requests this test blocks on purpose.
        problems = []
        pg.on("pageerror", lambda e: problems.append(f"uncaught: {e}"))
        pg.on("console", lambda m: problems.append(f"console.error: {m.text} at {m.location}")
              if m.type == "error" and not m.text.startswith("Failed to load resource") else None)
        pg.problems = problems
        yield pg
        browser.close()


def metric_value(pg, label: str) -> str:
    """A metric's value: a live panel's (bar_app/live_plot.py) or st.metric's."""
    live = pg.locator('[data-testid="barLiveMetric"]').filter(has_text=label)
    if live.count():
        return live.first.locator(".bar-live-metric-value").inner_text()
    m = pg.locator('[data-testid="stMetric"]').filter(has_text=label).first
    return m.locator('[data-testid="stMetricValue"]').inner_text()


STATUS = ".st-key-live_status"  # the progress bar's live panel


def set_number(pg, label: str, value) -> None:
    box = pg.get_by_label(label, exact=True)
    box.fill(str(value))
    box.press("Enter")
    pg.wait_for_timeout(300)


def no_page_errors(pg) -> None:
    assert not pg.problems, "errors in the page:\n" + "\n".join(pg.problems[:10])


VOLUME_PLOT = ".st-key-chart_volume .js-plotly-plot"
# el.data keeps numpy arrays as {dtype, bdata}; el._fullData holds them decoded (typed arrays).
PLOT_POINTS = """() => Array.from(document.querySelectorAll('.js-plotly-plot'))
    .filter(el => el.offsetParent !== null && el.offsetWidth > 0)
    .map(el => { const d = (el._fullData || el.data || [])[0] || {}; const v = d.x || d.z || [];
                 return [el.closest('[class*="st-key-"]')?.className.match(/st-key-(\\S+)/)?.[1] || '',
                         v.length || 0, el.offsetWidth, el.offsetHeight]; })"""


# Every modebar button of the page's charts, as "title|attr"; plotly.js adds "Share chart..." (an upload) by default.
MODEBAR = """() => Array.from(document.querySelectorAll('.js-plotly-plot .modebar-btn'))
    .map(b => (b.getAttribute('data-title') || '') + '|' + (b.getAttribute('data-attr') || ''))"""


def no_outbound_buttons(pg) -> None:
    buttons = pg.evaluate(MODEBAR)
    assert buttons, "the charts have a modebar"
    outbound = [b for b in buttons if any(w in b.lower() for w in ("share", "cloud", "chart studio", "senddata"))]
    assert not outbound, f"a chart offers to send itself outside localhost: {outbound[:3]}"


def show_view(pg, tab: str) -> dict[str, int]:
    """Pick a view and wait until its charts are drawn with data and a real size; their point counts."""
    pg.get_by_role("radio", name=tab, exact=True).click()  # the view picker
    want = [k for k, t in CHART_TABS.items() if t == tab]
    waiting = pg.get_by_text("The replay plays a run that has ended")  # the Replay view while a job trains
    end = time.monotonic() + 30
    while True:  # lazy views: the server draws a view when it is chosen
        points = {key: (n, w, h) for key, n, w, h in pg.evaluate(PLOT_POINTS)}
        if all(points.get(k, (0, 0, 0))[0] > 0 for k in want) or time.monotonic() > end:
            break
        if tab == "Replay" and waiting.is_visible():
            return {}
        pg.wait_for_timeout(300)
    for key in want:
        n, w, h = points.get(key, (0, 0, 0))
        assert n > 0 and w > 100 and h > 100, f"tab {tab!r}: chart {key} is empty ({n} points, {w}×{h})"
    no_outbound_buttons(pg)
    return {key: points[key][0] for key in want}


def switch_views(pg, rounds: int = 2) -> None:
    """Every view after every other, `rounds` times: each switch unmounts the charts of the view left."""
    for _ in range(rounds):
        for tab in [*TABS[1:], TABS[0]]:
            show_view(pg, tab)
    no_page_errors(pg)


def test_quick_demo_in_a_real_browser(server, page):
    from playwright.sync_api import expect

    url, runs = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    # plotly.js fails to load at first: the idle page's chart (the planned schedule) says so, and the
    # next figure (another prune-epoch count below) loads it again and draws
    plotly_js = "**/app/static/plotly.min.js"
    page.route(plotly_js, lambda route: route.abort())
    # Streamlit's messages to the page (each rerun of the live fragment is a burst of them)
    frames: list[float] = []
    page.on("websocket", lambda ws: ws.on("framereceived", lambda _: frames.append(time.monotonic())))
    # the server's clock on each feed answer: the page polls at its ticks (whole seconds at a 1 s refresh)
    feed_clocks: list[float] = []
    page.on("response", lambda r: "/bar/feed?" in r.url and r.headers.get("x-bar-clock")
            and feed_clocks.append(float(r.headers["x-bar-clock"])))
    page.goto(url)
    expect(page.get_by_text("BAR Explorer").first).to_be_visible(timeout=60_000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled(timeout=60_000)
    schedule_error = page.locator(".st-key-chart_schedule .bar-live-error")
    expect(schedule_error).to_contain_text("could not load", timeout=30_000)
    page.unroute(plotly_js)
    # the quick demo preset with 2 prune epochs so the test stays short; fine-tuning long enough
    # that the job is surely still running when the test presses Stop (it never runs to the end)
    set_number(page, "Prune", 2)
    expect(schedule_error).to_have_text("", timeout=30_000)
    page.wait_for_function("() => document.querySelector('.st-key-chart_schedule .js-plotly-plot')"
                           "?._fullData?.[0]?.x?.length > 0", timeout=30_000)
    set_number(page, "Fine-tune", 30)
    page.get_by_role("button", name="Start", exact=True).click()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled(timeout=60_000)
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_disabled()
    # V reaches the budget (B = 0.25) during the prune phase
    deadline = time.monotonic() + 150
    ratio = None
    while time.monotonic() < deadline:
        try:
            ratio = float(metric_value(page, "V / V0 now"))
        except Exception:  # noqa: BLE001 - the metric appears with the first steps
            ratio = None
        if ratio is not None and ratio <= 0.25:
            break
        page.wait_for_timeout(1000)
    assert ratio is not None and ratio <= 0.25, f"V/V0 = {ratio} did not reach the budget in time"
    page.wait_for_timeout(1500)
    progress = page.locator(STATUS).inner_text()
    assert re.search(r"phase: (prune|finetune) · epoch \d+/\d+ · step \d+/\d+", progress), progress
    # the live chart is updated in place (Plotly.react on the same element, bar_app/live_plot.py), not rebuilt at
    # every refresh: cheaper for the browser, and the reader's zoom survives
    before = page.evaluate(f"() => {{ window.__volume = document.querySelector({VOLUME_PLOT!r}); "
                           f"return window.__volume._fullData[0].x.length; }}")
    page.wait_for_timeout(2500)
    same, after = page.evaluate(f"() => [document.querySelector({VOLUME_PLOT!r}) === window.__volume, "
                                f"window.__volume._fullData[0].x.length]")
    assert same and after > before, (same, before, after)
    # ... and the live views fetch their updates from the server's feed (bar_app/live_feed.py) without a
    # Streamlit rerun, which would re-render the whole page: over 3 s the chart, its metrics and the
    # progress bar move, while Streamlit sends the page (next to) nothing
    step = r"step (\d+)/"
    text_before, ws_before = page.locator(STATUS).inner_text(), len(frames)
    before = page.evaluate(f"() => document.querySelector({VOLUME_PLOT!r})._fullData[0].x.length")
    page.wait_for_timeout(3000)
    text_after, ws_after = page.locator(STATUS).inner_text(), len(frames)
    assert int(re.search(step, text_after).group(1)) > int(re.search(step, text_before).group(1))
    assert page.evaluate(f"() => document.querySelector({VOLUME_PLOT!r})._fullData[0].x.length") > before
    assert ws_after - ws_before <= 2, f"{ws_after - ws_before} websocket messages in 3 s: the live views reran"
    assert "live update drawn in" in page.locator(".st-key-chart_volume .bar-live-caption").inner_text()
    # ... at the server's ticks: a classroom's pages poll together and share one build and one wake-up
    # of the server (bar_app/live_feed.py); polls at their own moments would land anywhere in the second
    offsets = sorted(abs(c - round(c)) for c in feed_clocks[1:])
    assert len(offsets) >= 3 and offsets[len(offsets) // 2] < 0.1 and offsets[int(0.75 * len(offsets))] < 0.2, offsets
    # a page in a background browser tab does not draw (the training gets the CPU) and catches up when
    # shown again (the browser's visibility state, set by hand: headless Chromium has no other tab in front)
    points = f"() => document.querySelector({VOLUME_PLOT!r})._fullData[0].x.length"
    page.evaluate("() => Object.defineProperty(document, 'hidden', {value: true, configurable: true})")
    page.wait_for_timeout(300)  # a draw already under way ends
    hidden_at = page.evaluate(points)
    page.wait_for_timeout(2500)
    assert page.evaluate(points) == hidden_at, "drawn while hidden"
    page.evaluate("() => { Object.defineProperty(document, 'hidden', {value: false, configurable: true}); "
                  "document.dispatchEvent(new Event('visibilitychange')); }")
    page.wait_for_function(f"() => document.querySelector({VOLUME_PLOT!r})._fullData[0].x.length > {hidden_at}",
                           timeout=5_000)
    # a feed request that hangs (a laptop waking up, a stalled proxy) times out, says so, and the
    # updates come back by themselves
    hanging = re.compile(r".*/bar/feed\?q=.*")
    page.route(hanging, lambda route: None)  # never answered
    feed_error = page.locator(".st-key-chart_volume .bar-live-feed-error")
    expect(feed_error).to_contain_text("Live update failed (retrying)", timeout=20_000)
    stalled = page.evaluate(points)
    page.unroute(hanging)
    page.wait_for_function(f"() => document.querySelector({VOLUME_PLOT!r})._fullData[0].x.length > {stalled}",
                           timeout=10_000)
    expect(feed_error).to_have_text("", timeout=5_000)
    # a reader's zoom survives the live updates: drag a box on the chart, wait for two refreshes
    area = page.locator(f"{VOLUME_PLOT} .nsewdrag").first.bounding_box()
    page.mouse.move(area["x"] + 40, area["y"] + 40)
    page.mouse.down()
    page.mouse.move(area["x"] + 240, area["y"] + 160, steps=5)
    page.mouse.up()
    x_range = f"() => document.querySelector({VOLUME_PLOT!r})._fullLayout.xaxis.range"
    zoomed = page.evaluate(x_range)
    page.wait_for_timeout(2500)
    assert page.evaluate(x_range) == zoomed and zoomed[1] < page.evaluate(
        f"() => Math.max(...document.querySelector({VOLUME_PLOT!r})._fullData[0].x)"), zoomed
    page.locator(f"{VOLUME_PLOT} .nsewdrag").first.dblclick()  # back to the whole run
    # the bar jumps: an animated bar keeps the browser repainting, which a 2-core laptop's training pays for
    durations = page.evaluate("""() => [...document.querySelectorAll('.st-key-live_status *')]
        .map(e => getComputedStyle(e).transitionDuration)""")
    assert durations and all(set(d.split(", ")) == {"0s"} for d in durations), durations
    no_page_errors(page)
    seen = {}
    for i, tab in enumerate(TABS):
        seen.update(show_view(page, tab))
        page.wait_for_timeout(500)
        page.screenshot(path=str(ARTIFACTS / f"browser-{i + 1}-{tab.split()[0].lower()}.png"))
    assert set(seen) == set(CHART_TABS) - {"chart_replay"}, "every chart drew (the replay waits for the run to end)"
    switch_views(page)  # while training
    # Stop from the page: the job ends, the checkpoint is kept, Start comes back
    page.get_by_role("radio", name=TABS[0], exact=True).click()
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled(timeout=60_000)
    expect(page.locator(STATUS)).to_contain_text("stopped", timeout=30_000)
    # the stopped job's panels are whole again: no live caption or error left over from the feed
    assert page.locator(".st-key-chart_volume .bar-live-caption").inner_text() == ""
    assert all(e.inner_text() == "" for e in page.locator(".bar-live-feed-error").all())
    # the form comes back with what was typed before Start (it was hidden while the job ran)
    assert page.get_by_label("Prune", exact=True).input_value() == "2"
    assert page.get_by_label("Fine-tune", exact=True).input_value() == "30"
    assert float(page.get_by_label("Budget B (fraction of the initial volume V0 to keep)", exact=True).input_value()) == 0.25
    page.screenshot(path=str(ARTIFACTS / "browser-7-stopped.png"))
    run_dirs = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(run_dirs) == 1 and (run_dirs[0] / "checkpoint.pt").is_file()
    switch_views(page, rounds=1)  # the stopped job (every view was shown twice while it trained)
    # the run folder replayed from disk, by path
    page.locator(".st-key-show").click()
    page.get_by_role("option", name="a run folder by path ...").click()
    box = page.get_by_label("Run folder", exact=True)
    box.fill(str(run_dirs[0]))
    box.press("Enter")
    expect(page.get_by_text("Replaying").first).to_be_visible(timeout=30_000)
    switch_views(page, rounds=1)
    page.screenshot(path=str(ARTIFACTS / "browser-8-replayed.png"))
    assert not page.external_requests, f"the page reached outside localhost: {page.external_requests[:5]}"
    no_page_errors(page)


@pytest.fixture
def two_runs(tmp_path):
    """Two finished tiny runs in the runs folder the server will list (made before it starts)."""
    from bar_core.job import JobManager
    from tests.helpers import tiny_config

    manager = JobManager(tmp_path / "runs")
    for name, budget, seed in (("half", 0.5, 0), ("quarter", 0.25, 1)):
        job = manager.start(tiny_config(budget=budget, seed=seed), name=name)
        assert job.join(120) and job.state == "done"
    return tmp_path / "runs"


def test_compare_two_runs_in_a_real_browser(two_runs, server, page):
    """A shared link opens the Compare page with two runs: the overlay and the Pareto chart hold data."""
    from playwright.sync_api import expect

    url, _ = server
    page.goto(f"{url}/?page=compare&compare=half,quarter")
    expect(page.locator(".st-key-cmp_volume .js-plotly-plot")).to_be_visible(timeout=60_000)
    traces = """(key) => { const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
        return el ? (el._fullData || []).map(t => [t.name, (t.x || []).length]) : null; }"""
    page.wait_for_function(f"() => ({traces})('cmp_pareto') !== null", timeout=30_000)
    volume = page.evaluate(traces, "cmp_volume")
    assert [name for name, _ in volume] == ["half", "quarter"] and all(n > 0 for _, n in volume), volume
    pareto = page.evaluate(traces, "cmp_pareto")
    assert sum(n for _, n in pareto) >= 2, pareto
    for key in ("cmp_accuracy", "cmp_loss", "cmp_gates_0", "cmp_gates_1"):
        drawn = page.evaluate(traces, key)
        assert drawn and any(n > 0 for _, n in drawn), (key, drawn)
    expect(page.get_by_text("Settings that differ")).to_be_visible()
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-compare.png"), full_page=True)
    no_outbound_buttons(page)
    assert not page.external_requests, page.external_requests[:5]
    no_page_errors(page)


def test_first_open_shows_how_to_start_the_quick_demo_without_scrolling(server, page):
    from playwright.sync_api import expect

    url, runs = server
    page.set_viewport_size({"width": 1400, "height": 900})
    page.goto(url)
    button = page.get_by_role("button", name="▶ Start the quick demo")
    expect(button).to_be_visible(timeout=60_000)
    box = button.bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= 900, f"below the fold: {box}"
    assert not page.get_by_label("Run folder", exact=True).is_visible(), "no empty path box on a first open"
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "browser-first-open.png"))
    button.click()
    expect(page.get_by_role("button", name="Stop")).to_be_enabled(timeout=60_000)
    page.get_by_role("button", name="Stop").click()
    expect(page.get_by_role("button", name="Start", exact=True)).to_be_enabled(timeout=60_000)
    run_dirs = [p for p in runs.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(run_dirs) == 1 and run_dirs[0].name.startswith("resnet8-fashion-mnist-subset-b0.25")
    no_page_errors(page)


@pytest.fixture
def lesson_run(tmp_path):
    """One finished tiny run at B = 1/2 in the runs folder the server will list."""
    from bar_core.job import JobManager
    from tests.helpers import tiny_config

    job = JobManager(tmp_path / "runs").start(tiny_config(budget=0.5, prune_epochs=3), name="lesson")
    assert job.join(120) and job.state == "done"
    return tmp_path / "runs" / "lesson"


FIGURE = """(key) => { const el = document.querySelector(`.st-key-${key} .js-plotly-plot`);
    return el && el._fullData ? {traces: Object.fromEntries(el._fullData.map(t => [t.name, [Array.from(t.x || []),
             Array.from(t.y || [])]])), meta: el._fullLayout.meta || null, title: el._fullLayout.title.text,
             active: el._fullLayout.sliders && el._fullLayout.sliders.length ? el._fullLayout.sliders[0].active : null}
           : null; }"""


def figure_now(pg, key: str) -> dict:
    return pg.evaluate(FIGURE, key)


def wait_figure(pg, key: str, cond, what: str, timeout: float = 30.0) -> dict:
    end = time.monotonic() + timeout
    while True:
        fig = figure_now(pg, key)
        if fig is not None and cond(fig):
            return fig
        assert time.monotonic() < end, f"{key}: {what}; last seen: {fig and {k: fig[k] for k in ('meta', 'title', 'active')}}"
        pg.wait_for_timeout(200)


def test_barrier_sandbox_and_replay_animation_in_a_real_browser(lesson_run, server, page):
    """The sandbox moves with its sliders and loads a run's values; the replay plays, pauses, resumes
    from where it stopped, steps with its slider and reaches the run's end at the chosen speed."""
    from playwright.sync_api import expect

    from bar_core.figures import barrier_point
    from bar_core.history import snapshot_from_run

    url, _ = server
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{url}/?view=sandbox")  # a link opens the view; the sandbox needs no training
    fig = wait_figure(page, "chart_sandbox", lambda f: "b now" in f["traces"], "the sandbox is drawn")
    assert fig["traces"]["b now"][0] == [0.5]
    sig_b = fig["traces"]["budget b(p)"][1]
    # p to its end with the keyboard: b comes down to B = 0.25 (the sliders' default budget)
    page.get_by_role("slider", name="Pruning progress p (moves b along the schedule)").press("End")
    expect(page.locator('[data-testid="stMetric"]').filter(has_text="b / V0")).to_contain_text("0.2500")
    fig = wait_figure(page, "chart_sandbox", lambda f: f["traces"]["b now"][0] == [1], "b at p = 1")
    page.get_by_role("radio", name="exp", exact=True).click()
    fig = wait_figure(page, "chart_sandbox", lambda f: f["traces"]["budget b(p)"][1][30] != sig_b[30],
                      "the exp schedule")
    exp_b = fig["traces"]["budget b(p)"][1]
    assert exp_b[30] < sig_b[30] - 0.05, "exp brings b down earlier than sigmoid"
    # the run's values: its B = 0.5, its V and b at the last prune step
    page.get_by_role("button", name="Load the shown run's values").click()
    expect(page.get_by_text("Loaded from")).to_be_visible()
    point = barrier_point(snapshot_from_run(lesson_run))
    fig = wait_figure(page, "chart_sandbox", lambda f: abs(f["traces"]["a"][1][0] - point.a / point.v0) < 1e-6,
                      "a of the run's budget")
    assert fig["traces"]["V (held)"][1][0] == pytest.approx(point.V / point.v0, abs=1e-3)
    assert fig["traces"]["b now"][1][0] == pytest.approx(point.b / point.v0, rel=1e-4)
    page.screenshot(path=str(ARTIFACTS / "browser-sandbox.png"))

    page.get_by_role("radio", name="Replay", exact=True).click()
    wait_figure(page, "chart_replay", lambda f: f["meta"] and f["active"] == 0, "the replay at its first frame")
    page.get_by_role("radio", name=re.compile(r"^5 s")).click()
    fig = wait_figure(page, "chart_replay", lambda f: f["meta"]["playback_seconds"] == 5, "a 5 s playback")
    frames, frame_ms = fig["meta"]["frames"], fig["meta"]["frame_ms"]
    assert frame_ms == int(5000 / frames)
    play, pause = (page.locator(".st-key-chart_replay .updatemenu-button").nth(i) for i in (0, 1))
    play.click()
    page.wait_for_timeout(1500)
    pause.click()
    held = figure_now(page, "chart_replay")["active"]
    assert 0 < held < frames - 1, f"played part of the run ({held} of {frames} frames)"
    page.wait_for_timeout(1000)
    assert figure_now(page, "chart_replay")["active"] == held, "Pause holds the frame"
    page.screenshot(path=str(ARTIFACTS / "browser-replay-paused.png"))
    play.click()
    fig = wait_figure(page, "chart_replay", lambda f: f["active"] == frames - 1, "played to the end", timeout=20)
    assert fig["title"].startswith(f"Step {fig['traces']['now'][0][0]:.0f} "), fig["title"]
    page.screenshot(path=str(ARTIFACTS / "browser-replay-end.png"))
    # step: a click on the slider's rail jumps to that moment of the run
    rail = page.locator(".st-key-chart_replay .slider-rail-rect").first.bounding_box()
    page.mouse.click(rail["x"] + 0.25 * rail["width"], rail["y"] + rail["height"] / 2)
    fig = wait_figure(page, "chart_replay", lambda f: f["active"] < frames - 1, "a frame picked on the slider")
    assert 0.1 * frames < fig["active"] < 0.4 * frames, fig["active"]
    assert not page.external_requests, page.external_requests[:5]
    no_page_errors(page)


def test_sigterm_to_the_app_saves_the_running_job(tmp_path, page):
    """`python -m bar_app` (what `make run` and `bar app` start) stopped with SIGTERM mid-job: the job
    stops after its step with a checkpoint and a summary, so the run is 'stopped' and can continue."""
    import json
    import signal

    from playwright.sync_api import expect

    from bar_core.catalog import run_row
    from bar_core.checkpoint import load_file

    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (make test installs it)")
    runs, port = tmp_path / "runs", free_port()
    log = open(tmp_path / "server.log", "w")
    proc = subprocess.Popen([sys.executable, "-m", "bar_app", "--server.port", str(port)], cwd=ROOT,
                            env={**os.environ, "BAR_RUNS_DIR": str(runs)}, stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, proc)
        page.set_viewport_size({"width": 1400, "height": 900})
        page.goto(url)
        page.get_by_role("button", name="▶ Start the quick demo").click()
        expect(page.get_by_role("button", name="Stop")).to_be_enabled(timeout=60_000)

        def steps() -> int:
            found = [p / "metrics.csv" for p in runs.iterdir() if (p / "metrics.csv").is_file()] if runs.is_dir() else []
            return len(found[0].read_text().splitlines()) - 1 if found else 0
        end = time.monotonic() + 120
        while steps() < 20:  # inside the first prune epoch (78 steps)
            assert time.monotonic() < end, "the quick demo did not train 20 steps"
            time.sleep(0.5)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 128 + signal.SIGTERM
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
    (run,) = [p for p in runs.iterdir() if p.is_dir()]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["state"] == "stopped"
    assert load_file(run / "checkpoint.pt")["progress"]["step"] == summary["steps"] >= 20
    assert run_row(run).state == "stopped", "after a restart the run lists as stopped, with Continue"
    assert "SIGTERM: stopping" in (tmp_path / "server.log").read_text()


@pytest.fixture
def run_with_markup(tmp_path):
    """A finished run whose files carry markdown and HTML that would fetch an outside host if rendered."""
    import json

    from bar_core.job import JobManager
    from tests.helpers import tiny_config

    job = JobManager(tmp_path / "runs").start(tiny_config(), name="markup")
    assert job.join(120) and job.state == "done"
    run = tmp_path / "runs" / "markup"
    with open(run / "events.jsonl", "a") as f:
        f.write(json.dumps({"kind": "warning", "step": 3, "message": WARNING_MARKUP}) + "\n")
    summary = json.loads((run / "summary.json").read_text())
    summary.update(state="error", error=ERROR_MARKUP)
    (run / "summary.json").write_text(json.dumps(summary))
    return run


WARNING_MARKUP = "look ![x](http://evil.example/pixel.png) **bold** <img src='http://evil.example/y.png'>"
ERROR_MARKUP = "[click](http://evil.example/) :red[red] $x$"


def test_messages_from_run_files_are_shown_as_text(run_with_markup, server, page):

    url, _ = server
    page.goto(url)
    from bar_app.text import shown

    page.locator("[data-testid='stAlert']").first.wait_for(timeout=60_000)
    page.wait_for_timeout(1000)
    alerts = [shown(t) for t in page.locator("[data-testid='stAlert']").all_inner_texts()]
    assert any(WARNING_MARKUP in t for t in alerts), alerts  # as typed: no image, no HTML, no bold
    assert any(f"Training error: {ERROR_MARKUP}" in t for t in alerts), alerts
    found = page.locator("a[href*='evil.example'], img[src*='evil.example']")
    assert found.count() == 0, [found.nth(i).evaluate("e => e.parentElement.outerHTML.slice(0, 300)")
                                for i in range(found.count())]
    page.wait_for_timeout(1000)
    assert not page.external_requests, page.external_requests[:5]
    no_page_errors(page)
