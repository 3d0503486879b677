"""``benchmarks/gpu_pretrain.py`` off the GPU: ``--dry-run`` runs a tiny step on the CPU and prints the table
without writing results; without ``--dry-run`` and without CUDA it measures nothing and exits 0."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_pretrain.py"


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("gpu_pretrain", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_prints_the_table_and_writes_nothing(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu_pretrain.json"
    assert bench.main(["--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "clips/s" in printed and "MFU" in printed
    assert "dry-run    fp32  eager" in printed  # one measured row
    assert not out.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the real benchmark would run")
def test_without_cuda_nothing_is_measured(
    bench: ModuleType, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "gpu_pretrain.json"
    assert bench.main(["--out", str(out)]) == 0
    assert "no CUDA device" in capsys.readouterr().out
    assert not out.exists()


def test_peak_comes_from_the_device_name_or_the_option(bench: ModuleType) -> None:
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", None) == (989.0, "data sheet (H100)")
    assert bench.peak_tflops("NVIDIA H200", None)[0] == 989.0
    assert bench.peak_tflops("NVIDIA A100-SXM4-80GB", None)[0] == 312.0
    assert bench.peak_tflops("NVIDIA H100 80GB HBM3", 756.0) == (756.0, "--peak-tflops")
    assert bench.peak_tflops("Some GPU", None)[0] is None


def test_settings_put_eager_first_then_compiled_bf16(bench: ModuleType) -> None:
    plan = bench.settings(["reference", "vit-b-224"])
    assert len(plan) == 8 and len(set(plan)) == 8
    assert [compiled for _, _, compiled in plan] == [False] * 4 + [True] * 4
    assert [p for _, p, _ in plan[4:6]] == ["bf16", "bf16"]
