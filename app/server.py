"""The served app: the page (app/main.py) plus the live-feed route (app/live_feed.py).

`python -m app` and `make run` serve this file; Streamlit finds the `App` below and serves main.py
with one more route, GET bar/feed/<token>, from which the live charts fetch their updates.
"""
from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # Streamlit puts app/ on the path, not the repository root
    sys.path.insert(0, str(ROOT))

import streamlit as st  # noqa: E402

from app import live_feed  # noqa: E402

app = st.App("main.py", routes=live_feed.routes())
