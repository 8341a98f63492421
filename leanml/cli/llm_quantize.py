"""The body of ``leanml llm quantize``: load, calibrate, quantize (RTN or AWQ), write the packed file.

Example:
    $ leanml llm quantize smollm2 --method awq --bits 4 --group-size 128 --out smollm2-awq-w4g128.lmq
"""

from __future__ import annotations

import time
from pathlib import Path

from leanml.errors import LeanmlError
from leanml.progress import make_console


def run_quantize(
    model: str,
    out: Path,
    method: str,
    bits: int,
    group_size: int,
    calib_text: Path | None,
    calib_samples: int,
    calib_seq_len: int,
    duo_scaling: bool,
    clip: bool,
    search: Path | None,
    save_search: Path | None,
    float_dtype: str,
    force: bool,
    progress: bool,
    threads: int | None,
) -> None:
    """Quantize ``model`` and write ``out``; every argument is checked before the model is loaded.

    Example:
        >>> run_quantize("smollm2", Path("m.lmq"), "rtn", 4, 64, None, 128, 512, False, True, None, None,
        ...              "float16", False, False, None)  # doctest: +SKIP
    """
    import torch

    from leanml.cli.llm_load import load_model_arg
    from leanml.llm.eval.corpus import BUILTIN, load_text
    from leanml.llm.io.packed_model import save_packed
    from leanml.llm.quant.awq import AWQResult, calibration_blocks
    from leanml.llm.quant.config import LLMQuantConfig
    from leanml.llm.quant.quantize import quantize_llm_
    from leanml.threads import torch_threads

    cfg = LLMQuantConfig(method=method, bits=bits, group_size=group_size, calib_samples=calib_samples,
                         calib_seq_len=calib_seq_len, duo_scaling=duo_scaling, clip=clip)  # fmt: skip
    if out.exists() and not force:
        raise LeanmlError(f"{out} exists", "pass --force to overwrite it, or choose another --out")
    if float_dtype not in ("float16", "float32"):
        raise LeanmlError(f"--float-dtype must be float16 or float32, got {float_dtype!r}")
    if method != "awq" and (search or save_search):
        raise LeanmlError("--search and --save-search are AWQ options", "pass --method awq")
    result = AWQResult.load(search) if search is not None else None
    text = load_text(BUILTIN if calib_text is None else str(calib_text), "calib") if method == "awq" else ""
    console = make_console()
    llm = load_model_arg(model, torch.float32, progress)
    with torch_threads(threads):
        ids = None
        if method == "awq" and result is None:
            ids = calibration_blocks(llm.tokenizer.encode(text), cfg.calib_samples, cfg.calib_seq_len)
            console.print(f"AWQ calibration: {ids.shape[0]} blocks of {ids.shape[1]} tokens", highlight=False)
        start = time.perf_counter()
        codes = quantize_llm_(llm.model, cfg, calib_ids=ids, awq_result=result, progress=progress)
        seconds = time.perf_counter() - start
    if save_search is not None and isinstance(codes.search, AWQResult):
        codes.search.save(save_search)
        console.print(f"wrote the AWQ search result to {save_search}", highlight=False)
    size = save_packed(out, llm, codes, float_dtype=float_dtype)
    n = codes.n_quantized
    print(f"{cfg.label}: {len(codes.weights)} linears, {n / 1e6:.1f} M weights quantized in {seconds:.1f} s")
    print(f"wrote {out}: {size / 1e6:.1f} MB (linears {codes.payload_bytes() / 1e6:.1f} MB)")
