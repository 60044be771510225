"""`torchrun -m bar_core train`: 2 CPU ranks (gloo, 1 thread each) against one process with the same
global batch, on the shipped Fashion-MNIST subset and teacher."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
# B = 3/4 in 30 prune steps (+2 extra) and 30 fine-tune steps: seconds, and the pruned network keeps
# about 41 % test accuracy instead of collapsing to chance, so accuracy is a real comparison.
RUN = ["--budget", "0.75", "--prune-epochs", "1", "--finetune-epochs", "1", "--max-steps-per-epoch", "30",
       "--extra-prune-steps", "30", "--batch-size", "32", "--train-limit", "960", "--test-limit", "500",
       "--threads", "1", "--device", "cpu", "--quiet",
       # the paper's f: its schedule ends above the budget, so the extra steps and their warning are compared too
       "--no-barrier-lead", "--no-barrier-ramp", "--no-hold-open", "--no-keep-path",
       "--no-rising-wall"]
# The columns that are a function of the computation (not of the wall clock).
COMPUTED = ["step", "phase", "epoch", "loss", "loss_data", "loss_sparsity", "volume", "budget_b", "barrier_f",
            "volume_ratio", "lr", "over_budget"]


def _env(**extra) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **extra}


def torchrun(*args, env=None, timeout=180) -> subprocess.CompletedProcess:
    """2 ranks on this machine; --standalone picks a free port, so parallel runs do not collide."""
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                           *args], capture_output=True, text=True, cwd=REPO, env=env or _env(), timeout=timeout)


def single(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bar_core", "train", *args], capture_output=True, text=True,
                          cwd=REPO, env=_env(), timeout=180)


def rank_gates(folder: Path, rank: int) -> dict[str, np.ndarray]:
    with np.load(folder / f"gates-rank{rank}.npz") as f:
        return {k: f[k] for k in f.files}


def checkpoint_gates(run: Path) -> dict[str, np.ndarray]:
    student = torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=False)["student"]
    return {k.removesuffix(".log_alpha"): v.numpy() for k, v in student.items() if k.endswith(".gate.log_alpha")}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same run as one process and as 2 torchrun ranks; each rank leaves its final log α."""
    root = tmp_path_factory.mktemp("ddp")
    one = single("--out", str(root / "one"), *RUN)
    assert one.returncode == 0, one.stderr
    two = torchrun("-m", "bar_core", "train", "--out", str(root / "two"), *RUN,
                   env=_env(BAR_RANK_GATES=str(root / "gates")))
    assert two.returncode == 0, two.stderr
    return root, one, two


def test_two_ranks_reach_the_volume_of_one_process(runs):
    root, _, _ = runs
    s1 = json.loads((root / "one" / "summary.json").read_text())
    s2 = json.loads((root / "two" / "summary.json").read_text())
    assert s2["state"] == "done"
    assert s2["volume_ratio"] == s1["volume_ratio"] and s2["kept_channels"] == s1["kept_channels"]
    assert s1["volume_ratio"] < 0.75 and s1["extra_prune_steps"] == s2["extra_prune_steps"]
    m1, m2 = pd.read_csv(root / "one" / "metrics.csv"), pd.read_csv(root / "two" / "metrics.csv")
    # V before every step, not only at the end: float rounding may tip a gate across its threshold a step
    # earlier or later on the way, never by more than one channel's area
    same = (m2["volume"] == m1["volume"]).mean()
    assert same > 0.9 and (m2["volume"] - m1["volume"]).abs().max() <= 784, same
    # the loss of the global batch: equal up to float rounding that Adam and the gates amplify over 62 steps
    np.testing.assert_allclose(m2["loss_data"], m1["loss_data"], rtol=1e-2)
    assert (np.abs(m2["loss_data"] - m1["loss_data"]) / m1["loss_data"]).median() < 1e-3
    e1, e2 = pd.read_csv(root / "one" / "epochs.csv"), pd.read_csv(root / "two" / "epochs.csv")
    assert e1["test_acc"].iloc[-1] > 0.3, "the comparison needs a network that has not collapsed"
    np.testing.assert_allclose(e2["test_acc"], e1["test_acc"], atol=0.01)
    np.testing.assert_allclose(e2["test_loss"], e1["test_loss"], rtol=5e-3)
    np.testing.assert_allclose(e2["train_loss"], e1["train_loss"], rtol=1e-3)


def test_every_rank_holds_the_same_gates(runs):
    root, _, _ = runs
    g0, g1 = rank_gates(root / "gates", 0), rank_gates(root / "gates", 1)
    saved = checkpoint_gates(root / "two")
    assert sorted(g0) == sorted(g1) == sorted(saved) and len(saved) > 0
    for name in saved:
        assert np.array_equal(g0[name], g1[name]), name  # bit for bit: DDP keeps the ranks in step
        assert np.array_equal(g0[name], saved[name]), name
    assert any((g < 2.9).any() for g in saved.values()), "the gates moved from their initial log α = 3"


def test_only_rank_zero_writes_and_prints(runs):
    root, one, two = runs
    m1, m2 = pd.read_csv(root / "one" / "metrics.csv"), pd.read_csv(root / "two" / "metrics.csv")
    assert m2["step"].tolist() == list(range(len(m1))) == m1["step"].tolist()  # every step exactly once
    assert pd.read_csv(root / "two" / "epochs.csv")["epoch"].tolist() == [0, 1, 2]
    # the warning that the schedule ended above the budget: once, as in one process
    assert (root / "two" / "events.jsonl").read_text() == (root / "one" / "events.jsonl").read_text()
    assert (root / "two" / "events.jsonl").read_text().count('"warning"') == 1
    assert two.stdout.count("run folder:") == one.stdout.count("run folder:") == 1
    assert "error" not in two.stderr.lower() and "Traceback" not in two.stderr


STOP_ONE_RANK = textwrap.dedent("""
    import os, signal, sys
    import bar_core.trainer as trainer
    from bar_core import cli, distributed
    at = int(sys.argv[1])
    step = trainer.Trainer._train_step
    def stepping(self, *a, **k):
        loss = step(self, *a, **k)
        if distributed.rank() == 1 and self.progress.step == at + 1:
            os.kill(os.getpid(), signal.SIGTERM)  # as a scheduler would, to one rank only
        return loss
    trainer.Trainer._train_step = stepping
    sys.exit(cli.main(["train", *sys.argv[2:]]))
""")


def test_a_signal_to_one_rank_stops_every_rank_and_resume_continues(runs, tmp_path):
    root, _, _ = runs
    harness = tmp_path / "stop_one_rank.py"
    harness.write_text(STOP_ONE_RANK)
    run = tmp_path / "run"
    stopped = torchrun(str(harness), "20", "--out", str(run), *RUN)
    assert "bar_core/" not in stopped.stderr, "no traceback through our code"
    assert json.loads((run / "summary.json").read_text())["state"] == "stopped", stopped.stderr
    assert len(pd.read_csv(run / "metrics.csv")) == 21, "both ranks stopped after the same step"
    resumed = torchrun("-m", "bar_core", "train", "--out", str(run), "--resume", "--quiet",
                       env=_env(BAR_RANK_GATES=str(tmp_path / "gates")))
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads((run / "summary.json").read_text())["state"] == "done"
    # the stopped and resumed run is the unbroken one, step for step
    unbroken = pd.read_csv(root / "two" / "metrics.csv")[COMPUTED]
    pd.testing.assert_frame_equal(pd.read_csv(run / "metrics.csv")[COMPUTED], unbroken)
    for name, g in checkpoint_gates(root / "two").items():
        assert np.array_equal(rank_gates(tmp_path / "gates", 1)[name], g), name


def test_a_batch_that_does_not_split_over_the_ranks_is_one_line(tmp_path):
    result = torchrun("-m", "bar_core", "train", "--out", str(tmp_path / "run"), *RUN, "--batch-size", "33")
    assert result.returncode != 0
    ours = [l for l in result.stderr.splitlines() if l.startswith("error:")]
    assert ours == ["error: --batch-size 33 does not split evenly over 2 torchrun ranks; use a multiple of 2 "
                    "(it is the global batch, each rank trains on batch_size / 2)"]
    assert "bar_core" not in result.stderr.replace("bar_core FAILED", "")  # no traceback through our code
    assert not (tmp_path / "run").exists()


DIVERGE = textwrap.dedent("""
    import torch
    from bar_core import distributed
    from bar_core.models import build_model, gates
    from bar_core.trainer import TrainingError
    distributed.init(torch.device("cpu"))
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10)
    distributed.check_in_sync(model)  # equal: passes
    if distributed.rank() == 1:
        with torch.no_grad():
            next(iter(gates(model)))[1].log_alpha[0] -= 1e-6
    try:
        distributed.check_in_sync(model)
    except TrainingError as exc:
        print(f"rank {distributed.rank()}: {exc}")
    distributed.cleanup()
""")


def test_ranks_whose_gates_differ_fail_loudly(tmp_path):
    script = tmp_path / "diverge.py"
    script.write_text(DIVERGE)
    result = torchrun(str(script))
    assert result.returncode == 0, result.stderr
    for r in (0, 1):
        assert f"rank {r}: torchrun ranks disagree on the gates (log alpha)" in result.stdout


def test_commands_other_than_train_refuse_torchrun(tmp_path):
    result = torchrun("-m", "bar_core", "sweep", "--budgets", "1/2", "--out", str(tmp_path / "sweep"))
    assert result.returncode != 0
    assert [l for l in result.stderr.splitlines() if l.startswith("error:")] == [
        "error: `bar sweep` does not run under torchrun; only `bar train` trains data-parallel"]
    assert not (tmp_path / "sweep").exists()
