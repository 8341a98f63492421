"""The host multi-thread mode: every layer split over 2 (or 3) threads gives the same output codes as one thread,
the exported project builds with -pthread, and ThreadSanitizer finds no race in the pool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

from leanml.deploy.engine import DeployConfig, deploy, export_project
from leanml.errors import LeanmlError
from leanml.models import build_model
from tests.deploy.test_engine import integer_model


@pytest.mark.parametrize(("name", "threads"), [("mobilenetv2", 2), ("resnet", 2), ("vgg", 3)])
def test_threads_are_bit_exact_with_one_thread(name: str, threads: int) -> None:
    torch.manual_seed(0)
    imodel = integer_model(build_model(name))
    one, many = deploy(imodel, DeployConfig()), deploy(imodel, DeployConfig(threads=threads))
    assert "dk_pool_run(" in many.sources["leanml_model.c"]
    q = np.random.default_rng(1).integers(-128, 128, size=(5, 1, 28, 28))
    assert np.array_equal(one.model.run_int8(q), many.model.run_int8(q))
    x = torch.randn(3, 1, 28, 28)
    assert torch.equal(one.model(x), many.model(x))


def test_threads_need_the_host_target() -> None:
    with pytest.raises(LeanmlError, match="host target"):
        DeployConfig(threads=2, target="cortex-m4")
    with pytest.raises(LeanmlError, match="threads must be"):
        DeployConfig(threads=0)


@pytest.mark.skipif(shutil.which("gcc") is None, reason="gcc is not installed")
def test_pool_is_clean_under_thread_sanitizer(tmp_path: Path) -> None:
    torch.manual_seed(0)
    dep = deploy(integer_model(build_model("mobilenetv2")), DeployConfig(threads=2))
    out = export_project(dep, tmp_path / "tsan")
    flags = "-std=c99 -O1 -g -Wall -Wextra -Werror -pthread -fsanitize=thread"
    proc = subprocess.run(["make", "-s", "run", f"CFLAGS={flags}", "CC=gcc"], cwd=out, capture_output=True,
                          text=True, timeout=300)  # fmt: skip
    if "cannot find" in proc.stderr and "tsan" in proc.stderr:
        pytest.skip("gcc has no ThreadSanitizer runtime here")
    assert proc.returncode == 0 and "ThreadSanitizer" not in proc.stderr, proc.stderr[-3000:]
    assert len(proc.stdout.strip().splitlines()) == 10
