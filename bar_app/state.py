"""The one JobManager of this server, shared by every session and tab (`st.cache_resource`, global).

A browser reload or a second tab finds the running job here; a session-scoped home would orphan a
running thread on reload. Clearing the cache (tests) stops the job first through `on_release`.
`start_job` is how every button starts one (Start, Resume after Stop, Continue this run);
`start_sweep` starts or continues a sweep.
"""
from __future__ import annotations

import re

import streamlit as st

from bar_app.classroom import VIEWER_NOTE, session_is_host
from bar_core.config import SETTINGS
from bar_core.job import USER_ERRORS, JobBusy, JobManager, default_runs_root


def _release(manager: JobManager) -> None:
    manager.shutdown(timeout=30.0)


@st.cache_resource(show_spinner=False, on_release=_release)
def get_manager() -> JobManager:
    return JobManager(default_runs_root())


def start_job(message_key: str, verb: str, spinner: str, **start_kwargs) -> bool:
    """Start a job (or continue a stopped run) through the one manager and show it live. On failure
    the one-line reason goes to session_state[message_key] ("Not <verb>: ...") and the page stays
    usable, whatever went wrong."""
    return _start(lambda: get_manager().start(**start_kwargs), message_key, verb, spinner)


def start_sweep(message_key: str, verb: str, spinner: str, **start_sweep_kwargs) -> bool:
    """As start_job, for a sweep: `JobManager.start_sweep(config=, budgets=, seeds=, name=)` (or
    `config=None, name=` to continue a stopped sweep as its sweep.json asks)."""
    return _start(lambda: get_manager().start_sweep(**start_sweep_kwargs), message_key, verb, spinner)


def start_series(message_key: str, verb: str, spinner: str, **start_series_kwargs) -> bool:
    """As start_job, for a series of runs: `JobManager.start_series(runs=, title=)`."""
    return _start(lambda: get_manager().start_series(**start_series_kwargs), message_key, verb, spinner)


def host_only(action):
    """`action` as a button callback that does nothing in a viewer's session (classroom mode)."""
    def guarded(*args, **kwargs):
        if session_is_host():
            return action(*args, **kwargs)
    return guarded


def in_app_terms(message: str) -> str:
    """A library message in the form's words: a CLI option (--data-root, --download) becomes the field's
    label. Longest flags first, so --kd-alpha is not read as --kd."""
    for s in sorted(SETTINGS, key=lambda s: -len(s.flag)):
        label = f"“{s.title}”" + (" (under Advanced)" if s.advanced else "")

        def field(m: re.Match, label=label) -> str:
            value = m.group(1) if m.groups() else None
            return label if value is None or value.isupper() else f"{label} = {value}"
        value = "" if s.type is bool else r"(?:\s+([A-Za-z][\w.]*)\b)?"  # an on/off option takes no value
        message = re.sub(rf"{re.escape(s.flag)}(?![\w-]){value}", field, message)
    return message


def _start(start, message_key: str, verb: str, spinner: str) -> bool:
    st.session_state.pop(message_key, None)
    if not session_is_host():  # a viewer's forged button message must not start anything
        st.session_state[message_key] = f"Not {verb}: {VIEWER_NOTE}"
        return False
    try:
        with st.spinner(spinner):
            start()
    except (JobBusy, *USER_ERRORS) as exc:
        st.session_state[message_key] = f"Not {verb}: {in_app_terms(str(exc))}"
        return False
    except Exception as exc:  # noqa: BLE001 - keep the app usable whatever happened
        st.session_state[message_key] = f"Not {verb}: {type(exc).__name__}: {exc}".splitlines()[0]
        return False
    st.session_state["show"] = "live"
    return True
