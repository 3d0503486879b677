"""`torchwm fit`: env id -> trained world model with a named recipe, resumable, and a checkpoint that
tells `bench planning` everything it needs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from torchwm.wm.checkpoint import latest_checkpoint, read_config
from torchwm.wm.episodes import read_manifest
from torchwm.wm.recipes import get_recipe
from torchwm.wm.runs import RunMismatchError, open_run

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


def test_fit_continues_a_run_killed_while_recording(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from torchwm.envs.record import record

    import torchwm.pipeline

    def killed_after_two(*args: Any, **kwargs: Any) -> None:  # Ctrl-C once two episodes are written
        record(*args[:2], 2, *args[3:], **kwargs)
        raise KeyboardInterrupt

    with monkeypatch.context() as patched:
        patched.setattr(torchwm.pipeline, "record", killed_after_two)
        with pytest.raises(KeyboardInterrupt):
            fit("torchwm/TwoRooms-v0", tmp_path, SMOKE, num_envs=2, progress=False)
    assert len(read_manifest(tmp_path / "episodes")["episodes"]) == 2
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


@pytest.mark.parametrize(
    ("change", "named"),
    [({"env": "torchwm/PointMass-v0"}, "env: the folder has 'torchwm/TwoRooms-v0'"),
     ({"seed": 5}, "seed: the folder has 2, this command asks for 5"),
     ({"recipe": SMOKE.scaled(episodes=6)}, "recipe: the folder has")],
)  # fmt: skip
def test_fit_refuses_a_folder_of_another_run_and_changes_nothing(
    fitted: Path, change: dict[str, Any], named: str
) -> None:
    before = {p: p.stat().st_mtime_ns for p in fitted.rglob("*") if p.is_file()}
    kwargs: dict[str, Any] = {"env": "torchwm/TwoRooms-v0", "seed": 2, "recipe": SMOKE, **change}
    with pytest.raises(RunMismatchError, match=named):
        fit(kwargs.pop("env"), fitted, kwargs.pop("recipe"), num_envs=2, progress=False, **kwargs)
    after = {p: p.stat().st_mtime_ns for p in fitted.rglob("*") if p.is_file()}
    assert after == before


def test_fit_command_line_refuses_another_env_in_one_line_and_overwrite_starts_afresh(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with open_run(tmp_path, "fit", {"env": "torchwm/TwoRooms-v0", "seed": 0}):
        (tmp_path / "episodes").mkdir()
    code = main(["fit", "--env", "torchwm/PointMass-v0", "--out", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "env: the folder has 'torchwm/TwoRooms-v0', this command asks for 'torchwm/PointMass-v0'" in err
    assert not (tmp_path / "fit.json").exists()


def test_a_full_disk_during_a_checkpoint_ends_in_one_line_and_the_same_command_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    import safetensors.torch
    import torchwm.wm.checkpoint as checkpoint

    real_save, calls = safetensors.torch.save_file, []

    def full_disk_at_the_second(tensors: Any, filename: str, *args: Any, **kwargs: Any) -> None:
        calls.append(filename)
        if len(calls) == 2:
            real_save(tensors, filename, *args, **kwargs)  # a partial file, as a full disk leaves it
            raise safetensors.SafetensorError("Error while serializing: No space left on device (os error 28)")
        real_save(tensors, filename, *args, **kwargs)

    args = ["pretrain", "--preset", "tiny", "--dataset", "synthetic", "--max-steps", "4", "--checkpoint-interval", "2",
            "--output-dir", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    with monkeypatch.context() as patched:
        patched.setattr(checkpoint, "save_file", full_disk_at_the_second)
        code = main(args)
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1, err
    assert "could not write" in err and "step_00000004" in err and "No space left on device" in err
    assert "free space" in err and "step_00000002" in err  # what to do, and the checkpoint it resumes from
    leftovers = [p.name for p in (tmp_path / "run" / "checkpoints").iterdir() if p.name.startswith(".")]
    assert leftovers == []
    assert latest_checkpoint(tmp_path / "run").name == "step_00000002"  # type: ignore[union-attr]
    assert main(args) == 0  # space freed: the same command resumes from step 2
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["resumed_from"] == 2 and summary["steps"] == 4


def test_fit_trains_and_plans_with_a_recipe_that_is_not_registered(tmp_path: Path) -> None:
    import dataclasses

    from torchwm.wm.planning_spec import PlanningDefaults
    from torchwm.wm.recipes import RECIPES

    mine = dataclasses.replace(SMOKE, name="mine-unregistered",
                               planning=PlanningDefaults(num_samples=12, iterations=1, horizon=3, max_steps=2))  # fmt: skip
    assert mine.name not in RECIPES
    result = fit("torchwm/TwoRooms-v0", tmp_path, mine, num_envs=2, progress=False)
    facts = read_config(latest_checkpoint(result.world_model))["data"]  # type: ignore[arg-type]
    assert facts["recipe"] == "mine-unregistered" and facts["planning"] == mine.planning.to_dict()
    assert main(["bench", "planning", "--checkpoint", result.world_model, "--episodes", "1", "--gifs", "0",
                 "--out", str(tmp_path / "plan")]) == 0  # fmt: skip
    ran = json.loads((tmp_path / "plan" / "planning.json").read_text())
    assert ran["planners_ran"] == {"mppi": {"horizon": 3, "num_samples": 12, "iterations": 1, "cost": "latent_l2"}}
    assert ran["config"]["max_steps"] == 2
