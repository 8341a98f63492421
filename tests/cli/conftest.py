"""Fixtures the CLI tests share with the packages they drive."""

from tests.nas.conftest import tiny_supernet  # noqa: F401  (a trained tiny supernet, for tests/cli/test_nas.py)
