"""Sampling-based MPC planners (CEM and MPPI) over the latents a world model predicts.

Both planners search in normalised action units (``[-1, 1]`` per dimension, mapped linearly onto
``[low, high]``), so one set of standard deviations suits any action bounds, and a sample is
clamped before it is scaled, so the bounds always hold. Each iteration sends every candidate of
every environment through ONE batched ``model.rollout`` call under ``torch.inference_mode()``.

Warm start: the planner keeps the final mean of each environment and, on the next call, shifts it
by ``replan_every`` steps (the steps executed in between), filling the tail by repeating the last
step or with zeros. `SamplingPlanner.reset` forgets it for some or all environments.

Policy prior: a policy that needs observations cannot live inside a latent planner, so the prior
comes in as action sequences: either ``prior_actions [B, P, H, A]`` passed to ``plan`` (the MPC agent
builds them from an SB3 policy and the observation) or a ``prior(z) -> [B, (P,) H, A]`` callable
given to the constructor (e.g. a policy on latents rolled out through the model). Up to
``policy_prior_samples`` of them replace sampled candidates in every iteration, as in TD-MPC2.

Shape letters: B environments, S candidates, E elites, H horizon, K tokens per step, D width,
A action size, P prior sequences.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Literal, NamedTuple

import numpy as np
import torch
from einops import rearrange
from torchwm.agents.protocols import HistoryModelLike, LatentPrior, ValueModelLike, WorldModelLike
from torchwm.wm.config_base import Config, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.world_model import check_finite

CostKind = Literal["latent_l2", "latent_l1", "reward"]
CostOn = Literal["final", "sum"]
WarmStart = Literal["repeat", "zero", "off"]

__all__ = [
    "CEM",
    "CEMConfig",
    "MPPI",
    "MPPIConfig",
    "PlannerConfig",
    "SamplingPlanner",
    "discounted_return",
    "elite_indices",
    "latent_distance",
    "mppi_weights",
    "negative_reward",
]


class Context(NamedTuple):
    """What every candidate of one planning call continues (see `SamplingPlanner.plan`)."""

    history: torch.Tensor  # (B, C, K, D)
    past_actions: torch.Tensor | None  # (B, C-1, A), None: zeros
    proprio: torch.Tensor | None  # (B, C, P), None: the model takes none


# --- configs ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PlannerConfig(Config):
    """Fields common to the sampling planners."""

    horizon: PositiveInt = 5
    """Steps H of each candidate action sequence."""
    num_samples: PositiveInt = 300
    """Candidate sequences S per environment and iteration (prior sequences included)."""
    num_elites: PositiveInt = 30
    """Lowest-cost candidates E that the distribution is refit to."""
    iterations: PositiveInt = 3
    """Sample-evaluate-refit rounds per planning call."""
    init_std: PositiveFloat = 1.0
    """Standard deviation of the first round, in normalised action units (bounds are +-1)."""
    narrow_std: NonNegFloat = 0.0
    """Experimental (0: off). When > 0, the first round draws its last ``narrow_fraction`` of the sampled
    candidates at this standard deviation instead (around the same warm-started mean): small corrections beside
    the wide search."""
    narrow_fraction: Annotated[float, Range(gt=0, lt=1)] = 0.5
    """Share of the first round's sampled candidates drawn at ``narrow_std``."""
    min_std: PositiveFloat = 0.05
    """Lower clamp of the refit standard deviation (keeps exploring)."""
    max_std: PositiveFloat = 2.0
    """Upper clamp of the refit standard deviation."""
    cost: CostKind = "latent_l2"
    """``latent_l2``/``latent_l1``: mean squared/absolute latent difference to the goal; ``reward``: minus the predicted reward."""
    cost_on: CostOn = "sum"
    """Score the ``sum`` over the horizon, or the ``final`` predicted step only (DINO-WM's choice)."""
    terminal_value: bool = True
    """With ``cost="reward"`` and a model that has a value (`ValueModelLike` with a discount), the cost is minus
    the discounted return, each step's predicted reward taken from the latent before its action, plus (when on)
    the discounted value of the last predicted latent: TD-MPC2's return (``cost_on`` does not apply). A model
    without a value keeps minus the ``cost_on`` of the reward head on the latent after each action."""
    policy_prior_samples: NonNegInt = 0
    """At most this many prior action sequences replace sampled candidates (0: no prior)."""
    replan_every: PositiveInt = 1
    """Actions executed from one plan before replanning; also the warm-start shift."""
    warm_start: WarmStart = "repeat"
    """Start from the last plan shifted by ``replan_every``, its tail the ``repeat``ed last step or ``zero``; ``off``: from zero."""

    def __post_init__(self) -> None:
        self.validate()  # frozen: a planner config is checked whole when it is built

    def check(self) -> None:
        """The rules that tie fields together (each field's own type and range come from its annotation)."""
        if self.num_elites > self.num_samples:
            self.fail("num_elites", self.num_elites, f"<= num_samples={self.num_samples}")
        if self.min_std > self.max_std:
            self.fail("min_std", self.min_std, f"<= max_std={self.max_std}")
        if self.policy_prior_samples >= self.num_samples:
            self.fail("policy_prior_samples", self.policy_prior_samples, f"< num_samples={self.num_samples}")
        if self.replan_every > self.horizon:
            self.fail("replan_every", self.replan_every, f"<= horizon={self.horizon}")


@dataclass(frozen=True)
class CEMConfig(PlannerConfig):
    """Cross-entropy method in the spirit of DINO-WM (300 samples, top 30, horizon 5, std 1).

    DINO-WM runs 30 rounds on a GPU; 3 rounds plus the warm start fit the CPU budget of ~50 ms a step.
    """


@dataclass(frozen=True)
class MPPIConfig(PlannerConfig):
    """MPPI in the spirit of TD-MPC2 (512 samples, 64 elites, 6 rounds, temperature 0.5, std in [0.05, 2])."""

    num_samples: PositiveInt = 512
    """Candidate sequences S per environment and iteration (prior sequences included)."""
    num_elites: PositiveInt = 64
    """Lowest-cost candidates E that the weighted refit uses."""
    iterations: PositiveInt = 6
    """Sample-evaluate-refit rounds per planning call."""
    init_std: PositiveFloat = 2.0
    """Standard deviation of the first round (TD-MPC2 starts at ``max_std``)."""
    temperature: PositiveFloat = 0.5
    """Softness of the elite weights ``softmax(-cost / temperature)``; lower is greedier."""
    momentum: Annotated[float, Range(ge=0, lt=1)] = 0.0
    """Fraction of the previous round's mean kept in the new mean (0: none)."""


# --- costs and weights --------------------------------------------------------------------------


GoalCost = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""A cost of reaching a goal: ``(z_pred [B, S, H, K, D], z_goal [B, K, D]) -> [B, S]``, lower is better (e.g. a
learned temporal distance summed over the horizon); given to a planner, it replaces `latent_distance`."""


def latent_distance(
    z_pred: torch.Tensor, z_goal: torch.Tensor, p: Literal[1, 2] = 2, on: CostOn = "final"
) -> torch.Tensor:
    """Distance of predicted latents to the goal: ``z_pred [B, S, H, K, D]``, ``z_goal [B, K, D]`` -> ``[B, S]``.

    Per step, the mean over K and D of ``|z - z_goal| ** p``; then the final step or the sum over H.
    """
    if on == "final":
        z_pred = z_pred[:, :, -1:]  # (B, S, 1, K, D)
    diff = z_pred - z_goal[:, None, None]
    per_step = diff.square() if p == 2 else diff.abs()
    return per_step.mean(dim=(-2, -1)).sum(dim=-1)


def discounted_return(
    model: ValueModelLike, z_now: torch.Tensor, z_pred: torch.Tensor, actions: torch.Tensor, value: bool = True
) -> torch.Tensor:
    """Predicted return of action sequences: sum_h discount^h R(z_h, a_h) (+ discount^H V(z_H) with ``value``), with
    z_0 = ``z_now`` [N, K, D], z_1..z_H = ``z_pred`` [N, H, K, D], ``actions`` [N, H, A] -> [N]."""
    assert model.discount is not None
    z_from = torch.cat([z_now[:, None], z_pred[:, :-1]], dim=1)  # the latent each action is taken in
    horizon = actions.shape[1]
    powers = model.discount ** torch.arange(horizon + 1, device=z_pred.device, dtype=z_pred.dtype)
    rewards = (model.reward(z_from, actions) * powers[:horizon]).sum(-1)  # (N,)
    return rewards + powers[horizon] * model.value(z_pred[:, -1]) if value else rewards


def negative_reward(rewards: torch.Tensor, on: CostOn = "sum") -> torch.Tensor:
    """Cost from predicted rewards: ``rewards [B, S, H]`` -> ``[B, S]`` (minus the final or summed reward)."""
    return -(rewards[..., -1] if on == "final" else rewards.sum(dim=-1))


def mppi_weights(costs: torch.Tensor, temperature: float) -> torch.Tensor:
    """MPPI weights ``softmax(-costs / temperature)`` over the last axis: ``[..., E]`` -> ``[..., E]``, summing to one."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    return torch.softmax(-costs / temperature, dim=-1)


def elite_indices(costs: torch.Tensor, num_elites: int) -> torch.Tensor:
    """Indices of the lowest costs per row: ``costs [B, S]`` -> ``[B, E]``, best first."""
    return torch.topk(costs, num_elites, dim=1, largest=False, sorted=True).indices


# --- planners -----------------------------------------------------------------------------------


class SamplingPlanner:
    """Shared machinery of CEM and MPPI: bounds, sampling, batched evaluation, warm start.

    Subclasses implement `_refit` (new mean and std from the candidates and their costs).
    """

    config: PlannerConfig

    def __init__(
        self,
        model: WorldModelLike,
        action_low: np.ndarray | torch.Tensor | list[float],
        action_high: np.ndarray | torch.Tensor | list[float],
        config: PlannerConfig,
        device: torch.device | str | None = None,
        prior: LatentPrior | None = None,
        goal_cost: GoalCost | None = None,
    ) -> None:
        low, high = _as_bounds(action_low, action_high, device)
        if config.cost == "reward" and not callable(getattr(model, "reward", None)):
            raise TypeError(
                f"cost='reward' needs a model with reward(z, actions); {type(model).__name__} has none"
            )
        if goal_cost is not None and config.cost == "reward":
            raise ValueError("a goal_cost replaces a latent cost; config.cost='reward' plans without a goal")
        if prior is not None and config.policy_prior_samples == 0:
            raise ValueError(
                "a prior was given but config.policy_prior_samples is 0; set it to the sequences to use"
            )
        self.model = model
        self.config = config
        self.discounted = config.cost == "reward" and isinstance(model, ValueModelLike) and model.discount is not None
        """Whether the reward cost is the discounted return of a model with a value (``PlannerConfig.terminal_value``)."""
        self.uses_value = self.discounted and config.terminal_value
        """Whether that return adds the model's value beyond the horizon."""
        self.prior = prior
        self.goal_cost = goal_cost
        """Replaces the latent distance of ``config.cost`` (`GoalCost`; None: ``latent_l2`` / ``latent_l1``)."""
        self.device = low.device
        self._low, self._high = low, high  # (A,)
        self._center = (high + low) / 2  # (A,)
        self._half = (high - low) / 2  # (A,)
        self._memory: torch.Tensor | None = None  # (E_total, H, A) last normalised mean per env
        self._valid: torch.Tensor | None = None  # (E_total,) whether the memory holds a plan
        self.last_cost: torch.Tensor | None = None
        """Best cost of the last round of the last call, ``[B]`` (e.g. predicted distance to the goal)."""

    @property
    def action_size(self) -> int:
        """Action size A."""
        return self._center.numel()

    def reset(self, env_indices: torch.Tensor | np.ndarray | list[int] | None = None) -> None:
        """Forget the warm start of the given environments (all of them when None)."""
        if self._valid is None:
            return
        with torch.inference_mode():
            if env_indices is None:
                self._valid.zero_()
            else:
                idx = torch.as_tensor(env_indices, dtype=torch.long, device=self.device)
                self._valid[idx[idx < self._valid.numel()]] = False

    def plan(
        self,
        z: torch.Tensor,
        z_goal: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        prior_actions: torch.Tensor | None = None,
        env_indices: torch.Tensor | np.ndarray | list[int] | None = None,
        past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Plan for B environments at once.

        Args:
            z: current latents ``[B, K, D]``, or a latent history ``[B, C, K, D]`` ending at the current step
                (the model sees the C steps; needs a model with ``rollout_candidates``, as `PlanningModel`).
            z_goal: goal latents ``[B, K, D]`` (needed by the latent costs, ignored by ``reward``).
            generator: source of the sampling noise (on the planner's device); same seed, same plan.
            prior_actions: prior sequences ``[B, P, H, A]`` in action units; overrides the ``prior`` callable.
            env_indices: ``[B]`` which warm-start slots these rows are (default ``0..B-1``).
            past_actions: ``[B, C-1, A]`` the actions taken between the steps of a latent history (zeros if
                not given).
            proprio: ``[B, C, P]`` proprioception of those steps, for a model trained with it (C = 1 without
                a history).

        Returns:
            The planned action sequences ``[B, H, A]`` in action units, inside the bounds.
        """
        history = z if z.ndim == 4 else None
        z = z[:, -1] if z.ndim == 4 else z  # the current step
        self._check_latents(z, z_goal)
        check_finite("plan's z", z if history is None else history)
        if z_goal is not None:
            check_finite("plan's z_goal", z_goal)
        z = z.to(self.device)
        z_goal = None if z_goal is None else z_goal.to(self.device)
        idx = self._slots(z.shape[0], env_indices)
        with torch.inference_mode():
            prior = self._prior_candidates(z, prior_actions)
            mean, std = self._initial_distribution(idx, z.dtype)
            context = self._context(z, history, past_actions, proprio)
            for i in range(self.config.iterations):
                spread = self._first_round_std(std, prior.shape[1]) if i == 0 else std
                candidates = self._sample(mean, spread, prior, generator)  # (B, S, H, A)
                costs = self._evaluate(context, z_goal, candidates)  # (B, S)
                mean, std = self._refit(candidates, costs, mean, std)
            self.last_cost = costs.min(dim=1).values
            self._remember(idx, mean)
            return self._to_actions(mean)

    # --- steps of plan -----------------------------------------------------------------------

    def _context(
        self, z: torch.Tensor, history: torch.Tensor | None, past_actions: torch.Tensor | None,
        proprio: torch.Tensor | None,
    ) -> Context:
        """What every candidate continues: the latent history ``[B, C, K, D]`` (``[B, 1, K, D]`` without one),
        the actions between its steps ``[B, C-1, A]`` (None: zeros) and its proprioception ``[B, C, P]`` (or
        None), on the planner's device."""
        if proprio is not None:
            proprio = torch.as_tensor(proprio, device=self.device, dtype=z.dtype)
            check_finite("plan's proprio", proprio)
            if not isinstance(self.model, HistoryModelLike):
                raise TypeError(
                    f"proprioception needs a model with rollout_candidates(z_context, actions, past_actions, proprio); "
                    f"{type(self.model).__name__} has none: wrap a WorldModel in PlanningModel, or pass proprio=None"
                )
        if history is None:
            if past_actions is not None:
                raise ValueError("past_actions need a latent history z [B, C, K, D] to go between")
            return Context(z[:, None], None, proprio)
        if not isinstance(self.model, HistoryModelLike) and history.shape[1] > 1:
            raise TypeError(
                f"planning from a latent history needs a model with rollout_candidates(z_context, actions, "
                f"past_actions); {type(self.model).__name__} has none (pass the current latent z [B, K, D])"
            )
        if past_actions is not None:
            past_actions = torch.as_tensor(past_actions, device=self.device, dtype=z.dtype)
            check_finite("plan's past_actions", past_actions)
        return Context(history.to(self.device), past_actions, proprio)

    def _check_latents(self, z: torch.Tensor, z_goal: torch.Tensor | None) -> None:
        if z.ndim != 3:
            raise ValueError(f"z must be [B, K, D] (or a history [B, C, K, D]), got shape {tuple(z.shape)}")
        if self.config.cost == "reward":
            return
        if z_goal is None:
            raise ValueError(f"cost={self.config.cost!r} needs z_goal [B, K, D]; got None")
        if z_goal.shape != z.shape:
            raise ValueError(f"z_goal must have the shape of z {tuple(z.shape)}, got {tuple(z_goal.shape)}")

    def _slots(self, batch: int, env_indices: torch.Tensor | np.ndarray | list[int] | None) -> torch.Tensor:
        """Warm-start slots ``[B]`` of the rows, growing the memory when a slot is new."""
        if env_indices is None:
            idx = torch.arange(batch, device=self.device)
        else:
            idx = torch.as_tensor(env_indices, dtype=torch.long, device=self.device).reshape(-1)
            if idx.numel() != batch:
                raise ValueError(f"env_indices must hold one slot per row of z ({batch}), got {idx.numel()}")
        self._grow_memory(int(idx.max()) + 1)
        return idx

    def _grow_memory(self, size: int) -> None:
        if self._memory is not None and self._memory.shape[0] >= size:
            return
        with torch.inference_mode():
            memory = torch.zeros(size, self.config.horizon, self.action_size, device=self.device)
            valid = torch.zeros(size, dtype=torch.bool, device=self.device)
            if self._memory is not None and self._valid is not None:
                memory[: self._memory.shape[0]] = self._memory
                valid[: self._valid.shape[0]] = self._valid
        self._memory, self._valid = memory, valid

    def _initial_distribution(
        self, idx: torch.Tensor, dtype: torch.dtype
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Warm-started mean and the initial std, both ``[B, H, A]`` in normalised units."""
        assert self._memory is not None and self._valid is not None
        mean = _shift(self._memory[idx], self.config.replan_every, self.config.warm_start)
        use = self._valid[idx] if self.config.warm_start != "off" else torch.zeros_like(self._valid[idx])
        mean = torch.where(use[:, None, None], mean, torch.zeros_like(mean)).to(dtype)
        return mean, torch.full_like(mean, self.config.init_std)

    def _prior_candidates(self, z: torch.Tensor, prior_actions: torch.Tensor | None) -> torch.Tensor:
        """Normalised prior sequences ``[B, P, H, A]`` (P may be 0)."""
        batch, horizon, size = z.shape[0], self.config.horizon, self.action_size
        if prior_actions is None and self.prior is not None:
            prior_actions = self.prior(z)
        if prior_actions is None:
            return torch.zeros(batch, 0, horizon, size, device=self.device, dtype=z.dtype)
        if self.config.policy_prior_samples == 0:
            raise ValueError("prior_actions were given but config.policy_prior_samples is 0")
        prior_actions = torch.as_tensor(prior_actions, device=self.device, dtype=z.dtype)
        if prior_actions.ndim == 3:
            prior_actions = prior_actions[:, None]
        expected = (batch, horizon, size)
        got = (prior_actions.shape[0], *prior_actions.shape[2:])
        if prior_actions.ndim != 4 or got != expected:
            raise ValueError(
                f"prior actions must be [B, P, H, A] = [{batch}, P, {horizon}, {size}], got {tuple(prior_actions.shape)}"
            )
        prior = prior_actions[:, : self.config.policy_prior_samples]
        return ((prior - self._center) / self._half).clamp(-1.0, 1.0)

    def _first_round_std(self, std: torch.Tensor, num_prior: int) -> torch.Tensor:
        """The first round's spread: ``std [B, H, A]``, or per sample ``[B, S - P, H, A]`` with the last
        ``narrow_fraction`` of the sampled candidates at ``narrow_std``."""
        cfg = self.config
        count = cfg.num_samples - num_prior
        narrow = round(count * cfg.narrow_fraction) if cfg.narrow_std > 0 else 0
        if narrow == 0:
            return std
        spread = std[:, None].repeat(1, count, 1, 1)
        spread[:, count - narrow :] = cfg.narrow_std
        return spread

    def _sample(
        self, mean: torch.Tensor, std: torch.Tensor, prior: torch.Tensor, generator: torch.Generator | None
    ) -> torch.Tensor:
        """Candidates ``[B, S, H, A]``: the prior sequences, then Gaussian samples clamped to the bounds (``std``
        ``[B, H, A]`` for every sample, or ``[B, S - P, H, A]`` one per sample)."""
        batch, horizon, size = mean.shape
        count = self.config.num_samples - prior.shape[1]
        noise = torch.randn(
            batch, count, horizon, size, generator=generator, device=mean.device, dtype=mean.dtype
        )
        samples = noise.mul_(std[:, None] if std.ndim == 3 else std).add_(mean[:, None]).clamp_(-1.0, 1.0)
        return torch.cat([prior, samples], dim=1) if prior.shape[1] else samples

    def _evaluate(self, context: Context, z_goal: torch.Tensor | None, candidates: torch.Tensor) -> torch.Tensor:
        """Costs ``[B, S]`` of normalised candidates ``[B, S, H, A]`` from ONE batched rollout of the context."""
        batch, samples = candidates.shape[:2]
        history, past, proprio = context
        sequences = self._to_actions(candidates)  # (B, S, H, A)
        actions = rearrange(sequences, "b s h a -> (b s) h a")
        if isinstance(self.model, HistoryModelLike):
            if proprio is None:
                z_pred = self.model.rollout_candidates(history, sequences, past)
            else:
                z_pred = self.model.rollout_candidates(history, sequences, past, proprio)
            z_pred = rearrange(z_pred, "b s h k d -> (b s) h k d")
        else:  # a plain WorldModelLike: the current latent repeated for every candidate
            z_pred = self.model.rollout(history[:, -1].repeat_interleave(samples, dim=0), actions)
        if z_pred.ndim != 4 or z_pred.shape[:2] != actions.shape[:2]:
            raise ValueError(
                f"model.rollout must return [B*S, H, K, D] with B*S, H = {tuple(actions.shape[:2])}, got {tuple(z_pred.shape)}"
            )
        cfg = self.config
        if self.discounted:
            z_now = history[:, -1].repeat_interleave(samples, dim=0)  # ((B S), K, D)
            ret = discounted_return(self.model, z_now, z_pred, actions, self.uses_value)  # type: ignore[arg-type]
            return -rearrange(ret, "(b s) -> b s", b=batch)
        if cfg.cost == "reward":
            rewards = self.model.reward(z_pred, actions)  # type: ignore[attr-defined]  # ((B S), H)
            return negative_reward(rearrange(rewards, "(b s) h -> b s h", b=batch), cfg.cost_on)
        z_pred = rearrange(z_pred, "(b s) h k d -> b s h k d", b=batch, s=samples)
        assert z_goal is not None
        if self.goal_cost is not None:
            return self.goal_cost(z_pred, z_goal)
        return latent_distance(z_pred, z_goal, 2 if cfg.cost == "latent_l2" else 1, cfg.cost_on)

    def _refit(
        self, candidates: torch.Tensor, costs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def _elites(self, candidates: torch.Tensor, costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Elite candidates ``[B, E, H, A]`` and their costs ``[B, E]``."""
        idx = elite_indices(costs, self.config.num_elites)  # (B, E)
        elites = torch.take_along_dim(candidates, idx[:, :, None, None], dim=1)
        return elites, torch.take_along_dim(costs, idx, dim=1)

    def _remember(self, idx: torch.Tensor, mean: torch.Tensor) -> None:
        assert self._memory is not None and self._valid is not None
        self._memory[idx] = mean.to(self._memory.dtype)
        self._valid[idx] = True

    def _to_actions(self, normalised: torch.Tensor) -> torch.Tensor:
        """Normalised ``[..., A]`` in ``[-1, 1]`` -> action units, clamped so rounding never leaves ``[low, high]``."""
        dtype = normalised.dtype
        actions = torch.addcmul(self._center.to(dtype), normalised, self._half.to(dtype))
        return actions.clamp_(self._low.to(dtype), self._high.to(dtype))


class CEM(SamplingPlanner):
    """Cross-entropy method: refit a diagonal Gaussian to the elites (mean and std)."""

    def __init__(
        self,
        model: WorldModelLike,
        action_low: np.ndarray | torch.Tensor | list[float],
        action_high: np.ndarray | torch.Tensor | list[float],
        config: CEMConfig | None = None,
        device: torch.device | str | None = None,
        prior: LatentPrior | None = None,
        goal_cost: GoalCost | None = None,
    ) -> None:
        super().__init__(model, action_low, action_high, config or CEMConfig(), device, prior, goal_cost)

    def _refit(
        self, candidates: torch.Tensor, costs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        elites, _ = self._elites(candidates, costs)  # (B, E, H, A)
        std = elites.std(dim=1, correction=0).clamp_(self.config.min_std, self.config.max_std)
        return elites.mean(dim=1), std


class MPPI(SamplingPlanner):
    """MPPI as in TD-MPC2: refit to the elites weighted by ``softmax(-cost / temperature)``.

    The plan is the final weighted mean (TD-MPC2 draws one elite by weight instead), so a seed
    fixes it and ``deterministic`` needs no separate path.
    """

    config: MPPIConfig

    def __init__(
        self,
        model: WorldModelLike,
        action_low: np.ndarray | torch.Tensor | list[float],
        action_high: np.ndarray | torch.Tensor | list[float],
        config: MPPIConfig | None = None,
        device: torch.device | str | None = None,
        prior: LatentPrior | None = None,
        goal_cost: GoalCost | None = None,
    ) -> None:
        super().__init__(model, action_low, action_high, config or MPPIConfig(), device, prior, goal_cost)

    def _refit(
        self, candidates: torch.Tensor, costs: torch.Tensor, mean: torch.Tensor, std: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        elites, elite_costs = self._elites(candidates, costs)  # (B, E, H, A), (B, E)
        weights = mppi_weights(elite_costs, self.config.temperature)[:, :, None, None]  # (B, E, 1, 1)
        new_mean = (weights * elites).sum(dim=1)  # (B, H, A)
        new_std = (weights * (elites - new_mean[:, None]).square()).sum(dim=1).sqrt()
        momentum = self.config.momentum
        if momentum:
            new_mean = momentum * mean + (1.0 - momentum) * new_mean
        return new_mean, new_std.clamp_(self.config.min_std, self.config.max_std)


def _shift(mean: torch.Tensor, steps: int, fill: WarmStart) -> torch.Tensor:
    """Drop the first ``steps`` of ``mean [B, H, A]`` and fill the tail (last step repeated or zeros)."""
    kept = mean[:, steps:]
    if fill == "repeat" and kept.shape[1]:
        tail = kept[:, -1:].expand(-1, steps, -1)
    else:
        tail = torch.zeros_like(mean[:, :steps])
    return torch.cat([kept, tail], dim=1)


def _as_bounds(
    low: np.ndarray | torch.Tensor | list[float],
    high: np.ndarray | torch.Tensor | list[float],
    device: torch.device | str | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated bounds ``[A]`` as float32 tensors on ``device``."""
    low_t = torch.as_tensor(np.asarray(low, dtype=np.float32), device=device).reshape(-1)
    high_t = torch.as_tensor(np.asarray(high, dtype=np.float32), device=device).reshape(-1)
    if low_t.shape != high_t.shape:
        raise ValueError(
            f"action_low and action_high must match, got {tuple(low_t.shape)} and {tuple(high_t.shape)}"
        )
    if low_t.numel() == 0:
        raise ValueError("action_low and action_high must have one entry per action dimension, got none")
    if not torch.isfinite(torch.cat([low_t, high_t, high_t - low_t])).all():
        raise ValueError(
            f"action bounds must be finite (and so must high - low in float32), got low={low_t.tolist()} "
            f"high={high_t.tolist()}"
        )
    if not (low_t < high_t).all():
        raise ValueError(f"action_low must be < action_high, got low={low_t.tolist()} high={high_t.tolist()}")
    return low_t, high_t
