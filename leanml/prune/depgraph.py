"""Channel dependency graph: which channels of which layers must be removed together.

Traces the model with fx and follows the channel axis (dim 1) of every
tensor. Each tensor's channels are a list of *segments*, each a run of
channels of one *group*; groups are merged (union-find) where channels are
coupled: element-wise ops between tensors (residual adds, squeeze-excite
gates, broadcasting over H, W), depthwise convolutions, batch norms, and the
inputs of a module that is called more than once. ``cat`` on dim 1
concatenates segments; reshapes that keep the batch and channel axes pass
through, a flatten of C x H x W expands each channel to H*W features; any
other reshape (a channel shuffle) is refused, naming the fx node.

A group lists its members: producers (conv/linear output channels), and, as
``(name, offset, repeat)`` slices of a module's channel axis, consumers
(conv/linear input columns), batch norms and depthwise convs; ``params`` are
channel-wise tensors of element-wise ops (``x * self.gamma``) as
``(name, dim, offset, repeat)``. Groups that reach the model input or output,
a grouped (not depthwise) convolution, broadcast a single channel, or meet a
barrier (a softmax or reduction over the channels: every output reads every
channel) are fixed: their channels are never removed.

Example:
    >>> from leanml.models import build_model
    >>> groups = channel_groups(build_model("resnet"), (1, 28, 28))
    >>> len([g for g in groups if not g.fixed])     # stem+stage widths coupled by adds, plus each block's inner width
    9
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn
from torch.nn import functional as F

from leanml.errors import LeanmlError
from leanml.profile.graph import trace_with_shapes

PASS_MODULES = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.Dropout, nn.Dropout2d, nn.Identity, nn.MaxPool2d, nn.AvgPool2d,
    nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.SiLU, nn.Hardswish, nn.Hardsigmoid, nn.Sigmoid, nn.Tanh,
    nn.GELU, nn.LeakyReLU, nn.ELU, nn.Mish, nn.Upsample, nn.UpsamplingNearest2d, nn.UpsamplingBilinear2d,
)  # fmt: skip
PASS_FUNCTIONS = (
    torch.relu, F.relu, F.relu6, F.adaptive_avg_pool2d, F.adaptive_max_pool2d, F.avg_pool2d, F.max_pool2d,
    torch.sigmoid, F.sigmoid, torch.tanh, F.silu, F.hardswish, F.hardsigmoid, F.gelu, F.leaky_relu, F.elu, F.mish,
    F.hardtanh, F.dropout, F.interpolate, operator.neg, torch.neg, torch.clamp, torch.abs,
)  # fmt: skip
PASS_METHODS = frozenset({"relu", "relu_", "sigmoid", "tanh", "contiguous", "clone", "float", "neg", "clamp", "abs"})
BINARY_FUNCTIONS = (
    operator.add,
    operator.sub,
    operator.mul,
    operator.truediv,
    torch.add,
    torch.sub,
    torch.mul,
    torch.div,
)
BINARY_METHODS = frozenset({"add", "sub", "mul", "div", "add_", "mul_"})
REDUCE_FUNCTIONS = (torch.mean, torch.sum, torch.amax)
REDUCE_METHODS = frozenset({"mean", "sum", "amax"})
SOFTMAX_FUNCTIONS = (torch.softmax, F.softmax, torch.log_softmax, F.log_softmax)
SOFTMAX_METHODS = frozenset({"softmax", "log_softmax"})
RESHAPE_FUNCTIONS = (torch.flatten, torch.reshape)
RESHAPE_METHODS = frozenset({"flatten", "view", "reshape"})
CAT_FUNCTIONS = (torch.cat, torch.concat)

Member = tuple[str, int, int]  # (module name, offset, repeat): the group's channel i is the module's channels
# offset + i*repeat ... offset + (i+1)*repeat - 1 on its channel axis (input columns for consumers)
ParamMember = tuple[str, int, int, int]  # (parameter or buffer name, dim, offset, repeat)


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
    norms: list[Member] = field(default_factory=list)  # batch norms, at an offset of their channels
    depthwise: list[Member] = field(default_factory=list)  # depthwise convs (in = out = groups), at an offset
    consumers: list[Member] = field(default_factory=list)  # conv/linear input columns at an offset
    params: list[ParamMember] = field(default_factory=list)  # channel-wise tensors of element-wise ops
    fixed: bool = False


def member_index(offset: int, repeat: int, chans: torch.Tensor) -> torch.Tensor:
    """Positions on a member's axis of the group channels ``chans`` (k,): (k * repeat,).

    Example:
        >>> member_index(4, 2, torch.tensor([1, 0])).tolist()
        [6, 7, 4, 5]
    """
    return (offset + chans[:, None] * repeat + torch.arange(repeat)[None, :]).flatten()


def param_owner(modules: dict[str, nn.Module], name: str) -> tuple[nn.Module, str]:
    """The module holding parameter/buffer ``name`` (a qualified name) and its attribute name.

    Example:
        >>> param_owner({"": nn.Identity(), "a": nn.Linear(1, 1)}, "a.weight")[1]
        'weight'
    """
    path, _, attr = name.rpartition(".")
    return modules[path], attr


@torch.no_grad()
def permute_channels_(group: ChannelGroup, modules: dict[str, nn.Module], order: torch.Tensor) -> None:
    """Reorder ``group``'s channels in every member, in place (new channel i is old channel ``order[i]``).

    Producers permute their output rows (and bias), depthwise convs and batch norms their slice of rows,
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
    for name in group.producers:
        _permute(modules[name], ("weight", "bias"), 0, order, None)
    for name, offset, repeat in group.depthwise:
        _permute(modules[name], ("weight", "bias"), 0, order, (offset, repeat))
    for name, offset, repeat in group.norms:
        _permute(modules[name], ("weight", "bias", "running_mean", "running_var"), 0, order, (offset, repeat))
    for name, offset, repeat in group.consumers:
        _permute(modules[name], ("weight",), 1, order, (offset, repeat))
    for name, dim, offset, repeat in group.params:
        owner, attr = param_owner(modules, name)
        _permute(owner, (attr,), dim, order, (offset, repeat))


def _permute(module: nn.Module, names: tuple[str, ...], dim: int, order: torch.Tensor,
             at: tuple[int, int] | None) -> None:  # fmt: skip
    for name in names:
        t = getattr(module, name, None)
        if isinstance(t, torch.Tensor):
            index = order
            if at is not None:
                offset, repeat = at
                index = torch.arange(t.shape[dim])
                index[offset : offset + len(order) * repeat] = member_index(offset, repeat, order)
            t.copy_(t.index_select(dim, index))


class _Tracer:
    """Walks the fx graph once, giving every tensor node its channel segments and merging coupled groups."""

    def __init__(self, modules: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]]) -> None:
        self.modules, self.shapes = modules, shapes
        self.parent: list[int] = []
        self.members: list[ChannelGroup] = []
        self.seg: dict[str, list[Segment]] = {}
        self.first_use: dict[str, tuple[list[Segment], list[Segment]]] = {}  # module/param -> (inputs, outputs)

    # union-find over groups
    def new(self, size: int) -> int:
        gid = len(self.parent)
        self.parent.append(gid)
        self.members.append(ChannelGroup(gid, size))
        return gid

    def find(self, g: int) -> int:
        while self.parent[g] != g:
            self.parent[g] = self.parent[self.parent[g]]
            g = self.parent[g]
        return g

    def fix(self, segments: list[Segment]) -> None:
        for s in segments:
            self.members[s.group].fixed = True

    def unify(self, node: fx.Node, a: list[Segment], b: list[Segment]) -> None:
        """Couple two tensors' channels one to one (their segment layouts must match)."""
        if len(a) != len(b) or any((x.length, x.repeat) != (y.length, y.repeat) for x, y in zip(a, b, strict=True)):
            raise self.refuse(node, "it couples tensors whose channels are split differently "
                              f"({[s.length for s in a]} vs {[s.length for s in b]} channels per source)")  # fmt: skip
        for x, y in zip(a, b, strict=True):
            ra, rb = self.find(x.group), self.find(y.group)
            if ra != rb:
                self.parent[rb] = ra

    def refuse(self, node: fx.Node, why: str) -> LeanmlError:
        what = f"{node.op} {getattr(node.target, '__name__', node.target)!s}"
        return LeanmlError(f"channel pruning cannot follow fx node {node.name!r} ({what}): {why}",
                           "rewrite that op as said, or use fine-grained pruning for this model")  # fmt: skip

    def input(self, node: fx.Node, arg: Any) -> list[Segment]:
        if not isinstance(arg, fx.Node) or arg.name not in self.seg:
            what = arg.name if isinstance(arg, fx.Node) else type(arg).__name__
            raise self.refuse(node, f"its input {what!r} is not a single tensor with a known channel layout")
        return self.seg[arg.name]

    def shape(self, arg: Any) -> tuple[int, ...]:
        assert isinstance(arg, fx.Node) and arg.name in self.shapes, arg
        return self.shapes[arg.name]

    # the walk
    def visit(self, node: fx.Node) -> None:
        if node.op == "output":
            found: list[fx.Node] = []
            fx.node.map_arg(node.args, lambda a: found.append(a) or a)  # type: ignore[func-returns-value]
            for a in found:
                if a.name in self.seg:
                    self.fix(self.seg[a.name])
            return
        if node.op == "get_attr" or node.name not in self.shapes:
            return  # parameters are read where used; sizes, shapes and other non-tensors carry no channels
        if node.op == "placeholder":
            shape = self.shapes[node.name]
            if len(shape) < 2:
                raise self.refuse(node, f"the model input has shape {shape}, with no channel axis")
            out = [Segment(self.new(shape[1]), shape[1])]
            self.fix(out)
        else:
            out = self.rule(node)
        shape = self.shapes[node.name]
        total = sum(s.length * s.repeat for s in out)
        if (len(shape) < 2 or shape[1] != total) and not (len(shape) < 2 and not out):
            raise self.refuse(node, f"its output {shape} does not carry the {total} channels of its input on dim 1")
        self.seg[node.name] = out

    def rule(self, node: fx.Node) -> list[Segment]:
        op, target = node.op, node.target
        fn, method = op == "call_function", op == "call_method"
        if op == "call_module":
            return self.module(node)
        if fn and target is operator.getitem:
            return self.getitem(node)
        if fn and target in CAT_FUNCTIONS:
            return self.cat(node)
        if (fn and target in BINARY_FUNCTIONS) or (method and target in BINARY_METHODS):
            return self.binary(node)
        if (fn and target in REDUCE_FUNCTIONS) or (method and target in REDUCE_METHODS):
            return self.reduce(node)
        if (fn and target in SOFTMAX_FUNCTIONS) or (method and target in SOFTMAX_METHODS):
            return self.softmax(node)
        if (fn and target in RESHAPE_FUNCTIONS) or (method and target in RESHAPE_METHODS):
            return self.reshape(node)
        if (fn and target in PASS_FUNCTIONS) or (method and target in PASS_METHODS):
            return self.passthrough(node)
        raise self.refuse(node, "it is not an op whose channel axis is known")

    def passthrough(self, node: fx.Node) -> list[Segment]:
        x = self.input(node, _first(node))
        before, after = self.shape(_first(node)), self.shapes[node.name]
        if len(before) != len(after) or before[:2] != after[:2]:
            raise self.refuse(node, f"it changes the batch or channel axis ({before} -> {after})")
        return x

    def module(self, node: fx.Node) -> list[Segment]:
        name = str(node.target)
        m = self.modules[name]
        x = self.input(node, _first(node))
        if isinstance(m, nn.Conv2d):
            if m.groups == 1:
                return self.weighted(node, name, x, m.out_channels)
            if m.groups == m.in_channels == m.out_channels:
                return self.channelwise(node, name, x, "depthwise")
            self.fix(x)  # grouped conv: channels stay (pruning whole groups is not supported yet)
            return self.weighted(node, name, x, m.out_channels, fixed=True)
        if isinstance(m, nn.Linear):
            if len(self.shape(_first(node))) != 2:
                raise self.refuse(node, f"Linear {name!r} reads the last axis of a "
                                  f"{len(self.shape(_first(node)))}-d tensor, not the channel axis")  # fmt: skip
            return self.weighted(node, name, x, m.out_features)
        if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
            return self.channelwise(node, name, x, "norms")
        if isinstance(m, nn.Flatten):
            return self.reshape(node)
        if isinstance(m, PASS_MODULES):
            return self.passthrough(node)
        raise LeanmlError(f"channel pruning does not support layer {name!r} ({type(m).__name__}) at fx node "
                          f"{node.name!r}", "exclude it, or prune with fine-grained masks instead")  # fmt: skip

    def weighted(self, node: fx.Node, name: str, x: list[Segment], out: int, fixed: bool = False) -> list[Segment]:
        """A conv/linear: reads ``x`` through its input columns, produces a new group (the same on every call)."""
        if name in self.first_use:  # shared weights: every call reads the same columns
            inputs, outputs = self.first_use[name]
            self.unify(node, inputs, x)
            return outputs
        if not fixed:
            offset = 0
            for s in x:
                self.members[s.group].consumers.append((name, offset, s.repeat))
                offset += s.length * s.repeat
        g = self.new(out)
        if fixed:
            self.members[g].fixed = True
        else:
            self.members[g].producers.append(name)
        self.first_use[name] = (x, [Segment(g, out)])
        return self.first_use[name][1]

    def channelwise(self, node: fx.Node, name: str, x: list[Segment], kind: str) -> list[Segment]:
        """A batch norm or depthwise conv: one slice of it per segment of ``x``."""
        if name in self.first_use:
            self.unify(node, self.first_use[name][0], x)
            return x
        offset = 0
        for s in x:
            getattr(self.members[s.group], kind).append((name, offset, s.repeat))
            offset += s.length * s.repeat
        self.first_use[name] = (x, x)
        return x

    def getitem(self, node: fx.Node) -> list[Segment]:
        src, index = node.args[0], node.args[1]
        x = self.input(node, src)
        entries = index if isinstance(index, tuple) else (index,)
        full = slice(None)
        ndim = len(self.shape(src))
        lead = [e for e in entries[:2] if isinstance(e, slice)]
        keeps = len(lead) == 2 and all(e == full for e in lead)
        if not keeps and entries and entries[0] is Ellipsis:
            keeps = sum(e is not None for e in entries[1:]) <= ndim - 2
        if not keeps or self.shape(src)[:2] != self.shapes[node.name][:2]:
            raise self.refuse(node, "the index selects along the batch or channel axis")
        return x

    def cat(self, node: fx.Node) -> list[Segment]:
        tensors = _first(node, "tensors")
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim", 0)
        if not isinstance(tensors, list | tuple) or not isinstance(dim, int):
            raise self.refuse(node, "its tensors or dim are not plain values")
        parts = [self.input(node, t) for t in tensors]
        if dim % len(self.shapes[node.name]) == 1:
            return [s for p in parts for s in p]
        for p in parts[1:]:  # cat along another axis: the channels of all inputs line up
            self.unify(node, parts[0], p)
        return parts[0]

    def binary(self, node: fx.Node) -> list[Segment]:
        """Element-wise op: tensors with the output's channels are coupled; single-channel ones broadcast."""
        out = self.shapes[node.name]
        operands = list(node.args[:2]) + [v for k, v in node.kwargs.items() if k in ("input", "other")]
        tracked: list[list[Segment]] = []
        params: list[fx.Node] = []
        for a in operands:
            if not isinstance(a, fx.Node) or a.name not in self.shapes:
                continue  # a python number or a traced int (x.size(1))
            if a.op == "get_attr":
                params.append(a)
                continue
            shape, x = self.shapes[a.name], self.input(node, a)
            if not x:
                continue  # channel-less (a barrier's scalar): broadcasts like a number
            if len(shape) != len(out):
                raise self.refuse(node, f"it broadcasts a {len(shape)}-d tensor {a.name!r} against {len(out)}-d")
            if shape[1] == out[1]:
                tracked.append(x)
            elif shape[1] == 1:
                self.fix(x)  # one channel broadcast over all: it stays
            else:
                raise self.refuse(node, f"{a.name!r} has {shape[1]} channels, the output {out[1]}")
        if not tracked:
            raise self.refuse(node, "none of its inputs carries the output's channels")
        for x in tracked[1:]:
            self.unify(node, tracked[0], x)
        for p in params:
            self.param(node, p, tracked[0], out)
        return tracked[0]

    def param(self, node: fx.Node, p: fx.Node, x: list[Segment], out: tuple[int, ...]) -> None:
        shape = self.shapes[p.name]
        dim = len(shape) - len(out) + 1  # the parameter's axis that broadcasts against the channel axis
        if dim < 0 or shape[dim] == 1:
            return
        if shape[dim] != out[1]:
            raise self.refuse(
                node, f"parameter {p.target!s} has {shape[dim]} entries on the channel axis, not {out[1]}"
            )
        name = str(p.target)
        if name in self.first_use:
            self.unify(node, self.first_use[name][0], x)
            return
        offset = 0
        for s in x:
            self.members[s.group].params.append((name, dim, offset, s.repeat))
            offset += s.length * s.repeat
        self.first_use[name] = (x, x)

    def reduce(self, node: fx.Node) -> list[Segment]:
        """Over spatial axes: pass through; over the channel (or batch) axis: a barrier."""
        x = self.input(node, _first(node))
        dims = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        dims = [dims] if isinstance(dims, int) else dims
        ndim = len(self.shape(_first(node)))
        listed = list(dims) if isinstance(dims, list | tuple) else []
        axes = [d % ndim for d in listed if isinstance(d, int)]
        if not listed or len(axes) != len(listed) or {0, 1} & set(axes):  # all axes, traced dims, batch or channels
            return self.barrier(x, node)
        return x

    def softmax(self, node: fx.Node) -> list[Segment]:
        """Over a spatial axis: pass through; over the channels (a classifier's probabilities): a barrier."""
        x = self.input(node, _first(node))
        dim = node.args[1] if len(node.args) > 1 else node.kwargs.get("dim")
        if isinstance(dim, int) and dim % len(self.shape(_first(node))) >= 2:
            return x
        return self.barrier(x, node)

    def barrier(self, x: list[Segment], node: fx.Node) -> list[Segment]:
        """An op whose every output depends on every input channel: both sides keep all their channels."""
        self.fix(x)
        shape = self.shapes[node.name]
        if len(shape) < 2:
            return []  # channel-less (a scalar or a vector per sample): broadcasts like a number
        g = self.new(shape[1])
        self.members[g].fixed = True
        return [Segment(g, shape[1])]

    def reshape(self, node: fx.Node) -> list[Segment]:
        """Keeps dims 0 and 1 (pass through), or flattens (N, C, *S) to (N, C*S); anything else mixes channels."""
        x = self.input(node, _first(node))
        before, after = self.shape(_first(node)), self.shapes[node.name]
        keeps = len(after) >= 2 and after[:2] == before[:2]
        flattens = len(after) == 2 and after[0] == before[0]
        if not (keeps or flattens):
            raise self.refuse(node, f"it reshapes {before} to {after}, mixing the channel axis with others "
                              "(a channel shuffle or a flatten of the batch)")  # fmt: skip
        sizes = _size_args(node)
        if sizes is not None and len(sizes) > 1 and isinstance(sizes[1], int) and sizes[1] != -1:
            raise self.refuse(node, f"its size argument hard-codes {sizes[1]} at the channel axis, which pruning "
                              "changes; compute it from the tensor (x.size(1)) or pass -1")  # fmt: skip
        if keeps:
            return x
        spatial = 1
        for d in before[2:]:
            spatial *= d
        return [Segment(s.group, s.length, s.repeat * spatial) for s in x]

    def merge(self) -> list[ChannelGroup]:
        merged: dict[int, ChannelGroup] = {}
        for g, members in enumerate(self.members):
            root = self.find(g)
            target = merged.setdefault(root, ChannelGroup(root, self.members[root].size))
            target.producers += members.producers
            target.norms += members.norms
            target.depthwise += members.depthwise
            target.consumers += members.consumers
            target.params += members.params
            target.fixed = target.fixed or members.fixed
        return list(merged.values())


def _first(node: fx.Node, keyword: str = "input") -> Any:
    """The first argument of a call, given by position or by keyword."""
    return node.args[0] if node.args else node.kwargs.get(keyword)


def _size_args(node: fx.Node) -> tuple[Any, ...] | None:
    """The literal sizes of a view/reshape call, or None (a flatten, or sizes given as one traced value)."""
    if node.op == "call_method" and node.target in ("view", "reshape"):
        sizes: Any = node.args[1:]
        if len(sizes) == 1:
            sizes = sizes[0]
    elif node.op == "call_function" and node.target is torch.reshape:
        sizes = node.args[1] if len(node.args) > 1 else node.kwargs.get("shape")
    else:
        return None
    return tuple(sizes) if isinstance(sizes, list | tuple) else None


def channel_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """The merged channel groups of ``model``, traced with zeros of shape (2, *input_shape) (C, H, W).

    Example:
        >>> groups = channel_groups(nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 1)), (3, 8, 8))
        >>> [(g.producers, g.fixed) for g in groups]
        [([], True), (['0'], False), (['2'], True)]
    """
    gm, shapes = trace_with_shapes(model, input_shape, batch_size=2)  # batch 2: the batch axis is never ambiguous
    tracer = _Tracer(dict(gm.named_modules()), shapes)
    for node in gm.graph.nodes:
        tracer.visit(node)
    return tracer.merge()


def trace_channel_groups(model: nn.Module, input_shape: tuple[int, ...]) -> list[ChannelGroup]:
    """As :func:`channel_groups` (the name the pruning code uses)."""
    return channel_groups(model, input_shape)
