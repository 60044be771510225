"""The pure plot builders of bar_core/plots.py, without Streamlit: real values in, checked values out."""
import base64
import math
import sys

import numpy as np
import plotly.graph_objects as go
import pytest

from bar_core import plots
from bar_core.barrier import TAU, barrier, barrier_start, budget_at
from bar_core.hard_concrete import icdf, prob_one, prob_zero


def arr(v):
    """A trace array as numpy, whether plotly kept it as an array or encoded it as a typed array."""
    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=np.dtype(v["dtype"]))
        if "shape" in v:
            shape = v["shape"]
            a = a.reshape([int(n) for n in (shape.split(",") if isinstance(shape, str) else shape)])
        return a
    return np.asarray(v)


def validated(fig: go.Figure) -> go.Figure:
    """Builders skip plotly's validation for speed; re-validate here (raises on any bad property).
    What the browser gets is the unvalidated figure: its axis titles must already be {"text": ...},
    since the plotly.js in Streamlit ignores a plain string (axes without titles)."""
    assert isinstance(fig, go.Figure)
    raw = fig.to_dict()["layout"]
    for key, axis in raw.items():
        if key.startswith(("xaxis", "yaxis")) and "title" in axis:
            assert isinstance(axis["title"], dict) and axis["title"].get("text"), f"{key}.title = {axis['title']!r}"
    return go.Figure(fig.to_dict())


def trace(fig, name_part):
    return next(t for t in fig.data if name_part in (t.name or ""))


def test_barrier_curve_values_equal_barrier():
    v0, a, b = 1000.0, 250.0, 600.0
    fig = validated(plots.barrier_figure(400.0, a, b, v0))
    curve = fig.data[0]
    x, y = arr(curve.x), arr(curve.y)
    assert len(x) > 100
    for xi, yi in zip(x[::17], y[::17]):
        assert yi == pytest.approx(barrier(xi * v0, a, b), rel=1e-9, abs=1e-12)
    assert y[x * v0 <= a].max() == 0.0, "f = 0 at and below a"
    point = trace(fig, "current V")
    assert arr(point.x)[0] == pytest.approx(0.4)
    assert arr(point.y)[0] == pytest.approx(barrier(400.0, a, b))


def test_barrier_reference_point_and_wall():
    # f(1.5, a=1, b=2) = 0.5 (method note §7)
    fig = validated(plots.barrier_figure(1.5, 1.0, 2.0, 1.0))
    assert arr(trace(fig, "current V").y)[0] == pytest.approx(0.5)
    # V ≥ b: infinite, drawn on the wall at the top of the plot, never as a finite f
    fig = validated(plots.barrier_figure(2.5, 1.0, 2.0, 1.0))
    wall = trace(fig, "V ≥ b")
    assert arr(wall.y)[0] == fig.layout.yaxis.range[1]
    assert math.isinf(barrier(2.5, 1.0, 2.0))


def test_volume_figure_plots_fractions_and_marks_over_budget_steps():
    step = np.arange(10)
    V = np.array([100, 100, 100, 90, 80, 60, 40, 30, 25, 25], dtype=float)
    b = np.array([np.nan, np.nan, 101, 95, 85, 55, 45, 35, 26, 25.0])
    over = step[np.nan_to_num(V >= b, nan=False) & np.isfinite(b)]
    fig = validated(plots.volume_figure(step, V, b, v0=100.0, a=24.9, budget_volume=25.0,
                                        phase_spans=[("pretrain", 0, 2), ("prune", 2, 10)], over_steps=over))
    np.testing.assert_allclose(arr(trace(fig, "V / V0").y), V / 100)
    yb = arr(trace(fig, "b / V0").y)
    assert np.isnan(yb[:2]).all() and yb[2] == pytest.approx(1.01)
    marks = trace(fig, "V ≥ b")
    np.testing.assert_array_equal(arr(marks.x), over)
    np.testing.assert_allclose(arr(marks.y), V[over] / 100)
    assert marks.name.startswith(f"V ≥ b ({len(over)} steps")
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert [(r.x0, r.x1) for r in rects] == [(0, 2), (2, 10)], "one shaded band per phase"
    lines = sorted(s.y0 for s in fig.layout.shapes if s.type == "line")
    assert lines == pytest.approx([0.249, 0.25]), "a and B·V0 as horizontal lines"


@pytest.mark.parametrize("kind", ["sigmoid", "exp", "linear"])
def test_schedule_figure_is_budget_at_over_the_prune_epochs(kind):
    fig = validated(plots.schedule_figure(0.25, kind, 6))
    x, y = arr(fig.data[0].x), arr(fig.data[0].y)
    assert x[0] == 0 and x[-1] == 6
    assert y[0] == pytest.approx(1 + TAU) and y[-1] == pytest.approx(0.25)
    assert np.all(np.diff(y) <= 1e-12), "b only moves down"
    mid = len(x) // 2
    assert y[mid] == pytest.approx(budget_at(0.5, 1.0, 0.25, kind))
    lines = sorted(sh.y0 for sh in fig.layout.shapes)
    assert lines == pytest.approx(sorted([barrier_start(1.0, 0.25), 0.25]))


def test_histogram_counts_equal_the_data():
    rng = np.random.default_rng(0)
    layers = ["bn1", "layer1.0.bn1", "layer1.0.bn2", "layer2.0.bn1"]
    probs = [rng.random(16), np.r_[np.zeros(5), np.ones(11)], rng.random(32) ** 3, np.full(7, 0.5)]
    fig = validated(plots.gate_histograms_figure(layers, probs, bins=20))
    assert len(fig.data) == 4
    for t, p in zip(fig.data, probs):
        counts = arr(t.y)
        assert counts.sum() == len(p)
        expected, _ = np.histogram(p, bins=np.linspace(0, 1, 21))
        np.testing.assert_array_equal(counts, expected)
    # exact 0 and 1 land in the first and last bins
    c = arr(fig.data[1].y)
    assert c[0] == 5 and c[-1] == 11
    # each layer has its own axes (small multiples); with 3 columns, 4 panels: the lowest panel of each
    # column names its x axis, the first column its y axis
    assert len({t.xaxis for t in fig.data}) == 4
    titled_x = sorted(k for k in fig.layout if k.startswith("xaxis") and fig.layout[k].title.text == "P(z > 0)")
    titled_y = sorted(k for k in fig.layout if k.startswith("yaxis") and fig.layout[k].title.text == "channels")
    assert titled_x == ["xaxis2", "xaxis3", "xaxis4"] and titled_y == ["yaxis", "yaxis4"]


def test_channel_heatmap_and_death_epochs():
    epochs = np.array([0, 1, 2, 3])
    P = np.array([[0.9, 0.9, 0.9], [0.9, 0.3, 0.8], [0.9, 0.1, 0.2], [0.9, 0.05, 0.6]])
    tg = np.array([[1, 1, 1], [1, 0, 1], [1, 0, 0], [1, 0, 0.4]])
    died = plots.death_epochs(epochs, tg)
    assert np.isnan(died[0]) and died[1] == 1 and np.isnan(died[2]), "ch 2 came back: not dead"
    fig = validated(plots.channel_heatmap_figure(epochs, P, layer="l", test_gate_matrix=tg))
    z = arr(fig.data[0].z).astype(float)
    np.testing.assert_allclose(z, P.T), "rows are channels, columns epochs"
    marks = trace(fig, "died")
    assert list(marks.y) == ["ch 1"] and arr(marks.x)[0] == 1
    fig = validated(plots.channel_heatmap_figure(epochs, P, layer="l", test_gate_matrix=tg, order="death"))
    assert list(fig.data[0].y)[0] == "ch 1", "the dead channel first"


def test_icdf_curve_matches_library_and_reference_values():
    eps, g, s_bar = plots.icdf_curve(0.0)
    for e in (0.25, 0.5, 0.75):
        i = int(np.argmin(abs(eps - e)))
        assert g[i] == pytest.approx(icdf(0.0, float(eps[i])), abs=1e-9)
    # method note §7: g(0, 0.25) = 0.09367, g(0, 0.75) = 0.90633
    assert np.interp(0.25, eps, g) == pytest.approx(0.09367, abs=2e-3)
    assert np.interp(0.75, eps, g) == pytest.approx(0.90633, abs=2e-3)
    assert (g >= 0).all() and (g <= 1).all() and s_bar.min() < 0 < 1 < s_bar.max()


def test_icdf_figure_bands_are_p0_and_p1_and_real_channels_drawn():
    la, beta, gamma, zeta = -2.0, 2 / 3, -0.1, 1.1
    fig = validated(plots.icdf_figure(la, beta, gamma, zeta, channels=[("layer1.0.bn1 · ch 3", 2.0)]))
    p0, p1 = prob_zero(la, beta, gamma, zeta), prob_one(la, beta, gamma, zeta)
    assert p0 == pytest.approx(1 - 0.40098, abs=1e-5) and p1 == pytest.approx(0.02663, abs=1e-5)
    rects = [s for s in fig.layout.shapes if s.type == "rect"]
    assert rects[0].x1 == pytest.approx(p0) and rects[1].x0 == pytest.approx(1 - p1)
    g = arr(trace(fig, "g(log α").y)
    eps = arr(fig.data[0].x)
    assert (g[eps < p0 - 1e-3] == 0).all() and (g[eps > p0 + 1e-3] > 0).all(), "flat at 0 exactly up to P(z=0)"
    assert trace(fig, "ch 3") is not None
    assert f"{p0:.3f}" in fig.layout.title.text


def test_connectivity_matrix_from_an_analysis():
    analysis = {
        "streams": [{"id": 0, "name": "layer1", "width": 4, "alive": [0, 1, 2], "kept": [0, 2], "unread": [1]},
                    {"id": 1, "name": "layer2", "width": 6, "alive": [0, 5], "kept": [0, 5], "unread": []}],
        "blocks": [{"name": "layer1.0", "stream_in": 0, "stream_out": 0, "alive_in": [0, 1, 2], "reads": [0, 2],
                    "inner": [1], "inner_total": 4, "writes": [2], "removable": False},
                   {"name": "layer1.1", "stream_in": 0, "stream_out": 0, "alive_in": [0, 2], "reads": [],
                    "inner": [], "inner_total": 4, "writes": [], "removable": True},
                   {"name": "layer2.0", "stream_in": 0, "stream_out": 1, "alive_in": [0, 2], "reads": [0],
                    "inner": [0, 3], "inner_total": 6, "writes": [5], "removable": False}],
        "head": {"reads": [0, 5], "width": 6}, "total_kept": 9, "total_channels": 20}
    z, labels, kinds = plots.connectivity_matrix(analysis)
    assert z.shape == (6, 1 + 2 + 2 + 1 + 2 + 1)
    assert kinds == ["stream", "reads", "writes", "identity", "identity", "reads", "stream", "writes", "head"]
    np.testing.assert_array_equal(z[:4, 0], [4, 1, 4, 0])         # stream: kept, unread, kept, dead
    assert np.isnan(z[4:, 0]).all()                                 # narrower stream: no cells
    np.testing.assert_array_equal(z[:4, 1], [2, 1, 2, 0])         # layer1.0 reads 0 and 2
    np.testing.assert_array_equal(z[:4, 2], [0, 0, 3, 0])         # ... writes 2
    assert (z[:4, 3] == 5).all() and (z[:4, 4] == 5).all()        # identity block
    np.testing.assert_array_equal(z[:, 7], [0, 0, 0, 0, 0, 3])    # layer2.0 writes 5
    np.testing.assert_array_equal(z[:, 8], [2, 0, 0, 0, 0, 2])    # the head reads 0 and 5
    assert "M 1/4" in labels[2] and "identity" in labels[4]
    fig = validated(plots.connectivity_figure(analysis))
    assert "1/3 blocks became identities" in fig.layout.title.text


def test_layer_table_and_kept_bars():
    layers = [{"name": "a", "channels": 4, "area": 100, "height": 10, "width": 10},
              {"name": "b", "channels": 2, "area": 25, "height": 5, "width": 5}]
    gates = {"a": {"test_gate": np.array([0, 0.5, 1, 0])}, "b": {"test_gate": np.array([0.0, 0.0])}}
    rows = plots.layer_table(layers, gates)
    assert [(r["kept"], r["total"], r["volume kept"]) for r in rows] == [(2, 4, 200), (0, 2, 0)]
    fig = validated(plots.kept_bars_figure(rows))
    np.testing.assert_array_equal(arr(fig.data[0].x), [0, 2])  # reversed: first layer at the top


def test_training_figure_panels():
    step = np.arange(6.0)
    loss = np.array([2.0, 2.0, 3.0, 2.5, 1.0, 1.0])
    data = np.array([2.0, 2.0, 1.0, 1.0, 1.0, 1.0])
    ips = np.array([100.0, 110, 90, 100, 105, 95])
    fig = validated(plots.training_figure(step, loss, data, ips, epoch_steps=[3, 6], test_acc=[0.5, 0.7],
                                          teacher_acc=0.8, phase_spans=[("prune", 0, 6)]))
    np.testing.assert_allclose(arr(trace(fig, "test accuracy").y), [0.5, 0.7])
    term = arr(trace(fig, "λ·f·L_S").y)
    assert np.isnan(term[0]) and term[2] == pytest.approx(2.0) and term[3] == pytest.approx(1.5)
    assert fig.layout.yaxis2.type == "log"
    np.testing.assert_allclose(arr(trace(fig, "per step").y), ips)


def test_downsampled_history_stays_small_and_is_sent_as_typed_arrays():
    from bar_core.history import downsample_indices
    n = 200_000
    idx = downsample_indices(n, 3000)
    assert len(idx) <= 3000 and idx[0] == 0 and idx[-1] == n - 1
    x = np.arange(n, dtype=float)[idx]
    fig = plots.volume_figure(x, np.ones_like(x), np.ones_like(x), v0=1.0, a=0.2, budget_volume=0.25)
    js = fig.to_json()
    assert '"bdata"' in js and len(js) < 200_000


def test_builders_do_not_import_streamlit():
    assert "bar_core.plots" in sys.modules
    import subprocess
    out = subprocess.run([sys.executable, "-c", "import bar_core.plots, bar_core.job, sys; "
                          "print('streamlit' in sys.modules)"], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_the_accuracy_axis_fits_the_data_so_a_one_point_drop_shows():
    fig = plots.training_figure(np.arange(4.0), np.ones(4), np.ones(4), np.ones(4), epoch_steps=[0, 3],
                                test_acc=[0.881, 0.871], teacher_acc=0.881)
    axis = fig.layout.yaxis
    assert axis.rangemode in (None, "normal") and axis.range is None, "autorange, not 0-100 %"
    assert axis.tickformat == ".1%"
