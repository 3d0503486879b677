"""Environment throughput: steps per second of each built-in env, rendering included, on one core.

Run `python benchmarks/env_throughput.py`; it writes benchmarks/results/env_throughput.json as
`{"machine": {...}, "results": [{"benchmark", "env_id", "steps", "seconds", "steps_per_s"}, ...]}`.
Further timings (wrappers) add their own `bench_*` function and records to `main()`.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import envs  # noqa: F401  (registers the built-in ids)
from envs.registration import BUILTIN_ENVS

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "env_throughput.json"


def bench_env(env_id: str, steps: int, seed: int = 0) -> dict:
    """Steps/s of `gymnasium.make(env_id)` under random actions sampled up front, resets included."""
    env = gym.make(env_id)
    env.action_space.seed(seed)
    actions = [env.action_space.sample() for _ in range(steps)]
    env.reset(seed=seed)
    start = time.perf_counter()
    for action in actions:
        _, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            env.reset()
    seconds = time.perf_counter() - start
    env.close()
    return {
        "benchmark": "raw_env",
        "env_id": env_id,
        "steps": steps,
        "seconds": round(seconds, 4),
        "steps_per_s": round(steps / seconds, 1),
        "obs_shape": list(env.observation_space.shape or ()),
    }


def machine_info() -> dict:
    """Where the numbers were measured."""
    return {"python": platform.python_version(), "numpy": np.__version__, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> None:
    """Time every built-in env and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps per env")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    args = parser.parse_args(argv)
    results = [bench_env(env_id, args.steps) for env_id in BUILTIN_ENVS]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2) + "\n")
    for record in results:
        print(f"{record['env_id']}: {record['steps_per_s']:.0f} steps/s")


if __name__ == "__main__":
    main()
