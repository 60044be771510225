"""What pruning buys: MACs, parameters, activation volume, and measured latency, dense vs pruned.

MACs count the multiply-accumulates of convolutions and linear layers (BN, relu, pooling, gathers
and adds are not counted: they are memory-bound and show up in the measured latency instead). A
pruned network's count includes its padding channels: they are computed, so they cost.

Latency is measured, not modelled: warm-up runs, then the median of repeated timings, under a
given number of CPU threads. On a machine shared with other work the medians of interleaved dense/
pruned rounds are what `compare` reports; single timings are noise.

`compare_isolated` runs `compare` in a fresh Python process (`python -m bar_core.cost`) and returns its
JSON. A process that serves a dashboard is the wrong place to time a forward pass: its other threads
(the web server, page reruns, a training job) take the GIL and the cores in bursts, which weighs more
on the pruned network's shorter pass than on the dense one's, so a speedup timed there reads low.
The price is the child's start-up (importing torch and the models: about 4 s here).

`layer_table` lists a network's layers with their channels, parameters and MACs (what Netron shows).
"""
from __future__ import annotations

import copy
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from .hard_concrete import HardConcreteGate
from .models.gated import GatedBatchNorm2d
from .volume import initial_volume, measure_areas, volume


def _shape(input_shape: Sequence[int]) -> tuple[int, ...]:
    """(C, H, W) → (1, C, H, W); a 4-tuple is used as given."""
    shape = tuple(int(s) for s in input_shape)
    if len(shape) == 3:
        return (1, *shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be (C, H, W) or (N, C, H, W), got {input_shape!r}")
    return shape


def _device(model: nn.Module) -> torch.device:
    p = next(model.parameters(), None)
    return p.device if p is not None else torch.device("cpu")


def _run_hooked(model: nn.Module, input_shape: Sequence[int], types: tuple, hook) -> None:
    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, types)]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(_shape(input_shape), device=_device(model)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()


def count_macs(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Multiply-accumulates of every Conv2d and Linear for one forward pass on `input_shape`
    ((C, H, W) means batch 1). Conv: output elements × in_channels/groups × kh × kw."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            total += output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            total += output.numel() * module.in_features

    _run_hooked(model, input_shape, (nn.Conv2d, nn.Linear), hook)
    return int(total)


def count_params(model: nn.Module, *, include_gates: bool = False) -> int:
    """Parameters of the network; the gates' log α are training machinery and excluded by default."""
    gate_ids = set()
    if not include_gates:
        gate_ids = {id(p) for m in model.modules() if isinstance(m, HardConcreteGate) for p in m.parameters()}
    return int(sum(p.numel() for p in model.parameters() if id(p) not in gate_ids))


def activation_volume(model: nn.Module, input_shape: Sequence[int]) -> int:
    """Σ over BatchNorm outputs of channels × H × W (per example): the volume a network materialises.

    For a gated network this is V0 (every channel is computed); for a pruned one it is the volume
    it really computes, padding included."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        total += output[0].numel()

    _run_hooked(model, input_shape, (nn.BatchNorm2d,), hook)
    return int(total)


def gate_volume_ratio(gated_model: nn.Module, input_shape: Sequence[int]) -> float:
    """BAR's V/V0: area-weighted share of gates with ẑ > 0 (method §2)."""
    measure_areas(gated_model, torch.zeros(_shape(input_shape), device=_device(gated_model)))
    return volume(gated_model) / initial_volume(gated_model)


def dense_twin(gated_model: nn.Module) -> nn.Module:
    """A copy of the network with every GatedBatchNorm2d replaced by a plain BatchNorm2d (same
    weights): the unpruned network as one would deploy it, the fair baseline for timings."""
    twin = copy.deepcopy(gated_model)
    for module in list(twin.modules()):
        for child_name, child in list(module.named_children()):
            if isinstance(child, GatedBatchNorm2d):
                bn = nn.BatchNorm2d(child.num_features, eps=child.eps, momentum=child.momentum,
                                    affine=child.affine, track_running_stats=child.track_running_stats)
                state = {k: v for k, v in child.state_dict().items() if not k.startswith("gate.")}
                bn.load_state_dict(state)
                setattr(module, child_name, bn.to(_device(gated_model)))
    return twin.eval()


def measure_latency(model: nn.Module, batch: int, threads: int, device: str | torch.device = "cpu", *,
                    input_shape: Sequence[int] = (1, 28, 28), warmup: int = 3, repeats: int = 15,
                    min_time: float = 0.01, channels_last: bool = False, cuda_graph: bool = False) -> dict:
    """Seconds per forward pass of a `batch`-sized input, eval mode, no autograd.

    cuda_graph (CUDA only): capture one forward in a CUDA graph and time its replays, which removes
    the per-kernel launch cost that dominates a batch-1 pass of a small network on a GPU.

    Each timing repeats the forward enough times to last `min_time` (a batch-1 pass of a small net
    is shorter than the timer's noise); the result is the median over `repeats` timings, with the
    minimum alongside. Threads are restored afterwards. channels_last converts the model in place
    (module.to(memory_format=...) does) and feeds it a channels-last input."""
    device = torch.device(device)
    if cuda_graph and device.type != "cuda":
        raise ValueError(f"cuda_graph needs a CUDA device, got {str(device)!r}")
    shape = _shape(input_shape)
    x = torch.randn((batch, *shape[1:]), device=device)
    model = model.to(device).eval()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with torch.no_grad():
            forward = _graphed(model, x, warmup) if cuda_graph else (lambda: model(x))
            for _ in range(warmup):
                forward()
            inner = _calibrate(forward, device, min_time)
            times = [_timed(forward, device, inner) / inner for _ in range(repeats)]
    finally:
        torch.set_num_threads(old_threads)
    return {"median_s": statistics.median(times), "min_s": min(times), "batch": batch, "threads": threads,
            "repeats": repeats, "inner": inner, "cuda_graph": cuda_graph}


def _graphed(model: nn.Module, x: Tensor, warmup: int):
    """The forward captured in a CUDA graph (warmed up on a side stream first, as CUDA graph capture
    requires); returns the replay function. The input stays in its static buffer `x`."""
    stream = torch.cuda.Stream(device=x.device)
    stream.wait_stream(torch.cuda.current_stream(x.device))
    with torch.cuda.stream(stream):
        for _ in range(max(warmup, 3)):
            model(x)
    torch.cuda.current_stream(x.device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        model(x)
    return graph.replay


def _timed(forward, device: torch.device, n: int) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    for _ in range(n):
        forward()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _calibrate(forward, device: torch.device, min_time: float) -> int:
    one = max(_timed(forward, device, 1), 1e-6)
    return max(1, min(1000, int(min_time / one) + 1))


def paired_speedup(dense: nn.Module, pruned: nn.Module, batch: int, threads: int, *, input_shape: Sequence[int],
                   device: str | torch.device = "cpu", rounds: int = 5, repeats: int = 5, **kw) -> dict:
    """Dense and pruned timed in alternating rounds, so that load from other processes hits both;
    the speedup is the median of the per-round ratios. The spreads are [min, max] over the rounds."""
    ratios, dense_t, pruned_t = [], [], []
    for _ in range(rounds):
        d = measure_latency(dense, batch, threads, device, input_shape=input_shape, repeats=repeats, **kw)["median_s"]
        p = measure_latency(pruned, batch, threads, device, input_shape=input_shape, repeats=repeats, **kw)["median_s"]
        dense_t.append(d)
        pruned_t.append(p)
        ratios.append(d / p)
    return {"batch": batch, "threads": threads, "rounds": rounds, "repeats": repeats,
            "dense_s": statistics.median(dense_t), "pruned_s": statistics.median(pruned_t),
            "dense_spread_s": [min(dense_t), max(dense_t)], "pruned_spread_s": [min(pruned_t), max(pruned_t)],
            "speedup": statistics.median(ratios), "speedup_spread": [min(ratios), max(ratios)]}


def compare(gated_model: nn.Module, pruned: nn.Module, input_shape: Sequence[int], *,
            batches: Sequence[int] = (64, 1), threads: Sequence[int] = (1, 2), device: str = "cpu",
            rounds: int = 5, repeats: int = 5, channels_last: bool = False, cuda_graph: bool = False) -> dict:
    """MACs, parameters and volume of the dense twin vs the pruned network, and measured speedups.

    mac_ratio / param_ratio are pruned ÷ dense (smaller is better); mac_reduction is its inverse; each
    timing row has `efficiency` = speedup ÷ mac_reduction (1.0: time falls as fast as MACs do)."""
    dense = dense_twin(gated_model)
    macs_d, macs_p = count_macs(dense, input_shape), count_macs(pruned, input_shape)
    params_d, params_p = count_params(dense), count_params(pruned)
    result = {
        "input_shape": list(_shape(input_shape)[1:]),
        "macs_dense": macs_d, "macs_pruned": macs_p, "mac_ratio": macs_p / macs_d, "mac_reduction": macs_d / macs_p,
        "params_dense": params_d, "params_pruned": params_p, "param_ratio": params_p / params_d,
        "volume_ratio_gates": gate_volume_ratio(gated_model, input_shape),
        "volume_ratio_materialized": activation_volume(pruned, input_shape) / activation_volume(dense, input_shape),
        "timings": [],
    }
    for b in batches:
        for t in threads:
            row = paired_speedup(dense, pruned, b, t, input_shape=input_shape, device=device, rounds=rounds,
                                 repeats=repeats, channels_last=channels_last, cuda_graph=cuda_graph)
            row["efficiency"] = row["speedup"] / result["mac_reduction"]
            result["timings"].append(row)
    return result


# ================================================================================ per-layer table
def _layer_macs(module: nn.Module, output: Tensor) -> int:
    if isinstance(module, nn.Conv2d):
        kh, kw = module.kernel_size
        return output.numel() * (module.in_channels // module.groups) * kh * kw
    if isinstance(module, nn.Linear):
        return output.numel() * module.in_features
    return 0


def layer_table(model: nn.Module, input_shape: Sequence[int]) -> list[dict]:
    """One row per layer that holds parameters or multiplies (Conv2d, Linear, BatchNorm, a block's
    bias), in forward order: layer (module path), type, in / out channels, kernel, stride, output H×W,
    params, MACs. The MACs sum to count_macs and the params to count_params (gates excluded)."""
    gate_ids = {id(m) for m in model.modules() if isinstance(m, HardConcreteGate)}
    rows: list[dict] = []
    names = {id(m): n for n, m in model.named_modules()}

    def hook(module, inputs, output):
        conv = isinstance(module, nn.Conv2d)
        rows.append({
            "layer": names[id(module)], "type": type(module).__name__,
            "in": int(inputs[0].shape[1]) if inputs[0].dim() > 1 else int(inputs[0].numel()),
            "out": int(output.shape[1]) if output.dim() > 1 else int(output.numel()),
            "kernel": "×".join(map(str, module.kernel_size)) if conv else "",
            "stride": int(module.stride[0]) if conv else None,
            "output": "×".join(map(str, output.shape[2:])) if output.dim() == 4 else "",
            "params": sum(p.numel() for p in module.parameters(recurse=False)),
            "MACs": _layer_macs(module, output)})

    counted = tuple(m for m in model.modules()
                    if id(m) not in gate_ids and (isinstance(m, (nn.Conv2d, nn.Linear))
                                                  or next(m.parameters(recurse=False), None) is not None))
    handles = [m.register_forward_hook(hook) for m in counted]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(_shape(input_shape), device=_device(model)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    return rows


# ================================================================================ timing in its own process
ISOLATED_TIMEOUT_S = 300


class TimingError(RuntimeError):
    """The timing process failed or took too long; the message is one line."""


def compare_isolated(gated_model: nn.Module, pruned: nn.Module, input_shape: Sequence[int], *,
                     timeout: float = ISOLATED_TIMEOUT_S, **kw) -> dict:
    """`compare(gated_model, pruned, input_shape, **kw)` run in a fresh Python process, as a plain
    script would time it: nothing else in that interpreter competes for its GIL or its allocator.

    The result is compare's, plus "isolated": True, "pid" (the child's) and "process_s" (the child's
    wall time, start-up included). Raises TimingError with one line when the child fails or runs past `timeout` seconds."""
    package_root = str(Path(__file__).resolve().parent.parent)
    env = dict(os.environ)
    # The child imports this very bar_core, installed or not (the app may run from a source checkout).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    with tempfile.TemporaryDirectory(prefix="bar-timing-") as tmp:
        job = Path(tmp) / "models.pt"
        # Whole modules, pickled: the child needs any network the caller has, and this private file
        # (a 0700 temporary folder, read back at once by the same user) is not untrusted input.
        torch.save({"gated": gated_model, "pruned": pruned, "input_shape": list(input_shape), "kwargs": kw}, job)
        start = time.perf_counter()
        try:
            done = subprocess.run([sys.executable, "-m", "bar_core.cost", str(job)], capture_output=True, text=True,
                                  timeout=timeout, env=env, cwd=tmp)
        except subprocess.TimeoutExpired:
            raise TimingError(f"the timing process ran past {timeout:.0f} s and was stopped") from None
        except OSError as exc:
            raise TimingError(f"could not start the timing process: {exc}") from None
        elapsed = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        why = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
        raise TimingError(f"the timing process failed: {why[:200]}")
    try:
        result = json.loads(lines[-1])
    except json.JSONDecodeError:
        raise TimingError(f"the timing process printed no result: {lines[-1][:200]!r}") from None
    result.update(isolated=True, process_s=elapsed)
    return result


def _main(argv: Sequence[str]) -> int:
    """`python -m bar_core.cost JOB.pt`: compare() on the job compare_isolated wrote; prints JSON."""
    if len(argv) != 1:
        print("usage: python -m bar_core.cost JOB.pt (written by bar_core.cost.compare_isolated)", file=sys.stderr)
        return 2
    job = torch.load(argv[0], map_location="cpu", weights_only=False)
    result = compare(job["gated"], job["pruned"], job["input_shape"], **job["kwargs"])
    print(json.dumps(dict(result, pid=os.getpid())))
    return 0


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
