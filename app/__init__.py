"""BAR Explorer's Streamlit dashboard: `python -m app` (or `make run`) serves it on 127.0.0.1.

app/main.py is the page, app/views/ its parts, app/plots.py the pure plot builders and app/state.py
the one job manager shared by every session. The training itself lives in bar_core (no Streamlit).
"""
