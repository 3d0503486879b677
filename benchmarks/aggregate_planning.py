"""Several training seeds' planning benchmarks as one row per method: mean success and its min-max over the
seeds, beside each seed's own number and 95% interval.

    python benchmarks/aggregate_planning.py --out benchmarks/results/planning_tworooms_seeds.json \\
        seed0=runs/bench/seed0 seed1=runs/bench/seed1 seed2=runs/bench/seed2

Each ``label=DIR`` is the output folder of one ``torchwm bench planning`` run (its ``planning.json``); a
method missing from a run is left out of that run's column. Prints a markdown table.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any


def aggregate(runs: dict[str, Path]) -> dict[str, Any]:
    loaded = {label: json.loads((path / "planning.json").read_text()) for label, path in runs.items()}
    methods: dict[str, dict[str, Any]] = {}
    for label, result in loaded.items():
        for method, row in result["methods"].items():
            entry = methods.setdefault(method, {"per_seed": {}})
            entry["per_seed"][label] = {
                "success_rate": row["success_rate"], "success_ci95": row["success_ci95"],
                "median_ms_per_call": row["median_ms_per_step"], "final_distance": row["final_distance"],
            }  # fmt: skip
    for entry in methods.values():
        rates = [r["success_rate"] for r in entry["per_seed"].values()]
        entry["success_rate_mean"] = round(statistics.fmean(rates), 4)
        entry["success_rate_min"], entry["success_rate_max"] = min(rates), max(rates)
        entry["seeds"] = len(rates)
    first = next(iter(loaded.values()))
    return {
        "env_id": first["env_id"],
        "evaluation": {k: first["config"][k] for k in ("episodes", "seed", "max_steps", "action_repeat", "reset_options")},
        "runs": {label: str(path) for label, path in runs.items()},
        "checkpoints": {label: result["checkpoint"] for label, result in loaded.items()},
        "methods": methods,
    }


def markdown(result: dict[str, Any]) -> str:
    labels = list(result["runs"])
    lines = ["| method | mean success (min-max) | " + " | ".join(labels) + " |",
             "| --- | --- | " + " | ".join("---" for _ in labels) + " |"]  # fmt: skip
    for method, entry in result["methods"].items():
        cells = []
        for label in labels:
            row = entry["per_seed"].get(label)
            cells.append("-" if row is None else f"{row['success_rate']:.2f} ({row['success_ci95'][0]:.2f}-{row['success_ci95'][1]:.2f})")
        lines.append(f"| {method} | **{entry['success_rate_mean']:.2f}** ({entry['success_rate_min']:.2f}-"
                     f"{entry['success_rate_max']:.2f}) | " + " | ".join(cells) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="+", help="label=DIR of a `torchwm bench planning` output")
    p.add_argument("--out", required=True)
    p.add_argument("--command", default="", help="the command lines that produced the runs (recorded in the JSON)")
    args = p.parse_args(argv)
    runs = {item.split("=", 1)[0]: Path(item.split("=", 1)[1]) for item in args.runs}
    result = aggregate(runs)
    result["command"] = args.command or " ".join(["python", "benchmarks/aggregate_planning.py", *(argv or sys.argv[1:])])
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))


if __name__ == "__main__":
    main()
