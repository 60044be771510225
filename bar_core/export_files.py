"""Files out of the explorer: a figure as PNG or standalone HTML, a table as CSV, a run folder as a zip.

PNG is drawn by kaleido in a headless Chromium that is already installed (Debian's
/usr/bin/chromium, `BROWSER_PATH`, or a Chrome/Chromium on the PATH); nothing is downloaded, and
MathJax is off so the page loads nothing from the network. Without a browser the export fails with
one line naming what to install. Starting Chromium takes seconds, a figure then ~0.2-0.5 s, so
`PngRenderer` keeps one browser open between figures (shut after an idle time) and serialises the
calls: kaleido's own sync server is not safe to call from several threads, and hangs for good if
its browser fails to start.

HTML embeds plotly.js from the installed plotly package (about 4.8 MB per file) so the page works
offline; a report writes the script once and points its pages at that copy instead. Figures come in
as built by bar_core/plots.py (without plotly's validation); `validated` puts them through it once,
which resolves the template name that plotly.py's HTML writer and plotly.js need as an object.
"""
from __future__ import annotations

import asyncio
import atexit
import contextlib
import html
import io
import math
import os
import shutil
import threading
import zipfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import plotly
import plotly.graph_objects as go

from .runs import RUNNING_MARKER, RunFolderError, holds_run

if TYPE_CHECKING:  # pandas is imported where a table is made: the PNG and zip paths do not need it
    import pandas as pd

PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
PNG_WIDTH = 1000           # CSS pixels; PNG pixels are width × scale
PNG_HEIGHT = 500           # for a figure whose layout sets no height
PNG_TIMEOUT = 90.0         # seconds for one figure (kaleido's own default)
IDLE_SECONDS = 300.0       # a shared browser left unused this long is closed
CHROMIUM_PATHS = ("/usr/bin/chromium", "/usr/bin/chromium-browser")
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = "apt install chromium"
# plotly.js's default modebar has a button that uploads the chart to Chart Studio: the files promise no network
HTML_CONFIG = {"displaylogo": False, "showSendToCloud": False,
               "modeBarButtonsToRemove": ["sendDataToCloud", "editInChartStudio"]}
# already compressed, or binary that deflate barely shrinks: stored as is (saves seconds of CPU on a checkpoint)
_STORED_SUFFIXES = (".pt", ".npz", ".zip", ".png", ".onnx")


class FigureExportError(RuntimeError):
    """A figure could not be written (no browser, or the browser failed); one-line message.
    `missing_browser` is True when the fix is to install Chromium."""

    def __init__(self, message: str, *, missing_browser: bool = False):
        super().__init__(message)
        self.missing_browser = missing_browser


# ------------------------------------------------------------------------------------------------
# Figures


def validated(fig: go.Figure | dict) -> go.Figure:
    """A copy of `fig` through plotly's validation (the builders skip it for speed)."""
    return go.Figure(fig.to_plotly_json() if isinstance(fig, go.Figure) else fig)


def figure_size(fig: go.Figure, width: int | None = None, height: int | None = None) -> tuple[int, int]:
    """(width, height) in CSS pixels: as asked, else PNG_WIDTH and the figure's own layout height."""
    if height is None:
        h = fig.layout.height if isinstance(fig, go.Figure) else None
        height = int(h) if h else PNG_HEIGHT
    return int(width or PNG_WIDTH), int(height)


def html_text(fig: go.Figure, *, plotlyjs: str | None = None, title: str | None = None) -> str:
    """A standalone HTML page of `fig`, interactive and offline: plotly.js inlined, or, with `plotlyjs`,
    loaded from that relative path (a report's shared copy). The figure fills the page's width."""
    if plotlyjs is not None and (plotlyjs.startswith(("http:", "https:", "//")) or ":" in plotlyjs.split("/")[0]):
        raise ValueError(f"plotlyjs {plotlyjs!r} must be a relative path: the page loads nothing from the network")
    fig = validated(fig)
    text = fig.to_html(include_plotlyjs=True if plotlyjs is None else plotlyjs, full_html=True,
                       config=HTML_CONFIG, default_width="100%")
    if title:
        text = text.replace("<head>", f"<head>\n    <title>{html.escape(title)}</title>", 1)
    return text


def find_chromium() -> str | None:
    """The browser PNG export uses: $BROWSER_PATH (kaleido's own variable) if set, else Debian's
    Chromium, else a Chrome or Chromium on the PATH. None when there is none (never downloads one)."""
    env = os.environ.get("BROWSER_PATH")
    if env:
        return env if _is_exe(env) else None
    for path in CHROMIUM_PATHS:
        if _is_exe(path):
            return path
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The browser's path, or FigureExportError with what to install."""
    path = find_chromium()
    if path is not None:
        return path
    env = os.environ.get("BROWSER_PATH")
    if env:
        raise FigureExportError(f"PNG export: BROWSER_PATH={env!r} is not an executable browser; point it at "
                                f"Chromium or unset it ({INSTALL_HINT})", missing_browser=True)
    raise FigureExportError(f"PNG export needs Chromium, which is not installed here: {INSTALL_HINT} "
                            f"(HTML and CSV export work without it)", missing_browser=True)


def _is_exe(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


class _Browser:
    """One headless Chromium driven by kaleido, on an event loop in its own thread."""

    def __init__(self, path: str):
        import kaleido

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="bar-png-browser", daemon=True)
        self.thread.start()

        async def open_browser():
            k = kaleido.Kaleido(n=1, timeout=PNG_TIMEOUT, path=path, mathjax=False)
            await k.open()
            return k
        try:
            self.kaleido = self._run(open_browser(), PNG_TIMEOUT)
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coroutine, timeout: float):
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def png(self, fig: go.Figure, width: int, height: int, scale: float) -> bytes:
        opts = {"format": "png", "width": width, "height": height, "scale": scale}
        return self._run(self.kaleido.calc_fig(fig, opts=opts), PNG_TIMEOUT + 10)

    def close(self) -> None:
        try:
            self._run(self.kaleido.close(), 30)
        except Exception:  # noqa: BLE001 - a browser that is gone already needs no closing
            pass
        self._stop_loop()

    def _stop_loop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        if not self.thread.is_alive():
            self.loop.close()


class PngRenderer:
    """Figures to PNG through one shared browser, one figure at a time (thread-safe).

    `keep_open()` keeps the browser between calls until `close()` or IDLE_SECONDS without a call;
    otherwise each `png` call opens and closes its own (seconds)."""

    def __init__(self, idle_seconds: float = IDLE_SECONDS):
        self.idle_seconds = idle_seconds
        self._lock = threading.RLock()
        self._browser: _Browser | None = None
        self._keep = False
        self._timer: threading.Timer | None = None

    @property
    def is_open(self) -> bool:
        return self._browser is not None

    def keep_open(self) -> None:
        """Keep a browser open from the next figure on (opened lazily: nothing starts here)."""
        with self._lock:
            self._keep = True

    @contextlib.contextmanager
    def session(self):
        """Keep one browser open inside the `with` block (many figures in a row); closed after it
        unless it was kept open before."""
        with self._lock:
            kept, self._keep = self._keep, True
        try:
            yield self
        finally:
            if not kept:
                self.close()

    def close(self) -> None:
        with self._lock:
            self._keep = False
            self._cancel_timer()
            browser, self._browser = self._browser, None
        if browser is not None:
            browser.close()

    def png(self, fig: go.Figure, *, width: int | None = None, height: int | None = None,
            scale: float = 1.0) -> bytes:
        """PNG bytes of `fig`, (width × scale) × (height × scale) pixels."""
        w, h = figure_size(fig, width, height)
        if w <= 0 or h <= 0 or not (0 < scale <= 8):
            raise ValueError(f"PNG size {w}×{h} at scale {scale} is not allowed: width and height > 0, scale in (0, 8]")
        fig = validated(fig)
        with self._lock:
            self._cancel_timer()
            browser = self._browser or self._open()
            try:
                data = browser.png(fig, w, h, scale)
            except BaseException as exc:
                self._browser = None  # a browser that failed once is not trusted again
                browser.close()
                if isinstance(exc, Exception):
                    raise FigureExportError(f"PNG export failed in Chromium: {type(exc).__name__}: "
                                            f"{_first_line(exc)}") from exc
                raise
            if self._keep:
                self._browser = browser
                self._arm_timer()
            else:
                self._browser = None
                browser.close()
        return data

    def _open(self) -> _Browser:
        path = require_chromium()
        try:
            return _Browser(path)
        except Exception as exc:  # kaleido and choreographer raise many kinds; the user needs one line
            raise FigureExportError(f"PNG export: Chromium at {path!r} did not start ({type(exc).__name__}: "
                                    f"{_first_line(exc)}); reinstall it: {INSTALL_HINT}",
                                    missing_browser=True) from exc

    def _arm_timer(self) -> None:
        if self.idle_seconds and math.isfinite(self.idle_seconds):
            self._timer = threading.Timer(self.idle_seconds, self._idle_close)
            self._timer.daemon = True
            self._timer.start()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _idle_close(self) -> None:
        with self._lock:
            browser, self._browser = self._browser, None
            self._timer = None
        if browser is not None:
            browser.close()


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else "no message"


RENDERER = PngRenderer()  # the process's shared renderer (the app's downloads, the report)
atexit.register(RENDERER.close)  # a browser kept open is closed with the process, not left to its pipe


def png_bytes(fig: go.Figure, *, width: int | None = None, height: int | None = None, scale: float = 1.0) -> bytes:
    """PNG bytes of `fig` through the shared renderer: (width × scale) × (height × scale) pixels,
    width defaulting to PNG_WIDTH and height to the figure's layout height."""
    return RENDERER.png(fig, width=width, height=height, scale=scale)


# ------------------------------------------------------------------------------------------------
# Tables


def figure_table(fig: go.Figure) -> pd.DataFrame:
    """The data a figure draws, one row per point: trace (its name), x, y, and z for heatmaps (one
    row per cell). Traces with no data (legend swatches) are left out."""
    import pandas as pd

    frames = []
    data = fig.data if isinstance(fig, go.Figure) else fig.get("data", [])
    for i, trace in enumerate(data):
        tr = trace.to_plotly_json() if hasattr(trace, "to_plotly_json") else dict(trace)
        name = tr.get("name") or f"{tr.get('type', 'trace')} {i}"
        x, y, z = (_values(tr.get(k)) for k in ("x", "y", "z"))
        if z is not None and np.ndim(z) == 2:
            rows, cols = np.shape(z)
            xs = x if x is not None and len(x) == cols else np.arange(cols)
            ys = y if y is not None and len(y) == rows else np.arange(rows)
            frames.append(pd.DataFrame({"trace": name, "x": np.tile(np.asarray(xs, dtype=object), rows),
                                        "y": np.repeat(np.asarray(ys, dtype=object), cols),
                                        "z": np.asarray(z, dtype=float).ravel()}))
            continue
        n = max(len(v) for v in (x, y) if v is not None) if (x is not None or y is not None) else 0
        if n == 0:
            continue
        xs = x if x is not None else np.arange(n)
        ys = y if y is not None else np.full(n, np.nan)
        if all(v is None for v in list(xs) + list(ys)):
            continue
        frames.append(pd.DataFrame({"trace": name, "x": list(xs), "y": list(ys)}))
    if not frames:
        return pd.DataFrame(columns=["trace", "x", "y"])
    out = pd.concat(frames, ignore_index=True)
    return out[[c for c in ("trace", "x", "y", "z") if c in out]]


def _values(v):
    """A trace's array as numpy (plotly's typed-array form decoded), None when absent."""
    if v is None:
        return None
    if isinstance(v, dict) and "bdata" in v:
        import base64

        arr = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        shape = v.get("shape")
        if shape:
            arr = arr.reshape([int(s) for s in str(shape).split(",")])
        return arr
    if isinstance(v, (list, tuple, np.ndarray)):
        arr = np.asarray(v, dtype=object) if not isinstance(v, np.ndarray) else v
        return arr
    return None


def csv_text(table) -> str:
    """A table (DataFrame, or rows as dicts) as CSV: a header, no index, missing values empty."""
    import pandas as pd

    frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(list(table))
    return frame.to_csv(index=False, lineterminator="\n")


def csv_bytes(table) -> bytes:
    return csv_text(table).encode("utf-8")


# ------------------------------------------------------------------------------------------------
# Run folders


def run_files(run_dir: str | os.PathLike) -> list[Path]:
    """The files a run folder's zip holds: everything in it but hidden files (a write in progress)
    and running.json (it names this machine's process, which an unpacked copy does not have)."""
    root = Path(run_dir)
    if not holds_run(root):
        raise RunFolderError(f"{str(root)!r} is not a run folder (no config.json, metrics.csv, ...)")
    out = []
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if any(part.startswith(".") for part in rel.parts) or rel.as_posix() == RUNNING_MARKER:
            continue
        if p.is_file() and not p.is_symlink():
            out.append(p)
    return out


def run_zip_bytes(run_dir: str | os.PathLike, *, arcname: str | None = None) -> bytes:
    """The run folder as a zip whose one top folder is `arcname` (default: the folder's name)."""
    buf = io.BytesIO()
    write_run_zip(run_dir, buf, arcname=arcname)
    return buf.getvalue()


def write_run_zip(run_dir: str | os.PathLike, dest, *, arcname: str | None = None) -> None:
    """Write the run folder's zip to `dest` (a path or a binary file object)."""
    root = Path(run_dir)
    files = run_files(root)
    top = arcname or root.resolve().name
    with zipfile.ZipFile(dest, "w") as zf:
        for p in files:
            kind = zipfile.ZIP_STORED if p.suffix in _STORED_SUFFIXES else zipfile.ZIP_DEFLATED
            zf.write(p, f"{top}/{p.relative_to(root).as_posix()}", compress_type=kind, compresslevel=6)


def safe_stem(text: str, taken: Iterable[str] = ()) -> str:
    """A file name stem from `text`: letters, digits, '.', '_' and '-' only, not hidden, unique in `taken`."""
    stem = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in str(text)).strip("._") or "figure"
    stem = stem[:80]
    taken = set(taken)
    out, i = stem, 2
    while out in taken:
        out, i = f"{stem}-{i}", i + 1
    return out


def copy_plotly_js(dest: str | os.PathLike) -> Path:
    """Copy the installed plotly.js to `dest` (a folder) for pages that load it from a relative path."""
    target = Path(dest) / PLOTLY_JS.name
    shutil.copyfile(PLOTLY_JS, target)
    return target


__all__: Sequence[str] = ("FigureExportError", "PngRenderer", "RENDERER", "copy_plotly_js", "csv_bytes", "csv_text",
                          "figure_size", "figure_table", "find_chromium", "html_text", "png_bytes", "require_chromium",
                          "run_files", "run_zip_bytes", "safe_stem", "validated", "write_run_zip")
