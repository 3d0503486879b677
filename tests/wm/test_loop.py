"""`TrainingLoop` on a toy task: it minimises, schedules, clips, stops on NaN, logs data waits and late columns,
checkpoints and resumes to the same weights."""

from __future__ import annotations

import csv
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torchwm.wm.checkpoint import latest_checkpoint, list_checkpoints
from torchwm.wm.loop import LoopSettings, TrainingLoop


class Regression:
    """Fit y = 3x with one weight; step i's batch is seeded by i. ``slow_data`` sleeps before each batch."""

    def __init__(self, slow_data: float = 0.0, nan_at: int = -1, accuracy_from: int = 10**9) -> None:
        torch.manual_seed(0)
        self.module = nn.Linear(1, 1, bias=False)
        self.slow_data, self.nan_at, self.accuracy_from = slow_data, nan_at, accuracy_from
        self.updates: list[int] = []

    def batches(self, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
        step = start_step
        while True:
            time.sleep(self.slow_data)
            x = torch.randn(16, 1, generator=torch.Generator().manual_seed(step))
            yield {"x": x, "y": 3 * x}
            step += 1

    def loss(self, batch: dict[str, torch.Tensor], step: int, log_now: bool) -> dict[str, torch.Tensor]:
        mse = (self.module(batch["x"]) - batch["y"]).pow(2).mean()
        return {"total": mse * float("nan") if step == self.nan_at else mse, "mse": mse.detach()}

    def after_update(self, step: int) -> None:
        self.updates.append(step)

    def checkpoint_config(self) -> dict[str, Any]:
        return {"kind": "toy"}

    def check_resume(self, checkpoint: Path) -> None:
        """Every checkpoint of the toy fits it."""

    def extra_logs(self, step: int, log_now: bool) -> dict[str, float]:
        return {"accuracy": 1.0} if step >= self.accuracy_from else {}


def settings(run_dir: Path, **overrides: Any) -> LoopSettings:
    fields: dict[str, Any] = dict(run_dir=run_dir, total_steps=30, learning_rate=0.3, min_learning_rate=0.03,
                                  warmup_steps=2, grad_clip=10.0, log_interval=1, checkpoint_interval=10, progress=False)  # fmt: skip
    return LoopSettings(**{**fields, **overrides})


def rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "log.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_the_loop_minimises_logs_every_step_and_checkpoints(tmp_path: Path) -> None:
    task = Regression(accuracy_from=20)
    result = TrainingLoop(task, torch.optim.SGD(task.module.parameters(), lr=0.1), settings(tmp_path)).run()
    assert result.steps == 30 and task.updates == list(range(30))
    assert task.module.weight.item() == pytest.approx(3.0, abs=0.05)
    logged = rows(tmp_path)
    assert [int(r["step"]) for r in logged] == list(range(1, 31))
    assert float(logged[-1]["loss"]) < 0.01 * float(logged[0]["loss"])
    assert float(logged[0]["lr"]) == pytest.approx(0.15)  # warm-up: step 0 of 2
    assert logged[0]["accuracy"] == "" and logged[-1]["accuracy"] == "1.0"  # a late column widens the file
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000020", "step_00000030"]
    assert 0.0 <= result.data_wait_fraction <= 1.0


def test_time_waiting_for_data_is_measured(tmp_path: Path) -> None:
    task = Regression(slow_data=0.02)
    result = TrainingLoop(task, torch.optim.SGD(task.module.parameters(), lr=0.1), settings(tmp_path, total_steps=10)).run()
    assert result.data_wait_fraction > 0.5  # the toy step takes microseconds, each batch 20 ms
    assert all(float(r["data_wait_fraction"]) > 0.5 for r in rows(tmp_path))


def test_nan_stops_before_the_update_and_names_the_last_checkpoint(tmp_path: Path) -> None:
    task = Regression(nan_at=14)
    loop = TrainingLoop(task, torch.optim.SGD(task.module.parameters(), lr=0.1), settings(tmp_path))
    with pytest.raises(FloatingPointError, match=r"loss is nan at step 14.*step_00000010"):
        loop.run()
    assert task.updates == list(range(14)) and torch.isfinite(task.module.weight).all()


def test_lr_scale_of_a_parameter_group_multiplies_the_schedule(tmp_path: Path) -> None:
    task = Regression()
    opt = torch.optim.SGD([{"params": task.module.parameters(), "lr_scale": 0.5}], lr=0.1)
    loop = TrainingLoop(task, opt, settings(tmp_path, warmup_steps=0, total_steps=1))
    loop.train_step(next(task.batches(0)))
    assert opt.param_groups[0]["lr"] == pytest.approx(0.15)


def test_a_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path: Path) -> None:
    whole = Regression()
    TrainingLoop(whole, torch.optim.SGD(whole.module.parameters(), lr=0.1), settings(tmp_path / "a")).run()
    part = Regression()
    TrainingLoop(part, torch.optim.SGD(part.module.parameters(), lr=0.1), settings(tmp_path / "b", total_steps=30,
                 checkpoint_interval=10)).run()  # fmt: skip
    # kill after step 20: drop the last checkpoint, then run again from step 20
    last = latest_checkpoint(tmp_path / "b")
    assert last is not None
    import shutil

    shutil.rmtree(last)
    again = Regression()
    result = TrainingLoop(again, torch.optim.SGD(again.module.parameters(), lr=0.1), settings(tmp_path / "b")).run()
    assert result.resumed_from == 20 and again.updates == list(range(20, 30))
    assert torch.equal(again.module.weight, whole.module.weight)
