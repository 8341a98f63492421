"""Seeded fuzz of the artifact loaders: damaged checkpoints and integer models either raise a LeanmlError or load to
a model whose output equals the undamaged file's; nothing else (no KeyError, RecursionError, allocation failure, or
a model that loads and breaks when run).

Each file is damaged by the shared mutations of ``tests/fuzz_mutations.py``: bytes of the weights file (caught by the
sidecar's hash), bytes of its safetensors header with the hash re-written, sidecar JSON mutations with and without a
re-written hash (the "attacker" case, which reaches the field checks), tensors re-saved with another dtype or shape
(re-hashed), and files replaced by an empty file or a directory.
"""

from __future__ import annotations

import hashlib
import json
import random
import shutil
import struct
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from leanml.errors import LeanmlError
from leanml.models import build_model
from leanml.prune.channel import ChannelPruneConfig, prune_channels_
from leanml.quant import IntegerModel, QuantSim, convert
from leanml.train import load_checkpoint, save_checkpoint
from tests.conftest import randomize_bn
from tests.fuzz_mutations import Mutation, byte_mutations, deep_json, json_mutations

SHAPE = [1, 12, 12]
Case = tuple[str, bytes | None, bytes | None]  # (name, weights bytes, sidecar bytes); None = a directory there


def _tiny_resnet() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_model("resnet", stem=8, widths=[8, 16], blocks=[1, 1], resolution=SHAPE[1])
    return randomize_bn(model).eval()


def _rehash(sidecar: bytes, weights: bytes) -> bytes:
    """The sidecar with a correct weights hash (what an attacker who edits the files writes), if it parses."""
    try:
        doc = json.loads(sidecar)
    except (ValueError, RecursionError):
        return sidecar
    if not isinstance(doc, dict):
        return sidecar
    doc["weights_sha256"] = hashlib.sha256(weights).hexdigest()
    return json.dumps(doc).encode()


def _tensor_swaps(weights: bytes, sidecar: bytes, count: int, seed: int) -> list[Case]:
    """``count`` seeded tensors, each re-saved with another dtype and with its elements in another shape (re-hashed)."""
    tensors = load_bytes(weights)
    cases: list[Case] = []
    names = random.Random(seed).sample(sorted(tensors), min(count, len(tensors)))
    for name, t in ((n, tensors[n]) for n in names):
        other = torch.float64 if t.dtype != torch.float64 else torch.float32
        if t.dtype in (torch.int8, torch.uint8):
            other = torch.int16
        elif t.dtype == torch.int32:
            other = torch.int8 if "multiplier" in name else torch.int64
        shape = (t.numel(),) if t.dim() != 1 else (1, t.numel())
        for label, swapped in (("dtype", t.to(other)), ("shape", t.reshape(shape))):
            data = save_bytes({**tensors, name: swapped})
            cases.append((f"tensor-{label}:{name}", data, _rehash(sidecar, data)))
    return cases


def _header_flips(weights: bytes, sidecar: bytes, count: int, seed: int) -> list[Case]:
    """Byte flips inside the safetensors header, re-hashed so the header checks see them."""
    (n,) = struct.unpack("<Q", weights[:8])
    flips = [m for m in byte_mutations(weights, header_len=8 + n, count=count + 5, seed=seed) if "header" in m.name]
    return [(f"rehashed-{m.name}", m.data, _rehash(sidecar, m.data)) for m in flips[:count]]


def fuzz_cases(weights: bytes, sidecar: bytes, seed: int) -> list[Case]:
    """Every damaged (weights, sidecar) pair for one artifact."""
    (n,) = struct.unpack("<Q", weights[:8])
    doc = json.loads(sidecar)
    cases: list[Case] = [(f"weights-{m.name}", m.data, sidecar) for m in byte_mutations(weights, 8 + n, 16, seed)]
    cases += _header_flips(weights, sidecar, 10, seed + 1)
    sidecar_muts: list[Mutation] = json_mutations(doc, 40, seed + 2)
    cases += [(f"sidecar-{m.name}", weights, m.data) for m in sidecar_muts[:20]]
    cases += [(f"rehashed-sidecar-{m.name}", weights, _rehash(m.data, weights)) for m in sidecar_muts[5:]]
    cases += _tensor_swaps(weights, sidecar, 12, seed + 3)
    cases += [
        ("sidecar-directory", weights, None),
        ("weights-directory", None, sidecar),
        ("sidecar-deep-json-65", weights, deep_json(65)),
        ("sidecar-deep-object", weights, b'{"a":' * 70 + b"1" + b"}" * 70),
        ("sidecar-huge-int", weights, sidecar.replace(b'"version": ', b'"version": ' + b"9" * 5000, 1)),
        ("sidecar-empty", weights, b""),
        ("weights-empty", b"", sidecar),
    ]
    return cases


def _edit(doc: dict, path: tuple, value: object) -> dict:
    doc = json.loads(json.dumps(doc))
    parent = doc
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = value
    return doc


def integer_cases(weights: bytes, sidecar: bytes) -> list[Case]:
    """The damage the issue names, each re-hashed: bad conv geometry, a one-input add, unknown tensor names, an
    int8 multiplier, a huge zero point, a clamp that does not fit, a weight reshaped to the same element count."""
    doc = json.loads(sidecar)
    types = [op["type"] for op in doc["ops"]]
    conv, add = types.index("QConv2d"), types.index("QAdd")
    edits: list[tuple[str, tuple, object]] = [
        ("conv-stride-0", ("ops", conv, "fields", "stride"), [0, 1]),
        ("conv-padding-negative", ("ops", conv, "fields", "padding"), [-1, 1]),
        *((f"conv-groups-{g}", ("ops", conv, "fields", "groups"), g) for g in (0, 3, -1, 2**62)),
        ("add-one-input", ("ops", add, "fields", "inputs"), doc["ops"][add]["fields"]["inputs"][:1]),
        ("add-unknown-input", ("ops", add, "fields", "inputs", 1), "nowhere"),
        ("conv-unknown-input", ("ops", conv, "fields", "input"), "nowhere"),
        ("output-unknown", ("output",), "nowhere"),
        ("output-is-the-input", ("output",), doc["ops"][0]["fields"]["output"]),
        ("conv-zero-point-2**62", ("ops", conv, "fields", "out_q", "zero_point"), 2**62),
        ("conv-zero-point-moved", ("ops", conv, "fields", "out_q", "zero_point"), 5),
        ("conv-act-min-moved", ("ops", conv, "fields", "act_min"), 1),
        ("input-scale-moved", ("ops", 0, "fields", "q", "scale"), 1.5),
        ("conv-weight-bits-moved", ("ops", conv + 1, "fields", "weight", "bits"), 8),
        ("unknown-op-field", ("ops", conv, "fields", "dilation"), [1, 1]),
        ("unknown-op-type", ("ops", conv, "type"), "QConv3d"),
    ]
    cases: list[Case] = [
        (name, weights, _rehash(json.dumps(_edit(doc, p, v)).encode(), weights)) for name, p, v in edits
    ]
    tensors = load_bytes(weights)
    weight = f"ops.{conv}.weight"
    o, i, kh, kw = tensors[weight].shape
    same_count = (o, kh, kw, i) if i != kh else (o, i * kh, kw, 1)
    for name, swapped in (
        ("multiplier-as-int8", {f"ops.{conv}.multiplier": tensors[f"ops.{conv}.multiplier"].to(torch.int8)}),
        (
            "weight-reshaped",
            {weight: tensors[weight].reshape(same_count)},
        ),
        ("extra-tensor", {"ops.99.weight": torch.zeros(2)}),
    ):
        data = save_bytes({**tensors, **swapped})
        cases.append((name, data, _rehash(sidecar, data)))
    return cases


def run_fuzz(
    stem: Path,
    run: Callable[[Path], torch.Tensor],
    seed: int,
    extra: Callable[[bytes, bytes], list[Case]] | None = None,
) -> tuple[int, list[str]]:
    """(number of cases, the cases that neither raised a LeanmlError nor loaded to the undamaged output)."""
    weights, sidecar = stem.with_suffix(".safetensors").read_bytes(), stem.with_suffix(".json").read_bytes()
    expected = run(stem)
    failures: list[str] = []
    cases = fuzz_cases(weights, sidecar, seed) + (extra(weights, sidecar) if extra is not None else [])
    for i, (name, w, s) in enumerate(cases):
        case = stem.parent / f"case{i}" / stem.name
        case.parent.mkdir()
        for suffix, data in ((".safetensors", w), (".json", s)):
            target = case.with_suffix(suffix)
            target.mkdir() if data is None else target.write_bytes(data)
        try:
            out = run(case)
        except LeanmlError:
            pass
        except Exception as e:
            failures.append(f"{name}: {type(e).__name__}: {str(e)[:200]}")
        else:
            if not torch.equal(out, expected):
                failures.append(f"{name}: loaded to a different output")
        shutil.rmtree(case.parent)
    return len(cases), failures


def test_checkpoint_loader_survives_damaged_files(tmp_path):
    model = _tiny_resnet()
    prune_channels_(model, ChannelPruneConfig(ratio=0.25, input_shape=SHAPE))  # the spec holds a pruning history
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.randn(2, *SHAPE)).sum().backward()
    opt.step()
    save_checkpoint(tmp_path / "ckpt", model, {"metrics": {"test_acc": 0.5}}, opt, input={"shape": SHAPE})
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))

    def run(path: Path) -> torch.Tensor:
        ckpt = load_checkpoint(path)
        with torch.no_grad():
            return ckpt.model(x)

    count, failures = run_fuzz(tmp_path / "ckpt", run, seed=0)
    assert count >= 90 and not failures, "\n".join(failures)


def test_integer_model_loader_survives_damaged_files(tmp_path):
    model = _tiny_resnet()
    bits = {"stem.0": 8, "blocks.0.conv1": 4, "blocks.0.conv2": 3, "blocks.1.conv1": 2}  # packed weights too
    sim = QuantSim.from_model(model, 8, {**{n: 8 for n in ("blocks.1.conv2", "blocks.1.shortcut.0", "fc")}, **bits})
    sim.calibrate([torch.randn(16, *SHAPE, generator=torch.Generator().manual_seed(2))])
    convert(sim, {"shape": SHAPE, "mean": 0.5, "std": 0.25}, {"weight_bits": bits}).save(tmp_path / "int")
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(1))

    def run(path: Path) -> torch.Tensor:
        return IntegerModel.load(path)(x)

    count, failures = run_fuzz(tmp_path / "int", run, seed=1, extra=integer_cases)
    assert count >= 90 and not failures, "\n".join(failures)
