"""Channel dependency graph: which channels of which layers must be removed together.

Traces the model with fx and follows the channel axis (dim 1) of every
tensor. Each tensor's channels are a list of *segments*, each a run of
channels of one *group*; groups are merged (union-find) where channels are
coupled: residual adds, depthwise convolutions, batch norms and element-wise
ops. ``cat`` on dim 1 concatenates segments; ``flatten`` after pooling to 1x1
keeps them, and a flatten of C x H x W expands each channel to H*W features.

A group lists its members: producers (conv/linear output channels),
consumers (conv/linear input channels at an offset), batch norms and
depthwise convs. Groups that reach the model input or output, or a grouped
(not depthwise) convolution, are fixed: their channels are never removed.

Example:
    >>> from leanml.models import build_model
    >>> groups = channel_groups(build_model("resnet"))
    >>> len([g for g in groups if not g.fixed])     # stem+stage widths coupled by adds, plus each block's inner width
    9
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from leanml.errors import LeanmlError
from leanml.profile.graph import trace_with_shapes

PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Dropout, nn.Identity, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d,
    nn.SiLU, nn.Hardswish, nn.Sigmoid,
)  # fmt: skip
PASS_FUNCTIONS = (torch.relu, nn.functional.relu, nn.functional.relu6, nn.functional.adaptive_avg_pool2d)
PASS_METHODS = frozenset({"relu", "contiguous"})
ADD_FUNCTIONS = (operator.add, torch.add)


@dataclass
class Segment:
    """``length`` channels of group ``group``, each repeated ``repeat`` times along the feature axis."""

    group: int
    length: int
    repeat: int = 1


@dataclass
class ChannelGroup:
    """Members whose channels are removed together (all indices refer to the group's own channels)."""

    id: int
    size: int
    producers: list[str] = field(default_factory=list)  # conv/linear names: out channels
    norms: list[str] = field(default_factory=list)  # batch norm names
    depthwise: list[str] = field(default_factory=list)  # depthwise conv names: in = out = groups
    consumers: list[tuple[str, int, int]] = field(default_factory=list)  # (name, offset, repeat) into in-dim
    fixed: bool = False


@torch.no_grad()
def permute_channels_(group: ChannelGroup, modules: dict[str, nn.Module], order: torch.Tensor) -> None:
    """Reorder ``group``'s channels in every member, in place (new channel i is old channel ``order[i]``).

    Producers and depthwise convs permute their output rows (and bias), batch norms their affine
    parameters and statistics, consumers their input columns: the model computes the same function.

    Example:
        >>> from leanml.models import build_model
        >>> model = build_model("vgg").eval()
        >>> x = torch.randn(1, 1, 28, 28)
        >>> before = model(x)
        >>> group = trace_channel_groups(model, (1, 28, 28))[1]
        >>> permute_channels_(group, dict(model.named_modules()), torch.arange(group.size).flip(0))
        >>> torch.allclose(model(x), before, atol=1e-5)
        True
    """
    for name in group.producers + group.depthwise:
        _permute(modules[name], ("weight", "bias"), 0, order)
    for name in group.norms:
        _permute(modules[name], ("weight", "bias", "running_mean", "running_var"), 0, order)
    for name, offset, repeat in group.consumers:
        weight = modules[name].weight  # (out, in, ...)
        assert isinstance(weight, torch.Tensor), name
        cols = torch.arange(weight.shape[1])
        moved = (order[:, None] * repeat + torch.arange(repeat)).flatten()  # (size * repeat,)
        cols[offset : offset + group.size * repeat] = offset + moved
        _permute(modules[name], ("weight",), 1, cols)


def _permute(module: nn.Module, names: tuple[str, ...], dim: int, index: torch.Tensor) -> None:
    for name in names:
        t = getattr(module, name, None)
        if isinstance(t, torch.Tensor):
            t.copy_(t.index_select(dim, index))


class _Builder:
    def __init__(self, modules: dict[str, nn.Module]) -> None:
        self.modules = modules
        self.parent: list[int] = []
        self.size: list[int] = []
        self.members: list[ChannelGroup] = []

    def new(self, size: int) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.size.append(size)
        self.members.append(ChannelGroup(gid, size))
        return gid

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[rb] = ra

    def fix(self, segments: list[Segment]) -> None:
        for s in segments:
            self.members[s.group].fixed = True

    def consume(self, name: str, segments: list[Segment]) -> None:
        offset = 0
        for s in segments:
            self.members[s.group].consumers.append((name, offset, s.repeat))
            offset += s.length * s.repeat


def channel_groups(model: nn.Module) -> list[ChannelGroup]:
    """The merged channel groups of ``model`` (traced with batch-1 zeros of its input shape 1x28x28 by default)."""
    return trace_channel_groups(model, (1, 28, 28))


def trace_channel_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """As :func:`channel_groups` for any input shape (C, H, W)."""
    gm, shapes = trace_with_shapes(model, input_shape)
    b = _Builder(dict(gm.named_modules()))
    seg: dict[str, list[Segment]] = {}
    for node in gm.graph.nodes:
        args = [a for a in node.args if isinstance(a, fx.Node)]
        if node.op == "placeholder":
            seg[node.name] = [Segment(b.new(shapes[node.name][1]), shapes[node.name][1])]
            b.fix(seg[node.name])
        elif node.op == "output":
            b.fix(seg[args[0].name])
        elif node.op == "call_module":
            seg[node.name] = _module_node(b, str(node.target), seg[args[0].name], shapes[node.name])
        elif node.op == "call_function" and node.target in ADD_FUNCTIONS:
            a, c = seg[args[0].name], seg[args[1].name]
            if len(a) != len(c) or any(x.length != y.length for x, y in zip(a, c, strict=True)):
                raise LeanmlError(f"add {node.name!r} joins tensors with different channel layouts")
            for x, y in zip(a, c, strict=True):
                b.union(x.group, y.group)
            seg[node.name] = a
        elif node.op == "call_function" and node.target is torch.cat:
            dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
            if dim != 1:
                raise LeanmlError(f"cat {node.name!r} on dim {dim}: only channel concatenation (dim 1) is supported")
            seg[node.name] = [s for t in node.args[0] for s in seg[t.name]]
        elif _is_flatten(node, b.modules):
            spatial = 1
            for d in shapes[args[0].name][2:]:
                spatial *= d
            seg[node.name] = [Segment(s.group, s.length, s.repeat * spatial) for s in seg[args[0].name]]
        elif (node.op == "call_function" and node.target in PASS_FUNCTIONS) or (
            node.op == "call_method" and node.target in PASS_METHODS
        ):
            seg[node.name] = seg[args[0].name]
        elif node.op == "get_attr":
            continue
        else:
            raise LeanmlError(
                f"channel pruning cannot follow {node.op} {getattr(node.target, '__name__', node.target)!r}",
                "exclude the layers around it, or prune with fine-grained masks instead",
            )
    return _merge(b)


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[str(node.target)], nn.Flatten)
    if node.op == "call_function":
        return node.target is torch.flatten
    return node.op == "call_method" and node.target in ("flatten", "view", "reshape")


def _module_node(b: _Builder, name: str, inputs: list[Segment], out_shape: tuple[int, ...]) -> list[Segment]:
    m = b.modules[name]
    if isinstance(m, nn.Conv2d):
        if m.groups == 1:
            b.consume(name, inputs)
            g = b.new(m.out_channels)
            b.members[g].producers.append(name)
            return [Segment(g, m.out_channels)]
        if m.groups == m.in_channels == m.out_channels:
            for s in inputs:
                b.members[s.group].depthwise.append(name)
            return inputs
        b.fix(inputs)  # grouped conv: channels stay (pruning whole groups is not supported yet)
        g = b.new(m.out_channels)
        b.members[g].fixed = True
        return [Segment(g, m.out_channels)]
    if isinstance(m, nn.Linear):
        b.consume(name, inputs)
        g = b.new(m.out_features)
        b.members[g].producers.append(name)
        return [Segment(g, m.out_features)]
    if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
        for s in inputs:
            b.members[s.group].norms.append(name)
        return inputs
    if isinstance(m, nn.Flatten):
        spatial = 1
        for d in out_shape[1:]:
            spatial *= d
        total = sum(s.length * s.repeat for s in inputs)
        return [Segment(s.group, s.length, s.repeat * spatial // total) for s in inputs]
    if isinstance(m, PASS_MODULES):
        return inputs
    raise LeanmlError(f"channel pruning does not support layer {name!r} ({type(m).__name__})",
                      "exclude it, or prune with fine-grained masks instead")  # fmt: skip


def _merge(b: _Builder) -> list[ChannelGroup]:
    merged: dict[int, ChannelGroup] = {}
    for g, members in enumerate(b.members):
        root = b.find(g)
        target = merged.setdefault(root, ChannelGroup(root, b.size[root]))
        target.producers += members.producers
        target.norms += members.norms
        target.depthwise += members.depthwise
        target.consumers += members.consumers
        target.fixed = target.fixed or members.fixed
    return list(merged.values())
