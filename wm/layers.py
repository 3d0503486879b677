"""Transformer building blocks: attention through `scaled_dot_product_attention`, MLP, pre-norm block,
patch (tubelet) embedding and fixed sin-cos positional embeddings."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention with an optional boolean mask (True = may attend)."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        """x: [B, N, D]; attn_mask: broadcastable to [B, heads, N, N]. Returns [B, N, D]."""
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.num_heads)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask)  # (B, h, N, d)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class MLP(nn.Module):
    """Two linear layers with GELU between."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = MLP(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor, attn_mask: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), attn_mask)
        return x + self.mlp(self.norm2(x))


class TubeletEmbed(nn.Module):
    """Cut a clip into tubelets of ``tubelet`` frames x ``patch``² pixels and project each to ``dim``.

    A linear layer on einops-rearranged patches (the same as a strided Conv3d, but one matmul).
    """

    def __init__(self, patch: int, tubelet: int, channels: int, dim: int) -> None:
        super().__init__()
        self.patch, self.tubelet = patch, tubelet
        self.proj = nn.Linear(channels * tubelet * patch * patch, dim)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        """clips: float [B, T, C, H, W] -> tokens [B, T/tubelet * H/patch * W/patch, D] in (t, h, w) order."""
        patches = rearrange(
            clips,
            "b (t pt) c (h ph) (w pw) -> b (t h w) (pt c ph pw)",
            pt=self.tubelet,
            ph=self.patch,
            pw=self.patch,
        )
        return self.proj(patches)


def sincos_1d(dim: int, positions: torch.Tensor) -> torch.Tensor:
    """Fixed sin-cos embedding of float positions [N] -> [N, dim] (dim even)."""
    freqs = torch.exp(-math.log(10000.0) * torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angles = positions.double()[:, None] * freqs[None]
    return torch.cat([angles.sin(), angles.cos()], dim=1).float()


def sincos_3d(dim: int, time_steps: int, grid: int) -> torch.Tensor:
    """Space-time sin-cos embedding [time_steps * grid * grid, dim] in (t, h, w) order.

    The width is split between time (a quarter) and the two spatial axes (three eighths each), rounded
    to even sizes; with one time step the time part is constant and harmless.
    """
    dt = 2 * ((dim // 4) // 2)
    dh = 2 * (((dim - dt) // 2) // 2)
    dw = dim - dt - dh
    t, h, w = torch.meshgrid(
        torch.arange(time_steps), torch.arange(grid), torch.arange(grid), indexing="ij"
    )
    parts = [sincos_1d(dt, t.flatten()), sincos_1d(dh, h.flatten()), sincos_1d(dw - dw % 2, w.flatten())]
    emb = torch.cat(parts, dim=1)
    return F.pad(emb, (0, dim - emb.shape[1]))


def init_weights(module: nn.Module) -> None:
    """Truncated-normal linear weights, zero biases, unit LayerNorms (ViT convention)."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
