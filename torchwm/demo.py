"""``torchwm demo``: the whole pipeline on the built-in TwoRooms environment, no downloads.

record random rollouts -> pretrain the tiny JEPA on them -> train the world model on the frozen
encoder -> plan to goal images in the real environment (CEM beside a random policy) -> JSON, plot, GIF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import envs  # noqa: F401  (registers the built-in environments)
from agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
from agents.planners import CEMConfig
from envs.record import record
from wm.config import JEPAConfig
from wm.trainer import JEPAAgent
from wm.wm_trainer import WorldModelConfig, WorldModelTrainer


@dataclass(frozen=True)
class DemoBudget:
    """How much of each stage the demo runs."""

    episodes: int = 300
    jepa_steps: int = 400
    world_model_steps: int = 1000
    eval_episodes: int = 10
    eval_max_steps: int = 25


FULL = DemoBudget()
QUICK = DemoBudget(episodes=8, jepa_steps=5, world_model_steps=5, eval_episodes=2, eval_max_steps=5)
FRAME_SKIP = 4
"""Environment steps per recorded step and per planned action: the planner's horizon of 8 model steps
looks 32 environment steps ahead, far enough to find the door between the rooms."""


def demo_jepa_config(out: Path, episodes_dir: Path, steps: int) -> JEPAConfig:
    """The tiny JEPA of the demo: a per-frame (spatial) encoder trained on pairs of consecutive recorded
    frames (``FRAME_SKIP`` environment steps apart)."""
    return JEPAConfig.preset(
        "tiny",
        dataset="rollouts",
        root_path=str(episodes_dir),
        encoder="spatial",
        tubelet_size=1,
        num_frames=2,
        frame_step=1,
        max_steps=steps,
        epochs=1000,
        output_dir=str(out / "jepa"),
        checkpoint_interval=max(steps // 2, 1),
    )


def run_demo(out_dir: str | Path = "runs/demo", quick: bool = False) -> dict:
    """Run every stage, print what each gave, and return the planning summary."""
    out, budget, t0 = Path(out_dir), (QUICK if quick else FULL), time.perf_counter()
    episodes_dir = out / "episodes"
    print(f"[1/4] recording {budget.episodes} random episodes of torchwm/TwoRooms-v0 -> {episodes_dir}")
    record(
        "torchwm/TwoRooms-v0",
        "random",
        budget.episodes,
        episodes_dir,
        num_envs=4,
        seed=0,
        frame_skip=FRAME_SKIP,
    )
    print(f"[2/4] pretraining the tiny JEPA for {budget.jepa_steps} steps")
    summary = JEPAAgent(demo_jepa_config(out, episodes_dir, budget.jepa_steps)).train()
    print(f"      loss {summary.final_loss:.4f}, {summary.clips_per_s:.1f} clips/s")
    print(f"[3/4] training the world model for {budget.world_model_steps} steps on the frozen encoder")
    wm_cfg = WorldModelConfig(
        root_path=str(episodes_dir),
        encoder_checkpoint=str(out / "jepa"),
        steps=budget.world_model_steps,
        output_dir=str(out / "world_model"),
        width=64,
        checkpoint_interval=max(budget.world_model_steps // 2, 1),
    )
    checkpoint = WorldModelTrainer(wm_cfg).run()
    print(
        f"[4/4] planning to goal images in {budget.eval_episodes} episodes (start and goal in different rooms)"
    )
    bench = PlanningBenchmarkConfig(
        episodes=budget.eval_episodes,
        max_steps=budget.eval_max_steps,
        action_repeat=FRAME_SKIP,
        planners=("cem",),
        cem=CEMConfig(num_samples=100, num_elites=10, iterations=2),
        gifs=1,
    )
    result = run_planning_benchmark(checkpoint, out / "planning", bench)
    cem = result["methods"]["mpc_cem"]
    print(
        f"done in {time.perf_counter() - t0:.0f} s: CEM success {cem['success_rate']:.2f} "
        f"(random {result['methods']['random']['success_rate']:.2f}), "
        f"median {cem['median_ms_per_step']:.1f} ms/step; plot {out / 'planning' / 'planning.png'}, "
        f"GIF {out / 'planning' / 'episode_0.gif'}"
    )
    return result
