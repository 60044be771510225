"""analyze() against gate patterns set by hand, where R, M, W and the kept/unread stream channels
can be worked out on paper."""
import json

import pytest
import torch

from bar_core.connectivity import ConnectivityError, analyze, carries_input, open_channels, summary_table
from bar_core.materialize import materialize
from bar_core.models import build_model
from tests.helpers import gated_layers, max_error, randomize_weights, set_open


def block(analysis: dict, name: str) -> dict:
    return next(b for b in analysis["blocks"] if b["name"] == name)


def stream(analysis: dict, name: str) -> dict:
    return next(s for s in analysis["streams"] if s["name"] == name)


def r(a, b):
    return list(range(a, b))


def resnet8_pattern():
    model = build_model("resnet8", 1, 10)
    randomize_weights(model, 0)
    set_open(model, "bn1", r(0, 8))
    set_open(model, "layer1.0.bn1", [0, 1, 2])
    set_open(model, "layer1.0.bn2", [3, 8, 9])
    set_open(model, "layer2.0.bn1", r(0, 4))
    set_open(model, "layer2.0.bn2", [5, 6])
    set_open(model, "layer2.0.downsample.1", r(0, 10))
    set_open(model, "layer3.0.bn1", [1])
    set_open(model, "layer3.0.bn2", r(0, 64))
    set_open(model, "layer3.0.downsample.1", r(0, 32))
    return model.eval()


def test_post_activation_by_hand():
    a = analyze(resnet8_pattern())
    assert a["kind"] == "basic" and [s["name"] for s in a["streams"]] == ["layer1", "layer2", "layer3"]
    s1 = stream(a, "layer1")
    # The stem writes 0..7, layer1.0 writes 3, 8, 9: channels 0..9 are alive; layer2.0 reads all of them.
    assert s1["alive"] == r(0, 10) and s1["kept"] == r(0, 10) and s1["unread"] == []
    b = block(a, "layer1.0")
    assert b["alive_in"] == r(0, 8) and b["reads"] == r(0, 8)
    assert b["inner"] == [0, 1, 2] and b["inner_total"] == 16 and b["writes"] == [3, 8, 9]
    assert b["branch"] == "mc" and b["shortcut"] == {"kind": "identity"} and not b["removable"]
    b = block(a, "layer2.0")
    assert b["reads"] == r(0, 10) and b["inner"] == r(0, 4) and b["writes"] == [5, 6]
    assert b["shortcut"] == {"kind": "projection", "kept": r(0, 10), "total": 32}
    assert stream(a, "layer2")["kept"] == r(0, 10)
    b = block(a, "layer3.0")
    assert b["reads"] == r(0, 10) and b["inner"] == [1] and b["writes"] == r(0, 64)
    assert a["head"] == {"reads": r(0, 64), "width": 64}
    rows = {row["layer"]: row for row in summary_table(a)}
    assert rows["layer1.0.bn2"]["kept"] == 3 and rows["layer1.0.bn2"]["total"] == 16
    assert rows["layer2.0.downsample.1"]["role"] == "projection" and rows["bn1"]["role"] == "stem"
    assert len(rows) == 9 and a["total_channels"] == 16 * 3 + 32 * 3 + 64 * 3


def test_nothing_reads_a_whole_front():
    """layer3.0 reads nothing (inner and projection gates closed; its bn2 only adds a constant), so
    the layer2 stream is unread, layer2.0 writes nothing needed, and layer1.0 is removable."""
    model = resnet8_pattern()
    set_open(model, "layer3.0.bn1", [])
    set_open(model, "layer3.0.downsample.1", [])
    a = analyze(model)
    b3 = block(a, "layer3.0")
    assert b3["branch"] == "constant" and b3["reads"] == [] and b3["writes"] == r(0, 64)
    s2 = stream(a, "layer2")
    assert s2["kept"] == [] and s2["unread"] == r(0, 10)
    b2 = block(a, "layer2.0")
    assert b2["writes"] == [] and b2["writes_unread"] == [5, 6] and b2["reads"] == [] and not b2["removable"]
    assert block(a, "layer1.0")["removable"] and stream(a, "layer1")["kept"] == []
    pruned = materialize(model)
    assert "layer1.0" in pruned.spec["removed_blocks"]
    assert max_error(model, pruned, 1, size=28)[0] < 1e-4


def test_post_act_empty_inner_writes_only_nonzero_constants():
    model = build_model("resnet8", 1, 10).eval()  # fresh BNs: mean 0, bias 0 ⇒ bn2's constant is 0
    set_open(model, "layer1.0.bn1", [])
    assert block(analyze(model), "layer1.0")["removable"], "a zero constant makes the block an identity"
    with torch.no_grad():
        model.layer1[0].bn2.bias[3] = 0.5
    b = block(analyze(model), "layer1.0")
    assert b["branch"] == "constant" and b["writes"] == [3] and b["reads"] == [] and b["inner"] == []


def test_pre_activation_by_hand():
    model = build_model("wrn16_1", 3, 10)
    randomize_weights(model, 1)
    set_open(model, "layer1.0.bn1", [0, 1])
    set_open(model, "layer1.0.bn2", [])           # M empty: the branch is exactly 0 ⇒ identity
    set_open(model, "layer1.1.bn1", [2, 3])
    set_open(model, "layer1.1.bn2", [5])
    set_open(model, "layer2.0.bn1", [3, 4, 7])
    set_open(model, "layer2.0.bn2", r(0, 32))
    set_open(model, "layer2.1.bn1", r(0, 10))
    set_open(model, "layer2.1.bn2", [1])
    set_open(model, "layer3.0.bn1", r(0, 32))
    set_open(model, "layer3.0.bn2", [0, 1])
    set_open(model, "layer3.1.bn1", [10, 11])
    set_open(model, "layer3.1.bn2", [])
    set_open(model, "bn", r(20, 30))
    a = analyze(model.eval())
    assert a["kind"] == "preact" and a["head"]["reads"] == r(20, 30)
    assert block(a, "layer1.0")["removable"] and block(a, "layer3.1")["removable"]
    assert block(a, "layer1.0")["reads"] == [] and block(a, "layer3.1")["writes"] == []
    b = block(a, "layer3.0")   # writes only what the head reads; reads what bn1 lets through
    assert b["reads"] == r(0, 32) and b["inner"] == [0, 1] and b["writes"] == r(20, 30)
    assert b["shortcut"] == {"kind": "projection", "kept": r(0, 64), "total": 64}
    s3 = stream(a, "layer3")
    assert s3["kept"] == r(20, 30) and s3["unread"] == r(0, 20) + r(30, 64)
    b = block(a, "layer2.1")
    assert b["reads"] == r(0, 10) and b["inner"] == [1] and b["writes"] == r(0, 32)
    assert block(a, "layer2.0")["reads"] == [3, 4, 7]
    b = block(a, "layer1.1")
    assert b["reads"] == [2, 3] and b["inner"] == [5] and b["writes"] == [3, 4, 7]
    assert b["writes_unread"] == sorted(set(r(0, 16)) - {3, 4, 7})
    s1 = stream(a, "layer1")
    assert s1["alive"] == r(0, 16) and s1["kept"] == [2, 3, 4, 7]
    pruned = materialize(model)
    assert pruned.spec["removed_blocks"] == ["layer1.0", "layer3.1"]
    assert [s["channels"] for s in pruned.spec["streams"]] == [[2, 3, 4, 7], r(0, 32), r(20, 30)]
    assert max_error(model, pruned, 3)[0] < 1e-4


def test_stem_stream_of_wide_wrn():
    """WRN-16-2: the stem's 16-channel stream only feeds layer1.0's projection: a stage-0 stream."""
    model = build_model("wrn16_2", 3, 10)
    set_open(model, "layer1.0.bn1", [1, 2])
    a = analyze(model)
    assert [(s["name"], s["stage"], s["width"]) for s in a["streams"]] == [
        ("stem", 0, 16), ("layer1", 1, 32), ("layer2", 2, 64), ("layer3", 3, 128)]
    assert a["streams"][0]["kept"] == [1, 2] and block(a, "layer1.0")["stream_out"] == 1


def test_dense_model_keeps_everything_and_json_round_trips():
    for name in ("resnet18", "wrn16_2", "resnet8"):
        a = analyze(build_model(name, 3, 10, gated=False))
        assert json.loads(json.dumps(a)) == a
        assert a["total_kept"] == a["total_channels"]
        assert all(s["kept"] == list(range(s["width"])) and not s["unread"] for s in a["streams"])
        assert not any(b["removable"] for b in a["blocks"])
        assert all(row["kept"] == row["total"] for row in summary_table(a))


def test_resnet18_has_four_stages():
    a = analyze(build_model("resnet18", 3, 10))
    assert [s["width"] for s in a["streams"]] == [64, 128, 256, 512]
    assert [b["stage"] for b in a["blocks"]] == [1, 1, 2, 2, 3, 3, 4, 4]


def test_partial_gates_are_counted():
    model = build_model("resnet8", 1, 10)
    set_open(model, "layer1.0.bn1", [0, 1, 2], value=0.0)   # ẑ = 0.5
    row = next(r for r in analyze(model)["layers"] if r["name"] == "layer1.0.bn1")
    assert row["kept"] == 3 and row["partial"] == 3


def test_unknown_model_refused():
    with pytest.raises(ConnectivityError):
        analyze(torch.nn.Linear(2, 2))


def _answers_vary(model) -> bool:
    """Whether the logits differ between images (eval mode: each gate at its test value ẑ)."""
    x = torch.randn(6, model.conv1.in_channels, 16, 16, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = model.eval()(x)
    return float((out - out[:1]).abs().max()) > 1e-6


@pytest.mark.parametrize("name,in_channels", [("resnet8", 1), ("wrn16_1", 3)])
def test_carries_input_says_whether_the_answer_depends_on_the_image(name, in_channels):
    """Random gate patterns, a third of the layers fully closed: `carries_input` is False exactly when
    the network gives every image the same logits."""
    model = build_model(name, in_channels, 10)
    randomize_weights(model, 0)
    layers = gated_layers(model)
    g = torch.Generator().manual_seed(0)
    seen = {True: 0, False: 0}
    for _ in range(60):
        for layer in layers:
            width = dict(model.named_modules())[layer].num_features
            closed = bool(torch.rand(1, generator=g) < 0.33)
            set_open(model, layer, [] if closed else torch.randperm(width, generator=g)[:width // 2].tolist())
        carries = carries_input(model)
        assert carries == _answers_vary(model), [(n, open_channels(dict(model.named_modules())[n])) for n in layers]
        seen[carries] += 1
    assert min(seen.values()) >= 5, seen  # both kinds of pattern were tried


def test_closing_the_stem_cuts_the_network_and_an_empty_inner_branch_does_not():
    model = build_model("resnet8", 1, 10)
    assert carries_input(model)
    set_open(model, "layer1.0.bn1", [])  # the block adds a constant; the stem still carries the image
    set_open(model, "layer2.0.downsample.1", [])  # layer2.0's conv path still reads it
    assert carries_input(model)
    set_open(model, "layer2.0.bn1", [])  # now nothing writes the image into the second stream
    assert not carries_input(model)
    model = build_model("resnet8", 1, 10)
    set_open(model, "bn1", [])
    assert not carries_input(model)
