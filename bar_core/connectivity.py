"""Mixed connectivity of a gated residual network (method §6): which stream channels each residual
block reads (R), which inner channels it keeps (M) and which stream channels it writes (W).

Why a dataflow analysis rather than just counting open gates: a residual stream channel is shared by
every block of a stage, so whether it can be dropped depends on the whole stage. We compute, in
eval mode (gate values ẑ = `gate.deterministic()`):

* forward, which stream channels are *alive* (can be non-zero) at each point: a channel is alive
  once a producer with an open gate wrote it (stem BN, a block's W, a projection's kept channels);
* backward, which channels are *needed* (their value reaches the logits): what the classifier head
  reads, plus what every live block reads, carried back through the identity shortcuts.

A block's effective W is what it may write ∩ what is needed after it (a write nobody reads is
dropped); a block that writes nothing needed is removable, and then its reads do not count either.
The channels kept for a stream are those needed anywhere in it (`kept`); alive ones outside it are
`unread`: they can be dropped (method §6).

What is exact in each block kind (z = 0 makes a gated BN output exactly 0):

* "basic" (post-activation, torchvision BasicBlock): y = relu(x + bn2(conv2(relu(bn1(conv1 x))))).
  R = the alive input channels (a dead channel is 0, so a bias-free conv gets nothing from it).
  M empty ⇒ conv2 sees 0 and bn2 outputs its folded bias ẑ·(b − μ·w/√(σ²+ε)): the block adds that
  constant to W and applies relu ("constant" branch). W then holds only channels where it is ≠ 0.
* "preact" (WideBasic): o = relu(bn1 x); y = x + conv2(relu(bn2(conv1 o))). R = bn1's open
  channels, read even where the stream is dead (bn1 turns 0 into relu(folded bias), not 0). M
  empty ⇒ bn2 outputs exactly 0 ⇒ the branch is exactly 0: the block is an identity. conv2 has no
  BN after it, so a live block may write every stream channel: W = what is needed after it.

R may be empty while the branch is live ("mc" with reads == []): the branch then computes from its
BN biases alone — a constant map through a zero-padded conv is not constant at the border, so the
block is not an identity. `materialize` feeds such a branch a zeroed placeholder channel.

Structure returned by `analyze(model)` (plain JSON: lists of ints, strings, numbers, booleans):

    {
      "model": "CifarResNet" | "ResNet" | "WideResNet",   # the class analysed
      "kind": "basic" | "preact",                          # its residual block kind
      "streams": [{                                        # residual streams, in forward order
          "id": 0, "name": "layer1" | "stem" | "layer2" ..., # the stage it runs through ("stem": it
          "stage": 0..4,                                    # only feeds a projection; stage 0)
          "producer": "stem" | "layer2.0",                  # what creates it
          "width": int,                                     # channels in the dense network
          "alive": [int], "kept": [int], "unread": [int]}], # alive = ever written by an open producer
                                                            # kept = what a pruned network keeps
                                                            # unread = alive but nothing reads them
      "blocks": [{
          "name": "layer1.0", "kind": "basic"|"preact", "stage": int,
          "stream_in": id, "stream_out": id, "in_width": int, "out_width": int,
          "alive_in": [int],            # stream channels alive at its input
          "reads": [int],               # R, stream channels (original indices) of stream_in
          "inner": [int],               # M, kept inner channels (bn1 for basic, bn2 for preact)
          "inner_total": int,
          "writes": [int],              # W (effective), channels of stream_out it writes
          "writes_unread": [int],       # what its gates let it write but nothing reads afterwards
          "branch": "mc" | "constant" | "none",   # computed at reduced width / constant add / nothing
          "shortcut": {"kind": "identity"} |
                      {"kind": "projection", "kept": [int], "total": int},  # projection's open gates
                                                                             # (basic) / all (preact)
          "removable": bool}],          # an identity: deleted by materialize()
      "head": {"reads": [int], "width": int},    # stream channels the classifier uses
      "layers": [{"name": "layer1.0.bn2", "role": "stem"|"inner"|"write"|"read"|"projection"|"head",
                  "kept": int, "total": int, "partial": int}],   # partial: kept with 0 < ẑ < 1
      "total_kept": int, "total_channels": int,
    }

`plan(model)` returns the same facts as Python objects (sets, module references) for `materialize`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import Tensor, nn
from torchvision.models import ResNet
from torchvision.models.resnet import BasicBlock

from .models.gated import GatedBatchNorm2d
from .models.resnet import CifarResNet
from .models.wide_resnet import WideBasic, WideResNet


class ConnectivityError(ValueError):
    """A model this analysis does not know how to read (not a registry ResNet / WRN)."""


# --------------------------------------------------------------------------------------------- gates
def gate_values(bn: nn.BatchNorm2d) -> Tensor:
    """ẑ per channel of a BN: its gate's test value, or 1 for a plain (ungated) BN."""
    if isinstance(bn, GatedBatchNorm2d):
        with torch.no_grad():
            return bn.gate.deterministic().detach().float().cpu()
    return torch.ones(bn.num_features)


def gate_scores(bn: nn.BatchNorm2d) -> Tensor:
    """How open each channel is (log α), used to pick the channels to add back when rounding."""
    if isinstance(bn, GatedBatchNorm2d):
        return bn.gate.log_alpha.detach().float().cpu()
    return torch.full((bn.num_features,), float("inf"))


def open_channels(bn: nn.BatchNorm2d) -> set[int]:
    return set(torch.nonzero(gate_values(bn) > 0).flatten().tolist())


def bn_constant(bn: nn.BatchNorm2d) -> Tensor:
    """What the gated BN outputs for an all-zero input: ẑ·(b − μ·w/√(σ²+ε)), per channel (float64).

    A post-activation block whose inner channels are all closed adds exactly this to the stream."""
    w = bn.weight.detach().double().cpu() if bn.weight is not None else torch.ones(bn.num_features, dtype=torch.float64)
    b = bn.bias.detach().double().cpu() if bn.bias is not None else torch.zeros(bn.num_features, dtype=torch.float64)
    mean, var = bn.running_mean.detach().double().cpu(), bn.running_var.detach().double().cpu()
    return gate_values(bn).double() * (b - mean * w / torch.sqrt(var + bn.eps))


# ---------------------------------------------------------------------------------------- the plan
@dataclass
class Stream:
    id: int
    name: str
    stage: int
    producer: str
    width: int
    alive: set[int] = field(default_factory=set)     # ever alive in this stream
    kept: list[int] = field(default_factory=list)    # sorted; what a pruned network keeps
    score: Tensor | None = None                      # per channel, higher = more open (rounding)


@dataclass
class Block:
    name: str
    module: nn.Module
    kind: str                   # "basic" | "preact"
    stage: int
    stream_in: int
    stream_out: int
    projection: bool            # has a projection shortcut (starts a new stream)
    alive_in: set[int]
    inner: list[int]            # M
    may_write: set[int]         # what its open gates let it write (before liveness)
    reads: list[int] = field(default_factory=list)      # R (effective)
    writes: list[int] = field(default_factory=list)     # W (effective)
    branch: str = "none"        # "mc" | "constant" | "none"
    proj_kept: list[int] = field(default_factory=list)  # projection's open channels

    @property
    def removable(self) -> bool:
        return not self.projection and self.branch == "none"


@dataclass
class Plan:
    model: nn.Module
    kind: str
    streams: list[Stream]
    blocks: list[Block]
    head_reads: list[int]       # stream channels of the last stream the head uses
    head_bn: nn.BatchNorm2d | None


def _family(model: nn.Module) -> str:
    if isinstance(model, WideResNet):
        return "preact"
    if isinstance(model, (CifarResNet, ResNet)):
        return "basic"
    raise ConnectivityError(f"cannot analyse {type(model).__name__}: expected a registry CifarResNet, "
                            f"torchvision ResNet or WideResNet")


def _blocks(model: nn.Module, kind: str) -> list[tuple[int, str, nn.Module]]:
    """(stage, name, block) for every residual block, in forward order."""
    want = WideBasic if kind == "preact" else BasicBlock
    out = []
    for stage in range(1, 5):
        layer = getattr(model, f"layer{stage}", None)
        if layer is None:
            continue
        for j, block in enumerate(layer):
            if not isinstance(block, want):
                raise ConnectivityError(f"layer{stage}.{j} is a {type(block).__name__}; only "
                                        f"{want.__name__} blocks are supported (Bottleneck is not)")
            out.append((stage, f"layer{stage}.{j}", block))
    return out


def _block_width(block: nn.Module, kind: str) -> tuple[int, int]:
    if kind == "preact":
        return block.conv1.in_channels, block.conv2.out_channels
    return block.conv1.in_channels, block.bn2.num_features


def _has_projection(block: nn.Module, kind: str) -> bool:
    return (block.shortcut if kind == "preact" else block.downsample) is not None


def _forward_alive(model: nn.Module, kind: str) -> tuple[list[Stream], list[Block], set[int]]:
    """Walk forward: build the streams and each block's alive input and possible writes.

    Returns the streams, the blocks and the channels alive at the end of the last stream."""
    stem_width = model.conv1.out_channels
    # A pre-activation stem is a bare conv: it writes every channel. A post-activation one is gated.
    alive = set(range(stem_width)) if kind == "preact" else open_channels(model.bn1)
    streams = [Stream(0, "stem", 0, "stem", stem_width, alive=set(alive))]
    blocks = []
    for stage, name, block in _blocks(model, kind):
        width_in, width_out = _block_width(block, kind)
        projection = _has_projection(block, kind)
        if not projection and width_in != width_out:
            raise ConnectivityError(f"{name} changes width without a projection shortcut")
        inner, may_write, proj_kept = _block_gates(block, kind, width_out)
        stream_in = streams[-1].id
        if projection:
            streams.append(Stream(len(streams), f"layer{stage}", stage, name, width_out))
        blocks.append(Block(name, block, kind, stage, stream_in, streams[-1].id, projection, set(alive), inner,
                            may_write, proj_kept=proj_kept))
        alive = (set(proj_kept) if projection else alive) | may_write
        streams[-1].alive |= alive
    if blocks and not blocks[0].projection:  # the stem's stream is stage 1's
        streams[0].name, streams[0].stage = "layer1", 1
    return streams, blocks, alive


def _block_gates(block: nn.Module, kind: str, width_out: int) -> tuple[list[int], set[int], list[int]]:
    """(M, channels it may write, projection's kept channels) from the block's gates alone."""
    if kind == "preact":
        inner = sorted(open_channels(block.bn2))
        may_write = set(range(width_out)) if inner else set()
        # o = relu(bn1 x) feeds the projection: it writes every channel as soon as bn1 has one open.
        proj_kept = list(range(width_out)) if block.shortcut is not None and open_channels(block.bn1) else []
        return inner, may_write, proj_kept
    inner = sorted(open_channels(block.bn1))
    may_write = open_channels(block.bn2)
    if not inner:  # the branch is the constant bn2 outputs for a zero input: it writes where that is ≠ 0
        constant = bn_constant(block.bn2)
        may_write = {c for c in may_write if constant[c] != 0}
    proj_kept = sorted(open_channels(block.downsample[1])) if block.downsample is not None else []
    return inner, may_write, proj_kept


def carries_input(model: nn.Module) -> bool:
    """Whether the logits still depend on the input through the open gates.

    A channel carries the input when a producer that reads a carrying channel writes it with an open
    gate; a convolution mixes all its input channels, so one carrying channel in is enough. A branch
    whose inner gates are all closed writes constants (its BN biases), which carry nothing. When no
    channel reaching the head carries the input, the network computes one answer for every image:
    closing the stem's last channel does that. Models this analysis does not read count as carrying."""
    try:
        kind = _family(model)
        blocks = _blocks(model, kind)
    except ConnectivityError:
        return True
    carry = set(range(model.conv1.out_channels)) if kind == "preact" else open_channels(model.bn1)
    for _, _, block in blocks:
        if kind == "preact":  # o = relu(bn1 x) feeds conv1 and the projection; conv2 writes every channel
            reads = bool(open_channels(block.bn1) & carry)
            inner = reads and bool(open_channels(block.bn2))
            width = block.conv2.out_channels
            writes = set(range(width)) if inner else set()
            start = set(range(width)) if reads else set()
        else:
            inner = bool(carry) and bool(open_channels(block.bn1))
            writes = open_channels(block.bn2) if inner else set()
            start = open_channels(block.downsample[1]) if block.downsample is not None and carry else set()
        carry = (start if _has_projection(block, kind) else carry) | writes
        if not carry:
            return False
    head = open_channels(model.bn) & carry if kind == "preact" else carry
    return bool(head)


def _head_reads(model: nn.Module, kind: str, alive_end: set[int]) -> list[int]:
    # Post-act: the linear head reads every alive channel (dead ones are 0 and add nothing).
    # Pre-act: the final gated BN decides, dead channels included (relu of its bias is a constant).
    return sorted(open_channels(model.bn)) if kind == "preact" else sorted(alive_end)


def _settle_block(b: Block, needed: set[int]) -> set[int]:
    """Fix b's effective W, branch and R given what is needed after it; return what is needed before it."""
    writes = b.may_write & needed
    if writes and b.inner:
        b.branch = "mc"
    elif writes and b.kind == "basic":
        b.branch = "constant"   # post-act with M empty: adds bn2's constant (pre-act M empty adds exactly 0)
    else:
        b.branch = "none"
    b.writes = sorted(writes) if b.branch != "none" else []
    # A basic block's constant is folded into its projection's bias, so it reads nothing for it; a
    # preact projection reads relu(bn1 x) like the branch does.
    proj_used = b.projection and bool(needed & set(b.proj_kept))
    if b.branch == "mc" or proj_used:
        b.reads = sorted(open_channels(b.module.bn1) if b.kind == "preact" else b.alive_in)
    return set(b.reads) if b.projection else needed | set(b.reads)


def _backward_needed(blocks: list[Block], streams: list[Stream], head_reads: list[int]) -> None:
    """Walk backwards from the head: settle each block, and each stream's kept set (what is needed
    right after its producer, which is everything needed anywhere in it)."""
    needed = set(head_reads)
    for b in reversed(blocks):
        if b.projection:
            streams[b.stream_out].kept = sorted(needed)
        needed = _settle_block(b, needed)
    streams[0].kept = sorted(needed)


def _stream_score(model: nn.Module, kind: str, stream: Stream, blocks: list[Block], last: bool) -> Tensor:
    """Per stream channel, the most open gate that writes (basic) or reads (preact) it."""
    bns = [model.bn1] if stream.id == 0 and kind == "basic" else []
    for b in blocks:
        if kind == "basic" and b.stream_out == stream.id:
            bns += [b.module.bn2] + ([b.module.downsample[1]] if b.projection else [])
        if kind == "preact" and b.stream_in == stream.id:
            bns.append(b.module.bn1)
    if kind == "preact" and last:
        bns.append(model.bn)
    score = torch.full((stream.width,), -float("inf"))
    for bn in bns:
        score = torch.maximum(score, gate_scores(bn))
    return score


def plan(model: nn.Module) -> Plan:
    """The connectivity facts as Python objects (see the module docstring)."""
    kind = _family(model)
    streams, blocks, alive_end = _forward_alive(model, kind)
    head = _head_reads(model, kind, alive_end)
    _backward_needed(blocks, streams, head)
    for s in streams:
        s.score = _stream_score(model, kind, s, blocks, s.id == len(streams) - 1)
    return Plan(model, kind, streams, blocks, head, model.bn if kind == "preact" else None)


# ------------------------------------------------------------------------------------ JSON facing
def _gated_layers(model: nn.Module, kind: str) -> list[dict]:
    roles = {}
    if kind == "basic":
        roles["bn1"] = "stem"
    else:
        roles["bn"] = "head"
    for _, name, block in _blocks(model, kind):
        if kind == "basic":
            roles[f"{name}.bn1"], roles[f"{name}.bn2"] = "inner", "write"
            if block.downsample is not None:
                roles[f"{name}.downsample.1"] = "projection"
        else:
            roles[f"{name}.bn1"], roles[f"{name}.bn2"] = "read", "inner"
    rows = []
    for name, module in model.named_modules():
        if isinstance(module, nn.BatchNorm2d):
            z = gate_values(module)
            rows.append({"name": name, "role": roles.get(name, "other"), "kept": int((z > 0).sum()),
                         "total": int(z.numel()), "partial": int(((z > 0) & (z < 1)).sum())})
    return rows


def _block_json(b: Block, streams: list[Stream]) -> dict:
    s_in, s_out = streams[b.stream_in], streams[b.stream_out]
    inner_total = (b.module.bn2 if b.kind == "preact" else b.module.bn1).num_features
    shortcut = {"kind": "identity"}
    if b.projection:
        shortcut = {"kind": "projection", "kept": list(b.proj_kept), "total": s_out.width}
    return {"name": b.name, "kind": b.kind, "stage": b.stage, "stream_in": b.stream_in, "stream_out": b.stream_out,
            "in_width": s_in.width, "out_width": s_out.width, "alive_in": sorted(b.alive_in),
            "reads": list(b.reads), "inner": list(b.inner), "inner_total": inner_total, "writes": list(b.writes),
            "writes_unread": sorted(b.may_write - set(b.writes)), "branch": b.branch, "shortcut": shortcut,
            "removable": b.removable}


def analyze(model: nn.Module) -> dict:
    """Per block R/M/W, per stream alive/kept/unread channels, per gated layer kept/total (see module doc)."""
    p = plan(model)
    streams = [{"id": s.id, "name": s.name, "stage": s.stage, "producer": s.producer, "width": s.width,
                "alive": sorted(s.alive), "kept": list(s.kept), "unread": sorted(s.alive - set(s.kept))}
               for s in p.streams]
    layers = _gated_layers(model, p.kind)
    return {"model": type(model).__name__, "kind": p.kind, "streams": streams,
            "blocks": [_block_json(b, p.streams) for b in p.blocks],
            "head": {"reads": list(p.head_reads), "width": p.streams[-1].width},
            "layers": layers, "total_kept": sum(r["kept"] for r in layers),
            "total_channels": sum(r["total"] for r in layers)}


def summary_table(analysis: dict) -> list[dict]:
    """Rows for a per-layer table: layer, role, kept, total, kept % and how many are partial (0 < ẑ < 1)."""
    return [{"layer": r["name"], "role": r["role"], "kept": r["kept"], "total": r["total"],
             "kept_pct": round(100.0 * r["kept"] / r["total"], 1) if r["total"] else 0.0,
             "partial": r["partial"]} for r in analysis["layers"]]
