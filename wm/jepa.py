"""The JEPA: a context encoder, an EMA target encoder and a masked predictor, and its training loss."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchwm.wm.checkpoint import (
    jepa_config_of,
    load_state_checked,
    load_weights,
    resolve_checkpoint,
    save_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.encoders import MaskedPredictor, VisionEncoder
from torchwm.wm.losses import collapse_stats, covariance_loss, prediction_loss, variance_loss
from torchwm.wm.masks import MaskSpec, gather_tokens
from torchwm.wm.schedule import linear_ramp


@dataclass
class JEPAOutput:
    """Loss terms of one step (``loss`` is their weighted sum) and, when asked, the collapse monitor."""

    loss: torch.Tensor
    terms: dict[str, torch.Tensor]
    monitor: dict[str, float]


def build_encoder(cfg: JEPAConfig) -> VisionEncoder:
    """The encoder described by a config."""
    return VisionEncoder(
        cfg.encoder,
        cfg.image_size,
        cfg.patch_size,
        cfg.num_frames,
        cfg.tubelet_size,
        cfg.in_channels,
        cfg.embed_dim,
        cfg.num_layers,
        cfg.num_heads,
        cfg.mlp_ratio,
    )


def mask_spec(cfg: JEPAConfig) -> MaskSpec:
    """The masks described by a config."""
    return MaskSpec(
        cfg.masking,
        cfg.time_steps,
        cfg.grid_size,
        cfg.mask_ratio,
        cfg.mask_num_blocks,
        cfg.mask_block_scale,
        cfg.predict_horizon,
    )


class JEPA(nn.Module):
    """Encoder + EMA target encoder + masked predictor."""

    def __init__(self, cfg: JEPAConfig) -> None:
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = build_encoder(cfg)
        self.target_encoder = copy.deepcopy(self.encoder).requires_grad_(False)
        self.predictor = MaskedPredictor(
            cfg.embed_dim,
            cfg.predictor_dim,
            cfg.predictor_depth,
            cfg.predictor_heads,
            cfg.time_steps,
            cfg.grid_size,
            cfg.mlp_ratio,
        )

    def save_pretrained(self, path: str | Path, trainer_state: dict[str, Any] | None = None) -> Path:
        """Write this JEPA as a checkpoint directory (atomically); `from_pretrained` reads it back."""
        return save_checkpoint(path, {"kind": "jepa", "jepa": self.cfg.to_dict()}, self.state_dict(), trainer_state)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> JEPA:
        """A JEPA from its checkpoint (or run) directory, in eval mode."""
        ckpt = resolve_checkpoint(path)
        model = cls(jepa_config_of(ckpt))
        load_state_checked(model, load_weights(ckpt), ckpt)
        return model.to(device).eval()

    def forward(
        self, clips: torch.Tensor, masks: list[tuple[torch.Tensor, torch.Tensor]], monitor: bool = False
    ) -> JEPAOutput:
        """clips: float [B, T, C, H, W]; masks: one (context [B, Nc], target [B, Nt]) pair per view."""
        cfg = self.cfg
        with torch.no_grad():
            target_tokens = self.target_encoder(clips)  # (B, N, D)
            targets = F.layer_norm(target_tokens, target_tokens.shape[-1:])
        pred_losses, pooled, contexts = [], [], []
        for ctx_idx, tgt_idx in masks:
            context = self.encoder(clips, ctx_idx)  # (B, Nc, D)
            pred = self.predictor(context, ctx_idx, tgt_idx)  # (B, Nt, D)
            pred_losses.append(prediction_loss(pred, gather_tokens(targets, tgt_idx), cfg.loss))
            pooled.append(context.mean(dim=1))
            contexts.append(context)
        terms = {"prediction": torch.stack(pred_losses).mean()}
        loss = terms["prediction"]
        flat = torch.cat([c.reshape(-1, c.shape[-1]) for c in contexts])
        if cfg.var_weight > 0:
            terms["variance"] = variance_loss(flat)
            loss = loss + cfg.var_weight * terms["variance"]
        if cfg.cov_weight > 0:
            terms["covariance"] = covariance_loss(flat)
            loss = loss + cfg.cov_weight * terms["covariance"]
        if len(pooled) > 1:
            terms["cross_view"] = F.mse_loss(pooled[0], pooled[1])
            loss = loss + cfg.cross_view_weight * terms["cross_view"]
        stats = collapse_stats(target_tokens) if monitor else {}
        return JEPAOutput(loss, terms, stats)

    @property
    def num_views(self) -> int:
        """Mask sets drawn per clip: two when cross-view consistency is on."""
        return 2 if self.cfg.cross_view_weight > 0 else 1

    @torch.no_grad()
    def update_target(self, momentum: float) -> None:
        """target <- momentum * target + (1 - momentum) * encoder, parameter by parameter."""
        tgt: list[torch.Tensor] = list(self.target_encoder.parameters())
        src = [p.detach() for p in self.encoder.parameters()]
        torch._foreach_lerp_(tgt, src, 1.0 - momentum)


def ema_momentum(cfg: JEPAConfig, step: int, total_steps: int) -> float:
    """Momentum at ``step``: linear ramp from ``ema_start`` to ``ema_end`` over training."""
    return linear_ramp(step, total_steps, cfg.ema_start, cfg.ema_end)
