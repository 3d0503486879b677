"""Planning benchmark: closed-loop MPC (CEM, MPPI) on a trained world model beside a greedy one-step
planner and a random policy, on the same seeded episodes with the same step budget.

    python benchmarks/planning.py --checkpoint runs/demo/world_model --tag tworooms

runs ``torchwm bench planning`` with the same options (every one not given comes from the checkpoint and
its recipe: environment, action repeat, planner, samples, horizon, step budget) and copies its JSON, plot
and first GIF under benchmarks/results/ so that the README's numbers can be traced.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

from torchwm.cli import main as torchwm_main


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default="benchmarks/results", help="where the JSON, plot and GIF are copied")
    p.add_argument("--tag", default="tworooms", help="file names: planning_<tag>.json, ...")
    p.add_argument("--out", default="runs/bench_planning")
    args, bench_args = p.parse_known_args(argv)
    code = torchwm_main(["bench", "planning", "--out", args.out, *bench_args])
    if code:
        return code
    out, results = Path(args.out), Path(args.results)
    results.mkdir(parents=True, exist_ok=True)
    summary = json.loads((out / "planning.json").read_text())
    summary["command"] = " ".join(["python", "benchmarks/planning.py", *(argv if argv is not None else sys.argv[1:])])
    (results / f"planning_{args.tag}.json").write_text(json.dumps(summary, indent=2) + "\n")
    shutil.copy(out / "planning.png", results / f"planning_{args.tag}.png")
    for src, dst in (("episode_0.gif", "episode.gif"), ("episode_0_distance.png", "distance.png")):
        if (out / src).exists():
            shutil.copy(out / src, results / f"planning_{args.tag}_{dst}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
