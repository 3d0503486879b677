"""The world model's training maths, used by `torchwm.wm.wm_trainer` (the model itself holds only what inference
needs: encoding, the rollout API and checkpoints).

- `training_latents`: online latents with gradients and EMA-target latents without, of frame sequences;
- `pooled_features`, `set_feature_stats`, `latents_from_pooled`: a frozen encoder's pooled regions, computed once
  per frame and cached by the trainer, and the latents made from them;
- `teacher_forced`, `autoregressive`: the dynamics' predictions with gradients, from the true latents or fed back;
- `value_loss`, `init_value_scale`: the value's expectile temporal-difference loss and its units;
- `update_targets`: the EMA of the latent head, the value head, and an encoder that trains.

Shape letters: B batch, T time steps, H horizon, K tokens a step, D width of a latent token, F width of a pooled
region, P proprioception entries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from einops import rearrange
from torch import nn
from torchwm.wm.dynamics import KVCache
from torchwm.wm.world_model import LatentHead, WorldModel


def _by_step(x: torch.Tensor, b: int) -> torch.Tensor:
    return rearrange(x, "(b t) k d -> b t k d", b=b)


def training_latents(
    model: WorldModel, frames: torch.Tensor, online_targets: bool = False, history: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(online z [B, T, K, D] with gradients to the head (and encoder), EMA target z without) of frames
    [B, history + T, H, W, C] (the ``history`` frames only fill a temporal encoder's first clips).

    ``online_targets``: the targets are the online latents themselves, detached (what an EMA of momentum 0
    gives), so the target encoder's forward pass is skipped."""
    b = frames.shape[0]
    if online_targets:
        tokens = model._step_tokens(frames, model.encoder, history)
        z = _by_step(model.head(model._flat(tokens)), b)
        return z, z.detach()
    if model.freeze_encoder:
        with torch.no_grad():
            tokens = model._step_tokens(frames, model.encoder, history)
        target_tokens = tokens
    else:
        tokens = model._step_tokens(frames, model.encoder, history)
        assert model.target_encoder is not None  # made whenever the encoder is trained
        with torch.no_grad():
            target_tokens = model._step_tokens(frames, model.target_encoder, history)
    z = model.head(model._flat(tokens))
    with torch.no_grad():
        z_tgt = model.target_head(model._flat(target_tokens))
    return _by_step(z, b), _by_step(z_tgt, b)


@torch.no_grad()
def pooled_features(model: WorldModel, frames: torch.Tensor) -> torch.Tensor:
    """Frozen-encoder pooled regions of every step: uint8 [B, T, H, W, C] -> [B, T, K, F] (`LatentHead.pool`).

    With a frozen encoder these never change, so a trainer computes them once per frame.
    """
    tokens = model._step_tokens(model.check_frames(frames), model.encoder)
    return _by_step(model.head.pool(model._flat(tokens)), frames.shape[0])


@torch.no_grad()
def set_feature_stats(model: WorldModel, pooled: torch.Tensor) -> None:
    """Centre the latent heads' input on the mean of a data set's pooled regions [N, K, F], at unit RMS.

    A frozen encoder's region means differ between states by ~1e-3 of their size (the static scene dominates
    them), so without this the latents barely move when the agent does, and the dynamics learn nothing about
    motion.
    """
    mean = pooled.mean(0)
    scale = (pooled - mean).pow(2).mean().sqrt().clamp_min(1e-12)
    heads: tuple[LatentHead, LatentHead] = (model.head, model.target_head)
    for head in heads:
        head.feature_mean.copy_(mean)
        head.feature_scale.copy_(scale)


def latents_from_pooled(model: WorldModel, pooled: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(online z, EMA target z) [B, T, K, D] from cached pooled regions [B, T, K, F]."""
    with torch.no_grad():
        z_tgt = model.target_head.project(pooled)
    return model.head.project(pooled), z_tgt


def teacher_forced(
    model: WorldModel, z: torch.Tensor, actions: torch.Tensor, proprio: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One block-causal pass, with gradients: predictions of z_1..z_T [B, T-1, K, D] from z_0..z_{T-1}, and of the
    proprioception p_1..p_T [B, T-1, P] (None without it)."""
    pred, p_pred, _ = model.dynamics.forward_full(
        z[:, :-1], actions[:, :-1], None, None if proprio is None else proprio[:, :-1]
    )
    return pred, p_pred


def autoregressive(
    model: WorldModel, z0: torch.Tensor, actions: torch.Tensor, horizon: int, proprio0: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Predictions of z_1..z_H fed back as inputs, with gradients, from z0 [B, K, D] (and p_0 [B, P], fed back
    alike): (z [B, H, K, D], p [B, H, P] or None)."""
    out: list[torch.Tensor] = []
    out_p: list[torch.Tensor] = []
    cache: KVCache | None = None
    z = z0.unsqueeze(1)
    p = None if proprio0 is None else proprio0.unsqueeze(1)
    for h in range(horizon):
        z, p, cache = model.dynamics.forward_full(z, actions[:, h : h + 1], cache, p)
        out.append(z[:, 0])
        if p is not None:
            out_p.append(p[:, 0])
    return torch.stack(out, dim=1), (torch.stack(out_p, dim=1) if out_p else None)


def value_loss(model: WorldModel, z: torch.Tensor, rewards: torch.Tensor, expectile: float) -> torch.Tensor:
    """Expectile TD loss of the value head on target latents z [B, T, K, D] and rewards r_t [B, T] of (z_t, a_t):
    V(z_t) regresses on r_t + discount * V'(z_{t+1}) for t < T - 1 (V' the EMA target), errors above the
    prediction weighted ``expectile`` and below it ``1 - expectile``, in units of the head's scale.

    Every z_{t+1} of a training sequence precedes its episode's last frame, so no target bootstraps from a
    terminal state (an episode's last transition is not trained on)."""
    assert model.value_head is not None and model.target_value_head is not None
    v = model.value_head(z[:, :-1])  # (B, T-1)
    with torch.no_grad():
        target = rewards[:, :-1] + model.spec.discount * model.target_value_head(z[:, 1:])
    error = (target - v) / model.value_head.scale
    weight = torch.where(error > 0, expectile, 1.0 - expectile)
    return (weight * error.pow(2)).mean()


@torch.no_grad()
def init_value_scale(model: WorldModel, rewards: Sequence[np.ndarray], frame_step: int) -> None:
    """Set the value heads' units to the mean absolute reward of a model step over (1 - discount): the size of
    the returns the recorded rewards ([L] raw steps per episode; a model step sums ``frame_step`` of them) add
    up to."""
    assert model.value_head is not None and model.target_value_head is not None
    per_step = np.concatenate([np.asarray(r, np.float64) for r in rewards]) * frame_step
    scale = max(float(np.abs(per_step).mean()), 1e-6) / (1.0 - model.spec.discount)
    model.value_head.scale.fill_(scale)
    model.target_value_head.scale.fill_(scale)


@torch.no_grad()
def update_targets(model: WorldModel, momentum: float) -> None:
    """EMA of the latent head, the value head (and of the encoder when it is trained)."""
    pairs: list[tuple[nn.Module, nn.Module]] = [(model.target_head, model.head)]
    if model.value_head is not None and model.target_value_head is not None:
        pairs.append((model.target_value_head, model.value_head))
    if model.target_encoder is not None:
        pairs.append((model.target_encoder, model.encoder))
    for target, online in pairs:
        torch._foreach_lerp_(
            list[torch.Tensor](target.parameters()), [p.detach() for p in online.parameters()], 1.0 - momentum
        )


__all__ = [
    "autoregressive", "init_value_scale", "latents_from_pooled", "pooled_features", "set_feature_stats",
    "teacher_forced", "training_latents", "update_targets", "value_loss",
]  # fmt: skip
