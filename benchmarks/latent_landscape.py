"""What a planner's latent cost looks like: a world model's latent distance to a goal, over every position.

For a built-in arena the frame is a function of the agent's pixel cell, so every cell's latent is encoded once
(as `oracle_planning.py --learned-cost` does) and, for goals drawn uniformly in free space, the squared latent
distance (the planners' ``latent_l2``) of every free cell to the goal cell is compared with the true distance:

- ``nearest_cell_distance``: how far (in arena units, the arena is 1 wide) the cell whose latent is closest to
  the goal's lies from the goal; a latent that knows where the agent is puts it next door (1/64 = 0.016);
- ``spearman``: rank correlation of latent and true distance over the free cells, per goal;
- ``ring_latent_distance``: mean latent distance on rings of true radius r around the goal.

    python benchmarks/latent_landscape.py --checkpoint runs/suite/pointmass/seed0/world_model --tag patches

writes ``latent_landscape.json`` (one row per checkpoint, replacing a row of the same tag) and
``latent_landscape_<tag>.png`` (the distance map to four goals) under ``benchmarks/results``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import matplotlib
import numpy as np
import torch
from oracle_planning import TrueDynamicsLearnedCost  # beside this script: its latent table
from scipy.stats import spearmanr

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

RESULTS = Path(__file__).resolve().parent / "results"
RINGS = (0.03, 0.06, 0.1, 0.2, 0.4)


def landscape(env_id: str, world_model: Any, goals: int = 200, seed: int = 0) -> tuple[dict[str, Any], Any]:
    """The measurements above and the figure, for ``goals`` goal cells drawn in free space."""
    env = gym.make(env_id).unwrapped
    env.reset(seed=seed)
    table = TrueDynamicsLearnedCost(env, 1, world_model).table.flatten(1)  # (n*n, K*D)
    n = env.size
    centres = (np.arange(n) + 0.5) / n
    x, y = (a.reshape(-1) for a in np.meshgrid(centres, 1.0 - centres))  # row-major, row 0 at the top
    free = np.array([env.is_free(float(px), float(py)) for px, py in zip(x, y)])
    picks = np.random.default_rng(seed).choice(np.flatnonzero(free), goals)
    nearest, ranks, rings = [], [], {r: [] for r in RINGS}
    maps = []
    for g in picks:
        latent = ((table - table[g]) ** 2).mean(1).numpy()
        true = np.hypot(x - x[g], y - y[g])
        others = np.where(free, latent, np.inf)
        others[g] = np.inf
        nearest.append(float(true[np.argmin(others)]))
        ranks.append(float(spearmanr(latent[free], true[free]).correlation))
        for r in RINGS:
            ring = free & (np.abs(true - r) < 0.5 / n + 0.01)
            rings[r].append(float(latent[ring].mean()))
        if len(maps) < 4:
            maps.append((g, latent.reshape(n, n)))
    row = {
        "env_id": env_id, "goals": goals, "seed": seed,
        "nearest_cell_distance_median": float(np.median(nearest)),
        "nearest_cell_distance_p90": float(np.percentile(nearest, 90)),
        "spearman_mean": float(np.mean(ranks)), "spearman_min": float(np.min(ranks)),
        "ring_latent_distance": {str(r): float(np.mean(v)) for r, v in rings.items()},
    }  # fmt: skip
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for ax, (g, image) in zip(axes, maps):
        ax.imshow(image, cmap="viridis")
        ax.plot(g % n, g // n, "r+", markersize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("latent distance to the goal (+) over every agent position: dark = close", fontsize=9)
    fig.tight_layout()
    return row, fig


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="world-model checkpoint or run directory")
    parser.add_argument("--env", default="", help="env id (default: the checkpoint's)")
    parser.add_argument("--tag", required=True, help="row name and figure suffix")
    parser.add_argument("--goals", type=int, default=200)
    parser.add_argument("--results", default=str(RESULTS))
    args = parser.parse_args()
    import torchwm.envs  # noqa: F401  (registers the built-in envs)
    from torchwm.wm.world_model import WorldModel

    torch.set_num_threads(1)
    model = WorldModel.from_pretrained(args.checkpoint)
    env_id = args.env or model.data.env_id
    row, fig = landscape(env_id, model, args.goals)
    row.update(tag=args.tag, checkpoint=args.checkpoint, pooling=model.spec.pooling,
               command="python benchmarks/latent_landscape.py " + " ".join(sys.argv[1:]))  # fmt: skip
    out = Path(args.results)
    fig.savefig(out / f"latent_landscape_{args.tag}.png", dpi=80)
    path = out / "latent_landscape.json"
    rows = [r for r in (json.loads(path.read_text())["rows"] if path.is_file() else []) if r["tag"] != args.tag]
    path.write_text(json.dumps({"rows": [*rows, row]}, indent=2))
    print(json.dumps(row))


if __name__ == "__main__":
    main()
