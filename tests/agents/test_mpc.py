"""The MPC agent and closed-loop evaluation on a tiny point environment seen through 16x16 frames."""

from __future__ import annotations

import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.vector import SyncVectorEnv
from torchwm.agents.evaluate import EvalResult, RandomPolicy, evaluate, wilson_interval
from torchwm.agents.mpc import MPCAgent, greedy_one_step
from torchwm.agents.planners import CEM, MPPI, CEMConfig, MPPIConfig, SamplingPlanner
from torchwm.agents.protocols import PredictPolicy

from tests.agents.test_planners import CumsumModel

SIZE = 16
ACTIONS = gym.spaces.Box(-1.0, 1.0, (2,), np.float32)


def _frame(position: np.ndarray) -> np.ndarray:
    """``[16, 16, 3]`` uint8, one lit pixel at the rounded (row, column)."""
    frame = np.zeros((SIZE, SIZE, 3), dtype=np.uint8)
    row, col = np.clip(np.rint(position), 0, SIZE - 1).astype(int)
    frame[row, col] = 255
    return frame


class PointEnv(gym.Env):
    """A point in ``[0, 15]^2`` moved by actions in ``[-1, 1]^2``; success within 0.75 of a goal cell."""

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, dict_obs: bool = False) -> None:
        self.dict_obs = dict_obs
        pixels = gym.spaces.Box(0, 255, (SIZE, SIZE, 3), np.uint8)
        self.observation_space = (
            gym.spaces.Dict({"pixels": pixels, "goal_pixels": pixels}) if dict_obs else pixels
        )
        self.action_space = ACTIONS
        self.position = np.zeros(2)
        self.goal = np.zeros(2)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        self.goal = self.np_random.integers(0, SIZE, 2).astype(np.float64)
        self.position = self.np_random.uniform(0, SIZE - 1, 2)
        while np.linalg.norm(self.position - self.goal) < 4:
            self.position = self.np_random.uniform(0, SIZE - 1, 2)
        return self._obs(), {"goal_frame": _frame(self.goal), "distance": self._distance()}

    def step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        self.position = np.clip(self.position + np.clip(action, -1, 1), 0, SIZE - 1)
        distance = self._distance()
        success = distance < 0.75
        return self._obs(), -distance, success, False, {"is_success": success, "distance": distance}

    def _distance(self) -> float:
        return float(np.linalg.norm(self.position - self.goal))

    def _obs(self) -> Any:
        pixels = _frame(self.position)
        return {"pixels": pixels, "goal_pixels": _frame(self.goal)} if self.dict_obs else pixels


def _agent(model: CumsumModel | None = None, planner: str = "cem", **agent_kwargs: Any) -> MPCAgent:
    """A small planner (64 samples, summed cost) on the analytic model, inside an MPC agent."""
    model = model or CumsumModel()
    if planner == "cem":
        chosen: SamplingPlanner = CEM(
            model, [-1, -1], [1, 1], CEMConfig(num_samples=64, num_elites=8, cost_on="sum")
        )
    else:
        chosen = MPPI(model, [-1, -1], [1, 1], MPPIConfig(num_samples=64, num_elites=8, cost_on="sum"))
    return MPCAgent(model, chosen, **agent_kwargs)


class FrameRecordingModel(CumsumModel):
    """Also keeps every frame history it encodes."""

    def __init__(self) -> None:
        super().__init__()
        self.histories: list[np.ndarray] = []

    def encode_last(self, frames: torch.Tensor) -> torch.Tensor:
        self.histories.append(frames.numpy().copy())
        return super().encode_last(frames)


@pytest.mark.parametrize("planner", ["cem", "mppi"])
def test_predict_reaches_the_goal_in_a_gymnasium_loop(planner: str) -> None:
    env = PointEnv()
    agent = _agent(planner=planner)
    obs, info = env.reset(seed=0)
    agent.set_goal(info["goal_frame"])
    for _ in range(25):
        action, state = agent.predict(obs)
        assert action.shape == (2,) and action.dtype == np.float32 and state is None
        assert np.all(np.abs(action) <= 1.0)
        obs, _, terminated, _, info = env.step(action)
        if terminated:
            break
    assert info["is_success"]
    assert agent.last_plan_ms > 0.0
    assert agent.last_latent_distance is not None and agent.last_latent_distance.shape == (1,)


def test_predict_plans_a_vector_env_in_one_batch() -> None:
    venv = SyncVectorEnv([PointEnv] * 3)
    model = CumsumModel()
    agent = _agent(model)
    obs, infos = venv.reset(seed=[0, 1, 2])
    agent.set_goal(infos["goal_frame"])
    reached = np.zeros(3, dtype=bool)
    episode_start = np.ones(3, dtype=bool)
    for _ in range(25):
        actions, _ = agent.predict(obs, episode_start=episode_start)
        assert actions.shape == (3, 2)
        obs, _, terminated, truncated, infos = venv.step(actions)
        reached |= terminated & ~episode_start
        episode_start = terminated | truncated
        if reached.all():
            break
    assert reached.all()
    assert model.encoded_shapes[1] == (3, 1, SIZE, SIZE, 3)  # [0] was the goal


def test_dict_observations_carry_their_goal() -> None:
    env = PointEnv(dict_obs=True)
    agent = _agent()
    obs, _ = env.reset(seed=3)
    for _ in range(25):
        obs, _, terminated, _, info = env.step(agent.predict(obs)[0])
        if terminated:
            break
    assert info["is_success"]


def test_frame_history_pads_with_the_first_frame_and_resets_on_episode_start() -> None:
    model = FrameRecordingModel()
    agent = _agent(model, frame_history=3)
    seen = model.histories
    env = PointEnv()
    obs, info = env.reset(seed=0)
    agent.set_goal(info["goal_frame"])
    first = obs
    assert seen[-1].shape == (1, 3, SIZE, SIZE, 3) and (seen[-1][0] == info["goal_frame"]).all()
    agent.predict(obs)
    assert (seen[-1][0] == first).all()
    second, *_ = env.step(np.array([1.0, 1.0], np.float32))
    agent.predict(second)
    assert (seen[-1][0, :2] == first).all() and (seen[-1][0, 2] == second).all()
    agent.predict(second, episode_start=np.array([True]))
    assert (seen[-1][0] == second).all()


class MomentumModel(CumsumModel):
    """A point with momentum: a rollout reads the velocity off the last two latents of its context (none
    without a history), then each action adds to the velocity. Every context it is handed is recorded."""

    def __init__(self) -> None:
        super().__init__()
        self.contexts: list[tuple[torch.Tensor, torch.Tensor | None]] = []

    def rollout_candidates(
        self, z_context: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None
    ) -> torch.Tensor:
        self.contexts.append((z_context.clone(), None if past_actions is None else past_actions.clone()))
        velocity = z_context[:, -1] - z_context[:, -2] if z_context.shape[1] > 1 else torch.zeros_like(z_context[:, -1])
        velocities = velocity[:, None, None] + actions.cumsum(dim=2)[:, :, :, None]  # (B, S, H, 1, 2)
        return z_context[:, -1, None, None] + velocities.cumsum(dim=2)


def test_context_steps_hand_the_planner_the_latent_history_and_the_actions_taken() -> None:
    model = MomentumModel()
    agent = _agent(model, context_steps=3)
    positions = [np.array([2.0, 2.0]), np.array([3.0, 2.0]), np.array([5.0, 3.0])]
    agent.set_goal(_frame(np.array([12.0, 12.0])))
    taken = []
    for position in positions:
        action, _ = agent.predict(_frame(position))
        taken.append(action)
    history, past = model.contexts[-1]
    assert history.shape == (1, 3, 1, 2) and past is not None and past.shape == (1, 2, 2)
    torch.testing.assert_close(history[0, :, 0], torch.tensor(np.stack(positions), dtype=torch.float32))
    torch.testing.assert_close(past[0], torch.tensor(np.stack(taken[:2])))
    # Actions the environment executed instead (exploration noise) replace the planned one in the history.
    agent.executed(np.array([[0.5, -0.5]], np.float32))
    agent.predict(_frame(np.array([6.0, 3.0])))
    _, past = model.contexts[-1]
    assert past is not None
    torch.testing.assert_close(past[0, -1], torch.tensor([0.5, -0.5]))
    # The first step of an episode: its own latent three times, zero actions before it.
    agent.predict(_frame(positions[0]), episode_start=np.array([True]))
    history, past = model.contexts[-1]
    assert (history[0, :, 0] == torch.tensor(positions[0], dtype=torch.float32)).all()
    assert past is not None and (past == 0).all()


def test_with_a_history_the_planner_brakes_for_the_velocity_it_sees() -> None:
    """Moving at +2 per step towards a goal 2 ahead, the right action is to brake; without the history the
    velocity is invisible and the plan pushes on."""
    firsts = {}
    for context in (1, 2):
        model = MomentumModel()
        agent = _agent(model, planner="mppi", context_steps=context, goal=_frame(np.array([8.0, 8.0])))
        agent.predict(_frame(np.array([4.0, 8.0])))
        action, _ = agent.predict(_frame(np.array([6.0, 8.0])))
        firsts[context] = float(action[0])
    assert firsts[2] < -0.5 < 0.0 < firsts[1]


def test_replan_every_executes_the_plan_before_replanning() -> None:
    model = CumsumModel()
    config = CEMConfig(num_samples=32, num_elites=4, iterations=1, replan_every=2)
    agent = MPCAgent(model, CEM(model, [-1, -1], [1, 1], config), goal=_frame(np.array([9, 9])))
    obs = _frame(np.array([2, 2]))
    plans = []
    for _ in range(4):
        action, _ = agent.predict(obs)
        plans.append(len(model.rollout_shapes))
    assert plans == [1, 1, 2, 2]


def test_prior_policy_becomes_a_candidate() -> None:
    model = CumsumModel()
    planner = CEM(model, [-1, -1], [1, 1], CEMConfig(num_samples=16, num_elites=2, policy_prior_samples=1))
    prior = RandomPolicy(ACTIONS, seed=0)
    agent = MPCAgent(model, planner, goal=_frame(np.array([9, 9])), prior_policy=prior)
    agent.predict(_frame(np.array([2, 2])))
    first = model.seen_actions[0][0]
    assert torch.equal(first, first[:1].expand(5, 2))  # one action, held over the horizon


def test_bad_observations_and_missing_goals_raise() -> None:
    agent = _agent()
    with pytest.raises(ValueError, match="needs a goal"):
        agent.predict(_frame(np.zeros(2)))
    with pytest.raises(ValueError, match="dtype float32"):
        agent.predict(np.zeros((SIZE, SIZE, 3), np.float32))
    with pytest.raises(ValueError, match="'pixels'"):
        agent.predict({"image": _frame(np.zeros(2))})
    with pytest.raises(ValueError, match="frame_history"):
        _agent(frame_history=0)


def test_evaluate_separates_the_planner_from_random() -> None:
    def run(policy: PredictPolicy) -> EvalResult:
        return evaluate(policy, PointEnv, episodes=8, seed=0, max_steps=30)

    mpc = run(_agent())
    greedy = run(greedy_one_step(CumsumModel(), ACTIONS, num_samples=64))
    random = run(RandomPolicy(ACTIONS, seed=0))
    assert mpc.success_rate >= 0.85 and greedy.success_rate >= 0.85
    assert random.success_rate <= 0.25
    assert mpc.final_distance is not None and random.final_distance is not None
    assert mpc.final_distance < 1.0 < random.final_distance
    assert mpc.episodes == 8 and len(mpc.records) == 8 and mpc.steps == sum(r.steps for r in mpc.records)
    assert mpc.success_ci95 == wilson_interval(round(mpc.success_rate * 8), 8)
    assert 0.0 < mpc.median_ms_per_step <= mpc.p95_ms_per_step


def test_evaluate_seeds_episodes_the_same_way_on_one_or_several_envs() -> None:
    single = evaluate(RandomPolicy(ACTIONS), PointEnv(), episodes=5, seed=7, max_steps=4)
    vector = evaluate(RandomPolicy(ACTIONS), SyncVectorEnv([PointEnv] * 2), episodes=5, seed=7, max_steps=4)
    factory = evaluate(RandomPolicy(ACTIONS), PointEnv, episodes=5, seed=7, max_steps=4, num_envs=3)
    for result in (single, vector, factory):
        assert [r.seed for r in result.records] == [7, 8, 9, 10, 11]
        assert [r.steps for r in result.records] == [4] * 5
    assert single.to_dict()["records"][0]["seed"] == 7


def test_evaluate_records_frames_and_serialises() -> None:
    result = evaluate(_agent(), PointEnv, episodes=3, seed=0, max_steps=30, record_frames=2, num_envs=2)
    frames = [r.frames for r in result.records]
    for record, clip in zip(result.records[:2], frames[:2]):
        assert clip is not None and clip.shape == (record.steps + 1, SIZE, SIZE, 3) and clip.dtype == np.uint8
    assert frames[2] is None
    summary = json.loads(json.dumps(result.to_dict()))
    assert set(summary) >= {"success_rate", "success_ci95", "final_distance", "median_ms_per_step", "records"}


def test_wilson_interval_known_values() -> None:
    assert wilson_interval(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson_interval(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson_interval(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    assert wilson_interval(81, 263) == pytest.approx((0.2553, 0.3662), abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)
    with pytest.raises(ValueError, match="successes=3, trials=2"):
        wilson_interval(3, 2)
