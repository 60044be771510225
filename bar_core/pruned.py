"""The pruned network at run time: the modules a saved pruned network is rebuilt from.

`PrunedNet(spec)` builds stem → Mixed-Connectivity blocks → head from the JSON-able channel map that
`materialize` (the builder, bar_core/materialize.py) produces and `export.save_pruned` writes. A
Mixed-Connectivity block reads the stream channels R, computes at its reduced widths and adds into
the stream channels W:

    x_R = x.index_select(1, R);  F = branch(x_R) at widths |R| → |M| → |W|;  y = x.index_add(1, W, F)

This module needs only torch, so `export.load_pruned` never imports the gated training classes.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

SPEC_FORMAT = "bar-pruned/1"


class MaterializeError(ValueError):
    """The model cannot be materialised (unsupported layer shape); the message says which layer."""


# ================================================================================ pruned modules
def _index(positions: list[int] | None, width: int) -> Tensor | None:
    """None (the fast path: use the whole stream) when `positions` is every position in order."""
    if positions is None or positions == list(range(width)):
        return None
    return torch.tensor(positions, dtype=torch.long)


def _gather(x: Tensor, idx: Tensor | None) -> Tensor:
    return x if idx is None else x.index_select(1, idx)


def _scatter_add(base: Tensor | None, idx: Tensor | None, f: Tensor, width: int) -> Tensor:
    """base + f placed at the stream positions idx; base None means a zero stream of `width` channels.

    Without autograd the add is done in place, on f or on base — base may be the block's input
    stream: a fresh copy of the stream per block costs measurable time on CPU, and inside PrunedNet
    every block input is an intermediate tensor nothing else reads afterwards. (So a block called by
    hand under no_grad may overwrite its argument.) With autograd on, the stream is never modified in place."""
    inplace = not torch.is_grad_enabled()
    if base is None:
        if idx is None:
            return f
        base = f.new_zeros((f.shape[0], width, *f.shape[2:]))
        return base.index_copy_(1, idx, f) if inplace else base.index_copy(1, idx, f)
    if idx is None:
        return f.add_(base) if inplace else f + base
    return base.index_add_(1, idx, f) if inplace else base.index_add(1, idx, f)


def _conv3x3(cin: int, cout: int, stride: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, stride, 1, bias=False)


class PrunedStem(nn.Module):
    """conv (→ BN → relu → maxpool for post-activation nets), producing the first compact stream."""

    def __init__(self, spec: dict):
        super().__init__()
        c = spec["conv"]
        self.conv = nn.Conv2d(c["in"], c["out"], c["kernel"], c["stride"], c["padding"], bias=False)
        self.bn = nn.BatchNorm2d(c["out"]) if spec["bn"] else None
        mp = spec.get("maxpool")
        self.maxpool = nn.MaxPool2d(mp["kernel"], mp["stride"], mp["padding"]) if mp else None

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv(x)
        if self.bn is not None:
            x = F.relu(self.bn(x), inplace=True)
        return self.maxpool(x) if self.maxpool is not None else x


class BasicMC(nn.Module):
    """Post-activation Mixed-Connectivity block: y = relu(shortcut + scatter_W(bn2 conv2 relu bn1 conv1 x_R)).

    shortcut is x itself ("identity"), a 1×1 conv + BN on x_R writing the whole output stream
    ("projection"), or nothing ("zero": the projection's gates are all closed)."""

    def __init__(self, spec: dict):
        super().__init__()
        self.width_out = spec["out_width"]
        self.register_buffer("read_idx", _index(spec["read"], spec["in_width"]), persistent=False)
        self.register_buffer("write_idx", _index(spec["write"], self.width_out), persistent=False)
        n_read, n_write, inner = len(spec["read"]), len(spec["write"]), spec["inner"]
        self.has_branch = spec["branch"]
        if self.has_branch:
            self.conv1, self.bn1 = _conv3x3(n_read, inner, spec["stride"]), nn.BatchNorm2d(inner)
            self.conv2, self.bn2 = _conv3x3(inner, n_write, 1), nn.BatchNorm2d(n_write)
        self.shortcut_kind = spec["shortcut"]
        self.shortcut = None
        if self.shortcut_kind == "projection":
            self.shortcut = nn.Sequential(nn.Conv2d(n_read, self.width_out, 1, spec["stride"], bias=False),
                                          nn.BatchNorm2d(self.width_out))

    def forward(self, x: Tensor) -> Tensor:
        xr = _gather(x, self.read_idx)
        base = x if self.shortcut_kind == "identity" else (self.shortcut(xr) if self.shortcut is not None else None)
        if self.has_branch:
            f = self.bn2(self.conv2(F.relu(self.bn1(self.conv1(xr)), inplace=True)))
            base = _scatter_add(base, self.write_idx, f, self.width_out)
        return F.relu(base, inplace=not torch.is_grad_enabled())


class PreActMC(nn.Module):
    """Pre-activation Mixed-Connectivity block: o = relu(bn1 x_R); y = shortcut + scatter_W(conv2 relu bn2 conv1 o).

    shortcut is x ("identity"), a 1×1 conv of o ("projection"), or nothing ("zero")."""

    def __init__(self, spec: dict):
        super().__init__()
        self.width_out = spec["out_width"]
        self.register_buffer("read_idx", _index(spec["read"], spec["in_width"]), persistent=False)
        self.register_buffer("write_idx", _index(spec["write"], self.width_out), persistent=False)
        n_read, n_write, inner = len(spec["read"]), len(spec["write"]), spec["inner"]
        self.bn1 = nn.BatchNorm2d(n_read)
        self.has_branch = spec["branch"]
        if self.has_branch:
            self.conv1, self.bn2 = _conv3x3(n_read, inner, spec["stride"]), nn.BatchNorm2d(inner)
            self.dropout = nn.Dropout(spec["dropout"]) if spec["dropout"] > 0 else nn.Identity()
            self.conv2 = _conv3x3(inner, n_write, 1)
        self.shortcut_kind = spec["shortcut"]
        self.shortcut = (nn.Conv2d(n_read, self.width_out, 1, spec["stride"], bias=False)
                         if self.shortcut_kind == "projection" else None)

    def forward(self, x: Tensor) -> Tensor:
        o = F.relu(self.bn1(_gather(x, self.read_idx)), inplace=True)
        base = x if self.shortcut_kind == "identity" else (self.shortcut(o) if self.shortcut is not None else None)
        if not self.has_branch:
            return base
        f = self.conv2(self.dropout(F.relu(self.bn2(self.conv1(o)), inplace=True)))
        return _scatter_add(base, self.write_idx, f, self.width_out)


class ConstantAdd(nn.Module):
    """A post-activation block whose inner channels are all closed: y = relu(x + c), c per channel.

    c is bn2's folded output for a zero input, non-zero only on the channels the block writes."""

    def __init__(self, spec: dict):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(spec["in_width"]))

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x + self.bias.view(1, -1, 1, 1))


class PrunedHead(nn.Module):
    """(pre-act: gather → BN → relu) → global average pool → linear classifier."""

    def __init__(self, spec: dict):
        super().__init__()
        self.register_buffer("read_idx", _index(spec["read"], spec["width"]), persistent=False)
        features = len(spec["read"])
        self.bn = nn.BatchNorm2d(features) if spec["bn"] else None
        self.fc = nn.Linear(features, spec["num_classes"])

    def forward(self, x: Tensor) -> Tensor:
        if self.bn is not None:
            x = F.relu(self.bn(_gather(x, self.read_idx)))
            return self.fc(x.mean((2, 3)))
        return self.fc(_gather(x.mean((2, 3)), self.read_idx))


_BLOCK_TYPES = {"basic": BasicMC, "preact": PreActMC, "constant": ConstantAdd}


class PrunedNet(nn.Module):
    """The materialised network: stem → Mixed-Connectivity blocks → head, all from `spec`."""

    def __init__(self, spec: dict):
        super().__init__()
        if spec.get("format") != SPEC_FORMAT:
            raise MaterializeError(f"architecture format {spec.get('format')!r} is not {SPEC_FORMAT!r}")
        self.spec = spec
        self.stem = PrunedStem(spec["stem"])
        unknown = sorted({b["type"] for b in spec["blocks"]} - set(_BLOCK_TYPES))
        if unknown:
            raise MaterializeError(f"unknown block type(s) {unknown}; known: {sorted(_BLOCK_TYPES)}")
        self.blocks = nn.Sequential(*[_BLOCK_TYPES[b["type"]](b) for b in spec["blocks"]])
        self.head = PrunedHead(spec["head"])

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.blocks(self.stem(x)))
