"""``torchwm demo``: the whole pipeline on the built-in TwoRooms environment, no downloads.

record random rollouts -> pretrain the tiny JEPA on them -> train the world model in two phases (the
encoder fine-tuned jointly with the dynamics into a smooth latent, then the dynamics alone on that fixed
latent) -> plan to goal images in the real environment (MPPI beside a random policy) -> JSON, plot, GIF.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torchwm.envs  # noqa: F401  (registers the built-in environments)
from torchwm.agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
from torchwm.agents.planners import MPPIConfig
from torchwm.envs.record import record
from torchwm.wm.config import JEPAConfig
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer


@dataclass(frozen=True)
class DemoBudget:
    """How much of each stage the demo runs."""

    episodes: int = 300
    jepa_steps: int = 400
    joint_steps: int = 600
    dynamics_steps: int = 3000
    eval_episodes: int = 10
    eval_max_steps: int = 25


FULL = DemoBudget()
QUICK = DemoBudget(
    episodes=8, jepa_steps=5, joint_steps=5, dynamics_steps=5, eval_episodes=2, eval_max_steps=5
)
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


def joint_config(out: Path, episodes_dir: Path, steps: int) -> WorldModelConfig:
    """Phase 1 (PLDM-style): the JEPA encoder fine-tuned with the dynamics on short sequences, held apart
    from collapse by a strong variance term, and smooth in time, so that latent distance follows distance
    in the arena. Targets come from the online weights (EMA momentum 0)."""
    return WorldModelConfig(
        root_path=str(episodes_dir),
        encoder_checkpoint=str(out / "jepa"),
        freeze_encoder=False,
        seq_len=4,
        predict_horizon=3,
        batch_size=16,
        var_weight=10.0,
        smooth_weight=2.0,
        ema_start=0.0,
        ema_end=0.0,
        width=64,
        steps=steps,
        output_dir=str(out / "world_model_joint"),
        checkpoint_interval=max(steps // 2, 1),
    )


def dynamics_config(out: Path, episodes_dir: Path, steps: int) -> WorldModelConfig:
    """Phase 2: the dynamics alone, on the encoder and latent head of phase 1 (``out/world_model_joint``)."""
    return WorldModelConfig(
        root_path=str(episodes_dir),
        encoder_checkpoint=str(out / "world_model_joint"),
        width=64,
        steps=steps,
        output_dir=str(out / "world_model"),
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
    print(f"[3/4] world model: {budget.joint_steps} steps fine-tuning the encoder with the dynamics")
    WorldModelTrainer(joint_config(out, episodes_dir, budget.joint_steps)).run()
    print(f"      then {budget.dynamics_steps} steps of the dynamics alone on that latent")
    checkpoint = WorldModelTrainer(dynamics_config(out, episodes_dir, budget.dynamics_steps)).run()
    print(
        f"[4/4] planning to goal images in {budget.eval_episodes} episodes (start and goal in different rooms)"
    )
    bench = PlanningBenchmarkConfig(
        episodes=budget.eval_episodes,
        max_steps=budget.eval_max_steps,
        action_repeat=FRAME_SKIP,
        planners=("mppi",),
        mppi=MPPIConfig(num_samples=100, num_elites=12),
        gifs=1,
    )
    result = run_planning_benchmark(checkpoint, out / "planning", bench)  # on one thread (its default)
    mppi = result["methods"]["mpc_mppi"]
    print(
        f"done in {time.perf_counter() - t0:.0f} s: MPPI success {mppi['success_rate']:.2f} "
        f"(random {result['methods']['random']['success_rate']:.2f}), median "
        f"{mppi['median_ms_per_step']:.1f} ms a planning call ({FRAME_SKIP} env steps); "
        f"plot {out / 'planning' / 'planning.png'}, "
        f"GIF {out / 'planning' / 'episode_0.gif'}"
    )
    return result
