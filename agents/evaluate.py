"""Closed-loop evaluation in the real environment: success with a Wilson interval, return, distance, ms per step.

`evaluate` runs any policy with stable-baselines3's ``predict`` (an `MPCAgent`, an SB3 model,
`RandomPolicy`) for a number of seeded episodes: episode ``i`` is reset with ``seed + i`` and gets at
most ``max_steps`` steps. The policy sees the observations only (pixels, for the MPC agent) and,
through ``set_goal`` when it has one, the goal image the environment puts in its reset info; it
never sees the simulator state.

Everything runs through a gymnasium vector environment (a single environment is wrapped in a
`SyncVectorEnv` of one), in waves of ``num_envs`` episodes that start together, so the seeds are
exact whatever the autoreset mode.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, SyncVectorEnv, VectorEnv
from torchwm.agents.protocols import PredictPolicy

EnvSource = gym.Env | VectorEnv | Callable[[], gym.Env]

__all__ = ["EpisodeRecord", "EvalResult", "RandomPolicy", "evaluate", "wilson_interval"]


@dataclass
class EpisodeRecord:
    """One evaluated episode."""

    index: int
    """Episode number i (reset with ``seed + i``)."""
    seed: int
    """Seed of the episode's reset."""
    success: bool
    """``info[success_key]`` at the last step, or ``terminated`` when the environment never reports it."""
    episode_return: float
    """Sum of the rewards."""
    steps: int
    """Steps taken (at most ``max_steps``)."""
    final_distance: float | None
    """``info[distance_key]`` at the last step, None when absent."""
    median_ms_per_step: float
    """Median policy time of this episode's steps, in milliseconds."""
    frames: np.ndarray | None = field(default=None, repr=False)
    """``[T, H, W, C]`` uint8 observed frames (only for the first ``record_frames`` episodes)."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (frames left out)."""
        return {k: v for k, v in asdict(self).items() if k != "frames"}


@dataclass
class EvalResult:
    """Summary of an evaluation, with the per-episode records."""

    success_rate: float
    """Fraction of successful episodes."""
    success_ci95: tuple[float, float]
    """Wilson 95% interval of the success rate."""
    episodes: int
    """Episodes evaluated."""
    mean_return: float
    """Mean episode return."""
    final_distance: float | None
    """Mean final distance over the episodes that report one (None when none does)."""
    final_distances: list[float | None]
    """Final distance of each episode."""
    median_ms_per_step: float
    """Median wall time of one ``predict`` call (one step of every environment), in milliseconds."""
    p95_ms_per_step: float
    """95th percentile of the same."""
    steps: int
    """Environment steps taken over all episodes."""
    records: list[EpisodeRecord] = field(default_factory=list, repr=False)
    """One record per episode, in episode order."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary with the per-episode records (no frames)."""
        summary = {k: v for k, v in asdict(self).items() if k != "records"}
        summary["success_ci95"] = list(self.success_ci95)
        summary["records"] = [record.to_dict() for record in self.records]
        return summary


def wilson_interval(successes: int, trials: int, z: float = 1.959963984540054) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (95% for the default ``z``); ``(0, 1)`` with no trials."""
    if trials < 0 or not 0 <= successes <= max(trials, 0):
        raise ValueError(f"need 0 <= successes <= trials, got successes={successes}, trials={trials}")
    if trials == 0:
        return 0.0, 1.0
    p = successes / trials
    denom = 1.0 + z * z / trials
    center = (p + z * z / (2 * trials)) / denom
    half = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denom
    return max(0.0, center - half), min(1.0, center + half)


class RandomPolicy:
    """Uniformly random actions with SB3's ``predict`` shape, seeded.

    A batch is recognised from the observation: image ``[B, H, W, C]`` or flat ``[B, N]`` (for a dict,
    its ``"pixels"`` entry, or else its first entry).
    """

    def __init__(self, action_space: gym.Space, seed: int = 0) -> None:
        self.action_space = copy.deepcopy(action_space)
        self.action_space.seed(seed)

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """One random action ``[A]`` for a single observation, ``[B, A]`` for a batch."""
        batch = _batch_size(observation)
        if batch is None:
            return np.asarray(self.action_space.sample()), state
        return np.stack([np.asarray(self.action_space.sample()) for _ in range(batch)]), state


def evaluate(
    policy: PredictPolicy,
    env: EnvSource,
    episodes: int,
    seed: int,
    max_steps: int,
    goal_from_info: bool = True,
    num_envs: int = 1,
    deterministic: bool = True,
    record_frames: int = 0,
    success_key: str = "is_success",
    distance_key: str = "distance",
    goal_key: str = "goal_frame",
    episode_options: Callable[[int], dict[str, Any] | None] | None = None,
) -> EvalResult:
    """Run ``policy`` closed loop for ``episodes`` seeded episodes of at most ``max_steps`` steps.

    Args:
        policy: anything with SB3's ``predict``; with ``set_goal`` too, it receives ``info[goal_key]``
            at every reset (when ``goal_from_info``).
        env: a vector env, an env, or a factory of envs (``num_envs`` of them are made and closed).
        episodes: episodes to run; episode i is reset with ``seed + i``.
        record_frames: keep the observed frames of the first this-many episodes (for GIFs).
        success_key, distance_key, goal_key: info entries for success, distance to goal, goal image.
        episode_options: reset options of each episode from its seed (``options(seed) -> dict``), for
            per-episode task variants; needs one environment at a time (``num_envs=1``).
    """
    if episodes < 1 or max_steps < 1:
        raise ValueError(
            f"episodes and max_steps must be >= 1, got episodes={episodes}, max_steps={max_steps}"
        )
    venv, owned = _as_vector_env(env, num_envs)
    if episode_options is not None and venv.num_envs != 1:
        if owned:
            venv.close()
        raise ValueError(f"episode_options give each episode its own reset options: use num_envs=1, not {venv.num_envs}")
    keys = _InfoKeys(success_key, distance_key, goal_key)
    try:
        records: list[EpisodeRecord] = []
        all_ms: list[float] = []
        for first in range(0, episodes, venv.num_envs):
            count = min(venv.num_envs, episodes - first)
            wave, wave_ms = _run_wave(
                policy,
                venv,
                first,
                count,
                seed,
                max_steps,
                goal_from_info,
                deterministic,
                record_frames,
                keys,
                episode_options,
            )
            records.extend(wave)
            all_ms.extend(wave_ms)
    finally:
        if owned:
            venv.close()
    return _summarise(records, all_ms)


@dataclass(frozen=True)
class _InfoKeys:
    success: str
    distance: str
    goal: str


def _as_vector_env(env: EnvSource, num_envs: int) -> tuple[VectorEnv, bool]:
    """A vector env and whether evaluate made it (and so closes it)."""
    if isinstance(env, VectorEnv):
        return env, False
    if isinstance(env, gym.Env):
        return SyncVectorEnv([lambda: env]), False
    if callable(env):
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        return SyncVectorEnv([env] * num_envs), True
    raise TypeError(f"env must be a gymnasium Env, VectorEnv or a factory of Envs, got {type(env).__name__}")


def _run_wave(
    policy: PredictPolicy,
    venv: VectorEnv,
    first: int,
    count: int,
    seed: int,
    max_steps: int,
    goal_from_info: bool,
    deterministic: bool,
    record_frames: int,
    keys: _InfoKeys,
    episode_options: Callable[[int], dict[str, Any] | None] | None = None,
) -> tuple[list[EpisodeRecord], list[float]]:
    """Episodes ``first .. first + count - 1`` started together on the sub-environments."""
    n = venv.num_envs
    seeds = [seed + first + j for j in range(n)]
    options = None if episode_options is None else episode_options(seeds[0])
    obs, infos = venv.reset(seed=seeds, options=options)  # type: ignore[arg-type]  # vector envs take one seed per sub-env
    if goal_from_info and keys.goal in infos and callable(getattr(policy, "set_goal", None)):
        policy.set_goal(np.asarray(infos[keys.goal]))  # type: ignore[attr-defined]
    track = _WaveTracker(n, count, recorded=max(0, min(count, record_frames - first)))
    state, episode_start, ms = None, np.ones(n, dtype=bool), []
    for _ in range(max_steps):
        track.add_frames(obs)
        start = time.perf_counter()
        actions, state = policy.predict(
            obs, state=state, episode_start=episode_start, deterministic=deterministic
        )
        ms.append((time.perf_counter() - start) * 1000.0)
        obs, rewards, terminated, truncated, infos = venv.step(actions)
        track.update(rewards, terminated, truncated, infos, obs, keys, _autoreset_mode(venv))
        if not track.running[:count].any():
            break
        obs = _reset_finished(venv, obs, terminated | truncated)
        episode_start = np.zeros(n, dtype=bool)
    return track.records(first, seed, ms), ms


class _WaveTracker:
    """Returns, steps, outcomes and frames of the episodes of one wave."""

    def __init__(self, num_envs: int, count: int, recorded: int) -> None:
        self.count = count
        self.running = np.ones(num_envs, dtype=bool)
        self.returns = np.zeros(num_envs, dtype=np.float64)
        self.steps = np.zeros(num_envs, dtype=np.int64)
        self.success = np.zeros(num_envs, dtype=bool)
        self.distance: list[float | None] = [None] * num_envs
        self.frames: list[list[np.ndarray]] = [[] for _ in range(recorded)]

    def add_frames(self, obs: Any) -> None:
        for j, frames in enumerate(self.frames):
            if self.running[j]:
                frames.append(np.array(_pixels(obs)[j]))

    def update(
        self,
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
        infos: dict[str, Any],
        obs: Any,
        keys: _InfoKeys,
        mode: AutoresetMode,
    ) -> None:
        active = np.flatnonzero(self.running)
        self.returns[active] += rewards[active]
        self.steps[active] += 1
        for j in active.tolist():
            reported = _info_value(infos, keys.success, j)
            self.success[j] = bool(terminated[j]) if reported is None else bool(reported)
            distance = _info_value(infos, keys.distance, j)
            self.distance[j] = None if distance is None else float(distance)
        done = terminated | truncated
        for j in np.flatnonzero(done & self.running).tolist():
            if j < len(self.frames):
                self.frames[j].append(np.array(_final_pixels(obs, infos, j, mode)))
        self.running &= ~done

    def records(self, first: int, seed: int, ms: list[float]) -> list[EpisodeRecord]:
        out = []
        for j in range(self.count):
            steps = int(self.steps[j])
            frames = np.stack(self.frames[j]) if j < len(self.frames) and self.frames[j] else None
            out.append(
                EpisodeRecord(
                    index=first + j,
                    seed=seed + first + j,
                    success=bool(self.success[j]),
                    episode_return=float(self.returns[j]),
                    steps=steps,
                    final_distance=self.distance[j],
                    median_ms_per_step=float(np.median(ms[:steps])) if steps else 0.0,
                    frames=frames,
                )
            )
        return out


def _summarise(records: list[EpisodeRecord], ms: list[float]) -> EvalResult:
    successes = sum(r.success for r in records)
    distances = [r.final_distance for r in records]
    known = [d for d in distances if d is not None]
    times = np.asarray(ms if ms else [0.0])
    return EvalResult(
        success_rate=successes / len(records),
        success_ci95=wilson_interval(successes, len(records)),
        episodes=len(records),
        mean_return=float(np.mean([r.episode_return for r in records])),
        final_distance=float(np.mean(known)) if known else None,
        final_distances=distances,
        median_ms_per_step=float(np.median(times)),
        p95_ms_per_step=float(np.percentile(times, 95)),
        steps=int(sum(r.steps for r in records)),
        records=records,
    )


def _autoreset_mode(venv: VectorEnv) -> AutoresetMode:
    mode = getattr(venv, "autoreset_mode", None) or venv.metadata.get(
        "autoreset_mode", AutoresetMode.NEXT_STEP
    )
    return AutoresetMode(mode)


def _reset_finished(venv: VectorEnv, obs: Any, done: np.ndarray) -> Any:
    """With autoreset disabled, reset finished sub-environments so the others can keep stepping."""
    if _autoreset_mode(venv) != AutoresetMode.DISABLED or not done.any():
        return obs
    obs, _ = venv.reset(options={"reset_mask": done.astype(np.bool_)})
    return obs


def _info_value(infos: dict[str, Any], key: str, j: int) -> Any:
    """Sub-environment ``j``'s ``key`` from batched infos (its final info when it was autoreset), or None."""
    final = infos.get("final_info")
    if isinstance(final, dict) and _has(infos, "final_info", j) and _has(final, key, j):
        return final[key][j]
    return infos[key][j] if _has(infos, key, j) else None


def _has(infos: dict[str, Any], key: str, j: int) -> bool:
    mask = infos.get(f"_{key}")
    return key in infos and (mask is None or bool(mask[j]))


def _pixels(obs: Any) -> np.ndarray:
    """The frames of a batched observation (its ``"pixels"`` entry for a dict)."""
    return obs["pixels"] if isinstance(obs, dict) else obs


def _final_pixels(obs: Any, infos: dict[str, Any], j: int, mode: AutoresetMode) -> np.ndarray:
    """The last frame of sub-environment ``j``'s episode (``final_obs`` when it was reset in the same step)."""
    if mode == AutoresetMode.SAME_STEP and "final_obs" in infos and infos["final_obs"][j] is not None:
        final = infos["final_obs"][j]
        return final["pixels"] if isinstance(final, dict) else final
    return _pixels(obs)[j]


def _batch_size(observation: Any) -> int | None:
    """B of a batched image ``[B, H, W, C]`` or flat ``[B, N]`` observation, None for a single one."""
    if isinstance(observation, dict):
        observation = observation.get("pixels", next(iter(observation.values())))
    shape = np.shape(observation)
    if len(shape) in (2, 4):
        return shape[0]
    return None
