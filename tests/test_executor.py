import pytest

from leanml.errors import LeanmlError
from leanml.executor import ExecutorConfig, run_tasks


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
