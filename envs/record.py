"""Record episodes of any gymnasium environment under any policy into the episode format.

``record(env, policy, episodes, out_dir)`` runs ``num_envs`` copies of the environment in a
gymnasium vector env and writes each finished episode through ``wm.episodes.EpisodeWriter``
(one mp4 + one npz per episode, listed in ``manifest.json``).

- Pixels come from the observation when it is an HxWx3 uint8 Box or a Dict with a ``"pixels"`` key,
  else from ``render()`` (the env must be made with ``render_mode="rgb_array"``).
- The ground-truth state is ``info["state"]`` where the environment puts one there.
- Seeds: episodes are reset with ``seed``, ``seed + 1``, ... skipping every reset seed the folder holds
  already, so appending never records a seed twice (without ``seed``: one past the highest seed in the
  folder, 0 in a new one). For ``policy="random"`` the episode reset with ``seed + j`` samples its actions
  from an action space seeded from ``(seed, j)``: the same episode comes out whatever ``num_envs`` is and
  wherever a resumed recording starts. (An SB3 model sampling stochastically draws from torch's global RNG.)
- The folder is a run folder (`torchwm.wm.runs`): appending with another environment, frame skip or image size
  is refused (episodes of different lengths may share a folder), and one process writes it at a time. Each
  episode's manifest entry names the policy that made it.
- Resets are done by this module (``AutoresetMode.DISABLED``), so no autoreset observation is ever
  mistaken for a step of the episode.
- Finished episodes are written on a thread while the environments step on (ffmpeg encodes in its own
  process, zlib compresses outside the GIL), in the order they finished.
- Ctrl-C: finished episodes are written and stay in the manifest, the unfinished ones are dropped, and the
  KeyboardInterrupt is raised again.
"""

from __future__ import annotations

import copy
import functools
import os
import queue
import re
import threading
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, runtime_checkable

import gymnasium
import numpy as np
from gymnasium.envs.registration import load_env_creator
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv
from gymnasium.vector.utils import iterate
from torchwm.envs.resolve import import_plugins, resolve_env_id, step_limit
from torchwm.wm.config_base import Config, NonNegInt, PositiveInt
from torchwm.wm.episodes import MANIFEST, EpisodeWriter, read_manifest
from torchwm.wm.runs import Overwrite, open_run
from tqdm.auto import tqdm

PixelSource = Literal["obs", "pixels", "render"]

DEFAULT_MAX_STEPS = 1000
"""Recorded steps an episode of an environment without a step limit is cut at (with a warning)."""
VecEnv = SyncVectorEnv | AsyncVectorEnv


@runtime_checkable
class Predictor(Protocol):
    """Anything with SB3's ``predict``: a stable-baselines3 model, or an MPC agent."""

    def predict(self, observation: Any, deterministic: bool = False) -> tuple[Any, Any]: ...


@dataclass
class FrameStep:
    """What a `FramePolicy` sees of the N sub-environments at one agent step, as the recorder stores it."""

    frames: np.ndarray
    """uint8 [N, H, W, C]: each sub-environment's current frame (resized to the recording's image size)."""
    states: list[Any]
    """Each sub-environment's state vector (``info["state"]``, or a state observation), None where there is none."""
    goal_frames: np.ndarray | None
    """uint8 [N, H, W, C]: the ``info["goal_frame"]`` of each episode's reset, resized as the frames (None when the
    environment gives none)."""
    episode_start: np.ndarray
    """[N] bool: the sub-environments whose episode starts at this step."""


@runtime_checkable
class FramePolicy(Protocol):
    """A policy that acts on the recorded frames rather than on the environment's observations (the MPC
    collector of ``torchwm learn``): ``act(step) -> actions [N, ...]``."""

    def act(self, step: FrameStep) -> np.ndarray: ...


Policy = Literal["random"] | Predictor | FramePolicy | Callable[[Any], Any]


def describe_action_space(space: gymnasium.Space) -> dict[str, Any]:
    """The plain-dict description of a Box or Discrete action space that the manifest stores."""
    if isinstance(space, gymnasium.spaces.Box):
        return {
            "kind": "box",
            "shape": list(space.shape),
            "low": space.low.ravel().tolist(),
            "high": space.high.ravel().tolist(),
        }
    if isinstance(space, gymnasium.spaces.Discrete):
        return {"kind": "discrete", "n": int(space.n), "start": int(space.start)}
    raise ValueError(f"record supports Box and Discrete action spaces, got {space}")


def pixel_source(envs: VecEnv) -> PixelSource:
    """Where a vector env's frames come from: the observation, its "pixels" entry, or render()."""
    space = envs.single_observation_space
    if _is_image_space(space):
        return "obs"
    if isinstance(space, gymnasium.spaces.Dict) and "pixels" in space.spaces:
        return "pixels"
    if envs.render_mode == "rgb_array":
        return "render"
    raise ValueError(
        f"the environment gives no pixels: its observation space {space} is neither an HxWx3 uint8 Box nor a "
        f"Dict with a 'pixels' key, and its render_mode is {envs.render_mode!r}; make it with "
        "render_mode='rgb_array' (e.g. gymnasium.make(env_id, render_mode='rgb_array'))"
    )


def _is_image_space(space: gymnasium.Space) -> bool:
    return (
        isinstance(space, gymnasium.spaces.Box)
        and space.dtype == np.uint8
        and len(space.shape) == 3
        and space.shape[2] == 3
    )


# ----------------------------------------------------------------------------- environments


def _env_factory(
    env: str | gymnasium.Env | Callable[[], gymnasium.Env],
) -> tuple[Callable[[], gymnasium.Env], bool]:
    """(factory, whether record owns and may vectorise and close the envs it makes)."""
    if isinstance(env, str):  # an id `resolve_env_id` has checked
        return functools.partial(_make_by_id, env), True
    if isinstance(env, gymnasium.Env):
        return (lambda: env), False
    if callable(env):
        return env, True
    raise TypeError(f"env must be an env id, a gymnasium.Env or a function making one, got {env!r}")


def _make_by_id(env_id: str) -> gymnasium.Env:
    """``gymnasium.make(env_id)``, with ``render_mode="rgb_array"`` unless the env says it has no such mode."""
    entry_point = gymnasium.spec(env_id).entry_point
    creator = load_env_creator(entry_point) if isinstance(entry_point, str) else entry_point
    modes = getattr(creator, "metadata", {}).get("render_modes", ["rgb_array"])
    return gymnasium.make(env_id, render_mode="rgb_array") if "rgb_array" in modes else gymnasium.make(env_id)


def _make_vector_env(
    factory: Callable[[], gymnasium.Env], num_envs: int, vector: Literal["sync", "async"]
) -> VecEnv:
    if vector not in ("sync", "async"):
        raise ValueError(f"vector must be 'sync' or 'async', got {vector!r}")
    cls = AsyncVectorEnv if vector == "async" else SyncVectorEnv
    return cls([factory] * num_envs, autoreset_mode=AutoresetMode.DISABLED)


def _has_time_limit(envs: VecEnv) -> bool:
    """Whether an episode of the vector env's sub-environments ends by itself after a bounded number of steps."""
    if isinstance(envs, SyncVectorEnv):
        return step_limit(envs.envs[0]) is not None
    spec = envs.get_attr("spec")[0]
    return spec is not None and spec.max_episode_steps is not None


def resize_frame(frame: np.ndarray, size: int) -> np.ndarray:
    """uint8 [H, W, C] -> [size, size, C], antialiased (Pillow's bilinear filter widens when it shrinks)."""
    from PIL import Image

    if frame.shape[:2] == (size, size):
        return frame
    channels = frame.shape[2]
    image = Image.fromarray(frame[..., 0] if channels == 1 else frame)
    out = np.asarray(image.resize((size, size), Image.Resampling.BILINEAR), dtype=np.uint8)
    return out[..., None] if channels == 1 else out


def _env_id(env: str | gymnasium.Env | Callable[[], gymnasium.Env], envs: VecEnv) -> str:
    """The registered id, else the class name of the innermost env."""
    if isinstance(env, str):
        return env
    spec = envs.get_attr("spec")[0]
    if spec is not None:
        return spec.id
    if isinstance(envs, SyncVectorEnv):
        return type(envs.envs[0].unwrapped).__name__
    names = re.findall(r"<(\w+)", str(envs.call("__str__")[0]))  # "<Wrapper<Env instance>>"
    return names[-1] if names else "unregistered"


def _as_numpy(image: Any, copy: bool = True) -> np.ndarray:
    """A frame as a numpy array (a torch tensor from a torch-based env included); ``copy=False`` may share the
    env's memory."""
    if hasattr(image, "detach") and hasattr(image, "cpu"):
        image = image.detach().cpu().numpy()
    return np.array(image) if copy else np.asarray(image)


def _info_at(infos: dict[str, Any], key: str, i: int) -> Any:
    """Sub-env i's value of ``key`` in vector infos, or None where it has none."""
    mask = infos.get(f"_{key}")
    if key not in infos or (mask is not None and not mask[i]):
        return None
    return infos[key][i]


def _success_at(infos: dict[str, Any], i: int) -> Any:
    """Sub-env i's ``info["success"]`` (or SB3's ``info["is_success"]``), None where it has neither."""
    success = _info_at(infos, "success", i)
    return _info_at(infos, "is_success", i) if success is None else success


# ----------------------------------------------------------------------------- policies


class _RandomPolicy:
    """Uniform actions, one action-space copy per sub-env, reseeded at each episode start."""

    def __init__(self, space: gymnasium.Space, num_envs: int):
        self.spaces = [copy.deepcopy(space) for _ in range(num_envs)]

    def seed_slot(self, slot: int, seed: int) -> None:
        self.spaces[slot].seed(seed)

    def __call__(self, obs: Any) -> np.ndarray:
        return np.stack([np.asarray(space.sample()) for space in self.spaces])


def _make_actor(policy: Policy, envs: VecEnv, deterministic: bool) -> Callable[[Any], np.ndarray]:
    """Batched obs -> batched actions, for any accepted kind of policy but a `FramePolicy` (the recorder hands
    that one its frames)."""
    if isinstance(policy, str):
        if policy != "random":
            raise ValueError(
                f"policy must be 'random', an object with .predict(obs, deterministic=...) or a callable, got {policy!r}"
            )
        return _RandomPolicy(envs.single_action_space, envs.num_envs)
    if isinstance(policy, Predictor):
        return lambda obs: np.asarray(policy.predict(obs, deterministic=deterministic)[0])
    if callable(policy):
        return lambda obs: np.stack(
            [np.asarray(policy(o)) for o in iterate(envs.single_observation_space, obs)]
        )
    raise TypeError(
        f"policy must be 'random', an object with .predict(obs, deterministic=...) or a callable, got {policy!r}"
    )


# ----------------------------------------------------------------------------- recording


@dataclass
class _Episode:
    """One episode being recorded in one sub-env."""

    index: int
    seed: int
    frames: list[np.ndarray]
    states: list[Any]
    actions: list[np.ndarray] = field(default_factory=list)
    rewards: list[float] = field(default_factory=list)
    terminated: list[bool] = field(default_factory=list)
    truncated: list[bool] = field(default_factory=list)
    success: Any = None


@dataclass
class _Step:
    """What one agent step (frame_skip raw steps) gave every sub-env."""

    rewards: np.ndarray  # [N] summed over the raw steps until the episode ended
    ended: np.ndarray  # [N] bool, terminated or truncated by the env during the step
    terminated: np.ndarray  # [N] bool
    truncated: np.ndarray  # [N] bool
    last_done: np.ndarray  # [N] bool, done at the last raw step: must be reset before stepping again
    frames: dict[int, np.ndarray] = field(default_factory=dict)
    infos: dict[int, tuple[Any, Any]] = field(default_factory=dict)  # slot -> (state, success)


class _WriteBehind:
    """Writes finished episodes on one thread, in the order they were handed over (so their numbers are those a
    writer on the main thread would give), while the caller goes on stepping the environments; at most ``depth``
    episodes wait. `close` writes every episode handed over before it returns, and raises the first error the
    thread met (also raised by the `submit` after it)."""

    def __init__(self, write: Callable[[_Episode], None], depth: int):
        self._write = write
        self._queue: queue.Queue[_Episode | None] = queue.Queue(maxsize=depth)
        self._error: BaseException | None = None  # raised once, in the main thread
        self._failed = False  # for good: the episodes after a failed one are not written
        self._thread = threading.Thread(target=self._loop, name="torchwm-record-writer")
        self._thread.start()

    def _loop(self) -> None:
        while (episode := self._queue.get()) is not None:
            if not self._failed:  # after an error the rest are dropped: the caller is told at once
                try:
                    self._write(episode)
                except BaseException as e:  # noqa: BLE001  (handed to the main thread, raised there)
                    self._error, self._failed = e, True

    def submit(self, episode: _Episode) -> None:
        self._raise()
        self._queue.put(episode)

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join()
        self._raise()

    def _raise(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error


class _Recorder:
    """Runs the vector env, keeps one `_Episode` per sub-env, and hands finished ones to the writer."""

    def __init__(
        self,
        envs: VecEnv,
        actor: Callable[[Any], np.ndarray],
        env_id: str,
        out_dir: Path,
        options: dict[str, Any],
    ):
        self.envs, self.actor, self.env_id, self.out_dir = envs, actor, env_id, out_dir
        self.source = pixel_source(envs)
        self.action_space = describe_action_space(envs.single_action_space)
        self.episodes, self.seed, self.max_steps = options["episodes"], options["seed"], options["max_steps"]
        self.frame_skip, self.fps, self.lossless = options["frame_skip"], options["fps"], options["lossless"]
        self.imports, self.image_size = options["imports"], options["image_size"]
        self.skip_seeds, self.policy = frozenset(options["skip_seeds"]), options["policy"]
        space = envs.single_observation_space
        self.state_observations = (
            isinstance(space, gymnasium.spaces.Box) and len(space.shape) == 1 and np.issubdtype(space.dtype, np.floating)
        )
        self.slots: list[_Episode | None] = [None] * envs.num_envs
        self.started = 0
        self.next_offset = 0
        self.writer: EpisodeWriter | None = None
        self.obs: Any = None
        self.frame_policy: FramePolicy | None = None
        self.now: FrameStep | None = None  # what a frame policy sees, kept up to date when there is one

    def run(self, progress: tqdm) -> None:
        # At most num_envs finished episodes wait: twice the frames of the episodes being recorded, no more.
        writes = _WriteBehind(self._write, depth=self.envs.num_envs)
        try:
            self._start_episodes(np.ones(self.envs.num_envs, dtype=bool), first=True)
            while any(slot is not None for slot in self.slots):
                actions = self._act()
                step = self._step(actions)
                self._track(step.frames, {i: state for i, (state, _) in step.infos.items()}, None)
                finished = self._append(actions, step)
                for slot in np.flatnonzero(finished).tolist():
                    episode = self.slots[slot]
                    assert episode is not None, "only recording sub-envs finish episodes"
                    writes.submit(episode)
                    self.slots[slot] = None
                    progress.update(1)
                reset = finished | step.last_done
                if reset.any():
                    self._start_episodes(reset, first=False)
        finally:
            writes.close()  # the finished episodes reach the manifest, a Ctrl-C or an error included

    def _start_episodes(self, mask: np.ndarray, first: bool) -> None:
        """Reset the sub-envs in ``mask``, starting the next episodes (with their seeds) where any are left."""
        seeds = self._assign_episodes(mask)
        options = None if first else {"reset_mask": mask}
        self.obs, infos = self.envs.reset(seed=seeds, options=options)  # type: ignore[arg-type]  # a list is fine
        starting = np.array([seed is not None for seed in seeds])
        frames = self._frames(self.obs, starting)
        if self.writer is None and frames:
            shape = next(iter(frames.values())).shape
            extra = {"imports": self.imports, "image_size": self.image_size}
            self.writer = EpisodeWriter(
                self.out_dir, self.env_id, shape, self.action_space, self.fps, self.lossless, extra
            )
        states = {slot: self._state(infos, self.obs, slot) for slot in np.flatnonzero(starting).tolist()}
        for slot, episode in enumerate(self.slots):
            if starting[slot] and episode is not None:
                episode.frames.append(frames[slot])
                episode.states.append(states[slot])
        if self.frame_policy is not None:
            goals = {slot: self._stored(np.asarray(goal)) for slot in states
                     if (goal := _info_at(infos, "goal_frame", slot)) is not None}  # fmt: skip
            self._track(frames, states, goals)

    def _act(self) -> np.ndarray:
        """The actions of every sub-env: from the frame policy (given the frames, then no episode starts any more)
        or from the actor (given the observations)."""
        if self.frame_policy is None:
            return self.actor(self.obs)
        assert self.now is not None, "the first reset tracks the frames"
        actions = self.frame_policy.act(self.now)
        self.now.episode_start[:] = False
        return actions

    def _track(
        self, frames: dict[int, np.ndarray], states: dict[int, Any], goals: dict[int, np.ndarray] | None
    ) -> None:
        """Keep the frame policy's view current: the new frames and states of some sub-envs and, where ``goals``
        is given (a reset), their goal frames, those sub-envs marked as starting an episode."""
        if self.frame_policy is None or not frames:
            return
        if self.now is None:
            shape = next(iter(frames.values())).shape
            n = self.envs.num_envs
            self.now = FrameStep(np.zeros((n, *shape), np.uint8), [None] * n, None, np.zeros(n, dtype=bool))
        now = self.now
        for slot, frame in frames.items():
            now.frames[slot] = frame
            now.states[slot] = states.get(slot)
        if goals is not None:
            now.episode_start[list(frames)] = True
            if goals:
                if now.goal_frames is None:
                    now.goal_frames = np.zeros_like(now.frames)
                for slot, goal in goals.items():
                    now.goal_frames[slot] = goal

    def _assign_episodes(self, mask: np.ndarray) -> list[int | None]:
        """Give the next episodes to the sub-envs in ``mask`` while any are left; return their reset seeds."""
        seeds: list[int | None] = [None] * self.envs.num_envs
        for slot in np.flatnonzero(mask).tolist():
            if self.started == self.episodes:
                break
            offset = self.next_offset
            while self.seed + offset in self.skip_seeds:  # recorded into this folder already
                offset += 1
            self.next_offset = offset + 1
            seed = self.seed + offset
            seeds[slot], self.slots[slot] = seed, _Episode(self.started, seed, [], [])
            if isinstance(self.actor, _RandomPolicy):  # a function of the reset seed: the same episode on a resume
                self.actor.seed_slot(slot, int(np.random.SeedSequence([self.seed, offset]).generate_state(1)[0]))
            self.started += 1
        return seeds

    def _step(self, actions: np.ndarray) -> _Step:
        """Repeat ``actions`` frame_skip times; capture each live sub-env's frame where its step ends."""
        n = self.envs.num_envs
        step = _Step(np.zeros(n), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool))
        active = np.array([slot is not None for slot in self.slots])
        for repeat in range(self.frame_skip):
            obs, rewards, terminated, truncated, infos = self.envs.step(actions)
            live, done = ~step.ended, terminated | truncated
            step.rewards[live] += rewards[live]
            newly = live & done
            step.terminated |= newly & terminated
            step.truncated |= newly & truncated
            capture = active & (newly | (live if repeat == self.frame_skip - 1 else False))
            step.frames.update(self._frames(obs, capture))
            step.infos.update(
                {
                    i: (self._state(infos, obs, i), _success_at(infos, i))
                    for i in np.flatnonzero(capture).tolist()
                }
            )
            step.ended |= newly
            step.last_done = done
            if repeat < self.frame_skip - 1 and done.any():
                self.envs.reset(options={"reset_mask": done})  # keep stepping; this episode's step is over
        self.obs = obs
        return step

    def _append(self, actions: np.ndarray, step: _Step) -> np.ndarray:
        """Add the step to every recording sub-env; return the [N] mask of episodes that are over."""
        finished = np.zeros(self.envs.num_envs, dtype=bool)
        for slot, episode in enumerate(self.slots):
            if episode is None:
                continue
            episode.actions.append(np.asarray(actions[slot]))
            episode.rewards.append(float(step.rewards[slot]))
            episode.frames.append(step.frames[slot])
            state, episode.success = step.infos[slot]
            episode.states.append(state)
            out_of_time = self.max_steps is not None and len(episode.actions) >= self.max_steps
            episode.terminated.append(bool(step.terminated[slot]))
            episode.truncated.append(
                bool(step.truncated[slot]) or (out_of_time and not step.terminated[slot])
            )
            finished[slot] = step.ended[slot] or out_of_time
        return finished

    def _state(self, infos: dict[str, Any], obs: Any, i: int) -> Any:
        """Sub-env i's ground-truth state: ``info["state"]``, else its observation when that is a state vector
        (a flat float Box, as classic-control and MuJoCo envs give), else None."""
        state = _info_at(infos, "state", i)
        if state is None and self.state_observations:
            state = np.asarray(_as_numpy(obs[i]), np.float32)
        return state

    def _frames(self, obs: Any, mask: np.ndarray) -> dict[int, np.ndarray]:
        """uint8 [H, W, 3] frame of every sub-env in ``mask``."""
        if not mask.any():
            return {}
        if self.source == "render":
            images = self.envs.render()
            if images is None:
                raise ValueError("env.render() returned None; make the env with render_mode='rgb_array'")
        else:
            images = obs if self.source == "obs" else obs["pixels"]
        frames = {int(i): _as_numpy(images[i], copy=False) for i in np.flatnonzero(mask).tolist()}
        for frame in frames.values():
            if frame.dtype != np.uint8 or frame.ndim != 3 or frame.shape[2] not in (1, 3):
                raise ValueError(
                    f"frames must be uint8 [H, W, 3] images, the env's {self.source} gave {frame.dtype} {frame.shape}"
                )
        return {i: self._stored(frame) for i, frame in frames.items()}

    def _stored(self, frame: np.ndarray) -> np.ndarray:
        """The frame to keep: resized (a new array), else a copy (the env may draw its next frame into the same
        memory); copying a 680 x 680 render before shrinking it took a quarter of the resize's time."""
        out = resize_frame(frame, self.image_size) if self.image_size else frame
        return out.copy() if out is frame else out

    def _write(self, episode: _Episode) -> None:
        assert self.writer is not None, "the writer is made at the first reset"
        has_states = all(state is not None for state in episode.states)
        info = {"episode_index": episode.index, "seed": episode.seed, "frame_skip": self.frame_skip,
                "policy": self.policy}  # fmt: skip
        if episode.success is not None:
            info["success"] = bool(episode.success)
        self.writer.add_episode(
            np.stack(episode.frames), np.stack(episode.actions), np.array(episode.rewards), np.array(episode.terminated),
            np.array(episode.truncated), np.stack(episode.states) if has_states else None, info,
        )  # fmt: skip


@dataclass(frozen=True)
class RecordJob(Config):
    """``torchwm record``: episodes of a gymnasium environment under a policy, into an episode directory."""

    env: str = ""
    """Gymnasium id, e.g. ``torchwm/TwoRooms-v0`` or ``Pendulum-v1``."""
    episodes: PositiveInt = 10
    """Episodes to record."""
    out: str = ""
    """Episode directory (appended to if it exists)."""
    policy: str = "random"
    """``random``, or a stable-baselines3 model ``.zip``."""
    frame_skip: PositiveInt = 1
    """Repeat each action k times and record every k-th frame."""
    num_envs: PositiveInt = 4
    """Sub-environments of the vector env."""
    max_steps: NonNegInt = 0
    """Cut episodes at this many recorded steps (0: the environment's own limit)."""
    seed: NonNegInt | None = None
    """First reset seed; seeds the folder holds already are skipped (none: one past the highest seed there)."""
    lossless: bool = False
    """Bit-exact frames (larger files)."""
    image_size: NonNegInt = 0
    """Store frames resized to N x N (0: the environment's size); written into the manifest."""
    imports: tuple[str, ...] = ()
    """Modules to import first, which register environments (``--imports my_pkg.envs``)."""
    overwrite: Overwrite = "never"
    """An existing episode folder of another recording: ``never`` refuses it (a matching one is appended to),
    ``move`` moves it aside, ``delete`` deletes it."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def check(self) -> None:
        for name in ("env", "out"):
            if not getattr(self, name):
                self.fail(name, getattr(self, name), f"a value (--{name})")


def record(
    env: str | gymnasium.Env | Callable[[], gymnasium.Env],
    policy: Policy = "random",
    episodes: int = 10,
    out_dir: str | os.PathLike[str] = "episodes",
    *,
    num_envs: int = 4,
    seed: int | None = None,
    max_steps: int | None = None,
    frame_skip: int = 1,
    lossless: bool = False,
    fps: int = 30,
    progress: bool = True,
    vector: Literal["sync", "async"] = "sync",
    deterministic: bool = False,
    imports: Sequence[str] = (),
    image_size: int | None = None,
    overwrite: Overwrite = "never",
) -> Path:
    """Record ``episodes`` episodes of ``env`` under ``policy`` into the episode directory ``out_dir``.

    Args:
        env: an env id (made with ``render_mode="rgb_array"``), a function making an env (called
            ``num_envs`` times), or one env instance (recorded with ``num_envs=1``, not closed).
        policy: ``"random"``, anything with SB3's ``predict(obs, deterministic=...)`` (given the
            batched observations [N, ...] of the vector env), or a callable from one observation
            to one action.
        episodes: how many complete episodes to write (appended if ``out_dir`` holds some already).
        num_envs: sub-environments stepped together (N).
        seed: the first reset seed; seeds already in ``out_dir`` are skipped. None: one past the highest reset
            seed in ``out_dir`` (0 for a new folder). See the module docstring.
        max_steps: most recorded steps (actions) an episode may have; it is then truncated.
        frame_skip: k; each chosen action is repeated k times, only every k-th frame is recorded and
            the recorded reward is the sum of the k rewards. An episode that ends during the repeats
            ends there: its last frame is the one where it ended.
        lossless: bit-exact video (``libx264rgb -qp 0``) instead of ``crf 18``.
        fps: frame rate written into the videos.
        progress: show a tqdm bar over episodes.
        vector: ``"sync"`` (one process) or ``"async"`` (a process per sub-env).
        deterministic: passed to ``policy.predict``.
        imports: modules to import first (plugins that register environments); an id may also be given as
            ``module:EnvId``. Both are written into the manifest, so later commands need no import again.
        image_size: store frames resized to ``image_size`` x ``image_size`` (written into the manifest);
            None keeps the environment's size.
        overwrite: ``out_dir`` holding another recording (another env, frame skip or image size) is
            refused with ``never``; ``move`` moves it aside and ``delete`` deletes it first.

    An environment with no step limit (no TimeLimit, no ``max_episode_steps``) and no ``max_steps`` is recorded
    under ``DEFAULT_MAX_STEPS`` steps an episode, with a warning: its episodes might never end otherwise.

    Returns:
        The episode directory.
    """
    if (
        episodes < 1
        or num_envs < 1
        or frame_skip < 1
        or (max_steps is not None and max_steps < 1)
        or (seed is not None and seed < 0)
    ):
        raise ValueError(
            f"need episodes, num_envs, frame_skip, max_steps >= 1 and seed >= 0; got episodes={episodes}, "
            f"num_envs={num_envs}, frame_skip={frame_skip}, max_steps={max_steps}, seed={seed}"
        )
    modules: tuple[str, ...] = tuple(imports)
    if isinstance(env, str):
        env, modules = resolve_env_id(env, imports)
    else:
        import_plugins(modules)
    factory, owned = _env_factory(env)
    envs = _make_vector_env(factory, min(num_envs, episodes) if owned else 1, vector if owned else "sync")
    if max_steps is None and not _has_time_limit(envs):
        max_steps = DEFAULT_MAX_STEPS
        warnings.warn(
            f"the environment has no step limit (no TimeLimit wrapper, no max_episode_steps), so an episode might "
            f"never end: recording under a limit of {DEFAULT_MAX_STEPS} steps; set your own with max_steps "
            "(--max-steps N), or register the env with max_episode_steps",
            stacklevel=2,
        )
    env_id = _env_id(env, envs)
    identity = {"env": env_id, "frame_skip": frame_skip, "image_size": image_size}
    try:
        with open_run(out_dir, "record", identity, overwrite=overwrite, adopt=True):
            used = recorded_seeds(out_dir)
            first = seed if seed is not None else max(used, default=-1) + 1
            _record_into(envs, policy, env_id, Path(out_dir), deterministic, progress, {
                "episodes": episodes, "seed": first, "max_steps": max_steps, "frame_skip": frame_skip, "fps": fps,
                "lossless": lossless, "imports": list(modules), "image_size": image_size, "skip_seeds": used,
                "policy": describe_policy(policy),
            })  # fmt: skip
    finally:
        if owned:
            envs.close()
    return Path(out_dir)


def _record_into(
    envs: VecEnv, policy: Policy, env_id: str, out_dir: Path, deterministic: bool, progress: bool,
    options: dict[str, Any],
) -> None:  # fmt: skip
    frame_policy = policy if isinstance(policy, FramePolicy) else None
    actor = (lambda obs: np.empty(0)) if frame_policy is not None else _make_actor(policy, envs, deterministic)
    recorder = _Recorder(envs, actor, env_id, out_dir, options)
    recorder.frame_policy = frame_policy
    with tqdm(total=options["episodes"], disable=not progress, unit="episode", desc=f"record {env_id}") as bar:
        recorder.run(bar)


def recorded_seeds(out_dir: str | os.PathLike[str]) -> set[int]:
    """The reset seeds of the episodes an episode folder holds (empty for a new folder)."""
    if not (Path(out_dir) / MANIFEST).is_file():
        return set()
    entries = read_manifest(out_dir)["episodes"]
    return {int(e["info"]["seed"]) for e in entries if e.get("info", {}).get("seed") is not None}


def describe_policy(policy: Policy) -> str:
    """How the manifest names the policy that made an episode: ``random``, a frame policy's ``description``, an SB3
    class, or a callable's name."""
    if isinstance(policy, str):
        return policy
    if isinstance(policy, FramePolicy):
        return str(getattr(policy, "description", type(policy).__name__))
    if isinstance(policy, Predictor):
        return type(policy).__name__
    return getattr(policy, "__qualname__", type(policy).__name__)


__all__ = [
    "FramePolicy", "FrameStep", "Predictor", "RecordJob", "describe_action_space", "describe_policy", "pixel_source", "record", "recorded_seeds",
]  # fmt: skip
