"""A checkpoint write killed midway leaves the previous checkpoint loadable and intact."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import torch

from leanml.artifact import atomic_write
from leanml.models import build_model
from leanml.train import load_checkpoint, save_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _child(code: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, stderr=subprocess.PIPE)


def _same_weights(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_sigkill_while_saving_over_a_checkpoint_keeps_the_old_one(tmp_path):
    old = build_model("vgg", layers=[8, "M"]).eval()
    save_checkpoint(tmp_path / "ckpt", old, {"epoch": 1})
    # the child overwrites it with a ~75 MB checkpoint; it is killed as soon as its temporary file appears
    child = _child(f"""
        from leanml.models import build_model
        from leanml.train import save_checkpoint
        save_checkpoint({str(tmp_path / "ckpt")!r}, build_model("vgg", layers=[1024, 1024, 1024, "M"]), {{"epoch": 2}})
    """)
    deadline = time.monotonic() + 120
    while not list(tmp_path.glob(".ckpt.safetensors.*.tmp")):
        assert child.poll() is None, f"the child finished before it was killed: {child.stderr and child.stderr.read()}"
        assert time.monotonic() < deadline, "the child never started writing"
        time.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.returncode == -signal.SIGKILL
    ckpt = load_checkpoint(tmp_path / "ckpt")
    assert ckpt.meta["epoch"] == 1 and _same_weights(ckpt.model, old)


def test_process_exit_inside_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "f.json"
    target.write_text('{"ok": true}')
    child = _child(f"""
        import os
        from leanml.artifact import atomic_write

        def write(tmp):
            with open(tmp, "w") as f:
                f.write('{{"half": ')
                f.flush()
                os._exit(3)

        atomic_write({str(target)!r}, write)
    """)
    child.wait()
    assert child.returncode == 3
    assert target.read_text() == '{"ok": true}'
    atomic_write(target, lambda tmp: tmp.write_text("new"))  # the leftover temporary file does not get in the way
    assert target.read_text() == "new"
