"""The prune-then-fine-tune baseline: Torch-Pruning removes channels of the dense teacher to a MAC target."""
import pytest
import torch

from bar_core.checkpoint import default_teacher_path, load_teacher
from bar_core.cost import count_macs
from bar_core.export import export_torch
from bar_core.magnitude import MagnitudePruningError, kept_at_least, prune_by_ratio, prune_to_macs
from bar_core.models import build_model

SHAPE = (1, 28, 28)


@pytest.fixture(scope="module")
def teacher():
    model = build_model("resnet8", 1, 10, gated=False)
    ckpt = load_teacher(default_teacher_path("resnet8", "fashion-mnist-subset"), "resnet8", 1, 10)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval()


@pytest.mark.parametrize("importance", ["bn_scale", "l2"])
def test_reaches_the_mac_target_and_is_physically_smaller(teacher, importance):
    net, report = prune_to_macs(teacher, SHAPE, 0.5, importance=importance, tolerance=0.02)
    assert report.mac_ratio == pytest.approx(0.5, rel=0.02)
    assert report.mac_ratio == count_macs(net, SHAPE) / count_macs(teacher, SHAPE)
    assert report.params < report.dense_params and 0.0 < report.volume_ratio < 1.0
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d)]
    dense_convs = [m for m in teacher.modules() if isinstance(m, torch.nn.Conv2d)]
    assert sum(c.out_channels for c in convs) < sum(c.out_channels for c in dense_convs)
    assert net.fc.out_features == 10, "the classifier keeps every class"
    with torch.no_grad():
        assert net(torch.randn(3, *SHAPE)).shape == (3, 10)
    assert sum(c.out_channels for c in dense_convs) == 336, "the teacher itself is left untouched"


def test_small_targets_come_as_close_as_channels_allow(teacher):
    for target in (0.25, 0.125):
        _, report = prune_to_macs(teacher, SHAPE, target)
        assert report.mac_ratio == pytest.approx(target, rel=0.05)


def test_a_higher_ratio_never_grows_the_network_and_every_layer_keeps_its_floor(teacher):
    """Torch-Pruning's global step skips a group whole when it would empty a layer: without the floor,
    this teacher kept 0.67 of its MACs at ratio 0.95 against 0.07 at 0.9, and the search landed there."""
    macs = [count_macs(prune_by_ratio(teacher, SHAPE, r), SHAPE) for r in (0.8, 0.9, 0.95, 0.99)]
    assert macs == sorted(macs, reverse=True) and macs[-1] < 0.01 * count_macs(teacher, SHAPE), macs
    dense = {n: m.num_features for n, m in teacher.named_modules() if isinstance(m, torch.nn.BatchNorm2d)}
    pruned = {n: m.num_features for n, m in prune_by_ratio(teacher, SHAPE, 0.99).named_modules()
              if isinstance(m, torch.nn.BatchNorm2d)}
    assert all(pruned[n] >= kept_at_least(c) for n, c in dense.items()), pruned
    _, report = prune_to_macs(teacher, SHAPE, 0.02, closest=True)
    assert report.mac_ratio == pytest.approx(0.02, rel=0.1)


def test_pruned_network_reloads_as_an_exported_program(teacher, tmp_path):
    net, _ = prune_to_macs(teacher, SHAPE, 0.25)
    path = export_torch(net, torch.zeros(1, *SHAPE), tmp_path / "magnitude.pt2")
    program = torch.export.load(path).module()
    x = torch.randn(4, *SHAPE)
    with torch.no_grad():
        assert torch.allclose(program(x), net(x), atol=1e-5)


@pytest.mark.parametrize("kwargs, needle", [({"mac_ratio": 0.0}, "mac_ratio"), ({"mac_ratio": 1.5}, "1.5"),
                                            ({"mac_ratio": 0.5, "importance": "taylor"}, "taylor")])
def test_bad_options_are_one_line_errors(teacher, kwargs, needle):
    with pytest.raises(MagnitudePruningError, match=needle) as info:
        prune_to_macs(teacher, SHAPE, **kwargs)
    assert "\n" not in str(info.value)
