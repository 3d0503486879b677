"""`JEPAAgent`: pretraining loop, checkpoints, resume, and the encoder of a trained model.

One optimiser step: draw masks for the global batch from a generator seeded by (seed, step), encode
the visible tokens, predict the masked ones, regress the EMA target's layer-normed latents, clip, step
AdamW, move the target by the momentum schedule. Data order and masks are functions of (seed, step),
so a run resumed from a checkpoint ends with the same weights as an uninterrupted one.
Under ``torchrun`` (a process group exists) the model is wrapped in DistributedDataParallel, each rank
takes its slice of the global batch, and rank 0 alone logs and saves.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset
from torchwm.wm.checkpoint import (
    jepa_config_of,
    latest_checkpoint,
    load_state_checked,
    load_weights,
    prune_checkpoints,
    resolve_checkpoint,
    restore_training,
    save_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import build_dataset
from torchwm.wm.encoders import prepare_frames
from torchwm.wm.jepa import JEPA, ema_momentum, mask_spec
from torchwm.wm.masks import make_masks
from torchwm.wm.runlog import RunLog
from torchwm.wm.schedule import warmup_cosine
from tqdm.auto import tqdm


def resolve_device(name: str) -> torch.device:
    """``auto`` -> CUDA when available, else CPU; anything else as torch reads it."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def use_bf16(cfg: JEPAConfig, device: torch.device) -> bool:
    """bf16 autocast only where the hardware has it (on this project's CPUs bf16 is ~100x slower)."""
    if cfg.precision == "bf16":
        return True
    return cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


def lr_at(cfg: JEPAConfig, step: int, total: int) -> float:
    """Linear warm-up to ``learning_rate``, then cosine decay to ``min_learning_rate``."""
    return warmup_cosine(step, total, cfg.learning_rate, cfg.min_learning_rate, cfg.warmup_steps)


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """No weight decay on biases, norms and learned tokens (1-D or token-shaped parameters)."""
    decay: list[torch.nn.Parameter] = []
    no_decay: list[torch.nn.Parameter] = []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        (no_decay if p.ndim < 2 or name.endswith("mask_token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


@dataclass
class TrainSummary:
    """What a finished run reports (also written to ``summary.json``)."""

    steps: int
    final_loss: float
    clips_per_s: float
    seconds: float
    checkpoint: str
    skipped_files: list[str] = field(default_factory=list)
    monitor: dict[str, float] = field(default_factory=dict)


class _Dist:
    """Rank and world size, (0, 1) without a process group."""

    def __init__(self) -> None:
        self.on = dist.is_available() and dist.is_initialized()
        self.rank = dist.get_rank() if self.on else 0
        self.world = dist.get_world_size() if self.on else 1


class JEPAAgent:
    """Train a JEPA from a config, or load a trained one with `from_pretrained` and `encode` frames."""

    def __init__(self, cfg: JEPAConfig | None = None) -> None:
        self.cfg = cfg if cfg is not None else JEPAConfig()
        self.cfg.validate()
        self.model: JEPA | None = None
        self.summary: TrainSummary | None = None

    # --- loading and encoding ---------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, path: str | Path, device: str = "cpu") -> JEPAAgent:
        """Load a checkpoint directory (or a run directory's latest checkpoint)."""
        ckpt = resolve_checkpoint(path)
        agent = cls(jepa_config_of(ckpt))
        agent.model = JEPA(agent.cfg)
        load_state_checked(agent.model, load_weights(ckpt), ckpt)
        agent.model.to(resolve_device(device)).eval()
        return agent

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames [T, H, W, C] or [B, T, H, W, C] -> latents [(B,) T', K, D] from the target encoder.

        T' = T / tubelet_size time steps, K = (image_size / patch_size)² tokens a step.
        """
        if self.model is None:
            raise RuntimeError("this agent has no model yet: call train() or JEPAAgent.from_pretrained(dir)")
        x = torch.as_tensor(frames)
        single = x.ndim == 4
        x = x.unsqueeze(0) if single else x
        if x.ndim != 5 or x.shape[-1] != self.cfg.in_channels:
            raise ValueError(
                f"expected uint8 frames [T, H, W, {self.cfg.in_channels}] or [B, T, H, W, {self.cfg.in_channels}], "
                f"got shape {tuple(x.shape)}"
            )
        if x.shape[1] % self.cfg.tubelet_size:
            raise ValueError(
                f"got {x.shape[1]} frames; expected a multiple of tubelet_size={self.cfg.tubelet_size}"
            )
        device = next(self.model.parameters()).device
        clips = prepare_frames(x.to(device), self.cfg.image_size)
        tokens = self.model.target_encoder(clips)  # (B, T' * K, D)
        k = self.model.target_encoder.tokens_per_step
        z = tokens.reshape(tokens.shape[0], -1, k, tokens.shape[-1])  # (B, T', K, D)
        return z[0] if single else z

    # --- training ---------------------------------------------------------------------------
    def train(self) -> TrainSummary:
        """Run (or resume) pretraining as configured; returns the run summary."""
        cfg = self.cfg.validate()
        ddp = _Dist()
        device = resolve_device(cfg.device)
        if device.type == "cuda" and ddp.on:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.manual_seed(cfg.seed)
        dataset = build_dataset(cfg)
        model = JEPA(cfg).to(device)
        self.model = model
        loop = _Loop(cfg, model, dataset, device, ddp)
        self.summary = loop.run()
        return self.summary


class _Loop:
    """The state of one training run, split into short named steps."""

    def __init__(
        self, cfg: JEPAConfig, model: JEPA, dataset: Dataset, device: torch.device, ddp: _Dist
    ) -> None:
        self.cfg, self.model, self.dataset, self.device, self.ddp = cfg, model, dataset, device, ddp
        self.run_dir = Path(cfg.output_dir)
        self.global_batch = cfg.batch_size * ddp.world
        self.steps_per_epoch = len(dataset) // self.global_batch  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the data set has {len(dataset)} clips, fewer than one global batch of {self.global_batch} "  # type: ignore[arg-type]
                "(lower batch_size or add data)"
            )
        total = cfg.epochs * self.steps_per_epoch
        self.total = cfg.max_steps or total  # max_steps wins: the data is passed over as often as it takes
        self.optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
        self.bf16 = use_bf16(cfg, device)
        self.forward: Callable[..., Any] = model
        if ddp.on:
            ids = [device.index] if device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        self.step = 0

    def run(self) -> TrainSummary:
        cfg = self.cfg
        self._maybe_resume()
        is_main = self.ddp.rank == 0
        log = RunLog(self.run_dir, self.step, enabled=is_main)
        if is_main:
            cfg.save(self.run_dir / "config.yaml")
        bar = tqdm(
            total=self.total,
            initial=self.step,
            disable=not (cfg.progress and is_main),
            desc="pretrain",
            unit="step",
        )
        t0, clips_seen, last = time.perf_counter(), 0, {"loss": float("nan")}
        monitor: dict[str, float] = {}
        for batch in self._batches():
            monitor_now = self.step % cfg.log_interval == 0 or self.step == self.total - 1
            out = self._train_step(batch, monitor_now)
            self.step += 1
            clips_seen += self.global_batch
            rate = clips_seen / (time.perf_counter() - t0)
            last = self._mean_over_ranks({"loss": out.loss, **{f"loss/{k}": v for k, v in out.terms.items()}})
            monitor = out.monitor or monitor
            if monitor_now:
                lr = self.optimizer.param_groups[0]["lr"]
                log.log(
                    self.step,
                    {
                        **last,
                        **{f"monitor/{k}": v for k, v in monitor.items()},
                        "lr": lr,
                        "clips_per_s": rate,
                    },
                )
            bar.update(1)
            bar.set_postfix(loss=f"{last['loss']:.4f}", clips_s=f"{rate:.1f}")
            if self.step % cfg.checkpoint_interval == 0 or self.step == self.total:
                self._save()
        bar.close()
        log.close()
        final = latest_checkpoint(self.run_dir) if is_main else None
        if is_main and final is None:  # resumed a run that had already finished
            final = self._save()
        summary = TrainSummary(
            steps=self.step,
            final_loss=last["loss"],
            clips_per_s=clips_seen / max(time.perf_counter() - t0, 1e-9),
            seconds=time.perf_counter() - t0,
            checkpoint=str(final),
            skipped_files=list(getattr(self.dataset, "skipped", [])),
            monitor=monitor,
        )
        if is_main:
            (self.run_dir / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
            if summary.skipped_files:
                print(f"skipped {len(summary.skipped_files)} unreadable file(s): {summary.skipped_files[:5]}")
        return summary

    def _mean_over_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, float]:
        """Loss terms as floats, averaged over the ranks: the global batch's, as one process would log them."""
        stacked = torch.stack([v.detach().float() for v in values.values()])
        if self.ddp.on:
            dist.all_reduce(stacked)
            stacked /= self.ddp.world
        return dict(zip(values, stacked.tolist()))

    def _batches(self) -> Iterator[dict[str, Any]]:
        """Batches from the current step to the end: each epoch is a permutation seeded by (seed, epoch)."""
        while self.step < self.total:
            epoch, pos = divmod(self.step, self.steps_per_epoch)
            gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(self.dataset), generator=gen)  # type: ignore[arg-type]
            b, r = self.cfg.batch_size, self.ddp.rank
            batches = [
                perm[i * self.global_batch + r * b : i * self.global_batch + (r + 1) * b].tolist()
                for i in range(pos, self.steps_per_epoch)
            ]
            loader = DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.num_workers)
            for batch in loader:
                yield batch
                if self.step >= self.total:
                    return

    def _masks(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Masks of the whole global batch from a generator seeded by (seed, step); this rank's slice."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.step)
        spec = mask_spec(self.cfg)
        lo, hi = self.ddp.rank * self.cfg.batch_size, (self.ddp.rank + 1) * self.cfg.batch_size
        masks = []
        for _ in range(self.model.num_views):
            ctx, tgt = make_masks(spec, self.global_batch, gen)
            masks.append((ctx[lo:hi].to(self.device), tgt[lo:hi].to(self.device)))
        return masks

    def _train_step(self, batch: dict[str, Any], monitor: bool):
        cfg = self.cfg
        lr = lr_at(cfg, self.step, self.total)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        clips = prepare_frames(batch["frames"].to(self.device, non_blocking=True), cfg.image_size)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(clips, self._masks(), monitor=monitor)
        if not torch.isfinite(out.loss):
            last = latest_checkpoint(self.run_dir)
            raise FloatingPointError(
                f"loss is {out.loss.item()} at step {self.step}; stopping before the update. "
                f"The last good checkpoint ({last or 'none yet'}) is intact: lower learning_rate or check the data."
            )
        self.optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        if cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.model.update_target(ema_momentum(cfg, self.step + 1, self.total))
        return out

    def _save(self) -> Path | None:
        if self.ddp.rank != 0:
            return None
        state = {"optimizer": self.optimizer.state_dict(), "step": self.step, "total": self.total}
        path = save_checkpoint(
            self.run_dir / "checkpoints" / f"step_{self.step:08d}",
            {"kind": "jepa", "jepa": self.cfg.to_dict()},
            self.model.state_dict(),
            state,
        )
        prune_checkpoints(self.run_dir, self.cfg.keep_checkpoints)
        return path

    def _maybe_resume(self) -> None:
        ckpt = latest_checkpoint(self.run_dir) if self.cfg.resume else None
        if ckpt is None:
            return
        saved = jepa_config_of(ckpt)
        shape_fields = (
            "encoder",
            "image_size",
            "patch_size",
            "embed_dim",
            "num_layers",
            "num_heads",
            "num_frames",
            "tubelet_size",
            "predictor_dim",
            "predictor_depth",
            "in_channels",
        )
        for name in shape_fields:
            if getattr(saved, name) != getattr(self.cfg, name):
                raise ValueError(
                    f"cannot resume from {ckpt}: it was trained with {name}={getattr(saved, name)!r} but the config "
                    f"says {getattr(self.cfg, name)!r} (use another output_dir, or resume=False to start over)"
                )
        self.step = restore_training(ckpt, self.model, self.optimizer)
