"""Clip augmentations for fine-tuning, in torch alone: random resized crop, horizontal flip, colour jitter.

Each takes a batch of normalised float clips [B, T, C, H, W] (what `wm.encoders.prepare_frames`
gives), draws one set of parameters per clip from the passed generator, and applies it to every
frame of that clip, so that the motion inside a clip stays intact. All clips of a batch are
transformed at once (no Python loop over samples).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torchwm.wm.encoders import PIXEL_MEAN, PIXEL_STD

_LUMA = (0.299, 0.587, 0.114)


def _uniform(n: int, low: float, high: float, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    return (low + (high - low) * torch.rand(n, generator=gen)).to(device)


def random_resized_crop(
    clips: torch.Tensor,
    gen: torch.Generator,
    scale: tuple[float, float] = (0.6, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a random box (area fraction in ``scale``, aspect in ``ratio``) of each clip, resized back.

    clips: float [B, T, C, H, W] -> same shape; one box per clip, the same for all its frames.
    """
    b, t, c, h, w = clips.shape
    area = _uniform(b, scale[0], scale[1], gen, clips.device)
    aspect = torch.exp(_uniform(b, math.log(ratio[0]), math.log(ratio[1]), gen, clips.device))
    bw = torch.sqrt(area * aspect).clamp(max=1.0)  # box width as a fraction of the frame
    bh = torch.sqrt(area / aspect).clamp(max=1.0)
    cx = (2 * _uniform(b, 0, 1, gen, clips.device) - 1) * (1 - bw)  # box centre in [-1, 1] coordinates
    cy = (2 * _uniform(b, 0, 1, gen, clips.device) - 1) * (1 - bh)
    zero = torch.zeros_like(bw)
    theta = torch.stack([torch.stack([bw, zero, cx], -1), torch.stack([zero, bh, cy], -1)], 1)  # (B, 2, 3)
    theta = repeat(theta, "b i j -> (b t) i j", t=t).to(clips.dtype)
    frames = rearrange(clips, "b t c h w -> (b t) c h w")
    grid = F.affine_grid(theta, list(frames.shape), align_corners=False)
    out = F.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=False)
    return rearrange(out, "(b t) c h w -> b t c h w", b=b)


def random_flip(clips: torch.Tensor, gen: torch.Generator, prob: float = 0.5) -> torch.Tensor:
    """Mirror each clip left-right with probability ``prob``: float [B, T, C, H, W] -> same shape.

    Mirroring swaps left and right motion: keep ``prob=0`` where the label depends on direction.
    """
    flip = _uniform(clips.shape[0], 0, 1, gen, clips.device) < prob
    return torch.where(flip[:, None, None, None, None], clips.flip(-1), clips)


def color_jitter(clips: torch.Tensor, gen: torch.Generator, strength: float = 0.1) -> torch.Tensor:
    """Scale brightness, contrast and saturation of each clip by factors in [1 - strength, 1 + strength].

    clips: normalised float [B, T, C, H, W] (RGB for saturation; other channel counts skip it) -> same shape.
    """
    b, device = clips.shape[0], clips.device
    shape = (b, 1, 1, 1, 1)
    x = clips * PIXEL_STD + PIXEL_MEAN  # back to [0, 1] pixels
    x = x * _uniform(b, 1 - strength, 1 + strength, gen, device).view(shape)
    mean = x.mean(dim=(1, 2, 3, 4), keepdim=True)
    x = mean + (x - mean) * _uniform(b, 1 - strength, 1 + strength, gen, device).view(shape)
    if x.shape[2] == 3:
        grey = (x * torch.tensor(_LUMA, device=device, dtype=x.dtype).view(1, 1, 3, 1, 1)).sum(
            2, keepdim=True
        )
        x = grey + (x - grey) * _uniform(b, 1 - strength, 1 + strength, gen, device).view(shape)
    return (x.clamp(0.0, 1.0) - PIXEL_MEAN) / PIXEL_STD


def augment_clips(
    clips: torch.Tensor, gen: torch.Generator, crop_scale: float, flip_prob: float, jitter: float
) -> torch.Tensor:
    """Random resized crop (area >= ``crop_scale``; 1 skips it), flip, colour jitter (0 skips it)."""
    if crop_scale < 1.0:
        clips = random_resized_crop(clips, gen, (crop_scale, 1.0))
    if flip_prob > 0:
        clips = random_flip(clips, gen, flip_prob)
    if jitter > 0:
        clips = color_jitter(clips, gen, jitter)
    return clips
