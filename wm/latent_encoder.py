"""The latent-encoder adapter: frames in, the current latent out, for everything that acts on latents.

    uint8 frames [B, window, H, W, C] (oldest first) --encoder, latent head--> z [B, K, D] of the last frame

A `LatentEncoder` is built from a world model, a JEPA (agent or module), or a checkpoint (or run)
directory of either (`latent_encoder`); the latent wrappers, the SB3 features extractors and latent
policies, the MPC agent's model (`torchwm.agents.latent_model.PlanningModel`) and the dream environment's
start states all encode through it, so a step is encoded the same way everywhere. `FrameHistory` keeps
the last ``window`` frames of N environments that step together.

Shape letters: B batch, N environments, T frames, H, W, C image, K tokens a step, D width of a token.
"""

from __future__ import annotations

import copy
import os
from typing import Any

import numpy as np
import torch
from torch import nn
from torchwm.wm.checkpoint import read_config, resolve_checkpoint
from torchwm.wm.config import JEPAConfig
from torchwm.wm.encoders import VisionEncoder, prepare_frames
from torchwm.wm.jepa import JEPA
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.world_model import WorldModel

EncoderSource = WorldModel | JEPAAgent | JEPA | str | os.PathLike
"""A world model, a JEPA (agent or module), or a checkpoint (or run) directory of either."""


class LatentEncoder(nn.Module):
    """uint8 frames ``[B, T, H, W, C]`` -> the latent of the last step ``[B, K, D]``.

    The model's EMA target encoder (whose latents the dynamics were trained to predict) and, for a world
    model, its latent head. The last step is the only one computed: one clip of the last ``window`` frames (a
    shorter history is padded with its first frame, as the model pads the start of an episode).
    Calling the module keeps gradients where its parameters require them; `encode_numpy` is the inference
    path (numpy in, float32 numpy out, no gradients).

    Attributes: ``window`` (frames a step sees), ``k`` (tokens a step), ``d`` (width of a token),
    ``image_size``, ``in_channels``, ``patch_size`` (the frames the model takes), ``name`` (for messages).
    """

    def __init__(
        self,
        encoder: VisionEncoder,
        head: nn.Module | None,
        cfg: JEPAConfig,
        window: int,
        k: int,
        d: int,
        name: str,
    ) -> None:
        super().__init__()
        self.encoder, self.head = encoder, head
        self.image_size, self.in_channels, self.patch_size = cfg.image_size, cfg.in_channels, cfg.patch_size
        self.window, self.k, self.d, self.name = window, k, d, name

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        frames = frames[:, -self.window :]  # the last `window` frames; fewer: padded with the first (as a clip is)
        if frames.shape[1] < self.window:
            frames = torch.cat([frames[:, :1].expand(-1, self.window - frames.shape[1], -1, -1, -1), frames], dim=1)
        clips = prepare_frames(frames, self.image_size)  # (B, window, C, S, S)
        tokens = self.encoder(clips)[:, -self.encoder.tokens_per_step :]  # (B, g*g, De) of the last step
        return tokens if self.head is None else self.head(tokens)  # (B, K, D)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode_numpy(self, frames: np.ndarray) -> np.ndarray:
        """uint8 frames ``[B, T, H, W, C]`` -> float32 latents ``[B, K, D]`` of the last frame, no gradients."""
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(frames)).to(self.device)
            return self(x).float().cpu().numpy()


def latent_encoder(source: EncoderSource, device: str = "cpu", copy_weights: bool = False) -> LatentEncoder:
    """The `LatentEncoder` of a world model, a JEPA (agent or module), or a checkpoint of either.

    A checkpoint is loaded onto ``device``; a model object stays where it is. The encoder shares the model's
    modules unless ``copy_weights`` (then training it leaves the source untouched).
    """
    take = copy.deepcopy if copy_weights else _same
    if isinstance(source, str | os.PathLike):
        ckpt = resolve_checkpoint(os.fspath(source))
        kind = read_config(ckpt).get("kind")
        if kind == "world_model":
            return _of_world_model(
                WorldModel.from_pretrained(ckpt, device), f"world model checkpoint {ckpt}", _same
            )
        if kind == "jepa":
            return _of_jepa(JEPAAgent.from_pretrained(ckpt, device).model, f"JEPA checkpoint {ckpt}", _same)
        raise ValueError(f"{ckpt} holds a {kind!r} checkpoint; expected kind 'world_model' or 'jepa'")
    if isinstance(source, WorldModel):
        return _of_world_model(source, "world model", take)
    if isinstance(source, JEPAAgent):
        if source.model is None:
            raise ValueError(
                "this JEPAAgent has no model: train it, or load one with JEPAAgent.from_pretrained(dir)"
            )
        return _of_jepa(source.model, "JEPA", take)
    if isinstance(source, JEPA):
        return _of_jepa(source, "JEPA", take)
    raise TypeError(
        f"expected a WorldModel, a JEPAAgent, a JEPA or a checkpoint path, got {type(source).__name__}"
    )


def _same(module: Any) -> Any:
    return module


def _of_world_model(model: WorldModel, name: str, take: Any) -> LatentEncoder:
    encoder = model.target_encoder if model.target_encoder is not None else model.encoder
    return LatentEncoder(
        take(encoder),
        take(model.target_head),
        model.jepa_cfg,
        model.window,
        model.k,
        model.spec.latent_dim,
        name,
    )


def _of_jepa(model: JEPA | None, name: str, take: Any) -> LatentEncoder:
    assert model is not None  # a loaded JEPA checkpoint always holds its model
    cfg = model.cfg
    window = cfg.num_frames if cfg.encoder == "temporal" else 1
    return LatentEncoder(take(model.target_encoder), None, cfg, window, cfg.grid_size**2, cfg.embed_dim, name)


class FrameHistory:
    """The last ``window`` frames of N environments, for the encoder.

    A ring with one write position shared by all environments (they step together); an environment that
    starts an episode has every slot filled with its first frame, which pads its history as the model pads a
    clip.
    """

    def __init__(self, num_envs: int, window: int, frame_shape: tuple[int, ...] = ()) -> None:
        self.window = window
        self.buffer = np.zeros((num_envs, window, *frame_shape), dtype=np.uint8)  # (N, window, H, W, C)
        self.newest = 0

    def fits(self, frames: np.ndarray) -> bool:
        """Whether frames ``[N, H, W, C]`` are a step of these environments (same count, same frame shape)."""
        return self.buffer.shape[0] == len(frames) and self.buffer.shape[2:] == frames.shape[1:]

    def reset(self, frames: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Restart the history of the environments in ``mask`` (all if None) at frames [N, H, W, C]."""
        if mask is None:
            self.buffer[:] = frames[:, None]
        else:
            self.buffer[mask] = frames[mask][:, None]

    def push(self, frames: np.ndarray) -> None:
        """Append one frame [N, H, W, C] to every environment's history, dropping the oldest."""
        self.newest = (self.newest + 1) % self.window
        self.buffer[:, self.newest] = frames

    def observe(self, frames: np.ndarray, episode_start: Any = None) -> np.ndarray:
        """Take one step's frames [N, H, W, C]; returns [N] bool, the histories that restarted.

        Frames of another batch (another N or frame shape) restart every history at them; otherwise they are
        appended, and the environments flagged in ``episode_start`` [N] restart at theirs."""
        if not self.fits(frames):
            self.buffer = np.empty((len(frames), self.window, *frames.shape[1:]), dtype=np.uint8)
            self.newest = 0
            self.reset(frames)
            return np.ones(len(frames), dtype=bool)
        n = len(frames)
        starts = (
            np.zeros(n, dtype=bool)
            if episode_start is None
            else np.asarray(episode_start, dtype=bool).reshape(-1)
        )
        if starts.shape != (n,):
            raise ValueError(
                f"episode_start must have one flag per environment ({n}), got shape {starts.shape}"
            )
        self.push(frames)
        if starts.any():
            self.reset(frames, starts)
        return starts

    def clips(self) -> np.ndarray:
        """The histories, oldest frame first: uint8 [N, window, H, W, C]."""
        if self.window == 1:
            return self.buffer
        order = (self.newest + 1 + np.arange(self.window)) % self.window
        return self.buffer[:, order]


__all__ = ["EncoderSource", "FrameHistory", "LatentEncoder", "latent_encoder"]
