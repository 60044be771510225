"""BAR Explorer's Streamlit dashboard: `python -m bar_app` (or `make run`) serves it on 127.0.0.1.

bar_app/main.py is the page, bar_app/views/ its parts, bar_core/plots.py the pure plot builders and bar_app/state.py
the one job manager shared by every session. The training itself lives in bar_core (no Streamlit).
"""
