"""`ResetOptions`: a wrapper that passes fixed ``options`` to every ``reset`` (e.g. start and goal in
different rooms), so that evaluation code that only seeds resets can still ask for a task variant."""

from __future__ import annotations

import warnings
from typing import Any

import gymnasium as gym


def check_reset_options(env: gym.Env, options: dict[str, Any]) -> None:
    """Refuse options the environment says it does not take (its ``OPTION_KEYS``, as the built-in envs
    declare them); an environment that declares none gets a warning, since gymnasium envs ignore unknown
    options silently."""
    if not options:
        return
    accepted = getattr(env.unwrapped, "OPTION_KEYS", None)
    if accepted is None:
        warnings.warn(
            f"{type(env.unwrapped).__name__} does not declare the reset options it takes (OPTION_KEYS); "
            f"make sure it reads {sorted(options)}, a gymnasium env ignores unknown ones silently",
            stacklevel=3,
        )
        return
    unknown = sorted(set(options) - set(accepted))
    if unknown:
        raise ValueError(
            f"{type(env.unwrapped).__name__} does not take the reset option(s) {unknown}; it takes {sorted(accepted)}"
        )


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
        check_reset_options(env, options)
        self.options = dict(options)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        return self.env.reset(seed=seed, options={**self.options, **(options or {})})
