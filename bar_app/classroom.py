"""Classroom mode (`bar app --share`): students watch every view; only the host acts on jobs and runs.

The launcher puts a secret token in BAR_CLASSROOM_TOKEN; the host's link carries it as `?host=TOKEN`.
Without the variable every session is the host, as on a one-user laptop.
"""
from __future__ import annotations

import hmac
import os
import secrets

ENV = "BAR_CLASSROOM_TOKEN"
PARAM = "host"
HOST_KEY = "_classroom_host"
VIEWER_NOTE = "Viewing the host's training; only the host can change it."


def new_token() -> str:
    return secrets.token_urlsafe(24)


def classroom_token() -> str | None:
    """The host's token when the server runs in classroom mode, else None."""
    return os.environ.get(ENV) or None


def is_host(session_state, query_params) -> bool:
    """True outside classroom mode, or for a session whose URL held the token once (remembered, so a
    link without it keeps the session the host)."""
    token = classroom_token()
    if token is None:
        return True
    if session_state.get(HOST_KEY) == token:
        return True
    given = query_params.get(PARAM)
    if isinstance(given, str) and hmac.compare_digest(given.encode(), token.encode()):
        session_state[HOST_KEY] = token
        return True
    return False


def session_is_host() -> bool:
    """is_host for the current Streamlit session: what every acting callback checks server-side."""
    import streamlit as st
    return is_host(st.session_state, st.query_params)
