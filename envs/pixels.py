"""`PixelObservations`: any environment seen as the frames a world model was trained on.

Observations become uint8 frames [S, S, C]: the environment's own image observation, or its ``rgb_array``
render when the observation is a state (numpy or torch), resized the way the recorder resized them
(`torchwm.envs.record.resize_frame`), so an evaluation sees what training saw. ``info["goal_frame"]`` is
resized the same way.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from torchwm.envs.record import resize_frame


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


class PixelObservations(gym.Wrapper[np.ndarray, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Frames [size, size, C] as observations, from the observation if it is an image, else from ``render()``.

    Args:
        env: an environment with image observations, or made with ``render_mode="rgb_array"``.
        size: side of the frames (None: the environment's own size).
    """

    def __init__(self, env: gym.Env, size: int | None = None) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size)
        super().__init__(env)
        self.from_render = not _is_image(env.observation_space)
        if self.from_render and env.render_mode != "rgb_array":
            raise ValueError(
                f"the observations of {env} are not images ({env.observation_space}) and it does not render "
                f"rgb_array frames (render_mode={env.render_mode!r}): make it with render_mode='rgb_array'"
            )
        self.size = size
        channels = env.observation_space.shape[2] if not self.from_render else 3  # type: ignore[index]
        side = size or (None if self.from_render else env.observation_space.shape[0])  # type: ignore[index]
        if side is None:
            frame = self._frame(env.reset(seed=0)[0])
            side, channels = frame.shape[0], frame.shape[2]
        self.observation_space = gym.spaces.Box(0, 255, (side, side, channels), np.uint8)

    def _frame(self, obs: Any) -> np.ndarray:
        image: Any = self.env.render() if self.from_render else obs
        frame = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
        return resize_frame(frame, self.size) if self.size else frame

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.size and "goal_frame" in info:
            return {**info, "goal_frame": resize_frame(np.asarray(info["goal_frame"]), self.size)}
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[np.ndarray, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._frame(obs), self._info(info)

    def step(self, action: Any) -> tuple[np.ndarray, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._frame(obs), reward, terminated, truncated, self._info(info)
