"""The GPU switches on the CPU: ``precision="fp32"`` (and ``auto`` on a CPU) never autocasts, ``bf16`` does, and
``compile=True`` routes the step through `torch.compile` with the loss of the eager step."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch
from torchwm.wm.config import JEPAConfig
from torchwm.wm.jepa import JEPA
from torchwm.wm.trainer import JEPAAgent, use_bf16

SLOW = os.environ.get("TORCHWM_SLOW_TESTS") == "1"


@pytest.fixture
def cfg(tmp_path: Path) -> JEPAConfig:
    return JEPAConfig.preset(
        "tiny", image_size=32, patch_size=8, num_frames=2, tubelet_size=1, embed_dim=32, num_layers=1, num_heads=4,
        predictor_dim=32, predictor_depth=1, predictor_heads=4, batch_size=2, synthetic_clips=8, max_steps=2,
        warmup_steps=0, progress=False, log_interval=1, device="cpu", output_dir=str(tmp_path / "run"),
    )  # fmt: skip


def autocast_seen(cfg: JEPAConfig, monkeypatch: pytest.MonkeyPatch) -> list[tuple[bool, torch.dtype]]:
    """Train ``cfg``; return (autocast on, its dtype) as every forward saw them, and the dtype of its loss."""
    seen: list[tuple[bool, torch.dtype]] = []
    original = JEPA.forward

    def spy(self: JEPA, clips: torch.Tensor, masks: list, monitor: bool = False):  # type: ignore[no-untyped-def]
        out = original(self, clips, masks, monitor)
        seen.append((torch.is_autocast_enabled("cpu"), torch.get_autocast_dtype("cpu")))
        return out

    monkeypatch.setattr(JEPA, "forward", spy)
    JEPAAgent(cfg).train()
    return seen


@pytest.mark.parametrize("precision", ["fp32", "auto"])
def test_fp32_and_auto_never_autocast_on_a_cpu(
    cfg: JEPAConfig, precision: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dataclasses.replace(cfg, precision=precision)  # type: ignore[arg-type]
    assert not use_bf16(cfg, torch.device("cpu"))
    seen = autocast_seen(cfg, monkeypatch)
    assert len(seen) == cfg.max_steps and not any(on for on, _ in seen)


def test_bf16_autocasts_when_asked(cfg: JEPAConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = dataclasses.replace(cfg, precision="bf16", max_steps=1)
    assert use_bf16(cfg, torch.device("cpu"))
    assert autocast_seen(cfg, monkeypatch) == [(True, torch.bfloat16)]


def train_losses(cfg: JEPAConfig) -> list[float]:
    JEPAAgent(cfg).train()
    text = (Path(cfg.output_dir) / "log.csv").read_text().splitlines()
    column = text[0].split(",").index("loss")
    return [float(line.split(",")[column]) for line in text[1:]]


def test_compile_switch_sends_the_step_through_torch_compile(
    cfg: JEPAConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring, in seconds: torch.compile with dynamo's ``eager`` backend (graph capture, no code generation)."""
    eager = train_losses(dataclasses.replace(cfg, precision="fp32"))
    compiled_with: list[object] = []
    real_compile = torch.compile

    def capture_only(model, **kwargs):  # type: ignore[no-untyped-def]
        compiled_with.append(model)
        return real_compile(model, backend="eager")

    monkeypatch.setattr(torch, "compile", capture_only)
    torch._dynamo.reset()
    compiled = train_losses(
        dataclasses.replace(cfg, precision="fp32", compile=True, output_dir=str(tmp_path / "c"))
    )
    assert len(compiled_with) == 1 and isinstance(compiled_with[0], JEPA)
    assert compiled == pytest.approx(eager, abs=1e-6)


@pytest.mark.skipif(
    not SLOW,
    reason="a cold torch.compile (inductor) of even this one-layer model takes ~2.5 min on the shared 2-core "
    "CPUs (~25 s with a warm inductor cache); run with TORCHWM_SLOW_TESTS=1",
)
def test_inductor_compiled_loss_equals_eager(cfg: JEPAConfig, tmp_path: Path) -> None:
    eager = train_losses(dataclasses.replace(cfg, precision="fp32"))
    torch._dynamo.reset()
    compiled = train_losses(
        dataclasses.replace(cfg, precision="fp32", compile=True, output_dir=str(tmp_path / "c"))
    )
    assert compiled == pytest.approx(eager, abs=1e-5)
