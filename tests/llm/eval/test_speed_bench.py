"""The prefill/decode speed bench on a tiny packed Llama: both engines, the timing module's throughput figures."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("transformers")

from leanml.errors import LeanmlError
from leanml.llm.eval.speed_bench import bench_speed
from leanml.profile.timing import Throughput
from tests.llm.runtime.test_decoder import make_packed


@pytest.fixture(scope="module")
def packed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_packed(tmp_path_factory.mktemp("bench") / "tiny.lmq")


@pytest.mark.parametrize("engine", ["c", "torch"])
def test_both_engines_report_per_repeat_tokens_per_second(packed: Path, engine: str) -> None:
    r = bench_speed(packed, engine=engine, threads=1, prompt_tokens=12, gen_tokens=5, repeats=3)
    assert isinstance(r.prefill, Throughput) and isinstance(r.decode, Throughput)
    for phase in (r.prefill, r.decode):
        assert len(phase.runs) == 3 and phase.low <= phase.median <= phase.high and phase.low > 0
    assert r.engine == engine and r.file_bytes == packed.stat().st_size and r.weight_bytes_per_token > 0
    assert r.head == ("int8" if engine == "c" else "float32")
    d = r.to_dict()
    assert set(d["decode"]) == {"median", "low", "high", "runs"}
    assert "prefill (12 tokens):" in r.summary() and "tok/s (min" in r.summary()


def test_refusals(packed: Path, tmp_path: Path) -> None:
    with pytest.raises(LeanmlError, match="unknown engine"):
        bench_speed(packed, engine="tpu")
    with pytest.raises(LeanmlError, match="repeats must be an integer >= 1"):
        bench_speed(packed, repeats=0)
    other = tmp_path / "x.lmq"
    other.write_bytes(b"not packed")
    with pytest.raises(LeanmlError, match="not a packed model file"):
        bench_speed(other)
