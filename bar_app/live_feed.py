"""Live feeds: the moving parts of the page, fetched by the browser without a Streamlit rerun.

Every Streamlit rerun, a fragment's included, makes the browser re-render the whole page: 60-190 ms
of Chromium's CPU for this page however little changed (measured: 0.02 of a core for a bare app
with one caption at a 1 s refresh, 0.05-0.08 for this one). On a 2-core laptop the browser takes that
time from the training, and BAR's two torch threads wait for each other whenever one of them loses its
core, so without feeds each refresh costs the training about its whole duration (in-app speed 0.88 of
headless at a 1 s refresh). With a feed, the chart component (bar_app/live_plot.py) asks the server once a second for
its newest figure and metrics and hands them to Plotly.react; nothing else on the page moves.

The page publishes a feed for each live panel it draws (`publish`): a random token, a `version`
function that is cheap (the job's record count, say) and a `build` function that draws the panel from
a fresh snapshot of the job. The page asks for all its panels in one request a refresh,
GET bar/feed?q=<token>:<version it holds>,... (each request costs the browser a few ms of CPU across
its processes), and the server answers {token: the new panel, or null when that version is still
current, or false for a feed it does not know}. Builders run in a worker thread, never call Streamlit
and read only the job, so any session's feed can be served from any thread; a poll whose answer is
at hand (nothing moved, or another viewer's panel built less than SHARE_FOR_SECONDS ago) is answered
in the server's event loop, since handing each of 30 viewers' polls to a thread costs the training
the GIL hand-overs. Every answer carries the server's clock (X-Bar-Clock) and the pages poll at its
ticks, the whole multiples of their period: a classroom's polls arrive together, the first builds the
panel in a worker thread and the others wait for that build in the event loop. Polls at their own
moments wake the server 30 times a second and, on 2 cores, each wake-up takes a core from one of
torch's two threads, which then both wait (bench/bench_viewers.py --alternate, with and without
--own-moments; README, "A classroom of viewers").

The route exists only when the app is served through bar_app/server.py (`python -m bar_app`, `make run`):
`serving()` says so. Without it (AppTest, a bare `streamlit run bar_app/main.py`), the page refreshes its
live fragment with `run_every` as before.
"""
from __future__ import annotations

import asyncio
import json
import re
import secrets
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

PATH = "bar/feed"          # relative to the page, like Streamlit's app/static/
MAX_IDLE_SECONDS = 120.0   # a feed nobody polled or published for this long is dropped
MAX_PER_REQUEST = 16       # panels one request may ask for
SHARE_FOR_SECONDS = 0.5    # a shared panel this young is served even if its data moved on since
_PAIR = re.compile(r"([A-Za-z0-9_-]{1,64}):([A-Za-z0-9.-]{0,128})")


@dataclass
class Feed:
    version: Callable[[], tuple]
    build: Callable[[], dict]
    generation: int                                  # grows with each publish: new choices, new body
    share: Hashable | None = None                    # feeds with one share key draw the same panel
    touched: float = field(default_factory=time.monotonic)
    body: tuple[str, str] | None = None              # (version string, JSON) of the last build
    lock: threading.Lock = field(default_factory=threading.Lock)  # one build at a time per feed


class NeedsBuild(Exception):
    """Raised by `respond_many(..., may_build=False)` when an answer needs a panel built, or must wait
    for a build under way: the caller asks again where waiting may block. `key` names what is to be
    built (one feed's panel, or a share key's), so that polls needing the same build wait for one."""

    def __init__(self, key: Hashable):
        super().__init__(key)
        self.key = key


class FeedRegistry:
    """The feeds of every session of this server, by token. Thread-safe."""

    def __init__(self, max_idle: float = MAX_IDLE_SECONDS, share_for: float = SHARE_FOR_SECONDS):
        self._lock = threading.Lock()
        self._feeds: dict[str, Feed] = {}
        self._generation = 0
        self.max_idle = max_idle
        # share key -> (data version, panel JSON, panel) and a lock per share key: viewers of one job build
        # each panel once per update, however many sessions watch it
        # The data moves at every training step (10-20 a second) and each viewer polls once a refresh at
        # its own moment, so one build per data version is one build per poll: 30 viewers, 30 builds a
        # second. A shared panel younger than `share_for` is served as it is, labelled with the version
        # it was built at, so that the page asks again and gets the newest data once the panel ages.
        self.share_for = share_for
        self._shared: dict[Hashable, tuple[str, str, dict, float]] = {}
        self._share_locks: dict[Hashable, threading.Lock] = {}
        self.builds = 0                                  # panels built (bench_viewers.py, the tests)

    @staticmethod
    def new_token() -> str:
        return secrets.token_urlsafe(12)

    def publish(self, token: str, version: Callable[[], tuple], build: Callable[[], dict],
                share: Hashable | None = None) -> tuple[str, str]:
        """Register (or replace, with new choices) the feed `token` (`version()` returns a tuple of
        ints and plain words). Feeds given one `share` key draw the same panel from the same data
        (one job, one view, the same choices): it is built once per version for all of them. Returns
        the page's URL for feeds and the version as of now, which the page is drawn at (its first poll
        gets nothing new if nothing moved since)."""
        with self._lock:
            self._generation += 1
            feed = Feed(version, build, self._generation, share)
            self._feeds[token] = feed
            self._expire()
        return PATH, _version_string(feed)

    def _expire(self) -> None:
        """Drop feeds nobody polled or published lately (with them, the job their builders hold)."""
        now = time.monotonic()
        for t in [t for t, f in self._feeds.items() if now - f.touched > self.max_idle]:
            del self._feeds[t]
        used = {f.share for f in self._feeds.values()}
        for key in [k for k in self._shared if k not in used]:
            del self._shared[key]
        for key in [k for k in self._share_locks if k not in used]:
            del self._share_locks[key]

    def withdraw(self, *tokens: str) -> None:
        with self._lock:
            for token in tokens:
                self._feeds.pop(token, None)
            self._expire()

    def __contains__(self, token: str) -> bool:
        with self._lock:
            return token in self._feeds

    def respond(self, token: str, since: str | None, may_build: bool = True) -> tuple[int, str | None]:
        """One feed: (404, None) for an unknown token, (204, None) when the page already holds this
        version, else (200, JSON of {"version": ..., **panel}). A build that fails answers 200 with
        {"error": message}: the page shows it next to the chart and keeps polling. With `may_build`
        False it never waits and raises NeedsBuild where the answer is not at hand."""
        with self._lock:
            feed = self._feeds.get(token)
            if feed is None:
                return 404, None
            feed.touched = time.monotonic()
        if not feed.lock.acquire(blocking=may_build):  # pages asking at once (two tabs, a retry) wait for one build
            raise NeedsBuild(("feed", id(feed)))
        try:
            try:
                data = _data_version(feed)
            except Exception as exc:  # noqa: BLE001 - a broken feed must not break the server
                return 200, json.dumps({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            version = f"{feed.generation}-{data}"
            if since == version:
                return 204, None
            cached = feed.body
            if cached is not None and cached[0] == version:
                return 200, cached[1]
            try:
                built, panel, _ = self._panel(feed, data, may_build)
            except NeedsBuild:
                raise
            except Exception as exc:  # noqa: BLE001
                return 200, json.dumps({"error": f"{type(exc).__name__}: {exc}".splitlines()[0]})
            version = f"{feed.generation}-{built}"
            if since == version:  # the page holds the shared panel already: it asks again when it ages
                return 204, None
            body = '{"version": ' + json.dumps(version) + (", " + panel[1:] if panel != "{}" else "}")
            feed.body = (version, body)
            return 200, body
        finally:
            feed.lock.release()

    def _panel(self, feed: Feed, data: str, may_build: bool = True) -> tuple[str, str, dict]:
        """(the data version it was built at, JSON, the dict it was made from) of the panel as of data
        version `data`: built by this feed, or taken from a feed that shares its key and built it at
        `data` or less than `share_for` seconds ago (callers must not change the dict: every session
        that shares the key gets the same one)."""
        if feed.share is None:
            if not may_build:
                raise NeedsBuild(("feed", id(feed)))
            self.builds += 1
            panel = feed.build()
            return data, json.dumps(panel), panel
        with self._lock:
            lock = self._share_locks.setdefault(feed.share, threading.Lock())
        if not lock.acquire(blocking=may_build):  # the first viewer to ask builds; the others wait for it
            raise NeedsBuild(("share", feed.share))
        try:
            with self._lock:
                hit = self._shared.get(feed.share)
            if hit is not None and (hit[0] == data or time.monotonic() - hit[3] < self.share_for):
                return hit[0], hit[1], hit[2]  # and take the same panel
            if not may_build:
                raise NeedsBuild(("share", feed.share))
            self.builds += 1
            panel = feed.build()
            text = json.dumps(panel)
            with self._lock:
                self._shared[feed.share] = (data, text, panel, time.monotonic())
            return data, text, panel
        finally:
            lock.release()

    def panel_now(self, token: str) -> tuple[str, dict] | None:
        """The feed's panel as of now and its version, for a page that draws the panel itself (a
        fragment rerun): sessions that share the feed's key share this build with the polls, so 30
        viewers rerunning at a new phase build each panel once. None for an unknown token; a build
        that fails raises, as drawing the panel would."""
        with self._lock:
            feed = self._feeds.get(token)
        if feed is None:
            return None
        with feed.lock:
            built, _, panel = self._panel(feed, _data_version(feed))
            return f"{feed.generation}-{built}", panel

    def respond_many(self, query: str, may_build: bool = True) -> tuple[int, str]:
        """The answer to GET bar/feed?q=<token>:<version>,...: (200, {token: panel | null | false}),
        or (400, {"error": ...}) for a malformed query. With `may_build` False it raises NeedsBuild
        instead of building or waiting for a build (the server's event loop must not block)."""
        pairs = [p for p in query.split(",") if p] if query else []
        if not pairs or len(pairs) > MAX_PER_REQUEST:
            return 400, json.dumps({"error": f"q must name 1 to {MAX_PER_REQUEST} feeds as token:version"})
        matches = [_PAIR.fullmatch(p) for p in pairs]
        if not all(matches):
            return 400, json.dumps({"error": "q must name feeds as token:version"})
        with self._lock:
            self._expire()
        parts = []
        for m in matches:
            status, body = self.respond(m.group(1), m.group(2), may_build)
            parts.append(f"{json.dumps(m.group(1))}: {body if status == 200 else 'null' if status == 204 else 'false'}")
        return 200, "{" + ", ".join(parts) + "}"


def _data_version(feed: Feed) -> str:
    """The version of what the feed draws from, as words the query can carry (letters, digits, - and .)."""
    return "-".join(re.sub(r"[^A-Za-z0-9.]", ".", str(v)) for v in feed.version())


def _version_string(feed: Feed) -> str:
    """The feed's version as the page holds it: its generation (new choices) and its data's version."""
    return f"{feed.generation}-{_data_version(feed)}"


FEEDS = FeedRegistry()
CLOCK_HEADER = "X-Bar-Clock"  # the server's clock (Unix seconds) with every answer: the pages poll at its ticks
_mounted = False
_building: dict[Hashable, asyncio.Future] = {}  # builds under way in a worker thread, by NeedsBuild.key
MAX_WAITS = 4  # builds a poll waits for in the event loop before it is handed to a thread whole


async def _endpoint(request):
    from starlette.responses import Response

    query = request.query_params.get("q", "")
    status, body = await _answer(query)
    return Response(body, status_code=status, media_type="application/json",
                    headers={"Cache-Control": "no-store", CLOCK_HEADER: f"{time.time():.3f}"})


async def _answer(query: str) -> tuple[int, str]:
    """A poll's answer, from the event loop where it is at hand. The pages of a classroom poll at the
    same tick, so their requests arrive together: the first that needs a panel built builds it in a
    worker thread, and the others wait for that build here and take the panel it leaves, rather than
    each waiting in a thread of its own (a GIL hand-over each, taken from the training)."""
    from starlette.concurrency import run_in_threadpool

    for _ in range(MAX_WAITS):
        try:
            return FEEDS.respond_many(query, may_build=False)
        except NeedsBuild as need:
            pending = _building.get(need.key)
            if pending is None:
                pending = asyncio.ensure_future(run_in_threadpool(FEEDS.respond_many, query))
                _building[need.key] = pending
                pending.add_done_callback(lambda done, key=need.key: _building.pop(key, None)
                                          if _building.get(key) is done else None)
                # shielded: a viewer that goes away mid-build leaves the build to those waiting for it
                return await asyncio.shield(pending)
            await asyncio.wait([pending])  # its outcome is the builder's; this poll asks again
    return await run_in_threadpool(FEEDS.respond_many, query)


def routes() -> list:
    """The feed's HTTP route, for st.App (bar_app/server.py); from then on `serving()` is True."""
    from starlette.routing import Route

    global _mounted
    _mounted = True
    return [Route(f"/{PATH}", _endpoint, methods=["GET"])]


def serving() -> bool:
    """Whether this server answers feeds (served through bar_app/server.py)."""
    return _mounted
