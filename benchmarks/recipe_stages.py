"""Every stage of the world-model recipe measured like pretraining: items per second, the step's FLOP count,
achieved FLOP/s as a fraction of this machine's fp32 matmul rate, and how long the step waited for data.

    python benchmarks/recipe_stages.py --run runs/suite/tworooms/seed0

``--run`` is a finished ``torchwm fit`` folder (its episodes, JEPA and phase-1 model feed the stages). Each
training stage is built exactly as the recipe builds it (its own trainer, config and data), then ``--steps``
optimiser steps are timed through the trainer's own `TrainingLoop.train_step` after two untimed ones, and
one step is counted with `torch.utils.flop_counter.FlopCounterMode` (forward and backward). The recording stage
is timed on fresh episodes. Beside each: the seconds the stage took in the run itself (its summary.json).
Writes benchmarks/results/recipe_stages.json (``items_per_s``, ``median_ms_per_step``, ``gflop_per_step``,
``matmul_fraction``, ``data_wait_fraction``).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode
from torchwm.agents.machine import machine_facts, matmul_gflop_s
from torchwm.envs.record import record
from torchwm.wm.loop import LoopSettings, TrainingLoop
from torchwm.wm.recipes import get_recipe
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_trainer import WorldModelTrainer

RESULTS = Path(__file__).resolve().parent / "results" / "recipe_stages.json"


def time_loop(loop: TrainingLoop, items_per_step: int, steps: int, rate: float) -> dict[str, Any]:
    """Time ``steps`` train steps (data fetch apart), then count one step's FLOPs."""
    batches = loop.task.batches(0)
    for _ in range(2):
        loop.train_step(next(batches))
    step_s, wait_s = [], []
    for _ in range(steps):
        t0 = time.perf_counter()
        batch = next(batches)
        t1 = time.perf_counter()
        loop.train_step(batch)
        t2 = time.perf_counter()
        wait_s.append(t1 - t0)
        step_s.append(t2 - t0)
    batch = next(batches)
    with FlopCounterMode(display=False) as counter:
        loop.train_step(batch)
    gflop = counter.get_total_flops() / 1e9
    median = statistics.median(step_s)
    return {
        "items_per_step": items_per_step,
        "median_ms_per_step": round(1000 * median, 1),
        "items_per_s": round(items_per_step / median, 1),
        "gflop_per_step": round(gflop, 3),
        "achieved_gflop_s": round(gflop / median, 1),
        "matmul_fraction": round(gflop / median / rate, 3),
        "data_wait_fraction": round(sum(wait_s) / sum(step_s), 3),
    }


def wm_loop(trainer: WorldModelTrainer) -> TrainingLoop:
    cfg = trainer.cfg
    settings = LoopSettings.of(cfg, cfg.steps, min_learning_rate=cfg.learning_rate * 0.01, progress=False,
                               items_per_step=cfg.batch_size)  # fmt: skip
    return TrainingLoop(trainer, trainer.optimizer, settings)


def run_seconds(run_dir: Path) -> dict[str, Any]:
    """What the stage took in the run itself (its summary.json), if it is there."""
    path = run_dir / "summary.json"
    if not path.is_file():
        return {}
    summary = json.loads(path.read_text())
    rate = summary.get("clips_per_s", summary.get("seqs_per_s"))
    return {"run_seconds": round(summary["seconds"], 1), "run_items_per_s": rate,
            "run_data_wait_fraction": summary.get("data_wait_fraction")}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a finished `torchwm fit` run folder")
    p.add_argument("--env", default="torchwm/TwoRooms-v0", help="the run's environment (for the recording stage)")
    p.add_argument("--recipe", default="two-phase")
    p.add_argument("--steps", type=int, default=20, help="timed steps per training stage")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    run, recipe = Path(args.run), get_recipe(args.recipe)
    rate = matmul_gflop_s()
    stages: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        episodes = 16
        record(args.env, "random", episodes, Path(tmp) / "episodes", num_envs=4, seed=777_000,
               frame_skip=recipe.frame_skip, image_size=recipe.image_size, progress=False)  # fmt: skip
        seconds = time.perf_counter() - t0
        manifest = json.loads((Path(tmp) / "episodes" / "manifest.json").read_text())
        frames = sum(e["num_frames"] for e in manifest["episodes"])
        stages["record"] = {"episodes_per_s": round(episodes / seconds, 2), "frames_per_s": round(frames / seconds, 1),
                            "seconds_for_recipe": round(recipe.episodes / episodes * seconds, 1)}  # fmt: skip

        jepa_cfg = replace(recipe.jepa_config(run / "episodes", Path(tmp) / "jepa"), progress=False, resume=False)
        agent = JEPAAgent(jepa_cfg)
        loop = agent.training_loop()
        stages["jepa"] = {**time_loop(loop, jepa_cfg.batch_size, args.steps, rate), **run_seconds(run / "jepa")}

        t0 = time.perf_counter()
        joint = WorldModelTrainer(replace(recipe.joint_config(run / "episodes", run / "jepa", Path(tmp) / "joint"),
                                          progress=False, resume=False))  # fmt: skip
        setup = time.perf_counter() - t0
        stages["world_model_joint"] = {**time_loop(wm_loop(joint), joint.cfg.batch_size, args.steps, rate),
                                       "setup_seconds": round(setup, 1), **run_seconds(run / "world_model_joint")}  # fmt: skip

        t0 = time.perf_counter()
        dyn = WorldModelTrainer(replace(recipe.dynamics_config(run / "episodes", run / "world_model_joint",
                                                               Path(tmp) / "dyn"), progress=False, resume=False))  # fmt: skip
        setup = time.perf_counter() - t0  # encoding every frame once (the frozen encoder's feature cache)
        stages["world_model"] = {**time_loop(wm_loop(dyn), dyn.cfg.batch_size, args.steps * 3, rate),
                                 "setup_seconds": round(setup, 1), **run_seconds(run / "world_model")}  # fmt: skip
    result = {
        "run": str(run), "recipe": recipe.name, "threads": torch.get_num_threads(), "matmul_gflop_s": round(rate, 1),
        "machine": machine_facts(), "stages": stages,
        "command": " ".join(["python", "benchmarks/recipe_stages.py", *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for name, row in stages.items():
        print(f"{name:>18}: {json.dumps(row)}")
    return result


if __name__ == "__main__":
    main()
