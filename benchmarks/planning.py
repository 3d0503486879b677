"""Planning benchmark: closed-loop MPC (CEM, MPPI) on a trained world model beside a greedy one-step
planner and a random policy, on the same seeded episodes with the same step budget.

    python benchmarks/planning.py --checkpoint runs/demo/world_model --action-repeat 4 --max-steps 25

is the same evaluation as ``torchwm bench planning``; this script also copies its JSON, plot and first
GIF under benchmarks/results/ so that the README's numbers can be traced.
"""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import replace
from pathlib import Path

import torchwm.envs  # noqa: F401
from torchwm.agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
from torchwm.agents.planners import CEMConfig, MPPIConfig


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--checkpoint", required=True)
    p.add_argument("--env", default="torchwm/TwoRooms-v0")
    p.add_argument("--episodes", type=int, default=50)
    p.add_argument("--max-steps", type=int, default=25)
    p.add_argument("--action-repeat", type=int, default=4)
    p.add_argument("--horizon", type=int, default=8)
    p.add_argument("--samples", type=int, default=0, help="override both planners' sample counts (0: defaults)")
    p.add_argument("--planners", nargs="+", default=["cem", "mppi"])
    p.add_argument("--cost-on", choices=["final", "sum"], default="sum", help="score the final step or the sum")
    p.add_argument("--iterations", type=int, default=0, help="override both planners' iterations (0: defaults)")
    p.add_argument("--no-baselines", dest="baselines", action="store_false", help="skip random and greedy")
    p.add_argument("--threads", type=int, default=1,
                   help="torch CPU threads (1: the small matmuls of a planning call run faster on one)")
    p.add_argument("--out", default="runs/bench_planning")
    p.add_argument("--results", default="benchmarks/results")
    p.add_argument("--tag", default="tworooms")
    p.add_argument("--different-rooms", action=argparse.BooleanOptionalAction, default=True,
                   help="TwoRooms: start and goal in different rooms (turn off for other environments)")
    args = p.parse_args()
    cem, mppi = CEMConfig(cost_on=args.cost_on), MPPIConfig(cost_on=args.cost_on)
    if args.samples:
        cem = replace(cem, num_samples=args.samples, num_elites=max(args.samples // 10, 2))
        mppi = replace(mppi, num_samples=args.samples, num_elites=max(args.samples // 8, 2))
    if args.iterations:
        cem, mppi = replace(cem, iterations=args.iterations), replace(mppi, iterations=args.iterations)
    cfg = PlanningBenchmarkConfig(
        env_id=args.env, episodes=args.episodes, max_steps=args.max_steps, action_repeat=args.action_repeat,
        horizon=args.horizon, planners=tuple(args.planners), cem=cem, mppi=mppi, gifs=1, baselines=args.baselines,
        threads=args.threads,
        reset_options=(("different_rooms", True),) if args.different_rooms else (),
    )
    summary = run_planning_benchmark(args.checkpoint, args.out, cfg)
    summary["torch_threads"] = args.threads
    results = Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    (results / f"planning_{args.tag}.json").write_text(json.dumps(summary, indent=2, default=str))
    shutil.copy(Path(args.out) / "planning.png", results / f"planning_{args.tag}.png")
    shutil.copy(Path(args.out) / "episode_0.gif", results / f"planning_{args.tag}_episode.gif")
    shutil.copy(Path(args.out) / "episode_0_distance.png", results / f"planning_{args.tag}_distance.png")


if __name__ == "__main__":
    main()
