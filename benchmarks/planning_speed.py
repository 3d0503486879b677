"""How fast one planning call is, and how far from the arithmetic limit: the planner a checkpoint's recipe
names (or others), timed on one thread from a held-out state, with its FLOP count and achieved FLOP/s as a
fraction of this machine's measured fp32 matmul rate; and batched planning for N environments in one call.

    python benchmarks/planning_speed.py --checkpoint runs/demo/world_model

writes benchmarks/results/planning_speed.json. Each row: ``median_ms_per_call``, ``p95_ms_per_call``,
``gflop_per_call``, ``achieved_gflop_s``, ``matmul_fraction``; the batched rows add ``ms_per_env``. With
``--compile`` every row is timed again with `WorldModel.compile_rollout` (rows ``<name>_compiled``), and
``compiled_vs_eager`` times batch-1 calls of both (and with ``--python-wrapper`` of a copy compiled with inductor's
Python wrapper) in alternating rounds, since the host's speed drifts between rows.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.flop_counter import FlopCounterMode
from torchwm.agents.benchmark import benchmark_config_for, with_budget
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.machine import machine_facts, matmul_gflop_s
from torchwm.agents.planners import CEM, MPPI, SamplingPlanner
from torchwm.wm.world_model import WorldModel

RESULTS = Path(__file__).resolve().parent / "results" / "planning_speed.json"


def make_planner(model: PlanningModel, name: str, cfg: Any, space_low: np.ndarray, space_high: np.ndarray) -> SamplingPlanner:
    if name == "cem":
        return CEM(model, space_low, space_high, replace(cfg.cem, horizon=cfg.horizon))
    return MPPI(model, space_low, space_high, replace(cfg.mppi, horizon=cfg.horizon))


def _call(planner: SamplingPlanner, z: torch.Tensor, goal: torch.Tensor, context: int, gen: torch.Generator | None) -> None:
    """One planning call; ``context`` > 1: from a latent history of that many steps (the current latent
    repeated, zero actions between, as at an episode's start)."""
    if context == 1:
        planner.plan(z, goal, generator=gen)
        return
    history = z[:, None].expand(-1, context, -1, -1).contiguous()
    past = torch.zeros(z.shape[0], context - 1, planner.action_size)
    planner.plan(history, goal, generator=gen, past_actions=past)


def time_calls(planner: SamplingPlanner, z: torch.Tensor, goal: torch.Tensor, calls: int, context: int = 1) -> list[float]:
    gen = torch.Generator().manual_seed(0)
    for _ in range(3):
        _call(planner, z, goal, context, gen)
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        _call(planner, z, goal, context, gen)
        out.append(time.perf_counter() - t0)
    return out


def count_gflop(planner: SamplingPlanner, z: torch.Tensor, goal: torch.Tensor, context: int = 1) -> float:
    with FlopCounterMode(display=False) as counter:
        _call(planner, z, goal, context, None)
    return counter.get_total_flops() / 1e9


def row(
    planner: SamplingPlanner, z: torch.Tensor, goal: torch.Tensor, calls: int, rate: float, context: int = 1,
    gflop: float | None = None,
) -> dict[str, Any]:
    """One row's timings and arithmetic; ``gflop`` given: not counted again (a compiled rollout must not run
    under the FLOP counter's dispatch mode, which makes torch.compile fall back to eager from then on)."""
    times = time_calls(planner, z, goal, calls, context)
    median = statistics.median(times)
    gflop = count_gflop(planner, z, goal, context) if gflop is None else gflop
    return {
        "median_ms_per_call": round(1000 * median, 2),
        "p95_ms_per_call": round(1000 * float(np.percentile(times, 95)), 2),
        "ms_per_env": round(1000 * median / z.shape[0], 3),
        "gflop_per_call": round(gflop, 3),
        "achieved_gflop_s": round(gflop / median, 2),
        "matmul_fraction": round(gflop / median / rate, 3),
    }


def alternate(
    planners: dict[str, SamplingPlanner], z: torch.Tensor, goal: torch.Tensor, calls: int,
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor, int]] | None = None,
) -> dict[str, Any]:
    """Batch-1 calls of each planner (``eager`` first) in alternating rounds (the machine's speed drifts between
    rows): each one's median and its ratio to eager's. ``inputs``: another (latent, goal, latent-history steps)
    for the planners it names (those of another checkpoint, whose latents are its own)."""
    times: dict[str, list[float]] = {kind: [] for kind in planners}
    for _ in range(5):
        for kind, planner in planners.items():
            z_k, goal_k, context = (inputs or {}).get(kind, (z, goal, 1))
            times[kind] += time_calls(planner, z_k, goal_k, max(calls // 5, 3), context)
    medians = {kind: statistics.median(t) for kind, t in times.items()}
    out: dict[str, Any] = {f"{kind}_median_ms_per_call": round(1000 * m, 2) for kind, m in medians.items()}
    out.update({f"{kind}_over_eager": round(m / medians["eager"], 3) for kind, m in medians.items() if kind != "eager"})
    return out


def timed_rows(
    model: PlanningModel, cfg: Any, args: argparse.Namespace, z: torch.Tensor, goal: torch.Tensor,
    low: np.ndarray, high: np.ndarray, rate: float, counted: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The batched rows of the recipe's planner, then the ``--variants`` rows; ``counted``: rows of the same
    names whose FLOP counts to reuse."""

    def gflop(key: str) -> float | None:
        return None if counted is None else counted[key]["gflop_per_call"]

    name = cfg.planners[0]
    rows: dict[str, Any] = {}
    for n in args.batches:
        rows[f"{name}_batch_{n}"] = {
            "planner": name, "num_samples": getattr(cfg, name).num_samples, "iterations": getattr(cfg, name).iterations,
            "envs": n, **row(make_planner(model, name, cfg, low, high), z.expand(n, -1, -1).contiguous(),
                             goal.expand(n, -1, -1).contiguous(), args.calls, rate, gflop=gflop(f"{name}_batch_{n}")),
        }  # fmt: skip
    for spec in args.variants:
        planner, samples, iterations, *rest = spec.split(":")
        horizon = int(rest[0]) if rest else cfg.horizon
        context = int(rest[1]) if len(rest) > 1 else 1
        planner_cfg = replace(getattr(cfg, planner), num_samples=int(samples), iterations=int(iterations),
                              num_elites=max(int(samples) // (8 if planner == "mppi" else 10), 2))  # fmt: skip
        variant = replace(cfg, horizon=horizon, **{planner: planner_cfg})
        name = f"{planner}_{samples}x{iterations}" + (f"_h{horizon}" if rest else "") + (f"_c{context}" if context > 1 else "")
        rows[name] = {
            "planner": planner, "num_samples": int(samples), "iterations": int(iterations), "envs": 1,
            "horizon": horizon, "context_steps": context,
            **row(make_planner(model, planner, variant, low, high), z, goal, args.calls, rate, context, gflop(name)),
        }  # fmt: skip
    return rows


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--checkpoint", required=True, help="world-model checkpoint or run directory")
    p.add_argument("--calls", type=int, default=30, help="timed calls per row (after 3 untimed)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32], help="environments planned in one call")
    p.add_argument("--variants", nargs="*", default=[],
                   help="extra rows: planner:samples:iterations[:horizon[:context]], e.g. mppi:64:3 or mppi:50:2:6 "
                        "(horizon 6) or mppi:50:2:8:3 (a 3-step latent history)")  # fmt: skip
    p.add_argument("--samples", type=int, default=None, help="samples of the batched rows (default: the checkpoint's recipe)")
    p.add_argument("--iterations", type=int, default=None, help="iterations of the batched rows (default: the recipe's)")
    p.add_argument("--compile", action="store_true",
                   help="also time every row with the rollout compiled (rows <name>_compiled, in the same run)")
    p.add_argument("--python-wrapper", action="store_true",
                   help="with --compile: also a copy compiled with inductor's Python wrapper, in the alternating rounds")
    p.add_argument("--against", default=None,
                   help="another checkpoint of the same environment (another shape, say): its recipe's planner joins "
                        "the alternating rounds (against_eager, and against_compiled with --compile), from the same "
                        "held-out state encoded by its own encoder")  # fmt: skip
    p.add_argument("--against-context", type=int, default=1, help="latent-history steps of the --against planner")
    p.add_argument("--out", default=str(RESULTS))
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    cfg = benchmark_config_for(args.checkpoint)
    if args.samples is not None or args.iterations is not None:
        samples = cfg.mppi.num_samples if args.samples is None else args.samples
        cfg = with_budget(cfg, samples, iterations=args.iterations)
    model = PlanningModel(WorldModel.from_pretrained(args.checkpoint))
    import gymnasium as gym
    import torchwm.envs  # noqa: F401  (registers the built-in ids)
    from torchwm.agents.benchmark import make_benchmark_env

    env = make_benchmark_env(cfg)
    assert isinstance(env.action_space, gym.spaces.Box)
    low, high = env.action_space.low, env.action_space.high
    obs, info = env.reset(seed=cfg.seed)
    z = model.encode_last(torch.from_numpy(np.asarray(obs))[None, None])  # (1, K, D): the last step's latent
    goal = model.encode_last(torch.from_numpy(np.asarray(info["goal_frame"]))[None, None])
    rate = matmul_gflop_s()
    rows = timed_rows(model, cfg, args, z, goal, low, high, rate)
    rivals = {"eager": make_planner(model, cfg.planners[0], cfg, low, high)}
    inputs: dict[str, tuple[torch.Tensor, torch.Tensor, int]] = {}
    if args.against:
        other = PlanningModel(WorldModel.from_pretrained(args.against))
        other_cfg = benchmark_config_for(args.against)
        pair = (other.encode_last(torch.from_numpy(np.asarray(obs))[None, None]),
                other.encode_last(torch.from_numpy(np.asarray(info["goal_frame"]))[None, None]), args.against_context)  # fmt: skip
        rivals["against_eager"] = make_planner(other, other_cfg.planners[0], other_cfg, low, high)
        inputs["against_eager"] = pair
        rows["against"] = {"checkpoint": str(args.against), "context_steps": args.against_context,
                           "gflop_per_call": round(count_gflop(rivals["against_eager"], *pair), 3)}  # fmt: skip
    if args.compile:
        fast = PlanningModel(WorldModel.from_pretrained(args.checkpoint), compile=True)  # a second copy: the same weights
        first = make_planner(fast, cfg.planners[0], cfg, low, high)
        t0 = time.perf_counter()
        first.plan(z, goal)  # compiles the batch-1 shape
        compile_s = time.perf_counter() - t0
        compiled = timed_rows(fast, cfg, args, z, goal, low, high, rate, counted=rows)
        rows.update({f"{k}_compiled": {**v, "compiled": True} for k, v in compiled.items()})
        rows[f"{cfg.planners[0]}_batch_1_compiled"]["first_call_s"] = round(compile_s, 1)
        rivals["compiled"] = first
        if args.against:
            other_fast = PlanningModel(WorldModel.from_pretrained(args.against), compile=True)
            rivals["against_compiled"] = make_planner(other_fast, other_cfg.planners[0], other_cfg, low, high)
            inputs["against_compiled"] = pair
            _call(rivals["against_compiled"], *pair, None)  # compiles its batch-1 shape before the rounds
        if args.python_wrapper:  # inductor's Python wrapper, instead of compile_rollout's C++ one
            wrapped = PlanningModel(WorldModel.from_pretrained(args.checkpoint))
            wrapped.world_model.compile_rollout(options={})
            rivals["compiled_python_wrapper"] = make_planner(wrapped, cfg.planners[0], cfg, low, high)
            t0 = time.perf_counter()
            rivals["compiled_python_wrapper"].plan(z, goal)
            rows["python_wrapper_first_call_s"] = round(time.perf_counter() - t0, 1)
    if len(rivals) > 1:
        rows["compiled_vs_eager"] = alternate(rivals, z, goal, args.calls, inputs)
    result = {
        "checkpoint": str(args.checkpoint),
        "horizon": cfg.horizon,
        "threads": args.threads,
        "matmul_gflop_s": round(rate, 1),
        "machine": machine_facts(args.threads),
        "rows": rows,
        "command": " ".join(["python", "benchmarks/planning_speed.py", *(argv if argv is not None else sys.argv[1:])]),
    }
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    for k, v in rows.items():
        if not isinstance(v, dict) or "median_ms_per_call" not in v:
            print(f"{k:>18}: {v}")
            continue
        print(f"{k:>18}: {v['median_ms_per_call']:.1f} ms a call (p95 {v['p95_ms_per_call']:.1f}), "
              f"{v['ms_per_env']:.2f} ms/env, {v['gflop_per_call']:.2f} GFLOP, matmul fraction {v['matmul_fraction']:.2f}")  # fmt: skip
    return result


if __name__ == "__main__":
    main()
