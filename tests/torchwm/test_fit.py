"""`torchwm fit`: env id -> trained world model with a named recipe, resumable, and a checkpoint that
tells `bench planning` everything it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from torchwm.wm.checkpoint import latest_checkpoint, read_config
from torchwm.wm.episodes import read_manifest
from torchwm.wm.recipes import get_recipe

from torchwm.cli import main
from torchwm.pipeline import first_recording_seed, fit

SMOKE = get_recipe("two-phase-smoke").scaled(episodes=4)


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("fit")
    fit("torchwm/TwoRooms-v0", out, SMOKE, seed=2, num_envs=2, progress=False)
    return out


def test_fit_writes_every_stage_and_a_checkpoint_that_knows_its_data(fitted: Path) -> None:
    for stage in ("episodes/manifest.json", "jepa/summary.json", "world_model_joint/summary.json", "fit.json"):
        assert (fitted / stage).exists(), stage
    raw = read_config(latest_checkpoint(fitted / "world_model"))
    data = raw["data"]
    assert data["env_id"] == "torchwm/TwoRooms-v0"
    assert data["frame_skip"] == SMOKE.frame_skip == 4
    assert data["frame_shape"] == [64, 64, 3]
    assert data["action_space"]["kind"] == "box"
    assert data["frame_history"] == 1
    assert data["recipe"] == "two-phase-smoke"
    assert data["planning"]["num_samples"] == SMOKE.planning.num_samples
    seeds = [e["info"]["seed"] for e in read_manifest(fitted / "episodes")["episodes"]]
    assert sorted(seeds) == list(range(first_recording_seed(2), first_recording_seed(2) + 4))
    assert min(seeds) > 1049  # never an evaluation seed


def test_fit_again_finds_every_stage_complete_and_changes_nothing(fitted: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in fitted.rglob("model.safetensors")}
    result = fit("torchwm/TwoRooms-v0", fitted, SMOKE, seed=2, num_envs=2, progress=False)
    assert {p: p.stat().st_mtime_ns for p in fitted.rglob("model.safetensors")} == before
    assert len(read_manifest(fitted / "episodes")["episodes"]) == 4
    assert result.world_model == str(fitted / "world_model")


def test_fit_continues_a_run_killed_while_recording(tmp_path: Path) -> None:
    from torchwm.envs.record import record

    record("torchwm/TwoRooms-v0", "random", 2, tmp_path / "episodes", num_envs=2, seed=first_recording_seed(0),
           frame_skip=SMOKE.frame_skip, progress=False)  # fmt: skip
    fit("torchwm/TwoRooms-v0", tmp_path, SMOKE, num_envs=2, progress=False)
    seeds = sorted(e["info"]["seed"] for e in read_manifest(tmp_path / "episodes")["episodes"])
    assert seeds == list(range(first_recording_seed(0), first_recording_seed(0) + 4))  # two added, none twice
    assert latest_checkpoint(tmp_path / "world_model") is not None


def test_bench_planning_with_only_a_checkpoint_runs_the_evaluation_its_recipe_names(
    fitted: Path, tmp_path: Path
) -> None:
    code = main(["bench", "planning", "--checkpoint", str(fitted / "world_model"), "--episodes", "1",
                 "--gifs", "0", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    config = json.loads((tmp_path / "planning.json").read_text())["config"]
    assert config["env_id"] == "torchwm/TwoRooms-v0"
    assert config["action_repeat"] == 4
    assert config["planners"] == ["mppi"]
    assert config["mppi"]["num_samples"] == SMOKE.planning.num_samples
    assert config["mppi"]["iterations"] == SMOKE.planning.iterations
    assert config["max_steps"] == SMOKE.planning.max_steps
    assert config["reset_options"] == [["different_rooms", True]]


def test_bench_planning_flags_override_the_checkpoint(fitted: Path, tmp_path: Path) -> None:
    code = main(["bench", "planning", "--checkpoint", str(fitted / "world_model"), "--episodes", "1",
                 "--gifs", "0", "--planners", "cem", "--samples", "24", "--elites", "5", "--iterations", "2",
                 "--action-repeat", "2", "--no-different-rooms", "--out", str(tmp_path)])  # fmt: skip
    assert code == 0
    config = json.loads((tmp_path / "planning.json").read_text())["config"]
    assert config["planners"] == ["cem"] and config["action_repeat"] == 2 and config["reset_options"] == []
    assert (config["cem"]["num_samples"], config["cem"]["num_elites"], config["cem"]["iterations"]) == (24, 5, 2)


def test_fit_command_line_names_the_checkpoint_to_plan_with(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    code = main(["fit", "--env", "torchwm/TwoRooms-v0", "--out", str(tmp_path), "--recipe", "two-phase-smoke",
                 "--num-envs", "2"])  # fmt: skip
    assert code == 0
    assert f"torchwm bench planning --checkpoint {tmp_path / 'world_model'}" in capsys.readouterr().out


def test_the_checkpoint_makes_the_environment_it_was_trained_on(fitted: Path) -> None:
    from torchwm.envs.action_repeat import ActionRepeat

    from torchwm import make_latent_env

    env = make_latent_env(fitted / "world_model", goal=True)
    obs, info = env.reset(seed=1000)
    assert set(obs) == {"latent", "goal_latent"} and obs["latent"].dtype.name == "float32"
    repeat = next(w for w in _wrappers(env) if isinstance(w, ActionRepeat))
    assert repeat.k == SMOKE.frame_skip
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["repeats"] <= SMOKE.frame_skip
    with pytest.raises(ValueError, match=r"CartPole-v1 has the action space .*discrete.* was trained with .*box"):
        make_latent_env(fitted / "world_model", env_id="CartPole-v1")


def _wrappers(env):  # type: ignore[no-untyped-def]
    while hasattr(env, "env"):
        yield env
        env = env.env


def test_the_recipe_stage_benchmark_measures_every_stage_of_a_fitted_run(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "stages.json"
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "recipe_stages.py"
    done = subprocess.run([sys.executable, str(script), "--run", str(fitted), "--recipe", "two-phase-smoke",
                           "--steps", "1", "--out", str(out)], capture_output=True, text=True, timeout=600)  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    stages = json.loads(out.read_text())["stages"]
    assert set(stages) == {"record", "jepa", "world_model_joint", "world_model"}
    for name in ("jepa", "world_model_joint", "world_model"):
        row = stages[name]
        assert row["items_per_s"] > 0 and row["gflop_per_step"] > 0 and 0 < row["matmul_fraction"] < 1.5
        assert 0 <= row["data_wait_fraction"] < 1 and row["run_seconds"] > 0
    assert stages["record"]["frames_per_s"] > 0
