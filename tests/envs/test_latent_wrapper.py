"""LatentObservationWrapper and its vector version: spaces, checkers, frame history, goals, wrong inputs."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torchwm.envs.latent import (
    LatentObservationWrapper,
    VectorLatentObservationWrapper,
    pixel_env,
)
from torchwm.envs.registration import TWO_ROOMS_ID
from torchwm.wm.config import JEPAConfig
from torchwm.wm.jepa import JEPA
from torchwm.wm.latent_encoder import latent_encoder
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.world_model import WorldModel, WorldModelSpec

CHECKER_NOISE = [
    "ignore:.*different from the unwrapped version",
    "ignore:.*Box observation space (minimum|maximum) value",
    "ignore:.*minimal resolution for an image",
    "ignore:.*symmetric and normalized",
]
"""Warnings the checkers give for any wrapped env with unbounded latents; none of them is a failure."""


def tiny_config(encoder: str = "spatial", in_channels: int = 3) -> JEPAConfig:
    """A one-layer ViT on 32x32 frames: spatial (window 1) or temporal (window 4, two tubelets)."""
    frames = (
        {"num_frames": 2, "tubelet_size": 1} if encoder == "spatial" else {"num_frames": 4, "tubelet_size": 2}
    )
    return JEPAConfig.preset(
        "tiny",
        encoder=encoder,
        image_size=32,
        in_channels=in_channels,
        embed_dim=32,
        num_layers=1,
        num_heads=2,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
        **frames,
    )


def tiny_world_model(encoder: str = "spatial", in_channels: int = 3) -> WorldModel:
    """An untrained world model (K = 4 tokens of D = 64) on `tiny_config`, seeded."""
    torch.manual_seed(0)
    return WorldModel(
        tiny_config(encoder, in_channels), WorldModelSpec(action_dim=2), freeze_encoder=False
    ).eval()


def save_world_model(model: WorldModel, path: Path) -> Path:
    return model.save_pretrained(path)


@pytest.fixture(scope="module")
def spatial_model() -> WorldModel:
    return tiny_world_model("spatial")


@pytest.fixture(scope="module")
def temporal_model() -> WorldModel:
    return tiny_world_model("temporal")


@pytest.fixture(scope="module")
def temporal_checkpoint(temporal_model: WorldModel, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_world_model(temporal_model, tmp_path_factory.mktemp("wm") / "ckpt")


@pytest.fixture
def pygame_png(monkeypatch: pytest.MonkeyPatch) -> None:
    """Render classic-control envs: skip without pygame; load PNGs through Pillow where pygame cannot.

    decord (imported by `wm.episodes`) loads its own zlib 1.2.3 globally; once it is loaded before pygame,
    pygame's PNG decoder fails ("libpng error: bad parameters to zlib"), and Pendulum-v1 draws a PNG.
    """
    pygame = pytest.importorskip(
        "pygame", reason="rendering classic control needs pip install gymnasium[classic-control]"
    )
    from PIL import Image

    asset = Path(gym.__file__).parent / "envs" / "classic_control" / "assets" / "clockwise.png"
    try:
        pygame.image.load(str(asset))
    except pygame.error:

        def load(path: str) -> object:
            image = Image.open(path).convert("RGBA")
            return pygame.image.frombytes(image.tobytes(), image.size, "RGBA")

        monkeypatch.setattr(pygame.image, "load", load)


def still_clip(frame: np.ndarray, window: int) -> np.ndarray:
    """One frame [H, W, C] as a batch of one still clip [1, window, H, W, C] (a fresh history)."""
    return np.repeat(frame[None, None], window, axis=1)


def random_actions(space: gym.Space, steps: int, seed: int = 0) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(steps)]


# ---- the encoder view ------------------------------------------------------------------------------


@pytest.mark.parametrize("encoder", ["spatial", "temporal"])
def test_world_model_view_is_the_last_step_of_encode(encoder: str) -> None:
    model = tiny_world_model(encoder)
    view = latent_encoder(model)
    frames = np.random.default_rng(0).integers(0, 256, (3, view.window, 40, 48, 3), dtype=np.uint8)
    latent = view.encode_numpy(frames)
    assert latent.dtype == np.float32 and latent.shape == (3, model.k, model.spec.latent_dim)
    np.testing.assert_allclose(latent, model.encode(frames)[:, -1].numpy(), atol=1e-6)
    assert view.window == model.window


def test_jepa_checkpoint_view_is_the_last_time_steps_tokens(tmp_path: Path) -> None:
    cfg = tiny_config("temporal")
    ckpt = JEPA(cfg).save_pretrained(tmp_path / "jepa")
    view = latent_encoder(ckpt)
    frames = np.random.default_rng(1).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8)
    expected = JEPAAgent.from_pretrained(ckpt).encode(frames)[:, -1].numpy()
    assert (view.window, view.k, view.d) == (4, cfg.grid_size**2, cfg.embed_dim)
    np.testing.assert_allclose(view.encode_numpy(frames), expected, atol=1e-6)


# ---- spaces, checkers, SB3 -------------------------------------------------------------------------


@pytest.mark.parametrize("flatten", [True, False])
@pytest.mark.parametrize("extras", [False, True])
def test_observations_fit_their_space(temporal_model: WorldModel, flatten: bool, extras: bool) -> None:
    env = LatentObservationWrapper(
        gym.make(TWO_ROOMS_ID), temporal_model, flatten=flatten, pixels=extras, goal=extras
    )
    k, d = temporal_model.k, temporal_model.spec.latent_dim
    expected_keys = {"latent", "pixels", "goal_latent"} if extras else {"latent"}
    assert set(env.observation_space.spaces) == expected_keys
    assert env.observation_space["latent"].shape == ((k * d,) if flatten else (k, d))
    obs, _ = env.reset(seed=0)
    for action in random_actions(env.action_space, 3):
        assert env.observation_space.contains(obs)
        assert obs["latent"].dtype == np.float32
        obs, *_ = env.step(action)
    if extras:
        assert obs["pixels"].shape == (32, 32, 3) and obs["pixels"].dtype == np.uint8  # resized to image_size


@pytest.mark.filterwarnings(*CHECKER_NOISE)
@pytest.mark.parametrize("by_path", [False, True], ids=["model", "checkpoint"])
def test_builtin_env_passes_both_checkers(
    temporal_model: WorldModel, temporal_checkpoint: Path, by_path: bool
) -> None:
    model = str(temporal_checkpoint) if by_path else temporal_model
    env = LatentObservationWrapper(gym.make(TWO_ROOMS_ID), model, pixels=True, goal=True)
    check_env(env)  # re-makes the wrapper from its spec: its constructor arguments are recorded
    sb3_check_env(env)
    assert env.spec is not None and env.spec.additional_wrappers[-1].name == "LatentObservationWrapper"


@pytest.mark.filterwarnings(*CHECKER_NOISE)
@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_rendered_gymnasium_env_passes_both_checkers(
    temporal_checkpoint: Path, pygame_png: None, env_id: str
) -> None:
    env = LatentObservationWrapper(gym.make(env_id, render_mode="rgb_array"), temporal_checkpoint)
    check_env(env)
    sb3_check_env(env)
    assert env.metadata["render_modes"] == ["rgb_array"]


@pytest.mark.filterwarnings(*CHECKER_NOISE)
def test_push_t_passes_both_checkers(spatial_model: WorldModel) -> None:
    pytest.importorskip("gym_pusht", reason="the PushT test needs the optional extra: pip install gym-pusht")
    env = gym.make("gym_pusht/PushT-v0", obs_type="pixels", render_mode="rgb_array")
    wrapped = LatentObservationWrapper(env, spatial_model, pixels=True)
    check_env(wrapped)
    sb3_check_env(wrapped)
    assert wrapped.observation_space["pixels"].shape == (32, 32, 3)  # 96x96 frames, resized


def test_ppo_trains_on_latent_observations(spatial_model: WorldModel) -> None:
    """PPO's MultiInputPolicy takes the wrapper's Dict of latents: two rollouts are collected, its weights move,
    and it acts on a wrapped observation."""
    from stable_baselines3 import PPO

    env = LatentObservationWrapper(gym.make(TWO_ROOMS_ID), spatial_model, goal=True)
    model = PPO("MultiInputPolicy", env, n_steps=32, batch_size=32, n_epochs=1, seed=0, device="cpu")
    before = [p.detach().clone() for p in model.policy.parameters()]
    model.learn(64)
    assert model.num_timesteps == 64
    assert any(not torch.equal(a, b) for a, b in zip(before, model.policy.parameters(), strict=True))
    obs, _ = env.reset(seed=3)
    action, _ = model.predict(obs, deterministic=True)
    assert env.action_space.contains(action.astype(env.action_space.dtype))


# ---- frame history and goals -----------------------------------------------------------------------


def test_latents_follow_the_episode_and_restart_after_its_end(temporal_model: WorldModel) -> None:
    """The latent at step t is the model's sliding-clip latent of this episode's frames up to t."""
    env = LatentObservationWrapper(gym.make(TWO_ROOMS_ID, max_episode_steps=6), temporal_model, pixels=True)
    for episode in range(2):  # the second episode must not see the first one's frames
        obs, _ = env.reset(seed=episode)
        observations, done = [obs], False
        for action in random_actions(env.action_space, 6, seed=episode):
            obs, _, terminated, truncated, _ = env.step(action)
            observations.append(obs)
            done = terminated or truncated
        assert done
        frames = np.stack([o["pixels"] for o in observations])[None]  # (1, T, H, W, C)
        expected = temporal_model.encode(frames)[0].flatten(1).numpy()  # (T, K * D)
        np.testing.assert_allclose(np.stack([o["latent"] for o in observations]), expected, atol=1e-5)


def test_goal_latent_is_the_encoded_goal_frame(temporal_model: WorldModel) -> None:
    env = LatentObservationWrapper(gym.make(TWO_ROOMS_ID), temporal_model, pixels=True, goal=True)
    obs, _ = env.reset(seed=3)
    goal_latent = obs["goal_latent"]
    assert not np.allclose(obs["latent"], goal_latent)  # the agent starts away from the goal
    obs, *_ = env.step(env.action_space.sample())
    np.testing.assert_array_equal(obs["goal_latent"], goal_latent)  # fixed for the episode
    # standing on the goal, the frame is the goal frame: both latents are its encoding
    obs, info = env.reset(seed=3, options={"start": (0.8, 0.8), "goal": (0.8, 0.8)})
    assert info["goal_frame"].shape == (64, 64, 3)  # encoded at the size of the (resized) observations
    still = env.encoder.encode_numpy(still_clip(obs["pixels"], env.encoder.window)).reshape(-1)
    np.testing.assert_allclose(obs["goal_latent"], still, atol=1e-6)
    np.testing.assert_allclose(obs["latent"], still, atol=1e-6)


# ---- the vector version ----------------------------------------------------------------------------


def _step_singles(singles: list[gym.Env], actions: np.ndarray, ended: list[bool]) -> list[dict]:
    """Step single envs the way a NEXT_STEP vector env does: one that ended is reset instead."""
    out = []
    for i, env in enumerate(singles):
        if ended[i]:
            obs, _ = env.reset()
            ended[i] = False
        else:
            obs, _, terminated, truncated, _ = env.step(actions[i])
            ended[i] = terminated or truncated
        out.append(obs)
    return out


@pytest.mark.parametrize(
    "env_id, make_kwargs, goal",
    [
        (TWO_ROOMS_ID, {"max_episode_steps": 7}, True),
        ("CartPole-v1", {"render_mode": "rgb_array"}, False),
    ],
)
def test_vector_latents_equal_single_latents(
    temporal_model: WorldModel, pygame_png: None, env_id: str, make_kwargs: dict, goal: bool
) -> None:
    n, steps = 3, 30
    wrappers = None if env_id == TWO_ROOMS_ID else [partial(pixel_env, image_size=32)]
    venv = gym.make_vec(env_id, n, vectorization_mode="sync", wrappers=wrappers, **make_kwargs)
    venv = VectorLatentObservationWrapper(venv, temporal_model, pixels=True, goal=goal)
    singles = [
        LatentObservationWrapper(gym.make(env_id, **make_kwargs), temporal_model, pixels=True, goal=goal)
        for _ in range(n)
    ]
    obs, _ = venv.reset(seed=list(range(n)))
    expected = [env.reset(seed=i)[0] for i, env in enumerate(singles)]
    ended, resets = [False] * n, 0
    for t in range(steps):
        for key in venv.single_observation_space.spaces:
            np.testing.assert_allclose(
                obs[key], np.stack([e[key] for e in expected]), atol=1e-5, err_msg=f"{key} {t}"
            )
        actions = np.stack(random_actions(venv.single_action_space, n, seed=t))
        resets += sum(ended)
        obs, *_ = venv.step(actions)
        expected = _step_singles(singles, actions, ended)
    assert resets > 0, "no sub-environment reached an episode end: the autoreset path went untested"


def test_vector_history_restarts_at_the_reset_frame(temporal_model: WorldModel) -> None:
    venv = gym.make_vec(TWO_ROOMS_ID, 2, vectorization_mode="sync", max_episode_steps=3)
    venv = VectorLatentObservationWrapper(venv, temporal_model, pixels=True)
    venv.reset(seed=[0, 1])
    actions = np.zeros((2, 2), dtype=np.float32)
    for _ in range(3):
        _, _, _, truncated, _ = venv.step(actions)
    assert truncated.all()
    obs, *_ = venv.step(actions)  # NEXT_STEP: this step is the reset
    fresh = venv.encoder.encode_numpy(np.stack([still_clip(f, venv.encoder.window)[0] for f in obs["pixels"]]))
    np.testing.assert_allclose(obs["latent"], fresh.reshape(2, -1), atol=1e-6)


def test_vector_reset_mask_restarts_only_the_masked_histories(temporal_model: WorldModel) -> None:
    venv = gym.make_vec(
        TWO_ROOMS_ID, 2, vectorization_mode="sync", vector_kwargs={"autoreset_mode": "Disabled"}
    )
    venv = VectorLatentObservationWrapper(venv, temporal_model, pixels=True)
    venv.reset(seed=[0, 1])
    for _ in range(2):
        before, *_ = venv.step(np.ones((2, 2), dtype=np.float32))
    obs, _ = venv.reset(options={"reset_mask": np.array([True, False])})
    fresh = venv.encoder.encode_numpy(still_clip(obs["pixels"][0], venv.encoder.window))
    np.testing.assert_allclose(obs["latent"][0], fresh.reshape(-1), atol=1e-6)
    np.testing.assert_allclose(obs["latent"][1], before["latent"][1], atol=1e-6)  # untouched history


# ---- wrong inputs fail at construction -------------------------------------------------------------


def test_env_without_frames_is_refused_with_the_fix(spatial_model: WorldModel) -> None:
    with pytest.raises(ValueError, match=r"gives no frames.*render_mode='rgb_array'"):
        LatentObservationWrapper(gym.make("CartPole-v1"), spatial_model)
    with pytest.raises(ValueError, match=r"source='render' needs .*render_mode='rgb_array'"):
        LatentObservationWrapper(gym.make(TWO_ROOMS_ID), spatial_model, source="render")
    with pytest.raises(ValueError, match=r"pixel_env"):
        VectorLatentObservationWrapper(
            gym.make_vec("CartPole-v1", 2, vectorization_mode="sync"), spatial_model
        )


def test_checkpoint_with_other_channels_is_refused_with_what_fits(tmp_path: Path) -> None:
    ckpt = save_world_model(tiny_world_model(in_channels=1), tmp_path / "gray")
    with pytest.raises(
        ValueError, match=r"takes uint8 frames \[H, W, 1\].*\(64, 64, 3\).*GrayscaleObservation"
    ):
        LatentObservationWrapper(gym.make(TWO_ROOMS_ID), ckpt)
    with pytest.raises(ValueError, match=r"\[H, W, 1\]"):
        VectorLatentObservationWrapper(gym.make_vec(TWO_ROOMS_ID, 2, vectorization_mode="sync"), ckpt)


class _ChannelsFirst(gym.ObservationWrapper):
    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = gym.spaces.Box(0, 255, (3, 64, 64), np.uint8)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        return observation.transpose(2, 0, 1)


def test_frames_that_do_not_fit_the_model_are_refused(spatial_model: WorldModel) -> None:
    with pytest.raises(ValueError, match="channels-first"):
        LatentObservationWrapper(_ChannelsFirst(gym.make(TWO_ROOMS_ID)), spatial_model)
    pytest.importorskip(
        "cv2", reason="shrinking the frames uses gymnasium's ResizeObservation: pip install opencv-python"
    )
    with pytest.raises(ValueError, match=r"at least one 8x8 patch.*4x4 frames"):
        LatentObservationWrapper(
            gym.wrappers.ResizeObservation(gym.make(TWO_ROOMS_ID), (4, 4)), spatial_model
        )
    with pytest.raises(TypeError, match="WorldModel, a JEPAAgent, a JEPA or a checkpoint path"):
        LatentObservationWrapper(gym.make(TWO_ROOMS_ID), object())  # type: ignore[arg-type]


def test_goal_without_a_goal_frame_is_refused(spatial_model: WorldModel, pygame_png: None) -> None:
    env = LatentObservationWrapper(gym.make("CartPole-v1", render_mode="rgb_array"), spatial_model, goal=True)
    with pytest.raises(ValueError, match=r"info\['goal_frame'\]"):
        env.reset(seed=0)


# --- proprioception beside the latents -----------------------------------------------------------------------
@pytest.mark.filterwarnings(*CHECKER_NOISE)
def test_proprio_is_the_named_entries_of_the_state_and_the_wrapper_rebuilds(spatial_model: WorldModel) -> None:
    env = LatentObservationWrapper(gym.make(TWO_ROOMS_ID), spatial_model, proprio=(1,))
    assert env.observation_space["proprio"].shape == (1,)
    obs, info = env.reset(seed=3)
    np.testing.assert_array_equal(obs["proprio"], np.asarray(info["state"], np.float32)[[1]])
    for action in random_actions(env.action_space, 5):
        obs, _, _, _, info = env.step(action)
        np.testing.assert_array_equal(obs["proprio"], np.asarray(info["state"], np.float32)[[1]])
        assert obs in env.observation_space
    check_env(env)  # rebuilt from its recorded constructor arguments, proprio included


def test_proprio_of_a_rendered_env_comes_from_its_own_state_observation(
    spatial_model: WorldModel, pygame_png: None
) -> None:
    env = LatentObservationWrapper(gym.make("Pendulum-v1", render_mode="rgb_array"), spatial_model, proprio=(2, 0))
    raw = gym.make("Pendulum-v1")
    obs, _ = env.reset(seed=5)
    state, _ = raw.reset(seed=5)
    for action in [None, *random_actions(env.action_space, 4)]:
        if action is not None:
            obs = env.step(action)[0]
            state = raw.step(action)[0]
        np.testing.assert_array_equal(obs["proprio"], state[[2, 0]])  # angular velocity, then cos(theta)


def test_proprio_without_a_state_is_refused_with_what_to_give(spatial_model: WorldModel) -> None:
    class NoState(gym.Wrapper):
        def reset(self, **kwargs):
            obs, info = self.env.reset(**kwargs)
            return obs, {k: v for k, v in info.items() if k != "state"}

    with pytest.raises(ValueError, match=r"needs a state vector.*info\['state'\]"):
        LatentObservationWrapper(NoState(gym.make(TWO_ROOMS_ID)), spatial_model, proprio=(0,)).reset(seed=0)


def test_vector_proprio_is_each_sub_environments_state(spatial_model: WorldModel) -> None:
    venv = VectorLatentObservationWrapper(
        gym.make_vec(TWO_ROOMS_ID, 3, vectorization_mode="sync"), spatial_model, proprio=(0, 1)
    )
    obs, infos = venv.reset(seed=[0, 1, 2])
    assert obs in venv.observation_space
    np.testing.assert_array_equal(obs["proprio"], np.asarray(infos["state"], np.float32))
    obs, *_, infos = venv.step(np.stack(random_actions(venv.single_action_space, 3)))
    np.testing.assert_array_equal(obs["proprio"], np.asarray(infos["state"], np.float32))
