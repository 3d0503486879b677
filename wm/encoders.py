"""Vision Transformer encoders over frames (``spatial``) or clips of tubelets (``temporal``).

Both take float clips [B, T, C, H, W] and give tokens [B, N, D] in (t, h, w) order, so masks, the
predictor and the world model see the same layout. The spatial encoder never mixes frames: with all
tokens it folds time into the batch, and with a subset of tokens (a JEPA context) it attends within a
frame only, through a block-diagonal attention mask.
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchwm.wm.layers import Block, TubeletEmbed, init_weights, sincos_3d
from torchwm.wm.masks import gather_tokens

PIXEL_MEAN = 0.5
PIXEL_STD = 0.25


def prepare_frames(frames: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 frames [B, T, H, W, C] -> normalised float clips [B, T, C, image_size, image_size].

    The model owns resizing and normalisation, so every caller hands it frames as environments and
    decoders give them.
    """
    if frames.ndim != 5 or frames.numel() == 0:
        raise ValueError(f"expected non-empty uint8 frames [B, T, H, W, C], got shape {tuple(frames.shape)}")
    if frames.dtype != torch.uint8:
        raise TypeError(f"expected uint8 frames (0..255), got dtype {frames.dtype}")
    b = frames.shape[0]
    x = rearrange(frames, "b t h w c -> (b t) c h w").float().div_(255.0)
    if x.shape[-2:] != (image_size, image_size):
        x = F.interpolate(x, size=(image_size, image_size), mode="bilinear", antialias=True, align_corners=False)
    x = (x - PIXEL_MEAN) / PIXEL_STD
    return rearrange(x, "(b t) c h w -> b t c h w", b=b)


class VisionEncoder(nn.Module):
    """ViT encoder: tubelet embedding + fixed space-time positions + pre-norm blocks + final norm."""

    pos_embed: torch.Tensor  # fixed sin-cos positions [N, D] (a buffer)

    def __init__(
        self,
        kind: Literal["spatial", "temporal"],
        image_size: int,
        patch_size: int,
        num_frames: int,
        tubelet_size: int,
        in_channels: int,
        dim: int,
        depth: int,
        num_heads: int,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        self.kind = kind
        self.grid = image_size // patch_size
        self.tubelet = tubelet_size
        self.dim = dim
        self.patch_embed = TubeletEmbed(patch_size, tubelet_size, in_channels, dim)
        pos_steps = 1 if kind == "spatial" else num_frames // tubelet_size
        self.register_buffer("pos_embed", sincos_3d(dim, pos_steps, self.grid), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.apply(init_weights)

    @property
    def tokens_per_step(self) -> int:
        return self.grid**2

    def forward(self, clips: torch.Tensor, keep: torch.Tensor | None = None) -> torch.Tensor:
        """clips: float [B, T, C, H, W]; keep: token indices [B, M] or None -> tokens [B, M or N, D]."""
        if self.kind == "spatial" and keep is None:
            b = clips.shape[0]
            tokens = self._run(rearrange(clips, "b t c h w -> (b t) 1 c h w"), None, None)
            return rearrange(tokens, "(b t) n d -> b (t n) d", b=b)
        return self._run(clips, keep, self._frame_mask(keep))

    def _run(self, clips: torch.Tensor, keep: torch.Tensor | None, mask: torch.Tensor | None) -> torch.Tensor:
        x = self.patch_embed(clips)  # (B, N, D)
        steps = x.shape[1] // self.tokens_per_step
        if self.kind == "spatial":
            x = x + self.pos_embed.repeat(steps, 1)
        else:
            if steps * self.tokens_per_step > self.pos_embed.shape[0]:
                raise ValueError(
                    f"clip has {steps} time steps but the encoder was built for "
                    f"{self.pos_embed.shape[0] // self.tokens_per_step}"
                )
            x = x + self.pos_embed[: x.shape[1]]
        if keep is not None:
            x = gather_tokens(x, keep)
        for block in self.blocks:
            x = block(x, mask)
        return self.norm(x)

    def _frame_mask(self, keep: torch.Tensor | None) -> torch.Tensor | None:
        """Block-diagonal attention mask [B, 1, M, M] keeping a spatial encoder within each frame."""
        if self.kind != "spatial" or keep is None:
            return None
        frame = keep // self.tokens_per_step
        return (frame[:, :, None] == frame[:, None, :]).unsqueeze(1)


class MaskedPredictor(nn.Module):
    """Narrow ViT that predicts target tokens from context tokens plus learned mask tokens."""

    pos_embed: torch.Tensor  # fixed sin-cos positions [N, D_pred] (a buffer)

    def __init__(
        self, embed_dim: int, dim: int, depth: int, num_heads: int, time_steps: int, grid: int, mlp_ratio: float = 4.0
    ) -> None:
        super().__init__()
        self.embed = nn.Linear(embed_dim, dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, dim))
        self.register_buffer("pos_embed", sincos_3d(dim, time_steps, grid), persistent=False)
        self.blocks = nn.ModuleList(Block(dim, num_heads, mlp_ratio) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, embed_dim)
        self.apply(init_weights)
        nn.init.trunc_normal_(self.mask_token, std=0.02)

    def forward(self, context: torch.Tensor, ctx_idx: torch.Tensor, tgt_idx: torch.Tensor) -> torch.Tensor:
        """context [B, Nc, D_enc] at ctx_idx [B, Nc]; returns predictions [B, Nt, D_enc] at tgt_idx [B, Nt]."""
        pos = self.pos_embed.unsqueeze(0).expand(context.shape[0], -1, -1)
        x = self.embed(context) + gather_tokens(pos, ctx_idx)
        m = self.mask_token + gather_tokens(pos, tgt_idx)
        h = torch.cat([x, m], dim=1)
        for block in self.blocks:
            h = block(h)
        return self.head(self.norm(h[:, context.shape[1] :]))
