"""The small interfaces that planners and agents depend on, so any model with these verbs plugs in.

The real world model satisfies `WorldModelLike` (and `RewardModelLike` where a reward head was
trained); in tests a few lines of analytic code (``encode_last`` = position, ``rollout`` = cumulative sum of
the actions) stand in for it.

Shape letters: B batch, T time, H horizon, K tokens per step, D width, A action size, P prior
sequences.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch


@runtime_checkable
class WorldModelLike(Protocol):
    """What a planner needs from a world model: the current latent of a frame history, latents rolled forward."""

    def encode_last(self, frames: torch.Tensor) -> torch.Tensor:
        """Latent of the last step of each history: uint8 frames ``[B, T, H, W, C]`` -> ``[B, K, D]``.

        The agents hand over a uint8 tensor; a model may accept numpy arrays as well.
        """
        ...

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted latents after each action: ``z [B, K, D]``, ``actions [B, H, A]`` -> ``[B, H, K, D]``."""
        ...


@runtime_checkable
class RewardModelLike(WorldModelLike, Protocol):
    """A world model that also predicts rewards (needed by the ``reward`` cost)."""

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted reward per step: ``z [B, H, K, D]``, ``actions [B, H, A]`` -> ``[B, H]``."""
        ...


@runtime_checkable
class ValueModelLike(RewardModelLike, Protocol):
    """A world model with a learned value of its latents, which the ``reward`` cost adds beyond the horizon."""

    @property
    def discount(self) -> float | None:
        """Discount per model step of the value and of the return (None: this model has no value)."""
        ...

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted discounted return from each latent on: ``z [N, K, D]`` -> ``[N]``."""
        ...


@runtime_checkable
class HistoryModelLike(WorldModelLike, Protocol):
    """A world model that rolls every candidate out from a latent history (needed to plan from more than the
    current latent, or with proprioception); `torchwm.agents.latent_model.PlanningModel` is one."""

    def rollout_candidates(
        self,
        z_context: torch.Tensor,
        actions: torch.Tensor,
        past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Predicted latents of S candidates per row: ``z_context [B, C, K, D]``, ``actions [B, S, H, A]``,
        ``past_actions [B, C-1, A]``, ``proprio [B, C, P]`` -> ``[B, S, H, K, D]``."""
        ...


class LatentPrior(Protocol):
    """A policy prior for the planners: proposes action sequences from the current latent.

    Returns ``[B, H, A]`` (one sequence per environment) or ``[B, P, H, A]`` (P sequences), in the
    environment's action units; the planners clamp them to the bounds.
    """

    def __call__(self, z: torch.Tensor) -> torch.Tensor: ...


class PredictPolicy(Protocol):
    """Anything with stable-baselines3's ``predict`` shape (SB3 models, `MPCAgent`, `RandomPolicy`).

    ``observation`` is whatever the environment returns (an array, or a dict of arrays).
    """

    def predict(
        self,
        observation: Any,
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]: ...
