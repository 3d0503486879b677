"""stable-baselines3 on latents: the JEPA features extractors, PPO/SAC on wrapped and dream environments,
the SB3 vector-env adapter, ``torchwm train-policy`` and a trained policy as the MPC agent's prior."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from gymnasium.vector import AutoresetMode
from stable_baselines3 import PPO, SAC
from stable_baselines3.common.evaluation import evaluate_policy
from stable_baselines3.common.vec_env import VecMonitor
from torchwm.agents.evaluate import RandomPolicy
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.mpc import MPCAgent
from torchwm.agents.planners import CEM, CEMConfig
from torchwm.agents.sb3 import JEPACombinedExtractor, JEPAFeaturesExtractor, LatentPolicyPrior, load_sb3
from torchwm.agents.vec_env import SB3VecEnv, latent_vector_env
from torchwm.envs.dream import LatentDreamVectorEnv
from torchwm.envs.latent import LatentObservationWrapper
from torchwm.envs.registration import TWO_ROOMS_ID
from torchwm.wm.config import JEPAConfig
from torchwm.wm.jepa import JEPA
from torchwm.wm.world_model import WorldModel, WorldModelSpec

from torchwm.cli import main


def tiny_net() -> dict:
    """Policy kwargs of a one-layer MLP of 16 (a new dict each time: SAC writes into the one it is given)."""
    return {"net_arch": [16]}


def tiny_config() -> JEPAConfig:
    return JEPAConfig.preset(
        "tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=32, embed_dim=32, num_layers=1,
        num_heads=2, predictor_dim=32, predictor_depth=1, predictor_heads=2,
    )  # fmt: skip


@pytest.fixture(scope="module")
def world_model() -> WorldModel:
    """An untrained world model: latents of K = 1 token of D = 16."""
    torch.manual_seed(0)
    spec = WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=16, width=32, heads=2)
    return WorldModel(tiny_config(), spec, freeze_encoder=False).eval()


@pytest.fixture(scope="module")
def checkpoint(world_model: WorldModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return world_model.save_pretrained(tmp_path_factory.mktemp("ckpt") / "wm")


def two_rooms(steps: int = 16, **kwargs: object) -> gym.Env:
    return gym.make(TWO_ROOMS_ID, max_episode_steps=steps, **kwargs)


def extractor_kwargs(checkpoint: object, **options: object) -> dict:
    return {
        "features_extractor_class": JEPAFeaturesExtractor,
        "features_extractor_kwargs": {"checkpoint": checkpoint, **options},
        **tiny_net(),
    }


def encoder_state(extractor: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in extractor.encoder.state_dict().items()}


def same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


# --- the features extractors ---------------------------------------------------------------------------
def test_features_are_the_wrappers_latent_and_stay_frozen_through_ppo(checkpoint: Path) -> None:
    """CnnPolicy with the extractor: features [B, K*D] equal LatentObservationWrapper's latent (SB3's orthogonal
    init must not overwrite the pretrained encoder), and PPO.learn(64) leaves the encoder as it was."""
    model = PPO(
        "CnnPolicy",
        two_rooms(),
        n_steps=64,
        batch_size=32,
        n_epochs=1,
        policy_kwargs=extractor_kwargs(checkpoint),
    )
    extractor = model.policy.features_extractor
    assert extractor.features_dim == 16
    assert not any(p.requires_grad for p in extractor.encoder.parameters())
    wrapped = LatentObservationWrapper(two_rooms(), checkpoint, pixels=True, resize=False)
    obs, _ = wrapped.reset(seed=0)
    pixels = torch.as_tensor(obs["pixels"]).permute(2, 0, 1)[None].float() / 255.0  # as SB3 hands them over
    with torch.no_grad():
        features = extractor(pixels)
    assert features.shape == (1, 16)
    np.testing.assert_allclose(features[0].numpy(), obs["latent"], atol=1e-5)
    before, head = encoder_state(extractor), model.policy.action_net.weight.clone()
    model.learn(64)
    assert same(before, encoder_state(extractor))
    assert not torch.equal(head, model.policy.action_net.weight)  # the policy itself learned


def test_fine_tune_moves_the_encoder(checkpoint: Path) -> None:
    kwargs = extractor_kwargs(checkpoint, fine_tune=True, features_dim=8)
    model = PPO("CnnPolicy", two_rooms(), n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=kwargs)
    extractor = model.policy.features_extractor
    assert extractor.features_dim == 8 and all(p.requires_grad for p in extractor.encoder.parameters())
    before = encoder_state(extractor)
    model.learn(64)
    assert not same(before, encoder_state(extractor))


def test_byte_scale_matches_unit_scale_and_a_jepa_gives_its_tokens(world_model: WorldModel) -> None:
    space = gym.spaces.Box(0, 255, (3, 40, 40), np.uint8)
    frames = torch.randint(0, 256, (2, 3, 40, 40)).float()
    unit = JEPAFeaturesExtractor(space, world_model)
    byte = JEPAFeaturesExtractor(space, world_model, pixel_scale="byte")
    torch.testing.assert_close(unit(frames / 255.0), byte(frames))
    jepa = JEPAFeaturesExtractor(space, JEPA(tiny_config()))
    assert jepa(frames / 255.0).shape == (2, 16 * 32)  # K = (32 / 8)^2 patch tokens of D = 32
    with pytest.raises(ValueError, match="1 channels"):
        JEPAFeaturesExtractor(gym.spaces.Box(0, 255, (1, 40, 40), np.uint8), world_model)


def test_combined_extractor_encodes_images_and_flattens_the_rest(checkpoint: Path) -> None:
    """MultiInputPolicy on Dict(goal_latent, latent, pixels): pixels through the encoder, latents flattened."""
    env = LatentObservationWrapper(two_rooms(), checkpoint, pixels=True, goal=True, resize=False)
    kwargs = {
        "features_extractor_class": JEPACombinedExtractor,
        "features_extractor_kwargs": {"checkpoint": checkpoint},
        **tiny_net(),
    }
    model = PPO("MultiInputPolicy", env, n_steps=64, batch_size=32, n_epochs=1, policy_kwargs=kwargs)
    extractor = model.policy.features_extractor
    assert extractor.features_dim == 16 * 3 and extractor.images == {"pixels": True}
    before = encoder_state(extractor)
    model.learn(64)
    assert same(before, encoder_state(extractor))


# --- PPO and SAC on latents ----------------------------------------------------------------------------
@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_ppo_and_sac_train_on_the_wrapped_vector_env(checkpoint: Path, algo: str) -> None:
    """Goal-conditioned latents of two TwoRooms in one encoder call a step, episodes of 16 steps (autoresets)."""
    env = VecMonitor(
        latent_vector_env(TWO_ROOMS_ID, checkpoint, 2, goal=True, env_kwargs={"max_episode_steps": 16})
    )
    assert set(env.observation_space.spaces) == {"latent", "goal_latent"}
    if algo == "ppo":
        model = PPO(
            "MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=tiny_net(), seed=0
        )
    else:
        model = SAC("MultiInputPolicy", env, learning_starts=32, batch_size=32, buffer_size=500,
                    policy_kwargs=tiny_net(), seed=0)  # fmt: skip
    model.learn(256)
    assert model.num_timesteps == 256 and len(model.ep_info_buffer) >= 256 // 16  # all 16 steps or fewer


@pytest.mark.parametrize("algo", ["ppo", "sac"])
def test_ppo_and_sac_train_in_the_dream(world_model: WorldModel, algo: str) -> None:
    starts = np.random.default_rng(0).normal(size=(32, 1, 16)).astype(np.float32)
    dream = LatentDreamVectorEnv(
        4, world_model, starts, goal=True, horizon=20, autoreset_mode=AutoresetMode.SAME_STEP
    )
    env = VecMonitor(SB3VecEnv(dream))
    if algo == "ppo":
        model = PPO(
            "MultiInputPolicy", env, n_steps=64, batch_size=64, n_epochs=1, policy_kwargs=tiny_net(), seed=0
        )
    else:
        model = SAC("MultiInputPolicy", env, learning_starts=32, batch_size=32, buffer_size=500,
                    policy_kwargs=tiny_net(), seed=0)  # fmt: skip
    model.learn(320)
    assert len(model.ep_info_buffer) >= 12 and all(info["l"] == 20 for info in model.ep_info_buffer)


class PointModel:
    """A world model in closed form: the latent is a 2-D position and an action moves it by a tenth."""

    spec = WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=2)

    def step(self, z_history: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        return z_history[:, -1] + 0.1 * actions[:, -1, None, :]

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        raise AssertionError("goal mode never asks for the reward head")


def test_ppo_in_the_dream_beats_random_on_reaching_a_goal() -> None:
    """Reward = minus the latent distance to the goal: 8k imagined steps of PPO more than halve random's cost."""
    starts = np.random.default_rng(0).uniform(-1, 1, (256, 1, 2)).astype(np.float32)

    def dream() -> VecMonitor:
        vector = LatentDreamVectorEnv(
            8, PointModel(), starts, goal=True, horizon=20, autoreset_mode="SameStep"
        )
        return VecMonitor(SB3VecEnv(vector))

    model = PPO("MultiInputPolicy", dream(), n_steps=64, batch_size=128, n_epochs=5, learning_rate=1e-3,
                policy_kwargs={"net_arch": [32, 32]}, seed=0)  # fmt: skip
    model.learn(8192)
    returns = {}
    for name, policy in (("ppo", model), ("random", RandomPolicy(model.action_space, seed=0))):
        env = dream()
        env.seed(123)
        returns[name], _ = evaluate_policy(policy, env, n_eval_episodes=32)
    assert returns["ppo"] > returns["random"] / 2, returns


# --- the SB3 vector-env adapter ------------------------------------------------------------------------
@pytest.mark.parametrize("mode", [AutoresetMode.SAME_STEP, AutoresetMode.DISABLED])
def test_adapter_reports_terminal_observations_and_truncation(
    world_model: WorldModel, mode: AutoresetMode
) -> None:
    starts = np.random.default_rng(0).normal(size=(8, 1, 16)).astype(np.float32)
    env = SB3VecEnv(LatentDreamVectorEnv(2, world_model, starts, goal=True, horizon=2, autoreset_mode=mode))
    env.seed(0)
    first = env.reset()
    env.step(np.zeros((2, 2), np.float32))
    obs, _, dones, infos = env.step(np.zeros((2, 2), np.float32))
    assert dones.all() and all(info["TimeLimit.truncated"] for info in infos)
    final = infos[0]["terminal_observation"]
    assert set(final) == {"latent", "goal_latent"} and not np.array_equal(final["latent"], obs["latent"][0])
    assert not np.array_equal(first["goal_latent"], obs["goal_latent"])  # new episodes, new goals


def test_adapter_refuses_next_step_autoreset(world_model: WorldModel) -> None:
    starts = np.zeros((2, 1, 16), np.float32)
    with pytest.raises(ValueError, match="NEXT_STEP"):
        SB3VecEnv(LatentDreamVectorEnv(2, world_model, starts))


# --- train-policy and the policy prior ------------------------------------------------------------------
def test_train_policy_writes_a_policy_that_serves_as_the_mpc_prior(
    checkpoint: Path, world_model: WorldModel, tmp_path: Path
) -> None:
    out = tmp_path / "policy"
    argv = [
        "train-policy", "--algo", "ppo", "--env", TWO_ROOMS_ID, "--checkpoint", str(checkpoint), "--latent",
        "--steps", "64", "--out", str(out), "--num-envs", "2", "--n-steps", "32", "--batch-size", "32",
        "--n-epochs", "1", "--net-width", "16", "--max-episode-steps", "16", "--eval-freq", "32",
        "--eval-episodes", "1", "--no-progress-bar",
    ]  # fmt: skip
    assert main(argv) == 0
    assert (out / "policy.zip").is_file() and (out / "best" / "best_model.zip").is_file()
    assert any((out / "tb").rglob("events.out.tfevents.*"))
    prior = LatentPolicyPrior(out / "policy.zip", checkpoint)
    assert isinstance(prior.policy, PPO)

    env = LatentObservationWrapper(two_rooms(), checkpoint, goal=True, pixels=True, resize=False)
    obs, info = env.reset(seed=0)
    prior.set_goal(info["goal_frame"])
    expected, _ = prior.policy.predict({k: obs[k] for k in ("latent", "goal_latent")}, deterministic=True)
    action, _ = prior.predict(obs["pixels"])  # pixels in, the policy's action on the wrapper's latents out
    np.testing.assert_allclose(action, expected, atol=1e-5)

    planning = PlanningModel(world_model)
    config = CEMConfig(horizon=3, num_samples=8, num_elites=2, iterations=1, policy_prior_samples=1)
    planner = CEM(planning, np.full(2, -1.0), np.full(2, 1.0), config)
    seen = []
    plan = planner.plan
    planner.plan = lambda *args, **kwargs: seen.append(args[3]) or plan(*args, **kwargs)  # type: ignore[method-assign]
    agent = MPCAgent(planning, planner, goal=info["goal_frame"], prior_policy=prior)
    chosen, _ = agent.predict(obs["pixels"])
    assert chosen.shape == (2,) and np.all(np.abs(chosen) <= 1.0)
    held = seen[0][0, 0].numpy()  # the prior's sequence [H, A]: its action, held for the horizon
    np.testing.assert_allclose(held, np.repeat(np.clip(expected, -1, 1)[None], 3, axis=0), atol=1e-5)


def test_train_policy_in_the_dream_with_sac(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "sac"
    argv = [
        "train-policy", "--algo", "sac", "--checkpoint", str(checkpoint), "--dream", "--steps", "64",
        "--out", str(out), "--num-envs", "2", "--batch-size", "16", "--learning-starts", "32",
        "--buffer-size", "200", "--net-width", "16", "--max-episode-steps", "16", "--dream-start-steps", "16",
        "--eval-freq", "0", "--no-progress-bar", "--no-tensorboard",
    ]  # fmt: skip
    assert main(argv) == 0
    assert isinstance(load_sb3(out / "policy.zip"), SAC)
    assert '"real_env_steps": 16' in (out / "summary.json").read_text()


def test_train_policy_names_a_bad_value(
    checkpoint: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train-policy", "--checkpoint", str(checkpoint), "--steps", "0", "--out", str(tmp_path / "x")]
    assert main(argv) == 2
    assert "steps=0" in capsys.readouterr().err


def test_action_repeat_makes_one_training_step_k_env_steps(world_model: WorldModel) -> None:
    """With action_repeat k the real environment moves k steps an agent step, its time limit counts agent
    steps, and the dream's episode length is the registered limit in agent steps."""
    from torchwm.agents.policy_config import PolicyTrainingConfig
    from torchwm.agents.train_policy import dream_horizon, real_env

    cfg = PolicyTrainingConfig(checkpoint="unused", max_episode_steps=5, action_repeat=4, num_envs=2)
    env = real_env(cfg, world_model, 2)
    env.seed(0)
    env.reset()
    steps, done, repeats = 0, np.zeros(2, dtype=bool), []
    while not done.any():
        _, _, done, infos = env.step(np.zeros((2, 2), dtype=np.float32))
        repeats += [info["repeats"] for info in infos]
        steps += 1
    assert steps == 5 and done.all() and repeats == [4] * 10
    assert [info["episode"]["l"] for info in infos] == [5, 5]
    env.close()
    assert dream_horizon(PolicyTrainingConfig(checkpoint="unused", action_repeat=4)) == 25
    assert dream_horizon(cfg) == 5
    with pytest.raises(ValueError, match="action_repeat=0"):
        PolicyTrainingConfig(checkpoint="unused", action_repeat=0).validate()


def proprio_world_model() -> WorldModel:
    """An untrained world model that takes TwoRooms' position (state entries 0 and 1) as proprioception."""
    from torchwm.wm.world_model import DataFacts

    torch.manual_seed(0)
    spec = WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=16, width=32, heads=2, proprio_dim=2)
    model = WorldModel(tiny_config(), spec, freeze_encoder=False).eval()
    model.data = DataFacts(proprio=(0, 1))
    return model


def test_random_dream_starts_carry_the_proprioception_of_their_steps(world_model: WorldModel) -> None:
    from torchwm.agents.train_policy import collect_start_latents

    env = latent_vector_env(TWO_ROOMS_ID, world_model, 2, env_kwargs={"max_episode_steps": 3})
    starts, proprio = collect_start_latents(env, 8, seed=7, k=1, d=16, proprio=(0, 1))
    assert starts.shape == (8, 1, 16) and proprio is not None and proprio.shape == (8, 2)
    for i in range(2):  # the first row of each sub-env is its reset, seeded seed + i
        np.testing.assert_allclose(proprio[i], gym.make(TWO_ROOMS_ID).reset(seed=7 + i)[1]["state"][:2], atol=1e-6)
    assert collect_start_latents(env, 4, seed=7, k=1, d=16)[1] is None  # a model without proprioception


def test_train_policy_in_the_dream_of_a_model_with_proprioception(tmp_path: Path) -> None:
    ckpt = proprio_world_model().save_pretrained(tmp_path / "wm")
    argv = [
        "train-policy", "--algo", "ppo", "--checkpoint", str(ckpt), "--dream", "--steps", "32",
        "--out", str(tmp_path / "ppo"), "--num-envs", "2", "--n-steps", "16", "--batch-size", "16",
        "--net-width", "16", "--max-episode-steps", "8", "--dream-start-steps", "8",
        "--eval-freq", "0", "--no-progress-bar", "--no-tensorboard",
    ]  # fmt: skip
    assert main(argv) == 0  # the random starts carry their proprioception into the dream
    assert isinstance(load_sb3(tmp_path / "ppo" / "policy.zip"), PPO)
