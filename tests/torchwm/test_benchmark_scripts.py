"""Every benchmark script imports against the current package and prints its options (they are imported by
nothing else, so a moved name would otherwise surface only when someone runs the benchmark), and runs end to
end on a tiny budget: as a subprocess in a temporary folder, every output path pointing there, and what it
writes is checked (the fields it promises, finite numbers, the files it names).

The inputs are built once for the module: a finished ``torchwm fit`` run of the smoke recipe on TwoRooms (the
scripts that need a trained model, its episodes or its stages) and an untrained one-layer world model on 32x32
frames that knows the same data (the scripts that encode every arena cell or train policies, where the fitted
model's encoder would cost most of the budget).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[2]
BENCH = REPO / "benchmarks"
BENCHMARKS = sorted(BENCH.glob("*.py"))
TWO_ROOMS = "torchwm/TwoRooms-v0"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MUJOCO_GL": "egl", "PYTHONDONTWRITEBYTECODE": "1"}
"""One torch thread per script unless it sets its own (on a busy 2-core machine two spinning OpenMP threads make
a training step 10-20x slower), headless MuJoCo, and no ``__pycache__`` written into ``benchmarks/`` (one script
imports another)."""


@pytest.mark.parametrize("script", BENCHMARKS, ids=[p.stem for p in BENCHMARKS])
def test_the_benchmark_script_starts(script: Path) -> None:
    out = subprocess.run([sys.executable, str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "usage:" in out.stdout


# ----------------------------------------------------------------------------- helpers and shared inputs


def run(script: str, *args: Any, cwd: Path, env: dict[str, str] | None = None, timeout: float = 300) -> str:
    """Run ``benchmarks/<script>.py`` with ``args`` in ``cwd``; its stdout (it must exit 0)."""
    command = [sys.executable, str(BENCH / f"{script}.py"), *map(str, args)]
    out = subprocess.run(command, cwd=cwd, env=env or ENV, capture_output=True, text=True, timeout=timeout)
    assert out.returncode == 0, f"{' '.join(command)}\n{out.stdout[-3000:]}\n{out.stderr[-5000:]}"
    return out.stdout


def read(path: Path) -> Any:
    return json.loads(path.read_text())


def finite(*values: Any) -> bool:
    """Every value a real, finite number (not a bool, not None, not NaN)."""
    return all(isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in values)


def positive(*values: Any) -> bool:
    return finite(*values) and all(v > 0 for v in values)


def rate_with_interval(rate: Any, ci: Iterable[float]) -> bool:
    """A success rate in [0, 1] inside its 95% interval."""
    lo, hi = ci
    return finite(rate, lo, hi) and 0.0 <= lo <= rate <= hi <= 1.0


def nonempty(path: Path) -> bool:
    return path.is_file() and path.stat().st_size > 0


def _benchmarks_folder() -> dict[str, int]:
    """Every file under benchmarks/ (bytecode caches aside) and when it was last written."""
    return {str(p.relative_to(BENCH)): p.stat().st_mtime_ns for p in BENCH.rglob("*")
            if p.is_file() and "__pycache__" not in p.parts}  # fmt: skip


@pytest.fixture(scope="module", autouse=True)
def benchmarks_folder_untouched() -> Any:
    """No script writes into benchmarks/ (results/ is every script's default output; ``runs/...`` defaults are
    relative, and every script runs in a temporary folder)."""
    before = _benchmarks_folder()
    yield
    assert _benchmarks_folder() == before


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished ``torchwm fit`` run of the ``two-phase-smoke`` recipe on TwoRooms, seed 0 (as ``probe.py
    --recipe two-phase-smoke`` asks for it, so that it finds every stage complete)."""
    from torchwm.pipeline import fit

    out = tmp_path_factory.mktemp("fit")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # see ENV
    try:
        fit(TWO_ROOMS, out, "two-phase-smoke", num_envs=2, progress=False)
    finally:
        torch.set_num_threads(threads)
    return out


@pytest.fixture(scope="module")
def tiny(fitted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained world model (one-layer encoder on 32x32 frames, K = 1 token of D = 16) whose checkpoint knows
    the fitted run's data: TwoRooms, frame skip 4, the smoke recipe's planner."""
    from torchwm.wm.config import JEPAConfig
    from torchwm.wm.world_model import WorldModel, WorldModelSpec

    cfg = JEPAConfig.preset("tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=32, embed_dim=32,
                            num_layers=1, num_heads=2, predictor_dim=32, predictor_depth=1, predictor_heads=2)  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = WorldModel(cfg, WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=16, width=32, heads=2))
    data = WorldModel.from_pretrained(fitted / "world_model").data
    model.data = dataclasses.replace(data, frame_history=model.window, recipe="")
    out = tmp_path_factory.mktemp("tiny") / "world_model"
    model.save_pretrained(out / "checkpoints" / "step_00000001")
    return out


@pytest.fixture(scope="module")
def planning_run(fitted: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``benchmarks/planning.py`` on the fitted model: ``run/`` (the bench output) and ``results/`` (the copies)."""
    root = tmp_path_factory.mktemp("planning")
    run("planning", "--checkpoint", fitted / "world_model", "--tag", "smoke", "--out", root / "run",
        "--results", root / "results", "--episodes", 2, "--max-steps", 2, "--horizon", 2, "--samples", 8,
        "--iterations", 1, "--gifs", 1, cwd=root)  # fmt: skip
    return root


# ----------------------------------------------------------------------------- planning


def test_planning_copies_the_bench_output_under_its_tag(planning_run: Path, fitted: Path) -> None:
    results = planning_run / "results"
    saved = read(results / "planning_smoke.json")
    assert saved == {**read(planning_run / "run" / "planning.json"), "command": saved["command"]}
    assert saved["command"].startswith("python benchmarks/planning.py --checkpoint")
    assert saved["checkpoint"] == str(fitted / "world_model") and saved["env_id"] == TWO_ROOMS
    assert set(saved["methods"]) == {"mpc_mppi", "greedy_one_step", "random"}  # the smoke recipe's planner
    for row in saved["methods"].values():
        assert row["episodes"] == 2 and len(row["records"]) == 2
        assert rate_with_interval(row["success_rate"], row["success_ci95"])
        assert finite(row["final_distance"], row["mean_return"], row["median_ms_per_step"])
        assert all(r["steps"] <= 2 for r in row["records"])
    assert saved["planners_ran"]["mppi"] == {"horizon": 2, "num_samples": 8, "iterations": 1, "cost": "latent_l2"}
    for name in ("planning_smoke.png", "planning_smoke_episode.gif", "planning_smoke_distance.png"):
        assert nonempty(results / name), name


def test_aggregate_planning_summarises_runs_per_method(planning_run: Path, tmp_path: Path) -> None:
    first = planning_run / "run"
    second = tmp_path / "seed1"  # the same run with another random-policy success rate
    second.mkdir()
    other = read(first / "planning.json")
    random_rate = other["methods"]["random"]["success_rate"]
    other["methods"]["random"]["success_rate"] = 1.0 - random_rate
    (second / "planning.json").write_text(json.dumps(other))
    out = tmp_path / "aggregate.json"
    table = run("aggregate_planning", "--out", out, f"seed0={first}", f"seed1={second}", cwd=tmp_path)
    result = read(out)
    assert result["env_id"] == TWO_ROOMS and result["runs"] == {"seed0": str(first), "seed1": str(second)}
    assert result["evaluation"]["episodes"] == 2 and result["evaluation"]["max_steps"] == 2
    assert set(result["methods"]) == {"mpc_mppi", "greedy_one_step", "random"}
    for method, entry in result["methods"].items():
        rates = [entry["per_seed"][s]["success_rate"] for s in ("seed0", "seed1")]
        assert entry["seeds"] == 2 and entry["success_rate_mean"] == pytest.approx(sum(rates) / 2, abs=1e-4)
        assert (entry["success_rate_min"], entry["success_rate_max"]) == (min(rates), max(rates))
        assert f"| {method} | **{entry['success_rate_mean']:.2f}**" in table
    assert result["methods"]["random"]["success_rate_mean"] == 0.5
    assert result["command"].startswith("python benchmarks/aggregate_planning.py --out")


def test_planning_speed_times_every_row_it_names(tiny: Path, tmp_path: Path) -> None:
    out = tmp_path / "planning_speed.json"
    run("planning_speed", "--checkpoint", tiny, "--calls", 2, "--batches", 1, 2, "--variants", "mppi:8:1",
        "cem:8:1:4:2", "--against", tiny, "--against-context", 2, "--out", out, cwd=tmp_path)  # fmt: skip
    result = read(out)
    rows = result["rows"]
    assert set(rows) == {"mppi_batch_1", "mppi_batch_2", "mppi_8x1", "cem_8x1_h4_c2", "against", "compiled_vs_eager"}
    for name in ("mppi_batch_1", "mppi_batch_2", "mppi_8x1", "cem_8x1_h4_c2"):
        row = rows[name]
        assert positive(row["median_ms_per_call"], row["p95_ms_per_call"], row["gflop_per_call"]), name
        assert positive(row["achieved_gflop_s"], row["ms_per_env"]), name
        assert finite(row["matmul_fraction"]) and row["matmul_fraction"] >= 0  # 3 decimals: a tiny model's is ~0.01
        assert row["p95_ms_per_call"] >= row["median_ms_per_call"]
        assert row["ms_per_env"] == pytest.approx(row["median_ms_per_call"] / row["envs"], abs=0.01)
    assert rows["mppi_batch_2"]["envs"] == 2 and rows["mppi_batch_1"]["num_samples"] == 16  # the recipe's budget
    assert (rows["cem_8x1_h4_c2"]["planner"], rows["cem_8x1_h4_c2"]["horizon"]) == ("cem", 4)
    assert rows["cem_8x1_h4_c2"]["context_steps"] == 2 and rows["against"]["context_steps"] == 2
    versus = rows["compiled_vs_eager"]
    assert positive(versus["eager_median_ms_per_call"], versus["against_eager_median_ms_per_call"])
    assert positive(result["matmul_gflop_s"]) and result["horizon"] == 8 and result["threads"] == 1


def test_goal_value_trains_a_distance_and_plans_with_it(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "goal_value.json"
    run("goal_value", "--runs", fitted, "--steps", 2, "--episodes", 2, "--out", out, cwd=tmp_path)
    result = read(out)
    (row,) = result["rows"]
    manifest = read(fitted / "episodes" / "manifest.json")
    assert row["transitions"] == sum(e["num_frames"] - 1 for e in manifest["episodes"])
    assert row["run"] == str(fitted) and row["episodes"] == 2 and row["eval_seed"] == 1000
    for key in ("spearman_distance_vs_geodesic", "spearman_l2_vs_geodesic",
                "spearman_distance_vs_geodesic_cross_room", "spearman_l2_vs_geodesic_cross_room"):  # fmt: skip
        assert finite(row[key]) and -1.0 <= row[key] <= 1.0, key
    for cost in ("latent_l2", "learned_distance"):
        assert row[f"success_rate_{cost}"] in (0.0, 0.5, 1.0)  # of two episodes
        assert result[f"success_rate_{cost}_mean"] == row[f"success_rate_{cost}"]
    assert positive(row["seconds"]) and row["value_training_s"] <= row["seconds"]
    assert result["config"] == {"steps": 2, "scale": 0.01, "gamma": 0.9, "expectile": 0.9}


def test_oracle_planning_on_the_true_dynamics_and_in_a_learned_latent(tiny: Path, tmp_path: Path) -> None:
    budget = ["--episodes", 2, "--max-steps", 3, "--samples", 8, "--iterations", 1]
    run("oracle_planning", *budget, "--horizon", 2, "--horizon", 3, "--out", tmp_path / "oracle.json", cwd=tmp_path)
    rows = read(tmp_path / "oracle.json")["rows"]
    assert [(r["env_id"], r["horizon"]) for r in rows] == [
        (TWO_ROOMS, 2), (TWO_ROOMS, 3), ("torchwm/PointMass-v0", 2), ("torchwm/PointMass-v0", 3)]  # fmt: skip
    for row in rows:
        assert row["cost"] == "position_l2" and row["episodes"] == 2 and row["num_samples"] == 8
        assert rate_with_interval(row["oracle_success_rate"], row["oracle_ci95"])
        assert rate_with_interval(row["random_success_rate"], row["random_ci95"])
        assert positive(row["median_ms_per_call"]) and row["learned_cost_checkpoint"] is None
    assert rows[0]["reset_options"] == {"different_rooms": True}
    run("oracle_planning", *budget, "--env", TWO_ROOMS, "--horizon", 2, "--learned-cost", tiny, "--skip-random",
        "--out", tmp_path / "learned.json", cwd=tmp_path)  # fmt: skip
    (row,) = read(tmp_path / "learned.json")["rows"]
    assert row["cost"] == "learned_latent_l2" and row["learned_cost_checkpoint"] == str(tiny)
    assert rate_with_interval(row["oracle_success_rate"], row["oracle_ci95"]) and "random_success_rate" not in row
    assert positive(row["median_ms_per_call"])


def test_latent_landscape_replaces_its_own_row(tiny: Path, tmp_path: Path) -> None:
    results = tmp_path / "results"
    results.mkdir()
    (results / "latent_landscape.json").write_text(json.dumps({"rows": [{"tag": "other"}, {"tag": "tiny"}]}))
    run("latent_landscape", "--checkpoint", tiny, "--tag", "tiny", "--goals", 4, "--results", results, cwd=tmp_path)
    rows = read(results / "latent_landscape.json")["rows"]
    assert [r["tag"] for r in rows] == ["other", "tiny"] and rows[0] == {"tag": "other"}
    row = rows[1]
    assert row["env_id"] == TWO_ROOMS and row["goals"] == 4 and row["checkpoint"] == str(tiny)
    assert row["pooling"] == "mean"
    assert 0.0 < row["nearest_cell_distance_median"] <= row["nearest_cell_distance_p90"] < 1.5
    assert -1.0 <= row["spearman_min"] <= row["spearman_mean"] <= 1.0
    assert set(row["ring_latent_distance"]) == {"0.03", "0.06", "0.1", "0.2", "0.4"}
    assert all(v >= 0 and finite(v) for v in row["ring_latent_distance"].values())
    assert nonempty(results / "latent_landscape_tiny.png")


def test_sb3_policies_trains_both_policies_and_evaluates_them(tiny: Path, tmp_path: Path) -> None:
    out, work = tmp_path / "sb3.json", tmp_path / "work"
    run("sb3_policies", "--checkpoint", tiny, "--latent-steps", 8, "--dream-steps", 8, "--dream-start-steps", 8,
        "--num-envs", 2, "--n-steps", 4, "--episodes", 2, "--max-steps", 3, "--work-dir", work, "--out", out,
        "--no-progress-bar", cwd=tmp_path)  # fmt: skip
    result = read(out)
    assert result["env_id"] == TWO_ROOMS and result["checkpoint"] == str(tiny)
    assert result["evaluation"] == {"episodes": 2, "max_steps": 3, "seed": 1000, "action_repeat": 4,
                                    "reset_options": {"different_rooms": True}}  # fmt: skip
    assert result["budgets"] == {"latent_steps": 8, "dream_steps": 8, "dream_start_steps": 8, "num_envs": 2}
    methods = result["methods"]
    assert set(methods) == {"ppo_latent", "ppo_dream", "random"}
    for row in methods.values():
        assert row["episodes"] == 2 and all(r["steps"] <= 3 for r in row["records"])
        assert rate_with_interval(row["success_rate"], row["success_ci95"]) and finite(row["final_distance"])
    for mode in ("latent", "dream"):
        row = methods[f"ppo_{mode}"]
        assert row["timesteps"] >= 8 and Path(row["policy"]) == work / f"ppo_{mode}" / "policy.zip"
        assert nonempty(Path(row["policy"]))
    assert methods["ppo_latent"]["real_env_steps"] == methods["ppo_latent"]["timesteps"] * 4  # action repeat 4
    assert methods["ppo_dream"]["real_env_steps"] == 8 * 4  # the random steps that gave the dream's starts
    assert methods["random"]["real_env_steps"] == 0


# ----------------------------------------------------------------------------- world models and representations


def test_probe_reuses_the_fitted_run_and_writes_its_report(fitted: Path, tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    shutil.copytree(fitted, work)
    weights = {p: p.stat().st_mtime_ns for p in work.rglob("model.safetensors")}
    stdout = run("probe", "--recipe", "two-phase-smoke", "--work-dir", work, "--heldout-episodes", 2, "--horizon", 2,
                 "--probe-stride", 2, "--rollout-candidates", 4, "--out-dir", out, "--progress", "false",
                 cwd=tmp_path)  # fmt: skip
    assert f"world model ready: {work / 'world_model'}" in stdout
    assert {p: p.stat().st_mtime_ns for p in work.rglob("model.safetensors")} == weights  # nothing retrained
    result = read(out / "probe.json")
    for key in ("probe_r2", "probe_r2_jepa_tokens", "probe_r2_random_encoder", "probe_r2_robust"):
        assert finite(result[key]) and result[key] <= 1.0, key
    for key in ("by_horizon", "encoded_by_horizon", "copy_by_horizon", "by_horizon_robust", "copy_by_horizon_robust"):
        assert len(result[f"probe_r2_{key}"]) == 2 and all(finite(v) and v <= 1 for v in result[f"probe_r2_{key}"])
    for name, probe in result["probes"].items():
        assert len(probe["r2_xy"]) == 2 and positive(probe["alpha"]) and finite(probe["r2"], *probe["r2_xy"]), name
    assert set(result["probes"]) == {"z", "robust", "jepa_tokens", "random_encoder", "region_means"}
    assert result["probes"]["robust"]["alpha"] == 100.0
    assert set(result["collapse"]) == {"z", "jepa_tokens"}
    assert all(finite(*stats.values()) for stats in result["collapse"].values())
    heldout = read(work / "heldout_2ep_seed500000" / "manifest.json")["episodes"]
    assert len(heldout) == 2 and result["data"]["heldout_steps"] == sum(e["num_frames"] - 1 for e in heldout)
    assert result["data"]["frame_skip"] == 4 and result["recipe"] == "two-phase-smoke"
    assert result["latent"]["K*D"] == result["latent"]["K"] * result["latent"]["D"]
    speed = result["speed"]
    assert positive(speed["rollout_ms"], speed["rollout_gflop"], speed["matmul_gflops_per_s"])
    assert speed["rollout_ms"] == result["rollout_ms_256x8"]
    assert nonempty(out / "probe_r2_vs_horizon.png")


def test_probe_ridge_with_fewer_rows_than_features_is_the_ridge_solution() -> None:
    """probe.py solves a wide ridge (8192 region-mean features, ~100 rows) from the rows' Gram matrix: the same
    weights as the textbook normal equations."""
    spec = importlib.util.spec_from_file_location("benchmark_probe", BENCH / "probe.py")
    assert spec is not None and spec.loader is not None
    probe = importlib.util.module_from_spec(spec)
    dont_write, sys.dont_write_bytecode = sys.dont_write_bytecode, True  # no __pycache__ in benchmarks/
    sys.modules[spec.name] = probe  # its dataclasses look their module up
    try:
        spec.loader.exec_module(probe)
    finally:
        sys.dont_write_bytecode = dont_write
        del sys.modules[spec.name]
    rng = np.random.default_rng(0)
    for rows, features in ((30, 80), (80, 30)):
        x, y = rng.normal(size=(rows, features)) * rng.uniform(0.5, 3, features), rng.normal(size=(rows, 2))
        mean, std = x.mean(0), x.std(0) + 1e-8
        xs = (x - mean) / std
        for alpha, (w, b) in zip((0.1, 10.0), probe.ridge_fit(x, y, np.array([0.1, 10.0]))):
            direct = np.linalg.solve(xs.T @ xs + alpha * np.eye(features), xs.T @ (y - y.mean(0))) / std[:, None]
            np.testing.assert_allclose(w, direct, rtol=1e-6, atol=1e-9)
            np.testing.assert_allclose(x @ w + b, x @ direct + y.mean(0) - mean @ direct, rtol=1e-6, atol=1e-9)


def test_recipe_stages_measures_every_stage_of_a_fitted_run(fitted: Path, tmp_path: Path) -> None:
    out = tmp_path / "recipe_stages.json"
    run("recipe_stages", "--run", fitted, "--recipe", "two-phase-smoke", "--steps", 1, "--out", out, cwd=tmp_path)
    result = read(out)
    assert result["run"] == str(fitted) and result["recipe"] == "two-phase-smoke" and positive(result["matmul_gflop_s"])
    stages = result["stages"]
    assert list(stages) == ["record", "jepa", "world_model_joint", "world_model"]
    assert positive(stages["record"]["episodes_per_s"], stages["record"]["frames_per_s"])
    for name in ("jepa", "world_model_joint", "world_model"):
        row = stages[name]
        assert positive(row["median_ms_per_step"], row["items_per_s"], row["gflop_per_step"], row["achieved_gflop_s"])
        assert finite(row["matmul_fraction"]) and row["matmul_fraction"] >= 0  # 3 decimals
        assert 0.0 <= row["data_wait_fraction"] <= 1.0
        summary = read(fitted / name / "summary.json")  # beside it: what the stage took in the run itself
        assert row["run_seconds"] == round(summary["seconds"], 1)
    assert stages["jepa"]["items_per_step"] == 16  # the recipe's batch


def test_dynamics_shapes_times_a_shape_and_retrains_phase_two_in_it(fitted: Path, tmp_path: Path) -> None:
    from torchwm.wm.world_model import WorldModel

    # One shape, the one that differs from the recipe's in both ways: each retrained shape costs 10-15 s here
    # (a phase-2 trainer encoding every frame, one step, a `torchwm bench planning` process), and the four are
    # the same code with other arguments.
    timing, shapes = tmp_path / "timing.json", tmp_path / "shapes"
    names = {"folded_action_mlp2": (False, 2.0)}
    run("dynamics_shapes", "--shapes", *names, "--calls", 2, "--results", timing,
        "--joint", fitted / "world_model_joint", "--episodes", fitted / "episodes", "--out", shapes,
        "--dynamics-steps", 1, "--bench-episodes", 1, cwd=tmp_path)  # fmt: skip
    result = read(timing)
    assert set(result["median_ms_per_call"]) == set(names) and positive(*result["median_ms_per_call"].values())
    assert result["threads"] == 1
    assert sorted(p.name for p in shapes.iterdir()) == sorted(names)
    for name, (token, ratio) in names.items():
        model = WorldModel.from_pretrained(shapes / name / "world_model")
        assert (model.spec.action_token, model.spec.mlp_ratio) == (token, ratio), name
        assert read(shapes / name / "world_model" / "summary.json")["steps"] == 1
        planning = read(shapes / name / "planning" / "planning.json")
        assert set(planning["methods"]) == {"mpc_mppi"} and planning["methods"]["mpc_mppi"]["episodes"] == 1


def test_pendulum_fits_from_pixels_and_plans_on_the_reward(tmp_path: Path) -> None:
    out = tmp_path / "pendulum.json"
    run("pendulum", "--out", tmp_path / "run", "--episodes", 2, "--jepa-steps", 1, "--joint-steps", 1,
        "--dynamics-steps", 1, "--eval-episodes", 1, "--env-steps", 8, "--results", out, cwd=tmp_path)  # fmt: skip
    result = read(out)
    assert (result["episodes"], result["env_steps_per_episode"], result["frame_skip"]) == (1, 8, 2)
    assert result["planner"]["name"] == "mppi" and result["planner"]["cost"] == "reward"
    assert positive(result["train_seconds"])
    assert set(result["methods"]) == {"mpc_mppi_reward", "random"}
    for row in result["methods"].values():
        assert len(row["returns"]) == 1 and positive(row["median_ms_per_step"])
        assert -16.3 * 8 <= row["mean_return"] <= 0.0  # Pendulum's reward lies in [-16.3, 0] a step
    assert read(tmp_path / "run" / "fit.json")["recipe"] == "two-phase"
    assert (tmp_path / "run" / "world_model" / "checkpoints").is_dir()


def test_learn_runs_the_loop_and_the_sac_reference_on_pendulum(tmp_path: Path) -> None:
    out = tmp_path / "learn.json"
    run("learn", "--envs", "pendulum", "--seeds", 0, "--out", tmp_path / "runs", "--results", out, "--recipe",
        "two-phase-smoke", "--seed-episodes", 2, "--rounds", 1, "--episodes-per-round", 1, "--update-steps", 2,
        "--eval-every", 1, "--eval-episodes", 1, "--reference", "--reference-eval-every", 300, "--no-progress",
        cwd=tmp_path, timeout=600)  # fmt: skip
    result = read(out)
    (row,) = result["rows"]
    assert (row["env"], row["seed"], row["metric"]) == ("pendulum", 0, "mean_return")
    assert row["env_steps"] == 3 * 200 and [r["round"] for r in row["curve"]] == [0, 1]
    assert -16.3 * 200 <= row["final_mean_return"] <= 0.0 and row["random"] is not None
    assert positive(row["wall_seconds"]) and row["command"].startswith("python benchmarks/learn.py")
    ref = result["references"]["pendulum"]
    assert [r["env_steps"] for r in ref["curve"]] == [300, 600] and ref["algorithm"] == "SAC"
    assert (tmp_path / "learn_pendulum.png").is_file()


def test_downstream_pretrains_probes_and_fine_tunes(tmp_path: Path) -> None:
    work, out = tmp_path / "work", tmp_path / "out"
    run("downstream", "--budget", "small", "--pretrain-videos", 2, "--labelled-videos", 5, "--pretrain-steps", 2,
        "--probe-epochs", 2, "--finetune-epochs", 1, "--work-dir", work, "--out-dir", out, cwd=tmp_path)  # fmt: skip
    result = read(out / "downstream.json")
    assert result["budget"] == "small" and result["settings"]["labelled_videos"] == 5
    assert result["settings"]["pretrain_steps"] == 2 and result["settings"]["finetune_epochs"] == 1
    for name in ("linear_probe", "attentive_probe", "random_linear_probe", "random_attentive_probe", "finetune"):
        assert finite(result[f"{name}_acc"]) and 0.0 <= result[f"{name}_acc"] <= 1.0, name
        assert finite(result[f"{name}_seconds"]) and result[f"{name}_seconds"] >= 0, name
    assert 0.0 <= result["static_linear_probe_acc"] <= 1.0 and result["chance_acc"] == 0.25
    assert result["linear_probe_margin"] == pytest.approx(
        result["linear_probe_acc"] - result["random_linear_probe_acc"])
    assert result["target_met"] == (result["linear_probe_margin"] >= 0.20)
    assert result["num_train"] + result["num_held_out"] == 2 * 4 * 5  # two 4-frame clips of each labelled video
    assert finite(result["pretrain_final_loss"]) and positive(result["pretrain_seconds"])
    assert result["finetune_steps"] >= 1
    for folder, count in (("pretrain", 2), ("labelled", 5)):
        for name in result["classes"]:
            assert len(list((work / folder / name).glob("*.mp4"))) == count
    assert nonempty(out / "downstream.png")


# ----------------------------------------------------------------------------- throughput and environments


def test_pretrain_throughput_measures_the_tiny_preset(tmp_path: Path) -> None:
    out = tmp_path / "nested" / "pretrain_throughput.json"
    run("pretrain_throughput", "--presets", "tiny", "--steps", 1, "--warmup", 0, "--threads", 1, "--out", out,
        cwd=tmp_path)  # fmt: skip
    result = read(out)
    assert positive(result["machine"]["cpu_count"])
    (row,) = result["results"]
    assert row["preset"] == "tiny" and row["threads"] == 1 and row["timed_steps"] == 1
    assert positive(row["clips_per_s"], row["end_to_end_clips_per_s"], row["step_ms_median"], row["gflop_per_step"])
    assert positive(row["achieved_gflop_s"], row["matmul_gflop_s"], row["matmul_fraction"])
    assert row["clips_per_s"] == pytest.approx(row["batch_size"] * 1000 / row["step_ms_median"], rel=0.01)
    assert row["matmul_fraction"] == pytest.approx(row["achieved_gflop_s"] / row["matmul_gflop_s"], abs=2e-3)
    assert row["config"]["batch_size"] == row["batch_size"] and row["config"]["precision"] == "fp32"


def test_gpu_pretrain_runs_its_cpu_dry_run(tmp_path: Path) -> None:
    """No GPU here: the script's CPU path is ``--dry-run`` (one tiny step of the trainer's own ``train_step``, its
    FLOPs counted, the table printed; by design it writes no JSON). Without a GPU the measuring run says so and
    writes nothing."""
    stdout = run("gpu_pretrain", "--dry-run", "--out", tmp_path / "gpu.json", cwd=tmp_path)
    (row,) = [line.split() for line in stdout.splitlines() if line.startswith("dry-run ") and "..." not in line]
    name, precision, mode, clips, ms, _, _, mfu, of_mm = row
    assert (precision, mode, mfu, of_mm) == ("fp32", "eager", "n/a", "n/a")
    assert float(clips) > 0 and float(clips) == pytest.approx(2 * 1000 / float(ms), rel=0.01)  # batch of 2
    assert "device: cpu" in stdout and list(tmp_path.iterdir()) == []
    no_gpu = run("gpu_pretrain", "--out", tmp_path / "gpu.json", cwd=tmp_path,
                 env={**ENV, "CUDA_VISIBLE_DEVICES": ""})  # fmt: skip
    assert "no CUDA device here" in no_gpu and list(tmp_path.iterdir()) == []


def test_env_throughput_times_every_env_and_the_latent_wrappers(tmp_path: Path) -> None:
    from torchwm.envs.registration import BUILTIN_ENVS

    out = tmp_path / "nested" / "env_throughput.json"
    stdout = run("env_throughput", "--steps", 100, "--rounds", 3, "--out", out, cwd=tmp_path)
    result = read(out)
    raw = [r for r in result["results"] if r["benchmark"] == "raw_env"]
    wrapped = [r for r in result["results"] if r["benchmark"] == "latent_wrapper"]
    assert [r["env_id"] for r in raw] == list(BUILTIN_ENVS)
    for row in raw:
        assert row["steps"] == 100 and positive(row["steps_per_s"]) and row["obs_shape"] == [64, 64, 3]
        assert row["seconds"] == pytest.approx(100 / row["steps_per_s"], abs=1e-4)  # 4 decimals
    assert [(r["model"], r["num_envs"]) for r in wrapped] == [("tiny", 1), ("tiny", 8), ("micro", 1), ("micro", 8)]
    for row in wrapped:
        assert row["steps"] == 3 * row["num_envs"] and row["device"] == "cpu"
        assert positive(row["wrapper_ms_per_step"], row["env_ms_per_step"], row["encode_ms_per_step"])
        assert positive(row["tight_wrapper_ms_per_step"], row["steps_per_s"])
        assert finite(row["overhead_pct"], row["tight_overhead_pct"])
    assert result["machine"]["torch_threads"] == 1
    assert len(stdout.splitlines()) == len(result["results"])


def test_import_time_times_fresh_interpreters(tmp_path: Path) -> None:
    out = tmp_path / "import_time.json"
    run("import_time", "--runs", 1, "--statements", "python", "import_torchwm", "--out", out, cwd=tmp_path)
    result = read(out)
    medians = result["median_wall_seconds"]
    assert set(medians) == {"python", "import_torchwm"} and positive(*medians.values()) and result["runs"] == 1
    assert result["import_torchwm_seconds_over_python"] == pytest.approx(
        medians["import_torchwm"] - medians["python"], abs=2e-3)


def test_suite_table_prints_one_line_per_environment(tmp_path: Path) -> None:
    from torchwm.bench.suite import row_key

    results = tmp_path / "suite.json"
    shutil.copy(BENCH / "results" / "suite.json", results)  # the committed results, read from a copy
    rows = read(results)["rows"]
    lines = run("suite_table", "--results", results, cwd=tmp_path).splitlines()
    keys = list(dict.fromkeys(row_key(r) for r in rows))
    assert lines[0].startswith("| env | metric | training seeds |") and len(lines) == 2 + len(keys)
    for key, line in zip(keys, lines[2:]):
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        mine = [r for r in rows if row_key(r) == key]
        mean = sum(r["value"] for r in mine) / len(mine)
        value = f"{mean:.2f}" if mine[0]["metric"] == "success_rate" else f"{mean:.0f}"
        assert cells[0] == key and cells[3].startswith(f"**{value}**"), line
        assert cells[2] == ", ".join(str(r["seed"]) for r in sorted(mine, key=lambda r: r["seed"]))
        target = mine[0]["target"]
        assert cells[9] == ("" if target is None else "yes" if mean >= target else "**no**")
