"""Proprioception through the world model: an extra token per step, predicted and fed back in rollouts,
trained from the recorded states, recorded in the checkpoint and handed over by the planning path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.mpc import MPCAgent
from torchwm.agents.planners import MPPI, MPPIConfig
from torchwm.envs.pixels import PixelObservations
from torchwm.wm.wm_trainer import WorldModelTrainer, world_model_loss
from torchwm.wm.world_model import WorldModel

from tests.wm.test_world_model import A, D, K, pretrained, tiny_model, wm_cfg

__all__ = ["pretrained"]  # the fixture, shared with test_world_model

P = 3


@pytest.fixture(scope="module")
def model():
    return tiny_model(proprio_dim=P)


def test_a_model_with_proprioception_needs_it_and_refuses_it_otherwise(model) -> None:
    z, a = torch.randn(2, 3, K, D), torch.randn(2, 3, A)
    with pytest.raises(ValueError, match=r"takes proprioception: pass proprio \[B, T, P\] = \[2, 3, 3\]"):
        model.step(z, a)
    with pytest.raises(ValueError, match="takes no proprioception"):
        tiny_model().step(z, a, proprio=torch.randn(2, 3, P))
    with pytest.raises(ValueError, match=r"expected proprio \[B, T, P\] = \[2, 3, 3\], got shape \(2, 3, 2\)"):
        model.step(z, a, proprio=torch.randn(2, 3, 2))


@pytest.mark.parametrize("spec", [{}, {"action_token": False}])
def test_rollouts_feed_the_predicted_proprioception_back(spec: dict) -> None:
    model = tiny_model(proprio_dim=P, **spec)
    z, past, p = torch.randn(2, 2, K, D), torch.randn(2, 1, A), torch.randn(2, 2, P)
    actions = torch.randn(2, 4, A)
    z_out, p_out = model.rollout(z, actions, past, proprio=p, return_proprio=True)
    assert z_out.shape == (2, 4, K, D) and p_out.shape == (2, 4, P)
    history, taken, prop = z, torch.cat([past, actions[:, :1]], 1), p
    for h in range(4):
        z_next, p_next = model.step(history, taken, proprio=prop, return_proprio=True)
        torch.testing.assert_close(z_out[:, h], z_next, rtol=0, atol=1e-5)
        torch.testing.assert_close(p_out[:, h], p_next, rtol=0, atol=1e-5)
        history, prop = torch.cat([history, z_next[:, None]], 1), torch.cat([prop, p_next[:, None]], 1)
        taken = torch.cat([taken, actions[:, h + 1 : h + 2]], 1)
    # The proprioception reaches the latent predictions: another p changes z.
    other = model.rollout(z, actions, past, proprio=p + 1.0)
    assert (other - z_out).abs().max() > 1e-4
    shared = model.rollout_candidates(z, actions[:, None].expand(-1, 3, -1, -1), past, proprio=p)
    torch.testing.assert_close(shared[:, 1], z_out, rtol=0, atol=1e-5)


def test_training_with_proprio_learns_from_the_recorded_states_and_saves_them(pretrained, tmp_path: Path) -> None:
    trainer = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm", proprio=(1, 0)))
    batch = next(trainer.batches(0))
    assert batch["proprio"].shape == (4, 4, 2)
    states = trainer.dataset.episodes[0].states
    assert states is not None
    torch.testing.assert_close(trainer.model.dynamics.proprio_mean,
                               torch.from_numpy(np.concatenate([e.states[:, [1, 0]] for e in trainer.dataset.episodes]).mean(0)))  # fmt: skip
    terms = world_model_loss(trainer.model, trainer.cfg, batch)
    assert terms["proprio"] > 0 and torch.isfinite(terms["total"])
    trainer.run()
    loaded = WorldModel.from_pretrained(tmp_path / "wm")
    assert loaded.spec.proprio_dim == 2 and loaded.data.proprio == (1, 0)
    torch.testing.assert_close(loaded.dynamics.proprio_scale, trainer.model.dynamics.proprio_scale)


def test_proprio_indices_past_the_recorded_state_are_refused(pretrained, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"proprio.*indices of the recorded state vector \(size 2\)"):
        WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm", proprio=(5,)))


def test_the_planning_path_hands_the_state_entries_to_the_model(pretrained, tmp_path: Path) -> None:
    trainer = WorldModelTrainer(wm_cfg(pretrained, tmp_path / "wm", proprio=(0, 1), steps=1))
    trainer.run()
    model = PlanningModel(WorldModel.from_pretrained(tmp_path / "wm"))
    import gymnasium as gym

    env = PixelObservations(gym.make("torchwm/TwoRooms-v0", render_mode="rgb_array"), 64, proprio=(0, 1))
    obs, info = env.reset(seed=3)
    assert set(obs) == {"pixels", "proprio"} and obs["pixels"].shape == (64, 64, 3)
    np.testing.assert_allclose(obs["proprio"], info["state"][:2])
    seen: list[torch.Tensor | None] = []
    real = model.rollout_candidates

    def spy(z, actions, past=None, proprio=None):
        seen.append(proprio)
        return real(z, actions, past, proprio)

    model.rollout_candidates = spy  # type: ignore[method-assign]
    planner = MPPI(model, env.action_space.low, env.action_space.high, MPPIConfig(horizon=3, num_samples=8, num_elites=2, iterations=1))
    agent = MPCAgent(model, planner, goal=info["goal_frame"], context_steps=2)
    agent.predict(obs)
    obs2, *_ = env.step(env.action_space.sample())
    agent.predict(obs2)
    assert seen[-1] is not None and seen[-1].shape == (1, 2, 2)
    torch.testing.assert_close(seen[-1][0], torch.tensor(np.stack([obs["proprio"], obs2["proprio"]])))
    from torchwm.agents.benchmark import render_episode

    done = render_episode(agent, env, seed=4, max_steps=2, stem=tmp_path / "episode")  # dict observations
    assert done["steps"] >= 1 and (tmp_path / "episode.gif").is_file()
