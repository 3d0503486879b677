"""LatentDreamEnv and LatentDreamVectorEnv: spaces, checkers, seeds, rewards, horizon, batched = one by one."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torchwm.envs.dream import LatentDreamEnv, LatentDreamVectorEnv, start_latents
from torchwm.wm.config import JEPAConfig
from torchwm.wm.latent_encoder import latent_encoder
from torchwm.wm.world_model import WorldModel, WorldModelSpec

CHECKER_NOISE = [
    "ignore:.*Box observation space (minimum|maximum) value",
    "ignore:.*symmetric and normalized",
    "ignore:.*render_mode",
    "ignore:.*render method",
]
"""Warnings the checkers give for unbounded latents and an environment that does not render."""


def tiny_world_model(discrete: bool = False) -> WorldModel:
    """An untrained world model with K = 1 token of D = 16 a step and a reward head, seeded."""
    torch.manual_seed(0)
    cfg = JEPAConfig.preset(
        "tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=32, embed_dim=32, num_layers=1,
        num_heads=2, predictor_dim=32, predictor_depth=1, predictor_heads=2,
    )  # fmt: skip
    spec = WorldModelSpec(
        action_dim=3 if discrete else 2,
        discrete_actions=discrete,
        latent_grid=1,
        latent_dim=16,
        width=32,
        heads=2,
    )
    return WorldModel(cfg, spec, freeze_encoder=False).eval()


@pytest.fixture(scope="module")
def model() -> WorldModel:
    return tiny_world_model()


@pytest.fixture(scope="module")
def starts() -> np.ndarray:
    """Start latents [N=12, K=1, D=16], layer-normed as the model's are."""
    z = torch.randn(12, 1, 16, generator=torch.Generator().manual_seed(1))
    return torch.nn.functional.layer_norm(z, (16,)).numpy()


def rollout(env: LatentDreamEnv, seed: int, actions: np.ndarray) -> list[np.ndarray]:
    obs, _ = env.reset(seed=seed)
    out = [obs]
    for action in actions:
        out.append(env.step(action)[0])
    return out


@pytest.mark.filterwarnings(*CHECKER_NOISE)
@pytest.mark.parametrize("goal", [False, True])
def test_spaces_and_both_checkers(model: WorldModel, starts: np.ndarray, goal: bool) -> None:
    env = LatentDreamEnv(model, starts, goal=goal, horizon=5, context=2)
    latent = spaces.Box(-np.inf, np.inf, (16,), np.float32)
    expected = spaces.Dict({"latent": latent, "goal_latent": latent}) if goal else latent
    assert env.observation_space == expected
    assert env.action_space == spaces.Box(-1.0, 1.0, (2,), np.float32)
    check_env(env, skip_render_check=True)
    sb3_check_env(env)


def test_discrete_model_gives_a_discrete_action_space(starts: np.ndarray) -> None:
    env = LatentDreamEnv(tiny_world_model(discrete=True), starts, horizon=3)
    assert env.action_space == spaces.Discrete(3)
    env.reset(seed=0)
    obs, reward, *_ = env.step(2)
    assert obs.shape == (16,) and np.isfinite(reward)


def test_same_seed_same_episode_other_seed_another(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts, goal=True, horizon=10)
    actions = np.random.default_rng(0).uniform(-1, 1, (4, 2)).astype(np.float32)
    first, again, other = rollout(env, 3, actions), rollout(env, 3, actions), rollout(env, 4, actions)
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a["latent"], b["latent"])
        np.testing.assert_array_equal(a["goal_latent"], b["goal_latent"])
    assert not np.array_equal(first[0]["latent"], other[0]["latent"])
    assert not np.array_equal(first[1]["latent"], first[2]["latent"])  # the model moves the latent


def test_starts_and_goals_are_drawn_from_the_given_latents(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts, goal=True)
    flat = starts.reshape(len(starts), -1)
    for seed in range(5):
        obs, _ = env.reset(seed=seed)
        start = np.flatnonzero((flat == obs["latent"]).all(axis=1))
        goal = np.flatnonzero((flat == obs["goal_latent"]).all(axis=1))
        assert len(start) == 1 and len(goal) == 1 and start[0] != goal[0]


def test_goal_reward_is_minus_the_latent_distance(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts, goal=True)
    env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(np.array([0.5, -0.5], np.float32))
    distance = np.mean((obs["latent"] - obs["goal_latent"]) ** 2)
    assert reward == pytest.approx(-distance, rel=1e-5) and info["distance"] == pytest.approx(
        distance, rel=1e-5
    )
    assert not terminated and not truncated


def test_model_reward_is_the_reward_head_of_the_current_latent(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts)  # reward="auto" without a goal: the reward head
    obs, _ = env.reset(seed=0)
    action = np.array([0.3, 0.7], np.float32)
    _, reward, *_ = env.step(action)
    expected = model.reward(torch.from_numpy(obs).reshape(1, 1, 16), torch.from_numpy(action)[None])
    assert reward == pytest.approx(float(expected[0]), rel=1e-5)


def test_actions_are_clipped_to_the_box(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts, horizon=10)
    big = rollout(env, 0, np.full((2, 2), 5.0, np.float32))
    one = rollout(env, 0, np.ones((2, 2), np.float32))
    np.testing.assert_array_equal(big[-1], one[-1])


def test_horizon_truncates_and_success_distance_terminates(model: WorldModel, starts: np.ndarray) -> None:
    env = LatentDreamEnv(model, starts, horizon=3)
    env.reset(seed=0)
    flags = [env.step(np.zeros(2, np.float32))[3] for _ in range(3)]
    assert flags == [False, False, True]
    env = LatentDreamEnv(model, starts, goal=True, success_distance=1e6)
    env.reset(seed=0)
    _, _, terminated, truncated, info = env.step(np.zeros(2, np.float32))
    assert terminated and not truncated and info["is_success"]


@pytest.mark.parametrize("context", [1, 3])
def test_batched_stepping_equals_one_by_one(model: WorldModel, starts: np.ndarray, context: int) -> None:
    """Three sub-environments in one model call step as three single environments with the same seeds,
    across autoresets (horizon 3, NEXT_STEP: the step after the last one restarts the episode)."""
    seeds, steps = [5, 6, 7], 8
    actions = np.random.default_rng(0).uniform(-1, 1, (steps, 3, 2)).astype(np.float32)
    vector = LatentDreamVectorEnv(3, model, starts, goal=True, horizon=3, context=context)
    singles = [LatentDreamEnv(model, starts, goal=True, horizon=3, context=context) for _ in seeds]
    obs, _ = vector.reset(seed=seeds)
    single_obs = [env.reset(seed=s)[0] for env, s in zip(singles, seeds)]
    done = [False] * 3
    for t in range(steps):
        for i in range(len(singles)):
            for key in ("latent", "goal_latent"):
                np.testing.assert_allclose(obs[key][i], single_obs[i][key], atol=1e-5)
        obs, rewards, terminated, truncated, _ = vector.step(actions[t])
        for i, env in enumerate(singles):
            if done[i]:
                single_obs[i], _ = env.reset()
                done[i] = False
                assert rewards[i] == 0.0 and not truncated[i]
                continue
            single_obs[i], reward, term, trunc, _ = env.step(actions[t, i])
            assert rewards[i] == pytest.approx(reward, abs=1e-5) and (term, trunc) == (
                terminated[i],
                truncated[i],
            )
            done[i] = term or trunc
    assert vector.observation_space.shape is None and vector.action_space.shape == (3, 2)


def test_same_step_autoreset_gives_the_final_observation(model: WorldModel, starts: np.ndarray) -> None:
    vector = LatentDreamVectorEnv(2, model, starts, horizon=2, autoreset_mode=AutoresetMode.SAME_STEP)
    vector.reset(seed=0)
    vector.step(np.zeros((2, 2), np.float32))
    obs, _, _, truncated, infos = vector.step(np.zeros((2, 2), np.float32))
    assert truncated.all() and infos["_final_obs"].all()
    assert infos["final_obs"][0].shape == (16,) and not np.array_equal(infos["final_obs"][0], obs[0])


def test_disabled_autoreset_restarts_the_masked_environments(model: WorldModel, starts: np.ndarray) -> None:
    vector = LatentDreamVectorEnv(2, model, starts, horizon=5, autoreset_mode=AutoresetMode.DISABLED)
    obs, _ = vector.reset(seed=[1, 2])
    vector.step(np.ones((2, 2), np.float32))
    after, _ = vector.reset(seed=[1, None], options={"reset_mask": np.array([True, False])})
    np.testing.assert_array_equal(after[0], obs[0])
    assert not np.array_equal(after[1], obs[1])


def test_start_latents_from_an_episode_directory(model: WorldModel, tmp_path: Path) -> None:
    from torchwm.envs.record import record
    from torchwm.wm.episodes import episode_frames, read_manifest

    root = record("torchwm/TwoRooms-v0", "random", 2, tmp_path / "episodes", num_envs=2, max_steps=6,
                  progress=False, lossless=True)  # fmt: skip
    z = start_latents(model, root, num_frames=5, seed=0)
    assert z.shape == (5, 1, 16) and z.dtype == np.float32
    np.testing.assert_array_equal(z, start_latents(model, root, num_frames=5, seed=0))
    every = start_latents(model, root, num_frames=100)  # more than there are: every frame that starts a clip
    assert every.shape == (12, 1, 16)  # 2 episodes x frames 0..5 (frame 6 ends the episode)
    name = read_manifest(root)["episodes"][0]["name"]
    frames = episode_frames(root, name, range(6), size=32)
    np.testing.assert_allclose(every[:6], latent_encoder(model).encode_numpy(frames[:, None]), atol=1e-5)
    env = LatentDreamEnv(model, root, num_start_frames=5)
    assert env.batch.starts.shape == (5, 1, 16)


def test_a_checkpoint_path_loads_the_model(model: WorldModel, starts: np.ndarray, tmp_path: Path) -> None:
    path = model.save_pretrained(tmp_path / "wm")
    actions = np.full((2, 2), 0.5, np.float32)
    from_path = rollout(LatentDreamEnv(path, starts), 0, actions)
    from_object = rollout(LatentDreamEnv(model, starts), 0, actions)
    np.testing.assert_allclose(from_path[-1], from_object[-1], atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"reward": "goal"}, "needs goal=True"),
        ({"reward": "best"}, "reward must be"),
        ({"horizon": 0}, "horizon must be"),
        ({"context": 0}, "context must be"),
        ({"action_space": spaces.Box(-1, 1, (3,))}, "action_space must be"),
    ],
)
def test_bad_arguments_name_the_value(
    model: WorldModel, starts: np.ndarray, kwargs: dict, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        LatentDreamEnv(model, starts, **kwargs)


def test_start_latents_of_the_wrong_shape_are_refused(model: WorldModel) -> None:
    with pytest.raises(ValueError, match=r"\[N, K=1, D=16\]"):
        LatentDreamEnv(model, np.zeros((4, 2, 16), np.float32))


def test_returned_observations_are_not_overwritten_by_later_resets(
    model: WorldModel, starts: np.ndarray
) -> None:
    env = LatentDreamEnv(model, starts, goal=True)
    obs, _ = env.reset(seed=0)
    kept = {key: value.copy() for key, value in obs.items()}
    env.reset(seed=1)
    for key in obs:
        np.testing.assert_array_equal(obs[key], kept[key])


def tiny_proprio_model(p: int = 2) -> WorldModel:
    """`tiny_world_model` trained (as if) with proprioception: state entries 0..p-1, one token a step more."""
    torch.manual_seed(0)
    base = tiny_world_model()
    spec = WorldModelSpec(**{**base.spec.to_dict(), "proprio_dim": p})
    model = WorldModel(base.jepa_cfg, spec, freeze_encoder=False).eval()
    from torchwm.wm.world_model import DataFacts

    model.data = DataFacts(proprio=tuple(range(p)))
    return model


@pytest.mark.parametrize("context", [1, 3])
def test_a_model_with_proprioception_steps_with_it_and_feeds_its_prediction_back(
    starts: np.ndarray, context: int
) -> None:
    model = tiny_proprio_model()
    start_p = np.random.default_rng(0).normal(size=(len(starts), 2)).astype(np.float32)
    env = LatentDreamEnv(model, starts, start_proprio=start_p, context=context, horizon=5)
    obs, _ = env.reset(seed=3)
    assert obs.shape == (16,)  # the proprioception is the model's state, not the observation
    row = int(np.flatnonzero((starts.reshape(len(starts), -1) == obs).all(1))[0])
    z = torch.as_tensor(starts[row])[None, None].repeat(1, context, 1, 1)
    p = torch.as_tensor(start_p[row])[None, None].repeat(1, context, 1)
    taken = torch.zeros(1, context, 2)
    actions = np.random.default_rng(1).uniform(-1, 1, size=(4, 2)).astype(np.float32)
    for action in actions:
        obs = env.step(action)[0]
        taken = torch.cat([taken[:, 1:], torch.as_tensor(action)[None, None]], dim=1)
        z_next, p_next = model.step(z, taken, proprio=p, return_proprio=True)
        np.testing.assert_allclose(obs, z_next.flatten().numpy(), atol=1e-5)
        z = torch.cat([z[:, 1:], z_next[:, None]], dim=1)
        p = torch.cat([p[:, 1:], p_next[:, None]], dim=1)
    # the proprioception reaches the predictions: other start proprioception, other next latent
    other = LatentDreamEnv(model, starts, start_proprio=start_p + 1.0, context=context, horizon=5)
    other.reset(seed=3)
    env.reset(seed=3)
    assert np.abs(other.step(actions[0])[0] - env.step(actions[0])[0]).max() > 1e-5


def test_proprioception_is_asked_for_where_the_model_needs_it_and_refused_where_not(
    model: WorldModel, starts: np.ndarray
) -> None:
    with pytest.raises(ValueError, match=r"takes proprioception: pass start_proprio \[N=12, P=2\]"):
        LatentDreamEnv(tiny_proprio_model(), starts)
    with pytest.raises(ValueError, match=r"start_proprio must be finite float \[N=12, P=2\]"):
        LatentDreamEnv(tiny_proprio_model(), starts, start_proprio=np.zeros((12, 3), np.float32))
    with pytest.raises(ValueError, match="takes no proprioception"):
        LatentDreamEnv(model, starts, start_proprio=np.zeros((12, 2), np.float32))


def test_an_episode_directory_gives_the_recorded_proprioception_of_its_starts(tmp_path: Path) -> None:
    from torchwm.envs.dream import encoded_starts
    from torchwm.envs.record import record
    from torchwm.wm.rollouts import RolloutClips

    root = record("torchwm/TwoRooms-v0", "random", 2, tmp_path / "episodes", num_envs=2, max_steps=6,
                  progress=False, lossless=True)  # fmt: skip
    model = tiny_proprio_model()
    z, p = encoded_starts(model, root, num_frames=100)
    assert p is not None and z.shape == (12, 1, 16) and p.shape == (12, 2)
    clips = RolloutClips(root, num_frames=1)
    expected = np.stack([clips[i]["states"][-1, :2].numpy() for i in range(len(clips))])
    np.testing.assert_array_equal(p, expected)
    env = LatentDreamEnv(model, root, num_start_frames=100)
    assert env.batch.start_p is not None and env.batch.start_p.shape == (12, 2)
    env.reset(seed=0)
    env.step(np.zeros(2, np.float32))
    assert start_latents(model, root, num_frames=100).shape == (12, 1, 16)
