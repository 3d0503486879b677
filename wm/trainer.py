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
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import DataLoader, Dataset, default_collate
from torchwm.wm.checkpoint import jepa_config_of
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import build_dataset
from torchwm.wm.device import resolve_device
from torchwm.wm.encoders import prepare_frames
from torchwm.wm.jepa import JEPA, ema_momentum, mask_spec
from torchwm.wm.loop import LoopSettings, TrainingLoop
from torchwm.wm.masks import make_masks


def use_bf16(cfg: JEPAConfig, device: torch.device) -> bool:
    """bf16 autocast only where the hardware has it (on this project's CPUs bf16 is ~100x slower)."""
    if cfg.precision == "bf16":
        return True
    return cfg.precision == "auto" and device.type == "cuda" and torch.cuda.is_bf16_supported()


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
    data_wait_fraction: float = 0.0
    """Fraction of the run's wall time spent waiting for the next batch."""
    resumed_from: int = 0
    """The step this call started from (0: a new run)."""


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
        model = JEPA.from_pretrained(path, resolve_device(device))
        agent = cls(model.cfg)
        agent.model = model
        return agent

    @torch.inference_mode()
    def encode(self, frames: np.ndarray | torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] -> latents [B, T', K, D] from the target encoder, one per encoded step.

        T' = T / tubelet_size time steps, K = (image_size / patch_size)² tokens a step.
        """
        if self.model is None:
            raise RuntimeError("this agent has no model yet: call train() or JEPAAgent.from_pretrained(dir)")
        x = torch.as_tensor(frames)
        c = self.cfg.in_channels
        if x.ndim != 5 or x.shape[-1] != c:
            hint = " (one clip [T, H, W, C]: add a batch axis, frames[None])" if x.ndim == 4 else ""
            raise ValueError(f"expected uint8 frames [B, T, H, W, {c}], got shape {tuple(x.shape)}{hint}")
        if x.shape[1] % self.cfg.tubelet_size:
            raise ValueError(
                f"got {x.shape[1]} frames; expected a multiple of tubelet_size={self.cfg.tubelet_size}"
            )
        device = next(self.model.parameters()).device
        clips = prepare_frames(x.to(device), self.cfg.image_size)
        tokens = self.model.target_encoder(clips)  # (B, T' * K, D)
        k = self.model.target_encoder.tokens_per_step
        return tokens.reshape(tokens.shape[0], -1, k, tokens.shape[-1])  # (B, T', K, D)

    # --- training ---------------------------------------------------------------------------
    def training_loop(self) -> TrainingLoop:
        """The loop `train` runs (built afresh: a new model, optimizer and data set), for benchmarks that time
        its steps (`TrainingLoop.train_step`) without running it."""
        cfg = self.cfg.validate()
        rank, world = (dist.get_rank(), dist.get_world_size()) if dist.is_available() and dist.is_initialized() else (0, 1)
        device = resolve_device(cfg.device)
        if device.type == "cuda" and world > 1:
            device = torch.device("cuda", torch.cuda.current_device())
        torch.manual_seed(cfg.seed)
        model = JEPA(cfg).to(device)
        self.model = model
        task = JEPATask(cfg, model, build_dataset(cfg), device, rank, world)
        optimizer = torch.optim.AdamW(_param_groups(model, cfg.weight_decay), lr=cfg.learning_rate)
        settings = LoopSettings.of(
            cfg, task.total, desc="pretrain", items_per_step=task.global_batch, throughput_name="clips_per_s",
            kind="pretrain",
        )
        return TrainingLoop(task, optimizer, settings)

    def train(self) -> TrainSummary:
        """Run (or resume) pretraining as configured; returns the run summary."""
        loop = self.training_loop()
        cfg, task = self.cfg, loop.task
        assert isinstance(task, JEPATask)
        result = loop.run(on_open=lambda: cfg.save(Path(cfg.output_dir) / "config.yaml"))
        monitor = {k.removeprefix("monitor/"): v for k, v in result.extras.items()}
        self.summary = TrainSummary(
            steps=result.steps, final_loss=result.last.get("total", float("nan")), clips_per_s=result.items_per_s,
            seconds=result.seconds, checkpoint=str(result.checkpoint), skipped_files=list(getattr(task.dataset, "skipped", [])),
            monitor=monitor, data_wait_fraction=result.data_wait_fraction, resumed_from=result.resumed_from,
        )  # fmt: skip
        if loop.rank == 0:
            (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(asdict(self.summary), indent=2))
            if self.summary.skipped_files:
                print(f"skipped {len(self.summary.skipped_files)} unreadable file(s): {self.summary.skipped_files[:5]}")
        return self.summary


class StepMasks:
    """The masks of one step's global batch, from a generator seeded by (seed, step); this rank's slice.

    Picklable, so that DataLoader workers make the masks beside the clips (as V-JEPA's collator does), off the
    training step's critical path."""

    def __init__(self, cfg: JEPAConfig, views: int, rank: int, world: int) -> None:
        self.spec, self.seed, self.views = mask_spec(cfg), cfg.seed, views
        self.lo, self.hi, self.global_batch = rank * cfg.batch_size, (rank + 1) * cfg.batch_size, cfg.batch_size * world

    def __call__(self, step: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + step)
        masks = []
        for _ in range(self.views):
            ctx, tgt = make_masks(self.spec, self.global_batch, gen)
            masks.append((ctx[self.lo : self.hi], tgt[self.lo : self.hi]))
        return masks


class StepBatches(Dataset):
    """Item i is the whole batch of step ``first_step + i``: the clips of its indices, collated, and its masks."""

    def __init__(self, dataset: Dataset, indices: list[list[int]], first_step: int, masks: StepMasks) -> None:
        self.dataset, self.indices, self.first_step, self.masks = dataset, indices, first_step, masks

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict[str, Any]:
        batch = default_collate([self.dataset[j] for j in self.indices[i]])
        batch["masks"] = self.masks(self.first_step + i)
        return batch


class JEPATask:
    """The JEPA's step for `TrainingLoop`: masked latent prediction against the EMA target."""

    def __init__(self, cfg: JEPAConfig, model: JEPA, dataset: Dataset, device: torch.device, rank: int, world: int) -> None:
        self.cfg, self.model, self.module, self.dataset, self.device = cfg, model, model, dataset, device
        self.rank, self.world = rank, world
        self.global_batch = cfg.batch_size * world
        self.steps_per_epoch = len(dataset) // self.global_batch  # type: ignore[arg-type]
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the data set has {len(dataset)} clips, fewer than one global batch of {self.global_batch} "  # type: ignore[arg-type]
                "(lower batch_size or add data)"
            )
        self.total = cfg.max_steps or cfg.epochs * self.steps_per_epoch  # max_steps wins: as many passes as it takes
        self.bf16 = use_bf16(cfg, device)
        self.forward: Callable[..., Any] = model
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.forward = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        if cfg.compile:
            self.forward = torch.compile(self.forward)
        self.masks = StepMasks(cfg, model.num_views, rank, world)
        self.monitor: dict[str, float] = {}

    def batches(self, start_step: int) -> Iterator[dict[str, Any]]:
        """Each epoch is a permutation seeded by (seed, epoch); a batch comes with its masks, both made in the
        DataLoader's workers when ``num_workers`` > 0."""
        step = start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            perm = torch.randperm(len(self.dataset), generator=gen)  # type: ignore[arg-type]
            b, r, g = self.cfg.batch_size, self.rank, self.global_batch
            indices = [perm[i * g + r * b : i * g + (r + 1) * b].tolist() for i in range(pos, self.steps_per_epoch)]
            workers = self.cfg.num_workers
            loader = DataLoader(StepBatches(self.dataset, indices, step, self.masks), batch_size=None,
                                num_workers=workers, prefetch_factor=2 if workers else None,
                                persistent_workers=False)  # fmt: skip
            for batch in loader:
                yield batch
                step += 1

    def loss(self, batch: dict[str, Any], step: int, log_now: bool) -> dict[str, torch.Tensor]:
        clips = prepare_frames(batch["frames"].to(self.device, non_blocking=True), self.cfg.image_size)
        masks = [(c.to(self.device, non_blocking=True), t.to(self.device, non_blocking=True)) for c, t in batch["masks"]]
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            out = self.forward(clips, masks, monitor=log_now)
        if out.monitor:
            self.monitor = out.monitor
        return {"total": out.loss, **out.terms}

    def after_update(self, step: int) -> None:
        self.model.update_target(ema_momentum(self.cfg, step + 1, self.total))

    def checkpoint_config(self) -> dict[str, Any]:
        return {"kind": "jepa", "jepa": self.cfg.to_dict()}

    def extra_logs(self, step: int, log_now: bool) -> dict[str, float]:
        return {f"monitor/{k}": v for k, v in self.monitor.items()} if log_now else {}

    def check_resume(self, checkpoint: Path) -> None:
        saved = jepa_config_of(checkpoint)
        shape_fields = ("encoder", "image_size", "patch_size", "embed_dim", "num_layers", "num_heads", "num_frames",
                        "tubelet_size", "predictor_dim", "predictor_depth", "in_channels")  # fmt: skip
        for name in shape_fields:
            if getattr(saved, name) != getattr(self.cfg, name):
                raise ValueError(
                    f"cannot resume from {checkpoint}: it was trained with {name}={getattr(saved, name)!r} but the "
                    f"config says {getattr(self.cfg, name)!r} (use another output_dir, or overwrite='move' (or 'delete') to start over)"
                )
