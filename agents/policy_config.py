"""`PolicyTrainingConfig`: what ``torchwm train-policy`` (and `agents.train_policy.train_policy`) trains, and how.

Kept apart from the training code so that the command line builds its options from these fields without
importing stable-baselines3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from typing import Any, Literal

Algo = Literal["ppo", "sac"]
PolicyMode = Literal["latent", "dream"]


@dataclass(frozen=True)
class PolicyTrainingConfig:
    """A stable-baselines3 policy on a world model's latents: in the real environment, or in the dream env."""

    algo: Algo = "ppo"
    """stable-baselines3 algorithm: ``ppo`` or ``sac`` (SAC needs a continuous action space)."""
    env: str = "torchwm/TwoRooms-v0"
    """Gymnasium id of the real environment (image observations, or rendered with render_mode='rgb_array')."""
    checkpoint: str = ""
    """World-model checkpoint (or run) directory: its encoder gives the latents, its dynamics the dream."""
    mode: PolicyMode = "latent"
    """``latent``: learn in the real environment seen through the encoder; ``dream``: learn in the world model."""
    steps: int = 100_000
    """Timesteps to learn (real environment steps in latent mode, imagined steps in dream mode)."""
    out: str = "runs/policy"
    """Output directory: policy.zip, best/best_model.zip, eval/, tb/ (TensorBoard) and summary.json."""
    goal: bool = True
    """Goal-conditioned: observe latent and goal_latent (the reset info must carry goal_frame); else the latent."""
    reset_options: str = ""
    """JSON object passed to every reset of the real environment, e.g. '{"different_rooms": true}'."""
    max_episode_steps: int = 0
    """Episode length in agent steps, in the real environment and the dream (0: the registered limit divided by
    ``action_repeat``; 100 in the dream when the environment registers none)."""
    action_repeat: int = 1
    """Apply each action this many times in the real environment (`envs.action_repeat.ActionRepeat`): match the
    ``frame_skip`` the world model's episodes were recorded with, so that one dream step is one agent step."""
    num_envs: int = 4
    """Environments stepped together (one batched encoder or model call a step)."""
    dream_starts: str = ""
    """Episode directory whose frames start dream episodes; empty: latents from random steps of the real env."""
    dream_start_steps: int = 2000
    """Random-policy steps in the real environment whose latents start dream episodes (without dream_starts)."""
    dream_reward: Literal["auto", "model", "goal"] = "auto"
    """Dream reward: ``model`` (reward head), ``goal`` (minus latent distance to the goal), ``auto`` (goal if goal)."""
    dream_context: int = 1
    """Latent steps the dynamics see in the dream (1: the last latent only)."""
    learning_rate: float = 3e-4
    """Adam learning rate."""
    gamma: float = 0.99
    """Discount factor."""
    batch_size: int = 64
    """Minibatch size."""
    n_steps: int = 256
    """PPO: steps per environment per rollout."""
    n_epochs: int = 10
    """PPO: epochs over each rollout."""
    learning_starts: int = 1000
    """SAC: steps of random actions before learning starts."""
    buffer_size: int = 100_000
    """SAC: replay buffer size."""
    net_width: int = 64
    """Units of each hidden layer of the policy and value networks."""
    net_depth: int = 2
    """Hidden layers of the policy and value networks."""
    eval_freq: int = 10_000
    """Timesteps between evaluations in the real environment (EvalCallback; 0: none)."""
    eval_episodes: int = 10
    """Episodes per evaluation."""
    seed: int = 0
    """Seed of the algorithm and the environments."""
    device: str = "cpu"
    """Torch device of the world model and the policy (small MLPs on latents run best on the CPU)."""
    threads: int = 1
    """Torch CPU threads for the run (small MLPs gain nothing from more, and lose on a busy machine; 0: torch's)."""
    progress_bar: bool = True
    """Show SB3's progress bar (rich and tqdm)."""
    tensorboard: bool = True
    """Write TensorBoard logs under out/tb."""
    verbose: int = 0
    """SB3 verbosity (0: quiet, 1: training tables)."""

    @property
    def reset_options_dict(self) -> dict[str, Any]:
        """``reset_options`` parsed (empty when unset)."""
        return json.loads(self.reset_options) if self.reset_options else {}

    def validate(self) -> PolicyTrainingConfig:
        """Raise `ValueError` naming a bad field, its value and what is allowed."""
        _choice(self, "algo", ("ppo", "sac"))
        _choice(self, "mode", ("latent", "dream"))
        _choice(self, "dream_reward", ("auto", "model", "goal"))
        if not self.checkpoint:
            raise ValueError(
                "PolicyTrainingConfig.checkpoint is empty: give a world-model checkpoint directory"
            )
        for name in ("steps", "num_envs", "dream_start_steps", "dream_context", "batch_size", "n_steps",
                     "n_epochs", "buffer_size", "net_width", "net_depth", "eval_episodes", "action_repeat"):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ValueError(
                    f"PolicyTrainingConfig.{name}={value!r} is invalid: expected a positive integer"
                )
        for name in ("max_episode_steps", "learning_starts", "eval_freq", "seed", "verbose", "threads"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ValueError(
                    f"PolicyTrainingConfig.{name}={value!r} is invalid: expected an integer >= 0"
                )
        if not 0 < self.learning_rate or not 0 <= self.gamma <= 1:
            raise ValueError(
                f"PolicyTrainingConfig needs learning_rate > 0 and gamma in [0, 1], got "
                f"learning_rate={self.learning_rate!r}, gamma={self.gamma!r}"
            )
        try:
            options = self.reset_options_dict
        except json.JSONDecodeError as err:
            raise ValueError(
                f"PolicyTrainingConfig.reset_options={self.reset_options!r} is not JSON: {err}"
            ) from err
        if not isinstance(options, dict):
            raise ValueError(
                f"PolicyTrainingConfig.reset_options={self.reset_options!r} must be a JSON object"
            )
        return self

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PolicyTrainingConfig:
        """Build from a mapping of field values (unknown names are an error), validated."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"PolicyTrainingConfig got unknown field(s) {unknown}; known fields: {sorted(known)}"
            )
        return cls(**data).validate()


def _choice(cfg: PolicyTrainingConfig, name: str, allowed: tuple[str, ...]) -> None:
    value = getattr(cfg, name)
    if value not in allowed:
        raise ValueError(f"PolicyTrainingConfig.{name}={value!r} is invalid: expected one of {list(allowed)}")


__all__ = ["Algo", "PolicyMode", "PolicyTrainingConfig"]
