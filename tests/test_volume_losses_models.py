"""Volume counted by hand, the loss's gradient routing, distillation, and the model registry."""
import pytest
import torch
import torch.nn.functional as F

from bar_core.hard_concrete import prob_open
from bar_core.losses import bar_objective, distillation_loss
from bar_core.models import MODELS, ModelError, build_model, gate_parameters, gates, set_gates_frozen, weight_parameters
from bar_core.volume import expected_volume, initial_volume, measure_areas, volume


def _close(model, layer_name, channels):
    gate = dict(gates(model))[layer_name + ".gate"]
    with torch.no_grad():
        gate.log_alpha[channels] = -5.0


def test_resnet8_volume_by_hand():
    model = build_model("resnet8", 1, 10)
    layers = measure_areas(model, torch.zeros(2, 1, 28, 28))
    by_name = {l.name: l for l in layers}
    # stage 1 at 28×28: stem bn1, layer1.0.bn1, layer1.0.bn2 (16 channels each)
    # stage 2 at 14×14: layer2.0.bn1, bn2, downsample.1 (32 each); stage 3 at 7×7: the same with 64
    assert by_name["bn1"].area == 784 and by_name["layer1.0.bn2"].area == 784
    assert by_name["layer2.0.downsample.1"].area == 196 and by_name["layer3.0.bn1"].area == 49
    v0 = 784 * 16 * 3 + 196 * 32 * 3 + 49 * 64 * 3
    assert initial_volume(model) == v0 == volume(model)
    _close(model, "bn1", [0, 1, 2])            # 3 maps of 28×28
    _close(model, "layer3.0.bn2", list(range(10)))  # 10 maps of 7×7
    assert volume(model) == v0 - 3 * 784 - 10 * 49


def test_volume_at_other_input_size():
    model = build_model("resnet8", 3, 10)
    measure_areas(model, torch.zeros(1, 3, 32, 32))
    assert initial_volume(model) == 1024 * 48 + 256 * 96 + 64 * 192


def test_expected_volume_weighted_and_unweighted():
    model = build_model("resnet8", 1, 10, gate_init=0.0)
    measure_areas(model, torch.zeros(1, 1, 28, 28))
    p = prob_open(0.0)
    assert float(expected_volume(model).detach()) == pytest.approx(p * initial_volume(model), rel=1e-5)
    n_channels = sum(g.num_channels for _, g in gates(model))
    assert float(expected_volume(model, weighted=False).detach()) == pytest.approx(p * n_channels, rel=1e-5)


def test_sparsity_gradient_reaches_only_log_alpha():
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10, gate_init=1.0)
    measure_areas(model, torch.zeros(1, 1, 28, 28))
    ls = expected_volume(model)
    V = volume(model)
    assert isinstance(V, int), "V is a hard count: no gradient"
    lam, f = 1e-3, 2.5
    bar_objective(torch.zeros((), requires_grad=True), ls, f, lam).backward()
    assert all(p.grad is None for p in weight_parameters(model)), "L_S must not touch the weights"
    p = prob_open(1.0)
    for name, g in gates(model):
        expected = lam * f * g.area * p * (1 - p)
        assert torch.allclose(g.log_alpha.grad, torch.full_like(g.log_alpha, expected), rtol=1e-4), name


def test_frozen_gates_get_no_gradient_from_the_data_loss():
    model = build_model("resnet8", 1, 10, gate_init=1.0).train()
    set_gates_frozen(model, True)
    F.cross_entropy(model(torch.randn(4, 1, 28, 28)), torch.tensor([0, 1, 2, 3])).backward()
    assert all(p.grad is None for p in gate_parameters(model))
    assert all(p.grad is not None for p in weight_parameters(model) if p.requires_grad)


def test_no_barrier_no_sparsity_term():
    data = torch.tensor(1.5)
    assert bar_objective(data, torch.tensor(100.0), 0.0, 1.0) is data


def test_kd_zero_gradient_when_student_equals_teacher():
    torch.manual_seed(0)
    logits = torch.randn(8, 10)
    student = logits.clone().requires_grad_(True)
    loss = distillation_loss(student, logits, torch.randint(0, 10, (8,)), temperature=4.0, alpha=1.0)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6)
    assert student.grad.abs().max() < 1e-6


def test_kd_formula_batchmean_and_mix():
    torch.manual_seed(1)
    s, t, y = torch.randn(5, 10), torch.randn(5, 10), torch.randint(0, 10, (5,))
    T, alpha = 3.0, 0.7
    ps, pt = F.softmax(s / T, 1), F.softmax(t / T, 1)
    kl = (pt * (pt.log() - ps.log())).sum(1).mean()
    expected = alpha * T * T * kl + (1 - alpha) * F.cross_entropy(s, y)
    assert float(distillation_loss(s, t, y, T, alpha)) == pytest.approx(float(expected), rel=1e-5)


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("in_channels, size", [(1, 28), (3, 32)])
def test_every_model_builds_and_runs(name, in_channels, size):
    model = build_model(name, in_channels, 7)
    out = model.train()(torch.randn(2, in_channels, size, size))
    assert out.shape == (2, 7)
    layers = measure_areas(model, torch.zeros(1, in_channels, size, size))
    assert len(layers) == sum(1 for _ in gates(model)) > 0
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert len(bns) == len(layers), "a gate after every BatchNorm"


def test_dense_twin_shares_parameter_names():
    gated = build_model("resnet14", 1, 10)
    dense = build_model("resnet14", 1, 10, gated=False)
    extra = set(gated.state_dict()) - set(dense.state_dict())
    assert extra and all(k.endswith("gate.log_alpha") for k in extra)
    assert set(dense.state_dict()) <= set(gated.state_dict())


def test_unknown_model_error_lists_allowed():
    with pytest.raises(ModelError, match="'resnet9'.*resnet8"):
        build_model("resnet9")

