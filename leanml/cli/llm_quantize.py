"""The body of ``leanml llm quantize``: load, calibrate, quantize (RTN or AWQ), write the packed file.

Example:
    $ leanml llm quantize smollm2 --method awq --bits 4 --group-size 128 --out smollm2-awq-w4g128.lmq
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from leanml.errors import LeanmlError
from leanml.progress import make_console

if TYPE_CHECKING:
    from leanml.llm.quant.config import LLMQuantConfig

FLOAT_DTYPES = ("float16", "float32")


@dataclass(frozen=True)
class QuantizeJob:
    """What ``leanml llm quantize`` reads and writes beside the :class:`LLMQuantConfig`: the MODEL argument, the
    packed file ``out`` (replaced only with ``overwrite``, ``--overwrite``), the calibration text (``None``: the
    built-in calibration half), an AWQ ``search`` result to reuse and where to ``save_search``, the dtype of
    unquantized tensors (one of :data:`FLOAT_DTYPES`), progress bars and torch threads.

    Example:
        >>> QuantizeJob("smollm2", Path("m.lmq")).float_dtype
        'float16'
    """

    model: str
    out: Path
    calib_text: Path | None = None
    search: Path | None = None
    save_search: Path | None = None
    float_dtype: str = "float16"
    overwrite: bool = False
    progress: bool = True
    threads: int | None = None


def run_quantize(cfg: LLMQuantConfig, job: QuantizeJob) -> None:
    """Quantize ``job.model`` as ``cfg`` says and write ``job.out``; every argument is checked before the model
    is loaded.

    Example:
        >>> job = QuantizeJob("smollm2", Path("m.lmq"))
        >>> run_quantize(LLMQuantConfig(method="rtn", group_size=64), job)  # doctest: +SKIP
    """
    import torch

    from leanml.cli.llm_load import load_model_arg
    from leanml.cli.options import check_outputs
    from leanml.llm.eval.corpus import BUILTIN, load_text
    from leanml.llm.io.packed_model import save_packed
    from leanml.llm.quant.awq import AWQResult, calibration_blocks
    from leanml.llm.quant.quantize import quantize_llm_
    from leanml.threads import torch_threads

    check_outputs(job.out, job.save_search, overwrite=job.overwrite)
    if job.float_dtype not in FLOAT_DTYPES:
        raise LeanmlError(f"--float-dtype must be float16 or float32, got {job.float_dtype!r}")
    awq = cfg.method == "awq"
    if not awq and (job.search or job.save_search):
        raise LeanmlError("--search and --save-search are AWQ options", "pass --method awq")
    result = AWQResult.load(job.search) if job.search is not None else None
    text = load_text(BUILTIN if job.calib_text is None else str(job.calib_text), "calib") if awq else ""
    console = make_console()
    llm = load_model_arg(job.model, torch.float32, job.progress)
    with torch_threads(job.threads):
        ids = None
        if awq and result is None:
            ids = calibration_blocks(llm.tokenizer.encode(text), cfg.calib_samples, cfg.calib_seq_len)
            console.print(f"AWQ calibration: {ids.shape[0]} blocks of {ids.shape[1]} tokens", highlight=False)
        start = time.perf_counter()
        codes = quantize_llm_(llm.model, cfg, calib_ids=ids, awq_result=result, progress=job.progress)
        seconds = time.perf_counter() - start
    if job.save_search is not None and isinstance(codes.search, AWQResult):
        codes.search.save(job.save_search)
        console.print(f"wrote the AWQ search result to {job.save_search}", highlight=False)
    size = save_packed(job.out, llm, codes, float_dtype=job.float_dtype)
    n = codes.n_quantized
    print(f"{cfg.label}: {len(codes.weights)} linears, {n / 1e6:.1f} M weights quantized in {seconds:.1f} s")
    print(f"wrote {job.out}: {size / 1e6:.1f} MB (linears {codes.payload_bytes() / 1e6:.1f} MB)")
