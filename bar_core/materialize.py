"""Turn a gated network into a physically smaller one that computes the same eval-mode function.

`materialize(model)` slices every conv, BN and the classifier to the channels `connectivity.plan`
keeps, folds each kept gate ẑ into its BN (weight and bias × ẑ; a gate with 0 < ẑ < 1 is scaled, not
rounded), deletes identity blocks and rebuilds each residual block as a Mixed-Connectivity block
(method §6):

    x_R = x.index_select(1, R);  F = branch(x_R) at widths |R| → |M| → |W|;  y = x.index_add(1, W, F)

Each residual stream is stored compactly, indexed by its kept channels only, so R and W are
positions in that compact stream. When R (W) is the whole stream the gather (scatter) is skipped and a
plain tensor (a plain add) is used: on a small CPU network those copies cost as much as the convs.

Channels added back for padding (rounding to a multiple of `round_to`, or one placeholder channel
where a conv would otherwise have no input) never change the function: their contribution is zeroed,
either through ẑ = 0 folded into their BN, or through zeroed weight columns/rows where no BN sits in
between. The original weights of re-added inner channels are kept (useful if one fine-tunes).

The result is a `PrunedNet`: plain nn.Modules built from a JSON-able `spec` (the channel map), which
is what `export.save_pruned` writes and `export.load_pruned` rebuilds from. It is an inference
network: dropout (if any) is kept as nn.Dropout, BNs keep their running statistics.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

if TYPE_CHECKING:
    from .connectivity import Block, Plan, Stream

# The pruned modules live in pruned.py and need only torch; connectivity (and through it the gated
# model classes) is imported inside materialize(), so loading a saved pruned network never touches it.
from .pruned import SPEC_FORMAT, MaterializeError, PrunedNet


# =================================================================================== materialize
def _round_up(n: int, round_to: int, cap: int) -> int:
    return min(cap, max(1, math.ceil(n / round_to) * round_to)) if round_to > 1 else max(n, 1)


def _pad(chosen: list[int], candidates: list[int], target: int) -> list[int]:
    """chosen plus the first candidates not already in it, up to `target` items, sorted."""
    have, extra = set(chosen), []
    for c in candidates:
        if len(have) + len(extra) >= target:
            break
        if c not in have:
            extra.append(c)
    return sorted(chosen + extra)


def _by_score(score: Tensor) -> list[int]:
    """Channel indices, most open first (ties: lower index first)."""
    return sorted(range(score.numel()), key=lambda c: (-float(score[c]), c))


class _Builder:
    """Builds the spec and the state_dict of the pruned network from a connectivity plan."""

    def __init__(self, p: Plan, round_to: int):
        from . import connectivity as cx
        self.cx = cx
        self.p, self.round_to = p, round_to
        self.state: dict[str, Tensor] = {}
        self.streams = [self._stream_channels(s) for s in p.streams]
        self.pos = [{c: i for i, c in enumerate(ch)} for ch in self.streams]
        self.layers: list[dict] = []   # per materialised width: kept vs materialised
        for s, ch in zip(p.streams, self.streams):
            self._record(f"stream {s.name}", len(s.kept), len(ch), s.width)

    # ------------------------------------------------------------------ helpers
    def _record(self, name: str, kept: int, materialized: int, total: int) -> None:
        self.layers.append({"name": name, "kept": kept, "materialized": materialized, "total": total})

    def _stream_channels(self, s: Stream) -> list[int]:
        target = _round_up(len(s.kept), self.round_to, s.width)
        return _pad(list(s.kept), _by_score(s.score), target)

    def _positions(self, stream: int, channels: list[int], score: Tensor | None, name: str) -> tuple[list[int], set[int]]:
        """Stream positions for `channels` padded to the rounding (at least one): (positions, padded ones)."""
        width = len(self.streams[stream])
        pos = sorted(self.pos[stream][c] for c in channels)
        order = list(range(width))
        if score is not None:  # prefer stream channels whose gate is most open
            order = sorted(order, key=lambda i: (-float(score[self.streams[stream][i]]), i))
        padded = _pad(pos, order, _round_up(len(pos), self.round_to, width))
        self._record(name, len(pos), len(padded), width)
        return padded, set(padded) - set(pos)

    def _inner(self, bn: nn.BatchNorm2d, kept: list[int], name: str) -> tuple[list[int], set[int]]:
        padded = _pad(list(kept), _by_score(self.cx.gate_scores(bn)), _round_up(len(kept), self.round_to, bn.num_features))
        self._record(name, len(kept), len(padded), bn.num_features)
        return padded, set(padded) - set(kept)

    def _bn(self, prefix: str, bn: nn.BatchNorm2d, channels: list[int], zero: set[int] | list[bool],
            extra_bias: Tensor | None = None) -> None:
        """BN sliced to `channels` with ẑ folded in; channels flagged in `zero` get ẑ = 0."""
        if bn.weight is None or bn.running_mean is None or bn.eps != 1e-5:
            raise MaterializeError(f"{prefix}: need a BatchNorm with affine parameters, running statistics and "
                                   f"eps 1e-5 (the pruned network's BNs), got {bn}")
        idx = torch.tensor(channels, dtype=torch.long)
        flags = zero if isinstance(zero, list) else [c in zero for c in channels]
        z = self.cx.gate_values(bn)[idx] * (~torch.tensor(flags, dtype=torch.bool)).float()
        z = z.to(bn.weight.dtype)
        bias = bn.bias.detach().cpu()[idx] * z
        if extra_bias is not None:
            bias = bias + extra_bias.to(bias.dtype)
        self.state.update({f"{prefix}.weight": bn.weight.detach().cpu()[idx] * z, f"{prefix}.bias": bias,
                           f"{prefix}.running_mean": bn.running_mean.detach().cpu()[idx].clone(),
                           f"{prefix}.running_var": bn.running_var.detach().cpu()[idx].clone(),
                           f"{prefix}.num_batches_tracked": bn.num_batches_tracked.detach().cpu().clone()})

    @staticmethod
    def _slice(w: Tensor, rows: list[int], cols: list[int] | None = None, zero_rows=(), zero_cols=()) -> Tensor:
        w = w.detach().cpu()[torch.tensor(rows, dtype=torch.long)]
        if cols is not None:
            w = w[:, torch.tensor(cols, dtype=torch.long)]
        w = w.clone()
        for i, r in enumerate(rows):
            if r in zero_rows:
                w[i] = 0
        if cols is not None:
            for j, c in enumerate(cols):
                if c in zero_cols:
                    w[:, j] = 0
        return w

    # ------------------------------------------------------------------ parts
    def stem(self) -> dict:
        m, kind, ch = self.p.model, self.p.kind, self.streams[0]
        conv = m.conv1
        _check_conv(conv, "conv1", None)
        self.state["stem.conv.weight"] = self._slice(conv.weight, ch)
        spec = {"conv": {"in": conv.in_channels, "out": len(ch), "kernel": conv.kernel_size[0],
                         "stride": conv.stride[0], "padding": conv.padding[0]}, "bn": kind == "basic", "maxpool": None}
        if kind == "basic":
            self._bn("stem.bn", m.bn1, ch, set(ch) - set(self.p.streams[0].kept))
            mp = getattr(m, "maxpool", None)
            if isinstance(mp, nn.MaxPool2d):
                spec["maxpool"] = {"kernel": _int(mp.kernel_size), "stride": _int(mp.stride), "padding": _int(mp.padding)}
        return spec

    def block(self, i: int, b: Block) -> dict | None:
        if b.removable:
            return None
        if b.kind == "basic" and b.branch == "constant" and not b.projection:
            return self._constant_block(i, b)
        return self._basic_block(i, b) if b.kind == "basic" else self._preact_block(i, b)

    def _common(self, b: Block) -> dict:
        return {"name": b.name, "type": b.kind, "stream_in": b.stream_in, "stream_out": b.stream_out,
                "in_width": len(self.streams[b.stream_in]), "out_width": len(self.streams[b.stream_out]),
                "stride": _stride(b), "branch": b.branch == "mc"}

    def _shortcut_kind(self, b: Block) -> str:
        if not b.projection:
            return "identity"
        used = bool(set(b.proj_kept) & set(self.p.streams[b.stream_out].kept))
        constant = b.kind == "basic" and b.branch == "constant"
        return "projection" if used or constant or b.branch != "mc" else "zero"

    def _reads(self, b: Block, score: Tensor | None) -> tuple[list[int], set[int]]:
        return self._positions(b.stream_in, b.reads, score, f"{b.name}.reads")

    def _writes(self, b: Block, score: Tensor | None) -> tuple[list[int], set[int]]:
        return self._positions(b.stream_out, b.writes, score, f"{b.name}.writes")

    def _constant_block(self, i: int, b: Block) -> dict:
        c = self.cx.bn_constant(b.module.bn2).float()
        bias = torch.zeros(len(self.streams[b.stream_in]))
        for ch in b.writes:
            bias[self.pos[b.stream_in][ch]] = c[ch]
        self.state[f"blocks.{i}.bias"] = bias
        return {"name": b.name, "type": "constant", "stream_in": b.stream_in, "stream_out": b.stream_out,
                "in_width": len(bias), "out_width": len(bias), "write": [self.pos[b.stream_in][ch] for ch in b.writes],
                "write_channels": list(b.writes)}

    def _basic_block(self, i: int, b: Block) -> dict:
        mod, spec = b.module, self._common(b)
        _check_conv(mod.conv1, f"{b.name}.conv1", 3)
        _check_conv(mod.conv2, f"{b.name}.conv2", 3)
        s_in, s_out = self.streams[b.stream_in], self.streams[b.stream_out]
        read, read_pad = self._reads(b, None)
        read_ch = [s_in[q] for q in read]
        zero_cols = {s_in[q] for q in read_pad}
        spec.update(read=read, read_channels=read_ch, shortcut=self._shortcut_kind(b), dropout=0.0)
        p = f"blocks.{i}"
        if spec["branch"]:
            inner, inner_pad = self._inner(mod.bn1, b.inner, f"{b.name}.inner")
            write, write_pad = self._writes(b, self.cx.gate_scores(mod.bn2))
            write_ch = [s_out[q] for q in write]
            self.state[f"{p}.conv1.weight"] = self._slice(mod.conv1.weight, inner, read_ch, zero_cols=zero_cols)
            self._bn(f"{p}.bn1", mod.bn1, inner, inner_pad)
            self.state[f"{p}.conv2.weight"] = self._slice(mod.conv2.weight, write_ch, inner)
            self._bn(f"{p}.bn2", mod.bn2, write_ch, [q in write_pad for q in write])
            spec.update(inner=len(inner), inner_channels=inner, write=write, write_channels=write_ch)
        else:
            spec.update(inner=0, inner_channels=[], write=[], write_channels=[])
        if spec["shortcut"] == "projection":
            ds_conv, ds_bn = mod.downsample[0], mod.downsample[1]
            _check_conv(ds_conv, f"{b.name}.downsample.0", 1)
            kept_out = set(self.p.streams[b.stream_out].kept) & set(b.proj_kept)
            extra = None
            if b.branch == "constant":  # relu(proj + c): fold the branch's constant into the projection's bias
                c = self.cx.bn_constant(mod.bn2).float()
                extra = torch.tensor([float(c[ch]) if ch in b.writes else 0.0 for ch in s_out])
            self.state[f"{p}.shortcut.0.weight"] = self._slice(ds_conv.weight, s_out, read_ch, zero_cols=zero_cols)
            self._bn(f"{p}.shortcut.1", ds_bn, s_out, [ch not in kept_out for ch in s_out], extra)
        return spec

    def _preact_block(self, i: int, b: Block) -> dict:
        mod, spec = b.module, self._common(b)
        _check_conv(mod.conv1, f"{b.name}.conv1", 3)
        _check_conv(mod.conv2, f"{b.name}.conv2", 3)
        s_in, s_out = self.streams[b.stream_in], self.streams[b.stream_out]
        read, read_pad = self._reads(b, self.cx.gate_scores(mod.bn1))
        read_ch = [s_in[q] for q in read]
        p = f"blocks.{i}"
        self._bn(f"{p}.bn1", mod.bn1, read_ch, [q in read_pad for q in read])
        dropout = mod.dropout.p if isinstance(mod.dropout, nn.Dropout) else 0.0
        spec.update(read=read, read_channels=read_ch, shortcut=self._shortcut_kind(b), dropout=dropout)
        if spec["branch"]:
            inner, inner_pad = self._inner(mod.bn2, b.inner, f"{b.name}.inner")
            write, write_pad = self._writes(b, None)
            write_ch = [s_out[q] for q in write]
            self.state[f"{p}.conv1.weight"] = self._slice(mod.conv1.weight, inner, read_ch)
            self._bn(f"{p}.bn2", mod.bn2, inner, inner_pad)
            self.state[f"{p}.conv2.weight"] = self._slice(mod.conv2.weight, write_ch, inner,
                                                          zero_rows={s_out[q] for q in write_pad})
            spec.update(inner=len(inner), inner_channels=inner, write=write, write_channels=write_ch)
        else:
            spec.update(inner=0, inner_channels=[], write=[], write_channels=[])
        if spec["shortcut"] == "projection":
            _check_conv(mod.shortcut, f"{b.name}.shortcut", 1)
            self.state[f"{p}.shortcut.weight"] = self._slice(mod.shortcut.weight, s_out, read_ch)
        return spec

    def head(self) -> dict:
        m, last = self.p.model, len(self.streams) - 1
        ch = self.streams[last]
        if self.p.kind == "preact":
            read, pad = self._positions(last, self.p.head_reads, self.cx.gate_scores(m.bn), "head.reads")
            read_ch = [ch[q] for q in read]
            self._bn("head.bn", m.bn, read_ch, [q in pad for q in read])
        else:  # post-act: the classifier reads the whole compact stream; padded channels get zero columns
            read = list(range(len(ch)))
            read_ch, pad = ch, {q for q in read if ch[q] not in set(self.p.head_reads)}
        self.state["head.fc.weight"] = self._slice(m.fc.weight, list(range(m.fc.out_features)), read_ch,
                                                   zero_cols={ch[q] for q in pad})
        self.state["head.fc.bias"] = m.fc.bias.detach().cpu().clone()
        return {"read": read, "read_channels": read_ch, "width": len(ch), "bn": self.p.kind == "preact",
                "num_classes": m.fc.out_features}

    def build(self) -> dict:
        stem = self.stem()
        blocks = []
        for b in self.p.blocks:
            spec = self.block(len(blocks), b)
            if spec is not None:
                blocks.append(spec)
        streams = [{"id": s.id, "name": s.name, "channels": ch, "kept": len(s.kept), "width": len(ch),
                    "total": s.width} for s, ch in zip(self.p.streams, self.streams)]
        return {"format": SPEC_FORMAT, "kind": self.p.kind, "source": type(self.p.model).__name__,
                "in_channels": self.p.model.conv1.in_channels, "num_classes": self.p.model.fc.out_features,
                "round_to": self.round_to, "streams": streams, "stem": stem, "blocks": blocks, "head": self.head(),
                "removed_blocks": [b.name for b in self.p.blocks if b.removable]}


def _int(v) -> int:
    return int(v[0] if isinstance(v, (tuple, list)) else v)


def _stride(b: Block) -> int:
    return _int(b.module.conv1.stride)


def _check_conv(conv: nn.Conv2d, name: str, kernel: int | None) -> None:
    """The pruned blocks assume torchvision's k×k convs with 'same' padding, no groups, no bias."""
    k = conv.kernel_size[0]
    ok = conv.groups == 1 and conv.bias is None and conv.dilation == (1, 1) and conv.kernel_size == (k, k)
    if kernel is not None:
        ok = ok and k == kernel and conv.padding == ((k - 1) // 2,) * 2
    if not ok:
        raise MaterializeError(f"{name}: unsupported conv {conv} (need {kernel or 'k'}x{kernel or 'k'}, "
                               f"groups=1, no bias, 'same' padding)")


def materialize(model: nn.Module, *, round_to: int = 1) -> PrunedNet:
    """A physically pruned copy of `model` (gated or dense registry ResNet/WRN) in eval mode.

    round_to > 1 rounds every materialised width (stream, reads, inner, writes) up to a multiple of
    `round_to` (capped at the layer's full width) by adding back the most open closed channels with
    a zeroed contribution: same function, friendlier shapes for vectorised conv kernels. The widths
    before and after rounding are in `pruned.spec["layers"]`; `rounding_report(pruned)` sums them up.
    """
    if not isinstance(round_to, int) or round_to < 1:
        raise MaterializeError(f"round_to must be an integer >= 1, got {round_to!r}")
    from .connectivity import plan
    builder = _Builder(plan(model), round_to)
    spec = builder.build()
    spec["layers"] = builder.layers
    net = PrunedNet(spec)
    missing, unexpected = net.load_state_dict(builder.state, strict=False)
    if missing or unexpected:  # a bug here, not a user error: the builder and the modules disagree
        raise MaterializeError(f"internal mismatch: missing {missing[:3]}, unexpected {unexpected[:3]}")
    param = next(model.parameters(), None)
    if param is not None:
        net = net.to(param.device)
    return net.eval()


def rounding_report(pruned: PrunedNet) -> dict:
    """How much rounding added: channels kept by the gates vs materialised, summed over all widths."""
    layers = pruned.spec.get("layers", [])
    kept = sum(r["kept"] for r in layers)
    mat = sum(r["materialized"] for r in layers)
    return {"round_to": pruned.spec["round_to"], "kept": kept, "materialized": mat, "added": mat - kept,
            "layers": [r for r in layers if r["materialized"] != r["kept"]]}
