"""K-means weight quantization (course Lab 2): each layer's weights share 2^b values.

A layer quantized to ``b`` bits stores one ``b``-bit index per weight plus a
codebook of ``2^b`` fp32 centroids, so its honest size is
``numel * b + 2^b * 32`` bits. Three layers:

* pure tensor functions: :func:`kmeans_codebook` (deterministic 1-D k-means
  with seeded k-means++ initialization), :func:`kmeans_reconstruct`,
  :func:`kmeans_storage_bits`;
* small data objects: :class:`Codebook` (one layer) and :class:`KMeansConfig`;
* a thin module transform: :func:`kmeans_quantize_` projects the selected
  layers' weights onto their codebooks in place and returns a
  :class:`KMeansQuantizer`, which re-projects, runs k-means QAT (the Lab 2
  cluster-mean update), reports sizes, and saves the codebooks as tensors.

Example:
    >>> import torch
    >>> from leanml.models import build_model
    >>> model = build_model("vgg")
    >>> q = kmeans_quantize_(model, KMeansConfig(bits=2))
    >>> model.classifier.weight.unique().numel() <= 4
    True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from leanml.artifact import artifact_paths, check_input_block, load_artifact, save_artifact
from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.models.registry import ModelSpec, build_from_spec, model_spec
from leanml.quant.code_packing import pack_codes, row_bytes, unpack_codes
from leanml.train.checkpoint import load_model_weights_

# config layer-type names -> module types (matched with isinstance, so subclasses count)
LAYER_TYPES: dict[str, type[nn.Module]] = {"conv2d": nn.Conv2d, "linear": nn.Linear}
MIN_BITS, MAX_BITS = 1, 8
# k-means++ runs on at most this many evenly spaced sorted values; below ATen's elementwise
# parallel grain size (32768), so its 2^b - 1 sequential draws never pay for thread hand-offs
INIT_SAMPLE = 1 << 15
_SEARCH_CHUNK = 128  # searchsorted threads above 200 queries; a few hundred midpoints are not worth it


def _check_bits(bits: object, where: str) -> None:
    require(
        isinstance(bits, int) and not isinstance(bits, bool) and MIN_BITS <= bits <= MAX_BITS,
        f"k-means bits {bits!r} for {where} is out of range",
        f"use an int from {MIN_BITS} to {MAX_BITS}",
    )


# ---------------------------------------------------------------- pure functions


def _kmeanspp_init(xs: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ on sorted float64 values ``xs`` (N,): first center uniform, then D^2 sampling.

    Large inputs are thinned to :data:`INIT_SAMPLE` evenly spaced quantiles first
    (deterministic; Lloyd iterations then use every value).
    """
    xs = xs[:: -(-xs.numel() // INIT_SAMPLE)]  # stride ceil(N / INIT_SAMPLE)
    n = xs.numel()
    centers = [xs[int(torch.randint(n, (1,), generator=gen))]]
    d2 = (xs - centers[0]) ** 2  # (N,) squared distance to the nearest chosen center
    while len(centers) < k:
        cum = torch.cumsum(d2, 0)  # (N,)
        total = cum[-1]
        if total <= 0:  # every value is already a center: fewer distinct values than k
            break
        u = torch.rand(1, dtype=torch.float64, generator=gen) * total
        c = xs[torch.searchsorted(cum, u, right=True).clamp(max=n - 1)].squeeze(0)
        centers.append(c)
        d2 = torch.minimum(d2, (xs - c) ** 2)
    centers += [centers[0]] * (k - len(centers))  # duplicates stay empty clusters
    return torch.stack(centers)  # (K,)


def kmeans_codebook(
    weights: torch.Tensor, bits: int, iters: int = 30, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """1-D k-means of ``weights`` into ``2^bits`` clusters: ``(centroids (2^bits,), labels like weights)``.

    Deterministic: the k-means++ initialization draws from a ``torch.Generator``
    seeded with ``seed``, and the work runs in float64 on the CPU, so the same
    input gives the same codebook on any device. Lloyd iterations use the 1-D
    structure: values are sorted once, each cluster is a contiguous run found
    by ``searchsorted`` against the midpoints between sorted centroids, and
    cluster sums come from a prefix sum, so an iteration costs O(K log N)
    instead of an N x K distance matrix. Iteration stops when the cluster
    boundaries stop moving or after ``iters`` rounds; an empty cluster keeps its
    old centroid. Centroids come back sorted ascending in ``weights.dtype``;
    labels are int64 (nearest centroid) on ``weights.device``.

    Example:
        >>> c, labels = kmeans_codebook(torch.tensor([0.0, 0.1, 5.0, 5.2]), bits=1)
        >>> [round(v, 2) for v in c.tolist()], labels.tolist()
        ([0.05, 5.1], [0, 0, 1, 1])
    """
    _check_bits(bits, "kmeans_codebook")
    require(iters >= 1, f"k-means iters must be >= 1, got {iters}")
    require(weights.numel() > 0, "cannot k-means an empty tensor")
    x = weights.detach().flatten().to("cpu", torch.float64)  # (N,)
    require(bool(torch.isfinite(x).all()), "weights hold NaN or infinite values", "fix the model before quantizing")
    k, n = 1 << bits, x.numel()
    xs = x.sort().values  # (N,)
    prefix = torch.cat([xs.new_zeros(1), torch.cumsum(xs, 0)])  # (N+1,) prefix[i] = sum(xs[:i])
    gen = torch.Generator().manual_seed(seed)
    c = _kmeanspp_init(xs, k, gen).sort().values  # (K,)
    prev: torch.Tensor | None = None
    for _ in range(iters):
        mids = (c[1:] + c[:-1]) / 2  # (K-1,)
        # cluster j holds mids[j-1] < x <= mids[j]: edges[j]..edges[j+1] in xs
        ends = [torch.searchsorted(xs, m, right=True) for m in torch.split(mids, _SEARCH_CHUNK)]
        edges = torch.cat([mids.new_zeros(1, dtype=torch.long), *ends])
        edges = torch.cat([edges, edges.new_full((1,), n)])  # (K+1,)
        if prev is not None and torch.equal(edges, prev):
            break
        counts = edges[1:] - edges[:-1]  # (K,)
        sums = prefix[edges[1:]] - prefix[edges[:-1]]  # (K,)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c).sort().values
        prev = edges
    centroids = c.to(weights.dtype)  # (K,)
    cd = centroids.to(torch.float64)
    labels = torch.bucketize(x, (cd[1:] + cd[:-1]) / 2)  # (N,) nearest centroid in the output dtype
    return centroids.to(weights.device), labels.view(weights.shape).to(weights.device)


def kmeans_reconstruct(centroids: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Weights from a codebook: ``centroids[labels]``, shaped like ``labels``.

    Example:
        >>> kmeans_reconstruct(torch.tensor([-1.0, 1.0]), torch.tensor([[1, 0], [0, 0]]))
        tensor([[ 1., -1.],
                [-1., -1.]])
    """
    return centroids[labels.long()]


def kmeans_storage_bits(numel: int, bits: int, codebook_size: int, codebook_bits: int = 32) -> int:
    """Honest storage of a k-means layer: ``numel`` indices of ``bits`` bits plus the codebook.

    Example:
        >>> kmeans_storage_bits(64, 2, 4)  # nn.Linear(16, 4) weight at 2 bits
        256
    """
    return numel * bits + codebook_size * codebook_bits


# ---------------------------------------------------------------- data objects


@dataclass(frozen=True, eq=False)
class Codebook:
    """One layer's codebook: ``centroids`` (2^bits,) and int64 ``labels`` (the weight's shape).

    Example:
        >>> cb = Codebook(torch.tensor([0.0, 2.0]), torch.tensor([1, 1, 0]), bits=1)
        >>> cb.reconstruct().tolist(), cb.storage_bits
        ([2.0, 2.0, 0.0], 67)
    """

    centroids: torch.Tensor
    labels: torch.Tensor
    bits: int

    @property
    def numel(self) -> int:
        """Number of weights the codebook encodes."""
        return self.labels.numel()

    @property
    def storage_bits(self) -> int:
        """Indices plus fp32 codebook, in bits."""
        return kmeans_storage_bits(self.numel, self.bits, self.centroids.numel())

    def reconstruct(self) -> torch.Tensor:
        """The quantized weight (the labels' shape)."""
        return kmeans_reconstruct(self.centroids, self.labels)


@dataclass
class KMeansConfig(Config):
    """What to k-means quantize.

    ``bits``: one width for every selected layer, or ``{module name: bits}`` to
    quantize exactly the named layers at their own widths (others stay float).
    ``layer_types``: names from :data:`LAYER_TYPES`. ``exclude``: module names
    left in float (wins over ``bits``). ``iters``/``seed``: k-means settings.

    Example:
        >>> KMeansConfig.from_dict({"bits": {"classifier": 8}}).bits
        {'classifier': 8}
    """

    bits: int | dict[str, int] = 4
    layer_types: list[str] = field(default_factory=lambda: ["conv2d", "linear"])
    exclude: list[str] = field(default_factory=list)
    iters: int = 30
    seed: int = 0

    def validate(self) -> None:
        if isinstance(self.bits, dict):
            for name, b in self.bits.items():
                _check_bits(b, f"layer {name!r}")
        else:
            _check_bits(self.bits, "all layers")
        unknown = [t for t in self.layer_types if t not in LAYER_TYPES]
        require(
            not unknown and bool(self.layer_types),
            f"unknown k-means layer type(s): {', '.join(map(repr, unknown)) or '(none given)'}",
            f"choose from: {', '.join(LAYER_TYPES)}",
        )
        require(self.iters >= 1, f"k-means iters must be >= 1, got {self.iters}")
        require(self.seed >= 0, f"k-means seed must be >= 0, got {self.seed}")


def kmeans_layers(model: nn.Module, config: KMeansConfig) -> dict[str, int]:
    """The layers ``config`` selects in ``model``, as ``{module name: bits}`` in model order.

    Names in a ``bits`` dict or in ``exclude`` that are not layers of the
    selected types raise :class:`LeanmlError` listing the valid names.

    Example:
        >>> from leanml.models import build_model
        >>> kmeans_layers(build_model("vgg"), KMeansConfig(bits=4, exclude=["classifier"]))["features.0"]
        4
    """
    types = tuple(LAYER_TYPES[t] for t in config.layer_types)
    valid = [
        name
        for name, m in model.named_modules()
        if isinstance(m, types) and isinstance(getattr(m, "weight", None), torch.Tensor)
    ]
    named = [*config.exclude, *(config.bits if isinstance(config.bits, dict) else [])]
    unknown = sorted(set(named) - set(valid))
    require(
        not unknown,
        f"unknown layer name(s) for k-means: {', '.join(map(repr, unknown))}",
        f"valid {'/'.join(config.layer_types)} layers: {', '.join(valid)}",
    )
    bits = config.bits
    if isinstance(bits, dict):
        return {n: bits[n] for n in valid if n in bits and n not in config.exclude}
    return {n: bits for n in valid if n not in config.exclude}


# ---------------------------------------------------------------- module transform


@dataclass(frozen=True)
class LayerSize:
    """One quantized layer's size: storage (indices + codebook) vs fp32.

    Example:
        >>> LayerSize("fc", 2, 64, 4, 256, 2048).fp32_bits // 256
        8
    """

    name: str
    bits: int
    numel: int
    distinct: int  # distinct values currently in the model's weight
    storage_bits: int
    fp32_bits: int


@dataclass(frozen=True)
class KMeansReport:
    """Per-layer sizes and the whole model's size; non-quantized parameters count 32 bits each.

    Example:
        >>> layer = nn.Linear(16, 4)
        >>> r = kmeans_quantize_(layer, KMeansConfig(bits=2)).report(layer)
        >>> r.layers[0].storage_bits, r.total_bytes, r.fp32_bytes  # weight 64*2 + 4*32, bias 4*32
        (256, 48.0, 272.0)
    """

    layers: list[LayerSize]
    other_bits: int  # every parameter that is not a k-means weight, at 32 bits

    @property
    def total_bits(self) -> int:
        """Model size in bits with k-means layers at their storage size."""
        return sum(s.storage_bits for s in self.layers) + self.other_bits

    @property
    def total_bytes(self) -> float:
        """Model size in bytes."""
        return self.total_bits / 8

    @property
    def fp32_bytes(self) -> float:
        """The same model all in fp32, in bytes."""
        return (sum(s.fp32_bits for s in self.layers) + self.other_bits) / 8

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form."""
        return {
            "layers": [dataclasses.asdict(s) for s in self.layers],
            "total_bytes": self.total_bytes,
            "fp32_bytes": self.fp32_bytes,
        }


def _distinct(t: torch.Tensor) -> int:
    s = t.detach().flatten().sort().values  # (N,)
    return int((s[1:] != s[:-1]).sum()) + 1 if s.numel() else 0


def _weight(model: nn.Module, name: str, shape: torch.Size) -> torch.Tensor:
    try:
        w = model.get_submodule(name).weight
    except AttributeError as e:
        raise LeanmlError(f"model has no layer {name!r} with a weight", "use the model the codebooks came from") from e
    if not isinstance(w, torch.Tensor) or w.shape != shape:
        got = tuple(w.shape) if isinstance(w, torch.Tensor) else type(w).__name__
        raise LeanmlError(f"layer {name!r} weight is {got}, its codebook is for {tuple(shape)}")
    return w


class KMeansQuantizer:
    """Codebooks of a k-means quantized model, by module name.

    K-means QAT (Lab 2) keeps every layer at <= 2^b distinct values while
    training: the float weights take an optimizer step, each centroid becomes
    the mean of the weights assigned to it (labels fixed), and the weights are
    re-projected onto the updated codebook::

        loss.backward(); opt.step(); quantizer.qat_step_(model)

    Example:
        >>> layer = nn.Linear(4, 2)
        >>> cb = Codebook(torch.tensor([-0.5, 0.5]), torch.zeros(2, 4, dtype=torch.long), bits=1)
        >>> q = KMeansQuantizer({"": cb})
        >>> q.apply_(layer).weight.unique().tolist()
        [-0.5]
    """

    def __init__(self, codebooks: dict[str, Codebook]) -> None:
        self.codebooks = dict(codebooks)

    def apply_(self, model: nn.Module) -> nn.Module:
        """Overwrite each layer's weight with its codebook reconstruction (in place); returns ``model``."""
        with torch.no_grad():
            for name, cb in self.codebooks.items():
                w = _weight(model, name, cb.labels.shape)
                w.copy_(kmeans_reconstruct(cb.centroids.to(w.device), cb.labels.to(w.device)))
        return model

    def update_centroids_(self, model: nn.Module) -> None:
        """Set each centroid to the mean of the model's current weights assigned to it (labels fixed).

        Only the codebooks change; call :meth:`apply_` (or use :meth:`qat_step_`)
        to project the weights back. A cluster with no weights keeps its centroid.
        """
        for name, cb in list(self.codebooks.items()):
            w = _weight(model, name, cb.labels.shape).detach().flatten().to(torch.float64)  # (N,)
            labels = cb.labels.to(w.device).flatten()  # (N,)
            k = cb.centroids.numel()
            counts = torch.bincount(labels, minlength=k)  # (K,)
            sums = w.new_zeros(k).index_add_(0, labels, w)  # (K,)
            old = cb.centroids.to(w.device, torch.float64)
            new = torch.where(counts > 0, sums / counts.clamp(min=1), old)
            self.codebooks[name] = dataclasses.replace(cb, centroids=new.to(cb.centroids))

    def qat_step_(self, model: nn.Module) -> nn.Module:
        """One k-means QAT step after ``opt.step()``: :meth:`update_centroids_`, then :meth:`apply_`."""
        self.update_centroids_(model)
        return self.apply_(model)

    def report(self, model: nn.Module) -> KMeansReport:
        """Per-layer bits, numel, distinct values and storage vs fp32, plus the model total."""
        layers = []
        for name, cb in self.codebooks.items():
            w = _weight(model, name, cb.labels.shape)
            layers.append(LayerSize(name, cb.bits, cb.numel, _distinct(w), cb.storage_bits, 32 * cb.numel))
        quantized = {f"{n}.weight" if n else "weight" for n in self.codebooks}
        other = sum(p.numel() for n, p in model.named_parameters() if n not in quantized)
        return KMeansReport(layers, 32 * other)

    def size_bits(self, model: nn.Module) -> int:
        """Model size in bits: k-means layers as indices + codebook, every other parameter at 32 bits."""
        return self.report(model).total_bits

    def state(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Codebooks as tensors (fp32 centroids, labels packed to ``bits`` per weight) and JSON-safe metadata, for
        ``save_artifact``. Labels are packed row by row (one row per output channel) with
        :func:`leanml.llm.quant.bit_packing.pack_codes`; 1-bit codebooks pack at 2 bits, its narrowest width.

        Example:
            >>> cb = Codebook(torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([[1, 0, 3, 2]]), bits=2)
            >>> KMeansQuantizer({"fc": cb}).state()[0]["fc.labels"].tolist()  # 01 00 11 10 -> 0b10110001
            [[177]]
        """
        tensors: dict[str, torch.Tensor] = {}
        layers: dict[str, Any] = {}
        for name, cb in self.codebooks.items():
            tensors[f"{name}.centroids"] = cb.centroids.detach().float().cpu()
            labels = cb.labels.to("cpu", torch.uint8)
            rows = labels.reshape(labels.shape[0] if labels.dim() else 1, -1)
            tensors[f"{name}.labels"] = pack_codes(rows, _pack_bits(cb.bits))
            layers[name] = {"bits": cb.bits, "shape": list(cb.labels.shape)}
        return tensors, {"kmeans": {"layers": layers}}

    @classmethod
    def from_state(cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> KMeansQuantizer:
        """Inverse of :meth:`state`; extra metadata keys (artifact format, hash) are ignored. A layer stored as a plain
        bit width (the first format) holds unpacked uint8 labels. Mismatched tensors are a :class:`LeanmlError`.

        Example:
            >>> cb = Codebook(torch.tensor([0.0, 1.0]), torch.tensor([1, 0]), bits=1)
            >>> KMeansQuantizer.from_state(*KMeansQuantizer({"fc": cb}).state()).codebooks["fc"].labels.tolist()
            [1, 0]
        """
        block = meta.get("kmeans")
        layers = block.get("layers") if isinstance(block, dict) else None
        require(isinstance(layers, dict), "metadata has no k-means layers", "save it with KMeansQuantizer.state()")
        assert isinstance(layers, dict)
        codebooks = {}
        for name, entry in layers.items():
            packed = isinstance(entry, dict)
            bits = entry.get("bits") if isinstance(entry, dict) else entry
            _check_bits(bits, f"layer {name!r}")
            assert isinstance(bits, int)
            c, lab = tensors.get(f"{name}.centroids"), tensors.get(f"{name}.labels")
            require(c is not None and lab is not None, f"k-means state lacks tensors for layer {name!r}")
            assert c is not None and lab is not None
            if packed:
                lab = _unpack_labels(lab, bits, entry.get("shape"), name)
            k = 1 << bits
            require(
                c.shape == (k,) and c.dtype == torch.float32 and lab.dtype == torch.uint8,
                f"k-means codebook of layer {name!r} does not match {bits} bits",
                "re-create the artifact",
            )
            require(
                lab.numel() == 0 or int(lab.max()) < k,
                f"k-means codebook of layer {name!r} does not match {bits} bits",
                "re-create the artifact",
            )
            codebooks[name] = Codebook(c, lab.long(), bits)
        return cls(codebooks)


def _pack_bits(bits: int) -> int:
    return max(bits, 2)  # pack_codes packs 2..8 bits


def _unpack_labels(packed: torch.Tensor, bits: int, shape: Any, name: str) -> torch.Tensor:
    """Packed label rows → uint8 labels of ``shape``, after checking the shape against the stored tensor."""
    ok = isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ok = ok and len(shape) <= 8 and math.prod(shape) <= 1 << 40
    require(ok, f"k-means layer {name!r} has an invalid shape {str(shape)[:60]}", "re-create the artifact")
    rows = shape[0] if shape else 1
    per_row = math.prod(shape) // rows
    want = (rows, row_bytes(per_row, _pack_bits(bits)))
    require(
        packed.dtype == torch.uint8 and tuple(packed.shape) == want,
        f"k-means labels of layer {name!r} are {packed.dtype} {tuple(packed.shape)}, {shape} at {bits} bits "
        f"need uint8 {want}",
        "re-create the artifact",
    )
    return unpack_codes(packed, _pack_bits(bits), per_row).reshape(shape)


def kmeans_quantize_(model: nn.Module, config: KMeansConfig | None = None) -> KMeansQuantizer:
    """K-means quantize ``model``'s selected layers in place; returns the :class:`KMeansQuantizer`.

    Each selected weight is clustered by :func:`kmeans_codebook` and replaced by
    its reconstruction, so the layer holds at most ``2^bits`` distinct values.

    Example:
        >>> from leanml.models import build_model
        >>> model = build_model("vgg")
        >>> q = kmeans_quantize_(model, KMeansConfig(bits={"features.0": 2}))
        >>> list(q.codebooks), model.features[0].weight.unique().numel() <= 4
        (['features.0'], True)
    """
    config = config or KMeansConfig()
    codebooks = {}
    for name, bits in kmeans_layers(model, config).items():
        weight = model.get_submodule(name).weight
        assert isinstance(weight, torch.Tensor)
        centroids, labels = kmeans_codebook(weight, bits, config.iters, config.seed)
        codebooks[name] = Codebook(centroids, labels, bits)
    quantizer = KMeansQuantizer(codebooks)
    quantizer.apply_(model)
    return quantizer


# ---------------------------------------------------------------- the k-means model artifact

MODEL_KIND = "kmeans-model"
RECREATE = "re-create it with `leanml quantize kmeans CHECKPOINT --out PATH`"


def save_kmeans_model(
    path: str | Path,
    model: nn.Module,
    quantizer: KMeansQuantizer,
    meta: dict[str, Any] | None = None,
    input: dict[str, Any] | None = None,
) -> None:
    """Save a k-means quantized registry model as codes + codebooks: each quantized weight is stored only as its
    labels packed to ``bits`` per weight and its fp32 centroids; every other tensor in float. :func:`load_kmeans_model`
    rebuilds the weights, so the file is about ``bits / 32`` of the float checkpoint for the quantized layers. A
    ``"kmeans"`` block in ``meta`` (e.g. QAT settings) is kept beside the per-layer codebook entries.

    Example:
        >>> import tempfile
        >>> from leanml.models import build_model
        >>> model = build_model("vgg", layers=[8, "M"])
        >>> q = kmeans_quantize_(model, KMeansConfig(bits=2))
        >>> path = tempfile.mkdtemp() + "/km"
        >>> save_kmeans_model(path, model, q, {"note": "2-bit"})
        >>> loaded, _, meta = load_kmeans_model(path)
        >>> torch.equal(loaded.classifier.weight, model.classifier.weight), meta["note"]
        (True, '2-bit')
    """
    quantized = _weight_keys(quantizer)
    tensors = {f"model/{k}": v for k, v in model.state_dict().items() if k not in quantized}
    codes, cb_meta = quantizer.state()
    tensors.update({f"kmeans/{k}": v for k, v in codes.items()})
    extra = dict(meta or {})
    given = extra.pop("kmeans", {})
    require(isinstance(given, dict), "the meta's 'kmeans' block must be a dict", 'e.g. {"kmeans": {"qat_epochs": 1}}')
    doc: dict[str, Any] = {"model": model_spec(model).to_dict(), **extra, "kmeans": {**given, **cb_meta["kmeans"]}}
    if input is not None:
        doc["input"] = input
    save_artifact(path, tensors, doc, kind=MODEL_KIND)


def load_kmeans_model(path: str | Path) -> tuple[nn.Module, KMeansQuantizer, dict[str, Any]]:
    """(model in eval mode, its codebooks, the sidecar) of a :func:`save_kmeans_model` artifact; every field and
    tensor is checked before the model is built, and problems are a :class:`LeanmlError` naming the file.

    Example:
        >>> model, quantizer, meta = load_kmeans_model("runs/vgg-km4")  # doctest: +SKIP
    """
    tensors, meta = load_artifact(path, kind=MODEL_KIND, recreate=RECREATE)
    _, sidecar = artifact_paths(path)
    spec = ModelSpec.from_dict(meta.get("model"), str(sidecar))
    if "input" in meta:
        check_input_block(meta["input"], sidecar, RECREATE)
    codes = {k.removeprefix("kmeans/"): v for k, v in tensors.items() if k.startswith("kmeans/")}
    quantizer = KMeansQuantizer.from_state(codes, meta)
    expected = {f"{n}.{part}" for n in quantizer.codebooks for part in ("centroids", "labels")}
    unknown = sorted(set(codes) - expected) + [k for k in tensors if not k.startswith(("model/", "kmeans/"))]
    require(not unknown, f"{path} holds the unknown tensor {str(unknown[:1])[:80]}", RECREATE)
    held = sum(t.numel() for t in tensors.values()) + sum(cb.numel for cb in quantizer.codebooks.values())
    model = build_from_spec(spec, max_params=max(1 << 24, 64 * held))
    full = {k: v for k, v in tensors.items() if k.startswith("model/")}
    full.update({f"model/{k}": quantizer.codebooks[k.removesuffix('.weight')].reconstruct()
                 for k in _weight_keys(quantizer)})  # fmt: skip
    return load_model_weights_(model, full, path), quantizer, meta


def _weight_keys(quantizer: KMeansQuantizer) -> set[str]:
    return {f"{name}.weight" if name else "weight" for name in quantizer.codebooks}
