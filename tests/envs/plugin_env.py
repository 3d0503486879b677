"""An environment from "another package", registered only when this module is imported (``--import``).

Its traits are the ones a new user's env tends to have: pixels only from ``render()`` at 224 px, a torch-tensor
state observation, no time limit, its goal image kept on an attribute, no ``distance`` and no ``is_success``.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

PLUGIN_ID = "PluginDot-v0"


class PluginDotEnv(gym.Env):
    """A dot on a 224 x 224 canvas moved by a 2-D action; the state is a torch tensor."""

    metadata = {"render_modes": ["rgb_array"], "render_fps": 10}

    def __init__(self, render_mode: str | None = None) -> None:
        self.render_mode = render_mode
        self.observation_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.pos = np.zeros(2, np.float32)
        self.goal_image: np.ndarray | None = None

    def _draw(self, pos: np.ndarray) -> np.ndarray:
        img = np.full((224, 224, 3), 30, np.uint8)
        x, y = ((pos + 1) / 2 * 200 + 12).astype(int)
        img[max(y - 10, 0) : y + 10, max(x - 10, 0) : x + 10] = (250, 200, 40)
        return img

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict]:
        super().reset(seed=seed)
        self.pos = self.np_random.uniform(-1, 1, 2).astype(np.float32)
        self.goal_image = self._draw(self.np_random.uniform(-1, 1, 2).astype(np.float32))
        return torch.from_numpy(self.pos.copy()), {}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict]:
        self.pos = np.clip(self.pos + 0.1 * np.asarray(action, np.float32), -1, 1)
        return torch.from_numpy(self.pos.copy()), float(-np.abs(self.pos).sum()), False, False, {}

    def render(self) -> np.ndarray:
        return self._draw(self.pos)


def goal_of(env: gym.Env) -> np.ndarray:
    """The plugin keeps its goal image on an attribute: the goal function that reads it."""
    return env.unwrapped.goal_image  # type: ignore[attr-defined, no-any-return]


if PLUGIN_ID not in gym.registry:
    gym.register(id=PLUGIN_ID, entry_point=PluginDotEnv)  # no max_episode_steps: no time limit
