"""What machine a figure was measured on: CPU model, cores, torch and Python versions, and how busy it was.

Example:
    >>> "torch" in machine_summary()
    True
    >>> len(load_averages())
    3
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def cpu_model() -> str:
    """The CPU model name from /proc/cpuinfo (or the platform's word for it)."""
    info = Path("/proc/cpuinfo")
    if info.is_file():
        for line in info.read_text(errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_summary() -> str:
    """One line: CPU, core count, architecture, torch and Python versions."""
    return (
        f"{cpu_model()}, {os.cpu_count()} cores, {platform.machine()}; torch {torch.__version__}; "
        f"Python {platform.python_version()}"
    )


def load_averages() -> tuple[float, float, float]:
    """The 1-, 5- and 15-minute load averages: how busy the machine was while a figure was measured.

    Example:
        >>> all(load >= 0 for load in load_averages())
        True
    """
    return os.getloadavg()
