"""The dashboard's views, each declared once, and the page parts that pick, explain and draw them.

A view is a module with `render(snapshot, namespace, live)`; adding one is its file and one line in
VIEWS. Everything else (the picker's labels, the teaching notes, which views follow the training
through feeds and what the live fragment watches for them) is read from here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import streamlit as st

from bar_app.text import literal
from bar_app.views import barrier, connectivity, explain, gates, hard_concrete, replay, sandbox, training, volume
from bar_app.views.common import Live, run_namespace
from bar_core.history import RunSnapshot


@dataclass(frozen=True)
class View:
    """One view: its label in the picker, how it is drawn, its teaching note, and how it moves.

    every_step: it is drawn anew at every training step, so with a live job it updates through feeds
    (it gets `live`); the others move once an epoch (or with their own widgets), and the live fragment
    reruns when a new epoch arrives.
    feeds_only: all it shows moves through its feeds, so the fragment need not rerun on a new phase.
    slug: its name in a link (`?view=sandbox`).
    """
    label: str
    render: Callable[[RunSnapshot | None, str, Live | None], None]
    title: str
    note: str
    slug: str
    every_step: bool = False
    feeds_only: bool = False
    evidence: Callable[[], None] | None = None  # drawn in the note under its text: a measured figure


VIEWS: tuple[View, ...] = (
    View("Volume & budget", volume.render, "volume and the moving budget", explain.VOLUME, "volume",
         every_step=True, feeds_only=True),
    View("Barrier", barrier.render, "the barrier f(V, a, b)", explain.BARRIER, "barrier", every_step=True,
         evidence=barrier.render_lambda_evidence),
    View("Barrier sandbox", sandbox.render, "the barrier sandbox (no training)", explain.SANDBOX, "sandbox"),
    View("Gates", gates.render, "gate probabilities P(z > 0)", explain.GATES, "gates"),
    View("Hard Concrete", hard_concrete.render, "the Hard Concrete gate", explain.HARD_CONCRETE, "hard"),
    View("Connectivity", connectivity.render, "mixed connectivity", explain.CONNECTIVITY, "connectivity"),
    View("Accuracy & speed", training.render, "accuracy, loss terms and speed", explain.TRAINING, "accuracy",
         every_step=True, feeds_only=True),
    View("Replay", replay.render, "a finished run played again", explain.REPLAY, "replay"),
)
BY_LABEL = {v.label: v for v in VIEWS}
LABELS = tuple(BY_LABEL)


def render_view_picker() -> View:
    """The row that picks one of the views (returns it). A segmented control outside the live
    fragment, not st.tabs: a page holding st.tabs costs the browser a few hundredths of a core more at
    a 1 s refresh wherever the tabs sit, and on a 2-core laptop that is taken from training."""
    if st.session_state.get("view_tabs") not in BY_LABEL:
        st.session_state["view_tabs"] = LABELS[0]
    st.segmented_control("View", LABELS, key="view_tabs", required=True, label_visibility="collapsed",
                         width="stretch")
    return BY_LABEL[st.session_state["view_tabs"]]


def render_explanation(view: View) -> None:
    """The chosen view's teaching note, collapsed (outside the live fragment: not redrawn every second)."""
    with st.expander(f"What am I looking at? — {view.title}"):
        st.markdown(view.note)
        if view.evidence is not None:
            view.evidence()


def render_view(view: View, snap: RunSnapshot | None, live: Live | None = None) -> None:
    """The chosen view's live part. Only that one is computed and sent: a live redraw costs one view,
    not all, on the server and in the browser, which share the CPU with training. With `live`, the
    views that move at every step update through feeds."""
    try:
        view.render(snap, run_namespace(snap), live if view.every_step else None)
    except Exception as exc:  # noqa: BLE001 - one broken view must not take the page down
        st.error(literal(f"This view could not be drawn: {type(exc).__name__}: {exc}".splitlines()[0]))
