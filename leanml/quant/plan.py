"""The quantization plan: a BN-folded model as a flat list of integer-executable steps.

One plan drives everything linear quantization does: calibration and QAT run
it in float with fake quantization (:mod:`leanml.quant.fake_quant`), and
conversion turns the same steps into integer ops (:mod:`leanml.quant.integer`),
so the simulated and the integer model quantize at exactly the same points.

Steps follow the traced graph. Each step reads named tensors and writes one.
ReLU/ReLU6 directly after a conv, linear or add (and read by nothing else) is
fused into it as an output clamp. Views, Identity (what folded BNs become) and
dropout are aliases. Op kinds are found through registries keyed by module
type and by function, never by class-name strings.

Example:
    >>> from leanml.models import build_model
    >>> from leanml.quant.bn_fold import fold_bn
    >>> plan = build_plan(fold_bn(build_model("vgg")))
    >>> [s.kind for s in plan.steps][:4], plan.steps[1].act
    (['input', 'conv', 'conv', 'maxpool'], 'relu')
"""

from __future__ import annotations

import operator
from dataclasses import dataclass, field

import torch
from torch import fx, nn

from leanml.errors import LeanmlError
from leanml.profile.graph import symbolic_trace

# kind of step for each supported module type / function
MODULE_KINDS: dict[type[nn.Module], str] = {
    nn.Conv2d: "conv",
    nn.Linear: "linear",
    nn.MaxPool2d: "maxpool",
    nn.AvgPool2d: "avgpool",
    nn.AdaptiveAvgPool2d: "avgpool",
    nn.ReLU: "relu",
    nn.ReLU6: "relu6",
    nn.Flatten: "flatten",
    nn.Identity: "alias",
    nn.Dropout: "alias",
}
FUNCTION_KINDS: dict[object, str] = {
    operator.add: "add",
    torch.add: "add",
    torch.flatten: "flatten",
    torch.relu: "relu",
    nn.functional.relu: "relu",
    nn.functional.relu6: "relu6",
}
METHOD_KINDS = {"flatten": "flatten", "view": "flatten", "reshape": "flatten", "relu": "relu"}
FUSABLE_PRODUCERS = frozenset({"conv", "linear", "add"})
ACTIVATIONS = frozenset({"relu", "relu6"})


@dataclass
class Step:
    """One step of the plan.

    kind: input | conv | linear | add | maxpool | avgpool | flatten | relu | relu6 | output.
    ``act`` is the fused output activation (none | relu | relu6). ``module`` is
    the float layer (conv, linear, pooling) the step runs. ``owns_qparams``:
    whether the output gets its own scale/zero point (else it inherits its
    first input's: pooling, flatten, standalone activations).
    """

    kind: str
    name: str
    inputs: list[str]
    output: str
    module: nn.Module | None = None
    act: str = "none"
    flatten_start: int = 1

    @property
    def owns_qparams(self) -> bool:
        """Whether this step's output has its own quantization parameters."""
        return self.kind in ("input", "conv", "linear", "add")


@dataclass
class Plan:
    """Steps in execution order, and the tensor that is the model output."""

    steps: list[Step] = field(default_factory=list)
    output: str = ""

    def step_producing(self, tensor: str) -> Step:
        """The step that writes ``tensor``."""
        for s in self.steps:
            if s.output == tensor:
                return s
        raise KeyError(tensor)


def _kind_of(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        module = modules[str(node.target)]
        for cls in type(module).__mro__:
            if cls in MODULE_KINDS:
                return MODULE_KINDS[cls]
        what = f"layer {node.target!r} ({type(module).__name__})"
    elif node.op == "call_function":
        if node.target in FUNCTION_KINDS:
            return FUNCTION_KINDS[node.target]
        what = f"function {getattr(node.target, '__name__', node.target)!r}"
    elif node.op == "call_method":
        if node.target in METHOD_KINDS:
            return METHOD_KINDS[str(node.target)]
        what = f"method {node.target!r}"
    else:
        what = f"graph node {node.op} {node.target!r}"
    supported = sorted({c.__name__ for c in MODULE_KINDS} | {"add", "flatten", "relu", "relu6"})
    raise LeanmlError(
        f"unsupported {what} for integer quantization",
        f"supported: {', '.join(supported)} (BatchNorm after a conv is folded first)",
    )


def _check_module(step: Step) -> None:
    m = step.module
    if isinstance(m, nn.Conv2d) and (m.dilation != (1, 1) or m.padding_mode != "zeros" or isinstance(m.padding, str)):
        raise LeanmlError(f"conv {step.name!r}: only zero padding given as numbers and dilation 1 are supported")
    if isinstance(m, nn.AdaptiveAvgPool2d) and m.output_size not in (1, (1, 1)):
        raise LeanmlError(f"pool {step.name!r}: adaptive average pooling is supported to 1x1 only")
    if isinstance(m, nn.MaxPool2d | nn.AvgPool2d) and (
        getattr(m, "ceil_mode", False) or getattr(m, "dilation", 1) != 1
    ):
        raise LeanmlError(f"pool {step.name!r}: ceil_mode and dilation are not supported")


def build_plan(model: nn.Module) -> Plan:
    """Trace a BN-folded ``model`` into a :class:`Plan`; unsupported ops raise, naming the op and the supported list."""
    if any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        raise LeanmlError("the model still has BatchNorm layers", "fold them first with leanml.quant.fold_bn")
    gm = symbolic_trace(model)
    modules = dict(gm.named_modules())
    plan = Plan()
    alias: dict[str, str] = {}  # fx node name -> tensor name it is a view of
    producer: dict[str, Step] = {}
    users = {n.name: len(n.users) for n in gm.graph.nodes}

    def tensor(n: object) -> str:
        if not isinstance(n, fx.Node):
            raise LeanmlError(f"unsupported non-tensor argument {n!r} in the traced graph")
        return alias.get(n.name, n.name)

    for node in gm.graph.nodes:
        if node.op == "placeholder":
            step = Step("input", node.name, [], node.name)
        elif node.op == "output":
            plan.output = tensor(node.args[0])
            continue
        else:
            kind = _kind_of(node, modules)
            args = [a for a in node.args if isinstance(a, fx.Node)]
            module = modules.get(str(node.target)) if node.op == "call_module" else None
            name = str(node.target) if node.op == "call_module" else node.name
            if kind == "alias":
                alias[node.name] = tensor(args[0])
                continue
            if kind in ACTIVATIONS:
                src = producer.get(tensor(args[0]))
                if src is not None and src.kind in FUSABLE_PRODUCERS and src.act == "none" and users[src.output] == 1:
                    src.act = kind  # fuse: the producer's output is clamped; this node aliases it
                    alias[node.name] = src.output
                    continue
            step = Step(kind, name, [tensor(a) for a in args], node.name, module)
            if kind == "flatten":
                start = node.args[1] if len(node.args) > 1 else node.kwargs.get("start_dim", 1)
                if isinstance(module, nn.Flatten):
                    start = module.start_dim
                step.flatten_start = int(start) if isinstance(start, int) else 1
            if kind == "add" and len(step.inputs) != 2:
                raise LeanmlError(f"add {name!r} must add exactly two tensors")
            _check_module(step)
        plan.steps.append(step)
        producer[step.output] = step
    return plan
