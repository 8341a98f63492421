"""Trace a model into a flat list of ops with shapes: the graph every analysis reads.

Uses torch.fx to follow the forward and an interpreter to record each node's output
shape on an example input. Each :class:`OpNode` knows its producer inputs, so
tensor lifetimes (the memory model) and per-op costs (MACs) are computed from
the same list.

Example:
    >>> from leanml.models import build_model
    >>> nodes = trace_ops(build_model("vgg"), (1, 28, 28))
    >>> nodes[0].kind, nodes[1].name
    ('input', 'features.0')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import fx, nn

from leanml.errors import LeanmlError


@dataclass
class OpNode:
    """One op of the traced graph, in execution order.

    ``id`` is the unique fx node name (what ``inputs`` refer to); ``name`` is
    the display name (the module path for ``call_module`` ops). ``module`` is
    set for ``call_module`` ops; ``target`` holds the function
    (``call_function``) or method name (``call_method``). ``shape`` is the
    output shape at the traced batch size, ``None`` for non-tensor outputs.
    """

    id: str
    name: str
    op: str  # placeholder | call_module | call_function | call_method | get_attr | output
    target: Any
    module: nn.Module | None
    inputs: list[str]
    input_shapes: list[tuple[int, ...]]
    shape: tuple[int, ...] | None

    @property
    def kind(self) -> str:
        """A readable op type for tables: module class, function or method name, or ``input``."""
        if self.op == "placeholder":
            return "input"
        if self.module is not None:
            return type(self.module).__name__
        if self.op == "call_function":
            return getattr(self.target, "__name__", str(self.target))
        return str(self.target)

    @property
    def numel(self) -> int:
        """Number of elements in the output tensor (0 for non-tensor outputs)."""
        if self.shape is None:
            return 0
        n = 1
        for d in self.shape:
            n *= d
        return n


def _tensor_args(node: fx.Node) -> list[fx.Node]:
    found: list[fx.Node] = []

    def visit(a: fx.Node) -> fx.Node:
        if a not in found:
            found.append(a)
        return a

    fx.node.map_arg((node.args, node.kwargs), visit)
    return found


class _ShapeRecorder(fx.Interpreter):
    """Runs the traced graph and records every tensor-valued node's output shape."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.shapes: dict[str, tuple[int, ...]] = {}

    def run_node(self, n: fx.Node) -> Any:
        result = super().run_node(n)
        if isinstance(result, torch.Tensor):
            self.shapes[n.name] = tuple(result.shape)
        return result

    def record(self, example: torch.Tensor) -> dict[str, tuple[int, ...]]:
        self.run(example)
        return self.shapes


def symbolic_trace(model: nn.Module) -> fx.GraphModule:
    """``torch.fx.symbolic_trace`` with one clear error for every way tracing can fail.

    Example:
        >>> symbolic_trace(nn.Sequential(nn.ReLU())).graph is not None
        True
    """
    try:
        return fx.symbolic_trace(model)
    except Exception as e:  # fx raises many types; all mean "cannot follow this forward"
        raise LeanmlError(
            f"cannot trace {type(model).__name__} with torch.fx: {str(e).splitlines()[0]}",
            "make its forward traceable (no data-dependent control flow), or exclude the layer that fails",
        ) from e


def trace_with_shapes(
    model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1
) -> tuple[fx.GraphModule, dict[str, tuple[int, ...]]]:
    """The traced graph and every tensor node's output shape on a zero input (batch_size, *input_shape).

    The model runs in eval mode and is left in the mode it had.

    Example:
        >>> gm, shapes = trace_with_shapes(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 5, 5))
        >>> shapes["_0"]
        (1, 2, 3, 3)
    """
    was_training = model.training
    model.eval()
    try:
        gm = symbolic_trace(model)
        example = torch.zeros((batch_size, *input_shape))
        try:
            with torch.no_grad():
                model(example)  # plain run first: a shape mismatch gives torch's own clear message
        except RuntimeError as e:
            raise LeanmlError(
                f"input shape {tuple(input_shape)} does not fit {type(model).__name__}: {str(e).splitlines()[0][:300]}",
                "pass the input shape the model was built for (C,H,W), e.g. --input-shape 1,28,28",
            ) from e
        with torch.no_grad():
            shapes = _ShapeRecorder(gm).record(example)
    finally:
        model.train(was_training)
    return gm, shapes


def trace_ops(model: nn.Module, input_shape: tuple[int, ...], batch_size: int = 1) -> list[OpNode]:
    """Trace ``model`` on a zero input of shape (batch_size, *input_shape) into :class:`OpNode` s.

    The model is traced in eval mode and left in the mode it had.
    """
    gm, shapes = trace_with_shapes(model, input_shape, batch_size)
    modules = dict(gm.named_modules())
    nodes: list[OpNode] = []
    for node in gm.graph.nodes:
        shape = shapes.get(node.name)
        args = [a for a in _tensor_args(node) if a.name in shapes]
        nodes.append(
            OpNode(
                id=node.name,
                name=str(node.target) if node.op == "call_module" else node.name,
                op=node.op,
                target=node.target,
                module=modules.get(node.target) if node.op == "call_module" else None,
                inputs=[a.name for a in args],
                input_shapes=[shapes[a.name] for a in args],
                shape=shape,
            )
        )
    return nodes
