"""One executor interface for embarrassingly parallel work, with interchangeable backends.

Sensitivity scans, subnet evaluation and evolutionary search map a top-level
function over independent tasks. Backends: ``serial`` (in this process),
``local`` (a process pool on this machine; the default for parallel work) and
``ray`` (connects to ``address`` or starts a local cluster; needs the
``[distributed]`` extra). Results come back in task order whatever the
backend, so runs are reproducible. No home-made cluster code.

The ``local`` pool's workers never outlive the process that started them: on
Linux each worker asks the kernel for SIGKILL when its parent dies
(``prctl(PR_SET_PDEATHSIG)``), and everywhere a watchdog thread exits the
worker once its parent is gone (the parent was killed, even with SIGKILL).
An exception in the parent (Ctrl-C included) cancels the pending tasks and
terminates the workers instead of waiting for them.

Example:
    >>> run_tasks(abs, [-1, 2, -3], ExecutorConfig(backend="serial"), progress=False)
    [1, 2, 3]
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from typing import Any, TypeVar

from leanml.config import Config, require
from leanml.errors import LeanmlError
from leanml.progress import track

T = TypeVar("T")
R = TypeVar("R")
Runner = Callable[[Callable[[Any], Any], Sequence[Any], "ExecutorConfig", bool, str], list[Any]]
BACKENDS: dict[str, Runner] = {}
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
ORPHAN_POLL_SECONDS = 0.5


@dataclass
class ExecutorConfig(Config):
    """Which backend runs the tasks, with how many workers (``local``) or which cluster (``ray``)."""

    backend: str = "local"
    workers: int = 2
    address: str | None = None  # ray: "ray://host:10001", "auto", or None for a local cluster

    def validate(self) -> None:
        require(self.backend in BACKENDS, f"unknown backend {self.backend!r}", f"choose one of: {', '.join(BACKENDS)}")
        require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")


def run_tasks(
    fn: Callable[[T], R],
    tasks: Sequence[T],
    config: ExecutorConfig | None = None,
    progress: bool = True,
    description: str = "tasks",
) -> list[R]:
    """Run ``fn`` on every task; results in task order. ``fn`` must be a module-level function.

    Example:
        >>> run_tasks(len, ["a", "bb"], ExecutorConfig(backend="serial"), progress=False)
        [1, 2]
    """
    cfg = config or ExecutorConfig()
    return BACKENDS[cfg.backend](fn, tasks, cfg, progress, description)


def _serial(
    fn: Callable[[Any], Any], tasks: Sequence[Any], cfg: ExecutorConfig, progress: bool, desc: str
) -> list[Any]:
    return [fn(t) for t in track(tasks, len(tasks), desc, progress)]


def _local(fn: Callable[[Any], Any], tasks: Sequence[Any], cfg: ExecutorConfig, progress: bool, desc: str) -> list[Any]:
    if cfg.workers == 1 or len(tasks) <= 1:
        return _serial(fn, tasks, cfg, progress, desc)
    results: list[Any] = [None] * len(tasks)
    # spawn: torch's thread pools do not survive fork safely
    pool = ProcessPoolExecutor(
        max_workers=cfg.workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=init_worker,
        initargs=(os.getpid(),),
    )
    try:
        futures = {pool.submit(fn, t): i for i, t in enumerate(tasks)}
        for fut in track(as_completed(futures), len(futures), desc, progress):
            results[futures[fut]] = fut.result()
    except BaseException:  # Ctrl-C or a failed task: stop now, do not run what is left
        abandon(pool)
        raise
    pool.shutdown(wait=True)
    return results


def abandon(pool: ProcessPoolExecutor, grace: float = 1.0) -> None:
    """Cancel ``pool``'s pending tasks and terminate its workers without waiting for running tasks.

    Workers get SIGTERM, then SIGKILL if still alive after ``grace`` seconds.

    Example:
        >>> pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))
        >>> abandon(pool)
    """
    workers = list((pool._processes or {}).values())  # the pool has no public handle on its processes
    pool.shutdown(wait=False, cancel_futures=True)
    for worker in workers:
        worker.terminate()
    deadline = time.monotonic() + grace
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            worker.kill()
            worker.join(grace)


def init_worker(parent: int) -> None:
    """Pool initializer: die with ``parent`` (:func:`die_with_parent`) and leave Ctrl-C to it.

    A terminal's Ctrl-C reaches every process of the foreground group; the parent alone handles it, cancelling
    the tasks and terminating the workers (no traceback from each worker).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    die_with_parent(parent)


def die_with_parent(parent: int) -> None:
    """Pool initializer: end this worker process when ``parent`` (the pool's owner) dies, however it dies.

    On Linux the kernel sends SIGKILL (``PR_SET_PDEATHSIG``); on every system a daemon thread polls
    ``os.getppid()`` and exits once the worker has been re-parented (see :func:`watch_parent`).

    Example:
        >>> pool = ProcessPoolExecutor(1, initializer=die_with_parent, initargs=(os.getpid(),))  # doctest: +SKIP
    """
    if sys.platform == "linux":
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            err = ctypes.get_errno()
            print(f"leanml worker {os.getpid()}: prctl(PR_SET_PDEATHSIG): {os.strerror(err)}", file=sys.stderr)
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    threading.Thread(target=watch_parent, args=(parent, lambda: os._exit(1)), daemon=True).start()


def watch_parent(parent: int, on_orphan: Callable[[], None], period: float = ORPHAN_POLL_SECONDS) -> None:
    """Call ``on_orphan`` (once) as soon as this process's parent is no longer ``parent``; poll every ``period`` s.

    Example:
        >>> watch_parent(-1, lambda: print("orphaned"))
        orphaned
    """
    while os.getppid() == parent:
        time.sleep(period)
    on_orphan()


def _ray(fn: Callable[[Any], Any], tasks: Sequence[Any], cfg: ExecutorConfig, progress: bool, desc: str) -> list[Any]:
    try:
        import ray
    except ImportError as e:
        raise LeanmlError("the ray backend needs Ray", "pip install 'leanml[distributed]'") from e
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=cfg.address, include_dashboard=False, log_to_driver=False)
    try:
        remote = ray.remote(fn)
        refs = [remote.remote(t) for t in tasks]
        index = {ref: i for i, ref in enumerate(refs)}
        results: list[Any] = [None] * len(tasks)
        pending = list(refs)

        def finished() -> Any:
            nonlocal pending
            while pending:
                done, pending = ray.wait(pending, num_returns=1)
                yield done[0]

        for ref in track(finished(), len(refs), desc, progress):
            results[index[ref]] = ray.get(ref)
        return results
    finally:
        if started_here:
            ray.shutdown()


BACKENDS.update({"serial": _serial, "local": _local, "ray": _ray})
