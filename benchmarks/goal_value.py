"""Does a cost that knows the way through the door plan better? A learned temporal distance against the latent L2.

For each fit of the suite (``runs/suite/<env>/seed<N>``), a goal-conditioned value ``V(z, g) = gamma^d`` is trained
offline on that fit's own recorded episodes, encoded by its world model: temporal-difference targets
``V(z_t, g) <- gamma * V(z_{t+1}, g)`` (``gamma`` when ``g`` is ``z_{t+1}``, 1 when ``g`` is ``z_t``) fitted by
an upper expectile of the log-value, so that ``d`` approaches the fewest model steps the data show between two
latents, not the random policy's average (the IQL/HIQL recipe, on latents instead of states), with goals drawn
from the next frame, a later frame of the episode, or any frame. Then:

- how well ``d`` and the latent L2 order random pairs of recorded states by their geodesic distance in the
  arena (around the wall, through the door), as a Spearman correlation, also over the pairs in different rooms;
- planning success of the recipe's MPPI with ``scale * sum_h d(z_h, g)`` as its goal cost
  (`agents.planners.GoalCost`), beside the same planner with the latent L2 in the same run, on the suite's 50
  held-out episodes.

    python benchmarks/goal_value.py --runs runs/suite/tworooms/seed0 runs/suite/tworooms/seed1 runs/suite/tworooms/seed2

writes benchmarks/results/goal_value.json (per fit: ``spearman_*``, ``success_rate`` of both costs, seconds).
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr
from torch import nn
from torchwm.agents.benchmark import benchmark_config_for, make_benchmark_env
from torchwm.agents.evaluate import evaluate
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.mpc import MPCAgent
from torchwm.agents.planners import MPPI
from torchwm.wm.episodes import load_episode, read_manifest
from torchwm.wm.world_model import WorldModel

RESULTS = Path(__file__).resolve().parent / "results" / "goal_value.json"


class GoalValue(nn.Module):
    """``log V(z, g) <= 0`` from flattened, standardised latents ``[.., K * D]`` of a state and a goal."""

    def __init__(self, features: int, mean: torch.Tensor, std: torch.Tensor, hidden: int = 512) -> None:
        super().__init__()
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.net = nn.Sequential(
            nn.Linear(2 * features, hidden), nn.LayerNorm(hidden), nn.GELU(),
            nn.Linear(hidden, hidden), nn.LayerNorm(hidden), nn.GELU(), nn.Linear(hidden, 1),
        )  # fmt: skip

    def forward(self, z: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
        x = torch.cat([(z - self.mean) / self.std, (g - self.mean) / self.std], dim=-1)
        return -F.softplus(self.net(x)).squeeze(-1)


def encode_episodes(model: WorldModel, root: Path) -> tuple[torch.Tensor, np.ndarray, torch.Tensor, torch.Tensor]:
    """Every recorded frame's latent ``[N, K * D]``, its state ``[N, S]``, the index of each transition's first
    frame ``[M]`` and of its episode's last frame ``[M]``."""
    manifest = read_manifest(root)
    latents, states, starts, ends = [], [], [], []
    offset = 0
    with torch.inference_mode():
        for entry in manifest["episodes"]:
            episode = load_episode(root, entry["name"], manifest=manifest)
            if episode.states is None or episode.frames is None:
                raise ValueError(f"{root}/{entry['name']} holds no states or frames; record it again")
            latents.append(model.encode(torch.from_numpy(episode.frames)[None])[0].flatten(1))
            states.append(episode.states)
            n = len(episode.frames)
            starts.append(torch.arange(offset, offset + n - 1))
            ends.append(torch.full((n - 1,), offset + n - 1))
            offset += n
    return torch.cat(latents), np.concatenate(states), torch.cat(starts), torch.cat(ends)


def train_value(
    z: torch.Tensor, starts: torch.Tensor, ends: torch.Tensor, steps: int, gamma: float, expectile: float, seed: int
) -> GoalValue:
    """Fit `GoalValue` by expectile TD on the transitions ``z[starts] -> z[starts + 1]``."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    value = GoalValue(z.shape[1], z.mean(0), z.std(0) + 1e-6)
    target = copy.deepcopy(value).requires_grad_(False)
    opt = torch.optim.AdamW(value.parameters(), lr=3e-4)
    log_gamma, batch = float(np.log(gamma)), 512
    for _ in range(steps):
        pick = torch.randint(0, len(starts), (batch,), generator=gen)
        i, span = starts[pick], ends[pick] - starts[pick]  # span >= 1: steps to the episode's last frame
        s, s_next = z[i], z[i + 1]
        kind = torch.rand(batch, generator=gen)
        later = i + 1 + (torch.rand(batch, generator=gen) * span).long().clamp_max(span - 1)
        anywhere = torch.randint(0, len(z), (batch,), generator=gen)
        g = torch.where((kind < 0.3)[:, None], s_next, torch.where((kind < 0.6)[:, None], z[later], z[anywhere]))
        with torch.no_grad():
            aim = log_gamma + target(s_next, g)
            aim = torch.where(kind < 0.3, torch.full_like(aim, log_gamma), aim)
        gap = aim - value(s, g)
        weight = torch.where(gap > 0, expectile, 1 - expectile)
        loss = (weight * gap.square()).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        with torch.no_grad():
            for p, q in zip(value.parameters(), target.parameters(), strict=True):
                q.lerp_(p, 0.005)
    return value.eval()


def geodesic(p: np.ndarray, q: np.ndarray, env: Any) -> np.ndarray:
    """Shortest path length between arena points ``[N, 2]`` around TwoRooms' wall (through the door's centre)."""
    wall = sum(env.wall_x) / 2
    door = np.array([wall, sum(env.door) / 2])
    direct = np.linalg.norm(p - q, axis=-1)
    via = np.linalg.norm(p - door, axis=-1) + np.linalg.norm(q - door, axis=-1)
    return np.where((p[:, 0] < wall) == (q[:, 0] < wall), direct, via)


def success(model: PlanningModel, cfg: Any, goal_cost: Any) -> float:
    env = make_benchmark_env(cfg)
    space = env.action_space
    planner = MPPI(model, space.low, space.high, replace(cfg.mppi, horizon=cfg.horizon), goal_cost=goal_cost)
    agent = MPCAgent(model, planner, frame_history=model.frame_history, context_steps=cfg.context_steps)
    return evaluate(agent, lambda: make_benchmark_env(cfg), cfg.episodes, cfg.seed, cfg.max_steps).success_rate


def measure(
    run: Path, steps: int, scale: float, gamma: float, expectile: float, episodes: int | None = None
) -> dict[str, Any]:
    t0 = time.perf_counter()
    model = WorldModel.from_pretrained(run / "world_model")
    z, states, starts, ends = encode_episodes(model, run / "episodes")
    value = train_value(z, starts, ends, steps, gamma, expectile, seed=0)
    train_s = time.perf_counter() - t0
    given = {} if episodes is None else {"episodes": episodes}
    cfg = benchmark_config_for(run / "world_model", planners=("mppi",), baselines=False, gifs=0, **given)
    gen = torch.Generator().manual_seed(1)
    a, b = torch.randint(0, len(z), (3000,), generator=gen), torch.randint(0, len(z), (3000,), generator=gen)
    with torch.no_grad():
        d = (value(z[a], z[b]) / np.log(gamma)).numpy()
    l2 = (z[a] - z[b]).square().mean(-1).numpy()
    arena = make_benchmark_env(cfg).unwrapped
    geo = geodesic(states[a.numpy(), :2], states[b.numpy(), :2], arena)
    wall = sum(arena.wall_x) / 2
    cross = (states[a.numpy(), 0] < wall) != (states[b.numpy(), 0] < wall)

    def steps_to_go(z_pred: torch.Tensor, z_goal: torch.Tensor) -> torch.Tensor:
        b_, s_, h_ = z_pred.shape[:3]
        goal = z_goal.flatten(-2)[:, None, None].expand(b_, s_, h_, -1)
        return scale * (value(z_pred.flatten(-2), goal) / np.log(gamma)).sum(-1)

    threads = torch.get_num_threads()
    torch.set_num_threads(cfg.threads or threads)  # planning on the benchmark's one thread
    planning = PlanningModel(model)
    try:
        with torch.inference_mode():
            rows = {"latent_l2": success(planning, cfg, None), "learned_distance": success(planning, cfg, steps_to_go)}
    finally:
        torch.set_num_threads(threads)
    return {
        "run": str(run),
        "transitions": len(starts),
        "spearman_distance_vs_geodesic": round(float(spearmanr(d, geo)[0]), 3),
        "spearman_l2_vs_geodesic": round(float(spearmanr(l2, geo)[0]), 3),
        "spearman_distance_vs_geodesic_cross_room": round(float(spearmanr(d[cross], geo[cross])[0]), 3),
        "spearman_l2_vs_geodesic_cross_room": round(float(spearmanr(l2[cross], geo[cross])[0]), 3),
        "success_rate_latent_l2": rows["latent_l2"],
        "success_rate_learned_distance": rows["learned_distance"],
        "episodes": cfg.episodes,
        "eval_seed": cfg.seed,
        "value_training_s": round(train_s, 1),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", type=Path, required=True, help="suite fit directories (TwoRooms)")
    p.add_argument("--steps", type=int, default=4000, help="value training steps")
    p.add_argument("--scale", type=float, default=0.01, help="cost per predicted step to go, summed over the horizon")
    p.add_argument("--gamma", type=float, default=0.9)
    p.add_argument("--expectile", type=float, default=0.9, help="of the log-value: > 0.5 leans to the shortest path")
    p.add_argument("--episodes", type=int, default=None, help="planning episodes per cost (default: the suite's)")
    p.add_argument("--out", type=Path, default=RESULTS)
    args = p.parse_args(argv)
    rows = []
    for run in args.runs:
        rows.append(measure(run, args.steps, args.scale, args.gamma, args.expectile, args.episodes))
        print(json.dumps(rows[-1]), flush=True)
    result = {
        "rows": rows,
        "success_rate_latent_l2_mean": round(statistics.fmean(r["success_rate_latent_l2"] for r in rows), 4),
        "success_rate_learned_distance_mean": round(statistics.fmean(r["success_rate_learned_distance"] for r in rows), 4),
        "config": {"steps": args.steps, "scale": args.scale, "gamma": args.gamma, "expectile": args.expectile},
        "command": " ".join(["python", "benchmarks/goal_value.py", *(argv if argv is not None else sys.argv[1:])]),
    }  # fmt: skip
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
