"""Masks for JEPA training, made for a whole batch at once as index tensors.

Every sample of a batch gets the same number of context and of target tokens, so nothing is padded
and no sample's list is cut to the batch minimum (which, done by sorting, always drops the tokens of
the last rows and frames). Tokens are numbered in (t, h, w) order over a grid of ``time_steps`` x
``grid`` x ``grid``. Randomness comes from a passed `torch.Generator`, so a seed reproduces a mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

MaskingKind = Literal["block", "random", "temporal"]


@dataclass(frozen=True)
class MaskSpec:
    """What to mask, on which token grid."""

    kind: MaskingKind
    """``block`` (rectangles as tubes through time), ``random`` (single tokens) or ``temporal`` (last steps)."""
    time_steps: int
    """Token time steps of a clip."""
    grid: int
    """Patches along one side of a frame."""
    mask_ratio: float = 0.75
    """Fraction of the tokens that are targets (``block`` and ``random``)."""
    num_blocks: int = 8
    """Most rectangles unioned into one ``block`` mask."""
    block_scale: float = 0.15
    """Area of one rectangle as a fraction of the frame."""
    predict_horizon: int = 1
    """Time steps masked by ``temporal``."""

    @property
    def num_tokens(self) -> int:
        return self.time_steps * self.grid**2

    @property
    def num_targets(self) -> int:
        """Target tokens per sample (the same for every sample)."""
        spatial = self.grid**2
        if self.kind == "temporal":
            return self.predict_horizon * spatial
        if self.kind == "block":
            return self.time_steps * _clamp_count(self.mask_ratio * spatial, spatial)
        return _clamp_count(self.mask_ratio * self.num_tokens, self.num_tokens)


def _clamp_count(x: float, n: int) -> int:
    return min(max(round(x), 1), n - 1)


def make_masks(
    spec: MaskSpec, batch_size: int, generator: torch.Generator | None = None, device: torch.device | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw masks for a batch. Returns (context [B, N - Nt], target [B, Nt]) sorted token indices, disjoint."""
    if spec.kind == "random":
        is_target = _random_targets(spec, batch_size, generator)
    elif spec.kind == "block":
        is_target = _block_targets(spec, batch_size, generator)
    elif spec.kind == "temporal":
        is_target = torch.zeros(batch_size, spec.num_tokens, dtype=torch.bool)
        is_target[:, spec.num_tokens - spec.num_targets :] = True
    else:
        raise ValueError(f"unknown masking {spec.kind!r}; expected 'block', 'random' or 'temporal'")
    # Stable sort of the boolean puts context (False) first and targets last, each in ascending order.
    order = torch.argsort(is_target.to(torch.uint8), dim=1, stable=True)
    n_ctx = spec.num_tokens - spec.num_targets
    return order[:, :n_ctx].to(device), order[:, n_ctx:].to(device)


def _pick_lowest(scores: torch.Tensor, count: int) -> torch.Tensor:
    """Boolean [B, N] marking the ``count`` lowest scores of each row."""
    idx = torch.topk(scores, count, dim=1, largest=False).indices
    return torch.zeros_like(scores, dtype=torch.bool).scatter_(1, idx, True)


def _random_targets(spec: MaskSpec, batch: int, gen: torch.Generator | None) -> torch.Tensor:
    scores = torch.rand(batch, spec.num_tokens, generator=gen)
    return _pick_lowest(scores, spec.num_targets)


def _block_targets(spec: MaskSpec, batch: int, gen: torch.Generator | None) -> torch.Tensor:
    """Union of random rectangles until the target count is reached, trimmed to it exactly, as tubes."""
    g, nb = spec.grid, spec.num_blocks
    n_spatial = spec.num_targets // spec.time_steps
    area = spec.block_scale * g * g
    aspect = torch.exp(torch.empty(batch, nb).uniform_(math.log(0.75), math.log(1.5), generator=gen))
    h = (area * aspect).sqrt().round().clamp(1, g)
    w = (area / aspect).sqrt().round().clamp(1, g)
    # Top-left corners range over [-(side-1), g-1]: every cell is covered with the same probability,
    # so the masks favour neither the centre nor a corner. Rectangles are clipped to the grid.
    y0 = (torch.rand(batch, nb, generator=gen) * (g + h - 1)).floor() - (h - 1)
    x0 = (torch.rand(batch, nb, generator=gen) * (g + w - 1)).floor() - (w - 1)
    ys = torch.arange(g).view(1, 1, g, 1)
    xs = torch.arange(g).view(1, 1, 1, g)
    rects = (ys >= y0[..., None, None]) & (ys < (y0 + h)[..., None, None])
    rects = rects & (xs >= x0[..., None, None]) & (xs < (x0 + w)[..., None, None])  # (B, nb, g, g)
    union = rects.flatten(2).cumsum(dim=1) > 0  # union of the first k+1 rectangles, (B, nb, g*g)
    reached = union.sum(dim=2) >= n_spatial
    k = torch.where(reached.any(dim=1), reached.to(torch.uint8).argmax(dim=1), nb - 1)
    chosen = union[torch.arange(batch), k]  # (B, g*g)
    # Exact count: random cells of the union first; if the union is short, random cells outside it.
    scores = torch.rand(batch, g * g, generator=gen) + (~chosen).float() * 2.0
    spatial = _pick_lowest(scores, n_spatial)
    return spatial.repeat(1, spec.time_steps)  # tubes: the same cells in every time step


def gather_tokens(x: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """Select tokens: x [B, N, D], idx [B, M] -> [B, M, D]."""
    return torch.gather(x, 1, idx.unsqueeze(-1).expand(-1, -1, x.shape[-1]))
