"""The planning benchmark and the demo run end to end on tiny budgets (behaviour, not speed)."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import pytest
import torch
import torchwm.envs  # noqa: F401
from torchwm.agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
from torchwm.agents.planners import CEMConfig, MPPIConfig
from torchwm.envs.reset_options import ResetOptions
from torchwm.wm.config import JEPAConfig
from torchwm.wm.world_model import WorldModel, WorldModelSpec


@pytest.fixture
def tiny_world_model(tmp_path: Path) -> Path:
    cfg = JEPAConfig.preset(
        "tiny",
        encoder="spatial",
        tubelet_size=1,
        num_frames=2,
        image_size=32,
        embed_dim=32,
        num_layers=1,
        num_heads=2,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
    )
    spec = WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=16, width=32, heads=2)
    model = WorldModel(cfg, spec, freeze_encoder=False)
    return model.save_pretrained(tmp_path / "wm" / "checkpoints" / "step_00000001")


def test_reset_options_reach_the_environment() -> None:
    env = ResetOptions(gym.make("torchwm/TwoRooms-v0"), {"different_rooms": True})
    rooms = []
    for seed in range(20):
        _, info = env.reset(seed=seed)
        base = env.unwrapped
        rooms.append(base.room(info["agent_pos"][0]) != base.room(info["goal_pos"][0]))
    assert all(rooms)


def test_planning_benchmark_writes_json_plot_and_gif(tiny_world_model: Path, tmp_path: Path) -> None:
    cfg = PlanningBenchmarkConfig(
        episodes=2,
        max_steps=4,
        horizon=3,
        gifs=1,
        cem=CEMConfig(num_samples=16, num_elites=4, iterations=1),
        mppi=MPPIConfig(num_samples=16, num_elites=4, iterations=1),
    )
    out = tmp_path / "bench"
    summary = run_planning_benchmark(tiny_world_model.parent.parent, out, cfg)
    assert set(summary["methods"]) == {"mpc_cem", "mpc_mppi", "greedy_one_step", "random"}
    for row in summary["methods"].values():
        assert row["episodes"] == 2 and 0.0 <= row["success_rate"] <= 1.0
        lo, hi = row["success_ci95"]
        assert lo <= row["success_rate"] <= hi
    saved = json.loads((out / "planning.json").read_text())
    assert saved["methods"]["random"]["steps"] == summary["methods"]["random"]["steps"]
    # Its milliseconds say which machine they are from: the CPU, torch's instruction set, the matmul rate.
    machine = saved["machine"]
    assert machine["cpu_capability"] == torch.backends.cpu.get_cpu_capability() and machine["cpu"]
    assert machine["matmul_gflop_s_1_thread"] > 0 and machine["torch"] == torch.__version__
    for name in ("planning.png", "episode_0.gif", "episode_0_distance.png"):
        assert (out / name).stat().st_size > 0
    # The settings each planner ran with: the job's horizon, not the nested configs' own default.
    assert saved["planners_ran"] == {name: {"horizon": 3, "num_samples": 16, "iterations": 1, "cost": "latent_l2"}
                                     for name in ("cem", "mppi")}  # fmt: skip
    assert saved["config"]["mppi"]["horizon"] == saved["config"]["cem"]["horizon"] == 3
    assert saved["distance_key"] == "distance" and saved["methods"]["random"]["final_distance"] is not None


def test_the_reported_distance_comes_from_the_key_named(tiny_world_model: Path, tmp_path: Path) -> None:
    from torchwm.cli import main

    args = ["bench", "planning", "--checkpoint", str(tiny_world_model.parent.parent), "--episodes", "1",
            "--max-steps", "2", "--planners", "mppi", "--samples", "8", "--iterations", "1", "--horizon", "2",
            "--gifs", "0", "--out", str(tmp_path)]  # fmt: skip
    assert main([*args, "--distance-key", "goal_dist"]) == 0  # TwoRooms reports no 'goal_dist'
    saved = json.loads((tmp_path / "planning.json").read_text())
    assert saved["distance_key"] == "goal_dist" and saved["methods"]["random"]["final_distance"] is None


def test_bench_planning_cli(tiny_world_model: Path, tmp_path: Path) -> None:
    from torchwm.cli import main

    out = tmp_path / "cli_bench"
    code = main(
        [
            "bench",
            "planning",
            "--checkpoint",
            str(tiny_world_model),
            "--episodes",
            "1",
            "--max-steps",
            "2",
            "--horizon",
            "2",
            "--planners",
            "cem",
            "--gifs",
            "0",
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert set(json.loads((out / "planning.json").read_text())["methods"]) == {
        "mpc_cem",
        "greedy_one_step",
        "random",
    }


def test_demo_quick_runs_every_stage(tmp_path: Path) -> None:
    from torchwm.demo import run_demo

    result = run_demo(tmp_path / "demo", quick=True)
    assert {"mpc_mppi", "random"} <= set(result["methods"])
    for path in (
        "episodes/manifest.json",
        "jepa/summary.json",
        "world_model_joint/summary.json",
        "world_model/summary.json",
        "planning/episode_0.gif",
    ):
        assert (tmp_path / "demo" / path).exists(), path
    demo = json.loads((tmp_path / "demo" / "demo.json").read_text())
    assert set(demo["stage_seconds"]) == {"record", "pretrain", "world_model_joint", "world_model", "planning"}
    assert demo["machine"]["matmul_gflop_s_1_thread"] > 0


def test_planning_benchmark_sets_its_threads_and_restores_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import torchwm.agents.benchmark as benchmark

    seen = []
    monkeypatch.setattr(benchmark, "_run_planning_benchmark", lambda *a: seen.append(torch.get_num_threads()) or {})
    before = torch.get_num_threads()
    benchmark.run_planning_benchmark("unused", "unused", PlanningBenchmarkConfig(threads=before + 1))
    assert seen == [before + 1] and torch.get_num_threads() == before


def test_the_plot_takes_a_row_without_successes(tmp_path: Path) -> None:
    from torchwm.agents.benchmark import plot_table
    from torchwm.agents.evaluate import wilson_interval

    rows = {"mpc": {"success_rate": 0.0, "success_ci95": list(wilson_interval(0, 50)), "median_ms_per_step": 30.0}}
    plot_table(rows, tmp_path / "p.png", "no successes")  # Wilson's lower bound is ~1e-17 above 0 here
    assert (tmp_path / "p.png").stat().st_size > 0


def test_samples_alone_keep_the_recipes_rounds(tmp_path: Path) -> None:
    """``--samples`` changes the samples (and the elites that follow from them), not the recipe's iterations."""
    from torchwm.agents.benchmark import PlanningJob
    from torchwm.wm.planning_spec import PlanningDefaults
    from torchwm.wm.world_model import DataFacts

    model = WorldModel(
        JEPAConfig.preset("tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=32, embed_dim=32,
                          num_layers=1, num_heads=2, predictor_dim=32, predictor_depth=1, predictor_heads=2),
        WorldModelSpec(action_dim=2, latent_grid=1, latent_dim=16, width=32, heads=2),
    )  # fmt: skip
    model.data = DataFacts(planning=PlanningDefaults(num_samples=50, iterations=2, horizon=8, max_steps=25))
    ckpt = model.save_pretrained(tmp_path / "wm")
    cfg = PlanningJob(checkpoint=str(ckpt), samples=100).benchmark_config()
    assert (cfg.mppi.num_samples, cfg.mppi.num_elites, cfg.mppi.iterations) == (100, 12, 2)
    assert cfg.cem.iterations == 2  # the recipe's rounds apply to both planners
    cfg = PlanningJob(checkpoint=str(ckpt), samples=100, iterations=3).benchmark_config()
    assert cfg.mppi.iterations == cfg.cem.iterations == 3
    assert (cfg.mppi.init_std, cfg.cem.init_std) == (2.0, 1.0)  # each planner's own first-round spread
    cfg = PlanningJob(checkpoint=str(ckpt), samples=100, init_std=0.5).benchmark_config()
    assert cfg.mppi.init_std == cfg.cem.init_std == 0.5 and cfg.mppi.num_samples == 100
    cfg = PlanningJob(checkpoint=str(ckpt), narrow_std=0.125, narrow_fraction=0.25).benchmark_config()
    assert (cfg.mppi.narrow_std, cfg.mppi.narrow_fraction, cfg.cem.narrow_std) == (0.125, 0.25, 0.125)


def test_a_new_sample_budget_keeps_the_first_round() -> None:
    from torchwm.agents.benchmark import PlanningBenchmarkConfig, with_budget
    from torchwm.agents.planners import MPPIConfig

    old = MPPIConfig(num_samples=50, num_elites=6, init_std=0.3, narrow_std=0.1, narrow_fraction=0.25)
    new = with_budget(PlanningBenchmarkConfig(mppi=old), 100).mppi
    assert (new.num_samples, new.num_elites) == (100, 12)
    assert (new.init_std, new.narrow_std, new.narrow_fraction) == (0.3, 0.1, 0.25)


def test_without_matplotlib_the_benchmark_writes_its_json_and_gif_and_says_how_to_get_plots(
    tiny_world_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` now raises ImportError
    cfg = PlanningBenchmarkConfig(episodes=1, max_steps=2, horizon=2, gifs=1, planners=("mppi",),
                                  mppi=MPPIConfig(num_samples=8, num_elites=2, iterations=1))  # fmt: skip
    with pytest.warns(UserWarning, match=r"pip install 'torchwm\[plots\]'"):
        run_planning_benchmark(tiny_world_model.parent.parent, tmp_path, cfg)
    assert (tmp_path / "planning.json").is_file() and (tmp_path / "episode_0.gif").is_file()
    assert not list(tmp_path.glob("*.png"))


def test_torchwm_imports_and_its_commands_start_without_matplotlib() -> None:
    code = "import sys; sys.modules['matplotlib'] = None; import torchwm; from torchwm.cli import main; main(['fit', '--help'])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and "usage: torchwm fit" in out.stdout, out.stderr[-2000:]


def test_the_checkpoints_planning_spec_sets_what_the_planners_run(tiny_world_model: Path, tmp_path: Path) -> None:
    from torchwm.agents.benchmark import benchmark_config_for, planner_settings
    from torchwm.wm.planning_spec import PlanningDefaults

    model = WorldModel.from_pretrained(tiny_world_model)
    model.data = replace(model.data, planning=PlanningDefaults(planner="cem", num_samples=40, iterations=None,
                                                               horizon=5, context_steps=2, max_steps=9))  # fmt: skip
    ckpt = model.save_pretrained(tmp_path / "spec")
    cfg = benchmark_config_for(ckpt)
    assert cfg.planners == ("cem",) and (cfg.horizon, cfg.context_steps, cfg.max_steps) == (5, 2, 9)
    # elites: a tenth of the samples for CEM, an eighth for MPPI; no rounds in the spec: each planner's own
    assert (cfg.cem.num_samples, cfg.cem.num_elites, cfg.cem.iterations) == (40, 4, CEMConfig().iterations)
    assert (cfg.mppi.num_samples, cfg.mppi.num_elites, cfg.mppi.iterations) == (40, 5, MPPIConfig().iterations)
    assert (cfg.mppi.init_std, cfg.cem.init_std, cfg.mppi.cost, cfg.mppi.cost_on) == (2.0, 1.0, "latent_l2", "sum")
    other = PlanningDefaults(num_samples=16, iterations=1)
    cfg = benchmark_config_for(ckpt, planning=other, max_steps=3)  # another spec in place of the checkpoint's
    assert cfg.planners == ("mppi",) and (cfg.horizon, cfg.context_steps, cfg.max_steps) == (8, 1, 3)
    assert (cfg.mppi.num_samples, cfg.mppi.num_elites, cfg.mppi.iterations, cfg.cem.num_elites) == (16, 2, 1, 2)
    assert planner_settings(other) == replace(cfg.mppi, horizon=other.horizon)
    assert benchmark_config_for(tiny_world_model) == PlanningBenchmarkConfig()  # no spec: the benchmark's own


def test_a_planning_job_passes_every_field_it_shares_with_the_benchmark_config(tiny_world_model: Path) -> None:
    from torchwm.agents.benchmark import PlanningJob

    job_only = {f.name for f in fields(PlanningJob)} - {f.name for f in fields(PlanningBenchmarkConfig)}
    assert job_only == {"checkpoint", "out", "env", "different_rooms", "samples", "elites", "iterations", "init_std",
                        "narrow_std", "narrow_fraction", "cost_on", "cost"}  # translated, not passed through  # fmt: skip
    given: dict[str, Any] = {
        "episodes": 3, "max_steps": 4, "seed": 7, "planners": ("cem",), "horizon": 3, "context_steps": 2,
        "action_repeat": 2, "gifs": 0, "threads": 2, "baselines": False, "compile": True, "goal": "offline",
        "goal_function": "m:f", "goal_episodes": "held", "goal_offset": 5, "success_distance": 0.5,
        "episode_options": "m:o", "distance_key": "d", "imports": ("json",),
    }  # fmt: skip
    cfg = PlanningJob(checkpoint=str(tiny_world_model), **given).benchmark_config()
    assert {k: getattr(cfg, k) for k in given} == given
    assert cfg.mppi == PlanningBenchmarkConfig().mppi and cfg.cem == PlanningBenchmarkConfig().cem
