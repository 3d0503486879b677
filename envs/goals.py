"""Goal images for any environment, as ``info["goal_frame"]`` at reset (what the planners and `evaluate` read).

Three sources:

- the environment's own ``info["goal_frame"]`` (the built-in environments give one): nothing to add;
- `FunctionGoal`: a user function of the environment, ``goal_fn(env) -> frame`` (``--goal-function
  module:function``), for an environment that keeps its goal somewhere else (an attribute, a method);
- `OfflineGoals`: for environments that have no goal at all, the protocol of DINO-WM and stable-worldmodel:
  start at a state of a held-out recorded episode and take as goal the frame ``offset`` steps later on it.
  The start is reached by replaying the episode's recorded reset seed and actions, so no environment needs a
  set-state API; a reset with seed ``s`` picks held-out episode ``s mod N`` and a start step drawn from ``s``,
  so every policy evaluated on the same seeds gets the same starts and goals (a random policy included).

`OfflineGoals` also reports ``info["distance"]`` (Euclidean distance of the state to the recorded goal state:
``info["state"]``, or the observation where it is a state vector, as the recorder stores it) and ``info["is_success"]`` (that distance under
``success_distance``) unless the environment reports success itself.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from torchwm.wm.episodes import load_episode, read_manifest

GoalFunction = Callable[[gym.Env], Any]
"""``goal_fn(env) -> frame`` uint8 [H, W, C]: the goal image of the episode the env was just reset into."""


def load_goal_function(ref: str) -> Callable[..., Any]:
    """``module:function`` -> the function (a goal function, or any user hook given that way; the error says
    which part is missing)."""
    if ":" not in ref:
        raise ValueError(f"a function is given as 'module:function', got {ref!r}")
    module, name = ref.split(":", 1)
    try:
        fn = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"cannot load the function {ref!r}: {err}") from err
    if not callable(fn):
        raise ValueError(f"{ref!r} is not callable")
    return fn  # type: ignore[no-any-return]


def _as_frame(value: Any, source: str) -> np.ndarray:
    frame = np.asarray(value.detach().cpu().numpy() if hasattr(value, "detach") else value)
    if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (1, 3):
        raise ValueError(f"{source} must give a uint8 [H, W, C] goal image with C 1 or 3, got {frame.dtype} {frame.shape}")
    return frame


def _state_observation(env: gym.Env, obs: Any) -> np.ndarray | None:
    """The observation as a state vector when it is one (a flat float Box), as the recorder stores it."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating):
        return np.asarray(obs.detach().cpu().numpy() if hasattr(obs, "detach") else obs, np.float64)
    return None


class FunctionGoal(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """``info["goal_frame"]`` at reset from ``goal_fn(env)`` (the wrapped environment, after its reset)."""

    def __init__(self, env: gym.Env, goal_fn: GoalFunction | str) -> None:
        gym.utils.RecordConstructorArgs.__init__(self, goal_fn=goal_fn)
        super().__init__(env)
        self.goal_fn = load_goal_function(goal_fn) if isinstance(goal_fn, str) else goal_fn

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        return obs, {**info, "goal_frame": _as_frame(self.goal_fn(self.env), "the goal function")}


class OfflineGoals(gym.Wrapper[Any, Any, Any, Any], gym.utils.RecordConstructorArgs):
    """Start at step t of a held-out recorded episode (replayed from its seed and actions), goal = its frame t+k.

    Args:
        env: the environment as the episodes were recorded (same id; wrap it in `ActionRepeat` with the
            recording's frame skip: one recorded action is one step of ``env``).
        episodes_dir: held-out episodes (`torchwm record` with seeds never used in training).
        offset: k, the steps between the start and the goal on the recorded episode.
        success_distance: ``is_success`` when the state is within this distance of the goal state (needs
            ``info["state"]``; None: only the environment's own ``is_success`` counts).
    """

    def __init__(
        self, env: gym.Env, episodes_dir: str | Path, offset: int = 25, success_distance: float | None = None
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self, episodes_dir=str(episodes_dir), offset=offset, success_distance=success_distance
        )
        super().__init__(env)
        if offset < 1:
            raise ValueError(f"OfflineGoals needs offset >= 1, got {offset}")
        self.root, self.offset, self.success_distance = Path(episodes_dir), offset, success_distance
        manifest = read_manifest(self.root)
        self.entries = [e for e in manifest["episodes"] if e["num_steps"] >= offset and "seed" in e.get("info", {})]
        if not self.entries:
            raise ValueError(
                f"no episode of {self.root} has {offset} steps or more (and a recorded seed): record longer held-out "
                f"episodes or lower the goal offset"
            )
        self._manifest = manifest
        self._goal_state: np.ndarray | None = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        if seed is None:
            raise ValueError("OfflineGoals picks its held-out episode and start from the reset seed: pass seed=")
        entry = self.entries[seed % len(self.entries)]
        episode = load_episode(self.root, entry["name"], manifest=self._manifest)
        start = int(np.random.default_rng(seed).integers(0, episode.num_steps - self.offset + 1))
        obs, info = self.env.reset(seed=int(entry["info"]["seed"]), options=options)
        for action in episode.actions[:start]:
            obs, _, terminated, truncated, info = self.env.step(action)
            if terminated or truncated:
                raise ValueError(f"replaying {entry['name']} ended early: the environment is not deterministic")
        goal = start + self.offset
        states = episode.states
        self._goal_state = None if states is None else np.asarray(states[goal], np.float64)
        assert episode.frames is not None  # loaded with its frames
        return obs, {**info, "goal_frame": episode.frames[goal], "goal_episode": entry["name"], "goal_start": start}

    def step(self, action: Any) -> tuple[Any, Any, bool, bool, dict[str, Any]]:
        obs, reward, terminated, truncated, info = self.env.step(action)
        state = info.get("state", _state_observation(self.env, obs))
        if self._goal_state is not None and state is not None:
            distance = float(np.linalg.norm(np.asarray(state, np.float64) - self._goal_state))
            info = {**info, "distance": distance}
            if "is_success" not in info and self.success_distance is not None:
                info["is_success"] = distance <= self.success_distance
        return obs, reward, terminated, truncated, info
