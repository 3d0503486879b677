"""`ActionRepeat`: each action is applied ``k`` times, rewards summed, the last frame returned.

This is the environment-side twin of recording with ``frame_skip=k`` (`envs.record.record`): a world
model trained on such recordings predicts one model step per ``k`` environment steps, so a planner with
horizon H looks ``H * k`` environment steps ahead for the cost of H model steps.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class ActionRepeat(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Repeat every action ``k`` times; stop early when the episode ends.

    >>> import torchwm, gymnasium as gym
    >>> env = ActionRepeat(gym.make("torchwm/TwoRooms-v0"), 4)
    >>> _ = env.reset(seed=0)
    >>> _, _, _, _, info = env.step(env.action_space.sample())
    >>> info["repeats"] <= 4
    True
    """

    def __init__(self, env: gym.Env, k: int) -> None:
        if not isinstance(k, int) or k < 1:
            raise ValueError(f"ActionRepeat needs k >= 1 (an integer), got {k!r}")
        gym.utils.RecordConstructorArgs.__init__(self, k=k)
        gym.Wrapper.__init__(self, env)
        self.k = k

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        total, repeats = 0.0, 0
        while repeats < self.k:
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += float(reward)
            repeats += 1
            if terminated or truncated:
                break
        info = {**info, "repeats": repeats}
        return obs, total, terminated, truncated, info
