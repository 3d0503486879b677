"""Cheaper dynamics shapes against the recipe's: the planning call's time on one thread, and (with --joint)
phase 2 retrained in each shape on one phase-1 latent and planned with on TwoRooms.

    python benchmarks/dynamics_shapes.py                                  # timing only (random weights)
    python benchmarks/dynamics_shapes.py --joint runs/demo/world_model_joint --episodes runs/demo/episodes

Shapes: the action as a token of its own (the recipe) or added to every latent token (DINO-WM's
conditioning), MLP ratio 4 (the recipe) or 2. Timing: one MPPI 50 x 2 call, horizon 8, median of 40, on a
model of each shape with random weights (the arithmetic does not depend on the weights). Writes
benchmarks/results/dynamics_shapes_timing.json (and, with --joint, runs the planning benchmark on each
retrained model under --out).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.planners import MPPI, MPPIConfig
from torchwm.wm.config import JEPAConfig
from torchwm.wm.recipes import get_recipe
from torchwm.wm.wm_trainer import WorldModelTrainer
from torchwm.wm.world_model import WorldModel, WorldModelSpec

SHAPES = {"action_token_mlp4": (True, 4.0), "action_token_mlp2": (True, 2.0),
          "folded_action_mlp4": (False, 4.0), "folded_action_mlp2": (False, 2.0)}  # fmt: skip
RESULTS = Path(__file__).resolve().parent / "results" / "dynamics_shapes_timing.json"


def time_shape(action_token: bool, mlp_ratio: float, calls: int = 40) -> float:
    """Median ms of one MPPI 50 x 2 call (horizon 8) on a TwoRooms-sized model of this shape."""
    recipe = get_recipe("two-phase")
    jepa = JEPAConfig.preset("tiny", encoder="spatial", tubelet_size=1, num_frames=2, image_size=recipe.image_size)
    spec = WorldModelSpec(action_dim=8, width=recipe.width, action_token=action_token, mlp_ratio=mlp_ratio)
    model = PlanningModel(WorldModel(jepa, spec).eval())
    planner = MPPI(model, [-1.0] * 8, [1.0] * 8, MPPIConfig(horizon=8, num_samples=50, num_elites=6, iterations=2))
    z, goal, gen = torch.randn(1, 4, spec.latent_dim), torch.randn(1, 4, spec.latent_dim), torch.Generator().manual_seed(0)
    for _ in range(5):
        planner.plan(z, goal, gen)
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        planner.plan(z, goal, gen)
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--joint", default="", help="a phase-1 run (world_model_joint) to retrain phase 2 on, per shape")
    p.add_argument("--episodes", default="", help="the episodes of that run")
    p.add_argument("--out", default="runs/dynamics_shapes", help="where the retrained models and their evaluations go")
    p.add_argument("--results", default=str(RESULTS))
    p.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES), help="the shapes to measure")
    p.add_argument("--calls", type=int, default=40, help="timed planning calls per shape")
    p.add_argument("--dynamics-steps", type=int, default=0, help="phase-2 steps of --joint (0: the recipe's)")
    p.add_argument("--bench-episodes", type=int, default=0, help="planning episodes of --joint (0: the recipe's)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    shapes = {name: SHAPES[name] for name in args.shapes}
    timing = {name: round(time_shape(*shape, calls=args.calls), 1) for name, shape in shapes.items()}
    Path(args.results).write_text(json.dumps({"median_ms_per_call": timing, "planner": "MPPI 50x2, horizon 8",
                                              "threads": 1, "command": " ".join(["python", *sys.argv])}, indent=2) + "\n")  # fmt: skip
    print(json.dumps(timing))
    if args.joint:
        torch.set_num_threads(2)
        for name, (token, ratio) in shapes.items():
            recipe = get_recipe("two-phase").scaled(action_token=token, mlp_ratio=ratio)
            if args.dynamics_steps:
                recipe = recipe.scaled(dynamics_steps=args.dynamics_steps)
            out = Path(args.out) / name
            cfg = recipe.dynamics_config(args.episodes, args.joint, out / "world_model")
            WorldModelTrainer(cfg).run()
            subprocess.run([sys.executable, "-m", "torchwm", "bench", "planning", "--checkpoint", str(out / "world_model"),
                            "--out", str(out / "planning"), "--no-baselines", "--gifs", "0",
                            *(["--episodes", str(args.bench_episodes)] if args.bench_episodes else [])], check=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
