"""An environment from another package through `record` and `fit`: ``module:EnvId`` and ``--import``,
render-only pixels resized at record time, tensor observations, and no endless episodes."""

from __future__ import annotations

import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from torchwm.envs.record import record
from torchwm.wm.episodes import load_episode, read_manifest

from torchwm.cli import main

PLUGIN = "tests.envs.plugin_env"


@pytest.fixture(autouse=True)
def _forget_the_plugin() -> None:
    """Each test starts with the plugin neither imported nor registered."""
    sys.modules.pop(PLUGIN, None)
    gym.registry.pop("PluginDot-v0", None)


def test_an_unknown_id_says_what_to_import() -> None:
    with pytest.raises(ValueError, match=r"unknown environment 'PluginDot-v0'.*--import PACKAGE.*'PACKAGE:PluginDot-v0'"):
        record("PluginDot-v0", "random", 1, "unused", max_steps=2, progress=False)


def test_an_env_without_a_time_limit_is_recorded_under_a_default_limit_with_a_warning(tmp_path: Path) -> None:
    from torchwm.envs.record import DEFAULT_MAX_STEPS

    with pytest.warns(UserWarning, match=rf"no step limit .*limit of {DEFAULT_MAX_STEPS} steps.*--max-steps N"):
        record("PluginDot-v0", "random", 1, tmp_path, imports=[PLUGIN], progress=False)
    assert read_manifest(tmp_path)["episodes"][0]["num_steps"] == DEFAULT_MAX_STEPS  # cut there, never endless


@pytest.mark.parametrize("how", ["module:id", "import"])
def test_a_plugin_env_records_at_the_asked_size_and_the_manifest_keeps_its_import(tmp_path: Path, how: str) -> None:
    env_id = f"{PLUGIN}:PluginDot-v0" if how == "module:id" else "PluginDot-v0"
    imports = [] if how == "module:id" else [PLUGIN]
    record(env_id, "random", 3, tmp_path, num_envs=2, max_steps=6, image_size=48, imports=imports, progress=False)
    manifest = read_manifest(tmp_path)
    assert manifest["env_id"] == "PluginDot-v0" and manifest["imports"] == [PLUGIN]
    assert manifest["frame_shape"] == [48, 48, 3] and manifest["image_size"] == 48
    episode = load_episode(tmp_path, manifest["episodes"][0]["name"], manifest=manifest)
    assert episode.frames.shape == (7, 48, 48, 3) and episode.frames[0].max() > 200  # the dot survives the resize


def test_the_command_line_takes_import_repeatedly(tmp_path: Path) -> None:
    code = main(["record", "--env", "PluginDot-v0", "--import", PLUGIN, "--import", "json", "--episodes", "1",
                 "--max-steps", "3", "--image-size", "32", "--out", str(tmp_path), "--no-progress"])  # fmt: skip
    assert code == 0
    assert read_manifest(tmp_path)["imports"] == [PLUGIN, "json"]


def test_fit_on_a_plugin_env_records_the_import_in_the_checkpoint(tmp_path: Path) -> None:
    from torchwm.wm.checkpoint import latest_checkpoint, read_config
    from torchwm.wm.recipes import get_recipe

    from torchwm.pipeline import fit

    # the plugin has no time limit: fit's max_steps cuts its episodes
    fit("PluginDot-v0", tmp_path, get_recipe("two-phase-smoke").scaled(episodes=4), num_envs=2, progress=False,
        imports=[PLUGIN], max_steps=12)  # fmt: skip
    data = read_config(latest_checkpoint(tmp_path / "world_model"))["data"]
    assert data["env_id"] == "PluginDot-v0" and data["imports"] == [PLUGIN] and data["frame_shape"] == [64, 64, 3]  # the recipe's size


@pytest.fixture(scope="module")
def plugin_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A smoke-budget world model of the plugin env (render-only pixels, no time limit, no goals)."""
    from torchwm.wm.recipes import get_recipe

    from torchwm.pipeline import fit

    sys.modules.pop(PLUGIN, None)
    gym.registry.pop("PluginDot-v0", None)
    out = tmp_path_factory.mktemp("plugin_fit")
    fit(f"{PLUGIN}:PluginDot-v0", out, get_recipe("two-phase-smoke").scaled(episodes=4), num_envs=2,
        progress=False, max_steps=12)  # fmt: skip
    return out / "world_model"


def _bench(checkpoint: Path, out: Path, *flags: str) -> dict:
    import json

    code = main(["bench", "planning", "--checkpoint", str(checkpoint), "--episodes", "2", "--max-steps", "3",
                 "--gifs", "1", "--out", str(out), *flags])  # fmt: skip
    assert code == 0
    return json.loads((out / "planning.json").read_text())


def test_planning_without_a_goal_says_which_goal_sources_exist(plugin_model: Path, tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    code = main(["bench", "planning", "--checkpoint", str(plugin_model), "--out", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert "no 'goal_frame'" in err and "--goal function" in err and "--goal offline" in err


def test_goals_from_a_function_of_the_env(plugin_model: Path, tmp_path: Path) -> None:
    result = _bench(plugin_model, tmp_path, "--goal", "function", "--goal-function", f"{PLUGIN}:goal_of")
    assert {"mpc_mppi", "random", "greedy_one_step"} <= set(result["methods"])  # the checkpoint's import was enough
    assert result["methods"]["random"]["final_distance"] is None  # the env reports none: no crash, no number


def test_offline_goals_replay_held_out_episodes_and_measure_state_distance(tmp_path: Path) -> None:
    import torchwm.envs  # noqa: F401
    from torchwm.envs.action_repeat import ActionRepeat
    from torchwm.envs.goals import OfflineGoals

    record("torchwm/TwoRooms-v0", "random", 3, tmp_path, num_envs=1, seed=900_000, frame_skip=2, progress=False)
    env = OfflineGoals(ActionRepeat(gym.make("torchwm/TwoRooms-v0"), 2), tmp_path, offset=5, success_distance=0.5)
    obs, info = env.reset(seed=7)
    manifest = read_manifest(tmp_path)
    episode = load_episode(tmp_path, info["goal_episode"], manifest=manifest)
    start = info["goal_start"]
    gap = np.abs(obs.astype(int) - episode.frames[start]).mean()
    assert gap < 1.0, gap  # the replay reached the recorded start (the video is lossy: not bit-exact)
    assert (info["goal_frame"] == episode.frames[start + 5]).all()
    _, _, _, _, step_info = env.step(episode.actions[start])
    assert step_info["distance"] >= 0 and "is_success" in step_info
    again, info_again = env.reset(seed=7)  # the same seed, the same start and goal
    assert (again == obs).all() and info_again["goal_start"] == start


def test_reset_options_an_env_does_not_take_are_refused_not_ignored() -> None:
    import torchwm.envs  # noqa: F401
    from torchwm.envs.reset_options import ResetOptions

    with pytest.raises(ValueError, match=r"TwoRoomsEnv does not take the reset option\(s\) \['diferent_rooms'\]"):
        ResetOptions(gym.make("torchwm/TwoRooms-v0"), {"diferent_rooms": True})
    with pytest.warns(UserWarning, match="does not declare the reset options"):
        ResetOptions(gym.make("CartPole-v1"), {"hard": True})


def test_offline_goals_take_a_state_observation_as_the_state(tmp_path: Path) -> None:
    from torchwm.envs.goals import OfflineGoals

    record("PluginDot-v0", "random", 2, tmp_path, num_envs=1, max_steps=8, seed=900_000, imports=[PLUGIN],
           image_size=32, progress=False)  # fmt: skip
    entry = read_manifest(tmp_path)["episodes"][0]
    assert entry["state_dim"] == 2  # the torch-tensor observation was stored as the ground-truth state
    env = OfflineGoals(gym.make("PluginDot-v0"), tmp_path, offset=3, success_distance=10.0)
    _, info = env.reset(seed=0)
    _, _, _, _, step_info = env.step(np.zeros(2, np.float32))
    assert 0 <= step_info["distance"] <= 2 * np.sqrt(2) and step_info["is_success"]


def test_evaluate_gives_each_episode_its_own_reset_options() -> None:
    import torchwm.envs  # noqa: F401
    from torchwm.agents.evaluate import RandomPolicy, evaluate

    def make() -> gym.Env:
        return gym.make("torchwm/TwoRooms-v0")

    seen: list[int] = []

    def options(seed: int) -> dict:
        seen.append(seed)
        return {"start": (0.25, 0.25), "goal": (0.3, 0.25)}  # the same start whatever the seed

    space = make().action_space
    result = evaluate(RandomPolicy(space, seed=0), make, 2, 1000, 3, record_frames=2, episode_options=options)
    assert seen == [1000, 1001]
    first = [r.frames[0] for r in result.records]  # type: ignore[index]
    assert (first[0] == first[1]).all()  # different seeds, same fixed start
    with pytest.raises(ValueError, match="use num_envs=1, not 2"):
        evaluate(RandomPolicy(space), make, 2, 1000, 3, num_envs=2, episode_options=options)


def test_offline_goals_from_the_command_line_record_their_held_out_episodes(plugin_model: Path, tmp_path: Path) -> None:
    result = _bench(plugin_model, tmp_path, "--goal", "offline", "--goal-offset", "3", "--success-distance", "0.3")
    manifest = read_manifest(tmp_path / "heldout_goals")
    assert len(manifest["episodes"]) == 2 and manifest["frame_shape"] == [64, 64, 3]
    assert min(e["info"]["seed"] for e in manifest["episodes"]) == 900_000  # never a training seed
    for row in result["methods"].values():
        assert row["final_distance"] is not None  # the state observation gives the distance to the goal state
