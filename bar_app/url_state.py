"""The page's state in its URL, so a copied link opens the same set-up and the same view.

    ?page=runs|compare        the page (the Train & watch page is the default and has no parameter)
    &view=barrier             the view on the Train & watch page (first word of its label)
    &run=NAME                 the replayed run, by its name in the runs table ("demo", "sweep1/b0.125-s0")
    &compare=A,B              the compared runs
    &budget=1/8&lam=1e-05...  every set-up field that differs from the defaults, by its setting's name

A link is read once, when a session opens it: each parameter is checked as the CLI checks the same
option, and one that fails, or that is unknown, is ignored and named in a warning (the field keeps its
default). Afterwards every full run of the page writes the parameters back.
"""
from __future__ import annotations

import math
from fractions import Fraction

import streamlit as st

from bar_app.runs_page import COMPARE, RUNS, WATCH, budget_text
from bar_app.views.registry import VIEWS
from bar_app.views.setup import FORM_SETTINGS, config_from_values, load_config
from bar_core.catalog import run_path
from bar_core.config import ConfigError, Setting, TrainConfig
from bar_core.runs import RunFolderError

PAGE_SLUGS = {WATCH: "watch", RUNS: "runs", COMPARE: "compare"}
VIEW_SLUGS = {v.label: v.slug for v in VIEWS}
IGNORED = "url_ignored"
_TRUE, _FALSE = ("true", "1", "on", "yes"), ("false", "0", "off", "no")


def parse_value(s: Setting, text: str):
    """A parameter's text as the setting's value (ValueError when it is not one of its type)."""
    if s.type is bool:
        if text.lower() in _TRUE + _FALSE:
            return text.lower() in _TRUE
        raise ValueError(f"{s.name} must be true or false, got {text!r}")
    if s.optional and text.lower() in ("", "none"):
        return None
    if s.type is int:
        try:
            return int(text)
        except ValueError:
            raise ValueError(f"{s.name} must be an integer, got {text!r}") from None
    if s.type is float:
        try:
            return float(Fraction(text)) if "/" in text else float(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"{s.name} must be a number, got {text!r}") from None
    return text


def format_value(s: Setting, value) -> str:
    if value is None:
        return "none"
    if s.type is bool:
        return "true" if value else "false"
    if s.name == "budget":
        return budget_text(value)
    if s.type is float:
        return f"{value:.10g}"
    return str(value)


def _settings_from(params: dict[str, str], ignored: list[str]) -> dict:
    by_name = {s.name: s for s in FORM_SETTINGS}
    valid = {}
    for key, text in params.items():
        s = by_name.get(key)
        if s is None:
            continue
        try:
            value = parse_value(s, text)
        except ValueError as exc:
            ignored.append(f"{key}={text!r}: {exc}")
            continue
        problem = s.check(value)
        if problem:
            ignored.append(f"{key}={text!r}: {problem}")
        else:
            valid[key] = value
    return valid


def restore_from_url(runs_root) -> None:
    """Once per session: the URL's parameters into the form and the page's pickers."""
    if st.session_state.get("_url_restored"):
        return
    st.session_state["_url_restored"] = True
    params = {k: st.query_params.get(k) for k in st.query_params}
    ignored: list[str] = []
    known = {"page", "view", "run", "compare", "host", *(s.name for s in FORM_SETTINGS)}
    ignored += [f"{k}: not a parameter of this page" for k in params if k not in known]
    valid = _settings_from(params, ignored)
    if valid:
        try:
            cfg = TrainConfig(**{**TrainConfig().to_dict(), **valid}).validate()
        except ConfigError as exc:  # each value is fine alone, not together (e.g. gate_init with gamma, zeta)
            ignored.append(f"{', '.join(sorted(valid))}: {exc}")
        else:
            load_config(cfg)
            st.session_state["setup_edit"] = False
    for param, slugs, state_key in (("page", PAGE_SLUGS, "page"), ("view", VIEW_SLUGS, "view_tabs")):
        value = params.get(param)
        if value is None:
            continue
        by_slug = {v: k for k, v in slugs.items()}
        if value in by_slug:
            st.session_state[state_key] = by_slug[value]
        else:
            ignored.append(f"{param}={value!r}: allowed: {', '.join(slugs.values())}")
    run = params.get("run")
    if run is not None:
        try:
            st.session_state.update(show="__path__", run_path=str(run_path(runs_root, run)))
        except RunFolderError as exc:
            ignored.append(f"run={run!r}: {exc}")
    compare = params.get("compare")
    if compare is not None:
        st.session_state["compare_runs"] = [n for n in compare.split(",") if n]
    st.session_state[IGNORED] = ignored


def show_ignored() -> None:
    """The warning that names the parameters a link held that were ignored (once)."""
    ignored = st.session_state.pop(IGNORED, None)
    if ignored:
        st.warning("This link's parameters were partly ignored (those fields keep their defaults):  \n"
                   + "  \n".join(f"- {line}" for line in ignored), icon="⚠️")


def _run_name(runs_root, path: str) -> str | None:
    """A replayed folder's name in the runs table, or None when it lies outside the runs folder."""
    from pathlib import Path

    try:
        rel = Path(path).expanduser().resolve().relative_to(Path(runs_root).resolve())
    except (ValueError, OSError):
        return None
    return rel.as_posix() if 1 <= len(rel.parts) <= 2 else None


def current_params(runs_root) -> dict[str, str]:
    """The parameters that describe the page as it is now."""
    state = st.session_state
    out: dict[str, str] = {}
    page = state.get("page", WATCH)
    if page != WATCH:
        out["page"] = PAGE_SLUGS.get(page, "watch")
    if page == WATCH and state.get("view_tabs") in VIEW_SLUGS and state["view_tabs"] != VIEWS[0].label:
        out["view"] = VIEW_SLUGS[state["view_tabs"]]
    if page == WATCH:
        show = state.get("show")
        path = state.get("run_path", "") if show == "__path__" else show
        if path and path not in ("live", "none", "__path__"):
            name = _run_name(runs_root, path)
            if name:
                out["run"] = name
    if page == COMPARE and state.get("compare_runs"):
        out["compare"] = ",".join(state["compare_runs"])
    try:
        cfg = config_from_values(state)
    except (KeyError, TypeError, ValueError):
        return out
    default = TrainConfig()
    for s in FORM_SETTINGS:
        value, base = getattr(cfg, s.name), getattr(default, s.name)
        same = value == base or (isinstance(value, float) and isinstance(base, float)
                                 and math.isclose(value, base, rel_tol=1e-12))
        if not same:
            out[s.name] = format_value(s, value)
    return out


def write_to_url(runs_root) -> None:
    params = current_params(runs_root)
    if params != {k: st.query_params.get(k) for k in st.query_params}:
        st.query_params.from_dict(params)
