"""Learning in imagination: gymnasium environments whose ``step`` is a world model's prediction.

    z_0 (an encoded recorded frame) --a_0--> model.step --> z_1 --a_1--> ... --> z_horizon (truncated)

Start latents come from recorded episodes (random frames of an episode directory, encoded once at
construction by `start_latents`) or are given as an array ``[N, K, D]``; in goal mode a goal latent is drawn
from the same set. The dynamics see a sliding window of the last ``context`` latents with the actions
between them (``context=1``, the default: the last latent alone; at reset the window is the start latent
repeated with zero actions, as the wrapper pads a frame history with the first frame). The reward is the
model's reward head, R(z_t, a_t), or minus the latent distance of z_{t+1} to the goal (the mean over K and
D of the squared difference, the planners' ``latent_l2`` cost).

A world model trained with proprioception (``spec.proprio_dim > 0``) steps with it: each start carries the
proprioception of its frame (the recorded state's entries the model names in ``model.data.proprio``, read with
the frames of an episode directory, or ``start_proprio [N, P]`` beside given latents), the dynamics see its
history beside the latents', and each step's predicted proprioception is fed back, as `WorldModel.rollout`
does. It is the model's internal state, not part of the observation.

`LatentDreamEnv` is one environment; `LatentDreamVectorEnv` steps ``num_envs`` of them in one batched
model call. Both share `DreamBatch`, so a vector environment reset with seeds ``[s_0, .., s_n-1]`` gives
exactly the observations of n single environments reset with ``s_i`` and stepped with the same actions.

Observations are float32 latents flattened to ``[K * D]``, or ``Dict(latent, goal_latent)`` in goal mode:
the layout of `envs.latent.LatentObservationWrapper` (``flatten=True``), so a policy trained here acts
on the real environment seen through that wrapper.

Shape letters: B environments, C context steps, K tokens a step, D width of a token, A action size.
"""

from __future__ import annotations

import os
from typing import Any, Literal, Protocol, SupportsFloat

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from gymnasium.utils import seeding
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space
from torchwm.wm.latent_encoder import latent_encoder
from torchwm.wm.rollouts import RolloutClips
from torchwm.wm.world_model import WorldModel, WorldModelSpec

DreamReward = Literal["auto", "model", "goal"]
"""``model``: the reward head R(z_t, a_t); ``goal``: minus the latent distance of z_{t+1} to the goal latent;
``auto``: ``goal`` in goal mode, else ``model``."""
StartSource = str | os.PathLike | np.ndarray | torch.Tensor
"""An episode directory (random frames of it are encoded) or start latents ``[N, K, D]``."""
ProprioSource = np.ndarray | torch.Tensor | None
"""Start proprioception ``[N, P]`` beside given start latents, for a model trained with it (else None)."""


class DreamModel(Protocol):
    """What a dream environment needs from a world model (`WorldModel` has it; a toy model can stand in)."""

    spec: WorldModelSpec

    def step(self, z_history: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``z_history [B, C, K, D]``, ``actions [B, C, A]`` (the action after each step) -> ``z [B, K, D]``.
        (A model whose ``spec.proprio_dim`` is above 0 is called as `WorldModel.step` with ``proprio [B, C, P]``
        and ``return_proprio=True``, and returns ``(z, p)``.)"""
        ...

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``z [B, K, D]``, ``actions [B, A]`` -> predicted rewards ``[B]``."""
        ...


# --- inputs ------------------------------------------------------------------------------------------
def load_dream_model(model: WorldModel | DreamModel | str | os.PathLike, device: str = "cpu") -> DreamModel:
    """A world model object as it is, or loaded from a checkpoint (or run) directory onto ``device``."""
    if isinstance(model, str | os.PathLike):
        return WorldModel.from_pretrained(os.fspath(model), device)
    if not callable(getattr(model, "step", None)) or not hasattr(model, "spec"):
        raise TypeError(
            f"model must be a WorldModel (or have .spec and .step) or a checkpoint path, got {type(model).__name__}"
        )
    return model


def start_latents(
    model: WorldModel, root: str | os.PathLike, num_frames: int = 1024, seed: int = 0
) -> np.ndarray:
    """Encode ``num_frames`` random frames of an episode directory: float32 ``[N, K, D]``.

    Each frame is encoded with the ``model.window - 1`` frames before it (the encoder's history), exactly as
    `envs.latent.LatentObservationWrapper` encodes a step. Frames are drawn without replacement (all of them
    when there are fewer) by a generator seeded with ``seed``.
    """
    return encoded_starts(model, root, num_frames, seed)[0]


def encoded_starts(
    model: WorldModel, root: str | os.PathLike, num_frames: int = 1024, seed: int = 0
) -> tuple[np.ndarray, np.ndarray | None]:
    """`start_latents` and, for a model trained with proprioception, the recorded proprioception of the same
    steps: (float32 ``[N, K, D]``, float32 ``[N, P]`` or None)."""
    if num_frames < 1:
        raise ValueError(f"num_frames must be >= 1, got {num_frames}")
    encoder = latent_encoder(model)
    clips = RolloutClips(root, num_frames=encoder.window, image_size=encoder.image_size)
    dims = _proprio_dims(model)
    if dims and any(e.states is None for e in clips.episodes):
        raise ValueError(
            f"this world model takes proprioception (state entries {list(dims)}), but episodes in {root} recorded "
            "no states; record the environment again (the recorder stores info['state']) or pass start latents "
            "with start_proprio [N, P]"
        )
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(len(clips), size=min(num_frames, len(clips)), replace=False))
    out, proprio = [], []
    for chunk in np.array_split(picks, max(1, len(picks) // 64)):
        items = [clips[int(i)] for i in chunk]
        frames = np.stack([it["frames"].numpy() for it in items])  # (b, window, H, W, C)
        out.append(encoder.encode_numpy(frames))  # (b, K, D)
        if dims:
            proprio.append(np.stack([it["states"][-1, list(dims)].numpy() for it in items]))  # (b, P)
    latents = np.concatenate(out).astype(np.float32)
    return latents, (np.concatenate(proprio).astype(np.float32) if dims else None)


def _proprio_dims(model: DreamModel) -> tuple[int, ...]:
    """The recorded state entries a model with proprioception takes (empty for one without)."""
    if not getattr(model.spec, "proprio_dim", 0):
        return ()
    data = getattr(model, "data", None)
    dims = tuple(getattr(data, "proprio", ()) or ())
    if len(dims) != model.spec.proprio_dim:
        raise ValueError(
            f"this world model takes proprioception of size {model.spec.proprio_dim}, but its data facts name "
            f"state entries {list(dims)}; load it from a checkpoint trained with --proprio, or pass start "
            "latents with start_proprio [N, P]"
        )
    return dims


def _as_starts(
    model: DreamModel, starts: StartSource, start_proprio: ProprioSource, num_frames: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Start latents ``[N, K, D]`` and start proprioception ``[N, P]`` (None for a model without it), float32 on
    the model's device."""
    p_dim = int(getattr(model.spec, "proprio_dim", 0) or 0)
    if isinstance(starts, str | os.PathLike):
        if not isinstance(model, WorldModel):
            raise TypeError(
                "encoding an episode directory needs a WorldModel; give start latents [N, K, D] instead"
            )
        if start_proprio is not None:
            raise ValueError("start_proprio goes with start latents; an episode directory gives its recorded states")
        starts, start_proprio = encoded_starts(model, starts, num_frames, seed)
    z = torch.as_tensor(np.asarray(starts) if not isinstance(starts, torch.Tensor) else starts)
    if z.ndim != 3 or z.shape[0] < 1 or not z.dtype.is_floating_point:
        raise ValueError(f"start latents must be float [N, K, D] with N >= 1, got {z.dtype} {tuple(z.shape)}")
    k, d = _latent_shape(model)
    if k is not None and z.shape[1:] != (k, d):
        raise ValueError(f"start latents must be [N, K={k}, D={d}] for this model, got {tuple(z.shape)}")
    device = getattr(model, "device", torch.device("cpu"))
    z = z.detach().to(device=device, dtype=torch.float32).contiguous()
    if p_dim == 0:
        if start_proprio is not None:
            raise ValueError("this world model takes no proprioception (spec.proprio_dim=0); pass start_proprio=None")
        return z, None
    if start_proprio is None:
        raise ValueError(
            f"this world model takes proprioception: pass start_proprio [N={len(z)}, P={p_dim}] beside the start "
            "latents, or an episode directory with recorded states"
        )
    p = torch.as_tensor(np.asarray(start_proprio) if not isinstance(start_proprio, torch.Tensor) else start_proprio)
    if tuple(p.shape) != (len(z), p_dim) or not p.dtype.is_floating_point or not torch.isfinite(p).all():
        raise ValueError(f"start_proprio must be finite float [N={len(z)}, P={p_dim}], got {p.dtype} {tuple(p.shape)}")
    return z, p.detach().to(device=device, dtype=torch.float32).contiguous()


def _latent_shape(model: DreamModel) -> tuple[int | None, int | None]:
    spec = model.spec
    grid, dim = getattr(spec, "latent_grid", None), getattr(spec, "latent_dim", None)
    return (grid * grid if grid is not None else None), dim


def default_action_space(spec: WorldModelSpec) -> spaces.Space:
    """``Discrete(A)`` for a model of discrete actions, else ``Box(-1, 1, (A,))`` float32."""
    if spec.discrete_actions:
        return spaces.Discrete(spec.action_dim)
    return spaces.Box(-1.0, 1.0, (spec.action_dim,), np.float32)


def _check_action_space(space: spaces.Space, spec: WorldModelSpec) -> spaces.Space:
    if isinstance(space, spaces.Discrete) and int(space.n) == spec.action_dim:
        return space
    if isinstance(space, spaces.Box) and space.shape == (spec.action_dim,):
        return space
    raise ValueError(
        f"action_space must be Box with shape ({spec.action_dim},) or Discrete({spec.action_dim}) for a model "
        f"with action_dim={spec.action_dim}, got {space}"
    )


def dream_observation_space(k: int, d: int, goal: bool) -> spaces.Space:
    """``Box [K * D]`` float32, or ``Dict(latent, goal_latent)`` of two such boxes in goal mode."""
    latent = spaces.Box(-np.inf, np.inf, (k * d,), np.float32)
    if not goal:
        return latent
    return spaces.Dict({"latent": latent, "goal_latent": spaces.Box(-np.inf, np.inf, (k * d,), np.float32)})


# --- the batched core --------------------------------------------------------------------------------
class DreamBatch:
    """The state of B dream episodes and their batched step (one model call for all B).

    Args:
        model: the world model (or anything with `DreamModel`'s verbs).
        starts: start (and goal) latents ``[N, K, D]``.
        start_proprio: their proprioception ``[N, P]``, for a model trained with it (else None).
        num_envs: B.
        action_space: a ``Box (A,)`` (actions clipped to it) or ``Discrete(A)`` (one-hot).
        horizon, reward, goal, context, success_distance: as in `LatentDreamEnv`.
    """

    def __init__(
        self,
        model: DreamModel,
        starts: torch.Tensor,
        start_proprio: torch.Tensor | None,
        num_envs: int,
        action_space: spaces.Space,
        horizon: int,
        reward: DreamReward,
        goal: bool,
        context: int,
        success_distance: float,
    ) -> None:
        if reward not in ("auto", "model", "goal"):
            raise ValueError(f"reward must be 'auto', 'model' or 'goal', got {reward!r}")
        if reward == "goal" and not goal:
            raise ValueError("reward='goal' needs goal=True (a goal latent to measure the distance to)")
        if not isinstance(horizon, int) or horizon < 1:
            raise ValueError(f"horizon must be a positive int, got {horizon!r}")
        max_steps = getattr(model.spec, "max_steps", context)
        if not isinstance(context, int) or not 1 <= context <= max_steps:
            raise ValueError(f"context must be an int in [1, max_steps={max_steps}], got {context!r}")
        if success_distance < 0 or (success_distance > 0 and not goal):
            raise ValueError(
                f"success_distance must be >= 0, and > 0 only with goal=True, got {success_distance!r}"
            )
        self.reward_kind: Literal["model", "goal"] = (
            ("goal" if goal else "model") if reward == "auto" else reward
        )
        if self.reward_kind == "model" and getattr(model, "reward_head", True) is None:
            raise ValueError(
                "this world model has no reward head (WorldModelSpec.reward_head=False): use goal=True "
                "with reward='goal' (minus the latent distance to a goal)"
            )
        self.model, self.starts, self.action_space = model, starts, action_space
        self.horizon, self.goal, self.success_distance = horizon, goal, float(success_distance)
        n, k, d = starts.shape
        a = model.spec.action_dim
        self.z = starts.new_zeros(num_envs, context, k, d)  # (B, C, K, D) the last C latents
        self.past_actions = starts.new_zeros(num_envs, context - 1, a)  # (B, C-1, A) actions between them
        self.goal_z = starts.new_zeros(num_envs, k, d)  # (B, K, D)
        self.start_p = start_proprio
        # (B, C, P) proprioception of the last C steps, for a model that takes it
        self.p = None if start_proprio is None else start_proprio.new_zeros(num_envs, context, start_proprio.shape[1])
        self.t = np.zeros(num_envs, dtype=np.int64)

    def reset_rows(self, rows: np.ndarray, rngs: list[np.random.Generator]) -> None:
        """Restart the episodes of ``rows``, each drawing its start (and goal) index from its own generator."""
        n = len(self.starts)
        for row in rows.tolist():
            rng = rngs[row]
            start = int(rng.integers(n))
            self.z[row] = self.starts[start]
            if self.p is not None and self.start_p is not None:
                self.p[row] = self.start_p[start]
            if self.goal:  # a goal other than the start where there is one
                other = int(rng.integers(max(1, n - 1)))
                self.goal_z[row] = self.starts[other + (other >= start and n > 1)]
        self.past_actions[rows] = 0.0
        self.t[rows] = 0

    def model_actions(self, actions: Any) -> torch.Tensor:
        """Actions of all B environments as the model takes them: float ``[B, A]`` (clipped, or one-hot)."""
        b, a, space = self.z.shape[0], self.model.spec.action_dim, self.action_space
        if isinstance(space, spaces.Discrete):
            index = torch.as_tensor(np.asarray(actions, dtype=np.int64).reshape(b), device=self.z.device)
            return F.one_hot(index - int(space.start), a).float()
        assert isinstance(space, spaces.Box)  # checked at construction
        x = np.clip(np.asarray(actions, dtype=np.float32).reshape(b, a), space.low, space.high)
        return torch.as_tensor(x, device=self.z.device)

    def step(self, actions: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Step every environment: (rewards [B], terminated [B], truncated [B], distances [B] or NaN)."""
        a_t = self.model_actions(actions)  # (B, A)
        with torch.inference_mode():
            taken = torch.cat([self.past_actions, a_t[:, None]], dim=1)  # (B, C, A)
            p_next = None
            if self.p is None:
                z_next = self.model.step(self.z, taken)  # (B, K, D)
            else:
                z_next, p_next = self.model.step(self.z, taken, proprio=self.p, return_proprio=True)  # type: ignore[call-arg]
            distances = self.distances(z_next) if self.goal else None
            if distances is not None and self.reward_kind == "goal":
                rewards = -distances
            else:
                rewards = self.model.reward(self.z[:, -1], a_t)  # R(z_t, a_t)
        self.z = torch.cat([self.z[:, 1:], z_next[:, None]], dim=1)
        if self.p is not None and p_next is not None:
            self.p = torch.cat([self.p[:, 1:], p_next[:, None]], dim=1)
        self.past_actions = torch.cat([self.past_actions, a_t[:, None]], dim=1)[:, 1:]
        self.t += 1
        dist = distances.float().cpu().numpy() if distances is not None else np.full(len(self.t), np.nan)
        terminated = (
            dist < self.success_distance if self.success_distance > 0 else np.zeros(len(self.t), bool)
        )
        truncated = (self.t >= self.horizon) & ~terminated
        return (
            rewards.float().cpu().numpy().astype(np.float32),
            terminated,
            truncated,
            dist.astype(np.float32),
        )

    def distances(self, z: torch.Tensor) -> torch.Tensor:
        """Latent distance to each goal, the mean over K and D of the squared difference: ``[B]``."""
        return (z - self.goal_z).square().mean(dim=(-2, -1))

    def observations(self) -> dict[str, np.ndarray] | np.ndarray:
        """The current latents ``[B, K * D]`` (with the goal latents in goal mode), new arrays that no later step
        or reset writes into."""
        latent = _numpy(self.z[:, -1].flatten(1))
        if not self.goal:
            return latent
        return {"latent": latent, "goal_latent": _numpy(self.goal_z.flatten(1))}

    def infos(self, distances: np.ndarray, terminated: np.ndarray) -> dict[str, np.ndarray]:
        """Batched step infos: ``distance`` (and ``is_success`` when a success distance is set) in goal mode."""
        if not self.goal:
            return {}
        out = {"distance": distances}
        if self.success_distance > 0:
            out["is_success"] = terminated.copy()
        return out


def _build_batch(
    model: WorldModel | DreamModel | str | os.PathLike,
    starts: StartSource,
    start_proprio: ProprioSource,
    num_envs: int,
    horizon: int,
    reward: DreamReward,
    goal: bool,
    context: int,
    success_distance: float,
    action_space: spaces.Space | None,
    num_start_frames: int,
    start_seed: int,
    device: str,
) -> DreamBatch:
    loaded = load_dream_model(model, device)
    space = _check_action_space(action_space or default_action_space(loaded.spec), loaded.spec)
    z, p = _as_starts(loaded, starts, start_proprio, num_start_frames, start_seed)
    return DreamBatch(loaded, z, p, num_envs, space, horizon, reward, goal, context, success_distance)


# --- the environments --------------------------------------------------------------------------------
class LatentDreamEnv(gym.Env[Any, Any]):
    """A gymnasium environment that steps a world model instead of the world.

    Args:
        model: a `WorldModel` or its checkpoint (or run) directory (or anything with `DreamModel`'s verbs).
        starts: an episode directory (``num_start_frames`` random frames are encoded once, see
            `start_latents`) or start latents ``[N, K, D]``; goal latents are drawn from the same set.
        horizon: steps before the episode is truncated.
        reward: `DreamReward`.
        goal: observe ``Dict(latent, goal_latent)`` and draw a goal latent at each reset.
        context: latent steps the dynamics see (a sliding window, see the module docstring).
        success_distance: in goal mode, terminate once the latent distance is below this (0: never).
        action_space: ``Box (A,)`` or ``Discrete(A)``; default from the model (`default_action_space`).
        num_start_frames, start_seed: frames of an episode directory to encode, and the seed that picks them.
        start_proprio: ``[N, P]`` beside start latents, for a model trained with proprioception (see the module
            docstring); an episode directory gives its recorded states instead.
        device: where a checkpoint is loaded.

    Example:
        >>> env = LatentDreamEnv("runs/world_model", "episodes", goal=True, horizon=50)  # doctest: +SKIP
        >>> obs, info = env.reset(seed=0)  # doctest: +SKIP
        >>> sorted(obs), obs["latent"].shape  # doctest: +SKIP
        (['goal_latent', 'latent'], (256,))
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(
        self,
        model: WorldModel | DreamModel | str | os.PathLike,
        starts: StartSource,
        *,
        horizon: int = 100,
        reward: DreamReward = "auto",
        goal: bool = False,
        context: int = 1,
        success_distance: float = 0.0,
        action_space: spaces.Space | None = None,
        num_start_frames: int = 1024,
        start_seed: int = 0,
        device: str = "cpu",
        start_proprio: ProprioSource = None,
    ) -> None:
        self.batch = _build_batch(
            model, starts, start_proprio, 1, horizon, reward, goal, context, success_distance, action_space,
            num_start_frames, start_seed, device,
        )  # fmt: skip
        _, k, d = self.batch.starts.shape
        self.observation_space = dream_observation_space(k, d, goal)
        self.action_space = self.batch.action_space

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Draw a start (and goal) latent with the environment's generator."""
        super().reset(seed=seed)
        self.batch.reset_rows(np.zeros(1, dtype=np.int64), [self.np_random])
        return _row(self.batch.observations(), 0), {}

    def step(self, action: Any) -> tuple[Any, SupportsFloat, bool, bool, dict[str, Any]]:
        """One predicted step of the world model."""
        rewards, terminated, truncated, distances = self.batch.step(np.asarray(action)[None])
        info = {key: value[0].item() for key, value in self.batch.infos(distances, terminated).items()}
        obs = _row(self.batch.observations(), 0)
        return obs, float(rewards[0]), bool(terminated[0]), bool(truncated[0]), info


class LatentDreamVectorEnv(VectorEnv):
    """``num_envs`` dream environments stepped in one batched model call (arguments as `LatentDreamEnv`).

    ``reset(seed=[s_0, ..])`` seeds each sub-environment as ``LatentDreamEnv.reset(seed=s_i)`` would (an int
    seeds them with ``seed + i``), so both step the same episodes. ``autoreset_mode`` is gymnasium's:
    ``NEXT_STEP`` (the default: an episode that ended restarts at the next ``step``, whose action it
    ignores), ``SAME_STEP`` (it restarts at once; the last observation is in ``infos["final_obs"]``) or
    ``DISABLED`` (restart it with ``reset(options={"reset_mask": mask})``).
    """

    def __init__(
        self,
        num_envs: int,
        model: WorldModel | DreamModel | str | os.PathLike,
        starts: StartSource,
        *,
        horizon: int = 100,
        reward: DreamReward = "auto",
        goal: bool = False,
        context: int = 1,
        success_distance: float = 0.0,
        action_space: spaces.Space | None = None,
        num_start_frames: int = 1024,
        start_seed: int = 0,
        device: str = "cpu",
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        start_proprio: ProprioSource = None,
    ) -> None:
        if not isinstance(num_envs, int) or num_envs < 1:
            raise ValueError(f"num_envs must be a positive int, got {num_envs!r}")
        self.num_envs = num_envs
        self.autoreset_mode = AutoresetMode(autoreset_mode)
        self.metadata = {"render_modes": [], "autoreset_mode": self.autoreset_mode}
        self.batch = _build_batch(
            model, starts, start_proprio, num_envs, horizon, reward, goal, context, success_distance, action_space,
            num_start_frames, start_seed, device,
        )  # fmt: skip
        _, k, d = self.batch.starts.shape
        self.single_observation_space = dream_observation_space(k, d, goal)
        self.single_action_space = self.batch.action_space
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self._rngs = [seeding.np_random()[0] for _ in range(num_envs)]
        self._needs_reset = np.zeros(num_envs, dtype=bool)

    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset all sub-environments, or those in ``options["reset_mask"]``."""
        mask = None if options is None else options.get("reset_mask")
        mask = np.ones(self.num_envs, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        if mask.shape != (self.num_envs,) or not mask.any():
            raise ValueError(f"reset_mask must be bool [{self.num_envs}] with a True entry, got {mask!r}")
        seeds = _vector_seeds(seed, self.num_envs)
        for i in np.flatnonzero(mask).tolist():
            if seeds[i] is not None:
                self._rngs[i] = seeding.np_random(seeds[i])[0]
        self.batch.reset_rows(np.flatnonzero(mask), self._rngs)
        self._needs_reset[mask] = False
        return self.batch.observations(), {}

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every sub-environment in one model call (see the class docstring for autoreset)."""
        restart = self._needs_reset.copy()
        rewards, terminated, truncated, distances = self.batch.step(actions)
        infos: dict[str, Any] = self.batch.infos(distances, terminated)
        done = terminated | truncated
        if restart.any():  # NEXT_STEP: these ended last step; their step above is dropped
            self.batch.reset_rows(np.flatnonzero(restart), self._rngs)
            rewards[restart] = 0.0
            terminated[restart] = truncated[restart] = done[restart] = False
            infos = {key: np.where(restart, np.zeros_like(value), value) for key, value in infos.items()}
        infos = {**infos, **{f"_{key}": ~restart for key in infos}}
        obs = self.batch.observations()
        if self.autoreset_mode == AutoresetMode.SAME_STEP and done.any():
            step_infos = {key: value for key, value in infos.items() if key[0] != "_"}
            infos.update({f"_{key}": ~done for key in step_infos})  # done rows' infos move to final_info
            infos["final_info"] = {**step_infos, **{f"_{key}": done.copy() for key in step_infos}}
            infos["final_obs"] = np.full(self.num_envs, None, dtype=object)
            for i in np.flatnonzero(done).tolist():
                infos["final_obs"][i] = _row(obs, i)
            infos["_final_info"], infos["_final_obs"] = done.copy(), done.copy()
            self.batch.reset_rows(np.flatnonzero(done), self._rngs)
            obs = self.batch.observations()
        elif self.autoreset_mode == AutoresetMode.NEXT_STEP:
            self._needs_reset = done
        return obs, rewards, terminated, truncated, infos


def _numpy(x: torch.Tensor) -> np.ndarray:
    """A float32 copy of ``x`` in numpy (never a view of the state tensors)."""
    return x.detach().to("cpu", torch.float32).numpy().copy()


def _vector_seeds(seed: int | list[int | None] | None, num_envs: int) -> list[int | None]:
    """One seed per sub-environment: an int seeds ``seed + i``, a list gives them, None keeps the generators."""
    if seed is None:
        return [None] * num_envs
    if isinstance(seed, int):
        return [seed + i for i in range(num_envs)]
    if len(seed) != num_envs:
        raise ValueError(f"expected {num_envs} seeds, one per sub-environment, got {len(seed)}")
    return list(seed)


def _row(obs: dict[str, np.ndarray] | np.ndarray, i: int) -> Any:
    """Sub-environment ``i``'s observation out of a batched one (a copy)."""
    if isinstance(obs, dict):
        return {key: value[i].copy() for key, value in obs.items()}
    return obs[i].copy()


__all__ = [
    "DreamBatch",
    "DreamModel",
    "DreamReward",
    "LatentDreamEnv",
    "LatentDreamVectorEnv",
    "default_action_space",
    "dream_observation_space",
    "load_dream_model",
    "start_latents",
]
