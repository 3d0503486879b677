"""The MPC agent: receding-horizon planning on predicted latents, with stable-baselines3's ``predict`` shape.

The agent keeps a frame history per environment, encodes it with ``model.encode_last``, plans with a
`SamplingPlanner` towards the encoded goal image, and executes the first action of the plan (or
the next one, when the planner's ``replan_every`` is above 1). Because ``predict`` has SB3's
signature, `agents.evaluate.evaluate` runs MPC agents and SB3 policies alike.

Shape letters: B environments, T frame history, H image height or horizon (as stated), W width,
C channels, K tokens per step, D width of a token, A action size.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torchwm.agents.planners import CEM, CEMConfig, CostKind, SamplingPlanner, latent_distance
from torchwm.agents.protocols import PredictPolicy, WorldModelLike
from torchwm.wm.latent_encoder import FrameHistory

Observation = np.ndarray | torch.Tensor | dict[str, Any]

__all__ = ["MPCAgent", "greedy_one_step"]


class MPCAgent:
    """Model-predictive control on a world model's latents, with SB3's ``predict`` signature.

    Args:
        model: encodes frame histories and rolls latents out (`WorldModelLike`).
        planner: a `CEM` or `MPPI` built on the same model.
        goal: goal image(s) ``[H, W, C]`` or ``[B, H, W, C]`` uint8 (or set later by `set_goal`,
            or per step through a ``"goal_pixels"``/``"goal"`` entry of a dict observation).
        frame_history: frames T of history handed to ``model.encode_last`` (padded with the first
            frame of the episode).
        (A dict observation's ``"proprio"`` entry, as `torchwm.envs.pixels.PixelObservations` gives it, is
        handed to the planner with the latents, for a model trained with proprioception.)
        context_steps: latent steps C the planner's rollouts start from: the current latent and the C-1
            before it, with the actions taken between them (the episode's first latent and zero actions
            before its start), so that the dynamics can read velocity from the history. 1: the current
            latent alone. Above 1 the model needs ``rollout_candidates`` (`PlanningModel` has it).
        prior_policy: optional object with SB3's ``predict`` on the same observations; its action,
            held for the whole horizon, becomes one prior candidate (needs
            ``planner.config.policy_prior_samples >= 1``).
        seed: seeds the planner's noise; same seed and observations, same actions.
        record_distance: keep `distance_log`, the latent distance to the goal at every replan.
    """

    def __init__(
        self,
        model: WorldModelLike,
        planner: SamplingPlanner,
        goal: np.ndarray | torch.Tensor | None = None,
        frame_history: int = 1,
        prior_policy: PredictPolicy | None = None,
        seed: int | None = 0,
        record_distance: bool = False,
        context_steps: int = 1,
    ) -> None:
        if frame_history < 1:
            raise ValueError(f"frame_history must be >= 1, got {frame_history}")
        if context_steps < 1:
            raise ValueError(f"context_steps must be >= 1, got {context_steps}")
        if prior_policy is not None and planner.config.policy_prior_samples == 0:
            raise ValueError("prior_policy needs planner.config.policy_prior_samples >= 1, got 0")
        self.model = model
        self.planner = planner
        self.frame_history = frame_history
        self.context_steps = context_steps
        self.prior_policy = prior_policy
        self.record_distance = record_distance
        self._generator = torch.Generator(device=planner.device)
        if seed is not None:
            self._generator.manual_seed(seed)
        self._history = FrameHistory(0, frame_history)  # (B, T, H, W, C) uint8 frames of each environment
        self._plans: np.ndarray | None = None  # (B, H, A) float32, action units
        self._cursor: np.ndarray | None = None  # (B,) next step of each plan
        self._latents: torch.Tensor | None = None  # (B, C, K, D) latent history, with context_steps > 1
        self._taken: np.ndarray | None = None  # (B, C-1, A) actions taken between those latents
        self._proprio: torch.Tensor | None = None  # (B, C, P) proprioception of those steps, if observed
        self._goal_frames: np.ndarray | None = None  # (G, H, W, C), G = 1 or B
        self._z_goal: torch.Tensor | None = None  # (G, K, D)
        self.last_plan_ms: float = 0.0
        """Wall time of the last planning call (encode + plan), in milliseconds."""
        self.last_latent_distance: np.ndarray | None = None
        """``[B]`` latent distance of the current state to the goal at each env's last replan."""
        self.last_predicted_distance: np.ndarray | None = None
        """``[B]`` best planned cost at each env's last replan (the predicted final distance for latent costs)."""
        self.distance_log: list[np.ndarray] = []
        """With ``record_distance``: ``last_latent_distance`` after each replan, for plots."""
        if goal is not None:
            self.set_goal(goal)

    # --- public API ---------------------------------------------------------------------------

    def predict(
        self,
        observation: Observation,
        state: Any = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = True,
    ) -> tuple[np.ndarray, Any]:
        """Actions for a frame ``[H, W, C]`` -> ``[A]``, or a batch ``[B, H, W, C]`` -> ``[B, A]``.

        ``observation`` may also be a dict with ``"pixels"`` (and optionally ``"goal_pixels"`` or an
        image under ``"goal"``). ``episode_start [B]`` clears the history and warm start of those
        environments. ``state`` is returned untouched; the plan is deterministic given the seed,
        so ``deterministic`` changes nothing.
        """
        frames, goal, single = _split_observation(observation)
        if goal is not None:
            self.set_goal(goal)
        starts = self._history.observe(frames, episode_start)
        if starts.all() and (self._cursor is None or len(self._cursor) != len(frames)):
            self._new_batch(len(frames))
        if starts.any():
            self.planner.reset(np.flatnonzero(starts))
        self._push_proprio(observation, starts, len(frames))
        if self.context_steps > 1:
            self._push_latents(starts)
        assert self._cursor is not None and self._plans is not None
        replan = starts | (self._cursor >= self.planner.config.replan_every)
        if replan.any():
            self._replan(np.flatnonzero(replan), observation)
        actions = self._plans[np.arange(len(frames)), self._cursor]  # (B, A)
        self._cursor += 1
        if self._taken is not None and self._taken.shape[1]:
            self._taken[:, :-1] = self._taken[:, 1:]
            self._taken[:, -1] = actions
        return (actions[0] if single else actions), state

    def executed(self, actions: np.ndarray) -> None:
        """Tell the agent that the environments executed ``actions [B, A]`` rather than its last ones (exploration
        noise, clipping): the latent history's past actions (``context_steps > 1``) become these."""
        if self._taken is not None and self._taken.shape[1]:
            self._taken[:, -1] = np.asarray(actions, np.float32).reshape(self._taken.shape[0], -1)

    def set_goal(self, goal_frames: np.ndarray | torch.Tensor) -> None:
        """Goal image(s) ``[H, W, C]`` (all environments) or ``[B, H, W, C]`` (one each), uint8.

        Environments whose goal changed lose their warm start and replan at the next step.
        """
        frames, _ = _as_frame_batch(goal_frames, "goal_frames")
        if self.prior_policy is not None and hasattr(self.prior_policy, "set_goal"):
            self.prior_policy.set_goal(goal_frames)  # a goal-conditioned prior needs the same goal
        previous = self._goal_frames
        if previous is not None and previous.shape == frames.shape and np.array_equal(previous, frames):
            return
        self._goal_frames = frames.copy()
        clip = np.repeat(frames[:, None], self.frame_history, axis=1)  # (G, T, H, W, C): a still clip
        self._z_goal = self._encode(clip)
        changed = _changed_rows(previous, frames)
        if changed is None or len(frames) == 1 or self._cursor is None or len(changed) != len(self._cursor):
            changed = None  # a shared goal or a new batch: every environment replans
        self.planner.reset(None if changed is None else np.flatnonzero(changed))
        if self._cursor is not None:
            self._cursor[slice(None) if changed is None else changed] = self.planner.config.replan_every

    def reset(self) -> None:
        """Forget every history, plan and warm start (the goal is kept)."""
        self._history = FrameHistory(0, self.frame_history)
        self._plans = self._cursor = self._taken = None
        self._latents = self._proprio = None
        self.planner.reset()

    # --- steps of predict ---------------------------------------------------------------------

    def _new_batch(self, batch: int) -> None:
        """Plans and cursors for a new batch of ``batch`` environments (every one replans at once)."""
        self._cursor = np.zeros(batch, dtype=np.int64)
        self._plans = np.zeros((batch, self.planner.config.horizon, self.planner.action_size), np.float32)
        self.planner.reset()

    def _push_proprio(self, observation: Observation, starts: np.ndarray, batch: int) -> None:
        """Append the observation's ``"proprio"`` entry [B, P] (if any) to the proprioception history; the
        first step of an episode fills its history (as the latents are filled)."""
        if not isinstance(observation, dict) or "proprio" not in observation:
            return
        p = torch.as_tensor(
            np.asarray(observation["proprio"], np.float32).reshape(batch, -1), device=self.planner.device
        )
        c = self.context_steps
        if self._proprio is None or self._proprio.shape[0] != batch or self._proprio.shape[2] != p.shape[1]:
            self._proprio = p[:, None].repeat(1, c, 1)
            return
        self._proprio = torch.cat([self._proprio[:, 1:], p[:, None]], dim=1)
        rows = torch.as_tensor(np.flatnonzero(starts), device=p.device)
        self._proprio[rows] = p[rows, None]

    def _push_latents(self, starts: np.ndarray) -> None:
        """Encode every environment's current step and append it to the latent history; environments that
        start an episode get a history of their first latent and zero actions."""
        z = self._encode(self._history.clips())  # (B, K, D)
        batch, c = len(z), self.context_steps
        if self._latents is None or self._latents.shape[0] != batch or self._latents.shape[2:] != z.shape[1:]:
            self._latents = z[:, None].repeat(1, c, 1, 1)
            self._taken = np.zeros((batch, c - 1, self.planner.action_size), np.float32)
            return
        assert self._taken is not None
        self._latents = torch.cat([self._latents[:, 1:], z[:, None]], dim=1)
        rows = torch.as_tensor(np.flatnonzero(starts), device=z.device)
        self._latents[rows] = z[rows, None]
        self._taken[starts] = 0.0

    def _replan(self, rows: np.ndarray, observation: Observation) -> None:
        """Encode the histories of ``rows``, plan for them at once, store their plans."""
        assert self._plans is not None and self._cursor is not None
        start = time.perf_counter()
        with torch.inference_mode():
            past = None
            if self._latents is not None and self._taken is not None:
                index = torch.as_tensor(rows, device=self._latents.device)
                history = self._latents[index]  # (b, C, K, D)
                z = history[:, -1]
                past = torch.from_numpy(self._taken[rows]).to(self.planner.device)
            else:
                z = history = self._encode(self._history.clips()[rows])  # (b, K, D)
            z_goal = self._goal_latents(rows, len(self._cursor))
            prior = self._prior_actions(observation, rows)
            proprio = None
            if self._proprio is not None:
                proprio = self._proprio[torch.as_tensor(rows, device=self._proprio.device)]
                if self._latents is None:  # planning from the current latent alone: its proprioception alone
                    proprio = proprio[:, -1:]
            plan = self.planner.plan(history, z_goal, self._generator, prior, env_indices=rows, past_actions=past,
                                     proprio=proprio)  # fmt: skip
            self._plans[rows] = plan.float().cpu().numpy()
            self._record_distances(rows, z, z_goal)
        self._cursor[rows] = 0
        self.last_plan_ms = (time.perf_counter() - start) * 1000.0

    def _encode(self, clips: np.ndarray) -> torch.Tensor:
        """``model.encode_last`` of uint8 clips ``[B, T, H, W, C]`` -> ``[B, K, D]`` on the planner's device."""
        with torch.inference_mode():
            z = self.model.encode_last(torch.from_numpy(np.ascontiguousarray(clips)).to(self.planner.device))
        if z.ndim != 3 or z.shape[0] != clips.shape[0]:
            raise ValueError(
                f"model.encode_last must return [B, K, D] with B={clips.shape[0]}, got {tuple(z.shape)}"
            )
        return z

    def _goal_latents(self, rows: np.ndarray, batch: int) -> torch.Tensor | None:
        """Goal latents ``[b, K, D]`` of ``rows`` (None when the cost needs no goal and none is set)."""
        if self._z_goal is None:
            if self.planner.config.cost == "reward":
                return None
            raise ValueError(
                f"cost={self.planner.config.cost!r} needs a goal: pass goal=, call set_goal, "
                "or give a dict observation with 'goal_pixels'"
            )
        if self._z_goal.shape[0] == 1:
            return self._z_goal.expand(len(rows), -1, -1)
        if self._z_goal.shape[0] != batch:
            raise ValueError(
                f"{self._z_goal.shape[0]} goal images were set for {batch} environments; give 1 or {batch}"
            )
        return self._z_goal[torch.as_tensor(rows, device=self._z_goal.device)]

    def _prior_actions(self, observation: Observation, rows: np.ndarray) -> torch.Tensor | None:
        """The prior policy's action held for the horizon: ``[b, 1, H, A]`` (None without a prior)."""
        if self.prior_policy is None:
            return None
        actions, _ = self.prior_policy.predict(observation, deterministic=True)
        actions = np.asarray(actions, dtype=np.float32).reshape(-1, self.planner.action_size)[rows]
        held = np.repeat(actions[:, None, None], self.planner.config.horizon, axis=2)  # (b, 1, H, A)
        return torch.from_numpy(held).to(self.planner.device)

    def _record_distances(self, rows: np.ndarray, z: torch.Tensor, z_goal: torch.Tensor | None) -> None:
        batch = len(self._cursor) if self._cursor is not None else len(rows)
        if self.last_latent_distance is None or len(self.last_latent_distance) != batch:
            self.last_latent_distance = np.full(batch, np.nan, dtype=np.float32)
            self.last_predicted_distance = np.full(batch, np.nan, dtype=np.float32)
        if z_goal is not None:
            p: Literal[1, 2] = 1 if self.planner.config.cost == "latent_l1" else 2
            now = latent_distance(z[:, None, None], z_goal, p, "final")[:, 0]  # (b,)
            self.last_latent_distance[rows] = now.float().cpu().numpy()
        if self.planner.last_cost is not None and self.last_predicted_distance is not None:
            self.last_predicted_distance[rows] = self.planner.last_cost.float().cpu().numpy()
        if self.record_distance:
            self.distance_log.append(self.last_latent_distance.copy())


def greedy_one_step(
    model: WorldModelLike,
    action_space: gym.spaces.Box,
    num_samples: int = 256,
    cost: CostKind = "latent_l2",
    frame_history: int = 1,
    goal: np.ndarray | torch.Tensor | None = None,
    seed: int | None = 0,
    device: torch.device | str | None = None,
) -> MPCAgent:
    """The greedy baseline: an MPC agent with horizon 1 (pick the action whose next latent is best)."""
    if not isinstance(action_space, gym.spaces.Box):
        raise TypeError(f"greedy_one_step needs a Box action space, got {action_space}")
    config = CEMConfig(
        horizon=1, num_samples=num_samples, num_elites=max(1, num_samples // 10), cost=cost, warm_start="off",
        terminal_value=False,  # one step of predicted reward, never a value beyond it
    )  # fmt: skip
    planner = CEM(model, action_space.low, action_space.high, config, device=device)
    return MPCAgent(model, planner, goal=goal, frame_history=frame_history, seed=seed)


def _split_observation(observation: Observation) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Frames ``[B, H, W, C]``, a goal image batch or None, and whether the input was a single frame."""
    goal = None
    if isinstance(observation, dict):
        if "pixels" not in observation:
            raise ValueError(f"a dict observation needs a 'pixels' entry, got keys {sorted(observation)}")
        pixels = observation["pixels"]
        goal = observation.get("goal_pixels")
        candidate = observation.get("goal")
        if goal is None and candidate is not None and np.shape(candidate) == np.shape(pixels):
            goal = candidate
    else:
        pixels = observation
    frames, single = _as_frame_batch(pixels, "observation")
    goal_frames = None if goal is None else _as_frame_batch(goal, "goal")[0]
    return frames, goal_frames, single


def _as_frame_batch(frames: np.ndarray | torch.Tensor, name: str) -> tuple[np.ndarray, bool]:
    """uint8 ``[H, W, C]`` or ``[B, H, W, C]`` -> ``[B, H, W, C]`` and whether it was a single frame."""
    array = frames.detach().cpu().numpy() if isinstance(frames, torch.Tensor) else np.asarray(frames)
    if array.dtype != np.uint8:
        raise ValueError(f"{name} must be uint8 frames [H, W, C] or [B, H, W, C], got dtype {array.dtype}")
    if array.ndim == 3:
        return array[None], True
    if array.ndim == 4:
        return array, False
    raise ValueError(f"{name} must be uint8 frames [H, W, C] or [B, H, W, C], got shape {array.shape}")


def _changed_rows(previous: np.ndarray | None, frames: np.ndarray) -> np.ndarray | None:
    """``[B]`` bool: which goal images differ from the previous ones (None: all, shapes differ)."""
    if previous is None or previous.shape != frames.shape:
        return None
    return (previous != frames).reshape(len(frames), -1).any(axis=1)
