"""`PolicyTrainingConfig`: what ``torchwm train-policy`` (and `agents.train_policy.train_policy`) trains, and how.

Kept apart from the training code so that the command line builds its options from these fields without
importing stable-baselines3.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from torchwm.wm.config_base import Config, Fraction, NonNegInt, PositiveFloat, PositiveInt
from torchwm.wm.runs import Overwrite

Algo = Literal["ppo", "sac"]
PolicyMode = Literal["latent", "dream"]


@dataclass(frozen=True)
class PolicyTrainingConfig(Config):
    """A stable-baselines3 policy on a world model's latents: in the real environment, or in the dream env."""

    algo: Algo = "ppo"
    """stable-baselines3 algorithm: ``ppo`` or ``sac`` (SAC needs a continuous action space)."""
    env: str = "torchwm/TwoRooms-v0"
    """Gymnasium id of the real environment (image observations, or rendered with render_mode='rgb_array')."""
    checkpoint: str = ""
    """World-model checkpoint (or run) directory: its encoder gives the latents, its dynamics the dream."""
    mode: PolicyMode = "latent"
    """``latent``: learn in the real environment seen through the encoder; ``dream``: learn in the world model."""
    steps: PositiveInt = 100_000
    """Timesteps to learn (real environment steps in latent mode, imagined steps in dream mode)."""
    out: str = "runs/policy"
    """Output directory: policy.zip, best/best_model.zip, eval/, tb/ (TensorBoard) and summary.json."""
    overwrite: Overwrite = "never"
    """An existing run folder that holds another run: ``never`` refuses it (a matching run continues), ``move``
    moves it aside, ``delete`` deletes it."""
    goal: bool = True
    """Goal-conditioned: observe latent and goal_latent (the reset info must carry goal_frame); else the latent."""
    reset_options: str = ""
    """JSON object passed to every reset of the real environment, e.g. '{"different_rooms": true}'."""
    max_episode_steps: NonNegInt = 0
    """Episode length in agent steps, in the real environment and the dream (0: the registered limit divided by
    ``action_repeat``; 100 in the dream when the environment registers none)."""
    action_repeat: PositiveInt = 1
    """Apply each action this many times in the real environment (`envs.action_repeat.ActionRepeat`): match the
    ``frame_skip`` the world model's episodes were recorded with, so that one dream step is one agent step."""
    num_envs: PositiveInt = 4
    """Environments stepped together (one batched encoder or model call a step)."""
    dream_starts: str = ""
    """Episode directory whose frames start dream episodes; empty: latents from random steps of the real env."""
    dream_start_steps: PositiveInt = 2000
    """Random-policy steps in the real environment whose latents start dream episodes (without dream_starts)."""
    dream_reward: Literal["auto", "model", "goal"] = "auto"
    """Dream reward: ``model`` (reward head), ``goal`` (minus latent distance to the goal), ``auto`` (goal if goal)."""
    dream_context: PositiveInt = 1
    """Latent steps the dynamics see in the dream (1: the last latent only)."""
    learning_rate: PositiveFloat = 3e-4
    """Adam learning rate."""
    gamma: Fraction = 0.99
    """Discount factor."""
    batch_size: PositiveInt = 64
    """Minibatch size."""
    n_steps: PositiveInt = 256
    """PPO: steps per environment per rollout."""
    n_epochs: PositiveInt = 10
    """PPO: epochs over each rollout."""
    learning_starts: NonNegInt = 1000
    """SAC: steps of random actions before learning starts."""
    buffer_size: PositiveInt = 100_000
    """SAC: replay buffer size."""
    net_width: PositiveInt = 64
    """Units of each hidden layer of the policy and value networks."""
    net_depth: PositiveInt = 2
    """Hidden layers of the policy and value networks."""
    eval_freq: NonNegInt = 10_000
    """Timesteps between evaluations in the real environment (EvalCallback; 0: none)."""
    eval_episodes: PositiveInt = 10
    """Episodes per evaluation."""
    seed: NonNegInt = 0
    """Seed of the algorithm and the environments."""
    device: str = "cpu"
    """Torch device of the world model and the policy (small MLPs on latents run best on the CPU)."""
    threads: NonNegInt = 1
    """Torch CPU threads for the run (small MLPs gain nothing from more, and lose on a busy machine; 0: torch's)."""
    progress_bar: bool = True
    """Show SB3's progress bar (rich and tqdm)."""
    tensorboard: bool = True
    """Write TensorBoard logs under out/tb."""
    imports: tuple[str, ...] = ()
    """Modules to import before ``env`` is made (plugins that register it; the checkpoint's come anyway)."""
    verbose: NonNegInt = 0
    """SB3 verbosity (0: quiet, 1: training tables)."""

    @property
    def reset_options_dict(self) -> dict[str, Any]:
        """``reset_options`` parsed (empty when unset)."""
        return json.loads(self.reset_options) if self.reset_options else {}

    def check(self) -> None:
        """The rules beyond each field's own type and range (those come from the annotations)."""
        if not self.checkpoint:
            raise ValueError("PolicyTrainingConfig.checkpoint is empty: give a world-model checkpoint directory")
        try:
            options = self.reset_options_dict
        except json.JSONDecodeError as err:
            raise ValueError(f"PolicyTrainingConfig.reset_options={self.reset_options!r} is not JSON: {err}") from err
        if not isinstance(options, dict):
            self.fail("reset_options", self.reset_options, "a JSON object")


__all__ = ["Algo", "PolicyMode", "PolicyTrainingConfig"]
