"""Pendulum-v1 swing-up from rendered pixels, planned on the world model's predicted reward.

The demo's pipeline on a gymnasium environment whose observations are rendered frames (resized to 64²):
record random episodes with frame skip 2, pretrain the tiny JEPA, train the two-phase world model with
its reward head, then plan with MPPI on minus the predicted reward (no goal image) and compare the mean
return with a random policy's over the same seeded episodes (200 environment steps each).

    python benchmarks/pendulum.py            # ~20 minutes on 2 cores

Writes benchmarks/results/pendulum.json.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import gymnasium as gym
import torch
from torchwm.agents.evaluate import RandomPolicy, evaluate
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.mpc import MPCAgent
from torchwm.agents.planners import MPPI, MPPIConfig
from torchwm.envs.action_repeat import ActionRepeat
from torchwm.envs.latent import pixel_env
from torchwm.wm.recipes import get_recipe
from torchwm.wm.world_model import WorldModel

from torchwm.pipeline import fit

RESULTS = Path(__file__).resolve().parent / "results" / "pendulum.json"
FRAME_SKIP = 2
"""Pendulum's own setting (the env dictates it): at frame skip 4 a random policy's frames jump too far."""


def pixels(image_size: int = 64) -> gym.Env:
    """Pendulum-v1 observed through its rendered frames, 64 x 64."""
    return pixel_env(gym.make("Pendulum-v1", render_mode="rgb_array"), image_size, resize=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/pendulum")
    p.add_argument("--episodes", type=int, default=100, help="recorded random episodes")
    p.add_argument("--jepa-steps", type=int, default=400)
    p.add_argument("--joint-steps", type=int, default=600)
    p.add_argument("--dynamics-steps", type=int, default=2000)
    p.add_argument("--eval-episodes", type=int, default=10)
    p.add_argument("--seed", type=int, default=1000, help="first evaluation seed")
    p.add_argument("--env-steps", type=int, default=200, help="environment steps per evaluation episode")
    p.add_argument("--results", default=str(RESULTS), help="where the JSON goes")
    args = p.parse_args()
    out, t0 = Path(args.out), time.perf_counter()
    recipe = get_recipe("two-phase").scaled(
        frame_skip=FRAME_SKIP, episodes=args.episodes, jepa_steps=args.jepa_steps,
        joint_steps=args.joint_steps, dynamics_steps=args.dynamics_steps,
    )  # fmt: skip
    checkpoint = fit(pixels, out, recipe).world_model
    train_seconds = time.perf_counter() - t0
    torch.set_num_threads(1)
    model = PlanningModel(WorldModel.from_pretrained(checkpoint))

    def make_env() -> gym.Env:
        return ActionRepeat(pixels(), FRAME_SKIP)

    space = make_env().action_space
    config = replace(MPPIConfig(num_samples=100, num_elites=12), horizon=8, cost="reward")
    methods = {
        "mpc_mppi_reward": MPCAgent(model, MPPI(model, space.low, space.high, config)),
        "random": RandomPolicy(space, seed=args.seed),
    }
    steps = args.env_steps // FRAME_SKIP
    rows = {}
    for name, policy in methods.items():
        res = evaluate(policy, make_env, args.eval_episodes, args.seed, steps, goal_from_info=False)
        rows[name] = {
            "mean_return": res.mean_return,
            "returns": [round(r.episode_return, 1) for r in res.records],
            "median_ms_per_step": res.median_ms_per_step,
        }
        print(f"{name:>16}: mean return {res.mean_return:.1f}, median {res.median_ms_per_step:.1f} ms a call")
    result = {
        "env_id": "Pendulum-v1 (rendered 64x64 frames)",
        "frame_skip": FRAME_SKIP,
        "episodes": args.eval_episodes,
        "env_steps_per_episode": steps * FRAME_SKIP,
        "seed": args.seed,
        "train_seconds": round(train_seconds, 1),
        "planner": {"name": "mppi", **config.__dict__},
        "methods": rows,
    }
    Path(args.results).write_text(json.dumps(result, indent=2, default=str) + "\n")
    print(f"results in {args.results}")


if __name__ == "__main__":
    main()
