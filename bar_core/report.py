"""`bar report RUN_OR_SWEEP --out DIR`: a run's or a sweep's figures and tables as files, and an
index.html that shows them with the settings and the outcome (the page to attach to slides or a paper).

A run's report:

    index.html          the figures (PNG), the summary, the tables and the settings; links to the rest
    figures/NAME.png    every figure of bar_core/figures.py's run_figures, PNG_SCALE × PNG_WIDTH pixels wide
    figures/NAME.html   the same figure, interactive (offline: plotly.js from ../plotly.min.js)
    data/NAME.csv       the data each figure draws (trace, x, y[, z])
    tables/*.csv        layers (kept channels per layer), epochs, summary, settings
    plotly.min.js       one copy of plotly.js for every interactive page (about 4.8 MB; inlined in each
                        page, a report of 15 figures would weigh 70 MB)
    report.json         what was written, for scripts

A sweep's report (a folder holding sweep.json and run folders) has the accuracy-versus-pruning-factor
figure (figures/pareto.*), the runs table (tables/runs.csv) and one run report per run under runs/NAME/.

Every text that comes from the user or the run (names, paths, settings, error and warning messages)
is escaped into index.html. Bad input (a path that is neither a run nor a sweep, an --out that is a
file or a non-empty folder that holds no earlier report) raises RunFolderError before anything is
written; the report is built in a hidden folder next to --out and renamed into place when complete,
replacing an earlier report there.
"""
from __future__ import annotations

import html
import json
import math
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from . import __version__, figures
from .catalog import COLUMNS, SWEEP_FILE, RunRow, run_row
from .export_files import (
    RENDERER,
    FigureExportError,
    copy_plotly_js,
    csv_text,
    figure_size,
    figure_table,
    html_text,
    require_chromium,
    safe_stem,
)
from .history import RunSnapshot, snapshot_from_run
from .runs import RunFolderError, holds_run

GENERATOR = "bar-explorer report"
MARKER = f'<meta name="generator" content="{GENERATOR}">'  # how a later `bar report` knows its own folder
PNG_WIDTH = 1000   # CSS pixels
PNG_SCALE = 2      # PNG pixels per CSS pixel: sharp on slides and in print
TABLE_ROWS = 200   # rows of a table shown in index.html (the CSV has them all)
SWEEP_COLUMNS = [c for c in COLUMNS if c != "path"]  # a report travels: no local absolute paths in it

Log = Callable[[str], None]


# ------------------------------------------------------------------------------------------------
# The command


def main(args) -> int:
    """The `report` subcommand: bad input raises RunFolderError (the CLI prints it, exit 2); a missing
    or failing Chromium is printed here as one line, exit 2, with nothing written."""
    try:
        index = write_report(args.path, args.out, log=lambda m: print(m, file=sys.stderr))
    except FigureExportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"report written: {index}")
    return 0


def source_kind(path: Path) -> str:
    """"run" or "sweep" for a folder `bar report` can read; RunFolderError otherwise."""
    if not path.exists():
        raise RunFolderError(f"{str(path)!r} does not exist; give a run folder or a sweep folder")
    if not path.is_dir():
        raise RunFolderError(f"{str(path)!r} is a file; give a run folder (config.json, metrics.csv, ...) "
                             f"or a sweep folder (sweep.json and run folders)")
    if holds_run(path):
        return "run"
    if (path / SWEEP_FILE).is_file():
        if not sweep_runs(path):
            raise RunFolderError(f"sweep folder {str(path)!r} holds no run folders yet")
        return "sweep"
    raise RunFolderError(f"{str(path)!r} is neither a run folder (config.json, metrics.csv, ...) nor a sweep "
                         f"folder ({SWEEP_FILE} and run folders)")


def is_report(path: Path) -> bool:
    """Whether `path` holds an index.html written by this command."""
    try:
        with open(path / "index.html", encoding="utf-8", errors="replace") as f:
            return MARKER in f.read(4096)
    except OSError:
        return False


def check_out(out: Path) -> None:
    """Refuse an --out that is a file, or a non-empty folder that is not an earlier report."""
    if out.exists() and not out.is_dir():
        raise RunFolderError(f"--out {str(out)!r} is a file; give a folder for the report")
    if out.is_dir() and any(out.iterdir()) and not is_report(out):
        raise RunFolderError(f"--out {str(out)!r} is not empty and holds no earlier report (an index.html written "
                             f"by `bar report`); choose a new or empty folder")
    parent = out.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise RunFolderError(f"--out {str(out)!r} cannot be made: {str(parent)!r} is a file")


def load_snapshot(path: Path) -> RunSnapshot:
    """The run's snapshot; a folder that cannot be read is a one-line RunFolderError."""
    try:
        snap = snapshot_from_run(path)
    except RunFolderError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise RunFolderError(f"cannot read run folder {str(path)!r}: {type(exc).__name__}: {_line(exc)}") from None
    if snap.problems and not snap.has_steps:  # damaged past reporting: say what
        raise RunFolderError(f"cannot read run folder {str(path)!r}: {snap.problems[0]}")
    return snap


def write_report(source: str | os.PathLike, out: str | os.PathLike, *, scale: float = PNG_SCALE,
                 width: int = PNG_WIDTH, heatmaps: bool = True, log: Log | None = None) -> Path:
    """Write the report of the run or sweep folder `source` into `out`; returns its index.html.
    `heatmaps`: a channel × epoch heatmap per gated layer (the slowest part: one PNG per layer).

    Checked first, nothing written when refused: `source` (RunFolderError), `out` (RunFolderError),
    a browser for the PNGs (FigureExportError). The report appears whole or not at all."""
    source, out = Path(source), Path(out)
    kind = source_kind(source)
    check_out(out)
    snap = load_snapshot(source) if kind == "run" else None
    require_chromium()
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.report-", dir=out.parent))
    except OSError as exc:
        raise RunFolderError(f"cannot write the report to {str(out)!r}: {exc.strerror or exc}") from None
    try:
        umask = os.umask(0)
        os.umask(umask)
        staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a report is an ordinary folder
        copy_plotly_js(staging)
        with RENDERER.session():
            if kind == "run":
                write_run_report(snap, staging, source=source, scale=scale, width=width, heatmaps=heatmaps, log=log)
            else:
                write_sweep_report(source, staging, scale=scale, width=width, heatmaps=heatmaps, log=log)
        _swap_into_place(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out / "index.html"


def _swap_into_place(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{os.getpid()}-{time.time_ns()}"
        os.replace(out, old)
    os.replace(staging, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# ------------------------------------------------------------------------------------------------
# A run's report


def write_figure(fig, name: str, title: str, folder: Path, *, js: str, scale: float, width: int) -> dict:
    """figures/NAME.png and .html and data/NAME.csv under `folder`; `js` is plotly.js's path relative
    to figures/. Returns the entry report.json and index.html list."""
    w, h = figure_size(fig, width)
    (folder / "figures").mkdir(exist_ok=True)
    (folder / "data").mkdir(exist_ok=True)
    (folder / "figures" / f"{name}.png").write_bytes(RENDERER.png(fig, width=w, height=h, scale=scale))
    (folder / "figures" / f"{name}.html").write_text(html_text(fig, plotlyjs=js, title=title), encoding="utf-8")
    (folder / "data" / f"{name}.csv").write_text(csv_text(figure_table(fig)), encoding="utf-8")
    return {"name": name, "title": title, "png": f"figures/{name}.png", "html": f"figures/{name}.html",
            "csv": f"data/{name}.csv", "width": w, "height": h, "scale": scale}


def write_tables(tables: dict, folder: Path) -> list[dict]:
    (folder / "tables").mkdir(exist_ok=True)
    out = []
    for name, frame in tables.items():
        (folder / "tables" / f"{name}.csv").write_text(csv_text(frame), encoding="utf-8")
        out.append({"name": name, "csv": f"tables/{name}.csv", "rows": len(frame)})
    return out


def write_run_report(snap: RunSnapshot, folder: Path, *, source: Path, root: str = "", scale: float = PNG_SCALE,
                     width: int = PNG_WIDTH, heatmaps: bool = True, back: tuple[str, str] | None = None,
                     log: Log | None = None) -> dict:
    """A run's report into `folder` (which exists). `root`: the path from `folder` to the report's top
    (where plotly.min.js is), "" or "runs/NAME/"'s "../../"; `back`: (href, text) of a link up."""
    name = source.resolve().name
    entries = []
    for nf in figures.run_figures(snap, heatmaps=heatmaps):
        entries.append({**write_figure(nf.figure, nf.name, nf.title, folder, js=f"../{root}plotly.min.js",
                                       scale=scale, width=width), "view": nf.view})
        if log:
            log(f"report: {name}: {nf.name}")
    tables = figures.run_tables(snap)
    table_entries = write_tables(tables, folder)
    meta = {"generator": GENERATOR, "version": __version__, "kind": "run", "name": name, "source": str(source),
            "state": snap.state, "written": time.strftime("%Y-%m-%d %H:%M:%S"), "figures": entries,
            "tables": table_entries}
    (folder / "report.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / "index.html").write_text(run_index(snap, name, source, entries, tables, back=back), encoding="utf-8")
    return meta


# ------------------------------------------------------------------------------------------------
# A sweep's report


def sweep_runs(sweep_dir: Path) -> list[Path]:
    """The run folders directly inside a sweep folder, by name (hidden ones skipped: being written)."""
    return sorted((p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".") and holds_run(p)),
                  key=lambda p: p.name)


def sweep_rows(sweep_dir: Path) -> list[RunRow]:
    """The runs table rows (bar_core.catalog.run_row) of a sweep's runs, by pruning factor, seed, name."""
    rows = [run_row(p, name=p.name, sweep=sweep_dir.name) for p in sweep_runs(sweep_dir)]
    return sorted(rows, key=lambda r: (r.pruning_factor if r.pruning_factor is not None else math.inf,
                                       r.seed if r.seed is not None else -1, r.name))


def sweep_table(rows: list[RunRow], errors: dict[str, str] | None = None):
    """The sweep's runs as a DataFrame: the runs table's columns (no local path) and each run's error."""
    import pandas as pd

    errors = errors or {}
    data = [{**{c: r.as_dict()[c] for c in SWEEP_COLUMNS}, "error": errors.get(r.name)} for r in rows]
    frame = pd.DataFrame(data, columns=[*SWEEP_COLUMNS, "error"])
    return frame.astype(object).where(frame.notna(), math.nan)


def teacher_accuracy(rows: list[RunRow]) -> float | None:
    """The dense teacher's accuracy across the sweep's runs (their median: all share one teacher)."""
    values = [r.teacher_accuracy for r in rows if r.teacher_accuracy is not None]
    return statistics.median(values) if values else None


def read_sweep_file(sweep_dir: Path) -> tuple[object, str | None]:
    """(sweep.json's content, None) or (None, why it cannot be read)."""
    try:
        return json.loads((sweep_dir / SWEEP_FILE).read_text(encoding="utf-8")), None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        return None, f"{SWEEP_FILE} cannot be read: {_line(exc)}"


def write_sweep_report(sweep_dir: Path, folder: Path, *, scale: float = PNG_SCALE, width: int = PNG_WIDTH,
                       heatmaps: bool = True, log: Log | None = None) -> dict:
    """A sweep's report into `folder`: the Pareto figure, the runs table, and a run report per run."""
    rows = sweep_rows(sweep_dir)
    name = sweep_dir.resolve().name
    runs, errors, taken = [], {}, set()
    (folder / "runs").mkdir()
    for i, row in enumerate(rows, 1):
        stem = safe_stem(row.name, taken)
        taken.add(stem)
        entry = {"name": row.name, "state": row.state, "report": None, "problem": row.problem}
        try:
            snap = load_snapshot(Path(row.path))
        except RunFolderError as exc:
            entry["problem"] = str(exc)
        else:
            if snap.error:
                errors[row.name] = snap.error
            sub = folder / "runs" / stem
            sub.mkdir()
            if log:
                log(f"report: run {i}/{len(rows)}: {row.name}")
            write_run_report(snap, sub, source=Path(row.path), root="../../", scale=scale, width=width,
                             heatmaps=heatmaps, back=("../../index.html", f"sweep {name}"))
            entry["report"] = f"runs/{stem}/index.html"
        runs.append(entry)
    teacher = teacher_accuracy(rows)
    pareto = figures.pareto_figure([r.as_dict() for r in rows], teacher,
                                   title=f"Accuracy against the pruning factor: sweep {name} ({len(rows)} runs)")
    entries = [{**write_figure(pareto, "pareto", "Accuracy against the pruning factor", folder,
                               js="../plotly.min.js", scale=scale, width=width), "view": "Compare"}]
    table = sweep_table(rows, errors)
    table_entries = write_tables({"runs": table}, folder)
    settings, problem = read_sweep_file(sweep_dir)
    meta = {"generator": GENERATOR, "version": __version__, "kind": "sweep", "name": name, "source": str(sweep_dir),
            "written": time.strftime("%Y-%m-%d %H:%M:%S"), "teacher_accuracy": teacher, "figures": entries,
            "tables": table_entries, "runs": runs}
    (folder / "report.json").write_text(json.dumps(meta, indent=2, default=str) + "\n", encoding="utf-8")
    (folder / "index.html").write_text(sweep_index(name, sweep_dir, entries, table, runs, settings, problem, teacher),
                                       encoding="utf-8")
    return meta


# ------------------------------------------------------------------------------------------------
# index.html: every text from the run or the user goes through esc()


def esc(value) -> str:
    return html.escape(str(value), quote=True)


def href(path: str) -> str:
    """A relative link: each segment URL-quoted, then escaped for the attribute."""
    return esc(quote(path, safe="/"))


def _line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _fmt(v) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


def html_table(frame, max_rows: int = TABLE_ROWS) -> str:
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = "\n".join("<tr>" + "".join(f"<td>{esc(_fmt(v))}</td>" for v in row) + "</tr>"
                     for row in frame.head(max_rows).itertuples(index=False))
    more = (f'<p class="note">{len(frame) - max_rows} more rows in the CSV.</p>' if len(frame) > max_rows else "")
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>\n{body}\n</tbody></table></div>{more}'


def key_values(pairs) -> str:
    rows = "\n".join(f"<tr><th>{esc(k)}</th><td>{esc(_fmt(v))}</td></tr>" for k, v in pairs)
    return f'<table class="kv"><tbody>\n{rows}\n</tbody></table>'


STYLE = """
body { font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: #222; margin: 0 auto;
       max-width: 1100px; padding: 1.5em; }
h1 { font-size: 1.6em; margin-bottom: .2em; } h2 { margin-top: 2em; border-bottom: 1px solid #ddd; }
.meta, .note { color: #666; font-size: .9em; } .error { background: #fdecea; border-left: 4px solid #d62728;
padding: .6em 1em; white-space: pre-wrap; } .warning { background: #fff8e1; border-left: 4px solid #ff9800;
padding: .4em 1em; }
figure { margin: 1.5em 0; } figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .95em; } table { border-collapse: collapse; font-size: .85em; }
th, td { border: 1px solid #ddd; padding: .2em .5em; text-align: left; vertical-align: top; }
table.kv th { background: #fafafa; font-weight: 600; } .scroll { overflow-x: auto; }
nav { font-size: .9em; } code { background: #f4f4f4; padding: 0 .2em; }
"""


def page(title: str, body: str) -> str:
    """A whole index.html around `body` (already escaped); `title` is escaped here."""
    return (f'<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n{MARKER}\n'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{esc(title)}</title>\n'
            f"<style>{STYLE}</style>\n</head>\n<body>\n{body}\n"
            f'<footer class="note"><p>Written by <code>bar report</code> (BAR Explorer {esc(__version__)}) on '
            f"{esc(time.strftime('%Y-%m-%d %H:%M'))}. The PNGs are {PNG_WIDTH}×(height) CSS pixels at ×{PNG_SCALE}; "
            f"the interactive pages need this folder's plotly.min.js (no network).</p></footer>\n</body>\n</html>\n")


def figure_section(entries: list[dict]) -> str:
    toc = "\n".join(f'<li><a href="#fig-{esc(e["name"])}">{esc(e["title"])}</a></li>' for e in entries)
    items = []
    for e in entries:
        items.append(
            f'<figure id="fig-{esc(e["name"])}">\n<img src="{href(e["png"])}" alt="{esc(e["title"])}" '
            f'width="{int(e["width"])}" height="{int(e["height"])}" loading="lazy">\n'
            f'<figcaption>{esc(e["title"])} — <a href="{href(e["png"])}">PNG</a> · '
            f'<a href="{href(e["html"])}">interactive</a> · <a href="{href(e["csv"])}">data (CSV)</a></figcaption>\n'
            f"</figure>")
    return f'<h2 id="figures">Figures</h2>\n<ol class="toc">\n{toc}\n</ol>\n' + "\n".join(items)


SUMMARY_KEYS = (("state", "state"), ("budget", "budget B"), ("pruning_factor", "pruning factor 1/B"),
                ("volume_ratio", "V/V0 reached"), ("budget_met", "budget met"),
                ("teacher_accuracy", "teacher accuracy"), ("pruned_accuracy", "pruned accuracy"),
                ("accuracy_drop", "accuracy drop"), ("kept_channels", "channels kept"),
                ("total_channels", "channels in all"), ("steps", "steps"),
                ("steps_over_budget", "steps with V ≥ b"), ("wall_seconds", "wall time (s)"), ("device", "device"),
                ("threads", "threads"))


def run_index(snap: RunSnapshot, name: str, source: Path, entries: list[dict], tables: dict,
              back: tuple[str, str] | None = None) -> str:
    summary = snap.summary or {}
    parts = []
    if back:
        parts.append(f'<nav><a href="{href(back[0])}">← {esc(back[1])}</a></nav>')
    cfg = snap.config
    subtitle = " · ".join(esc(x) for x in (cfg.get("model"), cfg.get("dataset"), cfg.get("method", "bar"),
                                           f"B = {cfg.get('budget')}") if x)
    parts.append(f"<h1>Run {esc(name)}</h1>\n<p class=\"meta\">{subtitle}<br>from <code>{esc(source)}</code> · "
                 f"state: {esc(snap.state)}</p>")
    if snap.error:
        parts.append(f'<p class="error">Error: {esc(snap.error)}</p>')
    for w in snap.warnings:
        parts.append(f'<p class="warning">Warning: {esc(w)}</p>')
    shown = [(label, summary.get(k, snap.state if k == "state" else None)) for k, label in SUMMARY_KEYS
             if k in summary or k == "state"]
    parts.append('<h2 id="summary">Summary</h2>\n' + key_values(shown) +
                 f'\n<p class="note">Every key: <a href="{href("tables/summary.csv")}">summary.csv</a>.</p>')
    parts.append(figure_section(entries) if entries else '<h2 id="figures">Figures</h2>\n<p>No figures yet: '
                 "the run has no steps.</p>")
    parts.append('<h2 id="tables">Tables</h2>')
    for key, label in (("layers", "Channels kept per gated layer (last epoch)"), ("epochs", "Epochs")):
        frame = tables[key]
        parts.append(f"<h3>{esc(label)}</h3>\n" + (html_table(frame) if len(frame) else "<p>None yet.</p>") +
                     f'\n<p class="note"><a href="{href(f"tables/{key}.csv")}">{esc(key)}.csv</a></p>')
    parts.append('<h2 id="settings">Settings</h2>\n' +
                 key_values((k, v if isinstance(v, str) or v is None else json.dumps(v)) for k, v in cfg.items()) +
                 f'\n<p class="note"><a href="{href("tables/settings.csv")}">settings.csv</a>; '
                 f"<code>bar train --config config.json</code> with the run folder's config.json repeats the run.</p>")
    return page(f"BAR run report: {name}", "\n".join(parts))


def sweep_index(name: str, sweep_dir: Path, entries: list[dict], table, runs: list[dict], settings,
                problem: str | None, teacher: float | None) -> str:
    parts = [f"<h1>Sweep {esc(name)}</h1>\n<p class=\"meta\">from <code>{esc(sweep_dir)}</code> · {len(runs)} runs"
             + (f" · dense teacher accuracy {100 * teacher:.2f}%" if teacher is not None else "") + "</p>"]
    parts.append(figure_section(entries))
    parts.append('<h2 id="runs">Runs</h2>')
    head = ("run", "state", "budget", "pruning factor", "V/V0", "pruned accuracy", "accuracy drop", "steps with V ≥ b",
            "error or problem")
    by_name = {r["name"]: r for r in runs}
    rows = []
    for rec in table.to_dict("records"):
        entry = by_name.get(rec["name"], {})
        link = (f'<a href="{href(entry["report"])}">{esc(rec["name"])}</a>' if entry.get("report")
                else esc(rec["name"]))
        problem_text = entry.get("problem") or rec.get("error")
        cells = [link] + [esc(_fmt(rec.get(k))) for k in ("state", "budget", "pruning_factor", "volume_ratio",
                                                          "pruned_accuracy", "accuracy_drop", "steps_over_budget")]
        cells.append(esc(_fmt(problem_text)))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append('<div class="scroll"><table><thead><tr>' + "".join(f"<th>{esc(h)}</th>" for h in head) +
                 "</tr></thead><tbody>\n" + "\n".join(rows) + "\n</tbody></table></div>" +
                 f'\n<p class="note">Every column: <a href="{href("tables/runs.csv")}">runs.csv</a>. Each run\'s '
                 f"name links to its own report.</p>")
    parts.append(f'<h2 id="settings">Sweep settings ({esc(SWEEP_FILE)})</h2>')
    if problem:
        parts.append(f'<p class="warning">{esc(problem)}</p>')
    elif isinstance(settings, dict):
        parts.append(key_values((k, v if isinstance(v, str) else json.dumps(v)) for k, v in settings.items()))
    else:
        parts.append(f"<pre>{esc(json.dumps(settings, indent=2))}</pre>")
    return page(f"BAR sweep report: {name}", "\n".join(parts))
