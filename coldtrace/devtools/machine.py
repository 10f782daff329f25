"""The machine a benchmark ran on, as its report names it: figures are only comparable on
the same CPU model, core count and Python."""

from __future__ import annotations

import os
import platform
from pathlib import Path


def cpu_model() -> str:
    """The CPU's model name (/proc/cpuinfo), else what `platform` knows, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def machine() -> str:
    """One line: architecture, core count, CPU model and Python version, e.g.
    "x86_64, nproc 2, AMD EPYC, Python 3.11.7"."""
    return (
        f"{platform.machine()}, nproc {os.cpu_count()}, {cpu_model()}, "
        f"Python {platform.python_version()}"
    )
