"""``torchwm demo``: the whole pipeline on the built-in TwoRooms environment, no downloads.

`torchwm.pipeline.fit` with the ``two-phase`` recipe (record random rollouts -> pretrain the tiny JEPA ->
the encoder fine-tuned jointly with the dynamics into a smooth latent -> the dynamics alone on that fixed
latent), then planning to goal images in the real environment with the recipe's planner beside a greedy
one-step planner and a random policy -> JSON (with each stage's wall time), plot, GIF.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torchwm.agents.benchmark import benchmark_config_for, run_planning_benchmark
from torchwm.envs.registration import TWO_ROOMS_ID
from torchwm.pipeline import fit
from torchwm.wm.config_base import Config
from torchwm.wm.recipes import get_recipe
from torchwm.wm.runs import code_version

RECIPE = "two-phase"
"""The recipe the demo trains (the same one `torchwm fit` and the benchmarks use)."""
QUICK_RECIPE = "two-phase-smoke"
"""``--quick``: the same stages on a toy budget (a smoke test, not a result)."""
@dataclass(frozen=True)
class DemoJob(Config):
    """``torchwm demo``: where it writes, and whether to run the toy budget."""

    out: str = ""
    """Run folder (empty: ``runs/demo``, or ``runs/demo-quick`` with ``--quick``, so the two never share one)."""
    quick: bool = False
    """A toy budget for every stage (a smoke test, not a result)."""


EVAL_EPISODES = {False: 10, True: 2}
"""Planning episodes of the demo (the 50-episode benchmark is `torchwm bench planning`)."""


def run_demo(out_dir: str | Path = "", quick: bool = False) -> dict[str, Any]:
    """Run every stage, print what each gave, write ``demo.json`` and return the planning summary.

    ``out_dir`` empty: ``runs/demo``, or ``runs/demo-quick`` with ``quick``."""
    out, t0 = Path(out_dir or ("runs/demo-quick" if quick else "runs/demo")), time.perf_counter()
    recipe = get_recipe(QUICK_RECIPE if quick else RECIPE)
    print(
        f"[1/2] fit: recipe {recipe.name!r} on {TWO_ROOMS_ID}: {recipe.episodes} random episodes (frame skip "
        f"{recipe.frame_skip}), JEPA {recipe.jepa_steps} steps, encoder with dynamics {recipe.joint_steps} "
        f"steps, dynamics alone {recipe.dynamics_steps} steps -> {out}"
    )
    fitted = fit(TWO_ROOMS_ID, out, recipe)
    episodes = EVAL_EPISODES[quick]
    print(f"[2/2] planning to goal images in {episodes} episodes (start and goal in different rooms)")
    t_plan = time.perf_counter()
    bench = benchmark_config_for(fitted.world_model, episodes=episodes, gifs=1)
    result = run_planning_benchmark(fitted.world_model, out / "planning", bench)  # on one thread (its default)
    stages = {**fitted.seconds, "planning": time.perf_counter() - t_plan}
    planner = f"mpc_{bench.planners[0]}"
    row, random_row = result["methods"][planner], result["methods"]["random"]
    wall = time.perf_counter() - t0
    summary = {
        "recipe": recipe.name,
        "wall_seconds": wall,
        "stage_seconds": stages,
        "planner": planner,
        "success_rate": row["success_rate"],
        "success_ci95": row["success_ci95"],
        "random_success_rate": random_row["success_rate"],
        "median_ms_per_call": row["median_ms_per_step"],
        "episodes": episodes,
        "world_model": fitted.world_model,
        "machine": result["machine"],  # the CPU, its instruction set and matmul rate: the times above are its
        "command": "torchwm demo" + (" --quick" if quick else ""),
        "code_version": code_version(),
    }
    (out / "demo.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(
        f"done in {wall:.0f} s ({', '.join(f'{k} {v:.0f} s' for k, v in stages.items())}): {planner} success "
        f"{row['success_rate']:.2f} (random {random_row['success_rate']:.2f}), median "
        f"{row['median_ms_per_step']:.1f} ms a planning call ({bench.action_repeat} env steps); "
        f"plot {out / 'planning' / 'planning.png'}, GIF {out / 'planning' / 'episode_0.gif'}, {out / 'demo.json'}"
    )
    return result
