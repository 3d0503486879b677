"""The MPC collector: a world model's MPC agent as the recorder's policy, with exploration noise on its actions.

``record(env, MPCCollector(agent, space, noise=0.3), episodes, out_dir)`` records episodes acted by the agent:
every sub-environment of the recorder's vector env is planned for in one batched call per step, on the frames
the recorder stores (resized to the recording's image size, which is what the world model was trained on),
towards each episode's ``info["goal_frame"]`` where the environment gives one. Gaussian noise of ``noise`` half
action ranges is added to each planned action and the result clipped to the bounds, so that the data covers
more than the planner's own choices (as the model-based RL loops of PlaNet and TD-MPC2 do).

Shape letters: N sub-environments, H, W, C image, A action size, P proprioception entries.
"""

from __future__ import annotations

import time

import gymnasium as gym
import numpy as np
from torchwm.agents.mpc import MPCAgent
from torchwm.envs.record import FrameStep

__all__ = ["MPCCollector"]


class MPCCollector:
    """Acts for the recorder (`torchwm.envs.record.FramePolicy`) with an MPC agent plus exploration noise.

    Args:
        agent: the MPC agent (its planner's cost says whether goal frames are needed).
        action_space: the environment's Box action space (bounds of the noise and the clip).
        noise: standard deviation of the Gaussian noise added to each action, in half action ranges (0: none).
        proprio: entries of each sub-environment's state vector handed to the agent as ``proprio`` (those the
            world model was trained with; empty: none).
        seed: seeds the noise.
    """

    def __init__(
        self, agent: MPCAgent, action_space: gym.spaces.Box, noise: float = 0.3, proprio: tuple[int, ...] = (),
        seed: int = 0,
    ) -> None:  # fmt: skip
        if not isinstance(action_space, gym.spaces.Box):
            raise TypeError(f"the MPC collector needs a Box action space, got {action_space}")
        if noise < 0:
            raise ValueError(f"noise must be >= 0, got {noise}")
        self.agent, self.noise, self.proprio = agent, float(noise), tuple(proprio)
        self.low = action_space.low.astype(np.float32)
        self.high = action_space.high.astype(np.float32)
        self.rng = np.random.default_rng(seed)
        self.description = f"mpc+noise{noise:g}"
        """How the recorder's manifest names the episodes this collector made."""
        self.plan_ms: list[float] = []
        """Wall time of every planning call (all sub-environments at once), in milliseconds."""

    def act(self, step: FrameStep) -> np.ndarray:
        """Actions ``[N, A]`` for the recorder's sub-environments."""
        observation: dict[str, np.ndarray] = {"pixels": step.frames}
        if step.goal_frames is not None and self.agent.planner.config.cost != "reward":
            observation["goal_pixels"] = step.goal_frames
        if self.proprio:
            missing = [i for i, state in enumerate(step.states) if state is None]
            if missing:
                raise ValueError(
                    f"the world model takes proprioception (state entries {list(self.proprio)}), but sub-environments "
                    f"{missing} give no state (info['state'] or a state observation)"
                )
            observation["proprio"] = np.stack([np.asarray(s, np.float32)[list(self.proprio)] for s in step.states])
        t0 = time.perf_counter()
        actions, _ = self.agent.predict(observation, episode_start=step.episode_start)
        self.plan_ms.append((time.perf_counter() - t0) * 1000.0)
        actions = np.asarray(actions, np.float32).reshape(len(step.frames), -1)
        if self.noise:
            actions = actions + self.rng.normal(0.0, self.noise, actions.shape) * (self.high - self.low) / 2
        actions = np.clip(actions, self.low, self.high)
        self.agent.executed(actions)  # its latent history conditions on what the environments really did
        return actions
