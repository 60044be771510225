"""The served app: the page (bar_app/main.py) plus the live-feed route (bar_app/live_feed.py).

`python -m bar_app` and `make run` serve this file; Streamlit finds the `App` below and serves main.py
with one more route, GET bar/feed/<token>, from which the live charts fetch their updates.
"""
from __future__ import annotations

import streamlit as st

from bar_app import live_feed

app = st.App("main.py", routes=live_feed.routes())
