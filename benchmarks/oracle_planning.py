"""The planner's ceiling: the recipe's planner and budget on the TRUE dynamics of a built-in arena env.

A world model's closed-loop success mixes two failures, a model that predicts badly and a planner (budget,
horizon, cost) that cannot solve the task even with perfect predictions. This benchmark removes the first:
the "model" is the environment's own physics (`PointArenaEnv._advance` on copies of the state, obstacles
included), its "latent" the agent's position (plus its velocity scaled by 1e-3, so that the cost is the
position's distance to the goal and the velocity is carried along), and the planner, its budget, its
sum-over-horizon cost, the action repeat, the step budget and the seeds are the suite's. Success here is an
upper bound for any world model planned the same way; a random policy's on the same starts and goals is
beside it.

    python benchmarks/oracle_planning.py --env torchwm/PointMass-v0 --episodes 50
"""

from __future__ import annotations

import argparse
import copy
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torchwm.agents.benchmark import DEFAULT_RESET_OPTIONS, planner_settings
from torchwm.agents.evaluate import wilson_interval
from torchwm.agents.planners import CEM, MPPI
from torchwm.envs.action_repeat import ActionRepeat
from torchwm.envs.reset_options import ResetOptions
from torchwm.envs.two_rooms import PointArenaEnv
from torchwm.wm.planning_spec import PlannerKind, PlanningDefaults
from torchwm.wm.recipes import get_recipe

VELOCITY_SCALE = 1e-3
"""The velocity rides in the latent at this scale: carried between steps, negligible in the cost."""


class TrueDynamics:
    """A planner's model whose latent is the true state ``(x, y, 1e-3 vx, 1e-3 vy)`` of a `PointArenaEnv` (one
    token), rolled forward by the env's own ``_advance`` with each action repeated ``action_repeat`` times."""

    def __init__(self, env: Any, action_repeat: int) -> None:
        if not isinstance(env, PointArenaEnv):
            raise ValueError(
                f"the true-dynamics planner needs a built-in arena (a PointArenaEnv: TwoRooms, PointMass), whose "
                f"physics it copies and whose frames it draws; got {type(env).__name__}: pass --env torchwm/TwoRooms-v0 "
                "or torchwm/PointMass-v0 (and a world model trained on that env for --learned-cost)"
            )
        self.sim, self.action_repeat = copy.deepcopy(env), action_repeat

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """``z [N, 1, 4]``, ``actions [N, H, 2]`` -> ``[N, H, 1, 4]``."""
        sim, scale, states = self.sim, VELOCITY_SCALE, []
        for (x, y, vx, vy), plan in zip(z[:, 0].tolist(), actions.tolist()):
            sim._x, sim._y = x, y
            if hasattr(sim, "_vx"):
                sim._vx, sim._vy = vx / scale, vy / scale
            for ax, ay in plan:
                for _ in range(self.action_repeat):
                    sim._advance(ax, ay)
                states.append((sim._x, sim._y, getattr(sim, "_vx", 0.0) * scale, getattr(sim, "_vy", 0.0) * scale))
        return torch.tensor(states, dtype=torch.float32).reshape(*actions.shape[:2], 1, 4)


_TABLES: dict[tuple[int, str, int], torch.Tensor] = {}
"""Latent tables by (world model, env class, size): built once per process."""


class TrueDynamicsLearnedCost(TrueDynamics):
    """The true dynamics, scored in a world model's latent: each predicted state is drawn as the env draws it
    and encoded by the model, so the cost is the learned latent's distance to the goal image's latent. Its
    success is what the world model's latent allows with perfect dynamics: the planner hands it the model's
    latent of the current frame, and `state` holds the true state the rollout starts from.

    The env draws the agent at its pixel cell, so the latent of every cell is encoded once (a size x size
    table) and a state's latent is its cell's: exactly the latent of the frame the env would show."""

    def __init__(self, env: Any, action_repeat: int, world_model: Any) -> None:
        super().__init__(env, action_repeat)
        self.state, n = torch.zeros(1, 1, 4), env.size
        key = (id(world_model), type(env).__name__, n)
        if key in _TABLES:
            self.table = _TABLES[key]
            return
        centres = (np.arange(n) + 0.5) / n
        frames = [env._draw(x, 1.0 - y) for y in centres for x in centres]  # row-major: row 0 at the top
        latents = [world_model.encode(torch.from_numpy(np.stack(frames[i : i + 512]))[:, None])[:, 0]
                   for i in range(0, len(frames), 512)]  # fmt: skip
        self.table = _TABLES[key] = torch.cat(latents)  # (n * n, K, D)

    def cell_latent(self, xy: torch.Tensor) -> torch.Tensor:
        """Latents ``[..., K, D]`` of the frames showing the agent at positions ``xy [..., 2]``."""
        n = self.sim.size
        col = (xy[..., 0] * n).long().clamp(0, n - 1)
        row = ((1.0 - xy[..., 1]) * n).long().clamp(0, n - 1)
        return self.table[row * n + col]

    def rollout(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        states = super().rollout(self.state.expand(len(z), 1, 4), actions)  # (N, H, 1, 4)
        return self.cell_latent(states[..., 0, :2])


def state_latent(env: Any) -> torch.Tensor:
    """The current true state as the oracle's latent ``[1, 1, 4]``."""
    vx, vy = getattr(env, "_vx", 0.0), getattr(env, "_vy", 0.0)
    return torch.tensor([[[env._x, env._y, vx * VELOCITY_SCALE, vy * VELOCITY_SCALE]]], dtype=torch.float32)


def run(env_id: str, episodes: int, seed: int, planner: PlannerKind, samples: int, iterations: int, horizon: int,
        max_steps: int, action_repeat: int, world_model: Any = None, with_random: bool = True) -> dict[str, Any]:  # fmt: skip
    """Success of the planner on the true dynamics and of a random policy, on the same seeded episodes; with a
    ``world_model``, the cost is its latent distance to the goal image instead of the position's."""
    spec = PlanningDefaults(planner=planner, num_samples=samples, iterations=iterations, horizon=horizon,
                            max_steps=max_steps)  # fmt: skip
    config = planner_settings(spec)
    results: dict[str, list[bool]] = {"oracle": [], "random": []} if with_random else {"oracle": []}
    calls: list[float] = []
    for method in results:
        for i in range(episodes):
            env: gym.Env = gym.make(env_id)
            if env_id in DEFAULT_RESET_OPTIONS:  # the benchmark's task (TwoRooms: start and goal in different rooms)
                env = ResetOptions(env, dict(DEFAULT_RESET_OPTIONS[env_id]))
            env = ActionRepeat(env, action_repeat)
            _, info = env.reset(seed=seed + i)
            arena = env.unwrapped
            model = TrueDynamics(arena, action_repeat) if world_model is None else (
                TrueDynamicsLearnedCost(arena, action_repeat, world_model))
            plan = (MPPI if planner == "mppi" else CEM)(model, env.action_space.low, env.action_space.high, config)
            gen = torch.Generator().manual_seed(seed + i)
            rng = np.random.default_rng(seed + i)
            goal = torch.tensor([[[*info["goal_pos"], 0.0, 0.0]]], dtype=torch.float32)
            if isinstance(model, TrueDynamicsLearnedCost):
                goal = world_model.encode(torch.from_numpy(info["goal_frame"])[None, None])[:, 0]
            success = False
            for _ in range(max_steps):
                if method == "oracle":
                    start = time.perf_counter()
                    z = state_latent(arena)
                    if isinstance(model, TrueDynamicsLearnedCost):
                        model.state, z = z, model.cell_latent(z[:, 0, :2])
                    action = plan.plan(z, goal, generator=gen)[0, 0].numpy()
                    calls.append(time.perf_counter() - start)
                else:
                    action = rng.uniform(-1.0, 1.0, size=2).astype(np.float32)
                _, _, terminated, truncated, info = env.step(action)
                success = success or bool(info["is_success"])
                if terminated or truncated:
                    break
            results[method].append(success)
            env.close()
    row: dict[str, Any] = {"env_id": env_id, "planner": planner, "num_samples": samples, "iterations": iterations,
                           "horizon": horizon, "max_steps": max_steps, "action_repeat": action_repeat,
                           "episodes": episodes, "eval_seed": seed,
                           "reset_options": dict(DEFAULT_RESET_OPTIONS.get(env_id, ())),
                           "cost": "position_l2" if world_model is None else "learned_latent_l2"}  # fmt: skip
    for method, hits in results.items():
        rate = float(np.mean(hits))
        row[f"{method}_success_rate"] = rate
        row[f"{method}_ci95"] = list(wilson_interval(int(sum(hits)), len(hits)))
    row["median_ms_per_call"] = 1000 * float(np.median(calls))
    return row


def main() -> None:
    recipe = get_recipe("two-phase")
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", action="append", help="env id (repeatable; default TwoRooms and PointMass)")
    parser.add_argument("--episodes", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1000)
    parser.add_argument("--planner", default=recipe.planning.planner, choices=("mppi", "cem"))
    parser.add_argument("--samples", type=int, default=recipe.planning.num_samples)
    parser.add_argument("--iterations", type=int, default=recipe.planning.iterations)
    parser.add_argument("--horizon", type=int, action="append", help="repeatable (default: the recipe's)")
    parser.add_argument("--max-steps", type=int, default=recipe.planning.max_steps)
    parser.add_argument("--action-repeat", type=int, default=recipe.frame_skip)
    parser.add_argument("--learned-cost", default="", metavar="CHECKPOINT",
                        help="score in this world model's latent (its env only) instead of by position")
    parser.add_argument("--skip-random", action="store_true", help="only the planner")
    parser.add_argument("--out", default="benchmarks/results/oracle_planning.json")
    args = parser.parse_args()
    import torchwm.envs  # noqa: F401  (registers the built-in envs)

    torch.set_num_threads(1)
    world_model = None
    if args.learned_cost:
        from torchwm.wm.world_model import WorldModel

        world_model = WorldModel.from_pretrained(args.learned_cost)
    rows = []
    for env_id in args.env or ["torchwm/TwoRooms-v0", "torchwm/PointMass-v0"]:
        for horizon in args.horizon or [recipe.planning.horizon]:
            row = run(env_id, args.episodes, args.seed, args.planner, args.samples, args.iterations, horizon,
                      args.max_steps, args.action_repeat, world_model, not args.skip_random)  # fmt: skip
            row["learned_cost_checkpoint"] = args.learned_cost or None
            print(json.dumps(row))
            rows.append(row)
    command = "python benchmarks/oracle_planning.py " + " ".join(sys.argv[1:])
    Path(args.out).write_text(json.dumps({"command": command.strip(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
