"""stable-baselines3 on a pretrained encoder: features extractors, and latent policies that act on pixels.

- `JEPAFeaturesExtractor`: image observations -> the latent of a pretrained JEPA or world-model encoder,
  frozen by default, plugged in as SB3 documents::

      PPO("CnnPolicy", env, policy_kwargs=dict(features_extractor_class=JEPAFeaturesExtractor,
                                               features_extractor_kwargs=dict(checkpoint="runs/wm")))

- `JEPACombinedExtractor`: the same for ``Dict`` observations (``MultiInputPolicy``): every image entry
  goes through the one encoder, every other entry is flattened, as SB3's `CombinedExtractor` does.
- `LatentPolicyPrior`: a policy trained on latent observations (`envs.latent.LatentObservationWrapper`,
  `envs.dream.LatentDreamEnv`), given pixel observations: it encodes them, then asks the policy. It has
  SB3's ``predict``, so it serves as ``MPCAgent(..., prior_policy=...)`` and in `agents.evaluate.evaluate`.

Pixel scale. SB3 hands image observations to a features extractor as float tensors, channels first (its
``VecTransposeImage``), divided by 255 when the policy's ``normalize_images`` is True (SB3's default).
The extractors turn them back into the uint8 frames ``[B, T, H, W, C]`` the model takes (exact: the bytes
come back by rounding ``x * 255``), so that the model's own resizing and normalisation apply, as for every
other caller. With ``normalize_images=False`` in ``policy_kwargs`` pass ``pixel_scale="byte"``.

Shape letters: B batch, T frames of history, H, W, C image, K tokens a step, D width of a token.
"""

from __future__ import annotations

import json
import os
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch
from einops import rearrange
from gymnasium import spaces
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.preprocessing import (
    get_flattened_obs_dim,
    is_image_space,
    is_image_space_channels_first,
)
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torchwm.wm.latent_encoder import EncoderSource, FrameHistory, LatentEncoder, latent_encoder
from torchwm.wm.world_model import WorldModel

PixelScale = Literal["unit", "byte"]
"""How SB3 hands over image observations: ``unit`` in [0, 1] (``normalize_images=True``), ``byte`` in [0, 255]."""

__all__ = [
    "EncoderSource",
    "JEPACombinedExtractor",
    "JEPAFeaturesExtractor",
    "LatentPolicyPrior",
    "PixelScale",
    "load_sb3",
]


# --- the encoder -------------------------------------------------------------------------------------
def observation_frames(
    obs: torch.Tensor, channels_first: bool, scale: PixelScale, window: int
) -> torch.Tensor:
    """SB3's preprocessed images ``[B, C, H, W]`` (or ``[B, H, W, C]``) -> uint8 still clips ``[B, window, H, W, C]``."""
    x = obs * 255.0 if scale == "unit" else obs
    frames = x.round().clamp(0, 255).to(torch.uint8)
    pattern = "b c h w -> b 1 h w c" if channels_first else "b h w c -> b 1 h w c"
    return rearrange(frames, pattern).expand(-1, window, -1, -1, -1)  # a temporal encoder sees a still clip


def _check_image_space(space: spaces.Space, encoder: LatentEncoder, name: str) -> bool:
    """Whether ``space`` is channels first; a ValueError naming what fits unless it is an image the encoder takes."""
    if not isinstance(space, spaces.Box) or len(space.shape) != 3:
        raise ValueError(f"{name} must be an image Box [C, H, W] or [H, W, C], got {space}")
    first = is_image_space_channels_first(space)
    channels = space.shape[0] if first else space.shape[-1]
    if channels != encoder.in_channels:
        raise ValueError(
            f"{name} has {channels} channels ({space.shape}), the encoder takes {encoder.in_channels}"
        )
    return first


class _EncoderExtractor(BaseFeaturesExtractor):
    """What both extractors share: the encoder, frozen or fine-tuned, and the optional projection."""

    def _build(
        self, checkpoint: EncoderSource, fine_tune: bool, features_dim: int, pixel_scale: PixelScale
    ) -> None:
        if pixel_scale not in ("unit", "byte"):
            raise ValueError(f"pixel_scale must be 'unit' or 'byte', got {pixel_scale!r}")
        if not isinstance(features_dim, int) or features_dim < 0:
            raise ValueError(f"features_dim must be an int >= 0 (0: the flat latent), got {features_dim!r}")
        self.encoder = latent_encoder(checkpoint, copy_weights=True)
        self.fine_tune, self.pixel_scale = fine_tune, pixel_scale
        self.encoder.requires_grad_(fine_tune)
        self.encoder.train(False)
        latent = self.encoder.k * self.encoder.d
        self.image_dim = features_dim or latent
        self.project = (
            nn.Sequential(nn.Linear(latent, features_dim), nn.ReLU()) if features_dim else nn.Identity()
        )

    def apply(self, fn: Callable[[nn.Module], None]) -> _EncoderExtractor:
        """`nn.Module.apply` on everything but the pretrained encoder.

        SB3's actor-critic policies (``ortho_init=True``, their default) re-initialise the features extractor
        with ``extractor.apply(init_weights)``, which would overwrite the pretrained weights.
        """
        self.project.apply(fn)
        fn(self)
        return self

    def train(self, mode: bool = True) -> _EncoderExtractor:
        """As `nn.Module.train`, except that a frozen encoder stays in eval mode."""
        super().train(mode)
        self.encoder.train(mode and self.fine_tune)
        return self

    def image_features(self, obs: torch.Tensor, channels_first: bool) -> torch.Tensor:
        """One image entry ``[B, C, H, W]`` -> features ``[B, image_dim]``."""
        frames = observation_frames(obs, channels_first, self.pixel_scale, self.encoder.window)
        with torch.set_grad_enabled(self.fine_tune and torch.is_grad_enabled()):
            z = self.encoder(frames)  # (B, K, D)
        return self.project(z.flatten(1))


class JEPAFeaturesExtractor(_EncoderExtractor):
    """Image observations -> the latent of a pretrained encoder (``CnnPolicy``-style image observations).

    Args:
        observation_space: uint8 images, channels first (as SB3 transposes them) or last.
        checkpoint: a world-model or JEPA checkpoint (or run) directory, or a `WorldModel`, `JEPAAgent` or
            `JEPA`; its encoder is copied, the source is left as it is.
        fine_tune: train the encoder with the policy (default False: frozen, no gradients, eval mode).
        features_dim: 0 (default): the features are the flat latent ``[K * D]``; above 0: a trainable
            linear layer and ReLU map it to this many features.
        pixel_scale: ``unit`` with SB3's default ``normalize_images=True``, ``byte`` with False.

    Features: the latent of the encoder's last step, from a still clip for a temporal encoder.
    """

    def __init__(
        self,
        observation_space: spaces.Box,
        checkpoint: EncoderSource,
        fine_tune: bool = False,
        features_dim: int = 0,
        pixel_scale: PixelScale = "unit",
    ) -> None:
        super().__init__(observation_space, features_dim=1)
        self._build(checkpoint, fine_tune, features_dim, pixel_scale)
        self.channels_first = _check_image_space(observation_space, self.encoder, "observation_space")
        self._features_dim = self.image_dim

    def forward(self, observations: torch.Tensor) -> torch.Tensor:
        return self.image_features(observations, self.channels_first)


class JEPACombinedExtractor(_EncoderExtractor):
    """``Dict`` observations: image entries through one pretrained encoder, the others flattened, concatenated.

    Arguments as `JEPAFeaturesExtractor`; ``features_dim`` applies to each image entry. An entry is an image
    when SB3 says so (`is_image_space`: uint8 Box [C, H, W] or [H, W, C] in 0..255). Entries are taken in the
    order of the space, as SB3's `CombinedExtractor` does.
    """

    def __init__(
        self,
        observation_space: spaces.Dict,
        checkpoint: EncoderSource,
        fine_tune: bool = False,
        features_dim: int = 0,
        pixel_scale: PixelScale = "unit",
    ) -> None:
        if not isinstance(observation_space, spaces.Dict):
            raise ValueError(f"JEPACombinedExtractor needs a Dict observation space, got {observation_space}")
        super().__init__(observation_space, features_dim=1)
        self._build(checkpoint, fine_tune, features_dim, pixel_scale)
        self.images: dict[str, bool] = {}  # image key -> channels first
        total = 0
        for key, space in observation_space.spaces.items():
            if is_image_space(space):
                self.images[key] = _check_image_space(space, self.encoder, f"observation_space[{key!r}]")
                total += self.image_dim
            else:
                total += get_flattened_obs_dim(space)
        if not self.images:
            raise ValueError(
                f"JEPACombinedExtractor found no uint8 image entry in {observation_space}; use SB3's CombinedExtractor"
            )
        self.keys = list(observation_space.spaces)
        self._features_dim = total

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        parts = []
        for key in self.keys:
            obs = observations[key]
            parts.append(self.image_features(obs, self.images[key]) if key in self.images else obs.flatten(1))
        return torch.cat(parts, dim=1)


# --- latent policies on pixels -----------------------------------------------------------------------
_ALGORITHMS = ("PPO", "SAC", "A2C", "TD3", "DDPG", "DQN")


def load_sb3(path: str | os.PathLike, device: str = "cpu") -> BaseAlgorithm:
    """Load a stable-baselines3 ``.zip`` whatever its algorithm (read from the policy class it saved)."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{path} is not a stable-baselines3 model .zip")
    with zipfile.ZipFile(path) as archive:
        data = json.loads(archive.read("data"))
    module = str(data.get("policy_class", {}).get("__module__", ""))
    names = [n for n in _ALGORITHMS if f"stable_baselines3.{n.lower()}." in module]
    if not names and module == "stable_baselines3.common.policies":  # the on-policy algorithms share it
        names = ["PPO" if "clip_range" in data else "A2C"]
    if not names:
        raise ValueError(f"{path} holds a policy of {module!r}, not one of stable-baselines3's {_ALGORITHMS}")
    return getattr(stable_baselines3, names[0]).load(path, device=device)


class LatentPolicyPrior:
    """A policy trained on latent observations, acting on pixels: encode the frames, then ``policy.predict``.

    Args:
        policy: an SB3 model, or the path of its ``.zip`` (as ``torchwm train-policy`` writes it).
        world_model: the model (or checkpoint) whose latents the policy was trained on.
        device: where a checkpoint is loaded.

    Observations are frames ``[H, W, C]`` or ``[B, H, W, C]`` uint8, or a dict with ``"pixels"`` (and
    optionally ``"goal_pixels"``). The latents are those of `envs.latent.LatentObservationWrapper`, from a
    frame history of the encoder's window (restarted where ``episode_start`` is set and for a new batch).
    The policy's observation space says what it gets: the flat latent (``Box``), or a ``Dict`` of
    ``latent``, ``goal_latent`` (the encoded goal image: `set_goal`, which `agents.evaluate.evaluate` calls
    with ``info["goal_frame"]``) and ``pixels``.

    As an MPC prior: ``MPCAgent(model, planner, prior_policy=LatentPolicyPrior("policy.zip", wm))`` (with
    ``policy_prior_samples >= 1``). The MPC agent calls its prior only when it replans; the agent does not
    pass its goal on, so call the prior's ``set_goal`` as well for a goal-conditioned policy.
    """

    def __init__(
        self,
        policy: BaseAlgorithm | str | os.PathLike,
        world_model: WorldModel | str | os.PathLike,
        device: str = "cpu",
    ) -> None:
        self.policy = load_sb3(policy, device) if isinstance(policy, str | os.PathLike) else policy
        source = os.fspath(world_model) if isinstance(world_model, os.PathLike) else world_model
        self.encoder = latent_encoder(source, device)
        self.observation_space = self.policy.observation_space
        self.action_space = self.policy.action_space
        self._keys = _policy_keys(self.observation_space, self.encoder)
        self._history = FrameHistory(0, self.encoder.window)
        self._goal: np.ndarray | None = None  # (G, K, D)

    def set_goal(self, goal_frames: np.ndarray) -> None:
        """Goal image(s) ``[H, W, C]`` (every environment) or ``[G, H, W, C]`` (one each), uint8."""
        frames = _frame_batch(goal_frames, "goal_frames")
        self._goal = self.encoder.encode_numpy(
            np.repeat(frames[:, None], self.encoder.window, axis=1)
        )  # a still clip

    def predict(
        self,
        observation: Any,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Actions ``[A]`` for one frame or ``[B, A]`` for a batch, from the policy on the encoded frames."""
        pixels = observation["pixels"] if isinstance(observation, dict) else observation
        if isinstance(observation, dict) and observation.get("goal_pixels") is not None:
            self.set_goal(observation["goal_pixels"])
        single = np.ndim(pixels) == 3
        frames = _frame_batch(pixels, "observation")
        self._history.observe(frames, episode_start)
        z = self.encoder.encode_numpy(self._history.clips())  # (B, K, D)
        actions, state = self.policy.predict(
            self._policy_observation(z, frames), state, episode_start, deterministic
        )
        return (actions[0] if single else actions), state

    def _policy_observation(self, z: np.ndarray, frames: np.ndarray) -> Any:
        space = self.observation_space
        if isinstance(space, spaces.Box):
            return z.reshape(len(z), *space.shape)
        assert isinstance(space, spaces.Dict)  # checked by _policy_keys
        obs: dict[str, np.ndarray] = {}
        for key in self._keys:
            if key == "latent":
                obs[key] = z.reshape(len(z), *(space[key].shape or ()))
            elif key == "goal_latent":
                obs[key] = self._goal_latents(len(z)).reshape(len(z), *(space[key].shape or ()))
            else:
                obs[key] = frames
        return obs

    def _goal_latents(self, batch: int) -> np.ndarray:
        if self._goal is None:
            raise ValueError(
                "the policy observes goal_latent: call set_goal(goal_frame) first, or give a dict "
                "observation with 'goal_pixels'"
            )
        if len(self._goal) not in (1, batch):
            raise ValueError(
                f"{len(self._goal)} goal images were set for {batch} environments; give 1 or {batch}"
            )
        return np.broadcast_to(self._goal, (batch, *self._goal.shape[1:]))


def _policy_keys(space: gym.Space, encoder: LatentEncoder) -> list[str]:
    """The entries of a latent policy's Dict observation (empty for a Box), checked against the encoder."""
    latent = encoder.k * encoder.d
    if isinstance(space, spaces.Box):
        if int(np.prod(space.shape or ())) != latent:
            raise ValueError(
                f"the policy observes {space}, but the encoder gives latents of K*D={latent} values"
            )
        return []
    if not isinstance(space, spaces.Dict):
        raise ValueError(f"the policy must observe a latent Box or a Dict of latents, got {space}")
    unknown = set(space.spaces) - {"latent", "goal_latent", "pixels"}
    if unknown or "latent" not in space.spaces:
        raise ValueError(
            f"the policy observes keys {sorted(space.spaces)}; LatentPolicyPrior gives 'latent' (required), "
            "'goal_latent' and 'pixels'"
        )
    for key in ("latent", "goal_latent"):
        if key in space.spaces and int(np.prod(space[key].shape or ())) != latent:
            raise ValueError(f"the policy's {key} is {space[key]}, but the encoder gives K*D={latent} values")
    return list(space.spaces)


def _frame_batch(frames: Any, name: str) -> np.ndarray:
    """uint8 ``[H, W, C]`` or ``[B, H, W, C]`` -> ``[B, H, W, C]``."""
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8 or array.ndim not in (3, 4):
        raise ValueError(
            f"{name} must be uint8 frames [H, W, C] or [B, H, W, C], got {array.dtype} {array.shape}"
        )
    return array[None] if array.ndim == 3 else array
