"""The trainer on real (small) data: determinism, pause/resume/stop, resume from a checkpoint, NaN."""
import threading

import pandas as pd
import pytest
import torch

from bar_core import trainer as trainer_module
from bar_core.config import TrainConfig
from bar_core.records import METRIC_COLUMNS, StepRecord
from bar_core.runs import RunFolder, load_run
from bar_core.trainer import Trainer
from tests.helpers import tiny_config

FAST = dict(dataset="synthetic", teacher="none", pretrain_epochs=1, prune_epochs=2, finetune_epochs=1,
            batch_size=32, max_steps_per_epoch=6, test_limit=100, threads=1, extra_prune_steps=0)


def _run(cfg, path=None):
    records = []
    t = Trainer(cfg)
    if path is not None:
        t.prepare()
        t.run_folder = RunFolder.create(path, cfg)
    t.subscribe(records.append)
    return t, t.run(), records


def test_deterministic_for_a_seed_on_cpu():
    cfg = TrainConfig(**FAST)
    _, s1, r1 = _run(cfg)
    _, s2, r2 = _run(cfg)
    steps1 = [(r.loss, r.volume) for r in r1 if r.kind == "step"]
    steps2 = [(r.loss, r.volume) for r in r2 if r.kind == "step"]
    assert len(steps1) == 4 * 6 and steps1 == steps2
    assert s1["pruned_accuracy"] == s2["pruned_accuracy"]
    _, _, r3 = _run(cfg.replace(seed=1))
    assert [r.loss for r in r3 if r.kind == "step"] != [l for l, _ in steps1]


def test_records_carry_what_the_views_need(tmp_path):
    t, summary, records = _run(TrainConfig(**FAST), tmp_path / "run")
    kinds = [r.kind for r in records]
    assert kinds[0] == "start" and kinds[-1] == "end" and "error" not in kinds
    step = next(r for r in records if r.kind == "step" and r.phase == "prune")
    assert isinstance(step, StepRecord)
    for key in ("step", "phase", "epoch", "loss", "loss_data", "loss_sparsity", "volume", "budget_b", "barrier_a",
                "barrier_f", "volume_ratio", "lr", "gate_lr", "images_per_s", "over_budget"):
        assert key in METRIC_COLUMNS and getattr(step, key) is not None
    assert t.v0 < step.budget_b < 1.01 * t.v0  # the schedule starts just above V0
    epoch = [r for r in records if r.kind == "epoch"][-1]
    assert set(epoch.gates) == {l.name for l in t.layers}
    layer = epoch.gates[t.layers[0].name]
    assert layer["log_alpha"].shape == layer["prob_open"].shape == layer["test_gate"].shape == (t.layers[0].channels,)
    # the run folder holds the same, readable with pandas alone
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    assert list(metrics["step"]) == list(range(summary["steps"]))
    assert set(metrics["phase"]) == {"pretrain", "prune", "finetune"}
    epochs = pd.read_csv(tmp_path / "run" / "epochs.csv")
    assert list(epochs["epoch"]) == [1, 2, 3, 4]
    run = load_run(tmp_path / "run")
    assert [e for e, _ in run.gates] == [1, 2, 3, 4]
    assert run.summary["state"] == "done" and (tmp_path / "run" / "teacher.pt").is_file()


def test_pause_blocks_progress_then_resume_and_stop_saves(tmp_path):
    cfg = TrainConfig(**{**FAST, "max_steps_per_epoch": 30, "prune_epochs": 5})
    t = Trainer(cfg).prepare()
    t.run_folder = RunFolder.create(tmp_path / "run", cfg)
    seen = threading.Event()
    t.subscribe(lambda r: seen.set() if r.kind == "step" and r.step == 10 else None)
    paused = threading.Event()
    t.subscribe(lambda r: paused.set() if r.kind == "status" and r.state == "paused" else None)
    thread = threading.Thread(target=t.run, daemon=True)
    thread.start()
    assert seen.wait(60)
    t.pause()
    assert paused.wait(30)
    at_pause = t.step
    thread.join(0.5)
    assert t.step == at_pause and t.state == "paused", "no steps while paused"
    t.resume()
    t.stop()
    thread.join(60)
    assert not thread.is_alive() and t.state == "stopped"
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["step"] == t.step


def test_resume_continues_where_the_run_stopped(tmp_path):
    cfg = TrainConfig(**FAST)
    _, full, full_records = _run(cfg, tmp_path / "full")
    # stop a second run partway through the prune phase, then resume it from its folder
    t = Trainer(cfg).prepare()
    t.run_folder = RunFolder.create(tmp_path / "part", cfg)
    t.subscribe(lambda r: t.stop() if r.kind == "step" and r.step == 9 else None)
    assert t.run()["state"] == "stopped"
    folder, cfg2, state = RunFolder.open_for_resume(tmp_path / "part")
    t2 = Trainer(cfg2).prepare()
    t2.load_checkpoint_state(state)
    t2.run_folder = folder
    resumed = t2.run()
    assert resumed["state"] == "done" and resumed["steps"] == full["steps"]
    metrics = pd.read_csv(tmp_path / "part" / "metrics.csv")
    assert list(metrics["step"]) == list(range(full["steps"])), "no gap, no duplicate step"
    assert list(pd.read_csv(tmp_path / "part" / "epochs.csv")["epoch"]) == [1, 2, 3, 4]


def test_nan_loss_stops_with_an_error_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = TrainConfig(**FAST)
    real = trainer_module.bar_objective
    calls = {"n": 0}

    def poisoned(*args):
        calls["n"] += 1
        loss = real(*args)
        return loss * float("nan") if calls["n"] == 9 else loss  # step 9 of the prune phase

    monkeypatch.setattr(trainer_module, "bar_objective", poisoned)
    t, summary, records = _run(cfg, tmp_path / "run")
    assert summary["state"] == "error" and "nan" in summary["error"].lower()
    errors = [r for r in records if r.kind == "error"]
    assert len(errors) == 1 and "checkpoint is kept" in errors[0].message
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    assert state["progress"]["epoch_in_phase"] == 1, "the checkpoint from the last good epoch"
    assert all(torch.isfinite(v).all() for v in state["student"].values() if v.is_floating_point())
    assert "nan" in (tmp_path / "run" / "events.jsonl").read_text().lower()
    assert load_run(tmp_path / "run").summary["state"] == "error"


def test_other_threads_drawing_random_numbers_do_not_change_a_run():
    """Gate noise comes from the trainer's own generator: a dashboard thread using torch's global
    generator mid-run must not change what the run computes."""
    cfg = TrainConfig(**FAST)
    _, _, quiet = _run(cfg)
    noisy = []
    t = Trainer(cfg)
    t.subscribe(noisy.append)
    t.subscribe(lambda r: torch.rand(1000) if r.kind == "step" else None)  # someone else draws
    t.run()
    losses = [r.loss for r in quiet if r.kind == "step"]
    assert len(losses) > 0 and losses == [r.loss for r in noisy if r.kind == "step"]


def test_summary_counts_the_extra_prune_steps_when_fine_tuning_follows(tmp_path):
    # A tiny λ cannot reach the budget within the schedule: the trainer keeps pruning, at most 7 steps.
    cfg = TrainConfig(**{**FAST, "lam": 1e-12, "extra_prune_steps": 7, "budget": 0.1})
    _, summary, _ = _run(cfg, tmp_path / "run")
    metrics = pd.read_csv(tmp_path / "run" / "metrics.csv")
    planned = cfg.prune_epochs * cfg.max_steps_per_epoch
    taken = int((metrics.phase == "prune").sum()) - planned
    assert (metrics.phase == "finetune").sum() == cfg.finetune_epochs * cfg.max_steps_per_epoch
    assert taken == 7 and summary["extra_prune_steps"] == taken


def _distilled_steps(cfg: TrainConfig) -> tuple[Trainer, list[tuple[float, float, float]]]:
    trainer = Trainer(cfg).prepare()
    steps = []
    trainer.subscribe(lambda r: steps.append((r.loss, r.loss_data, r.volume))
                      if r.kind == "step" and r.phase != "pretrain" else None)
    assert trainer.run()["state"] == "done"
    return trainer, steps


def test_the_teacher_table_distils_what_the_teacher_gives_batch_by_batch(monkeypatch):
    """160 training images, 3 distilled epochs of 5 batches of 32: each image distilled 3 times, so the
    teacher's logits come from one table of the training set (Trainer._teacher_logits)."""
    cfg = tiny_config(train_limit=160, finetune_epochs=1)
    trainer, table_steps = _distilled_steps(cfg)
    table = trainer._teacher_table
    assert isinstance(table, torch.Tensor) and table.shape == (160, 10)
    x, _, index = next(trainer.data.train_batches(32, seed=0, epoch=0, with_index=True))
    with torch.no_grad():
        assert torch.allclose(table[index], trainer.teacher.eval()(x), atol=1e-6)
    monkeypatch.setattr(Trainer, "_teacher_table_pays", lambda self: False)
    trainer, batch_steps = _distilled_steps(cfg)
    assert trainer._teacher_table is False and len(batch_steps) == len(table_steps) >= 15
    assert [s[2] for s in table_steps] == [s[2] for s in batch_steps]  # the same gates closed at the same steps
    for name, i in (("loss", 0), ("data loss", 1)):
        assert [s[i] for s in table_steps] == pytest.approx([s[i] for s in batch_steps], rel=1e-5), name


def test_no_teacher_table_where_it_does_not_pay():
    """Each image distilled fewer than twice (tiny runs), or new images every epoch (augmentation)."""
    assert Trainer(tiny_config()).prepare()._teacher_table_pays() is False  # 15 batches of 32 of 2,000 images
    assert Trainer(tiny_config(train_limit=160)).prepare()._teacher_table_pays() is True
    assert Trainer(tiny_config(train_limit=160, augment=True)).prepare()._teacher_table_pays() is False


def test_bf16_autocast_runs_the_networks_in_bf16_and_keeps_weights_and_losses_float32():
    """precision bf16: convolutions run in bf16 in training steps (float32 in evaluation), the run prunes
    as the float32 run does, and every parameter and loss stays float32."""
    def run(precision: str):
        trainer = Trainer(tiny_config(precision=precision)).prepare()
        seen = []  # the student's first convolution: in training steps, and when evaluated
        conv = next(m for m in trainer.student.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(lambda m, i, out: seen.append((m.training, out.dtype)))
        steps = []
        trainer.subscribe(lambda r: steps.append(r) if r.kind == "step" else None)
        summary = trainer.run()
        assert summary["state"] == "done"
        return trainer, summary, steps, seen

    trainer, summary, steps, seen = run("bf16")
    assert {dtype for training, dtype in seen if training} == {torch.bfloat16}
    assert {dtype for training, dtype in seen if not training} == {torch.float32}
    assert all(p.dtype == torch.float32 for p in trainer.student.parameters())
    _, summary32, steps32, seen32 = run("fp32")
    assert {dtype for _, dtype in seen32} == {torch.float32}
    assert steps[0].loss == pytest.approx(steps32[0].loss, rel=2e-2)  # same weights, same batch, bf16's precision
    assert summary["volume_ratio"] < 0.9 and summary32["volume_ratio"] < 0.9
    assert abs(summary["volume_ratio"] - summary32["volume_ratio"]) < 0.15


def test_a_compiled_training_step_trains_as_the_eager_one(monkeypatch):
    """compile aot_eager (dynamo and AOT autograd, no code generated): the same gates close at the same
    steps, the first loss is the eager one, and the network itself stays a plain module (its
    parameter names, copies and MAC count as always). inductor on a CPU without a C++ compiler is
    refused in one line before anything runs."""
    def run(backend: str):
        trainer = Trainer(tiny_config(compile=backend)).prepare()
        steps = []
        trainer.subscribe(lambda r: steps.append((r.loss, r.volume)) if r.kind == "step" else None)
        summary = trainer.run()
        assert summary["state"] == "done"
        return trainer, summary, steps

    eager, eager_summary, eager_steps = run("off")
    compiled, summary, steps = run("aot_eager")
    assert [v for _, v in steps] == [v for _, v in eager_steps] and len(steps) >= 30
    assert steps[0][0] == pytest.approx(eager_steps[0][0], abs=1e-6)
    assert [loss for loss, _ in steps] == pytest.approx([loss for loss, _ in eager_steps], rel=1e-2)
    assert not hasattr(compiled.student, "_orig_mod")
    assert list(compiled.student.state_dict()) == list(eager.student.state_dict())
    assert summary["mac_ratio"] == eager_summary["mac_ratio"] is not None
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(trainer_module.ConfigError, match="compile inductor on a CPU needs a C\\+\\+ compiler"):
        Trainer(tiny_config(compile="inductor")).prepare()
