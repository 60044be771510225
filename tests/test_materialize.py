"""The materialised network computes what the gated one does in eval mode — for every model family,
random and extreme gate patterns, with and without rounding — while being physically smaller; and
the cost counters agree with hand counts."""

import pytest
import torch
from torch import nn

from bar_core.cost import (
    activation_volume,
    compare,
    count_macs,
    count_params,
    dense_twin,
    gate_volume_ratio,
    measure_latency,
)
from bar_core.hard_concrete import HardConcreteGate
from bar_core.materialize import MaterializeError, PrunedNet, materialize, rounding_report
from bar_core.models import GatedBatchNorm2d, build_model, gates
from tests.helpers import THRESHOLD, gated_layers, make, max_error, randomize_weights, set_open

TOL = 1e-4


FAMILIES = [("resnet8", 1), ("resnet8", 3), ("resnet20", 3), ("wrn16_1", 1), ("wrn16_2", 3), ("resnet18", 3),
            ("resnet18", 1)]


# ------------------------------------------------------------------------------------ equivalence
@pytest.mark.parametrize("name,in_channels", FAMILIES)
@pytest.mark.parametrize("p_closed", [0.3, 0.7])
def test_random_patterns_same_logits_and_smaller(name, in_channels, p_closed):
    model = make(name, in_channels, seed=10 * FAMILIES.index((name, in_channels)) + int(10 * p_closed), p_closed=p_closed)
    partial = sum(int(((g.deterministic() > 0) & (g.deterministic() < 1)).sum()) for _, g in gates(model))
    assert partial > 0, "the pattern must include gates with 0 < ẑ < 1"
    pruned = materialize(model)
    err, scale = max_error(model, pruned, in_channels)
    assert scale > 0.1, "logits must not be trivially small"
    assert err < TOL
    shape = (in_channels, 32, 32)
    assert count_params(pruned) < count_params(model)
    assert count_macs(pruned, shape) < count_macs(dense_twin(model), shape)


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("wrn16_2", 3), ("resnet18", 3)])
def test_round_to_8_same_logits_and_widths_multiple_of_8(name, in_channels):
    model = make(name, in_channels, seed=7, p_closed=0.6)
    plain, rounded = materialize(model), materialize(model, round_to=8)
    err, _ = max_error(model, rounded, in_channels)
    assert err < TOL
    for m in rounded.modules():
        if isinstance(m, nn.Conv2d):
            assert m.out_channels % 8 == 0, m
            if m.in_channels != in_channels:
                assert m.in_channels % 8 == 0, m
    report = rounding_report(rounded)
    assert report["added"] > 0 and report["materialized"] % 1 == 0
    assert count_macs(rounded, (in_channels, 32, 32)) >= count_macs(plain, (in_channels, 32, 32))


def test_partial_gates_are_folded_not_rounded():
    """Control: rounding each kept ẑ up to 1 would change the logits far beyond the tolerance, so
    the equivalence tests can tell folding from rounding."""
    model = make("resnet8", 1, seed=3, p_closed=0.3)
    pruned = materialize(model)
    rounded_up = make("resnet8", 1, seed=3, p_closed=0.3)
    with torch.no_grad():
        for _, g in gates(rounded_up):
            g.log_alpha.copy_(torch.where(g.log_alpha > THRESHOLD, torch.full_like(g.log_alpha, 10.0), g.log_alpha))
    err, _ = max_error(rounded_up, pruned, 1)
    assert err > 100 * TOL


def test_no_gate_classes_and_eval_mode():
    pruned = materialize(make("wrn16_1", 3, seed=5))
    assert isinstance(pruned, PrunedNet) and not pruned.training
    assert not any(isinstance(m, (HardConcreteGate, GatedBatchNorm2d)) for m in pruned.modules())


def test_all_kept_keeps_every_channel_and_uses_fast_paths():
    for name in ("resnet8", "wrn16_2"):
        model = build_model(name, 3, 10)
        randomize_weights(model, 11)
        pruned = materialize(model.eval())
        err, _ = max_error(model, pruned, 3)
        assert err < TOL
        assert count_macs(pruned, (3, 32, 32)) == count_macs(dense_twin(model), (3, 32, 32))
        assert count_params(pruned) == count_params(model)
        for block in pruned.blocks:
            assert block.read_idx is None and block.write_idx is None, "no gathers/scatters when nothing is pruned"


def test_dense_model_materializes_to_itself():
    dense = build_model("resnet8", 1, 10, gated=False)
    randomize_weights(dense, 2)
    err, _ = max_error(dense.eval(), materialize(dense), 1, size=28)
    assert err < TOL


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("resnet20", 3), ("wrn16_1", 3), ("wrn16_2", 1),
                                              ("resnet18", 3)])
def test_one_channel_per_layer(name, in_channels):
    model = make(name, in_channels, seed=13)
    for layer in gated_layers(model):
        set_open(model, layer, [layer.count(".") % 3], value=0.5)  # ẑ = 0.6 < 1
    for r in (1, 8):
        err, _ = max_error(model, materialize(model, round_to=r), in_channels)
        assert err < TOL


@pytest.mark.parametrize("name,in_channels", [("resnet8", 3), ("resnet20", 1), ("wrn16_1", 1), ("wrn16_2", 3),
                                              ("resnet18", 1)])
def test_whole_blocks_dead(name, in_channels):
    """M empty in every other block: post-act blocks become constant adds (or projections carrying
    the constant), pre-act ones identities; the logits do not move."""
    model = make(name, in_channels, seed=17, p_closed=0.4)
    inner = "bn2" if name.startswith("wrn") else "bn1"
    blocks = [n for n in gated_layers(model) if n.endswith("." + inner) and n.startswith("layer")]
    # every other block; for WRN the second block of each stage (the first ones are projections)
    for layer in ([n for n in blocks if ".1." in n] if name.startswith("wrn") else blocks[::2]):
        set_open(model, layer, [])
    pruned = materialize(model)
    err, _ = max_error(model, pruned, in_channels)
    assert err < TOL
    kinds = [b["type"] for b in pruned.spec["blocks"]]
    if name.startswith("wrn"):
        assert len(pruned.spec["removed_blocks"]) >= 1
    else:
        assert "constant" in kinds or any(not b["branch"] for b in pruned.spec["blocks"])


def test_post_act_constant_block_is_exact_and_not_an_identity():
    """resnet20: layer1.1's inner channels all closed; its bn2 constant is non-zero, so the block
    must add it (then relu) — deleting the block would change the logits."""
    model = make("resnet20", 3, seed=19, p_closed=0.2)
    set_open(model, "layer1.1.bn1", [])
    set_open(model, "layer1.1.bn2", [0, 5, 9], value=1.0)
    pruned = materialize(model)
    spec = next(b for b in pruned.spec["blocks"] if b["name"] == "layer1.1")
    assert spec["type"] == "constant" and len(spec["write"]) == 3
    assert max_error(model, pruned, 3)[0] < TOL
    model_identity = make("resnet20", 3, seed=19, p_closed=0.2)
    set_open(model_identity, "layer1.1.bn1", [])
    set_open(model_identity, "layer1.1.bn2", [])
    assert max_error(model_identity, pruned, 3)[0] > 100 * TOL


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("resnet20", 3), ("wrn16_1", 3), ("wrn16_2", 1),
                                              ("resnet18", 3)])
def test_stream_down_to_one_channel(name, in_channels):
    model = make(name, in_channels, seed=23, p_closed=0.3)
    if name.startswith("wrn"):
        # Stage 2's stream: every reader of it (its blocks' bn1 and stage 3's first bn1) reads channel 4 only.
        for layer in ("layer2.1.bn1", "layer3.0.bn1"):
            set_open(model, layer, [4], value=1.0)
        stream = 2 if name == "wrn16_2" else 1
    else:
        # Stage 2's stream: the projection and every bn2 of the stage write channel 4 only.
        for layer in gated_layers(model):
            if layer.startswith("layer2.") and (layer.endswith("bn2") or "downsample" in layer):
                set_open(model, layer, [4], value=1.0)
        stream = 1
    pruned = materialize(model)
    assert pruned.spec["streams"][stream]["channels"] == [4]
    assert max_error(model, pruned, in_channels)[0] < TOL
    assert max_error(model, materialize(model, round_to=8), in_channels)[0] < TOL


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("wrn16_2", 3), ("resnet18", 3)])
def test_everything_closed(name, in_channels):
    """Every gate closed: the logits are a constant (BN biases, classifier bias) — still exact."""
    model = make(name, in_channels, seed=29)
    for layer in gated_layers(model):
        set_open(model, layer, [])
    for r in (1, 8):
        assert max_error(model, materialize(model, round_to=r), in_channels)[0] < TOL


def test_stem_closed_stream_dead_until_a_block_writes():
    """Post-act: the stem's gates all closed, so layer1.0 reads nothing (a zero stream) yet its
    branch still produces a non-constant map (zero padding): it must be kept, reading a placeholder."""
    model = make("resnet20", 1, seed=31, p_closed=0.3)
    set_open(model, "bn1", [])
    pruned = materialize(model)
    assert max_error(model, pruned, 1)[0] < TOL
    assert pruned.spec["blocks"][0]["branch"]


def test_preact_block_reading_nothing_still_writes():
    """Pre-act: bn1 all closed but bn2 open. conv1 sees zeros, bn2 turns them into a constant, and
    conv2 of a constant map is not constant near the border (zero padding): the block stays, fed a
    zero placeholder channel."""
    model = make("wrn16_1", 3, seed=83, p_closed=0.3)
    set_open(model, "layer2.1.bn1", [])
    pruned = materialize(model)
    spec = next(b for b in pruned.spec["blocks"] if b["name"] == "layer2.1")
    assert spec["branch"] and len(spec["read"]) == 1
    assert max_error(model, pruned, 3)[0] < TOL
    removed = materialize(model)
    removed.blocks = nn.Sequential(*[blk for blk, b in zip(removed.blocks, removed.spec["blocks"])
                                     if b["name"] != "layer2.1"])
    assert max_error(model, removed, 3)[0] > 100 * TOL, "deleting that block would be wrong"


def test_unsupported_model_is_refused():
    with pytest.raises(ValueError, match="cannot analyse"):
        materialize(nn.Sequential(nn.Conv2d(1, 2, 3)))
    with pytest.raises(MaterializeError, match="round_to"):
        materialize(build_model("resnet8", 1, 10), round_to=0)


# ------------------------------------------------------------------------------------------- cost
def test_macs_by_hand_tiny_model():
    tiny = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.Conv2d(4, 6, 1, stride=2), nn.Flatten(),
                         nn.Linear(6 * 3 * 3, 5))
    # conv 3×3: 4 maps of 5×5, 2·9 MACs each; conv 1×1 stride 2: 6 maps of 3×3, 4 MACs each; linear 54·5
    assert count_macs(tiny, (2, 5, 5)) == 4 * 25 * 2 * 9 + 6 * 9 * 4 + 54 * 5
    assert count_params(tiny) == (4 * 2 * 9 + 4) + (6 * 4 + 6) + (54 * 5 + 5)


def test_macs_resnet8_by_hand_dense_and_pruned():
    model = build_model("resnet8", 1, 10)
    stem = 16 * 784 * 1 * 9
    layer1 = 2 * 16 * 784 * 16 * 9
    layer2 = 32 * 196 * 16 * 9 + 32 * 196 * 32 * 9 + 32 * 196 * 16
    layer3 = 64 * 49 * 32 * 9 + 64 * 49 * 64 * 9 + 64 * 49 * 32
    dense = stem + layer1 + layer2 + layer3 + 64 * 10
    assert count_macs(dense_twin(model), (1, 28, 28)) == dense == 9_345_920
    # Keep 4 of layer1.0's 16 inner channels: conv1 loses 12 output maps, conv2 12 input maps.
    set_open(model, "layer1.0.bn1", range(4))
    pruned = materialize(model)
    assert count_macs(pruned, (1, 28, 28)) == dense - 2 * 12 * 784 * 16 * 9
    # the same with round_to=8: 4 rounds up to 8 kept inner channels
    assert count_macs(materialize(model, round_to=8), (1, 28, 28)) == dense - 2 * 8 * 784 * 16 * 9


def test_volume_ratios():
    model = build_model("resnet8", 1, 10)
    set_open(model, "layer3.0.bn1", range(32))  # half of a 64-channel 7×7 layer
    v0 = 784 * 16 * 3 + 196 * 32 * 3 + 49 * 64 * 3
    assert gate_volume_ratio(model, (1, 28, 28)) == pytest.approx((v0 - 32 * 49) / v0)
    assert activation_volume(dense_twin(model), (1, 28, 28)) == v0
    assert activation_volume(materialize(model), (1, 28, 28)) == v0 - 32 * 49


def test_measure_latency_and_compare_shape():
    model = make("resnet8", 1, seed=37, p_closed=0.7)
    pruned = materialize(model)
    threads = torch.get_num_threads()
    t = measure_latency(pruned, 2, 2, input_shape=(1, 28, 28), warmup=1, repeats=3, min_time=0.001)
    assert t["median_s"] > 0 and t["min_s"] <= t["median_s"]
    assert torch.get_num_threads() == threads, "threads must be restored"
    c = compare(model, pruned, (1, 28, 28), batches=(2,), threads=(1,), rounds=1, repeats=2)
    assert 0 < c["mac_ratio"] < 1 and c["mac_reduction"] == pytest.approx(1 / c["mac_ratio"])
    assert 0 < c["param_ratio"] < 1 and 0 < c["volume_ratio_gates"] < 1
    row = c["timings"][0]
    assert row["speedup"] > 0 and row["efficiency"] == pytest.approx(row["speedup"] / c["mac_reduction"])


def test_cuda_graph_timing_needs_cuda():
    pruned = materialize(make("resnet8", 1, seed=37, p_closed=0.7))
    with pytest.raises(ValueError, match="cuda_graph needs a CUDA device, got 'cpu'"):
        measure_latency(pruned, 1, 1, "cpu", input_shape=(1, 28, 28), cuda_graph=True)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_graph_replay_times_the_pruned_network():
    model = make("resnet8", 1, seed=37, p_closed=0.7)
    pruned = materialize(model)
    t = measure_latency(pruned, 1, 1, "cuda", input_shape=(1, 28, 28), repeats=3, cuda_graph=True)
    assert t["median_s"] > 0 and t["cuda_graph"]
    c = compare(model, pruned, (1, 28, 28), batches=(1,), threads=(1,), device="cuda", rounds=1, repeats=2,
                cuda_graph=True)
    assert c["timings"][0]["speedup"] > 0
