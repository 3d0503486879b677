"""Environment ids from any package: ``module:EnvId`` (gymnasium's own form), plugin modules imported first,
and the checks that keep a recording from running forever.

>>> resolve_env_id("torchwm.envs.two_rooms:torchwm/TwoRooms-v0")
('torchwm/TwoRooms-v0', ('torchwm.envs.two_rooms',))
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence

import gymnasium


def import_plugins(modules: Sequence[str]) -> None:
    """Import modules that register environments (``--import MODULE``); a missing one names itself."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as err:
            raise ValueError(f"cannot import {module!r} (given to register environments): {err}") from err


def resolve_env_id(env: str, imports: Sequence[str] = ()) -> tuple[str, tuple[str, ...]]:
    """(the registered id, every module imported for it) of ``env`` (an id, or ``module:EnvId``).

    The plugin modules are imported first, then the module of a ``module:EnvId``; the id must then be
    registered, or the error says what to import."""
    modules = list(imports)
    if ":" in env:
        module, env = env.split(":", 1)
        modules.append(module)
    import_plugins(modules)
    try:
        gymnasium.spec(env)
    except gymnasium.error.Error as err:  # an unknown id, with gymnasium's own suggestions
        raise ValueError(
            f"unknown environment {env!r} ({err}); if another package registers it, import it first: "
            f"--import PACKAGE (Python: imports=['PACKAGE']) or the id as 'PACKAGE:{env}'"
        ) from err
    return env, tuple(dict.fromkeys(modules))


def step_limit(env: gymnasium.Env) -> int | None:
    """The most steps an episode of ``env`` may take: its TimeLimit's, else its spec's; None if it has none."""
    current: gymnasium.Env = env
    while isinstance(current, gymnasium.Wrapper):
        if isinstance(current, gymnasium.wrappers.TimeLimit):
            return int(current._max_episode_steps)
        current = current.env
    spec = env.spec
    return None if spec is None or spec.max_episode_steps is None else int(spec.max_episode_steps)
