"""Frozen-feature probes: how much of a class a pretrained encoder's features hold.

Two heads, trained on features the frozen encoder computed once (`wm.features.FeatureSet`), so a probe
never runs the encoder and cannot change it:

- **linear**: a logistic regression (L2-penalised, fitted to convergence by L-BFGS) on the mean-pooled
  features, standardised with the training split's mean and spread;
- **attentive**: V-JEPA's evaluation head: a few learned queries cross-attend to all patch tokens
  (one attention layer with an MLP), then a linear layer on the pooled queries.

Both report top-1 accuracy on a held-out split that `split_held_out` draws by seed, per class and by
file (every clip of a video lands on the same side), and that the probe never trains on.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchwm.wm.config_base import Config, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.device import resolve_device
from torchwm.wm.downstream.features import (
    DataKind,
    FeatureKind,
    FeatureSet,
    extract_features,
    labelled_dataset,
    load_encoder,
)
from torchwm.wm.layers import MLP, init_weights
from torchwm.wm.schedule import warmup_cosine

ProbeKind = Literal["linear", "attentive"]


@dataclass(frozen=True)
class ProbeConfig(Config):
    """How to train a probe on frozen features and where to hold data out."""

    kind: Literal["linear", "attentive", "both"] = "both"
    """Which probe(s) to train: a linear layer on pooled features, an attentive pooler on patch tokens, or both."""
    linear_l2: NonNegFloat = 1e-4
    """L2 penalty on the linear probe's weights (a logistic regression fitted to convergence by L-BFGS)."""
    linear_max_iter: PositiveInt = 500
    """Most L-BFGS iterations of the linear probe."""
    epochs: PositiveInt = 100
    """Passes over the training split (attentive probe)."""
    batch_size: PositiveInt = 64
    """Samples per optimiser step (attentive probe; also the evaluation batch)."""
    learning_rate: PositiveFloat = 1e-3
    """Peak AdamW learning rate, warm-up then cosine decay to zero (attentive probe)."""
    weight_decay: NonNegFloat = 1e-2
    """AdamW weight decay, not on biases, norms or queries (attentive probe)."""
    warmup_steps: NonNegInt = 20
    """Linear warm-up steps (attentive probe)."""
    held_out: Annotated[float, Range(gt=0, lt=1)] = 0.2
    """Fraction of each class's files held out for the accuracy (never trained on)."""
    seed: int = 0
    """Seed of the held-out split, the head's initialisation and the batch order."""
    num_queries: PositiveInt = 1
    """Learned queries of the attentive probe."""
    num_heads: PositiveInt = 4
    """Attention heads of the attentive probe (must divide the feature width)."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU) or a torch device string."""


@dataclass(frozen=True)
class ProbeJob(ProbeConfig):
    """``torchwm probe``: the probes of `ProbeConfig` on a checkpoint and a folder, or on exported features."""

    checkpoint: str = ""
    """JEPA checkpoint or run directory (with ``data``)."""
    data: str = ""
    """Folder of images or videos, one sub-folder per class (with ``checkpoint``)."""
    features: str = ""
    """A ``.npz`` from ``torchwm features``, instead of ``checkpoint`` and ``data``."""
    data_kind: DataKind = "auto"
    """``auto``: videos if the folder holds any, else images."""
    encode_batch_size: PositiveInt = 32
    """Items encoded at once."""
    out: str = ""
    """Also write the results to this JSON file (empty: print only)."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def check(self) -> None:
        if not self.features and not (self.checkpoint and self.data):
            raise ValueError(
                "give --features FILE.npz (from `torchwm features`), or --checkpoint DIR and --data DIR"
            )


def split_held_out(
    labels: np.ndarray, groups: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (train, held-out): per class, a seeded ``fraction`` of its files (``groups``) is held out.

    All rows of one file land on the same side. A class with two files or more keeps at least one on
    each side; a class with one file is trained on only. The same (labels, groups, fraction, seed) give
    the same split.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    rng = np.random.default_rng(seed)
    held: list[Any] = []
    for label in np.unique(labels):
        files = np.unique(groups[labels == label])
        n = int(round(fraction * len(files)))
        n = min(max(n, 1), len(files) - 1) if len(files) > 1 else 0
        held.extend(rng.permutation(files)[:n])
    is_held = np.isin(groups, np.asarray(held, dtype=groups.dtype))
    return np.flatnonzero(~is_held), np.flatnonzero(is_held)


class LinearHead(nn.Module):
    """Pooled features [B, D] -> logits [B, classes]: standardise (fixed statistics), then one linear layer."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, dim: int, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))
        self.fc = nn.Linear(dim, num_classes)

    def fit_statistics(self, pooled: torch.Tensor) -> None:
        """Standardise with the mean and spread of these features [N, D] (the training split's)."""
        self.mean.copy_(pooled.mean(dim=0))
        self.std.copy_(pooled.std(dim=0).clamp_min(1e-6))

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        return self.fc((pooled - self.mean) / self.std)


class AttentivePooler(nn.Module):
    """Learned queries cross-attend to tokens [B, N, D] -> pooled queries [B, Q, D] (V-JEPA's pooler).

    One block: queries + attention(queries, norm(tokens)), then + MLP(norm(.)).
    """

    def __init__(self, dim: int, num_heads: int, num_queries: int = 1, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"AttentivePooler: num_heads={num_heads} must divide the feature width {dim}")
        self.num_heads = num_heads
        self.queries = nn.Parameter(torch.zeros(1, num_queries, dim))
        self.norm_kv = nn.LayerNorm(dim)
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm_mlp = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))
        self.apply(init_weights)
        nn.init.trunc_normal_(self.queries, std=0.02)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        b = tokens.shape[0]
        q = rearrange(self.q(self.queries), "1 q (h d) -> 1 h q d", h=self.num_heads).expand(b, -1, -1, -1)
        k, v = rearrange(
            self.kv(self.norm_kv(tokens)), "b n (two h d) -> two b h n d", two=2, h=self.num_heads
        )
        out = F.scaled_dot_product_attention(q, k, v)  # (B, h, Q, d)
        x = self.queries + self.proj(rearrange(out, "b h q d -> b q (h d)"))  # (B, Q, D)
        return x + self.mlp(self.norm_mlp(x))


class AttentiveHead(nn.Module):
    """Patch tokens [B, N, D] -> logits [B, classes]: attentive pooling, a batch norm, one linear layer.

    The batch norm (no affine, as in MAE's linear probe) standardises each pooled feature across
    samples: at the start the queries attend almost uniformly, the pooled features are a large common
    component with small class differences on top, and without it the head sits on a long plateau.
    """

    def __init__(self, dim: int, num_classes: int, num_heads: int, num_queries: int = 1) -> None:
        super().__init__()
        self.pooler = AttentivePooler(dim, num_heads, num_queries)
        self.norm = nn.BatchNorm1d(num_queries * dim, affine=False)
        self.fc = nn.Linear(num_queries * dim, num_classes)
        init_weights(self.fc)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        pooled = rearrange(self.pooler(tokens), "b q d -> b (q d)")
        return self.fc(self.norm(pooled))


@dataclass
class ProbeResult:
    """A trained probe and its top-1 accuracy on the held-out split."""

    kind: str
    accuracy: float
    """Top-1 accuracy on the held-out rows only."""
    train_accuracy: float
    """Top-1 accuracy on the rows it was trained on (the gap to ``accuracy`` shows over-fitting)."""
    num_train: int
    num_held_out: int
    seconds: float
    """Wall-clock time to train and evaluate the probe (features already computed)."""
    held_out: np.ndarray = field(repr=False)
    """Indices of the held-out rows of the `FeatureSet`."""
    head: nn.Module = field(repr=False)
    """The trained head (eval mode): `LinearHead` on pooled features or `AttentiveHead` on tokens."""

    def to_dict(self) -> dict[str, Any]:
        """The numbers, JSON-ready."""
        return {k: v for k, v in asdict(self).items() if k not in ("held_out", "head")}


def fit_probe(features: FeatureSet, kind: ProbeKind, cfg: ProbeConfig | None = None) -> ProbeResult:
    """Train one probe on the training split of ``features``; accuracy on the held-out split."""
    cfg = (cfg or ProbeConfig()).validate()
    if kind not in ("linear", "attentive"):
        raise ValueError(f"probe kind {kind!r} is invalid: expected 'linear' or 'attentive'")
    t0 = time.perf_counter()
    train_idx, held_idx = split_held_out(features.labels, features.paths, cfg.held_out, cfg.seed)
    if len(held_idx) == 0:
        raise ValueError(
            f"the held-out split of {len(features)} rows is empty: every class needs two files or more "
            f"(held_out={cfg.held_out})"
        )
    device = resolve_device(cfg.device)
    x = torch.from_numpy(features.pooled if kind == "linear" else features.tokens()).float()
    y = torch.from_numpy(features.labels).long()
    num_classes = max(len(features.classes), int(y.max()) + 1)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        head: nn.Module = (
            LinearHead(x.shape[-1], num_classes)
            if kind == "linear"
            else AttentiveHead(x.shape[-1], num_classes, cfg.num_heads, cfg.num_queries)
        )
    head.to(device)
    if isinstance(head, LinearHead):
        _fit_linear(head, x[train_idx].to(device), y[train_idx].to(device), cfg)
    else:
        _train_attentive(head, x[train_idx], y[train_idx], cfg, device)
    head.eval()
    return ProbeResult(
        kind=kind,
        accuracy=top1_accuracy(head, x[held_idx], y[held_idx], cfg.batch_size),
        train_accuracy=top1_accuracy(head, x[train_idx], y[train_idx], cfg.batch_size),
        num_train=len(train_idx),
        num_held_out=len(held_idx),
        seconds=time.perf_counter() - t0,
        held_out=held_idx,
        head=head,
    )


def _fit_linear(head: LinearHead, x: torch.Tensor, y: torch.Tensor, cfg: ProbeConfig) -> None:
    """Standardise with the training rows' statistics, then fit an L2-penalised multinomial logistic
    regression with full-batch L-BFGS (deterministic, no learning rate to tune)."""
    head.fit_statistics(x)
    xs = (x - head.mean) / head.std
    optimizer = torch.optim.LBFGS(
        head.fc.parameters(), max_iter=cfg.linear_max_iter, history_size=20, line_search_fn="strong_wolfe"
    )

    def closure() -> torch.Tensor:
        optimizer.zero_grad(set_to_none=True)
        loss = F.cross_entropy(head.fc(xs), y) + cfg.linear_l2 * head.fc.weight.pow(2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)


def _train_attentive(
    head: nn.Module, x: torch.Tensor, y: torch.Tensor, cfg: ProbeConfig, device: torch.device
) -> None:
    """The attentive probe: AdamW with warm-up and cosine decay, cross-entropy, batches in a seeded order."""
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    for name, p in head.named_parameters():
        (no_decay if p.ndim < 2 or name.endswith("queries") else decay).append(p)
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=cfg.learning_rate)
    gen = torch.Generator().manual_seed(cfg.seed)
    per_epoch = math.ceil(len(x) / cfg.batch_size)
    total, step = cfg.epochs * per_epoch, 0
    head.train()
    for _ in range(cfg.epochs):
        for idx in torch.randperm(len(x), generator=gen).split(cfg.batch_size):
            if len(idx) < 2:  # a batch norm needs two samples
                continue
            lr = warmup_cosine(step, total, cfg.learning_rate, 0.0, cfg.warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(head(x[idx].to(device)), y[idx].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1


@torch.no_grad()
def top1_accuracy(head: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 256) -> float:
    """Fraction of rows whose highest logit is their label (NaN for no rows)."""
    if len(x) == 0:
        return float("nan")
    device = next(head.parameters()).device
    correct = sum(
        int((head(xb.to(device)).argmax(dim=-1).cpu() == yb).sum())
        for xb, yb in zip(x.split(batch_size), y.split(batch_size))
    )
    return correct / len(x)


def run_probes(features: FeatureSet, cfg: ProbeConfig | None = None) -> dict[str, ProbeResult]:
    """The probes ``cfg.kind`` names, on the same cached features and the same held-out split."""
    cfg = (cfg or ProbeConfig()).validate()
    kinds: list[ProbeKind] = ["linear", "attentive"] if cfg.kind == "both" else [cfg.kind]  # type: ignore[list-item]
    return {kind: fit_probe(features, kind, cfg) for kind in kinds}


def probe_checkpoint(
    checkpoint: str | Path,
    data: str | Path,
    cfg: ProbeConfig | None = None,
    data_kind: DataKind = "auto",
    batch_size: int = 32,
    progress: bool = True,
) -> dict[str, ProbeResult]:
    """Encode ``data`` (class sub-folders) once with a checkpoint's frozen encoder, then train the probes."""
    cfg = (cfg or ProbeConfig()).validate()
    encoder, jepa_cfg = load_encoder(checkpoint, cfg.device)
    dataset = labelled_dataset(data, jepa_cfg, data_kind)
    kind: FeatureKind = "pooled" if cfg.kind == "linear" else "both"
    features = extract_features(encoder, dataset, jepa_cfg.image_size, kind, batch_size, progress=progress)
    return run_probes(features, cfg)
