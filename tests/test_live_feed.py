"""Live feeds (bar_app/live_feed.py): what the browser's poll gets, and the page publishing them for a job."""
from __future__ import annotations

import base64
import json
import time
from pathlib import Path

import numpy as np
import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from bar_app import live_feed
from bar_app.live_feed import FeedRegistry
from bar_core.job import JobManager
from tests.helpers import tiny_config

APP = str(Path(__file__).resolve().parents[1] / "bar_app" / "main.py")


class Counter:
    """A feed source whose version is `n` and whose panel counts its builds."""

    def __init__(self):
        self.n, self.builds = 0, 0

    def version(self):
        return (self.n,)

    def build(self):
        self.builds += 1
        return {"metrics": [{"label": "n", "value": str(self.n)}]}


def test_a_poll_gets_a_new_panel_only_when_the_version_moved():
    reg, src = FeedRegistry(), Counter()
    url, version = reg.publish("tok", src.version, src.build)
    assert url == live_feed.PATH
    assert reg.respond("tok", version) == (204, None), "the page is drawn at this version"
    src.n = 5
    status, body = reg.respond("tok", version)
    panel = json.loads(body)
    assert status == 200 and panel["metrics"][0]["value"] == "5" and panel["version"] != version
    assert reg.respond("tok", panel["version"]) == (204, None)
    assert reg.respond("tok", version) == (200, body) and src.builds == 1, "a second page gets the cached body"


def test_thirty_viewers_of_one_panel_share_one_build_per_update():
    import threading

    reg, src = FeedRegistry(share_for=0), Counter()
    tokens = [f"viewer{i}" for i in range(30)]
    versions = {t: reg.publish(t, src.version, src.build, share=("job", "chart_volume"))[1] for t in tokens}
    other = reg.publish("own-choice", src.version, src.build, share=("job", "chart_barrier", 17))[1]
    for n in (1, 2, 3):
        src.n = n
        answers = {}
        threads = [threading.Thread(target=lambda t=t, a=answers, v=versions: a.__setitem__(t, reg.respond(t, v[t])))
                   for t in tokens]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        assert all(status == 200 for status, _ in answers.values())
        bodies = {t: json.loads(b) for t, (_, b) in answers.items()}
        assert {b["metrics"][0]["value"] for b in bodies.values()} == {str(n)}
        assert src.builds == 2 * n - 1, "one build per update for the 30 viewers"
        versions = {t: b["version"] for t, b in bodies.items()}
        status, body = reg.respond("own-choice", other)  # other choices: its own build
        other = json.loads(body)["version"]
        assert src.builds == 2 * n
    assert len(set(versions.values())) == 30, "each viewer keeps its own version (its own choices' generation)"


def test_viewers_polling_at_their_own_moments_share_a_young_build_and_then_get_the_newest_data():
    # training moves the data every step: without the window each viewer's poll would be one build
    reg, src = FeedRegistry(share_for=0.3), Counter()
    held = {t: reg.publish(t, src.version, src.build, share=("job", "chart_volume"))[1] for t in ("a", "b", "c")}
    src.n = 1
    status, body = reg.respond("a", held["a"])
    first = json.loads(body)
    assert status == 200 and first["metrics"][0]["value"] == "1" and src.builds == 1
    src.n = 2  # a step later, inside the window: the others get the same build, labelled as built
    for t in ("b", "c"):
        status, body = reg.respond(t, held[t])
        panel = json.loads(body)
        assert status == 200 and panel["metrics"][0]["value"] == "1" and panel["version"].endswith("-1")
        held[t] = panel["version"]
    assert src.builds == 1
    assert reg.respond("a", first["version"]) == (204, None), "the page holds the young build already"
    assert reg.panel_now("b")[0] == held["b"] and src.builds == 1, "a fragment rerun draws it too"
    time.sleep(0.35)  # the data stopped moving (the run ended): once the build ages the last version arrives
    status, body = reg.respond("a", first["version"])
    last = json.loads(body)
    assert status == 200 and last["metrics"][0]["value"] == "2" and last["version"].endswith("-2")
    assert src.builds == 2
    status, body = reg.respond("b", held["b"])
    assert status == 200 and json.loads(body)["metrics"][0]["value"] == "2" and src.builds == 2, "b takes a's build"
    assert reg.respond("a", last["version"]) == (204, None)


def test_the_event_loop_answers_what_is_at_hand_and_hands_builds_to_a_thread():
    """The server answers a poll in its event loop only when no build is needed (a viewer's shared
    panel is young, or nothing moved) and never waits there for a build under way in another thread."""
    import threading

    from bar_app.live_feed import NeedsBuild

    reg, src = FeedRegistry(share_for=30), Counter()
    held = {t: reg.publish(t, src.version, src.build, share=("job", "chart_volume"))[1] for t in ("a", "b")}
    own = reg.publish("own", src.version, src.build)[1]
    assert reg.respond_many(f"a:{held['a']},own:{own}", may_build=False) == (200, '{"a": null, "own": null}')
    src.n = 1
    with pytest.raises(NeedsBuild):
        reg.respond_many(f"a:{held['a']}", may_build=False)
    assert src.builds == 0
    first = json.loads(reg.respond_many(f"a:{held['a']}")[1])["a"]
    assert first["metrics"][0]["value"] == "1" and src.builds == 1
    src.n = 2  # the shared panel is young: b gets it in the loop, labelled with its version
    status, body = reg.respond_many(f"b:{held['b']}", may_build=False)
    assert status == 200 and json.loads(body)["b"]["metrics"][0]["value"] == "1" and src.builds == 1
    with pytest.raises(NeedsBuild):  # a feed of its own moved: that takes a build
        reg.respond_many(f"b:{held['b']},own:{own}", may_build=False)

    started, release = threading.Event(), threading.Event()

    def slow_build():
        started.set()
        release.wait(5)
        return src.build()

    reg.publish("slow", src.version, slow_build)
    worker = threading.Thread(target=reg.respond, args=("slow", "none"))
    worker.start()
    assert started.wait(5)
    t0 = time.monotonic()
    with pytest.raises(NeedsBuild):
        reg.respond_many("slow:none", may_build=False)
    assert time.monotonic() - t0 < 1, "it does not wait for the build in the other thread"
    release.set()
    worker.join(5)


def test_a_classroom_polling_at_one_tick_waits_in_the_event_loop_for_one_build(monkeypatch):
    """30 pages poll at the same tick (bar_app/assets/live_plot.js): one of them builds the panel in a
    worker thread, the other 29 wait for it in the event loop (no thread each) and get the same panel;
    every answer carries the server's clock, which the pages time their polls by."""
    import asyncio

    from starlette import concurrency
    from starlette.requests import Request

    reg, src = FeedRegistry(share_for=30), Counter()
    monkeypatch.setattr(live_feed, "FEEDS", reg)

    def slow_build():  # long enough for every poll of the tick to arrive while it runs
        time.sleep(0.3)
        return src.build()

    held = {f"v{i}": reg.publish(f"v{i}", src.version, slow_build, share=("job", "chart_volume"))[1]
            for i in range(30)}
    hops = []
    real = concurrency.run_in_threadpool

    async def counted(fn, *args, **kwargs):
        hops.append(args)
        return await real(fn, *args, **kwargs)

    monkeypatch.setattr(concurrency, "run_in_threadpool", counted)
    src.n = 1

    async def tick():
        requests = [Request({"type": "http", "method": "GET", "path": "/bar/feed", "headers": [],
                             "query_string": f"q={t}:{v}".encode()}) for t, v in held.items()]
        return await asyncio.gather(*(live_feed._endpoint(r) for r in requests))

    before = time.time()
    answers = asyncio.run(tick())
    assert [a.status_code for a in answers] == [200] * 30
    panels = [json.loads(a.body)[t] for a, t in zip(answers, held)]
    assert {p["metrics"][0]["value"] for p in panels} == {"1"} and src.builds == 1
    assert len(hops) == 1, f"{len(hops)} polls went to a worker thread"
    clocks = [float(a.headers[live_feed.CLOCK_HEADER]) for a in answers]
    assert before <= min(clocks) <= max(clocks) <= time.time()
    assert not live_feed._building, "a finished build is forgotten"


def test_republishing_with_new_choices_changes_the_version():
    reg, src = FeedRegistry(), Counter()
    _, first = reg.publish("tok", src.version, src.build)
    _, second = reg.publish("tok", src.version, lambda: {"caption": "other choice"})
    assert first != second
    status, body = reg.respond("tok", first)
    assert status == 200 and json.loads(body)["caption"] == "other choice"


def test_unknown_withdrawn_and_forgotten_feeds_answer_404():
    reg, src = FeedRegistry(max_idle=0.05), Counter()
    assert reg.respond("nope", None) == (404, None)
    reg.publish("a", src.version, src.build)
    reg.withdraw("a")
    assert reg.respond("a", None) == (404, None)
    reg.publish("old", src.version, src.build)
    time.sleep(0.1)
    reg.publish("new", src.version, src.build)  # publishing drops feeds nobody asked for lately
    assert "old" not in reg and "new" in reg


def test_a_failing_feed_answers_with_its_error_and_keeps_serving():
    reg = FeedRegistry()

    def broken():
        raise ValueError("no such layer 'x'")

    reg.publish("tok", lambda: (1,), broken)
    status, body = reg.respond("tok", None)
    assert status == 200 and json.loads(body) == {"error": "ValueError: no such layer 'x'"}
    assert "tok" in reg


def test_one_request_answers_every_panel_of_a_page():
    reg, a, b = FeedRegistry(), Counter(), Counter()
    _, va = reg.publish("tok-a", a.version, a.build)
    _, vb = reg.publish("tok_b", b.version, b.build)
    b.n = 3
    status, body = reg.respond_many(f"tok-a:{va},tok_b:{vb},gone:1-2")
    answers = json.loads(body)
    assert status == 200 and answers["tok-a"] is None, "unchanged: nothing to draw"
    assert answers["tok_b"]["metrics"][0]["value"] == "3" and answers["gone"] is False


@pytest.mark.parametrize("query", ["", "tok", "tok:v,", "to k:1", "tok:1,2", "tok:(1, 'running')",
                                   ",".join(f"t{i}:1" for i in range(live_feed.MAX_PER_REQUEST + 1))])
def test_a_malformed_query_is_refused(query):
    reg, src = FeedRegistry(), Counter()
    reg.publish("tok", src.version, src.build)
    status, body = reg.respond_many(query)
    if query == "tok:v,":  # a trailing comma is harmless
        assert status == 200 and json.loads(body)["tok"]["metrics"]
        return
    assert status == 400 and "token:version" in json.loads(body)["error"]
    assert src.builds == 0


def test_tokens_are_unguessable_and_url_safe():
    tokens = {FeedRegistry.new_token() for _ in range(100)}
    assert len(tokens) == 100 and all(len(t) >= 16 and t.replace("-", "").replace("_", "").isalnum() for t in tokens)


@pytest.fixture
def served_with_feeds(monkeypatch, runs_dir):
    """The page as bar_app/server.py serves it: feeds answered, charts through the component."""
    import bar_app.live_plot as live_plot
    monkeypatch.setattr(live_feed, "serving", lambda: True)
    monkeypatch.setattr(live_plot, "available", lambda: True)
    st.cache_resource.clear()
    yield
    st.cache_resource.clear()


def points(figure_json: str) -> int:
    x = json.loads(figure_json)["data"][0]["x"]
    return len(np.frombuffer(base64.b64decode(x["bdata"]), dtype=np.dtype(x["dtype"]))) if "bdata" in x else len(x)


def component_data(at: AppTest, key: str) -> dict:
    el = next(c for c in at.get("bidi_component") if c.key == key)
    return json.loads(el.proto.json)


def test_a_running_job_publishes_feeds_that_follow_the_training(served_with_feeds, runs_dir):
    from bar_app.state import get_manager
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    manager: JobManager = get_manager()
    job = manager.start(tiny_config(prune_epochs=40, max_steps_per_epoch=10), name="fed")
    try:
        end = time.monotonic() + 60
        while not job.snapshot().has_steps and time.monotonic() < end:
            time.sleep(0.05)
        at.run()
        assert not at.exception, at.exception
        chart, status = component_data(at, "chart_volume"), component_data(at, "live_status")
        assert chart["feed"]["url"] == live_feed.PATH and chart["feed"]["period"] == 1.0
        assert status["watch"]["ended"] is False and status["progress"]["text"].startswith("▶ running")
        token = chart["feed"]["token"]
        drawn = points(chart["figure"])
        end = time.monotonic() + 60
        while job.snapshot().n_steps < 20 and time.monotonic() < end:
            time.sleep(0.05)
        code, body = live_feed.FEEDS.respond(token, chart["feed"]["version"])
        panel = json.loads(body)
        assert code == 200 and points(panel["figure"]) > drawn
        assert [m["label"] for m in panel["metrics"]][:2] == ["V / V0 now", "b / V0 now"]
        assert "live update drawn in" in panel["caption"]
        # the job ending changes the status feed's watch: the page's fragment is asked to run again
        job.stop()
        assert job.join(60)
        code, body = live_feed.FEEDS.respond(status["feed"]["token"], status["feed"]["version"])
        assert code == 200 and json.loads(body)["watch"]["ended"] is True
        at.run()
        assert "feed" not in component_data(at, "chart_volume"), "a finished job's page does not poll"
        assert token not in live_feed.FEEDS, "and the server forgets its feeds, which hold the job"
    finally:
        job.stop()
        job.join(60)


def test_the_live_barrier_follows_through_its_feed_until_the_reader_looks_back(served_with_feeds, runs_dir):
    from bar_app.state import get_manager
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    job = get_manager().start(tiny_config(prune_epochs=40, max_steps_per_epoch=10), name="barrier")
    try:
        def prune_steps() -> int:
            s = job.snapshot().steps
            return int((s["phase"] == "prune").sum()) if len(s.get("phase", [])) else 0

        end = time.monotonic() + 60
        while prune_steps() < 3 and time.monotonic() < end:
            time.sleep(0.05)
        at.session_state["view_tabs"] = "Barrier"
        at.run()
        assert not at.exception, at.exception
        # following: no slider (it would show the step of the last page run), the feed moves the point
        assert not [s for s in at.slider if s.key.startswith("barrier_step_")]
        chart = component_data(at, "chart_barrier")
        token = chart["feed"]["token"]
        first = json.loads(chart["figure"])["layout"]["title"]["text"]
        while prune_steps() < 8 and time.monotonic() < end:
            time.sleep(0.05)
        time.sleep(live_feed.FEEDS.share_for)  # the page run's build is shared that long
        code, body = live_feed.FEEDS.respond(token, chart["feed"]["version"])
        assert code == 200 and json.loads(json.loads(body)["figure"])["layout"]["title"]["text"] != first
        # looking back: a slider at the latest step, a chart of that step that no feed moves
        next(b for b in at.button if b.key.endswith("_lookback")).click().run()
        slider = next(s for s in at.slider if s.key.startswith("barrier_step_"))
        assert slider.value == slider.max
        chart = component_data(at, "chart_barrier")
        held = json.loads(chart["figure"])["layout"]["title"]["text"]
        assert held.endswith(f"at step {slider.value}") and "feed" not in chart
        assert token not in live_feed.FEEDS, "the following feed is withdrawn"
        assert "feed" in component_data(at, "live_status"), "the progress bar still moves"
        assert any(b.key.endswith("_followbtn") for b in at.button)
    finally:
        job.stop()
        job.join(60)
