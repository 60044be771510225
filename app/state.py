"""The one JobManager of this server, shared by every session and tab (`st.cache_resource`, global).

A browser reload or a second tab finds the running job here; a session-scoped home would orphan a
running thread on reload. Clearing the cache (tests) stops the job first through `on_release`.
"""
from __future__ import annotations

import streamlit as st

from bar_core.job import JobManager, default_runs_root


def _release(manager: JobManager) -> None:
    manager.shutdown(timeout=30.0)


@st.cache_resource(show_spinner=False, on_release=_release)
def get_manager() -> JobManager:
    return JobManager(default_runs_root())
