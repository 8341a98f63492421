"""``leanml deploy MODEL --out DIR``: integer model → verified C engine, with flash, SRAM and latency.

Example:
    $ leanml quantize linear runs/vgg --out runs/vgg-int8
    $ leanml deploy runs/vgg-int8 --out runs/vgg-c
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from leanml.cli.options import ConfigOpt, DataOpt, JsonOpt, config_from, default_of, parse_ints
from leanml.deploy.engine import DeployConfig

SHAPE = ",".join(map(str, default_of(DeployConfig, "input_shape")))

app = typer.Typer(add_completion=False)


@app.command("deploy")
def deploy_cmd(
    context: typer.Context,
    model: Annotated[Path, typer.Argument(help="integer model saved by `leanml quantize linear|mixed`")],
    out: Annotated[Path, typer.Option(help="directory for the standalone C project")],
    target: Annotated[
        str, typer.Option(help="host, cortex-m4 or cortex-m7 (sizes from gcc-arm-none-eabi)")
    ] = default_of(DeployConfig, "target"),
    input_shape: Annotated[str, typer.Option(help="C,H,W of one input")] = SHAPE,
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
    verify_images: Annotated[int, typer.Option(help="test images to compare with the integer reference")] = 500,
    force: Annotated[bool, typer.Option(help="replace --out if it exists")] = False,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
    data: DataOpt = None,
) -> None:
    """Generate C (static memory plan, in-place depthwise, fused requantization), compile, verify, report."""
    import numpy as np

    from leanml.data import batches, load_split
    from leanml.deploy.build import target_section_sizes
    from leanml.deploy.engine import deploy, export_project, verify
    from leanml.errors import LeanmlError
    from leanml.profile.timing import measure_latency
    from leanml.quant.integer import IntegerModel

    if out.exists() and not force:
        raise LeanmlError(f"{out} already exists", "pass --force to replace it, or choose another --out")
    flags = {"input_shape": list(parse_ints(input_shape, "input shape")), "prefix": prefix, "in_place": in_place,
             "target": target, "patch": patch, "patch_until": patch_until}  # fmt: skip
    cfg = config_from(context, DeployConfig, config, flags)
    shape, target = tuple(cfg.input_shape), cfg.target
    reference = IntegerModel.load(model)
    dep = deploy(reference, cfg)
    summary = dep.summary()
    summary["target"] = target
    summary.update({f"section_{k}": v for k, v in target_section_sizes(dep.sources, target).items()})
    if verify_images > 0:
        if tuple(shape) != (1, 28, 28):
            x_all = np.random.default_rng(0).standard_normal((verify_images, *shape)).astype(np.float32)
            result = verify(dep, reference, x_all)
        else:
            test = load_split("test", data, verify_images)
            images, labels = next(batches(test, len(test)))
            result = verify(dep, reference, images)
            codes = dep.model.run_int8(reference.quantize_input(images))
            summary["test_accuracy"] = float((codes.argmax(1) == labels.numpy()).mean())
        summary.update(verify_images=result.images, verify_mismatched=result.mismatched, bit_exact=result.identical)
    x1 = np.zeros((1, *shape), dtype=np.float32)
    lat = measure_latency(lambda: dep.model(x1), warmup=10, repeats=100, batch_size=1)
    summary["latency_ms_b1"] = lat.median_ms
    summary["latency"] = lat.to_dict()
    export_project(dep, out, force=force)
    summary["project"] = str(out)
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    flash = summary["section_text"] + summary["section_rodata"] + summary["section_data"]
    print(f"MACs {summary['macs']:,}; weights + quantization constants {summary['weight_bytes'] / 1024:.1f} KiB")
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
    if verify_images > 0:
        verdict = "bit-exact" if summary["bit_exact"] else f"{summary['verify_mismatched']} output codes differ"
        acc = f", test accuracy {summary['test_accuracy']:.2%}" if "test_accuracy" in summary else ""
        print(f"verified on {summary['verify_images']} inputs against the integer reference: {verdict}{acc}")
    print(f"wrote {out} (run `make -C {out}`)")
    if verify_images > 0 and not summary["bit_exact"]:
        raise LeanmlError("the C engine does not match the integer reference", "this is a leanml bug: please report")
