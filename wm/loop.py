"""`TrainingLoop`: the one optimisation loop of torchwm, shared by the JEPA, world-model and fine-tuning trainers.

A trainer supplies its step as a `TrainingTask` (its batches, its loss, what happens after an update, what its
checkpoint says); the loop owns everything around it, once:

- the learning rate (linear warm-up, cosine decay; a parameter group's ``lr_scale`` multiplies it),
- the NaN/inf stop (before the update, naming the step and the last good checkpoint),
- gradient-norm clipping,
- the tqdm bar, the CSV log and TensorBoard (`RunLog`), with throughput and the time spent waiting for data,
- atomic checkpoints every ``checkpoint_interval`` steps and at the end, pruning to ``keep_checkpoints``,
- resume from the newest checkpoint (weights, optimizer, step),
- under DistributedDataParallel: logged values averaged over the ranks, rank 0 alone logs and saves.

Batches and random draws are functions of (seed, step) in every task, so a resumed run repeats the steps an
uninterrupted one takes.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.distributed as dist
from torch import nn
from torchwm.wm.checkpoint import latest_checkpoint, prune_checkpoints, restore_training, save_checkpoint
from torchwm.wm.runlog import RunLog
from torchwm.wm.runs import Overwrite, open_run
from torchwm.wm.schedule import warmup_cosine
from tqdm.auto import tqdm


@dataclass(frozen=True)
class LoopSettings:
    """What the loop needs to know of a run (each trainer fills it from its own config)."""

    run_dir: Path
    """Directory of checkpoints, ``log.csv`` and TensorBoard events."""
    total_steps: int
    """Optimiser steps of the whole run."""
    learning_rate: float
    """Peak learning rate."""
    min_learning_rate: float
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int
    """Linear warm-up steps."""
    grad_clip: float
    """Global gradient-norm clip (0: none)."""
    log_interval: int
    """Steps between log rows (the last step is always logged)."""
    checkpoint_interval: int
    """Steps between checkpoints (the last step always writes one)."""
    keep_checkpoints: int = 2
    """Newest checkpoints kept on disk."""
    resume: bool = True
    """Continue from the newest checkpoint of ``run_dir``."""
    progress: bool = True
    """Show a tqdm bar."""
    desc: str = "train"
    """Label of the progress bar."""
    items_per_step: int = 1
    """Samples of one global batch, for the throughput."""
    throughput_name: str = "items_per_s"
    """Log column of the throughput (``clips_per_s``, ``seqs_per_s``, ...)."""
    kind: str = "train"
    """The kind of run ``run_dir`` holds (``pretrain``, ``train-world-model``, ...), recorded in its ``run.json``."""
    identity: dict[str, Any] = field(default_factory=dict)
    """The result-changing settings of the run (`Config.run_identity`); a folder holding another run is refused."""
    overwrite: Overwrite = "never"
    """An existing ``run_dir`` of another run: refuse it, move it aside or delete it (`torchwm.wm.runs.open_run`)."""

    def lr_at(self, step: int) -> float:
        """The learning rate of ``step``: linear warm-up to ``learning_rate``, then cosine decay to
        ``min_learning_rate`` at ``total_steps`` (a parameter group's ``lr_scale`` multiplies it)."""
        return warmup_cosine(step, self.total_steps, self.learning_rate, self.min_learning_rate, self.warmup_steps)

    @classmethod
    def of(cls, cfg: Any, total_steps: int, **fields: Any) -> LoopSettings:
        """The settings a trainer's config names the same way (``output_dir``, ``learning_rate``,
        ``min_learning_rate``, ``warmup_steps``, ``grad_clip``, ``log_interval``, ``checkpoint_interval``,
        ``keep_checkpoints``, ``resume``, ``progress``); ``fields`` set the rest or override."""
        names = ("learning_rate", "min_learning_rate", "warmup_steps", "grad_clip", "log_interval",
                 "checkpoint_interval", "keep_checkpoints", "resume", "progress")  # fmt: skip
        found = {name: getattr(cfg, name) for name in (*names, "overwrite") if hasattr(cfg, name)}
        found["identity"] = cfg.run_identity()
        return cls(**{"run_dir": Path(cfg.output_dir), "total_steps": total_steps, **found, **fields})


class TrainingTask(Protocol):
    """A trainer's step, as the loop calls it."""

    @property
    def module(self) -> nn.Module:
        """What is saved and restored (weights of the checkpoint)."""
        ...

    def batches(self, start_step: int) -> Iterator[Any]:
        """Batches of steps ``start_step``, ``start_step + 1``, ... (the loop stops taking them at the end)."""
        ...

    def loss(self, batch: Any, step: int, log_now: bool) -> dict[str, torch.Tensor]:
        """Loss terms of one batch; ``total`` is minimised, every term is logged."""
        ...

    def after_update(self, step: int) -> None:
        """After the optimiser step of ``step`` (an EMA target moves here)."""
        ...

    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config.json`` of a checkpoint of this run (with a ``kind``)."""
        ...

    def check_resume(self, checkpoint: Path) -> None:
        """Refuse to resume from a checkpoint of another run (raise `ValueError` saying why)."""
        ...

    def extra_logs(self, step: int, log_now: bool) -> dict[str, float]:
        """More values for the log row of ``step`` (a collapse monitor, a held-out accuracy)."""
        ...


@dataclass
class LoopResult:
    """What a finished (or already finished) run reports."""

    steps: int
    """Steps done in all (a resumed run counts those before the resume)."""
    last: dict[str, float]
    """The last step's logged values."""
    seconds: float
    """Wall time of this call."""
    items_per_s: float
    """Samples a second in this call."""
    data_wait_fraction: float
    """Fraction of this call's step time spent waiting for the next batch."""
    checkpoint: Path | None
    """The newest checkpoint (None on ranks other than 0)."""
    extras: dict[str, float] = field(default_factory=dict)
    """The last extra values logged (`TrainingTask.extra_logs`)."""
    resumed_from: int = 0
    """The step this call started from (0: a new run; the checkpoint's step when it resumed one)."""


class TrainingLoop:
    """Run a `TrainingTask` with an optimizer as `LoopSettings` say."""

    def __init__(self, task: TrainingTask, optimizer: torch.optim.Optimizer, settings: LoopSettings) -> None:
        self.task, self.optimizer, self.settings = task, optimizer, settings
        self.ddp = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.ddp else 0
        self.world = dist.get_world_size() if self.ddp else 1
        self.step = 0
        self.lr = settings.learning_rate

    # --- the loop ---------------------------------------------------------------------------
    def run(self, on_open: Callable[[], None] | None = None) -> LoopResult:
        """Open the run folder (identity checked, lock held by rank 0), call ``on_open`` (a trainer writes its
        config there), resume, and train to the end."""
        s = self.settings
        folder = (
            open_run(s.run_dir, s.kind, s.identity, overwrite=s.overwrite)
            if self.rank == 0
            else contextlib.nullcontext()
        )
        with folder:
            if on_open is not None and self.rank == 0:
                on_open()
            return self._run()

    def _run(self) -> LoopResult:
        s = self.settings
        self.resume()
        main = self.rank == 0
        log = RunLog(s.run_dir, self.step, enabled=main)
        bar = tqdm(total=s.total_steps, initial=self.step, disable=not (s.progress and main), desc=s.desc, unit="step")
        t0, start, waited = time.perf_counter(), self.step, 0.0
        last: dict[str, float] = {}
        extras: dict[str, float] = {}
        batches = self.task.batches(self.step)
        while self.step < s.total_steps:
            t_wait = time.perf_counter()
            batch = next(batches)
            waited += time.perf_counter() - t_wait
            log_now = (self.step + 1) % s.log_interval == 0 or self.step + 1 == s.total_steps
            terms = self.train_step(batch, log_now)
            last = self._mean_over_ranks(terms)
            extras = {**extras, **self.task.extra_logs(self.step, log_now)}
            if log_now:
                elapsed = max(time.perf_counter() - t0, 1e-9)
                rate = (self.step - start) * s.items_per_step / elapsed
                row = {"loss": last["total"], **{f"loss/{k}": v for k, v in last.items() if k != "total"}, **extras,
                       "lr": self.lr, s.throughput_name: rate,
                       "data_wait_fraction": waited / elapsed}  # fmt: skip
                log.log(self.step, row)
            bar.update(1)
            bar.set_postfix(loss=f"{last.get('total', float('nan')):.4f}")
            if self.step % s.checkpoint_interval == 0 or self.step == s.total_steps:
                self.save()
        bar.close()
        log.close()
        final = latest_checkpoint(s.run_dir) if main else None
        if main and final is None:  # nothing to do and no checkpoint yet (total_steps == 0 cannot happen)
            final = self.save()
        elapsed = max(time.perf_counter() - t0, 1e-9)
        return LoopResult(
            steps=self.step, last=last, seconds=elapsed, items_per_s=(self.step - start) * s.items_per_step / elapsed,
            data_wait_fraction=waited / elapsed, checkpoint=final, extras=extras, resumed_from=start,
        )  # fmt: skip

    def train_step(self, batch: Any, log_now: bool = False) -> dict[str, torch.Tensor]:
        """One optimiser step: learning rate, loss, NaN stop, backward, clip, step, after-update hook; the step
        count moves on by one. (`run` calls it; a benchmark may call it to time the trainer's own step.)"""
        s = self.settings
        lr = s.lr_at(self.step)
        self.lr = lr
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        terms = self.task.loss(batch, self.step, log_now)
        total = terms["total"]
        if not torch.isfinite(total):
            raise FloatingPointError(
                f"loss is {total.item()} at step {self.step}; stopping before the update. The last good checkpoint "
                f"({latest_checkpoint(s.run_dir) or 'none yet'}) is intact: lower learning_rate or check the data."
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if s.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.task.module.parameters(), s.grad_clip)
        self.optimizer.step()
        self.task.after_update(self.step)
        self.step += 1
        return terms

    def _mean_over_ranks(self, terms: dict[str, torch.Tensor]) -> dict[str, float]:
        """Loss terms as floats, averaged over the ranks (the global batch's, as one process would log them)."""
        stacked = torch.stack([v.detach().float() for v in terms.values()])
        if self.ddp:
            dist.all_reduce(stacked)
            stacked /= self.world
        return dict(zip(terms, stacked.tolist()))

    # --- checkpoints ------------------------------------------------------------------------
    def save(self) -> Path | None:
        """Write the checkpoint of the current step (rank 0 only) and prune old ones."""
        if self.rank != 0:
            return None
        s = self.settings
        state = {"optimizer": self.optimizer.state_dict(), "step": self.step, "total": s.total_steps}
        path = save_checkpoint(
            s.run_dir / "checkpoints" / f"step_{self.step:08d}",
            self.task.checkpoint_config(),
            self.task.module.state_dict(),
            state,
        )
        prune_checkpoints(s.run_dir, s.keep_checkpoints)
        return path

    def resume(self) -> None:
        """Continue from the newest checkpoint of the run directory, if resuming and there is one."""
        ckpt = latest_checkpoint(self.settings.run_dir) if self.settings.resume else None
        if ckpt is None:
            return
        self.task.check_resume(ckpt)
        self.step = restore_training(ckpt, self.task.module, self.optimizer)
