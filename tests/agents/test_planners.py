"""CEM and MPPI on an analytic world model: z is a 2-D position, a rollout adds up the actions."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import pytest
import torch
from torchwm.agents.planners import (
    CEM,
    MPPI,
    CEMConfig,
    MPPIConfig,
    SamplingPlanner,
    discounted_return,
    latent_distance,
    mppi_weights,
)
from torchwm.agents.protocols import RewardModelLike, WorldModelLike


class CumsumModel:
    """``z [B, 1, 2]`` is a position; ``rollout`` adds the cumulative sum of the actions.

    ``encode`` reads the position off the last frame: the (row, column) of its brightest pixel.
    Every rollout is recorded, so tests can check batching and bounds.
    """

    def __init__(self) -> None:
        self.rollout_shapes: list[tuple[int, ...]] = []
        self.seen_actions: list[torch.Tensor] = []
        self.encoded_shapes: list[tuple[int, ...]] = []

    def encode_last(self, frames: torch.Tensor) -> torch.Tensor:
        frames = torch.as_tensor(frames)
        self.encoded_shapes.append(tuple(frames.shape))
        last = frames[:, -1, :, :, 0]  # (B, H, W)
        flat = last.flatten(1).argmax(dim=1)
        width = last.shape[-1]
        return torch.stack([flat // width, flat % width], dim=-1).float()[:, None]  # (B, 1, 2)

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        self.rollout_shapes.append(tuple(actions.shape))
        self.seen_actions.append(actions.clone())
        return z[:, None] + actions.cumsum(dim=1)[:, :, None]  # (B, H, 1, 2)


class RewardCumsumModel(CumsumModel):
    """Reward: minus the squared distance to a fixed target."""

    def __init__(self, target: tuple[float, float]) -> None:
        super().__init__()
        self.target = torch.tensor(target)

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return -(z[:, :, 0] - self.target).square().sum(dim=-1)  # (B, H)


PLANNERS = [(CEM, CEMConfig), (MPPI, MPPIConfig)]


def _plan_final(planner: SamplingPlanner, z: torch.Tensor, plan: torch.Tensor) -> torch.Tensor:
    return z[:, 0] + plan.sum(dim=1)  # (B, 2)


def test_the_analytic_models_satisfy_the_protocols() -> None:
    assert isinstance(CumsumModel(), WorldModelLike)
    assert isinstance(RewardCumsumModel((0.0, 0.0)), RewardModelLike)


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_planner_converges_on_a_quadratic(planner_cls: type, config_cls: type) -> None:
    planner = planner_cls(CumsumModel(), [-1.0, -1.0], [1.0, 1.0], config_cls(cost_on="final"))
    z = torch.zeros(1, 1, 2)
    goal = torch.tensor([[[3.0, -2.0]]])
    plan = planner.plan(z, goal, torch.Generator().manual_seed(0))
    assert plan.shape == (1, 5, 2)
    assert plan[0, 0, 0] > 0.2 and plan[0, 0, 1] < -0.2  # first action heads to the goal
    assert torch.linalg.norm(_plan_final(planner, z, plan) - goal[:, 0]) < 0.2
    assert planner.last_cost is not None and planner.last_cost.item() < 0.05


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_summed_cost_reaches_the_goal_early(planner_cls: type, config_cls: type) -> None:
    planner = planner_cls(
        CumsumModel(), [-1.0, -1.0], [1.0, 1.0], config_cls(cost_on="sum", cost="latent_l1")
    )
    z, goal = torch.zeros(1, 1, 2), torch.tensor([[[2.0, 2.0]]])
    plan = planner.plan(z, goal, torch.Generator().manual_seed(1))
    assert plan[0, :2].sum(dim=0).gt(1.0).all()  # most of the way there within two steps


def test_mppi_weights_sum_to_one_and_sharpen_as_temperature_falls() -> None:
    costs = torch.tensor([[0.1, 0.4, 0.2, 1.0, 0.3]])
    entropies = []
    for temperature in (10.0, 1.0, 0.1, 0.01):
        weights = mppi_weights(costs, temperature)
        torch.testing.assert_close(weights.sum(dim=-1), torch.ones(1))
        assert weights.argmax() == 0
        entropies.append(-(weights * weights.clamp_min(1e-12).log()).sum().item())
    assert entropies == sorted(entropies, reverse=True) and entropies[0] > entropies[-1] + 1.0
    with pytest.raises(ValueError, match="temperature"):
        mppi_weights(costs, 0.0)


def test_latent_distance_final_and_sum() -> None:
    z_goal = torch.zeros(1, 1, 2)
    z_pred = torch.tensor([[1.0, 0.0], [2.0, 0.0]])[None, None, :, None]  # (B=1, S=1, H=2, K=1, D=2)
    assert latent_distance(z_pred, z_goal, 2, "final").item() == pytest.approx(2.0)  # mean(4, 0)
    assert latent_distance(z_pred, z_goal, 2, "sum").item() == pytest.approx(2.5)
    assert latent_distance(z_pred, z_goal, 1, "sum").item() == pytest.approx(1.5)


def _tiny_noise(cls: type, **overrides: Any) -> Any:
    """One round over 4 candidates with almost no noise, so a plan is (nearly) its starting mean."""
    fields: dict[str, Any] = dict(
        num_samples=4, num_elites=1, iterations=1, init_std=1e-4, min_std=1e-4, max_std=1e-4
    )
    fields.update(overrides)
    return cls(**fields)


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
@pytest.mark.parametrize("fill", ["repeat", "zero"])
def test_warm_start_shifts_the_last_plan_by_one_step(planner_cls: type, config_cls: type, fill: str) -> None:
    config = _tiny_noise(config_cls, policy_prior_samples=1, warm_start=fill)
    planner = planner_cls(CumsumModel(), [-1.0, -1.0], [1.0, 1.0], config)
    z, goal = torch.zeros(1, 1, 2), torch.tensor([[[5.0, -3.0]]])
    prior = torch.tensor([[1.0, -1.0], [0.5, -0.5], [0.2, 0.0], [0.0, 0.3], [0.8, -0.2]])[None]  # (1, H, A)
    first = planner.plan(z, goal, torch.Generator().manual_seed(0), prior_actions=prior)
    torch.testing.assert_close(first, prior)  # the prior was the best candidate
    second = planner.plan(z, goal, torch.Generator().manual_seed(0), prior_actions=torch.zeros(1, 5, 2))
    torch.testing.assert_close(second[:, :-1], first[:, 1:], atol=1e-3, rtol=0)
    tail = first[:, -1] if fill == "repeat" else torch.zeros(1, 2)
    torch.testing.assert_close(second[:, -1], tail, atol=1e-3, rtol=0)


def test_reset_and_off_forget_the_warm_start() -> None:
    prior = torch.full((1, 5, 2), 0.9)
    z, goal = torch.zeros(1, 1, 2), torch.tensor([[[9.0, 9.0]]])
    for warm_start, reset in (("repeat", True), ("off", False)):
        planner = CEM(
            CumsumModel(),
            [-1, -1],
            [1, 1],
            _tiny_noise(CEMConfig, policy_prior_samples=1, warm_start=warm_start),
        )
        planner.plan(z, goal, prior_actions=prior)
        if reset:
            planner.reset([0])
        second = planner.plan(z, goal, prior_actions=torch.full((1, 5, 2), -1.0))
        torch.testing.assert_close(second, torch.zeros(1, 5, 2), atol=1e-3, rtol=0)


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_asymmetric_bounds_always_hold(planner_cls: type, config_cls: type) -> None:
    low, high = torch.tensor([-0.5, -2.0]), torch.tensor([1.5, 0.1])
    model = CumsumModel()
    planner = planner_cls(model, low, high, config_cls(policy_prior_samples=1))
    z, goal = torch.zeros(2, 1, 2), torch.tensor([[[-40.0, 40.0]], [[40.0, -40.0]]])  # out of reach
    plan = planner.plan(z, goal, torch.Generator().manual_seed(0), prior_actions=torch.full((2, 5, 2), 99.0))
    seen = torch.cat(model.seen_actions)
    for actions in (plan, seen):
        assert (actions >= low).all() and (actions <= high).all()
    # from the middle of the box (0.5, -0.95), each plan moves well towards its goal's corner
    assert plan[0, :, 0].mean() < 0.0 and plan[0, :, 1].mean() > -0.5
    assert plan[1, :, 0].mean() > 1.0 and plan[1, :, 1].mean() < -1.4


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_same_seed_same_plan(planner_cls: type, config_cls: type) -> None:
    z, goal = torch.zeros(2, 1, 2), torch.tensor([[[1.0, 2.0]], [[-3.0, 0.5]]])

    def plan(seed: int) -> torch.Tensor:
        planner = planner_cls(CumsumModel(), [-1, -1], [1, 1], config_cls())
        return planner.plan(z, goal, torch.Generator().manual_seed(seed))

    torch.testing.assert_close(plan(3), plan(3), rtol=0, atol=0)
    assert not torch.equal(plan(3), plan(4))


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_environments_are_planned_in_one_batched_rollout_per_iteration(
    planner_cls: type, config_cls: type
) -> None:
    model = CumsumModel()
    config = config_cls(cost_on="final")
    planner = planner_cls(model, [-1, -1], [1, 1], config)
    z = torch.tensor([[[0.0, 0.0]], [[5.0, 5.0]], [[-2.0, 3.0]]])
    goal = torch.tensor([[[2.0, -2.0]], [[3.0, 7.0]], [[-2.0, 0.0]]])
    plan = planner.plan(z, goal, torch.Generator().manual_seed(0))
    assert model.rollout_shapes == [(3 * config.num_samples, config.horizon, 2)] * config.iterations
    torch.testing.assert_close(_plan_final(planner, z, plan), goal[:, 0], atol=0.25, rtol=0)


def test_reward_cost_needs_no_goal() -> None:
    planner = MPPI(
        RewardCumsumModel((2.0, -1.0)), [-1, -1], [1, 1], MPPIConfig(cost="reward", cost_on="final")
    )
    z = torch.zeros(1, 1, 2)
    plan = planner.plan(z, None, torch.Generator().manual_seed(0))
    torch.testing.assert_close(_plan_final(planner, z, plan), torch.tensor([[2.0, -1.0]]), atol=0.2, rtol=0)
    with pytest.raises(TypeError, match="reward"):
        CEM(CumsumModel(), [-1, -1], [1, 1], CEMConfig(cost="reward"))


def test_a_prior_callable_feeds_candidates() -> None:
    model = CumsumModel()
    sequence = torch.tensor([0.25, -0.75]).expand(1, 5, 2)
    planner = CEM(model, [-1, -1], [1, 1], CEMConfig(policy_prior_samples=2), prior=lambda z: sequence)
    planner.plan(torch.zeros(1, 1, 2), torch.zeros(1, 1, 2))
    assert all(torch.equal(actions[0], sequence[0]) for actions in model.seen_actions)


def test_bad_inputs_name_the_value() -> None:
    planner = CEM(CumsumModel(), [-1, -1], [1, 1], CEMConfig(policy_prior_samples=1))
    z = torch.zeros(2, 1, 2)
    with pytest.raises(ValueError, match=r"z_goal must have the shape of z \(2, 1, 2\)"):
        planner.plan(z, torch.zeros(1, 1, 2))
    with pytest.raises(ValueError, match="needs z_goal"):
        planner.plan(z, None)
    with pytest.raises(ValueError, match=r"\[2, P, 5, 2\], got \(2, 1, 5, 3\)"):
        planner.plan(z, z, prior_actions=torch.zeros(2, 1, 5, 3))
    with pytest.raises(ValueError, match="num_elites"):
        CEMConfig(num_samples=10, num_elites=20)
    with pytest.raises(ValueError, match=r"MPPIConfig\.cost='latent_l3' is invalid: expected one of \['latent_l2'"):
        MPPIConfig(cost="latent_l3")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="action_low must be < action_high"):
        CEM(CumsumModel(), [1.0, -1.0], [1.0, 1.0])


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_a_goal_cost_replaces_the_latent_distance(planner_cls: type, config_cls: type) -> None:
    """A cost that ignores the goal and wants the first coordinate low: the plan heads away from the goal."""
    seen: list[tuple[int, ...]] = []

    def leftwards(z_pred: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        seen.append((tuple(z_pred.shape), tuple(z_goal.shape)))
        return z_pred[..., 0].sum(dim=(-2, -1))  # (B, S): the summed first coordinate

    planner = planner_cls(CumsumModel(), [-1.0, -1.0], [1.0, 1.0], config_cls(), goal_cost=leftwards)
    z, goal = torch.zeros(1, 1, 2), torch.tensor([[[3.0, 0.0]]])
    plan = planner.plan(z, goal, torch.Generator().manual_seed(0))
    assert plan[0, :, 0].mean() < -0.5  # away from the goal at +3, as the cost asks
    assert seen[0] == ((1, planner.config.num_samples, planner.config.horizon, 1, 2), (1, 1, 2))
    with pytest.raises(ValueError, match="goal_cost replaces a latent cost"):
        planner_cls(RewardCumsumModel((0.0, 0.0)), [-1.0], [1.0], config_cls(cost="reward"), goal_cost=leftwards)


@pytest.mark.parametrize("planner_cls, config_cls", PLANNERS)
def test_narrow_std_draws_the_first_rounds_last_samples_close_to_the_mean(planner_cls: type, config_cls: type) -> None:
    model = CumsumModel()
    config = config_cls(num_samples=200, num_elites=20, iterations=2, init_std=2.0, narrow_std=0.05, narrow_fraction=0.25)
    planner = planner_cls(model, [-1, -1], [1, 1], config)
    planner.plan(torch.zeros(1, 1, 2), torch.tensor([[[3.0, -3.0]]]), torch.Generator().manual_seed(0))
    first = model.seen_actions[0]  # (S, H, A) around a zero mean (no warm start yet)
    wide, narrow = first[:150], first[150:]
    assert narrow.abs().max() < 0.3  # 4 x 0.05 around zero
    assert (wide.abs() == 1.0).float().mean() > 0.3  # std 2 puts many at the bounds
    assert (model.seen_actions[1][150:].abs() > 0.3).any()  # the second round samples from the refit spread


class ValueCumsumModel(RewardCumsumModel):
    """No reward inside the horizon; the value of a position is its first coordinate (the goal lies beyond)."""

    def __init__(self, discount: float | None) -> None:
        super().__init__((0.0, 0.0))
        self._discount = discount

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return torch.zeros(z.shape[:2])

    @property
    def discount(self) -> float | None:
        return self._discount

    def value(self, z: torch.Tensor) -> torch.Tensor:
        return z[:, 0, 0]


@pytest.mark.parametrize(("planner_cls", "config_cls"), PLANNERS)
def test_the_value_beyond_the_horizon_steers_the_reward_cost(planner_cls: Any, config_cls: Any) -> None:
    """A return that the horizon cannot see: with the value the plan heads for it; without it (or for a model
    without a value) every plan costs the same."""
    z = torch.zeros(1, 1, 2)
    config = config_cls(cost="reward", horizon=3, num_samples=64, num_elites=8)
    with_value = planner_cls(ValueCumsumModel(0.9), [-1, -1], [1, 1], config)
    assert with_value.uses_value
    plan = with_value.plan(z, None, torch.Generator().manual_seed(0))
    assert plan[0, :, 0].mean() > 0.5  # towards larger values
    for off in (planner_cls(ValueCumsumModel(0.9), [-1, -1], [1, 1], replace(config, terminal_value=False)),
                planner_cls(ValueCumsumModel(None), [-1, -1], [1, 1], config)):  # fmt: skip
        assert not off.uses_value
        off.plan(z, None, torch.Generator().manual_seed(0))
        assert off.last_cost is not None and torch.all(off.last_cost == 0)


def test_the_discounted_return_takes_each_reward_from_the_latent_before_its_action() -> None:
    model = ValueCumsumModel(0.5)
    model.reward = lambda z, a: z[:, :, 0, 0] + 10 * a[:, :, 0]  # type: ignore[method-assign]
    z_now = torch.tensor([[[1.0, 0.0]]])  # (1, 1, 2)
    actions = torch.tensor([[[1.0, 0.0], [1.0, 0.0]]])  # (1, 2, 2)
    z_pred = z_now[:, None] + actions.cumsum(1)[:, :, None]  # positions 2, 3
    # rewards: (1 + 10) + 0.5 (2 + 10); value of the last latent: 0.25 * 3
    expected = torch.tensor([11.0 + 0.5 * 12.0 + 0.25 * 3.0])
    torch.testing.assert_close(discounted_return(model, z_now, z_pred, actions), expected)
