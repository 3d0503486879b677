"""The planner-ceiling benchmark's true-dynamics model: it must move as the environment moves, and its
learned-cost table must hold exactly the latents of the frames the environment draws."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "oracle_planning.py"


@pytest.fixture(scope="module")
def oracle():  # noqa: ANN201
    spec = importlib.util.spec_from_file_location("oracle_planning", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["oracle_planning"] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("env_id", ["torchwm/PointMass-v0", "torchwm/TwoRooms-v0"])
def test_true_dynamics_follow_the_environment(oracle, env_id: str) -> None:  # noqa: ANN001
    env = gym.make(env_id).unwrapped
    env.reset(seed=3)
    model = oracle.TrueDynamics(env, action_repeat=2)
    actions = torch.from_numpy(np.random.default_rng(0).uniform(-1, 1, (2, 5, 2)).astype(np.float32))
    predicted = model.rollout(oracle.state_latent(env).expand(2, 1, 4), actions)
    for n in range(2):
        sim = gym.make(env_id).unwrapped
        sim.reset(seed=3)
        for h in range(5):
            for _ in range(2):
                sim.step(actions[n, h].numpy())
            torch.testing.assert_close(predicted[n, h], oracle.state_latent(sim)[0], rtol=0, atol=1e-6)


def test_the_planner_with_true_dynamics_reaches_point_mass_goals(oracle) -> None:  # noqa: ANN001
    row = oracle.run("torchwm/PointMass-v0", episodes=3, seed=1000, planner="mppi", samples=50, iterations=2,
                     horizon=8, max_steps=25, action_repeat=4)  # fmt: skip
    assert row["oracle_success_rate"] == 1.0  # the arena is open and the budget ample: every goal is reached
    assert 0.0 <= row["random_success_rate"] <= 1.0 and row["median_ms_per_call"] > 0


def test_learned_cost_table_holds_the_latents_of_the_drawn_frames(oracle) -> None:  # noqa: ANN001
    from torchwm.wm.config import JEPAConfig
    from torchwm.wm.world_model import WorldModel, WorldModelSpec

    torch.manual_seed(0)
    jepa = JEPAConfig.preset("tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=64, embed_dim=32,
                             num_layers=1, num_heads=2, progress=False)  # fmt: skip
    world_model = WorldModel(jepa, WorldModelSpec(action_dim=2, latent_dim=8, width=32, heads=2)).eval()
    env = gym.make("torchwm/PointMass-v0").unwrapped
    env.reset(seed=5)
    model = oracle.TrueDynamicsLearnedCost(env, 4, world_model)
    for x, y in ((0.1, 0.1), (0.83, 0.27), (0.5, 0.95)):
        frame = torch.from_numpy(env._draw(x, y))[None, None]
        expected = world_model.encode(frame)[0, 0]
        torch.testing.assert_close(model.cell_latent(torch.tensor([x, y])), expected, rtol=1e-5, atol=1e-5)


def test_true_dynamics_refuse_an_env_that_is_not_a_built_in_arena(oracle) -> None:  # noqa: ANN001
    with pytest.raises(ValueError, match=r"needs a built-in arena.*got PendulumEnv.*torchwm/TwoRooms-v0"):
        oracle.TrueDynamics(gym.make("Pendulum-v1").unwrapped, action_repeat=1)
