"""Fine-tuning a pretrained encoder with a classification head on a labelled image or video folder.

The encoder starts from a JEPA checkpoint's EMA target encoder (the one probes and `encode` use) and
is trained end to end with a new head: AdamW with layer-wise learning-rate decay (the head and the
last block at the full rate, each block below at ``layer_decay`` times the one above), label
smoothing, warm-up and cosine decay, and torch-only augmentations (`wm.augment`). Accuracy is top-1
on the same held-out split as the probes (`wm.probes.split_held_out`), which is never trained on.

Runs follow pretraining's conventions: a tqdm bar, `wm.runlog.RunLog` (CSV + TensorBoard), atomic
checkpoint directories (``config.json`` + ``model.safetensors`` + trainer state) with ``kind:
"classifier"``, and a resume from the latest one that ends with the same weights. Data order and
augmentations are functions of (seed, step).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset
from torchwm.wm.checkpoint import (
    jepa_config_of,
    load_state_checked,
    load_weights,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.config_base import Config, Fraction, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.device import resolve_device
from torchwm.wm.downstream.augment import augment_clips
from torchwm.wm.downstream.features import DataKind, item_records, labelled_dataset, load_encoder
from torchwm.wm.downstream.probes import AttentiveHead, split_held_out
from torchwm.wm.encoders import VisionEncoder, prepare_frames
from torchwm.wm.jepa import build_encoder
from torchwm.wm.loop import LoopSettings, TrainingLoop
from torchwm.wm.runs import Overwrite
from torchwm.wm.trainer import use_bf16

HeadKind = Literal["linear", "attentive"]


@dataclass(frozen=True)
class FinetuneConfig(Config):
    """How to fine-tune a pretrained encoder on a folder of labelled images or videos."""

    checkpoint: str = ""
    """JEPA checkpoint (or run directory) whose encoder is fine-tuned."""
    data: str = "./data/train"
    """Folder with one sub-folder of images or videos per class."""
    data_kind: DataKind = "auto"
    """``auto``: videos if the folder holds any, else images."""
    head: HeadKind = "linear"
    """``linear``: mean-pooled tokens, a norm, a linear layer; ``attentive``: the attentive probe's head."""
    epochs: NonNegInt = 10
    """Passes over the training split."""
    max_steps: NonNegInt = 0
    """Train exactly this many optimiser steps if > 0, passing over the data as often as it takes (``epochs`` is
    then ignored); 0: ``epochs`` passes."""
    batch_size: PositiveInt = 32
    """Clips per optimiser step."""
    learning_rate: PositiveFloat = 5e-4
    """Peak AdamW learning rate of the head and the last block."""
    min_learning_rate: NonNegFloat = 1e-6
    """Learning rate at the end of the cosine decay."""
    warmup_steps: NonNegInt = 20
    """Linear warm-up steps."""
    weight_decay: NonNegFloat = 0.05
    """AdamW weight decay (not on biases, norms, queries)."""
    layer_decay: Annotated[float, Range(gt=0, le=1)] = 0.75
    """Layer-wise learning-rate decay: block i of L runs at layer_decay ** (L - i) times the head's rate."""
    label_smoothing: Annotated[float, Range(ge=0, lt=1)] = 0.1
    """Label smoothing of the cross-entropy."""
    grad_clip: NonNegFloat = 1.0
    """Clip the global gradient norm to this value (0 disables)."""
    held_out: Annotated[float, Range(gt=0, lt=1)] = 0.2
    """Fraction of each class's files held out for the accuracy (the probes' split for the same seed)."""
    crop_scale: Annotated[float, Range(gt=0, le=1)] = 0.6
    """Smallest area fraction of the random resized crop (1 disables it)."""
    flip_prob: Fraction = 0.5
    """Probability of a left-right mirror (0 where the label depends on horizontal direction)."""
    color_jitter: Annotated[float, Range(ge=0, lt=1)] = 0.1
    """Brightness/contrast/saturation factors are drawn in [1 - this, 1 + this] (0 disables)."""
    seed: int = 0
    """Seed of the held-out split, the head's initialisation, the batch order and the augmentations."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU) or a torch device string."""
    num_workers: NonNegInt = 0
    """DataLoader worker processes."""
    output_dir: str = "runs/finetune"
    """Directory for checkpoints, TensorBoard events and the CSV log."""
    log_interval: PositiveInt = 10
    """Steps between log rows."""
    checkpoint_interval: PositiveInt = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: PositiveInt = 2
    """Most recent checkpoints kept on disk."""
    resume: bool = True
    """Continue from the latest checkpoint in ``output_dir`` if there is one."""
    progress: bool = True
    """Show a tqdm progress bar."""
    overwrite: Overwrite = "never"
    """An existing run folder that holds another run: ``never`` refuses it (a matching run continues), ``move``
    moves it aside, ``delete`` deletes it."""

    def check(self) -> None:
        """The rules that tie fields together (each field's own type and range come from its annotation)."""
        if not self.checkpoint:
            self.fail("checkpoint", self.checkpoint, "a JEPA checkpoint or run directory")
        if self.epochs == 0 and self.max_steps == 0:
            self.fail("epochs", self.epochs, "> 0, or max_steps > 0")


class _PooledHead(nn.Module):
    """Tokens [B, N, D] -> logits [B, classes]: mean over tokens, a batch norm (no affine, standardising
    each feature across samples, as the linear probe does), one linear layer."""

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.norm = nn.BatchNorm1d(dim, affine=False)
        self.fc = nn.Linear(dim, num_classes)
        nn.init.trunc_normal_(self.fc.weight, std=0.02)
        nn.init.zeros_(self.fc.bias)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.fc(self.norm(tokens.mean(dim=1)))


class Classifier(nn.Module):
    """An encoder with a classification head: float clips [B, T, C, H, W] -> logits [B, classes]."""

    def __init__(
        self,
        encoder: VisionEncoder,
        classes: list[str],
        image_size: int,
        head: HeadKind = "linear",
        num_heads: int = 4,
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.classes = list(classes)
        self.image_size = image_size
        n = max(len(classes), 1)
        self.head = (
            _PooledHead(encoder.dim, n) if head == "linear" else AttentiveHead(encoder.dim, n, num_heads)
        )

    def save_pretrained(
        self, path: str | Path, jepa_cfg: JEPAConfig, finetune: FinetuneConfig, trainer_state: dict[str, Any] | None = None
    ) -> Path:
        """Write this classifier as a checkpoint directory (atomically); `from_pretrained` reads it back."""
        config = {"kind": "classifier", "jepa": jepa_cfg.to_dict(), "finetune": finetune.to_dict(), "classes": self.classes}
        return save_checkpoint(path, config, self.state_dict(), trainer_state)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> Classifier:
        """A fine-tuned classifier from its checkpoint (or run) directory, in eval mode."""
        ckpt = resolve_checkpoint(path)
        saved = read_config(ckpt)
        if saved.get("kind") != "classifier":
            raise ValueError(f"{ckpt} is a {saved.get('kind')!r} checkpoint, not a fine-tuned classifier")
        jepa_cfg = jepa_config_of(ckpt)
        model = cls(build_encoder(jepa_cfg), saved["classes"], jepa_cfg.image_size, saved["finetune"]["head"],
                    jepa_cfg.num_heads)  # fmt: skip
        load_state_checked(model, load_weights(ckpt), ckpt)
        return model.to(device).eval()

    def forward_features(self, clips: torch.Tensor) -> torch.Tensor:
        """float clips [B, T, C, H, W] -> tokens [B, N, D]."""
        return self.encoder(clips)

    def forward_head(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens [B, N, D] -> logits [B, classes]."""
        return self.head(tokens)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(clips))

    @torch.inference_mode()
    def predict(self, frames: torch.Tensor) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] -> class indices [B] (index ``classes`` for the names)."""
        device = next(self.parameters()).device
        return self(prepare_frames(frames.to(device), self.image_size)).argmax(dim=-1)


def layer_decay_groups(
    model: Classifier, base_weight_decay: float, layer_decay: float
) -> list[dict[str, Any]]:
    """AdamW parameter groups with an ``lr_scale`` each: layer_decay ** (L + 1 - layer), where the patch
    embedding is layer 0, block i is layer i + 1 and the final norm and the head are layer L + 1.
    Biases, norms and queries get no weight decay."""
    depth = len(model.encoder.blocks)
    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        if name.startswith("encoder.patch_embed"):
            layer = 0
        elif name.startswith("encoder.blocks."):
            layer = int(name.split(".")[2]) + 1
        else:
            layer = depth + 1
        decay = not (p.ndim < 2 or name.endswith("queries"))
        group = groups.setdefault(
            (layer, decay),
            {
                "params": [],
                "weight_decay": base_weight_decay if decay else 0.0,
                "lr_scale": layer_decay ** (depth + 1 - layer),
            },
        )
        group["params"].append(p)
    return [groups[k] for k in sorted(groups)]


def load_classifier(path: str | Path, device: str = "cpu") -> Classifier:
    """A fine-tuned classifier from its checkpoint directory (or its run directory's latest), in eval mode
    (`Classifier.from_pretrained`, with ``device="auto"`` understood)."""
    return Classifier.from_pretrained(path, resolve_device(device))


@dataclass
class FinetuneSummary:
    """What a finished fine-tuning run reports (also written to ``summary.json``)."""

    steps: int
    final_loss: float
    accuracy: float
    """Top-1 accuracy on the held-out split."""
    num_train: int
    num_held_out: int
    seconds: float
    checkpoint: str
    classes: list[str] = field(default_factory=list)
    resumed_from: int = 0
    """The step this call started from (0: a new run)."""


class Finetuner:
    """Fine-tune the encoder of ``cfg.checkpoint`` with a classification head on ``cfg.data``."""

    def __init__(self, cfg: FinetuneConfig) -> None:
        self.cfg = cfg.validate()
        self.model: Classifier | None = None

    def run(self) -> FinetuneSummary:
        """Train (or resume) as configured; returns the summary, with the held-out accuracy."""
        cfg = self.cfg
        device = resolve_device(cfg.device)
        encoder, jepa_cfg = load_encoder(cfg.checkpoint, "cpu")
        encoder.requires_grad_(True)
        dataset = labelled_dataset(cfg.data, jepa_cfg, cfg.data_kind)
        records = item_records(dataset)
        labels = np.array([label for _, _, label in records])
        paths = np.array([str(p.relative_to(dataset.folder)) for p, _, _ in records])
        train_idx, held_idx = split_held_out(labels, paths, cfg.held_out, cfg.seed)
        if len(held_idx) == 0:
            raise ValueError(
                f"the held-out split of {cfg.data} is empty: every class needs two files or more"
            )
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            model = Classifier(encoder, dataset.classes, jepa_cfg.image_size, cfg.head, jepa_cfg.num_heads)
        self.model = model.to(device)
        task = FinetuneTask(cfg, jepa_cfg, model, dataset, train_idx, held_idx, device)
        optimizer = torch.optim.AdamW(layer_decay_groups(model, cfg.weight_decay, cfg.layer_decay))
        settings = LoopSettings.of(
            cfg, task.total, desc="finetune", items_per_step=cfg.batch_size, throughput_name="clips_per_s",
            kind="finetune",
        )
        config_file = Path(cfg.output_dir) / "finetune_config.json"
        result = TrainingLoop(task, optimizer, settings).run(on_open=lambda: cfg.save(config_file))
        summary = FinetuneSummary(
            steps=result.steps, final_loss=result.last.get("total", float("nan")), accuracy=task.evaluate(),
            num_train=len(train_idx), num_held_out=len(held_idx), seconds=result.seconds,
            checkpoint=str(result.checkpoint), classes=model.classes, resumed_from=result.resumed_from,
        )  # fmt: skip
        (Path(cfg.output_dir) / "summary.json").write_text(json.dumps(asdict(summary), indent=2))
        return summary


class FinetuneTask:
    """Fine-tuning's step for `TrainingLoop`: augmented clips, label-smoothed cross-entropy, held-out accuracy
    logged at the end of every epoch."""

    def __init__(
        self,
        cfg: FinetuneConfig,
        jepa_cfg: JEPAConfig,
        model: Classifier,
        dataset: Dataset,
        train_idx: np.ndarray,
        held_idx: np.ndarray,
        device: torch.device,
    ) -> None:
        self.cfg, self.jepa_cfg, self.model, self.module, self.device = cfg, jepa_cfg, model, model, device
        self.dataset, self.train_idx, self.held_idx = dataset, train_idx, held_idx
        if len(train_idx) < 2:
            raise ValueError(
                f"the training split of {cfg.data} has {len(train_idx)} item(s); need two or more"
            )
        # Incomplete last batches are dropped (a batch norm needs two samples), as in pretraining.
        self.steps_per_epoch = max(len(train_idx) // cfg.batch_size, 1)
        self.total = cfg.max_steps or cfg.epochs * self.steps_per_epoch  # max_steps wins: as many passes as it takes
        self.bf16 = use_bf16(jepa_cfg, device)

    def batches(self, start_step: int) -> Iterator[dict[str, Any]]:
        """Each epoch is a permutation seeded by (seed, epoch)."""
        step = start_step
        while True:
            epoch, pos = divmod(step, self.steps_per_epoch)
            gen = torch.Generator().manual_seed(self.cfg.seed * 100_003 + epoch)
            order = self.train_idx[torch.randperm(len(self.train_idx), generator=gen).numpy()].tolist()
            b = self.cfg.batch_size
            batches = [order[i * b : (i + 1) * b] for i in range(pos, self.steps_per_epoch)]
            for batch in DataLoader(self.dataset, batch_sampler=batches, num_workers=self.cfg.num_workers):
                yield batch
                step += 1

    def loss(self, batch: dict[str, Any], step: int, log_now: bool) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + step)
        clips = prepare_frames(batch["frames"].to(self.device), self.jepa_cfg.image_size)
        clips = augment_clips(clips, gen, cfg.crop_scale, cfg.flip_prob, cfg.color_jitter)
        self.model.train()
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            logits = self.model(clips)
        loss = F.cross_entropy(logits.float(), batch["label"].to(self.device), label_smoothing=cfg.label_smoothing)
        return {"total": loss}

    def after_update(self, step: int) -> None:
        """Nothing to do after an update (fine-tuning has no EMA target)."""

    def extra_logs(self, step: int, log_now: bool) -> dict[str, float]:
        if step % self.steps_per_epoch == 0 or step == self.total:
            return {"held_out_accuracy": self.evaluate()}
        return {}

    @torch.inference_mode()
    def evaluate(self) -> float:
        """Top-1 accuracy on the held-out split."""
        self.model.eval()
        loader = DataLoader(Subset(self.dataset, self.held_idx.tolist()), batch_size=self.cfg.batch_size)
        correct = 0
        for batch in loader:
            clips = prepare_frames(batch["frames"].to(self.device), self.jepa_cfg.image_size)
            with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
                pred = self.model(clips).argmax(dim=-1).cpu()
            correct += int((pred == batch["label"]).sum())
        return correct / len(self.held_idx)

    def checkpoint_config(self) -> dict[str, Any]:
        return {"kind": "classifier", "jepa": self.jepa_cfg.to_dict(), "finetune": self.cfg.to_dict(),
                "classes": self.model.classes}  # fmt: skip

    def check_resume(self, ckpt: Path) -> None:
        saved = read_config(ckpt)
        if saved.get("kind") != "classifier" or saved.get("classes") != self.model.classes:
            raise ValueError(
                f"cannot resume from {ckpt}: it holds a {saved.get('kind')!r} checkpoint with classes "
                f"{saved.get('classes')} but this run has classes {self.model.classes} "
                "(use another output_dir, or overwrite='move' (or 'delete') to start over)"
            )
