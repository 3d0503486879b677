"""Behaviour of the built-in pixel environments: walls, door, goals, determinism, the checkers."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torchwm.envs import PointMassEnv, TwoRoomsEnv
from torchwm.envs.registration import POINT_MASS_ID, TWO_ROOMS_ID, register_builtin_envs
from torchwm.envs.two_rooms import PointArenaEnv

ENV_CLASSES = [TwoRoomsEnv, PointMassEnv]
ENV_IDS = [TWO_ROOMS_ID, POINT_MASS_ID]
RIGHT = np.array([1.0, 0.0], dtype=np.float32)
SOLID_POINT = {TwoRoomsEnv: (0.5, 0.1), PointMassEnv: (0.5, 0.5)}  # inside the wall / the obstacle


def run(env: PointArenaEnv, action: np.ndarray, steps: int) -> dict:
    """Step `env` with a constant action and return the last info."""
    info: dict = {}
    for _ in range(steps):
        _, _, _, _, info = env.step(action)
    return info


# ---- walls, door, border ------------------------------------------------------------------------


def test_wall_blocks_an_agent_pushing_right_from_the_left_room() -> None:
    env = TwoRoomsEnv()
    env.reset(seed=0, options={"start": (0.3, 0.1), "goal": (0.9, 0.9)})
    info = run(env, RIGHT, 30)
    assert info["agent_pos"][0] == pytest.approx(env.wall_x[0])
    assert env.room(float(info["agent_pos"][0])) == 0


def test_door_lets_an_agent_at_its_height_through() -> None:
    env = TwoRoomsEnv()
    door_y = sum(env.door) / 2
    env.reset(seed=0, options={"start": (0.3, door_y), "goal": (0.9, 0.9)})
    info = run(env, RIGHT, 10)
    assert env.room(float(info["agent_pos"][0])) == 1
    assert info["agent_pos"][1] == pytest.approx(door_y)


def test_diagonal_move_into_the_door_edge_slides_without_crossing_the_wall() -> None:
    env = TwoRoomsEnv(max_step=0.2)
    lo, _ = env.door
    env.reset(seed=0, options={"start": (env.wall_x[0] - 0.05, lo - 0.15), "goal": (0.9, 0.9)})
    env.step(np.array([1.0, 1.0], dtype=np.float32))
    x, y = env.unwrapped._x, env.unwrapped._y
    assert env.is_free(x, y)
    assert x == pytest.approx(env.wall_x[0]) and y > lo - 0.15


def test_random_walk_crosses_the_wall_only_through_the_door() -> None:
    env = TwoRoomsEnv(max_step=0.3)
    rng = np.random.default_rng(0)
    lo, hi = env.door
    for episode in range(50):
        env.reset(seed=episode)
        for _ in range(40):
            x0, y0 = env._x, env._y
            env.step(rng.choice([-1.0, 1.0], 2) * rng.uniform(0.3, 1.0, 2))
            assert env.is_free(env._x, env._y)
            if (x0 - 0.5) * (env._x - 0.5) < 0:
                y_cross = y0 + (0.5 - x0) / (env._x - x0) * (env._y - y0)
                assert lo <= y_cross <= hi


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
@pytest.mark.parametrize(
    ("start", "action", "expected"),
    [
        ((0.05, 0.3), (-1, 0), (0.0, 0.3)),
        ((0.3, 0.95), (0, 1), (0.3, 1.0)),
        ((0.97, 0.03), (1, -1), (1.0, 0.0)),
    ],
)
def test_border_blocks(env_cls: type[PointArenaEnv], start: tuple, action: tuple, expected: tuple) -> None:
    env = env_cls()
    env.reset(seed=0, options={"start": start, "goal": (0.75, 0.75)})
    info = run(env, np.array(action, dtype=np.float32), 40)
    np.testing.assert_allclose(info["agent_pos"], expected, atol=1e-6)


def test_point_mass_obstacle_blocks() -> None:
    env = PointMassEnv(obstacle_size=0.2)
    env.reset(seed=0, options={"start": (0.1, 0.5), "goal": (0.9, 0.9)})
    info = run(env, RIGHT, 60)
    assert info["agent_pos"][0] == pytest.approx(0.4)


# ---- goals, success, options --------------------------------------------------------------------


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
def test_success_exactly_within_radius_and_terminates(env_cls: type[PointArenaEnv]) -> None:
    env = env_cls(success_radius=0.1)
    _, info = env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.1, 0.25)})
    assert not info["is_success"] and info["distance"] == pytest.approx(0.15)
    terminated, info = False, info
    while not terminated:
        _, reward, terminated, _, info = env.step(np.array([0.0, 0.3], dtype=np.float32))
        assert info["is_success"] == (info["distance"] < 0.1) == terminated
        assert reward == pytest.approx(-info["distance"])
    assert info["distance"] < 0.1


def test_point_mass_success_speed_condition() -> None:
    env = PointMassEnv(success_max_speed=0.01)
    _, info = env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.1, 0.12), "velocity": (0.0, 0.02)})
    assert info["distance"] < env.success_radius and not info["is_success"]
    _, info = env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.1, 0.12)})
    assert info["is_success"]


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
def test_options_fix_start_and_goal(env_cls: type[PointArenaEnv]) -> None:
    env = env_cls()
    _, info = env.reset(seed=3, options={"start": (0.2, 0.3), "goal": (0.8, 0.7)})
    np.testing.assert_allclose(info["agent_pos"], (0.2, 0.3), rtol=1e-6)
    np.testing.assert_allclose(info["goal_pos"], (0.8, 0.7), rtol=1e-6)
    np.testing.assert_allclose(info["state"][:2], (0.2, 0.3), rtol=1e-6)


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
@pytest.mark.parametrize(
    "options", [{"start": "solid"}, {"goal": (1.5, 0.5)}, {"strat": (0.1, 0.1)}, {"start": (0.1,)}]
)
def test_bad_options_raise(env_cls: type[PointArenaEnv], options: dict) -> None:
    env = env_cls()
    if options.get("start") == "solid":
        options = {"start": SOLID_POINT[env_cls]}
    with pytest.raises(ValueError, match="start|goal|options"):
        env.reset(seed=0, options=options)


def test_different_rooms_over_many_seeds() -> None:
    env = TwoRoomsEnv()
    for seed in range(200):
        _, info = env.reset(seed=seed, options={"different_rooms": True})
        rooms = {env.room(float(info["agent_pos"][0])), env.room(float(info["goal_pos"][0]))}
        assert rooms == {0, 1}
    _, info = env.reset(seed=0, options={"different_rooms": True, "start": (0.9, 0.2)})
    assert env.room(float(info["goal_pos"][0])) == 0
    with pytest.raises(ValueError, match="two rooms"):
        env.reset(seed=0, options={"different_rooms": True, "start": (0.1, 0.2), "goal": (0.2, 0.2)})


def test_sampled_goals_are_anywhere_in_free_space() -> None:
    env = TwoRoomsEnv()
    same_room = 0
    for seed in range(100):
        _, info = env.reset(seed=seed)
        assert env.is_free(*info["agent_pos"].tolist()) and env.is_free(*info["goal_pos"].tolist())
        assert not info["is_success"]
        same_room += env.room(float(info["agent_pos"][0])) == env.room(float(info["goal_pos"][0]))
    assert 20 < same_room < 80


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
def test_goal_frame_equals_observation_at_the_goal(env_cls: type[PointArenaEnv]) -> None:
    env = env_cls(render_mode="rgb_array")
    _, info = env.reset(seed=1)
    goal = info["goal_pos"].tolist()
    obs, info_at_goal = env.reset(seed=2, options={"start": goal, "goal": goal})
    np.testing.assert_array_equal(info["goal_frame"], obs)
    np.testing.assert_array_equal(env.goal_frame(), obs)
    np.testing.assert_array_equal(env.render(), obs)
    assert info_at_goal["is_success"]


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
def test_observation_draws_the_agent_but_not_the_goal(env_cls: type[PointArenaEnv]) -> None:
    env = env_cls()
    obs, info = env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.9, 0.9)})
    assert obs.dtype == np.uint8 and obs.shape == (64, 64, 3)
    agent_pixels = (obs == env.AGENT_COLOR).all(axis=-1)
    rows, cols = np.nonzero(agent_pixels)
    assert rows.min() >= 64 - 10 and cols.max() < 10  # only near (0.1, 0.1): bottom left
    goal_pixels = (info["goal_frame"] == env.AGENT_COLOR).all(axis=-1)
    assert goal_pixels[:10, -10:].any() and not agent_pixels[:10, -10:].any()


# ---- dynamics, determinism ----------------------------------------------------------------------


def test_point_mass_keeps_moving_after_the_force_stops() -> None:
    env = PointMassEnv()
    env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.9, 0.9)})
    run(env, RIGHT, 3)
    x_before = env._x
    info = run(env, np.zeros(2, dtype=np.float32), 3)
    assert info["agent_pos"][0] > x_before
    assert 0.0 < info["state"][2] < env.max_speed and info["state"][3] == 0.0


def test_point_mass_velocity_is_clipped() -> None:
    env = PointMassEnv(obstacle_size=0.0)
    env.reset(seed=0, options={"start": (0.0, 0.5), "goal": (0.9, 0.9)})
    info = run(env, RIGHT, 15)
    assert info["state"][2] == pytest.approx(env.max_speed)


def test_two_rooms_moves_max_step_per_unit_action() -> None:
    env = TwoRoomsEnv(max_step=0.05)
    env.reset(seed=0, options={"start": (0.2, 0.2), "goal": (0.9, 0.9)})
    _, _, _, _, info = env.step(np.array([1.0, -0.5], dtype=np.float32))
    np.testing.assert_allclose(info["agent_pos"], (0.25, 0.175), rtol=1e-6)


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_same_seed_same_observations(env_id: str) -> None:
    def rollout() -> list[np.ndarray]:
        env = gym.make(env_id)
        env.action_space.seed(7)
        obs, _ = env.reset(seed=11)
        frames = [obs]
        for _ in range(50):
            obs, *_ = env.step(env.action_space.sample())
            frames.append(obs)
        return frames

    first, second = rollout(), rollout()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not all(np.array_equal(first[0], f) for f in first[1:])


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_time_limit_truncates(env_id: str) -> None:
    env = gym.make(env_id)
    env.reset(seed=0, options={"start": (0.05, 0.05), "goal": (0.95, 0.95)})
    truncated, steps = False, 0
    while not truncated:
        _, _, terminated, truncated, _ = env.step(np.zeros(2, dtype=np.float32))
        steps += 1
        assert not terminated
    assert steps == env.spec.max_episode_steps


# ---- validation, registration, checkers ---------------------------------------------------------


@pytest.mark.parametrize(
    ("env_cls", "kwargs", "name"),
    [
        (TwoRoomsEnv, {"size": 4}, "size"),
        (TwoRoomsEnv, {"door_size": 0.0}, "door_size"),
        (TwoRoomsEnv, {"door_center": 0.95}, "door_center"),
        (TwoRoomsEnv, {"max_step": -0.1}, "max_step"),
        (TwoRoomsEnv, {"render_mode": "human"}, "render_mode"),
        (PointMassEnv, {"damping": 1.5}, "damping"),
        (PointMassEnv, {"success_max_speed": 0.0}, "success_max_speed"),
    ],
)
def test_bad_constructor_arguments_name_the_value(env_cls: type, kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be .*got {list(kwargs.values())[0]!r}"):
        env_cls(**kwargs)


@pytest.mark.parametrize("env_cls", ENV_CLASSES)
def test_bad_action_shape_raises(env_cls: type[PointArenaEnv]) -> None:
    env = env_cls()
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(3, dtype=np.float32))


def test_registration_is_idempotent() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register_builtin_envs()
    assert gym.spec(TWO_ROOMS_ID).max_episode_steps is not None


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_gymnasium_check_env(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(env_id).unwrapped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(gym.make(env_id))
        check_env(gym.make(env_id, render_mode="rgb_array"))


@pytest.mark.parametrize("env_id", ENV_IDS)
def test_sb3_check_env(env_id: str) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sb3_check_env(gym.make(env_id).unwrapped)


def test_the_drawn_door_is_a_function_of_the_reset_seed_and_is_drawn_and_solid() -> None:
    import gymnasium as gym
    from torchwm.envs import TwoRoomsDoorEnv

    env = TwoRoomsDoorEnv()
    doors = {}
    for seed in range(40):
        frame, info = env.reset(seed=seed, options={"different_rooms": True})
        lo, hi = env.door
        doors[seed] = (lo, hi)
        assert 0.08 - 1e-9 <= hi - lo <= 0.2 + 1e-9 and lo > 0.0 and hi < 1.0
        np.testing.assert_allclose(info["state"][2:], (lo, hi), rtol=1e-6)
        mid_col = int(0.5 * env.size)
        assert (frame[:, mid_col] == env.WALL_COLOR).all(-1).sum() > env.size // 2  # the wall is in the frame
        wall_rows = (env._background[:, mid_col] == env.WALL_COLOR).all(-1)  # without the agent's sprite
        rows_y = 1.0 - (np.arange(env.size) + 0.5) / env.size
        assert not wall_rows[(rows_y > lo + 0.01) & (rows_y < hi - 0.01)].any()  # the door is open in the frame
        assert wall_rows[(rows_y < lo - 0.01) | (rows_y > hi + 0.01)].all()  # the wall is drawn elsewhere
        assert env.room(info["agent_pos"][0]) != env.room(info["goal_pos"][0])
        assert not env.is_free(0.5, lo - 0.02) and env.is_free(0.5, (lo + hi) / 2)
    centres = [(lo + hi) / 2 for lo, hi in doors.values()]
    assert max(centres) - min(centres) > 0.5  # anywhere along the wall
    env.reset(seed=7)
    assert env.door == doors[7]  # the same seed, the same door
    made = gym.make("torchwm/TwoRoomsDoor-v0")
    made.reset(seed=7)
    assert made.unwrapped.door == doors[7]  # type: ignore[attr-defined]


def test_the_drawn_door_env_passes_gymnasiums_checker() -> None:
    from gymnasium.utils.env_checker import check_env
    from torchwm.envs import TwoRoomsDoorEnv

    check_env(TwoRoomsDoorEnv(render_mode="rgb_array"), skip_render_check=False)
