"""`PixelObservations`: any environment seen as the frames a world model was trained on.

Observations become uint8 frames [S, S, C]: the environment's own image observation, or its ``rgb_array``
render when the observation is a state (numpy or torch), resized the way the recorder resized them
(`torchwm.envs.record.resize_frame`), so an evaluation sees what training saw. ``info["goal_frame"]`` is
resized the same way. With ``proprio`` indices, observations are dicts: ``{"pixels": frame, "proprio": those
entries of the state}`` (``info["state"]``, or the observation where it is a state vector: what the recorder
stored and a world model with proprioception was trained on).
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from torchwm.envs.record import resize_frame


def _is_image(space: gym.Space) -> bool:
    return isinstance(space, gym.spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def proprio_entries(state: Any, indices: tuple[int, ...], owner: str) -> np.ndarray:
    """float32 ``[P]`` (or ``[N, P]`` for a batch of states): the ``indices`` entries of a state vector
    (numpy or torch); None is refused with what to provide."""
    if state is None:
        raise ValueError(
            f"proprio={indices} needs a state vector, but {owner} gives neither info['state'] nor a "
            "state observation"
        )
    values = np.asarray(state.detach().cpu().numpy() if hasattr(state, "detach") else state, np.float32)
    flat = values.reshape(-1) if values.ndim <= 1 else values.reshape(values.shape[0], -1)
    if max(indices) >= flat.shape[-1]:
        raise ValueError(
            f"proprio={indices} names entries past the end of {owner}'s state vector, which has {flat.shape[-1]}: "
            f"use indices 0..{flat.shape[-1] - 1}"
        )
    return flat[..., list(indices)]


class PixelObservations(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Frames [size, size, C] as observations, from the observation if it is an image, else from ``render()``.

    Args:
        env: an environment with image observations, or made with ``render_mode="rgb_array"``.
        size: side of the frames (None: the environment's own size).
        proprio: indices of the state vector to pass along as ``obs["proprio"]`` (empty: frames only).
    """

    def __init__(self, env: gym.Env, size: int | None = None, proprio: tuple[int, ...] = ()) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, size=size, proprio=proprio)
        super().__init__(env)
        self.proprio = tuple(proprio)
        self._state_space = env.observation_space
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
        pixels = gym.spaces.Box(0, 255, (side, side, channels), np.uint8)
        self.observation_space: gym.Space = pixels
        if self.proprio:
            box = gym.spaces.Box(-np.inf, np.inf, (len(self.proprio),), np.float32)
            self.observation_space = gym.spaces.Dict({"pixels": pixels, "proprio": box})

    def _observation(self, obs: Any, info: dict[str, Any]) -> Any:
        frame = self._frame(obs)
        if not self.proprio:
            return frame
        state = info.get("state")
        if state is None:
            space = self._state_space
            if isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
                state = obs
        return {"pixels": frame, "proprio": proprio_entries(state, self.proprio, str(self.env))}

    def _frame(self, obs: Any) -> np.ndarray:
        image: Any = self.env.render() if self.from_render else obs
        frame = np.asarray(image.detach().cpu().numpy() if hasattr(image, "detach") else image)
        return resize_frame(frame, self.size) if self.size else frame

    def _info(self, info: dict[str, Any]) -> dict[str, Any]:
        if self.size and "goal_frame" in info:
            return {**info, "goal_frame": resize_frame(np.asarray(info["goal_frame"]), self.size)}
        return info

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return self._observation(obs, info), self._info(info)

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return self._observation(obs, info), reward, terminated, truncated, self._info(info)
