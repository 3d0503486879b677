"""The trainer: the loss falls, a resumed run ends with the weights of an uninterrupted one, a NaN stops
the run and leaves the last checkpoint intact, and checkpoints refuse what does not match or is unsafe."""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file
from torchwm.wm.checkpoint import (
    STATE_FILE,
    WEIGHTS_FILE,
    latest_checkpoint,
    list_checkpoints,
    load_trainer_state,
    save_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.jepa import JEPA
from torchwm.wm.loop import LoopSettings
from torchwm.wm.trainer import JEPAAgent, JEPATask


def losses(run_dir: str | Path) -> dict[int, float]:
    with open(Path(run_dir) / "log.csv", newline="") as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


def weights_of(ckpt: Path) -> dict[str, torch.Tensor]:
    return load_file(str(ckpt / WEIGHTS_FILE))


@pytest.fixture
def trained(tiny_cfg: JEPAConfig) -> JEPAConfig:
    """A finished one-step run (its config; the run is in ``output_dir``)."""
    cfg = dataclasses.replace(tiny_cfg, max_steps=1)
    JEPAAgent(cfg).train()
    return cfg


def test_loss_falls_on_moving_shapes(tiny_cfg: JEPAConfig) -> None:
    cfg = dataclasses.replace(tiny_cfg, max_steps=40, epochs=10, checkpoint_interval=1000)
    summary = JEPAAgent(cfg).train()
    assert summary.steps == 40
    logged = list(losses(cfg.output_dir).values())
    assert len(logged) == 40 and all(np.isfinite(logged))
    first, last = np.mean(logged[:5]), np.mean(logged[-5:])
    assert last < 0.85 * first, (first, last)
    assert summary.final_loss == pytest.approx(logged[-1])
    assert set(summary.monitor) == {"embed_std_mean", "embed_std_min", "effective_rank"}
    run = Path(cfg.output_dir)
    assert json.loads((run / "summary.json").read_text())["steps"] == 40
    assert JEPAConfig.load(run / "config.yaml") == cfg
    assert [p.name for p in list_checkpoints(run)] == ["step_00000040"]


def test_resume_ends_with_the_weights_of_an_uninterrupted_run(
    tiny_cfg: JEPAConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # 16 clips / batch 4 = 4 steps an epoch, 2 epochs: the resumed part crosses an epoch boundary.
    base = dataclasses.replace(
        tiny_cfg, synthetic_clips=16, epochs=2, checkpoint_interval=3, keep_checkpoints=2
    )
    cfg_a = dataclasses.replace(base, output_dir=str(tmp_path / "a"))
    cfg_b = dataclasses.replace(base, output_dir=str(tmp_path / "b"))
    assert JEPAAgent(cfg_a).train().steps == 8

    original = JEPATask.loss

    def interrupted_at_step_5(self: JEPATask, batch: dict, step: int, log_now: bool):  # type: ignore[no-untyped-def]
        if step == 5:  # two steps after checkpoint 3: those two are lost and redone
            raise KeyboardInterrupt
        return original(self, batch, step, log_now)

    monkeypatch.setattr(JEPATask, "loss", interrupted_at_step_5)
    with pytest.raises(KeyboardInterrupt):
        JEPAAgent(cfg_b).train()
    monkeypatch.undo()
    assert latest_checkpoint(cfg_b.output_dir).name == "step_00000003"  # type: ignore[union-attr]

    summary = JEPAAgent(cfg_b).train()
    assert summary.steps == 8
    final_a, final_b = latest_checkpoint(cfg_a.output_dir), latest_checkpoint(cfg_b.output_dir)
    assert final_a.name == final_b.name == "step_00000008"  # type: ignore[union-attr]
    wa, wb = weights_of(final_a), weights_of(final_b)  # type: ignore[arg-type]
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.allclose(wa[name], wb[name], atol=1e-6, rtol=0), name
    assert losses(cfg_b.output_dir) == pytest.approx(losses(cfg_a.output_dir), abs=1e-5)  # one row a step
    assert [p.name for p in list_checkpoints(cfg_a.output_dir)] == ["step_00000006", "step_00000008"]


def test_a_finished_run_is_not_trained_again(trained: JEPAConfig) -> None:
    before = weights_of(latest_checkpoint(trained.output_dir))  # type: ignore[arg-type]
    summary = JEPAAgent(trained).train()
    assert summary.steps == 1
    after = weights_of(latest_checkpoint(trained.output_dir))  # type: ignore[arg-type]
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_nan_loss_stops_and_keeps_the_last_checkpoint(
    tiny_cfg: JEPAConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = dataclasses.replace(tiny_cfg, max_steps=6, checkpoint_interval=2)
    original, calls = JEPA.forward, [0]

    def nan_from_step_3(self: JEPA, clips: torch.Tensor, masks: list, monitor: bool = False):  # type: ignore[no-untyped-def]
        out = original(self, clips, masks, monitor)
        calls[0] += 1
        if calls[0] == 4:  # the fourth step is step 3 (counted from 0)
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(JEPA, "forward", nan_from_step_3)
    agent = JEPAAgent(cfg)
    with pytest.raises(FloatingPointError, match="at step 3") as err:
        agent.train()
    ckpt = latest_checkpoint(cfg.output_dir)
    assert ckpt is not None and ckpt.name == "step_00000002"
    assert str(ckpt) in str(err.value)
    assert all(torch.isfinite(p).all() for p in agent.model.parameters())  # type: ignore[union-attr]  # no update
    monkeypatch.undo()
    loaded = JEPAAgent.from_pretrained(cfg.output_dir)
    assert all(torch.isfinite(p).all() for p in loaded.model.parameters())  # type: ignore[union-attr]
    assert load_trainer_state(ckpt)["step"] == 2  # type: ignore[index]


def test_huge_learning_rate_fails_loudly_not_silently(tiny_cfg: JEPAConfig) -> None:
    cfg = dataclasses.replace(
        tiny_cfg, max_steps=20, epochs=10, learning_rate=1e6, warmup_steps=0, grad_clip=0.0
    )
    try:
        summary = JEPAAgent(cfg).train()
    except FloatingPointError as err:
        assert "at step" in str(err)
    else:  # if it survives, it must have survived with finite numbers
        assert np.isfinite(summary.final_loss)


def test_resume_refuses_a_checkpoint_of_another_shape(trained: JEPAConfig) -> None:
    other = dataclasses.replace(trained, embed_dim=64, max_steps=2)
    with pytest.raises(ValueError, match="embed_dim: the folder has 32, this command asks for 64"):
        JEPAAgent(other).train()
    fresh = dataclasses.replace(other, overwrite="delete")
    assert JEPAAgent(fresh).train().steps == 2  # overwrite starts over


def test_encode_a_batch_of_clips(trained: JEPAConfig) -> None:
    agent = JEPAAgent.from_pretrained(trained.output_dir)
    rng = np.random.default_rng(0)
    batch = rng.integers(0, 256, size=(3, 4, 40, 48, 3), dtype=np.uint8)  # any frame size: the model resizes
    zb = agent.encode(torch.from_numpy(batch))
    # [B, T', K, D]: 4 frames / tubelet 2, (32 / 8)^2 tokens a step, width 32
    assert zb.shape == (3, 2, 16, 32) and zb.dtype == torch.float32
    assert torch.allclose(agent.encode(batch[1:2])[0], zb[1], atol=1e-5)  # a clip alone: as in the batch


@pytest.mark.parametrize(
    ("shape", "match"),
    [
        ((40, 48, 3), "expected uint8 frames"),
        ((4, 40, 48, 3), "add a batch axis"),
        ((1, 4, 40, 48, 1), "expected uint8 frames"),
        ((1, 3, 32, 32, 3), "tubelet_size=2"),
    ],
)
def test_encode_rejects_wrong_shapes(trained: JEPAConfig, shape: tuple[int, ...], match: str) -> None:
    agent = JEPAAgent.from_pretrained(trained.output_dir)
    with pytest.raises(ValueError, match=match):
        agent.encode(np.zeros(shape, dtype=np.uint8))


def test_encode_needs_a_model(tiny_cfg: JEPAConfig) -> None:
    with pytest.raises(RuntimeError, match="from_pretrained"):
        JEPAAgent(tiny_cfg).encode(np.zeros((1, 4, 32, 32, 3), dtype=np.uint8))


def test_from_pretrained_of_a_folder_without_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="neither a checkpoint"):
        JEPAAgent.from_pretrained(tmp_path)


def test_half_written_checkpoints_are_ignored(trained: JEPAConfig) -> None:
    ckpt = latest_checkpoint(trained.output_dir)
    assert ckpt is not None and ckpt.name == "step_00000001"
    shutil.copytree(ckpt, ckpt.parent / ".step_00000009.tmp-123")  # a write killed before its rename
    (ckpt.parent / "step_00000010").mkdir()  # no files at all
    shutil.copy(ckpt / "config.json", ckpt.parent / "step_00000010")
    assert latest_checkpoint(trained.output_dir) == ckpt
    agent = JEPAAgent.from_pretrained(trained.output_dir)
    assert agent.encode(np.zeros((1, 2, 32, 32, 3), np.uint8)).shape == (1, 1, 16, 32)


def test_save_checkpoint_is_atomic_and_replaces_in_place(tmp_path: Path) -> None:
    w = {"x": torch.ones(2)}
    path = save_checkpoint(tmp_path / "checkpoints" / "step_00000001", {"kind": "test"}, w, {"step": 1})
    save_checkpoint(path, {"kind": "test"}, {"x": torch.zeros(2)}, {"step": 1})
    assert sorted(p.name for p in path.parent.iterdir()) == ["step_00000001"]  # no temporary left
    assert torch.equal(load_file(str(path / WEIGHTS_FILE))["x"], torch.zeros(2))


def test_tampered_tensor_shape_is_named(trained: JEPAConfig, tmp_path: Path) -> None:
    ckpt = latest_checkpoint(trained.output_dir)
    bad = tmp_path / "tampered"
    shutil.copytree(ckpt, bad)  # type: ignore[arg-type]
    weights = load_file(str(bad / WEIGHTS_FILE))
    weights["encoder.patch_embed.proj.weight"] = torch.zeros(3, 3)
    save_file(weights, str(bad / WEIGHTS_FILE))
    with pytest.raises(ValueError, match=r"encoder\.patch_embed\.proj\.weight: checkpoint \(3, 3\)"):
        JEPAAgent.from_pretrained(bad)
    del weights["encoder.patch_embed.proj.weight"]
    save_file(weights, str(bad / WEIGHTS_FILE))
    with pytest.raises(ValueError, match=r"missing tensors \['encoder\.patch_embed\.proj\.weight'\]"):
        JEPAAgent.from_pretrained(bad)


class _Exploit:
    """Unpickling this runs a shell command."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.system, (f"touch {self.marker}",))


def test_malicious_trainer_state_is_refused_and_not_run(trained: JEPAConfig, tmp_path: Path) -> None:
    ckpt = latest_checkpoint(trained.output_dir)
    marker = tmp_path / "pwned"
    torch.save({"optimizer": _Exploit(marker), "step": 1}, ckpt / STATE_FILE)  # type: ignore[operator]
    with pytest.raises(ValueError, match="refusing to load"):
        load_trainer_state(ckpt)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="refusing to load"):
        JEPAAgent(trained).train()  # resuming reads the state too
    assert not marker.exists()


def test_lr_schedule_warms_up_then_decays(tiny_cfg: JEPAConfig) -> None:
    cfg = dataclasses.replace(tiny_cfg, learning_rate=1e-3, min_learning_rate=1e-5, warmup_steps=10)
    settings = LoopSettings.of(cfg, 100)  # what the training loop schedules for this config
    lrs = [settings.lr_at(s) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:]))
    assert lrs[-1] == pytest.approx(1e-5, abs=1e-6)
