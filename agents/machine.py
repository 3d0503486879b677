"""What machine a number was measured on: its CPU, the instruction set torch dispatches to, and its fp32 matmul
rate measured in the same process, so that a timing from one machine can be read on another.

The same code runs at different speeds on different CPU kinds and, through other kernels and other rounding,
trains a different model from the same seed on each, so every timed result records these facts beside it.
"""

from __future__ import annotations

import contextlib
import os
import platform
import statistics
import time
from typing import Any

import torch


def matmul_gflop_s(n: int = 1024, repeats: int = 10) -> float:
    """Median fp32 ``n x n`` matmul rate of this process, at its current torch thread setting."""
    a = torch.randn(n, n)
    for _ in range(2):
        a @ a
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / statistics.median(times) / 1e9


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what `platform` knows."""
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:  # Linux; elsewhere the fallback below
        for line in f:
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def machine_facts(threads: int | None = None) -> dict[str, Any]:
    """The CPU, torch's CPU capability (``AVX2``, ``AVX512``, ...), cores, torch version, and the fp32 matmul rate
    at one thread and at ``threads`` (default: torch's current setting), measured now (about a second)."""
    before = torch.get_num_threads()
    threads = threads or before
    rates = {}
    try:
        for t in sorted({1, threads}):
            torch.set_num_threads(t)
            rates[f"matmul_gflop_s_{t}_thread{'s' if t > 1 else ''}"] = round(matmul_gflop_s(repeats=5), 1)
    finally:
        torch.set_num_threads(before)
    return {
        "cpu": cpu_name(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "cores": os.cpu_count(),
        "torch": torch.__version__,
        **rates,
    }
