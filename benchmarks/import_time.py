"""How long ``import torchwm`` takes in a fresh interpreter, beside bare Python and ``import torch``.

    python benchmarks/import_time.py          # writes benchmarks/results/import_time.json

Each statement runs in a new process ``--runs`` times after one warm-up; the medians are reported, and the
difference to bare Python is what the import itself costs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

STATEMENTS = {
    "python": "pass",
    "import_torchwm": "import torchwm",
    "import_torch": "import torch",
    "from_torchwm_import_WorldModel": "from torchwm import WorldModel",
    "from_torchwm_import_JEPAFeaturesExtractor": "from torchwm import JEPAFeaturesExtractor",
}


def wall_seconds(statement: str, runs: int) -> list[float]:
    times = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        if i:  # the first run warms the file cache
            times.append(time.perf_counter() - t0)
    return times


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=7)
    p.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "import_time.json"))
    p.add_argument("--statements", nargs="+", default=list(STATEMENTS), choices=list(STATEMENTS),
                   help="which to time (python and import_torchwm always are)")  # fmt: skip
    args = p.parse_args()
    timed = {"python", "import_torchwm", *args.statements}
    medians = {name: statistics.median(wall_seconds(stmt, args.runs)) for name, stmt in STATEMENTS.items() if name in timed}
    result = {
        "median_wall_seconds": {k: round(v, 3) for k, v in medians.items()},
        "import_torchwm_seconds_over_python": round(medians["import_torchwm"] - medians["python"], 3),
        "runs": args.runs,
        "command": "python benchmarks/import_time.py",
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
