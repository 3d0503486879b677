"""Behaviour of the U-maze: the wall between the arms, the reset rule, the detour, determinism, the checkers."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from stable_baselines3.common.env_checker import check_env as sb3_check_env
from torchwm.envs import UMazeEnv
from torchwm.envs.registration import BUILTIN_ENVS, U_MAZE_ID


def segment_crosses_a_wall(env: UMazeEnv, start: np.ndarray, goal: np.ndarray) -> bool:
    """Whether the open segment start -> goal passes through the interior of one of the env's wall rects."""
    (sx, sy), (dx, dy) = start.tolist(), (goal - start).tolist()
    for x0, y0, x1, y1 in env.walls:
        t_lo, t_hi = 0.0, 1.0
        for p, d, lo, hi in ((sx, dx, x0, x1), (sy, dy, y0, y1)):
            if d == 0.0:
                if not lo < p < hi:
                    t_lo, t_hi = 1.0, 0.0
                continue
            a, b = sorted(((lo - p) / d, (hi - p) / d))
            t_lo, t_hi = max(t_lo, a), min(t_hi, b)
        if t_lo < t_hi:
            return True
    return False


def steer(env: gym.Env, target: tuple[float, float], steps: int) -> tuple[bool, dict]:
    """Step towards `target` (a full step, or the exact remainder when closer) until there or terminated."""
    base = env.unwrapped
    info: dict = {}
    for _ in range(steps):
        delta = (np.asarray(target) - np.array((base._x, base._y))) / base.max_step
        if np.abs(delta).max() < 1e-9:
            return False, info
        action = np.clip(delta / max(1.0, float(np.abs(delta).max())), -1.0, 1.0).astype(np.float32)
        _, _, terminated, truncated, info = env.step(action)
        if terminated or truncated:
            return terminated, info
    return False, info


def test_geometry_wall_arms_and_opening() -> None:
    env = UMazeEnv()
    assert env.walls == ((-1.0, 0.45, 0.7, 0.55),)
    assert not env.is_free(0.1, 0.5) and not env.is_free(0.69, 0.5)  # the wall, open only past its free end
    assert env.is_free(0.71, 0.5) and env.is_free(0.99, 0.5)  # the opening
    assert (env.arm(0.2), env.arm(0.8), env.arm(0.5)) == (0, 1, -1)
    mid_row = env.size // 2
    wall_cols = (env._background[mid_row] == env.WALL_COLOR).all(-1)
    assert wall_cols[: int(0.69 * env.size)].all() and not wall_cols[int(0.71 * env.size) + 1 :].any()


def test_default_reset_puts_start_and_goal_in_different_arms_across_the_wall() -> None:
    env = UMazeEnv()
    for seed in range(200):
        _, info = env.reset(seed=seed)
        start, goal = info["agent_pos"].astype(np.float64), info["goal_pos"].astype(np.float64)
        assert {env.arm(float(start[1])), env.arm(float(goal[1]))} == {0, 1}
        assert start[0] <= env.closed_end + 1e-6 and goal[0] <= env.closed_end + 1e-6  # the closed side
        assert env.is_free(*start.tolist()) and env.is_free(*goal.tolist())
        assert segment_crosses_a_wall(env, start, goal)
        assert not info["is_success"] and info["distance"] > env.wall_y[1] - env.wall_y[0]
        np.testing.assert_array_equal(info["state"], info["agent_pos"])


def test_same_seed_same_start_goal_and_frames() -> None:
    def rollout() -> tuple[np.ndarray, np.ndarray, list[np.ndarray]]:
        env = gym.make(U_MAZE_ID)
        env.action_space.seed(7)
        obs, info = env.reset(seed=11)
        frames = [obs, info["goal_frame"]]
        for _ in range(50):
            obs, *_ = env.step(env.action_space.sample())
            frames.append(obs)
        return info["agent_pos"], info["goal_pos"], frames

    (s1, g1, f1), (s2, g2, f2) = rollout(), rollout()
    np.testing.assert_array_equal(s1, s2)
    np.testing.assert_array_equal(g1, g2)
    assert all(np.array_equal(a, b) for a, b in zip(f1, f2, strict=True))
    assert not all(np.array_equal(f1[0], f) for f in f1[2:])
    env = UMazeEnv()
    starts = {tuple(env.reset(seed=seed)[1]["agent_pos"].tolist()) for seed in range(5)}
    assert len(starts) == 5


@pytest.mark.parametrize("seed", range(10))
def test_a_path_around_the_free_end_reaches_the_goal(seed: int) -> None:
    env = gym.make(U_MAZE_ID)
    _, info = env.reset(seed=seed)
    sy, (gx, gy) = float(info["agent_pos"][1]), info["goal_pos"].tolist()
    bend_x = (env.unwrapped.wall_length + 1.0) / 2
    terminated = False
    for target in ((bend_x, sy), (bend_x, gy), (gx, gy)):
        terminated, info = steer(env, target, env.spec.max_episode_steps)
        if terminated:
            break
    assert terminated and info["is_success"] and info["distance"] < env.unwrapped.success_radius


@pytest.mark.parametrize("seed", range(10))
def test_walking_straight_at_the_goal_gets_stuck_at_the_wall(seed: int) -> None:
    env = UMazeEnv()
    _, info = env.reset(seed=seed)
    goal = info["goal_pos"].astype(np.float64)
    for _ in range(200):
        direction = goal - info["agent_pos"]
        _, _, terminated, _, info = env.step((direction / np.linalg.norm(direction)).astype(np.float32))
        assert not terminated and info["distance"] > env.success_radius
        assert env.arm(float(info["agent_pos"][1])) != env.arm(float(goal[1]))
    assert info["agent_pos"][0] < env.wall_length  # never found the free end
    assert info["distance"] >= env.wall_y[1] - env.wall_y[0] - 1e-6  # pressed against the wall


def test_goal_frame_shows_the_agent_at_the_goal() -> None:
    env = UMazeEnv(render_mode="rgb_array")
    obs, info = env.reset(seed=3)
    goal = info["goal_pos"].tolist()
    obs_at_goal, info_at_goal = env.reset(seed=4, options={"start": goal, "goal": goal})
    np.testing.assert_array_equal(info["goal_frame"], obs_at_goal)
    np.testing.assert_array_equal(env.render(), obs_at_goal)
    assert info_at_goal["is_success"]
    goal_pixels = (info["goal_frame"] == env.AGENT_COLOR).all(-1)
    row, col = int((1.0 - goal[1]) * env.size), int(goal[0] * env.size)
    assert goal_pixels[row, col] and not (obs == env.AGENT_COLOR).all(-1)[row, col]


def test_reset_options() -> None:
    env = UMazeEnv()
    same_arm = 0
    for seed in range(100):
        _, info = env.reset(seed=seed, options={"different_arms": False})
        same_arm += env.arm(float(info["agent_pos"][1])) == env.arm(float(info["goal_pos"][1]))
        assert not info["is_success"]
    assert 20 < same_arm < 80  # anywhere in free space
    _, info = env.reset(seed=0, options={"start": (0.9, 0.2)})
    assert env.arm(float(info["goal_pos"][1])) == 1 and info["goal_pos"][0] <= env.closed_end + 1e-6
    _, info = env.reset(seed=0, options={"goal": (0.1, 0.9)})
    assert env.arm(float(info["agent_pos"][1])) == 0
    _, info = env.reset(seed=0, options={"start": (0.1, 0.1), "goal": (0.2, 0.2)})  # both fixed: as given
    np.testing.assert_allclose(info["goal_pos"], (0.2, 0.2), rtol=1e-6)
    _, info = env.reset(seed=0, options={"start": (0.85, 0.5)})  # beside the free end: a drawn arm
    assert env.arm(float(info["goal_pos"][1])) in (0, 1)
    with pytest.raises(ValueError, match="two arms"):
        env.reset(seed=0, options={"different_arms": True, "start": (0.1, 0.1), "goal": (0.2, 0.2)})
    with pytest.raises(ValueError, match="inside an arm"):
        env.reset(seed=0, options={"different_arms": True, "start": (0.85, 0.5)})
    for options in ({"start": (0.3, 0.5)}, {"goal": (1.2, 0.1)}, {"different_rooms": True}):
        with pytest.raises(ValueError, match="start|goal|options"):
            env.reset(seed=0, options=options)


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"wall_length": 1.0}, "wall_length"),
        ({"closed_end": 0.8}, "closed_end"),
        ({"wall_thickness": 0.02}, "success_radius"),
        ({"max_step": 0.0}, "max_step"),
    ],
)
def test_bad_constructor_arguments_name_the_value(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=f"{name} must be"):
        UMazeEnv(**kwargs)


def test_registration_and_checkers() -> None:
    assert BUILTIN_ENVS[U_MAZE_ID] == ("torchwm.envs.u_maze:UMazeEnv", 200)
    assert gym.spec(U_MAZE_ID).max_episode_steps == 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_env(gym.make(U_MAZE_ID).unwrapped)
        sb3_check_env(gym.make(U_MAZE_ID).unwrapped)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        warnings.filterwarnings("ignore", message=".*different from the unwrapped version")
        check_env(gym.make(U_MAZE_ID))
        check_env(gym.make(U_MAZE_ID, render_mode="rgb_array"), skip_render_check=False)
