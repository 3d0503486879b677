"""What the scale tests share: a tiny pretraining command line and a way to run ``torchwm`` as a real process."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from safetensors.torch import load_file

T = TypeVar("T")

TINY_PRETRAIN = [
    "--preset", "tiny", "--image-size", "32", "--patch-size", "8", "--num-frames", "2", "--tubelet-size", "1",
    "--embed-dim", "32", "--num-layers", "1", "--num-heads", "4",
    "--predictor-dim", "32", "--predictor-depth", "1", "--predictor-heads", "4",
    "--synthetic-clips", "16", "--warmup-steps", "0", "--learning-rate", "1e-3",
    "--num-workers", "0", "--device", "cpu", "--no-progress",
]  # fmt: skip
"""A one-layer, 32-wide JEPA on 32x32 two-frame clips of the built-in synthetic data: a step takes milliseconds."""


def child_env() -> dict[str, str]:
    """The environment of a child ``torchwm`` process: one thread (so its floats match this process's)."""
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def torchwm_command(*args: str) -> list[str]:
    """``python -m torchwm ARGS`` with this interpreter."""
    return [sys.executable, "-m", "torchwm", *args]


def run_torchwm(*args: str, cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``python -m torchwm ARGS`` to the end; the output is kept for the assertion messages."""
    return subprocess.run(
        torchwm_command(*args), cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=timeout
    )


def wait_for(
    condition: Callable[[], T], proc: subprocess.Popen, timeout: float = 120, poll: float = 0.005
) -> T:
    """Poll ``condition`` until it is truthy; fail if ``proc`` ends first or the time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        if proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(
                f"the process ended (code {proc.returncode}) before the condition held:\n{out}"
            )
        time.sleep(poll)
    raise AssertionError(f"condition not met within {timeout} s")


def assert_same_weights(a: Path, b: Path, atol: float) -> None:
    """Two ``model.safetensors`` files hold the same tensor names, each equal within ``atol``."""
    wa, wb = load_file(str(a)), load_file(str(b))
    assert wa.keys() == wb.keys()
    for name in wa:
        err = (wa[name] - wb[name]).abs().max().item()
        assert torch.allclose(wa[name], wb[name], atol=atol, rtol=0), f"{name}: max |diff| {err:.3g}"
