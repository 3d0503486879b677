"""`ResetOptions`: a wrapper that passes fixed ``options`` to every ``reset`` (e.g. start and goal in
different rooms), so that evaluation code that only seeds resets can still ask for a task variant."""

from __future__ import annotations

from typing import Any

import gymnasium as gym


class ResetOptions(gym.Wrapper, gym.utils.RecordConstructorArgs):
    """Merge ``options`` into the options of every ``reset`` call (the caller's own keys win).

    >>> import torchwm, gymnasium as gym
    >>> env = ResetOptions(gym.make("torchwm/TwoRooms-v0"), {"different_rooms": True})
    >>> _ = env.reset(seed=0)
    """

    def __init__(self, env: gym.Env, options: dict[str, Any]) -> None:
        if not isinstance(options, dict):
            raise TypeError(f"ResetOptions needs a dict of reset options, got {type(options).__name__}")
        gym.utils.RecordConstructorArgs.__init__(self, options=options)
        gym.Wrapper.__init__(self, env)
        self.options = dict(options)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options={**self.options, **(options or {})})
