"""The fused BatchNorm + gate step and the one-op gate sampler must compute exactly what the
plain formulation does: BN(x) then x·z with z = g(log α, u), differentiated by autograd."""
import copy

import pytest
import torch
from torch import nn

from bar_core.hard_concrete import HardConcreteGate, _HardConcreteSample, draw_gates, icdf
from bar_core.models import build_model, gates
from bar_core.models.gated import GatedBatchNorm2d


def _reference(gbn: GatedBatchNorm2d, x: torch.Tensor, z: torch.Tensor) -> tuple[nn.BatchNorm2d, torch.Tensor]:
    """A plain BatchNorm2d with the same state, then x·z."""
    bn = nn.BatchNorm2d(gbn.num_features, eps=gbn.eps, momentum=gbn.momentum, affine=gbn.affine,
                        track_running_stats=gbn.track_running_stats)
    bn.load_state_dict({k: v for k, v in gbn.state_dict().items() if not k.startswith("gate.")})
    bn.train(gbn.training)
    return bn, bn(x) * z.view(*z.shape, 1, 1)


def _fused_step_against_reference(channels: int, memory_format, bn_kwargs: dict, device: str) -> None:
    """One training step of GatedBatchNorm2d on `device` against BatchNorm2d then x·z with z from the
    textbook inverse CDF in float64: output, every gradient and the running statistics."""
    torch.manual_seed(0)
    gbn = GatedBatchNorm2d(channels, **bn_kwargs).train().to(device)
    with torch.no_grad():
        gbn.gate.log_alpha.copy_(torch.tensor([-4.0, -2.0, -0.5, 0.5, 2.0, 5.0]).repeat(7)[:channels])
        if gbn.affine:
            gbn.weight.uniform_(0.5, 1.5)
            gbn.bias.uniform_(-0.5, 0.5)
    x = (3 * torch.randn(16, channels, 5, 7) + 1).to(device).contiguous(memory_format=memory_format).requires_grad_()
    # a gradient with a mean and a part along x, so that BatchNorm's mean and variance terms matter
    grad_out = torch.randn(16, channels, 5, 7).to(device) + 2 + 0.5 * x.detach()
    u = torch.rand(16, channels).clamp(1e-6, 1 - 1e-6).to(device)
    before = copy.deepcopy(gbn)  # the reference starts from the same running statistics

    la = gbn.gate.log_alpha
    gbn.gate._drawn = _HardConcreteSample.apply(la, u, gbn.gate.beta, gbn.gate.gamma, gbn.gate.zeta)
    y = gbn(x)
    y.backward(grad_out)
    got = [x.grad.clone(), la.grad.clone()] + ([gbn.weight.grad, gbn.bias.grad] if gbn.affine else [])

    x_ref = x.detach().clone().requires_grad_()
    la_ref = la.detach().clone().requires_grad_()
    z_ref = icdf(la_ref.double(), u.double()).float()  # autograd through the textbook formula
    bn, y_ref = _reference(before, x_ref, z_ref)
    y_ref.backward(grad_out)
    want = [x_ref.grad, la_ref.grad] + ([bn.weight.grad, bn.bias.grad] if bn.affine else [])

    assert y.dtype == x.dtype and y.device == x.device
    assert torch.allclose(y, y_ref, atol=1e-5)
    for name, g, w in zip(["x", "log_alpha", "weight", "bias"], got, want):
        assert torch.allclose(g, w, rtol=1e-4, atol=1e-4), f"gradient of {name} differs: {(g - w).abs().max()}"
    assert torch.any(got[1] != 0)
    if gbn.track_running_stats:
        assert torch.allclose(gbn.running_mean, bn.running_mean, atol=1e-6)
        assert torch.allclose(gbn.running_var, bn.running_var, atol=1e-5)
        assert int(gbn.num_batches_tracked) == int(bn.num_batches_tracked) == 1


BN_KWARGS = [{}, {"momentum": None}, {"track_running_stats": False}, {"affine": False}]


# 6 channels take the one-pass statistics; 40 channels in channels-last take torch's kernel for them
@pytest.mark.parametrize("channels", [6, 40])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bn_kwargs", BN_KWARGS)
def test_fused_training_step_matches_batchnorm_then_gate(channels, memory_format, bn_kwargs, monkeypatch):
    calls = []
    torch_stats = torch.batch_norm_update_stats
    monkeypatch.setattr(torch, "batch_norm_update_stats", lambda *a: calls.append(1) or torch_stats(*a))
    _fused_step_against_reference(channels, memory_format, bn_kwargs, "cpu")
    assert bool(calls) == (channels == 40 and memory_format == torch.channels_last), "which statistics path ran"


# On a GPU the statistics and x̂ come from torch's own BatchNorm kernel and the same backward runs on x̂
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("channels", [6, 40])
@pytest.mark.parametrize("memory_format", [torch.channels_last, torch.contiguous_format])
@pytest.mark.parametrize("bn_kwargs", BN_KWARGS)
def test_fused_training_step_on_cuda_matches_batchnorm_then_gate(channels, memory_format, bn_kwargs):
    _fused_step_against_reference(channels, memory_format, bn_kwargs, "cuda")


def _bf16_step_against_batchnorm(channels: int, memory_format, device: str) -> None:
    """One training step on bf16 activations under autocast (what a conv hands over there): the
    fused step keeps them bf16 and, like BatchNorm run in bf16 then x·z, stays within one bf16 ulp
    of the float32 truth (BatchNorm then x·z on the same bf16 values, in float32), output and
    ∂L/∂x; the parameters' gradients and the running statistics to bf16's precision."""
    torch.manual_seed(0)
    gbn = GatedBatchNorm2d(channels).train().to(device)
    with torch.no_grad():
        gbn.gate.log_alpha.copy_(torch.tensor([-4.0, -2.0, -0.5, 0.5, 2.0, 5.0]).repeat(7)[:channels])
        gbn.weight.uniform_(0.5, 1.5)
        gbn.bias.uniform_(-0.5, 0.5)
    x = (3 * torch.randn(16, channels, 5, 7) + 1).to(device).bfloat16().contiguous(memory_format=memory_format)
    grad_out = (torch.randn(16, channels, 5, 7).to(device) + 2 + 0.5 * x.float()).bfloat16()
    u = torch.rand(16, channels).clamp(1e-6, 1 - 1e-6).to(device)
    before = copy.deepcopy(gbn)

    def step(module, x_in, via_batchnorm: bool):
        x_in = x_in.detach().clone().requires_grad_()
        la = module.gate.log_alpha
        z = _HardConcreteSample.apply(la, u, module.gate.beta, module.gate.gamma, module.gate.zeta)
        with torch.autocast(device, dtype=torch.bfloat16):
            if via_batchnorm:
                bn, y = _reference(module, x_in, z)
            else:
                module.gate._drawn, bn = z, module
                y = module(x_in)
        y.backward(grad_out.to(y.dtype))
        return y, x_in.grad, la.grad, bn

    y, gx, gla, _ = step(gbn, x, via_batchnorm=False)
    y_bf, gx_bf, _, _ = step(copy.deepcopy(before), x, via_batchnorm=True)
    y_true, gx_true, gla_true, bn_true = step(copy.deepcopy(before).float(), x.float(), via_batchnorm=True)
    assert y.dtype == gx.dtype == torch.bfloat16 and gla.dtype == torch.float32

    def ulps(a, b):  # the largest error in bf16 ulps at the largest true value (2^-7 of it)
        return float((a.detach().float() - b.detach().float()).abs().max() / (2 ** -7 * b.abs().max()))
    assert ulps(y, y_true) <= 1.0 and ulps(gx, gx_true) <= 1.0, (ulps(y, y_true), ulps(gx, gx_true))
    assert ulps(y_bf, y_true) <= 1.0 and ulps(gx_bf, gx_true) <= 1.0  # BatchNorm in bf16 is held to the same
    for name, g, w in [("log_alpha", gla, gla_true), ("weight", gbn.weight.grad, bn_true.weight.grad),
                       ("bias", gbn.bias.grad, bn_true.bias.grad)]:
        assert torch.allclose(g, w, rtol=2e-2, atol=2e-2 * float(w.abs().max())), f"gradient of {name}"
    assert torch.allclose(gbn.running_mean, bn_true.running_mean, atol=1e-4)
    assert torch.allclose(gbn.running_var, bn_true.running_var, rtol=1e-3)


@pytest.mark.parametrize("channels,memory_format", [(6, torch.contiguous_format), (40, torch.channels_last)])
def test_bf16_training_step_is_as_accurate_as_batchnorm_in_bf16(channels, memory_format):
    _bf16_step_against_batchnorm(channels, memory_format, "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("channels,memory_format", [(6, torch.contiguous_format), (40, torch.channels_last)])
def test_bf16_training_step_on_cuda_is_as_accurate_as_batchnorm_in_bf16(channels, memory_format):
    _bf16_step_against_batchnorm(channels, memory_format, "cuda")


@pytest.mark.parametrize("channels,memory_format", [(6, torch.contiguous_format), (6, torch.channels_last),
                                                    (40, torch.channels_last)])
@pytest.mark.parametrize("momentum", [0.1, None])
def test_running_statistics_follow_batchnorm_over_several_steps(channels, memory_format, momentum):
    """With momentum=None BatchNorm keeps a cumulative average (factor 1/t): only steps after the
    first tell that apart from momentum = 1."""
    torch.manual_seed(1)
    gbn = GatedBatchNorm2d(channels, momentum=momentum).train()
    bn = nn.BatchNorm2d(channels, momentum=momentum).train()
    for step in range(3):
        x = (2 * torch.randn(8, channels, 5, 5) + step).contiguous(memory_format=memory_format)
        draw_gates([gbn.gate], 8)
        gbn(x)
        bn(x)
        assert torch.allclose(gbn.running_mean, bn.running_mean, atol=1e-6), step
        assert torch.allclose(gbn.running_var, bn.running_var, atol=1e-5), step
    assert int(gbn.num_batches_tracked) == int(bn.num_batches_tracked) == 3


@pytest.mark.parametrize("frozen", [True, False])
def test_deterministic_gates_fold_into_batchnorm(frozen):
    """Eval mode, or frozen gates while fine-tuning: y = ẑ ⊙ BN(x), with ẑ folded into w and b."""
    torch.manual_seed(0)
    gbn = GatedBatchNorm2d(5)
    with torch.no_grad():
        gbn.gate.log_alpha.copy_(torch.tensor([-5.0, -1.0, 0.0, 1.0, 6.0]))
        gbn.running_mean.uniform_(-1, 1)
        gbn.running_var.uniform_(0.5, 2)
    gbn.train(frozen)
    gbn.gate.frozen = frozen
    x = torch.randn(8, 5, 4, 4)
    bn, _ = _reference(gbn, x, torch.ones(1, 5))
    bn.train(frozen)
    z_hat = gbn.gate.deterministic().detach()
    want = bn(x) * z_hat.view(1, 5, 1, 1)
    assert torch.allclose(gbn(x), want, atol=1e-6)
    assert gbn(x)[:, 0].abs().max() == 0  # a closed gate removes its map entirely


def test_model_draws_all_gates_in_one_op_from_the_trainers_generator():
    """One noise tensor for the whole network, in module order, from the gates' own generator;
    what the model computes equals drawing each gate's slice of that noise."""
    model = build_model("resnet8", 1, 10).train()
    gen = torch.Generator().manual_seed(123)
    layer_gates = [g for _, g in gates(model)]
    for g in layer_gates:
        g.generator = gen
    seen = {}
    for name, g in gates(model):
        owner = model.get_submodule(name.removesuffix(".gate"))
        owner.register_forward_pre_hook(lambda mod, inp, g=g: seen.__setitem__(g, g._drawn))
    model(torch.randn(4, 1, 28, 28))
    total = sum(g.num_channels for g in layer_gates)
    u = torch.empty(4, total).uniform_(1e-6, 1 - 1e-6, generator=torch.Generator().manual_seed(123))
    want = icdf(torch.cat([g.log_alpha.detach() for g in layer_gates]), u.double()).float()
    got = torch.cat([seen[g].detach() for g in layer_gates], dim=1)
    assert got.shape == (4, total)
    assert torch.allclose(got, want, atol=1e-6)
    assert all(g._drawn is None for g in layer_gates)  # nothing is left for a later forward to reuse


def test_batched_draw_gives_each_gate_its_gradient():
    """Gradients reach every layer's log α through the shared sampling op."""
    torch.manual_seed(0)
    model = build_model("resnet8", 1, 10).train()
    model(torch.randn(8, 1, 28, 28)).pow(2).sum().backward()
    for name, g in gates(model):
        assert g.log_alpha.grad is not None and torch.all(torch.isfinite(g.log_alpha.grad)), name
        assert g.log_alpha.grad.abs().sum() > 0, name


def test_a_gate_called_on_its_own_samples_fresh_noise_per_example():
    gate = HardConcreteGate(3, init_log_alpha=0.0).train()
    draw_gates([gate], 5)
    assert gate._drawn.shape == (5, 3)
    y = gate(torch.ones(2, 3, 4, 4))  # another batch size: the prepared sample does not fit
    assert y.shape == (2, 3, 4, 4) and gate._drawn is None
    z = y[:, :, 0, 0]
    assert not torch.allclose(z[0], z[1])  # one gate per example, not per batch


def test_frozen_and_eval_gates_get_no_sample():
    model = build_model("resnet8", 1, 10).eval()
    layer_gates = [g for _, g in gates(model)]
    draw_gates(layer_gates, 4)
    assert all(g._drawn is None for g in layer_gates)


@pytest.mark.parametrize("channels,memory_format", [(4, torch.contiguous_format), (40, torch.channels_last)])
@pytest.mark.parametrize("offset", [0.0, 1000.0])
def test_fused_step_is_exact_for_badly_centred_channels(offset, channels, memory_format):
    """A channel whose mean is far from 0 in units of its spread would lose its variance to
    cancellation in one-pass statistics: the step must still match BatchNorm (torch's kernel)."""
    torch.manual_seed(3)
    gbn = GatedBatchNorm2d(channels).train()
    x = (torch.randn(8, channels, 6, 6) + offset).contiguous(memory_format=memory_format).requires_grad_()
    u = torch.rand(8, channels).clamp(1e-6, 1 - 1e-6)
    before = copy.deepcopy(gbn)
    la = gbn.gate.log_alpha
    gbn.gate._drawn = _HardConcreteSample.apply(la, u, gbn.gate.beta, gbn.gate.gamma, gbn.gate.zeta)
    grad_out = torch.randn(8, channels, 6, 6) + 1
    y = gbn(x)
    y.backward(grad_out)
    x_ref = x.detach().clone().requires_grad_()
    bn, y_ref = _reference(before, x_ref, icdf(la.detach().double(), u.double()).float())
    y_ref.backward(grad_out)
    assert torch.allclose(y, y_ref, atol=1e-4)
    assert torch.allclose(x.grad, x_ref.grad, rtol=1e-3, atol=1e-4)
    assert torch.allclose(gbn.running_var, bn.running_var, rtol=1e-4)


def test_a_compiled_gated_network_trains_as_the_eager_one():
    """torch.compile (aot_eager: dynamo and AOT autograd, no code generation) of a gated network: the
    same output, gradients and running statistics as eager for the same gate noise, in one graph per
    forward after the gate sampler (the CPU one-pass statistics step aside under compilation)."""
    torch.manual_seed(0)
    eager = build_model("resnet8", 3, 10).train().to(memory_format=torch.channels_last)
    compiled = copy.deepcopy(eager)
    for net in (eager, compiled):
        gen = torch.Generator().manual_seed(5)
        for _, g in gates(net):
            g.generator = gen
    explained = torch._dynamo.explain(copy.deepcopy(compiled))(torch.randn(4, 3, 32, 32))
    assert explained.graph_count <= 2 and not explained.break_reasons
    compiled.compile(backend="aot_eager")
    for step in range(2):
        x = torch.randn(8, 3, 32, 32).contiguous(memory_format=torch.channels_last)
        outs = [net(x) for net in (eager, compiled)]
        assert torch.allclose(outs[0], outs[1], atol=1e-5), step
        for out in outs:
            out.square().mean().backward()
    pairs = list(zip(eager.named_parameters(), compiled.named_parameters()))
    assert pairs and all(a == b for (a, _), (b, _) in pairs)  # the same names: compile in place
    for (name, p), (_, q) in pairs:
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-5), name
    for (name, a), (_, b) in zip(eager.named_buffers(), compiled.named_buffers()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5), name
