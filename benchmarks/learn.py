"""The online loop's benchmark: ``torchwm learn`` per environment and training seed, beside a model-free reference.

For each environment (its facts, action repeat, proprioception and cost, from the suite's table
`torchwm.bench.suite.SUITE`) and each training seed: `torchwm.online.learn` with the settings below, the same
everywhere; its learning curve (return or success on 10 held-out episodes, reset seeds 1000 on, against
environment steps and wall-clock seconds) becomes a row of ``benchmarks/results/learn.json``. With
``--reference``, stable-baselines3's SAC (the zoo's Pendulum learning rate, 1e-3; defaults otherwise) trains on
the environment's state vector for the same number of environment steps, evaluated on the same held-out
seeds every ``--reference-eval-every`` steps, and is plotted on the same axes (``learn_<env>.png``).

    python benchmarks/learn.py --envs pendulum --seeds 0 1 2 --reference

Resumable: each run folder continues where it stopped, finished rows are kept, and every row is written as
soon as it is finished.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np
from torchwm.agents.machine import machine_facts

from torchwm.bench.suite import SUITE, commit
from torchwm.online import LearnJob, learn, plot_curves

RESULTS = Path(__file__).resolve().parent / "results" / "learn.json"
SETTINGS = LearnJob()
"""The loop's budget on every environment: `LearnJob`'s defaults (chosen before any run; the docs' decisions page)."""


def learn_row(name: str, seed: int, out: Path, settings: LearnJob, progress: bool) -> dict[str, Any]:
    """Run (or finish) ``torchwm learn`` for one suite environment and seed; its row."""
    env = SUITE[name]
    if env.gl:
        os.environ.setdefault("MUJOCO_GL", env.gl)
    folder = out / name / (f"seed{seed}" if settings.recipe == SETTINGS.recipe else f"{settings.recipe}_seed{seed}")
    job = replace(settings, env=env.env_id, out=str(folder), seed=seed, proprio=env.proprio,
                  imports=env.imports, frame_skip=env.frame_skip, cost=env.cost, progress=progress)  # fmt: skip
    summary = learn(job)
    curve, metric = summary["curve"], summary["metric"]
    final = curve[-1]
    return {
        "env": name, "env_id": env.env_id, "seed": seed, "recipe": settings.recipe, "metric": metric,
        "env_steps": final["env_steps"], "wall_seconds": final["wall_seconds"],
        f"final_{metric}": final["value"], "value": final["value"], "round0": curve[0]["value"],
        "random": curve[0].get("random"), "greedy": curve[0].get("greedy"),
        "median_ms_per_call": final["median_ms_per_call"],
        "collect_plan_ms_per_call": final.get("collect_plan_ms_per_call"),
        "target": env.target, "curve": curve, "run_dir": job.out, "learn": asdict(job),
        "command": f"python benchmarks/learn.py --envs {name} --seeds {seed} --recipe {settings.recipe}",
        "machine": summary["machine"],
    }  # fmt: skip


def sac_reference(name: str, env_steps: int, eval_every: int, episodes: int, seed: int = 0) -> dict[str, Any]:
    """SB3 SAC on the state vector for ``env_steps`` steps: its return on the held-out seeds every ``eval_every``."""
    import gymnasium as gym
    from stable_baselines3 import SAC

    env_id = SUITE[name].env_id
    env = gym.make(env_id)
    model = SAC("MlpPolicy", env, learning_rate=1e-3, seed=seed, device="cpu", verbose=0)
    curve, t0, done = [], time.perf_counter(), 0
    while done < env_steps:
        chunk = min(eval_every, env_steps - done)
        model.learn(chunk, reset_num_timesteps=False)
        done += chunk
        wall = time.perf_counter() - t0
        returns = []
        for i in range(episodes):
            eval_env = gym.make(env_id)
            obs, _ = eval_env.reset(seed=1000 + i)
            total, over = 0.0, False
            while not over:
                action, _ = model.predict(obs, deterministic=True)
                obs, reward, terminated, truncated, _ = eval_env.step(action)
                total, over = total + float(reward), terminated or truncated
            returns.append(total)
        curve.append({"env_steps": done, "wall_seconds": round(wall, 1), "value": float(np.mean(returns))})
        print(f"[learn] SAC on {env_id}'s state: {done} steps, mean return {curve[-1]['value']:.1f}", flush=True)
    return {"label": "SB3 SAC on the state vector", "algorithm": "SAC", "learning_rate": 1e-3, "seed": seed,
            "observation": "state", "curve": curve, "final_mean_return": curve[-1]["value"]}  # fmt: skip


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--envs", nargs="+", default=["pendulum"], choices=sorted(SUITE))
    p.add_argument("--seeds", nargs="+", type=int, default=[0])
    p.add_argument("--out", default="runs/learn_bench", help="run folders")
    p.add_argument("--results", default=str(RESULTS), help="the JSON the rows go to")
    p.add_argument("--reference", action="store_true", help="also train SB3 SAC on the state vector")
    p.add_argument("--reference-eval-every", type=int, default=2000, help="SAC's environment steps between evals")
    p.add_argument("--rounds", type=int, default=SETTINGS.rounds)
    p.add_argument("--seed-episodes", type=int, default=SETTINGS.seed_episodes)
    p.add_argument("--episodes-per-round", type=int, default=SETTINGS.episodes_per_round)
    p.add_argument("--update-steps", type=int, default=SETTINGS.update_steps)
    p.add_argument("--eval-every", type=int, default=SETTINGS.eval_every)
    p.add_argument("--eval-episodes", type=int, default=SETTINGS.eval_episodes)
    p.add_argument("--recipe", default=SETTINGS.recipe)
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    settings = replace(SETTINGS, rounds=args.rounds, seed_episodes=args.seed_episodes, recipe=args.recipe,
                       episodes_per_round=args.episodes_per_round, update_steps=args.update_steps,
                       eval_every=args.eval_every, eval_episodes=args.eval_episodes)  # fmt: skip
    path = Path(args.results)
    table: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"rows": [], "references": {}}
    path.parent.mkdir(parents=True, exist_ok=True)
    for name in args.envs:
        for seed in args.seeds:
            row = learn_row(name, seed, Path(args.out), settings, not args.no_progress)
            row["commit"] = commit()
            key = (name, seed, settings.recipe)
            table["rows"] = [r for r in table["rows"] if (r["env"], r["seed"], r.get("recipe", "two-phase")) != key]
            table["rows"].append(row)
            _write(table, path, settings)
        rows = [r for r in table["rows"] if r["env"] == name]
        if args.reference and name not in table["references"]:
            steps = max(r["env_steps"] for r in rows)
            ref = sac_reference(name, steps, args.reference_eval_every, settings.eval_episodes)
            table["references"][name] = {**ref, "machine": machine_facts(1),
                                         "command": f"python benchmarks/learn.py --envs {name} --reference"}  # fmt: skip
            _write(table, path, settings)
        runs = [{"env": r["env_id"], "seed": r["seed"], "recipe": r.get("recipe"), "metric": r["metric"],
                 "curve": r["curve"]} for r in rows]  # fmt: skip
        refs = [table["references"][name]] if name in table["references"] else []
        plot_curves(runs, path.parent / f"learn_{name}.png", refs)
    return table


def _write(table: dict[str, Any], path: Path, settings: LearnJob) -> None:
    table["settings"] = {k: v for k, v in asdict(settings).items() if k != "recipe"}  # each row names its recipe
    path.write_text(json.dumps(table, indent=2, default=str) + "\n")


if __name__ == "__main__":
    main(sys.argv[1:])
