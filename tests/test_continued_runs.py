"""What a continued run and one that needed extra prune steps report: the accuracy it had, the steps
past the plan, and a warning that has been answered."""
from __future__ import annotations

import json

from bar_core.job import JobManager
from tests.helpers import tiny_config, wait_for


def test_continue_then_stop_keeps_the_accuracy_of_the_last_epoch(runs_dir):
    manager = JobManager(runs_dir)
    job = manager.start(tiny_config(prune_epochs=30, max_steps_per_epoch=10), name="again")
    wait_for(lambda: len(job.snapshot().epochs) >= 2, timeout=120, what="epoch 1 to end")  # epoch 0, 1
    job.stop()
    assert job.join(60) and job.state == "stopped"
    first = json.loads((runs_dir / "again" / "summary.json").read_text())
    assert first["pruned_accuracy"] is not None
    resumed = manager.start(None, continue_run=runs_dir / "again")
    resumed.stop()  # before an epoch of this session ends
    assert resumed.join(60) and resumed.state == "stopped"
    second = json.loads((runs_dir / "again" / "summary.json").read_text())
    last_epoch = [e for e in resumed.snapshot().epochs if e.get("test_acc") is not None][-1]["test_acc"]
    assert second["pruned_accuracy"] == last_epoch, "the accuracy of the last epoch, not '—'"
    events = [json.loads(line) for line in (runs_dir / "again" / "events.jsonl").read_text().splitlines()]
    states = [e["state"] for e in events if e["kind"] == "status"]
    assert states == ["stopped", "continued", "stopped"], events


def test_extra_prune_steps_read_as_such_and_their_warning_is_answered(runs_dir):
    import streamlit as st

    from tests.test_app import open_app

    st.cache_resource.clear()
    job = JobManager(runs_dir).start(tiny_config(prune_epochs=1, max_steps_per_epoch=4, finetune_epochs=1,
                                                 budget=0.5, extra_prune_steps=400), name="extra")
    assert job.join(180)
    summary = json.loads((runs_dir / "extra" / "summary.json").read_text())
    assert summary["extra_prune_steps"] > 0 and summary["budget_met"], summary
    at = open_app()
    assert at.selectbox(key="show").value == str(runs_dir / "extra")
    from bar_app.views.controls import progress_text
    from bar_core.history import snapshot_from_run

    text = progress_text(snapshot_from_run(runs_dir / "extra"))
    planned = summary["steps"] - summary["extra_prune_steps"]
    assert f"step {summary['steps']} ({planned} planned + {summary['extra_prune_steps']} extra prune steps)" in text, text
    assert not [w.value for w in at.warning if "when the schedule ends" in w.value], "answered since"
    info = [i.value for i in at.info if "extra prune steps at b = B·V0 then brought V under the budget" in i.value]
    assert info and f"{summary['extra_prune_steps']} extra prune steps" in info[0]
    st.cache_resource.clear()


def test_a_run_far_slower_than_this_machine_did_before_says_why(runs_dir):
    import pandas as pd
    import streamlit as st

    from bar_app.state import get_manager
    from tests.test_app import open_app

    st.cache_resource.clear()
    cfg = tiny_config(prune_epochs=40, max_steps_per_epoch=10)
    before = JobManager(runs_dir).start(tiny_config(), name="before")
    assert before.join(120)
    (runs_dir / "before" / "config.json").write_text(json.dumps(cfg.to_dict()))
    metrics = pd.read_csv(runs_dir / "before" / "metrics.csv")
    metrics["images_per_s"] = 1e7  # as if this machine had trained the same set-up much faster
    metrics.to_csv(runs_dir / "before" / "metrics.csv", index=False)
    job = get_manager().start(cfg, name="now")
    try:
        wait_for(lambda: job.snapshot().n_steps >= 40, timeout=120, what="40 steps")
        at = open_app()
        hints = [w.value for w in at.warning if "far below" in w.value]
        assert hints and "this machine did with the same set-up before (before)" in hints[0], hints
    finally:
        job.stop()
        job.join(60)
        st.cache_resource.clear()
