"""``leanml deploy MODEL --out DIR``: integer model → verified C engine, with flash, SRAM and latency.

Example:
    $ leanml quantize linear runs/vgg --out runs/vgg-int8
    $ leanml deploy runs/vgg-int8 --out runs/vgg-c
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from leanml.cli.options import (
    ConfigOpt,
    DataOpt,
    JsonOpt,
    OverwriteOpt,
    check_outputs,
    config_from,
    default_of,
    parse_ints,
)
from leanml.deploy.engine import DeployConfig

if TYPE_CHECKING:
    import numpy as np
    import torch

    from leanml.deploy.engine import Deployment
    from leanml.quant.integer import IntegerModel

app = typer.Typer(add_completion=False)

KMEANS_HINT = (
    "deploy takes an integer model: quantize linear (int8) first, `leanml quantize linear CHECKPOINT --out MODEL`"
)


def check_deployable(path: Path) -> None:
    """Refuse artifacts deploy cannot build, by the sidecar's format, with the right reason: k-means models, float
    checkpoints.

    k-means models are a size study: their weights are shared through per-layer codebooks, and the dense int8 C
    engine has no codebook kernels. A float checkpoint must be quantized first.

    Example:
        >>> check_deployable(Path("runs/vgg-km4"))  # doctest: +SKIP
        Traceback (most recent call last):
        leanml.errors.LeanmlError: runs/vgg-km4 is a k-means model (...) (deploy takes an integer model: ...)
    """
    from leanml.artifact import artifact_paths
    from leanml.cli.model_data import artifact_format
    from leanml.errors import LeanmlError

    found = artifact_format(path)
    if found is None or found == "leanml.integer-model":
        return  # IntegerModel.load gives the precise error
    # before the kmeans-model format, k-means saved a float checkpoint (meta "kmeans") with a .codebooks side file
    legacy_kmeans = found == "leanml.checkpoint" and (
        "kmeans" in json.loads(artifact_paths(path)[1].read_text())
        or artifact_paths(Path(f"{path}.codebooks"))[1].exists()
    )
    if found == "leanml.kmeans-model" or legacy_kmeans:
        raise LeanmlError(
            f"{path} is a k-means model (kmeans-model: weights shared through codebooks); the dense int8 C engine has "
            "no codebook kernels, so it cannot be deployed",
            KMEANS_HINT,
        )
    if found == "leanml.checkpoint":
        raise LeanmlError(f"{path} is a float checkpoint, not an integer-model",
                          "quantize it first: `leanml quantize linear CHECKPOINT --out MODEL`")  # fmt: skip


def check_runs_on(reference: IntegerModel, shape: tuple[int, int, int]) -> None:
    """Refuse an input shape the integer model cannot run (e.g. 3 channels into a 1-channel stem), before deploying.

    Example:
        >>> check_runs_on(IntegerModel.load("runs/vgg-int8"), (1, 28, 28))  # doctest: +SKIP
    """
    import torch

    from leanml.errors import LeanmlError

    try:
        reference(torch.zeros(1, *shape))  # (1, C, H, W)
    except (RuntimeError, ValueError) as e:
        raise LeanmlError(f"the integer model cannot run inputs of shape {'x'.join(map(str, shape))}: "
                          f"{str(e).splitlines()[0]}", "pass --input-shape C,H,W matching the model's first "
                          "layer (e.g. 1,28,28 for a one-channel model)") from e  # fmt: skip


def verification_inputs(reference: IntegerModel, shape: tuple[int, int, int], count: int, data: Path | None
                        ) -> tuple[torch.Tensor, torch.Tensor | None, str]:  # fmt: skip
    """(float inputs (N, C, H, W), labels (N,) or None, what they are): the model's own test split when its input
    block names a dataset (loaded from ``data`` for Fashion-MNIST), else seeded random data."""
    import numpy as np
    import torch

    from leanml.cli.model_data import dataset_of, model_batch, model_data

    block = reference.input
    spec = dataset_of(block)
    if spec is not None:
        test = model_data(block, data, limit=None).test.sample(count)
        x, y = model_batch(test, block)
        if tuple(x.shape[1:]) == tuple(shape):
            return x, y, f"{len(y)} {spec} test images"
    noise = torch.from_numpy(np.random.default_rng(0).standard_normal((count, *shape)).astype(np.float32))
    why = "the model names no dataset" if spec is None else f"{spec} images do not have the model's shape"
    return noise, None, f"{count} random inputs ({why})"


RUN_INPUTS = 4  # inputs run under QEMU by --run: the first verification inputs (seeded)


def check_run_target(run: bool, target: str) -> None:
    """Refuse ``--run`` without a Cortex-M target, and without the cross compiler or QEMU (naming the install).

    Example:
        >>> check_run_target(True, "host")  # doctest: +SKIP
        Traceback (most recent call last):
        leanml.errors.LeanmlError: --run runs the C on an emulated Cortex-M, target host has none (...)
    """
    from leanml.deploy.mcu import MCU_TARGETS, tools_missing
    from leanml.errors import LeanmlError

    if not run:
        return
    if target not in MCU_TARGETS:
        raise LeanmlError(f"--run runs the C on an emulated Cortex-M, target {target} has none",
                          f"pass --target {' or --target '.join(MCU_TARGETS)} with --run")  # fmt: skip
    missing = tools_missing()
    if missing:
        raise LeanmlError("--run needs the Cortex-M cross compiler and QEMU",
                          f"install them: `{' && '.join(missing)}` (or `make toolchain` as root)")  # fmt: skip


def print_run(summary: dict[str, Any]) -> None:
    """The ``--run`` lines: instructions per inference, flash, SRAM (arena + stack), bit-exactness."""
    counts = summary["mcu_instructions"]
    spread = f"{min(counts):,}" if min(counts) == max(counts) else f"{min(counts):,} to {max(counts):,}"
    print(
        f"{summary['target']} under QEMU ({summary['mcu_board']}, -icount shift=0; {summary['mcu_flags']}): "
        f"{spread} instructions per inference ({summary['mcu_inputs']} inputs; timer ticks x 40, run_q only)"
    )
    print(
        f"  flash {summary['mcu_flash_bytes']:,} B (ELF text + data without the inputs: newlib/rdimon and the "
        f"printf harness included; the model object {summary['mcu_model_flash_bytes']:,} B); "
        f"peak SRAM {summary['mcu_peak_sram_bytes']:,} B = arena {summary['arena_bytes']:,} B + stack "
        f"{summary['mcu_stack_bytes']:,} B (static .data + .bss of the model {summary['mcu_static_sram_bytes']:,} B)"
    )
    verdict = ("equals the host build bit for bit" if summary["mcu_bit_exact"]
               else f"differs from the host build in {summary['mcu_mismatched']} output codes")  # fmt: skip
    by_kind: dict[str, float] = {}
    for row in summary["mcu_layers"]:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0.0) + row["share"]
    split = ", ".join(f"{k} {v:.1%}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v >= 0.001)
    print(f"  instructions by layer kind (first input, instrumented build): {split}")
    print(f"  output on {summary['mcu_inputs']} inputs {verdict}")


TFLITE_VERIFY_MAX = 100  # TFLite Micro's reference kernels are slow: at most this many inputs are compared


def is_tflite(path: Path) -> bool:
    """True for a ``.tflite`` flatbuffer: by suffix, or by its ``TFL3`` file identifier.

    Example:
        >>> is_tflite(Path("model.tflite")), is_tflite(Path("runs/vgg-int8"))
        (True, False)
    """
    if path.suffix.lower() == ".tflite":
        return True
    if not path.is_file():
        return False
    with path.open("rb") as f:
        return f.read(8)[4:8] == b"TFL3"


def verify_tflite(path: Path, dep: Deployment, q_nchw: np.ndarray) -> dict[str, Any]:
    """Compare the C engine with the pip TFLite Micro interpreter (reference kernels) on int8 inputs (N, C, H, W).

    Without ``tflite-micro`` the summary says the model was not verified and how to install the oracle.

    Example:
        >>> verify_tflite(Path("kws.tflite"), dep, q)["bit_exact"]  # doctest: +SKIP
        True
    """
    import numpy as np

    try:
        import tflite_micro
    except ImportError:
        return {"verify_images": 0, "bit_exact": None, "verify_oracle": "TFLite Micro",
                "verify_data": "nothing: the oracle is missing (`pip install 'leanml[tflite]'`)"}  # fmt: skip
    interpreter = tflite_micro.runtime.Interpreter.from_file(str(path), arena_size=64 << 20)
    details = interpreter.get_input_details(0)
    shape, shift = tuple(details["shape"]), 128 if details["dtype"] == np.uint8 else 0  # uint8 ends: codes + 128
    uint8_out = interpreter.get_output_details(0)["dtype"] == np.uint8
    want = []
    for x in np.asarray(q_nchw).transpose(0, 2, 3, 1):  # NHWC codes, as the interpreter takes them
        interpreter.set_input((x.astype(np.int64) + shift).astype(details["dtype"]).reshape(shape), 0)
        interpreter.invoke()
        out = np.asarray(interpreter.get_output(0)).reshape(-1).astype(np.int64)
        want.append(out - 128 if uint8_out else out)
    got = dep.model.run_int8(q_nchw)
    mismatched = int((got != np.stack(want)).sum())
    return {"verify_images": len(q_nchw), "verify_mismatched": mismatched, "bit_exact": mismatched == 0,
            "verify_oracle": "TFLite Micro (pip tflite-micro, reference kernels)",
            "verify_data": f"{len(q_nchw)} seeded random int8 inputs"}  # fmt: skip


def deploy_tflite(path: Path, cfg: DeployConfig, verify_count: int) -> tuple[Deployment, dict[str, Any], np.ndarray]:
    """(deployment, verification summary, seeded int8 inputs (N, C, H, W)) for a ``.tflite`` model.

    Example:
        >>> dep, checked, q = deploy_tflite(Path("kws.tflite"), DeployConfig(), 8)  # doctest: +SKIP
    """
    import numpy as np

    from leanml.deploy.engine import deploy_graph
    from leanml.deploy.tflite import load_tflite
    from leanml.errors import LeanmlError

    if cfg.input_shape is not None:
        raise LeanmlError("--input-shape does not apply to a .tflite model", "its input shape is fixed in the file")
    dep = deploy_graph(load_tflite(path), cfg)
    h, w, c = dep.graph.input_shape
    n = min(verify_count, TFLITE_VERIFY_MAX)
    q = np.random.default_rng(0).integers(-128, 128, size=(max(n, RUN_INPUTS), c, h, w))  # int8 codes, NCHW
    return dep, (verify_tflite(path, dep, q[:n]) if n > 0 else {}), q


@app.command("deploy")
def deploy_cmd(
    context: typer.Context,
    model: Annotated[
        Path, typer.Argument(help="integer model saved by `leanml quantize linear|mixed`, or an int8 .tflite file")
    ],
    out: Annotated[Path, typer.Option(help="directory for the standalone C project")],
    target: Annotated[
        str, typer.Option(help="host, cortex-m4 or cortex-m7 (sizes from gcc-arm-none-eabi)")
    ] = default_of(DeployConfig, "target"),
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W of one input (default: the shape stored in the model)")
    ] = None,
    prefix: Annotated[str, typer.Option(help="C name prefix of the generated API")] = default_of(
        DeployConfig, "prefix"
    ),
    in_place: Annotated[
        bool, typer.Option(help="run depthwise convs in place when their input dies there")
    ] = default_of(DeployConfig, "in_place"),
    patch: Annotated[
        int, typer.Option(help="run the first stage in N x N patches to cut peak SRAM (0 = off)")
    ] = default_of(DeployConfig, "patch"),
    patch_until: Annotated[
        str | None, typer.Option(help="tensor that ends the patch stage (default: best)")
    ] = default_of(DeployConfig, "patch_until"),
    threads: Annotated[
        int, typer.Option(help="host: split every layer over N threads (bit-exact with 1)")
    ] = default_of(DeployConfig, "threads"),
    verify_images: Annotated[int, typer.Option(help="test images to compare with the integer reference")] = 500,
    run: Annotated[
        bool, typer.Option(help="run on the emulated Cortex-M target (qemu-system-arm): instructions, flash, SRAM")
    ] = False,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
) -> None:
    """Generate C (static memory plan, in-place depthwise, fused requantization), compile, verify, report."""
    import numpy as np

    from leanml.deploy.build import target_section_sizes
    from leanml.deploy.engine import deploy, export_project, measure_c_latency, resolve_input_shape, verify
    from leanml.deploy.mcu import run_summary
    from leanml.errors import LeanmlError
    from leanml.quant.integer import IntegerModel

    check_outputs(out, overwrite=overwrite)
    shape_flag = list(parse_ints(input_shape, "input shape")) if input_shape is not None else None
    flags = {"input_shape": shape_flag, "prefix": prefix, "in_place": in_place,
             "target": target, "patch": patch, "patch_until": patch_until, "threads": threads}  # fmt: skip
    cfg = config_from(context, DeployConfig, config, flags)
    target = cfg.target
    check_run_target(run, target)
    checked: dict[str, Any] = {}
    if is_tflite(model):
        dep, checked, run_q = deploy_tflite(model, cfg, verify_images)
    else:
        check_deployable(model)
        reference = IntegerModel.load(model)
        check_runs_on(reference, resolve_input_shape(reference, cfg))
        dep = deploy(reference, cfg)
        if verify_images > 0:
            images, labels, what = verification_inputs(reference, dep.input_shape, verify_images, data)
            result = verify(dep, reference, images)
            if labels is not None:
                codes = dep.model.run_int8(reference.quantize_input(images))
                checked["test_accuracy"] = float((codes.argmax(1) == labels.numpy()).mean())
            checked.update(verify_images=result.images, verify_mismatched=result.mismatched,
                           bit_exact=result.identical, verify_data=what,
                           verify_oracle="the integer reference")  # fmt: skip
        run_q = None
        if run:
            seeded = images if verify_images > 0 else verification_inputs(reference, dep.input_shape, RUN_INPUTS,
                                                                          data)[0]  # fmt: skip
            run_q = reference.quantize_input(seeded[:RUN_INPUTS])
    shape = dep.input_shape
    summary = dep.summary()
    summary["target"] = target
    summary.update({f"section_{k}": v for k, v in target_section_sizes(dep.sources, target).items()})
    summary.update(checked)
    if run and run_q is not None:
        summary.update(run_summary(dep, np.asarray(run_q[:RUN_INPUTS]).transpose(0, 2, 3, 1), target))
    lat = measure_c_latency(dep, repeats=100, warmup=10)
    summary["latency_ms_b1"] = lat.median_ms
    summary["latency"] = lat.to_dict()
    export_project(dep, out, overwrite=overwrite)
    summary["project"] = str(out)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    flash = summary["section_text"] + summary["section_rodata"] + summary["section_data"]
    print(f"input {'x'.join(map(str, shape))}; MACs {summary['macs']:,}; weights + quantization constants "
          f"{summary['weight_bytes'] / 1024:.1f} KiB")  # fmt: skip
    if "flash_note" in summary:
        print(f"note: {summary['flash_note']}")
    static_sram = summary["section_data"] + summary["section_bss"]
    print(f"{target}: flash {flash / 1024:.1f} KiB (.text {summary['section_text']:,} B, .rodata "
          f"{summary['section_rodata']:,} B, .data {summary['section_data']:,} B); "
          f"static SRAM {static_sram / 1024:.1f} KiB (.data + .bss, the arena included)")  # fmt: skip
    print(f"peak SRAM (arena) {summary['arena_bytes'] / 1024:.1f} KiB; TFLite-Micro-style plan "
          f"{summary['tflm_bytes'] / 1024:.1f} KiB; no planning {summary['naive_bytes'] / 1024:.1f} KiB; "
          f"lower bound {summary['lower_bound_bytes'] / 1024:.1f} KiB")  # fmt: skip
    if "patch_grid" in summary:
        print(f"patch-based first stage: {summary['patch_grid']}x{summary['patch_grid']} patches up to "
              f"{summary['patch_stage_end']} ({summary['patch_stage_ops']} ops), patch arena "
              f"{summary['patch_arena_bytes'] / 1024:.1f} KiB, extra MACs {summary['patch_extra_macs']:,} "
              f"(+{summary['patch_extra_macs_pct']}%)")  # fmt: skip
    print(f"latency b=1 on this host: {lat}")
    if "bit_exact" in summary:
        verdict = ("not verified" if summary["bit_exact"] is None else "bit-exact" if summary["bit_exact"]
                   else f"{summary['verify_mismatched']} output codes differ")  # fmt: skip
        acc = f", test accuracy {summary['test_accuracy']:.2%}" if "test_accuracy" in summary else ""
        print(f"verified on {summary['verify_data']} against {summary['verify_oracle']}: {verdict}{acc}")
    if run:
        print_run(summary)
    print(f"wrote {out} (run `make -C {out}`)")
    if summary.get("bit_exact") is False:
        raise LeanmlError(f"the C engine does not match {summary['verify_oracle']}",
                          "this is a leanml bug: please report")  # fmt: skip
    if run and not summary["mcu_bit_exact"]:
        raise LeanmlError(f"the {target} build under QEMU does not match the host build",
                          "this is a leanml bug: please report")  # fmt: skip
