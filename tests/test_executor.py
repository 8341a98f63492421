import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from leanml.errors import LeanmlError
from leanml.executor import ExecutorConfig, run_tasks, watch_parent


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("backend", ["serial", "local"])
def test_results_come_back_in_task_order(backend):
    assert run_tasks(square, list(range(7)), ExecutorConfig(backend=backend, workers=2), progress=False) == [
        x * x for x in range(7)
    ]


def test_bad_config():
    with pytest.raises(LeanmlError, match="choose one of: serial, local, ray"):
        ExecutorConfig(backend="slurm")
    with pytest.raises(LeanmlError, match="workers must be >= 1"):
        ExecutorConfig(workers=0)


def test_ray_backend_missing_is_a_clear_error():
    try:
        import ray  # noqa: F401
    except ImportError:
        with pytest.raises(LeanmlError, match="leanml\\[distributed\\]"):
            run_tasks(square, [1], ExecutorConfig(backend="ray"), progress=False)
    else:
        assert run_tasks(square, [1, 2], ExecutorConfig(backend="ray"), progress=False) == [1, 4]


PARENT = """
import os, sys, time
from pathlib import Path

from leanml.executor import ExecutorConfig, run_tasks


def sleepy(folder: str) -> None:
    Path(folder, str(os.getpid())).touch()
    time.sleep(60)


if __name__ == "__main__":
    run_tasks(sleepy, [sys.argv[1]] * 4, ExecutorConfig(backend="local", workers=2), progress=False)
"""


def alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie nobody reaped counts as dead)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except FileNotFoundError:
        return False
    return fields[0] != "Z"


def start_parent(tmp_path: Path) -> tuple[subprocess.Popen[str], list[int]]:
    """A parent process running 4 sleeping tasks on 2 local workers, and its workers' PIDs once both started."""
    script = tmp_path / "parent.py"
    script.write_text(PARENT)
    pids = tmp_path / "pids"
    pids.mkdir()
    parent = subprocess.Popen([sys.executable, str(script), str(pids)], stderr=subprocess.PIPE, text=True,
                              start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while len(list(pids.iterdir())) < 2:
        assert parent.poll() is None, "the parent exited early"
        assert time.monotonic() < deadline, "the workers did not start"
        time.sleep(0.1)
    return parent, [int(p.name) for p in pids.iterdir()]


def wait_gone(pids: list[int], seconds: float) -> list[int]:
    """The PIDs still alive after waiting up to ``seconds``."""
    deadline = time.monotonic() + seconds
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.1)
    return [p for p in pids if alive(p)]


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_workers_die_with_a_killed_parent(tmp_path: Path) -> None:
    parent, workers = start_parent(tmp_path)
    parent.kill()  # SIGKILL: the parent cannot clean up
    parent.wait()
    assert wait_gone(workers, 5.0) == []


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc")
def test_ctrl_c_stops_the_pool_promptly(tmp_path: Path) -> None:
    parent, workers = start_parent(tmp_path)
    os.killpg(parent.pid, signal.SIGINT)  # as a terminal's Ctrl-C: to the parent and its workers
    _, err = parent.communicate(timeout=15)  # not after the 2 x 60 s the queued tasks would take
    assert parent.returncode != 0 and err.rstrip().endswith("KeyboardInterrupt"), err
    assert "SpawnProcess" not in err  # the workers left Ctrl-C to the parent
    assert wait_gone(workers, 5.0) == []


def test_watch_parent_calls_back_once_orphaned() -> None:
    calls: list[int] = []
    watch_parent(-1, lambda: calls.append(1), period=0.01)  # -1 is nobody's parent: orphaned at once
    assert calls == [1]


def fail_first(x: int) -> None:
    if x == 0:
        raise ValueError("task 0 failed")
    time.sleep(60)


def test_a_failed_task_stops_the_pool_at_once() -> None:
    start = time.monotonic()
    with pytest.raises(ValueError, match="task 0 failed"):
        run_tasks(fail_first, [0, 1, 2, 3], ExecutorConfig(backend="local", workers=2), progress=False)
    assert time.monotonic() - start < 50  # the sleeping and queued tasks were not waited for (60 s each)
