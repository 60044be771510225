"""Hard Concrete gates against the spec's reference values and against Monte Carlo sampling."""
import math

import pytest
import torch

from bar_core.hard_concrete import HardConcreteGate, closed_threshold, icdf, prob_one, prob_open, prob_zero, test_gate

# bar-method.md §7 (β = 2/3, γ = −0.1, ζ = 1.1)
REFERENCE = [(-2.0, 0.40098, 0.02663, 0.04304), (0.0, 0.83182, 0.16818, 0.5), (2.0, 0.97337, 0.59902, 0.95696)]


@pytest.mark.parametrize("log_alpha, p_open, p_one, z_test", REFERENCE)
def test_reference_values_floats(log_alpha, p_open, p_one, z_test):
    assert prob_open(log_alpha) == pytest.approx(p_open, abs=5e-6)
    assert prob_one(log_alpha) == pytest.approx(p_one, abs=5e-6)
    assert test_gate(log_alpha) == pytest.approx(z_test, abs=5e-6)
    assert prob_zero(log_alpha) == pytest.approx(1 - p_open, abs=5e-6)
    assert isinstance(prob_open(log_alpha), float)


def test_reference_values_tensors():
    la = torch.tensor([r[0] for r in REFERENCE])
    assert torch.allclose(prob_open(la), torch.tensor([r[1] for r in REFERENCE]), atol=5e-6)
    assert torch.allclose(prob_one(la), torch.tensor([r[2] for r in REFERENCE]), atol=5e-6)
    assert torch.allclose(test_gate(la), torch.tensor([r[3] for r in REFERENCE]), atol=5e-6)


@pytest.mark.parametrize("eps, z", [(0.25, 0.09367), (0.5, 0.5), (0.75, 0.90633)])
def test_inverse_cdf_reference(eps, z):
    assert icdf(0.0, eps) == pytest.approx(z, abs=5e-6)


def test_inverse_cdf_shape():
    eps = torch.linspace(1e-4, 1 - 1e-4, 2001, dtype=torch.float64)
    g = icdf(0.0, eps)
    assert torch.all(g[1:] >= g[:-1]), "g must be non-decreasing in eps"
    assert g[0] == 0.0 and g[-1] == 1.0, "flat at 0 for small eps and at 1 for large eps"
    # larger log α shifts the rise left: the gate is >= everywhere
    assert torch.all(icdf(2.0, eps) >= g) and torch.any(icdf(2.0, eps) > g)


@pytest.mark.parametrize("log_alpha", [-3.0, -2.0, -0.5, 0.0, 1.0, 2.5])
def test_closed_forms_match_monte_carlo(log_alpha):
    torch.manual_seed(0)
    u = torch.empty(100_000, dtype=torch.float64).uniform_(1e-6, 1 - 1e-6)
    z = icdf(torch.tensor(log_alpha, dtype=torch.float64), u)
    assert float((z > 0).double().mean()) == pytest.approx(prob_open(log_alpha), abs=5e-3)
    assert float((z == 1).double().mean()) == pytest.approx(prob_one(log_alpha), abs=5e-3)
    assert float((z == 0).double().mean()) == pytest.approx(prob_zero(log_alpha), abs=5e-3)


def test_derivative_of_prob_open_is_p_times_one_minus_p():
    la = torch.tensor([-3.0, 0.0, 1.7], requires_grad=True)
    p = prob_open(la)
    p.sum().backward()
    assert torch.allclose(la.grad, (p * (1 - p)).detach(), atol=1e-7)


def test_test_gate_threshold_is_minus_ln_11():
    assert closed_threshold() == pytest.approx(-math.log(11), abs=1e-12)
    assert test_gate(-math.log(11) - 1e-6) == 0.0
    assert test_gate(-math.log(11) + 1e-3) > 0.0
    assert test_gate(math.log(11)) == pytest.approx(1.0, abs=1e-9)


def test_gate_module_training_samples_per_example_and_channel():
    torch.manual_seed(0)
    gate = HardConcreteGate(8, init_log_alpha=0.0)
    x = torch.ones(64, 8, 3, 3)
    y = gate.train()(x)
    z = y[:, :, 0, 0]
    assert torch.all(y == z[:, :, None, None]), "one gate value per example and channel, shared over space"
    assert z.std(dim=0).min() > 0.05, "examples draw independent noise"
    assert z.std(dim=1).min() > 0.05, "channels draw independent noise"
    assert torch.all((z >= 0) & (z <= 1))


def test_gate_module_eval_and_frozen_are_deterministic():
    gate = HardConcreteGate(3, init_log_alpha=0.0)
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-3.0, 0.0, 3.0]))
    x = torch.ones(4, 3, 2, 2)
    expected = torch.tensor([0.0, 0.5, 1.0]).view(1, 3, 1, 1).expand(4, 3, 2, 2)
    assert torch.allclose(gate.eval()(x), expected, atol=1e-6)
    gate.train()
    gate.frozen = True
    assert torch.allclose(gate(x), expected, atol=1e-6)
    assert gate.num_open() == 2


def test_gradient_reaches_log_alpha_through_samples():
    gate = HardConcreteGate(4, init_log_alpha=0.0).train()
    gate(torch.randn(16, 4, 2, 2)).pow(2).sum().backward()
    assert gate.log_alpha.grad is not None and torch.all(gate.log_alpha.grad != 0)


def test_hand_written_backward_matches_autograd_through_icdf():
    """The gate's fused forward/backward must equal x · icdf(log α, u) differentiated by autograd."""
    torch.manual_seed(0)
    gate = HardConcreteGate(6, init_log_alpha=0.0).train()
    with torch.no_grad():
        gate.log_alpha.copy_(torch.tensor([-4.0, -2.0, -0.5, 0.5, 2.0, 5.0]))
    x = torch.randn(32, 6, 4, 4, requires_grad=True)
    grad_out = torch.randn(32, 6, 4, 4)
    torch.manual_seed(1)
    y = gate(x)
    y.backward(grad_out)
    gx, ga = x.grad.clone(), gate.log_alpha.grad.clone()
    x.grad, gate.log_alpha.grad = None, None
    torch.manual_seed(1)
    z = gate.sample(32)  # same noise: the same generator state
    (x * z[:, :, None, None]).backward(grad_out)
    assert torch.allclose(y, (x * z[:, :, None, None]).detach(), atol=1e-6)
    assert torch.allclose(gx, x.grad, atol=1e-6)
    assert torch.allclose(ga, gate.log_alpha.grad, rtol=1e-4, atol=1e-6)
    assert torch.any(ga != 0)
