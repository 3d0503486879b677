"""Environment throughput: steps per second of each built-in env, rendering included, on one core.

Run `python benchmarks/env_throughput.py`; it writes benchmarks/results/env_throughput.json as
`{"machine": {...}, "results": [{"benchmark", "env_id", "steps", "seconds", "steps_per_s"}, ...]}`.
Further timings (wrappers) add their own `bench_*` function and records to `main()`.

`bench_latent_wrapper` (records with ``"benchmark": "latent_wrapper"``) times `LatentObservationWrapper`
alone and `VectorLatentObservationWrapper` over a sync vector of 8, against what they cannot avoid,
measured in the same run on the same actions: the bare env's (or bare vector's) step and the encoder's
own batched forward (`LatentEncoder.encode_numpy`: normalise, ViT, latent head) on one batch of histories of the
same size. ``overhead_pct`` is the wrapper's time a step beyond those two, over those two (target: at
most 10). The three are called in turn, one step each, for ``--rounds`` rounds and each time is the
median of its steps: an RL loop alternates the env and the encoder, and each runs slower so (cold
caches) than in a loop of its own. The ``tight_*`` fields time each in a loop of its own instead (best of
blocks of 10); against them that slowdown counts as the wrapper's. Torch runs on ``--threads`` threads.
The models are untrained (weights do not change the time): ``tiny`` is the `JEPAConfig` preset (a
temporal encoder over 4 frames of 64x64, 4 layers of width 128); ``micro`` is the tests' one-layer
spatial encoder on 32x32 frames (resized from 64x64 by the wrapper), so cheap that the wrapper's own work
shows most.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from torchwm.envs.latent import (
    LatentObservationWrapper,
    VectorLatentObservationWrapper,
    frame_space,
)
from torchwm.envs.registration import BUILTIN_ENVS, TWO_ROOMS_ID
from torchwm.wm.config import JEPAConfig
from torchwm.wm.latent_encoder import latent_encoder
from torchwm.wm.world_model import WorldModel, WorldModelSpec

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "env_throughput.json"
WRAPPER_MODELS: dict[str, dict] = {
    "tiny": {},
    "micro": {
        "encoder": "spatial",
        "num_frames": 1,
        "tubelet_size": 1,
        "image_size": 32,
        "embed_dim": 32,
        "num_layers": 1,
        "num_heads": 2,
    },
}
"""Models timed under the wrapper: overrides of the ``tiny`` preset."""


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


def _stepper(env: gym.Env | gym.vector.VectorEnv, actions: list) -> Callable[[], None]:
    """A function that steps ``env`` through ``actions`` (cycling) from where the last call stopped; a single
    env is reset at its episode ends, a vector env resets its sub-environments itself."""
    vector = isinstance(env, gym.vector.VectorEnv)
    env.reset(seed=0)
    t = 0

    def step() -> None:
        nonlocal t
        _, _, terminated, truncated, _ = env.step(actions[t % len(actions)])
        t += 1
        if not vector and (terminated or truncated):
            env.reset()

    return step


def median_ms_interleaved(steps: Mapping[str, Callable[[], object]], rounds: int) -> dict[str, float]:
    """Median ms of one call of each function, called in turn for ``rounds`` rounds (what an RL loop does)."""
    times: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(rounds):
        for name, step in steps.items():
            start = time.perf_counter()
            step()
            times[name].append(time.perf_counter() - start)
    return {name: 1e3 * float(np.median(t)) for name, t in times.items()}


def best_ms_tight(steps: Mapping[str, Callable[[], object]], block: int, blocks: int) -> dict[str, float]:
    """Best ms a call of each function over ``blocks`` blocks of ``block`` calls in a row."""
    best = dict.fromkeys(steps, float("inf"))
    for _ in range(blocks):
        for name, step in steps.items():
            start = time.perf_counter()
            for _ in range(block):
                step()
            best[name] = min(best[name], 1e3 * (time.perf_counter() - start) / block)
    return best


def bench_latent_wrapper(
    model_name: str, num_envs: int, rounds: int, device: str = "cpu", env_id: str = TWO_ROOMS_ID
) -> dict:
    """ms a step of the latent wrapper (``num_envs`` 1: single; more: a sync vector) against env + encoder."""
    torch.manual_seed(0)
    model = WorldModel(JEPAConfig.preset("tiny", **WRAPPER_MODELS[model_name]), WorldModelSpec(action_dim=2))
    model = model.to(device).eval()
    view = latent_encoder(model)
    bare: gym.Env | gym.vector.VectorEnv
    wrapped: LatentObservationWrapper | VectorLatentObservationWrapper
    if num_envs == 1:
        bare, wrapped = gym.make(env_id), LatentObservationWrapper(gym.make(env_id), model)
    else:
        bare = gym.make_vec(env_id, num_envs, vectorization_mode="sync")
        wrapped = VectorLatentObservationWrapper(
            gym.make_vec(env_id, num_envs, vectorization_mode="sync"), model
        )
    bare.action_space.seed(0)
    actions = [bare.action_space.sample() for _ in range(rounds)]
    frame_shape = frame_space(wrapped.env).shape  # the frames the wrapper encodes (resized)
    clips = np.random.default_rng(0).integers(0, 256, (num_envs, view.window, *frame_shape), dtype=np.uint8)
    steps = {
        "env": _stepper(bare, actions),
        "encode": lambda: view.encode_numpy(clips),
        "wrapper": _stepper(wrapped, actions),
    }
    ms = median_ms_interleaved(steps, rounds)
    tight = best_ms_tight(steps, block=10, blocks=max(1, rounds // 30))
    floor, tight_floor = ms["env"] + ms["encode"], tight["env"] + tight["encode"]
    return {
        "benchmark": "latent_wrapper",
        "env_id": env_id,
        "model": model_name,
        "device": device,
        "window": view.window,
        "latent_shape": [view.k, view.d],
        "num_envs": num_envs,
        "steps": rounds * num_envs,
        "seconds": round(rounds * ms["wrapper"] / 1e3, 4),
        "steps_per_s": round(1e3 * num_envs / ms["wrapper"], 1),
        "env_ms_per_step": round(ms["env"], 4),
        "encode_ms_per_step": round(ms["encode"], 4),
        "wrapper_ms_per_step": round(ms["wrapper"], 4),
        "overhead_pct": round(100 * (ms["wrapper"] - floor) / floor, 2),
        "tight_env_ms_per_step": round(tight["env"], 4),
        "tight_encode_ms_per_step": round(tight["encode"], 4),
        "tight_wrapper_ms_per_step": round(tight["wrapper"], 4),
        "tight_overhead_pct": round(100 * (tight["wrapper"] - tight_floor) / tight_floor, 2),
    }


def machine_info() -> dict:
    """Where the numbers were measured."""
    return {
        "python": platform.python_version(),
        "numpy": np.__version__,
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }


def main(argv: list[str] | None = None) -> None:
    """Time every built-in env and write the JSON results."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="environment steps per env")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    parser.add_argument("--rounds", type=int, default=300, help="interleaved steps per latent-wrapper timing")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the encoder")
    parser.add_argument("--models", nargs="*", default=list(WRAPPER_MODELS), choices=list(WRAPPER_MODELS))
    parser.add_argument("--device", default="cpu", help="where the encoder runs (cpu, cuda)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    results = [bench_env(env_id, args.steps) for env_id in BUILTIN_ENVS]
    for model_name in args.models:
        for num_envs in (1, 8):
            results.append(bench_latent_wrapper(model_name, num_envs, args.rounds, args.device))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine_info(), "results": results}, indent=2) + "\n")
    for record in results:
        line = f"{record['env_id']}: {record['steps_per_s']:.0f} steps/s"
        if record["benchmark"] == "latent_wrapper":
            line += (
                f" wrapped ({record['model']}, {record['num_envs']} env(s)): {record['wrapper_ms_per_step']:.3f} ms "
                f"vs env {record['env_ms_per_step']:.3f} + encode {record['encode_ms_per_step']:.3f} ms a step, "
                f"overhead {record['overhead_pct']:+.1f}% (tight loops: {record['tight_overhead_pct']:+.1f}%)"
            )
        print(line)


if __name__ == "__main__":
    main()
