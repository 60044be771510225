"""The served app: the page (bar_app/main.py) plus the live-feed route (bar_app/live_feed.py).

`python -m bar_app` and `make run` serve this file; Streamlit finds the `App` below and serves main.py
with one more route, GET bar/feed/<token>, from which the live charts fetch their updates, and refuses
requests whose Host header is not one of its names (bar_app/host_check.py).
"""
from __future__ import annotations

import streamlit as st
from starlette.middleware import Middleware

from bar_app import live_feed
from bar_app.host_check import TrustedHosts

# TrustedHosts: only requests addressed to this server's own names (no DNS rebinding; host_check.py)
app = st.App("main.py", routes=live_feed.routes(), middleware=[Middleware(TrustedHosts)])
