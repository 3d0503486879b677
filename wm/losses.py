"""JEPA objectives and the collapse monitor.

All inputs are latents; nothing here sees a pixel.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F


def prediction_loss(pred: torch.Tensor, target: torch.Tensor, kind: Literal["mse", "l1"] = "mse") -> torch.Tensor:
    """Mean distance between predicted and target latents [B, Nt, D]."""
    if kind == "mse":
        return F.mse_loss(pred, target)
    if kind == "l1":
        return F.l1_loss(pred, target)
    raise ValueError(f"unknown loss {kind!r}; expected 'mse' or 'l1'")


def variance_loss(x: torch.Tensor, eps: float = 1e-4) -> torch.Tensor:
    """VICReg variance hinge: mean over dimensions of relu(1 - std). x: [M, D] samples x features."""
    std = torch.sqrt(x.float().var(dim=0) + eps)
    return F.relu(1.0 - std).mean()


def covariance_loss(x: torch.Tensor) -> torch.Tensor:
    """VICReg covariance penalty: squared off-diagonal covariances / D. x: [M, D]."""
    x = x.float()
    x = x - x.mean(dim=0)
    cov = (x.T @ x) / max(x.shape[0] - 1, 1)
    off = cov - torch.diag(torch.diag(cov))
    return off.pow(2).sum() / x.shape[1]


@torch.no_grad()
def collapse_stats(x: torch.Tensor, max_rows: int = 4096) -> dict[str, float]:
    """Spread of embeddings x [M, D]: mean and min per-dimension std, and the effective rank.

    Effective rank is exp(entropy) of the normalised singular values (Roy & Vetterli, 2007): near D for a
    well-spread representation, near 1 for a collapsed one.
    """
    x = x.float().reshape(-1, x.shape[-1])[:max_rows]
    std = x.std(dim=0)
    s = torch.linalg.svdvals(x - x.mean(dim=0))
    p = s / s.sum().clamp_min(1e-12)
    entropy = -(p * torch.log(p.clamp_min(1e-12))).sum()
    return {
        "embed_std_mean": std.mean().item(),
        "embed_std_min": std.min().item(),
        "effective_rank": torch.exp(entropy).item(),
    }
