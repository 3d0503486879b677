"""Latent observations: a pixel or renderable gymnasium environment seen through a world model's encoder.

    env frame uint8 [H, W, C] --last `window` frames--> encoder --> obs["latent"] [K * D] or [K, D]

Frames come from the observation when it is an image, otherwise from ``env.render()``; gymnasium's own
`AddRenderObservation` and `ResizeObservation` are composed for that (`pixel_env`), so the history the
wrapper keeps holds frames no larger than the model's ``image_size``. The model (a `WorldModel`, a
`JEPAAgent`, or the path of either's checkpoint) is reduced to one `torchwm.wm.latent_encoder.LatentEncoder`, so
both are encoded by the same code: one batched call under `torch.inference_mode()` per step, for one environment
(`LatentObservationWrapper`) or for every sub-environment of a vector environment
(`VectorLatentObservationWrapper`).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from copy import deepcopy
from pathlib import Path
from typing import Any, Literal, SupportsFloat

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from gymnasium.envs.registration import EnvSpec
from gymnasium.vector import AutoresetMode, VectorEnv, VectorWrapper
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers import AddRenderObservation, ResizeObservation
from gymnasium.wrappers import vector as vector_wrappers
from torchwm.envs.pixels import proprio_entries
from torchwm.wm.latent_encoder import FrameHistory, LatentEncoder, latent_encoder
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.world_model import WorldModel

ModelSource = WorldModel | JEPAAgent | str | Path
"""What the wrappers accept as a model: a world model, a JEPA agent, or a checkpoint (or run) directory."""
FrameSource = Literal["auto", "observation", "render"]
"""Where frames come from: ``auto`` takes an image observation if there is one, else ``env.render()``."""


# --- frames ------------------------------------------------------------------------------------------
def is_image_space(space: spaces.Space) -> bool:
    """Whether observations of ``space`` are uint8 images [H, W, C]."""
    return isinstance(space, spaces.Box) and space.dtype == np.uint8 and len(space.shape) == 3


def frame_space(env: gym.Env | VectorEnv) -> spaces.Box:
    """The image Box of one frame of ``env`` (a single env, or one sub-environment of a vector env)."""
    space = env.single_observation_space if isinstance(env, VectorEnv) else env.observation_space
    assert isinstance(space, spaces.Box), space  # image_env / the vector wrapper checked it
    return space


def _frame_source(env: gym.Env, source: FrameSource) -> Literal["observation", "render"]:
    """Where ``env``'s frames come from, or a ValueError that says how to give it frames."""
    if source not in ("auto", "observation", "render"):
        raise ValueError(f"source must be 'auto', 'observation' or 'render', got {source!r}")
    space, mode = env.observation_space, env.render_mode
    has_image, renders = is_image_space(space), mode in ("rgb_array", "rgb_array_list")
    if source == "observation" and not has_image:
        raise ValueError(
            f"source='observation' needs uint8 image observations [H, W, C], but {env} observes {space}; "
            "use source='render' with render_mode='rgb_array'"
        )
    if source == "render" and mode != "rgb_array":
        raise ValueError(
            f"source='render' needs an environment made with render_mode='rgb_array', got {mode!r}"
        )
    if source == "auto" and not has_image and mode != "rgb_array":
        env_id = env.spec.id if env.spec is not None else "<id>"
        raise ValueError(
            f"{env} gives no frames: its observation space {space} is not a uint8 image [H, W, C] and its "
            f"render_mode is {mode!r}. Make it with render_mode='rgb_array' "
            f"(gymnasium.make({env_id!r}, render_mode='rgb_array')) so that frames come from env.render()"
            + (" (rgb_array_list renders a list of frames, not one)" if renders else "")
        )
    if source == "auto":
        return "observation" if has_image else "render"
    return source


def _wants_resize(shape: tuple[int, ...], image_size: int, resize: bool | None) -> bool:
    """Whether to shrink frames of ``shape`` to ``image_size`` with `ResizeObservation` (needs opencv)."""
    if resize is False:
        return False
    if resize is True:
        return tuple(shape[:2]) != (image_size, image_size)
    larger = shape[0] > image_size or shape[1] > image_size
    return larger and importlib.util.find_spec("cv2") is not None


def image_env(env: gym.Env, source: FrameSource = "auto") -> gym.Env:
    """``env`` with uint8 image observations [H, W, C]: itself, or `AddRenderObservation` (render only)."""
    if _frame_source(env, source) == "render":
        env = AddRenderObservation(env, render_only=True)
    if not is_image_space(env.observation_space):
        shape = env.observation_space.shape or ()
        hint = (
            "; add a channel axis: gymnasium.wrappers.ReshapeObservation(env, (H, W, 1))"
            if len(shape) == 2
            else ""
        )
        raise ValueError(f"expected uint8 image frames [H, W, C], got {env.observation_space}{hint}")
    return env


def pixel_env(
    env: gym.Env, image_size: int | None = None, *, source: FrameSource = "auto", resize: bool | None = None
) -> gym.Env:
    """``env`` with uint8 image observations [H, W, C], built from gymnasium's own wrappers.

    `AddRenderObservation` (render only) where frames come from ``env.render()``, then `ResizeObservation`
    to ``image_size`` x ``image_size``: always if ``resize`` is True, never if False, and by default
    (None) when the frames are larger than ``image_size`` and opencv is installed (otherwise the model
    resizes them itself). Usable in ``gymnasium.make_vec(..., wrappers=[partial(pixel_env, image_size=S)])``.
    """
    env = image_env(env, source)
    if image_size is not None and _wants_resize(frame_space(env).shape, image_size, resize):
        env = ResizeObservation(env, (image_size, image_size))
    return env


def check_frames_fit(shape: tuple[int, ...], encoder: LatentEncoder) -> None:
    """Raise a ValueError that says what would fit unless frames of ``shape`` fit the encoder."""
    c, s = encoder.in_channels, encoder.image_size
    wanted = f"uint8 frames [H, W, {c}] (any H, W: resized to {s}x{s})"
    if len(shape) != 3:
        raise ValueError(f"the {encoder.name} takes {wanted}; the environment gives frames of shape {shape}")
    if shape[-1] != c:
        if shape[0] == c and shape[-1] not in (1, 3, 4):
            hint = "; they look channels-first: give [H, W, C] frames (channels last)"
        elif c == 1 and shape[-1] == 3:
            hint = "; wrap the environment in gymnasium.wrappers.GrayscaleObservation(env, keep_dim=True)"
        else:
            hint = f"; use a model trained on {shape[-1]}-channel frames (in_channels={shape[-1]})"
        raise ValueError(
            f"the {encoder.name} takes {wanted}, but the environment gives frames of shape {shape} "
            f"({shape[-1]} channels){hint}"
        )
    if min(shape[:2]) < encoder.patch_size:
        raise ValueError(
            f"the {encoder.name} takes {wanted} of at least one {encoder.patch_size}x{encoder.patch_size} patch, "
            f"but the environment gives {shape[0]}x{shape[1]} frames; render larger frames"
        )


def latent_space(encoder: LatentEncoder, flatten: bool) -> spaces.Box:
    """Box of one latent: float32 [K * D] if ``flatten`` else [K, D], unbounded."""
    shape = (encoder.k * encoder.d,) if flatten else (encoder.k, encoder.d)
    return spaces.Box(-np.inf, np.inf, shape, np.float32)


def _observation_space(
    encoder: LatentEncoder, frames: spaces.Box, flatten: bool, pixels: bool, goal: bool, proprio: int = 0
) -> spaces.Dict:
    """``Dict(latent, [pixels], [goal_latent], [proprio])`` for one environment."""
    latent = latent_space(encoder, flatten)
    out: dict[str, spaces.Space] = {"latent": latent}
    if pixels:
        out["pixels"] = frames
    if goal:
        out["goal_latent"] = deepcopy(latent)
    if proprio:
        out["proprio"] = spaces.Box(-np.inf, np.inf, (proprio,), np.float32)
    return spaces.Dict(out)


class _LastObservation(gym.Wrapper[Any, Any, Any, Any]):
    """Keeps the environment's own last observation (a state vector that the frame wrappers above replace)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.last: Any = None

    def reset(self, **kwargs: Any) -> tuple[Any, dict[str, Any]]:
        self.last, info = self.env.reset(**kwargs)
        return self.last, info

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        self.last, reward, terminated, truncated, info = self.env.step(action)
        return self.last, reward, terminated, truncated, info


def _goal_frames(info: dict[str, Any], owner: str) -> np.ndarray:
    if "goal_frame" not in info:
        raise ValueError(
            f"goal=True encodes info['goal_frame'] from reset, but {owner}'s reset info has keys {sorted(info)}; "
            "use goal=False or an environment that gives a goal frame (the built-in torchwm/ environments do)"
        )
    return np.asarray(info["goal_frame"])


# --- the single-environment wrapper ------------------------------------------------------------------
class LatentObservationWrapper(
    gym.Wrapper[dict[str, Any], Any, np.ndarray, Any], gym.utils.RecordConstructorArgs
):
    """Observations become ``{"latent", ["pixels"], ["goal_latent"], ["proprio"]}``: the encoder's latent of the
    last frames.

    Args:
        env: an environment with uint8 image observations [H, W, C], or made with ``render_mode="rgb_array"``.
        model: a `WorldModel`, a `JEPAAgent`, or a checkpoint (or run) directory of either.
        source: where frames come from (`FrameSource`).
        resize: shrink frames to the model's ``image_size`` with gymnasium's `ResizeObservation` (see `pixel_env`).
        flatten: ``latent`` is [K * D] if True, [K, D] if False (float32 either way).
        pixels: add the frame the latent was computed from as ``pixels``.
        goal: add ``goal_latent``, the encoding of ``info["goal_frame"]`` given at reset.
        proprio: entries of the state vector (``info["state"]``, else the environment's own observation where
            that is a vector) to add as ``proprio`` [P] float32: what a world model trained with ``--proprio``
            takes beside the latents (`make_latent_env` passes the checkpoint's).
        device: where a checkpoint is loaded (a model object stays where it is).

    Example:
        >>> import gymnasium as gym
        >>> env = LatentObservationWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), "runs/wm")  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> obs["latent"].shape, obs["latent"].dtype  # doctest: +SKIP
        ((256,), dtype('float32'))
    """

    def __init__(
        self,
        env: gym.Env,
        model: ModelSource,
        *,
        source: FrameSource = "auto",
        resize: bool | None = None,
        flatten: bool = True,
        pixels: bool = False,
        goal: bool = False,
        proprio: tuple[int, ...] = (),
        device: str = "cpu",
    ) -> None:
        gym.utils.RecordConstructorArgs.__init__(
            self,
            model=model,
            source=source,
            resize=resize,
            flatten=flatten,
            pixels=pixels,
            goal=goal,
            proprio=proprio,
            device=device,
        )
        self.proprio = tuple(int(i) for i in proprio)
        space = env.observation_space
        self._state_tap = (
            _LastObservation(env)
            if self.proprio and isinstance(space, spaces.Box) and len(space.shape) == 1
            else None
        )
        # AddRenderObservation renders a first frame here, before a checkpoint is loaded
        framed = image_env(env if self._state_tap is None else self._state_tap, source)
        self.encoder = latent_encoder(model, device)
        check_frames_fit(frame_space(framed).shape, self.encoder)
        self._frame_transform: Callable[[np.ndarray], np.ndarray] | None = None
        if _wants_resize(frame_space(framed).shape, self.encoder.image_size, resize):
            framed = ResizeObservation(framed, (self.encoder.image_size, self.encoder.image_size))
            self._frame_transform = framed.observation  # for goal frames
        super().__init__(framed)
        # Frames need rgb_array renders, or observations that some environments (gym-pusht) only give in that
        # mode; gymnasium's HumanRendering wrapper shows them in a window.
        modes = env.metadata.get("render_modes", [])
        self.metadata = {**env.metadata, "render_modes": [m for m in modes if m == "rgb_array"]}
        self._source_env = env
        self.flatten, self.pixels, self.goal = flatten, pixels, goal
        self.observation_space = _observation_space(
            self.encoder, frame_space(framed), flatten, pixels, goal, len(self.proprio)
        )
        self._history = FrameHistory(1, self.encoder.window, frame_space(framed).shape)
        self._goal_latent: np.ndarray | None = None

    @property
    def spec(self) -> EnvSpec | None:  # type: ignore[override]  # gymnasium's Wrapper.spec is a property too
        """The given environment's spec plus this wrapper (which rebuilds the frame wrappers it composed)."""
        if self._cached_spec is None and self._source_env.spec is not None:
            spec = deepcopy(self._source_env.spec)
            spec.additional_wrappers += (self.wrapper_spec(**self._saved_kwargs),)
            self._cached_spec = spec
        return self._cached_spec

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset the environment and restart the frame history at the first frame."""
        observation, info = self.env.reset(seed=seed, options=options)
        frame = np.asarray(observation)  # (H, W, C); typed loosely by gymnasium's Wrapper.env
        self._history.reset(frame[None])
        goal = None
        if self.goal:
            goal = _goal_frames(info, str(self._source_env))[None]
            if self._frame_transform is not None:
                goal = self._frame_transform(goal[0])[None]
        return self._observation(frame, info, goal), info

    def step(self, action: Any) -> tuple[dict[str, np.ndarray], SupportsFloat, bool, bool, dict[str, Any]]:
        """Step the environment and append its frame to the history."""
        observation, reward, terminated, truncated, info = self.env.step(action)
        frame = np.asarray(observation)  # (H, W, C)
        self._history.push(frame[None])
        return self._observation(frame, info), reward, terminated, truncated, info

    def _observation(
        self, frame: np.ndarray, info: dict[str, Any], goal_frame: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """Encode the history (and a new goal frame [1, H, W, C], in the same call) into the observation."""
        clips = self._history.clips()
        if goal_frame is not None:  # the goal as a clip of one still frame
            clips = np.concatenate([clips, np.repeat(goal_frame[:, None], self.encoder.window, axis=1)])
        latents = self.encoder.encode_numpy(clips)  # (1 or 2, K, D)
        if goal_frame is not None:
            self._goal_latent = self._shape(latents[1]).copy()
        obs = {"latent": self._shape(latents[0])}
        if self.pixels:
            obs["pixels"] = frame
        if self._goal_latent is not None:
            obs["goal_latent"] = self._goal_latent.copy()
        if self.proprio:
            state = info.get("state", None if self._state_tap is None else self._state_tap.last)
            obs["proprio"] = proprio_entries(state, self.proprio, str(self._source_env))
        return obs

    def _shape(self, latent: np.ndarray) -> np.ndarray:
        return latent.reshape(-1) if self.flatten else latent


# --- the vector wrapper ------------------------------------------------------------------------------
class VectorLatentObservationWrapper(VectorWrapper):
    """`LatentObservationWrapper` for a vector environment: every sub-environment encoded in one batch.

    The sub-environments must observe uint8 images [H, W, C]; one that renders instead is built with
    ``gymnasium.make_vec(env_id, n, vectorization_mode="sync", render_mode="rgb_array", wrappers=[pixel_env])``.
    Autoreset (``NEXT_STEP``, gymnasium's default, or ``DISABLED`` with ``reset_mask``) restarts the
    history of exactly the sub-environments that reset. Arguments as for `LatentObservationWrapper` (``proprio``
    is read from the sub-environments' ``info["state"]`` only).
    """

    def __init__(
        self,
        env: VectorEnv,
        model: ModelSource,
        *,
        resize: bool | None = None,
        flatten: bool = True,
        pixels: bool = False,
        goal: bool = False,
        proprio: tuple[int, ...] = (),
        device: str = "cpu",
    ) -> None:
        self.autoreset_mode = env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            raise ValueError(
                "VectorLatentObservationWrapper supports autoreset_mode NEXT_STEP (the default) or DISABLED, "
                "not SAME_STEP (its final observations sit in infos, unencoded)"
            )
        self.encoder = latent_encoder(model, device)
        if not is_image_space(env.single_observation_space):
            raise ValueError(
                f"VectorLatentObservationWrapper needs sub-environments that observe uint8 images [H, W, C], got "
                f"{env.single_observation_space}; build one that renders with gymnasium.make_vec(env_id, num_envs, "
                "vectorization_mode='sync', render_mode='rgb_array', wrappers=[envs.latent.pixel_env])"
            )
        frames = frame_space(env)
        check_frames_fit(frames.shape, self.encoder)
        self._frame_transform: Callable[[np.ndarray], np.ndarray] | None = None
        if _wants_resize(frames.shape, self.encoder.image_size, resize):
            env = vector_wrappers.ResizeObservation(env, (self.encoder.image_size, self.encoder.image_size))
            self._frame_transform = env.wrapper.observation
        super().__init__(env)
        self.flatten, self.pixels, self.goal = flatten, pixels, goal
        self.proprio = tuple(int(i) for i in proprio)
        self.single_observation_space = _observation_space(
            self.encoder, frame_space(env), flatten, pixels, goal, len(self.proprio)
        )
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self._history = FrameHistory(self.num_envs, self.encoder.window, frame_space(env).shape)
        self._goal_latents: np.ndarray | None = None
        self._needs_reset = np.zeros(self.num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        """Reset (the sub-environments in ``options["reset_mask"]``, or all) and restart their histories."""
        mask = None if options is None else options.get("reset_mask")
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        # sync and async vector envs take a seed per sub-environment as well
        frames, infos = self.env.reset(seed=seed, options=options)  # type: ignore[arg-type]
        self._history.reset(frames, mask)
        self._needs_reset[mask] = False
        return self._observations(frames, infos, mask), infos

    def step(
        self, actions: Any
    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-environment; those that ended on the last step come back reset (``NEXT_STEP``)."""
        frames, rewards, terminations, truncations, infos = self.env.step(actions)
        restarted = self._needs_reset.copy()
        self._history.push(frames)
        if restarted.any():
            self._history.reset(frames, restarted)
        if self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = np.logical_or(terminations, truncations)
        return self._observations(frames, infos, restarted), rewards, terminations, truncations, infos

    def _observations(
        self, frames: np.ndarray, infos: dict[str, Any], restarted: np.ndarray
    ) -> dict[str, np.ndarray]:
        """Encode all histories, and the goal frames of the restarted sub-environments, in one call."""
        clips = self._history.clips()  # (N, window, H, W, C)
        new_goals = self.goal and bool(restarted.any())
        if new_goals:
            goal_clips = np.repeat(self._goal_frames(infos, restarted)[:, None], self.encoder.window, axis=1)
            clips = np.concatenate([clips, goal_clips])
        latents = self.encoder.encode_numpy(clips)  # (N [+ restarted], K, D)
        if new_goals:
            if self._goal_latents is None:
                self._goal_latents = np.zeros(
                    (self.num_envs, self.encoder.k, self.encoder.d), dtype=np.float32
                )
            self._goal_latents[restarted] = latents[self.num_envs :]
        obs = {"latent": self._shape(latents[: self.num_envs])}
        if self.pixels:
            obs["pixels"] = frames
        if self._goal_latents is not None:
            obs["goal_latent"] = self._shape(self._goal_latents.copy())
        if self.proprio:  # the sub-environments' info["state"], stacked [N, S] by the vector env
            obs["proprio"] = proprio_entries(infos.get("state"), self.proprio, str(self.env))
        return obs

    def _goal_frames(self, infos: dict[str, Any], restarted: np.ndarray) -> np.ndarray:
        """Goal frames [R, H, W, C] of the restarted sub-environments (resized as the observations are)."""
        goals = _goal_frames(infos, str(self.env))
        given = np.asarray(infos.get("_goal_frame", np.ones(self.num_envs, dtype=bool)))
        if not given[restarted].all():
            raise ValueError(
                f"goal=True, but sub-environments {np.flatnonzero(restarted & ~given).tolist()} reset without info['goal_frame']"
            )
        goals = goals[restarted]
        if self._frame_transform is not None:
            goals = np.stack([self._frame_transform(g) for g in goals])
        return goals

    def _shape(self, latents: np.ndarray) -> np.ndarray:
        return latents.reshape(latents.shape[0], -1) if self.flatten else latents


# --- an environment as a checkpoint asks for it ------------------------------------------------------
def make_latent_env(
    checkpoint: str | Path,
    *,
    env_id: str | None = None,
    device: str = "cpu",
    **wrapper: Any,
) -> LatentObservationWrapper:
    """The environment a world-model checkpoint was trained on, as it was trained: its plugin modules imported,
    made with ``render_mode="rgb_array"`` where its frames come from renders, each action repeated the
    recording's frame skip times, observed through `LatentObservationWrapper` (``wrapper`` keywords go to it).

    An environment whose action space is not the one the checkpoint was trained with is refused.

    Example:
        >>> env = make_latent_env("runs/wm/world_model", goal=True)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=1000)  # doctest: +SKIP
    """
    from torchwm.envs.action_repeat import ActionRepeat
    from torchwm.envs.record import describe_action_space

    model = WorldModel.from_pretrained(checkpoint, device)
    data = model.data
    for module in data.imports:
        importlib.import_module(module)
    env_id = env_id or data.env_id
    if not env_id:
        raise ValueError(f"{checkpoint} does not record the environment it was trained on; pass env_id=")
    env = gym.make(env_id, render_mode="rgb_array")
    if data.action_space is not None and describe_action_space(env.action_space) != data.action_space:
        raise ValueError(
            f"{env_id} has the action space {describe_action_space(env.action_space)}, but {checkpoint} was trained "
            f"with {data.action_space}"
        )
    if data.frame_skip > 1:
        env = ActionRepeat(env, data.frame_skip)
    wrapper.setdefault(
        "proprio", data.proprio
    )  # what a model trained with --proprio takes beside the latents
    return LatentObservationWrapper(env, model, **wrapper)
