"""``compress``: a model and image data through the recipe's stages to verified C, resumable, with one report.

Every stage writes its artifact under ``out/stages/<stage>-<key>`` where the key hashes the stage's settings and
everything it consumes (the model's spec and weights, the data, the previous stage's key). A re-run skips every
stage whose folder exists, so ``kill -9`` at any moment and a re-run ends with the same weights and figures as an
uninterrupted run. The run's record (``record.json``) and report (``report.html``) are written last.

Example:
    >>> result = compress("vgg", "fashion-mnist", "mcu", out="runs/demo")   # doctest: +SKIP
    >>> result.report                                                       # doctest: +SKIP
    PosixPath('runs/demo/report.html')
"""

from __future__ import annotations

import copy
import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.console import Console
from torch import nn

from leanml.artifact import atomic_write
from leanml.compress.budget import Budget, Candidate, choose_patch, choose_ratio
from leanml.compress.model_io import attach_spec, restore_model, save_model
from leanml.compress.recipe import QuantizeStage, Recipe, load_recipe
from leanml.compress.rows import StageRow, float_row, integer_accuracy
from leanml.compress.stages import (
    finetune_model,
    prune_label,
    prune_model,
    quantize_model,
    train_model,
)
from leanml.compress.store import RunStore, StageDone, stage_key
from leanml.data import ImageData, ImageSet, batches, load_data
from leanml.deploy.engine import (
    DeployConfig,
    Deployment,
    deploy,
    export_project,
    layer_table,
    measure_c_latency,
    memory_timeline,
    verify,
)
from leanml.deploy.ir import lower
from leanml.deploy.mcu import MCU_TARGETS, run_summary, tools_missing
from leanml.errors import LeanmlError
from leanml.models.registry import build_model, get_entry
from leanml.profile.machine import load_averages, machine_summary
from leanml.progress import make_console, track
from leanml.quant.integer import IntegerModel
from leanml.quant.linear import calibration_tensor
from leanml.threads import torch_threads

MODEL_FILE = "model"
INTEGER_FILE = "integer_model"


@dataclass
class CompressResult:
    """What a run produced: its folder, report, record, final float model, integer model and deployment summary."""

    out: Path
    report: Path
    record: dict[str, Any]
    model: nn.Module
    integer_model: IntegerModel | None = None
    stages: list[StageRow] = field(default_factory=list)


def fingerprint_data(data: ImageData) -> str:
    """SHA-256 of every image and label of the three splits and the data's description."""
    h = hashlib.sha256(json.dumps(data.describe(), sort_keys=True).encode())
    for split in (data.train, data.val, data.test):
        h.update(split.images.contiguous().numpy().tobytes())
        h.update(split.labels.contiguous().numpy().tobytes())
    return h.hexdigest()


def fingerprint_model(model: nn.Module) -> str:
    """SHA-256 of the model's spec and every tensor of its state dict."""
    h = hashlib.sha256(json.dumps(attach_spec(model).to_dict(), sort_keys=True, default=str).encode())
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def resolve_model(model: nn.Module | str, data: ImageData, args: dict[str, Any] | None, seed: int) -> nn.Module:
    """A module as given, or built by name (a zoo model sized to the data, or ``pkg.module:factory``), seeded."""
    if isinstance(model, nn.Module):
        return model
    kwargs = dict(args or {})
    if ":" not in model:
        fields = set(get_entry(model).config_cls.__dataclass_fields__)
        c, h, _ = data.input_shape
        sized = {"in_channels": c, "num_classes": data.num_classes, "resolution": h}
        kwargs = {**{k: v for k, v in sized.items() if k in fields}, **kwargs}
    torch.manual_seed(seed)
    built = build_model(model, **kwargs)
    if not isinstance(built, nn.Module):  # pragma: no cover - build_model checks factories
        raise LeanmlError(f"model {model!r} is not a torch module")
    return built


class _Run:
    """One run's state: the store, the data, the recipe and the rows so far."""

    def __init__(
        self, out: Path, data: ImageData, recipe: Recipe, source: nn.Module, progress: bool, console: Console
    ) -> None:
        self.store = RunStore(out)
        self.data, self.recipe, self.source = data, recipe, source
        self.progress, self.console = progress, console
        self.input_desc = data.describe()
        c, h, w = data.input_shape
        self.shape = (int(c), int(h), int(w))
        self.test = data.test.sample(recipe.eval_images, recipe.seed)
        self.rows: list[StageRow] = []
        self.extra: dict[str, Any] = {}

    def stage(
        self, name: str, label: str, config: dict[str, Any], inputs: list[str], fill: Callable[[Path], dict[str, Any]]
    ) -> tuple[str, StageDone]:
        """Run (or find) one stage; returns its key and what it stored. ``fill`` returns the record with a row."""
        key = stage_key(name, config, inputs)
        done = self.store.find(name, key)
        if done is not None:
            self.console.print(f"[dim]{name}: cached ({done.folder.name})[/dim]")
            row = StageRow.from_dict(done.record["row"])
            row.cached = True
        else:
            self.console.print(f"[bold]{name}[/bold]: {label}")
            start = time.perf_counter()

            def timed_fill(folder: Path) -> dict[str, Any]:
                record = fill(folder)
                record["row"]["seconds"] = round(time.perf_counter() - start, 2)
                return record

            done = self.store.run(name, key, timed_fill)
            row = StageRow.from_dict(done.record["row"])
        self.rows.append(row)
        return key, done

    def float_stage(
        self,
        name: str,
        label: str,
        config: dict[str, Any],
        inputs: list[str],
        work: Callable[[], tuple[nn.Module, dict[str, Any]]],
    ) -> tuple[str, nn.Module]:
        """A stage whose product is a float model (saved as a checkpoint and measured)."""
        made: dict[str, nn.Module] = {}

        def fill(folder: Path) -> dict[str, Any]:
            model, extra = work()
            save_model(folder / MODEL_FILE, model, self.input_desc)
            row = float_row(name, label, model, self.test, self.shape, self.recipe.threads)
            row.note = str(extra.pop("note", ""))
            made["model"] = model
            return {"row": row.to_dict(), **extra}

        key, done = self.stage(name, label, config, inputs, fill)
        model = made.get("model") or restore_model(done.folder / MODEL_FILE, self.source)
        self.extra[name] = {k: v for k, v in done.record.items() if k != "row"}
        return key, model


def compress(
    model: nn.Module | str,
    data: ImageData | str = "fashion-mnist",
    recipe: Recipe | str | Path = "mcu",
    out: str | Path = "runs/compress",
    model_args: dict[str, Any] | None = None,
    resolution: int | None = None,
    progress: bool = True,
) -> CompressResult:
    """Run ``recipe`` on ``model`` and ``data``; see the module docstring.

    ``model``: an ``nn.Module``, a zoo name (sized to the data) or ``"pkg.module:factory"`` (called with
    ``model_args``). ``data``: an :class:`~leanml.data.ImageData` or a spec (``fashion-mnist``,
    ``imagefolder:DIR``, ``npz:FILE``) loaded at ``resolution``. ``recipe``: a :class:`Recipe`, a built-in name or
    a YAML/JSON file.
    """
    rec = recipe if isinstance(recipe, Recipe) else load_recipe(recipe)
    images = data if isinstance(data, ImageData) else load_data(data, resolution=resolution, seed=rec.seed)
    console = make_console()
    with torch_threads(rec.threads):
        source = resolve_model(model, images, model_args, rec.seed)
        attach_spec(source)
        preflight(source, tuple(images.input_shape), rec)
        out = Path(out)
        existed = out.exists()
        run = _Run(out, images, rec, source, progress, console)
        try:
            return _run_stages(run)
        except BaseException:
            if not existed and not any(run.store.stages.iterdir()):  # failed before any stage finished
                shutil.rmtree(out, ignore_errors=True)
            raise


def preflight(model: nn.Module, input_shape: tuple[int, ...], recipe: Recipe) -> None:
    """Fail before any training if a stage could not handle the model: the input shape, the tracer, channel
    pruning's dependency graph, and the ops the integer model supports.

    Example:
        >>> preflight(torch.nn.Sequential(torch.nn.Conv2d(1, 2, 3)), (1, 8, 8), load_recipe("mcu"))
    """
    from leanml.profile.graph import trace_with_shapes
    from leanml.prune.depgraph import trace_channel_groups
    from leanml.quant.bn_fold import fold_bn
    from leanml.quant.plan import build_plan

    trace_with_shapes(model, input_shape)
    if "prune" in recipe.stages and recipe.prune.method == "channel":
        trace_channel_groups(model, input_shape)
    if "quantize" in recipe.stages:
        build_plan(fold_bn(copy.deepcopy(model).eval()))


def _run_stages(run: _Run) -> CompressResult:
    rec, data, shape = run.recipe, run.data, run.shape
    key = stage_key("input", {"model": fingerprint_model(run.source)}, [fingerprint_data(data)])
    current = run.source
    if "train" in rec.stages:

        def train() -> tuple[nn.Module, dict[str, Any]]:
            m = copy.deepcopy(run.source)
            train_model(m, data, rec.train, rec.seed, run.progress)
            return m, {"note": f"trained {rec.train.epochs} epoch(s)"}

        key, current = run.float_stage("train", f"{rec.train.epochs} epoch(s)", rec.train.to_dict(), [key], train)
    else:
        key, current = run.float_stage(
            "baseline", "the model as given", {}, [key], lambda: (copy.deepcopy(run.source), {})
        )
    run.rows[-1].label = "float baseline"
    baseline, baseline_key = current, key
    calib = calibration_tensor(data.train, min(rec.quantize.calibration_images, 64), seed=rec.seed + 1)
    reference = _int8_reference(run, baseline, baseline_key)
    budget = Budget.resolve(rec.targets, reference)
    misses: list[str] = []

    if "prune" in rec.stages:
        choice = None
        ratio = rec.prune.ratio
        if rec.prune.method == "channel" and ratio is None and rec.prune.target_macs is None:
            if not rec.targets.structural():
                raise LeanmlError(
                    "the prune stage has no amount and the recipe no flash/SRAM/latency target",
                    "set prune.ratio or prune.target_macs, or add targets",
                )
            choice = choose_ratio(baseline, budget, rec.prune, rec.deploy, calib, run.progress)
            ratio, misses = choice.ratio, choice.misses
        chosen_ratio = ratio

        def prune() -> tuple[nn.Module, dict[str, Any]]:
            m = copy.deepcopy(baseline)
            extra = prune_model(m, rec.prune, chosen_ratio, shape, data, rec.seed)
            if choice is not None:
                extra["search"] = [{**c.to_dict(), "chosen": c is choice.chosen} for c in choice.candidates]
                extra["misses"] = choice.misses
            return m, extra

        cfg = {**rec.prune.to_dict(), "chosen_ratio": chosen_ratio, "budget": budget.to_dict()}
        key, current = run.float_stage("prune", prune_label(rec.prune, chosen_ratio), cfg, [key], prune)
        misses = list(run.extra["prune"].get("misses", misses))
    if "finetune" in rec.stages:
        teacher, student = baseline, current

        def tune() -> tuple[nn.Module, dict[str, Any]]:
            m = copy.deepcopy(student)
            fine = "prune" in rec.stages and rec.prune.method == "fine"
            distill_from = teacher if teacher is not student else None
            finetune_model(m, distill_from, data, rec.finetune, rec.seed, run.progress, keep_zeros=fine)
            return m, {"note": "distilled from the float baseline" if rec.finetune.distill else ""}

        key, current = run.float_stage(
            "finetune", f"{rec.finetune.epochs} epoch(s)", rec.finetune.to_dict(), [key, baseline_key], tune
        )
    imodel = None
    if "quantize" in rec.stages:
        imodel, key = _quantize(run, current, key)
    dep_record: dict[str, Any] = {}
    if "deploy" in rec.stages and imodel is not None:
        dep_record, key = _deploy(run, imodel, key)
    if "verify" in rec.stages and imodel is not None:
        _verify(run, imodel, dep_record, key)
    record = _record(run, reference, budget, misses, dep_record)
    out = run.store.root
    if dep_record:
        _publish(run.store.folder("deploy", dep_record["key"]) / "c", out / "c")
        record["c_project"] = str(out / "c")
    text = json.dumps(record, indent=2, sort_keys=True).encode()
    atomic_write(out / "record.json", lambda p: p.write_bytes(text))
    from leanml.compress.report import write_run_report

    report = write_run_report(record, out / "report.html")
    return CompressResult(out, Path(report), record, current, imodel, run.rows)


def _publish(source: Path, target: Path) -> None:
    """Copy the final C project to ``target`` (a temp copy renamed into place)."""
    tmp = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(source, tmp)
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)


def _int8_reference(run: _Run, baseline: nn.Module, baseline_key: str) -> Candidate:
    """The unpruned model as plain int8 (PTQ, layer by layer): the comparison point for the budget fractions."""
    rec = run.recipe

    def fill(folder: Path) -> dict[str, Any]:
        imodel = quantize_model(
            baseline,
            run.data,
            QuantizeStage.from_dict({**rec.quantize.to_dict(), "qat_epochs": 0}),
            rec.seed,
            run.progress,
        )
        dep = deploy(imodel, DeployConfig(input_shape=list(run.shape), in_place=rec.deploy.in_place))
        row = StageRow(
            "int8",
            "unpruned int8 (PTQ)",
            integer_accuracy(imodel, run.test, dep.model.run_int8),
            None,
            dep.graph.macs(),
            dep.graph.weight_bytes(),
            dep.layout.arena_bytes,
            measure_c_latency(dep).median_ms,
        )
        return {"row": row.to_dict()}

    config = {"quantize": rec.quantize.to_dict(), "in_place": rec.deploy.in_place, "timed": True}
    run.stage("int8-reference", "the unpruned model as plain int8", config, [baseline_key], fill)
    row = run.rows.pop()
    run.extra["int8_baseline"] = row
    return Candidate(0.0, row.macs or 0, row.flash_bytes or 0, row.sram_bytes or 0, 0, row.latency_ms)


def _quantize(run: _Run, model: nn.Module, key: str) -> tuple[IntegerModel, str]:
    rec = run.recipe
    made: dict[str, IntegerModel] = {}
    label = "int8 QAT" if rec.quantize.qat_epochs else "int8 PTQ"

    def fill(folder: Path) -> dict[str, Any]:
        imodel = quantize_model(model, run.data, rec.quantize, rec.seed, run.progress)
        imodel.save(folder / "integer_model")
        made["m"] = imodel
        engine = deploy(imodel, DeployConfig(input_shape=list(run.shape), in_place=rec.deploy.in_place))
        row = StageRow(
            "quantize",
            label,
            integer_accuracy(imodel, run.test, engine.model.run_int8),
            None,
            engine.graph.macs(),
            engine.graph.weight_bytes(),
            engine.layout.arena_bytes,
            None,
            note="accuracy: the integer model run by the C engine (bit-exact with the reference: see verify)",
        )
        return {"row": row.to_dict()}

    key, done = run.stage("quantize", label, rec.quantize.to_dict(), [key], fill)
    return made.get("m") or IntegerModel.load(done.folder / "integer_model"), key


def _deploy_config(run: _Run, patch: int) -> DeployConfig:
    d = run.recipe.deploy
    return DeployConfig(input_shape=list(run.shape), prefix=d.prefix, in_place=d.in_place, target=d.target, patch=patch)


def _deploy(run: _Run, imodel: IntegerModel, key: str) -> tuple[dict[str, Any], str]:
    rec = run.recipe

    def fill(folder: Path) -> dict[str, Any]:
        patch, arenas = choose_patch(lower(imodel, run.shape), rec.deploy)
        dep = deploy(imodel, _deploy_config(run, patch))
        export_project(dep, folder / "c")
        latency = measure_c_latency(dep).median_ms
        summary = {k: v for k, v in dep.summary().items() if k != "library"}
        label = f"C, {rec.deploy.target}" + (f", {patch}x{patch} patches" if patch else "")
        row = StageRow(
            "deploy",
            label,
            integer_accuracy(imodel, run.test, dep.model.run_int8),
            None,
            dep.graph.macs(),
            dep.graph.weight_bytes(),
            dep.memory.to_dict()["arena_bytes"],
            latency,
            note="accuracy and latency (batch 1): the generated C",
        )
        search = [{"knob": "patch grid", "value": g, "sram_bytes": a, "chosen": g == patch} for g, a in arenas.items()]
        mcu = mcu_run(dep, imodel, run.data.test.sample(MCU_INPUTS, rec.seed))
        layers = layer_table(dep)
        share = {r["name"]: r["share"] for r in mcu.get("mcu_layers", [])}
        for layer in layers:  # where the C ran on the microcontroller: each layer's share of its instructions
            if layer["name"] in share:
                layer["instruction_share"] = share[layer["name"]]
        return {
            "row": row.to_dict(),
            "patch": patch,
            "summary": summary,
            "memory": memory_timeline(dep),
            "layers": layers,
            "patch_search": search,
            "mcu": mcu,
        }

    key, done = run.stage("deploy", f"C for {rec.deploy.target}", rec.deploy.to_dict(), [key], fill)
    return {**done.record, "key": key}, key


MCU_INPUTS = 2  # test images run under QEMU when the deploy target is a Cortex-M core


def mcu_run(dep: Deployment, imodel: IntegerModel, images: ImageSet) -> dict[str, Any]:
    """The deployed C on its Cortex-M target under QEMU (:func:`leanml.deploy.mcu.run_summary`), when the target
    is one and the tools are installed; else why not (``{"mcu_skipped": ...}``; ``{}`` for the host)."""
    if dep.config.target not in MCU_TARGETS:
        return {}
    missing = tools_missing()
    if missing:
        return {"mcu_skipped": f"not run under QEMU: install `{' && '.join(missing)}` (or `make toolchain`)"}
    x, _ = next(iter(batches(images, MCU_INPUTS)))
    q = imodel.quantize_input(x)  # (N, C, H, W) int8 codes
    return run_summary(dep, np.asarray(q).transpose(0, 2, 3, 1), dep.config.target)


def _verify(run: _Run, imodel: IntegerModel, dep_record: dict[str, Any], key: str) -> None:
    rec = run.recipe
    test = run.data.test.sample(rec.verify.images, rec.seed)

    def fill(folder: Path) -> dict[str, Any]:
        dep: Deployment = deploy(imodel, _deploy_config(run, int(dep_record.get("patch", 0))))
        mismatched, elements, correct = 0, 0, 0
        steps = track(batches(test, 500), -(-len(test) // 500), "verify: C vs the integer reference", run.progress)
        for x, y in steps:
            result = verify(dep, imodel, x)
            mismatched += result.mismatched
            elements += result.elements
            codes = dep.model.run_int8(imodel.quantize_input(x))
            correct += int((np.argmax(codes.reshape(len(y), -1), axis=1) == y.numpy()).sum())
        verdict = "bit-exact" if mismatched == 0 else f"{mismatched} of {elements} output codes differ"
        row = StageRow(
            "verify", f"C vs integer reference on {len(test)} test images", correct / max(len(test), 1), note=verdict
        )
        return {"row": row.to_dict(), "verify": {"images": len(test), "elements": elements, "mismatched": mismatched}}

    _, done = run.stage("verify", "C vs the integer reference", rec.verify.to_dict(), [key], fill)
    run.extra["verify"] = done.record["verify"]
    if done.record["verify"]["mismatched"]:
        raise LeanmlError("the C engine does not match the integer reference", "this is a leanml bug: please report")


def _record(run: _Run, reference: Candidate, budget: Budget, misses: list[str], dep: dict[str, Any]) -> dict[str, Any]:
    from leanml.compress.verdicts import verdicts

    rec = run.recipe
    rows = [r.to_dict() for r in run.rows]
    int8 = run.extra["int8_baseline"]
    search = list(run.extra.get("prune", {}).get("search", [])) + list(dep.get("patch_search", []))
    loads = load_averages()
    return {
        "name": f"{rec.name}: {attach_spec(run.source).name} on {run.data.source}",
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": machine_summary(),
        "load_average": loads[0] if loads else None,
        "recipe": rec.to_dict(),
        "input": run.input_desc,
        "stages": rows,
        "int8_baseline": int8.to_dict(),
        "targets": {k: v for k, v in rec.targets.to_dict().items()},
        "budget": budget.to_dict(),
        "verdicts": verdicts(rows, int8.to_dict(), budget, rec.targets, misses),
        "search": search,
        "layers": [{**layer, "sram_bytes": layer.get("output_bytes")} for layer in dep.get("layers", [])],
        "sensitivity": None,
        "memory": dep.get("memory"),
        "mcu": dep.get("mcu"),
        "verify": run.extra.get("verify"),
        "notes": [f"{r.stage}: {r.note}" for r in run.rows if r.note],
    }
