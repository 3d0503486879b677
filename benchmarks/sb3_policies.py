"""SB3 policies beside the planners: PPO on latents with a budget of real steps, and PPO trained only in the dream.

Both policies observe what `envs.latent.LatentObservationWrapper` gives (the latent and the goal latent of a
trained world model) and are evaluated exactly as the planning benchmark evaluates MPC
(`agents.benchmark.PlanningBenchmarkConfig`: TwoRooms with start and goal in different rooms, 50 episodes
from seed 1000, at most 100 steps each) by `agents.evaluate.evaluate`: the policy acts on the pixels through
`agents.sb3.LatentPolicyPrior` (encode, then the policy) and gets the goal image through ``set_goal``.

Rows (and a uniformly random policy for reference):

- ``ppo_latent``: PPO in the real environment seen through the encoder, ``--latent-steps`` real steps;
- ``ppo_dream``: PPO in `envs.dream.LatentDreamVectorEnv` (reward: minus the latent distance to the goal)
  for ``--dream-steps`` imagined steps, from the latents of ``--dream-start-steps`` random real steps (or
  of the frames of ``--dream-starts``, an episode directory, spending no real step).

Each row: success rate with its Wilson 95% interval, mean final distance, real environment steps spent on
training, wall-clock seconds of training and of evaluation. Written to ``benchmarks/results/sb3_policies.json``
(``--out``); the policies, TensorBoard logs and summaries go under ``--work-dir``.

Full run, as in the README (the demo's world model, trained on recordings with frame skip 4, hence
action repeat 4 and 25 agent steps = the registered 100 environment steps, as in the planning table)::

    python benchmarks/sb3_policies.py --checkpoint runs/demo/world_model --dream-starts runs/demo/episodes \\
        --latent-steps 100000 --dream-steps 300000 --num-envs 8 --action-repeat 4 --max-steps 25
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import time
from pathlib import Path
from typing import Any

import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from torchwm.agents.benchmark import PlanningBenchmarkConfig, benchmark_config_for, make_benchmark_env
from torchwm.agents.evaluate import EvalResult, RandomPolicy, evaluate
from torchwm.agents.policy_config import PolicyTrainingConfig
from torchwm.agents.sb3 import LatentPolicyPrior
from torchwm.agents.train_policy import train_policy
from torchwm.wm.world_model import WorldModel

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "sb3_policies.json"


def training_config(
    args: argparse.Namespace, bench: PlanningBenchmarkConfig, mode: str
) -> PolicyTrainingConfig:
    """PPO on the benchmark's task: goal-conditioned, same reset options and episode length."""
    return PolicyTrainingConfig(
        algo="ppo",
        env=bench.env_id,
        checkpoint=args.checkpoint,
        mode=mode,  # type: ignore[arg-type]
        steps=args.latent_steps if mode == "latent" else args.dream_steps,
        out=str(Path(args.work_dir) / f"ppo_{mode}"),
        goal=True,
        reset_options=json.dumps(dict(bench.reset_options)),
        max_episode_steps=bench.max_steps,
        action_repeat=bench.action_repeat,
        num_envs=args.num_envs,
        dream_starts=args.dream_starts,
        dream_start_steps=args.dream_start_steps,
        n_steps=args.n_steps,
        eval_freq=0,  # evaluated once below, on the benchmark's seeds
        seed=args.train_seed,
        threads=args.threads,
        progress_bar=args.progress_bar,
    ).validate()


def evaluation_row(result: EvalResult, seconds: float) -> dict[str, Any]:
    row = result.to_dict()
    row["eval_seconds"] = seconds
    return row


def run(args: argparse.Namespace) -> dict[str, Any]:
    given = {k: getattr(args, k) for k in ("episodes", "seed", "max_steps", "action_repeat") if getattr(args, k) is not None}
    bench = benchmark_config_for(args.checkpoint, **given)  # the planning table's task unless overridden
    world_model: WorldModel = WorldModel.from_pretrained(args.checkpoint)
    methods: dict[str, Any] = {}
    for mode in ("latent", "dream"):
        cfg = training_config(args, bench, mode)
        trained = train_policy(cfg, world_model)
        t0 = time.perf_counter()
        policy = LatentPolicyPrior(trained.policy, world_model)
        result = evaluate(policy, lambda: make_benchmark_env(bench), bench.episodes, bench.seed, bench.max_steps)
        row = evaluation_row(result, time.perf_counter() - t0)
        row.update(
            timesteps=trained.timesteps, real_env_steps=trained.real_env_steps, train_seconds=trained.seconds,
            policy=trained.policy,
        )  # fmt: skip
        methods[f"ppo_{mode}"] = row
        report(f"ppo_{mode}", row)
    t0 = time.perf_counter()
    random = evaluate(
        RandomPolicy(make_benchmark_env(bench).action_space, seed=bench.seed),
        lambda: make_benchmark_env(bench),
        bench.episodes,
        bench.seed,
        bench.max_steps,
    )
    methods["random"] = {
        **evaluation_row(random, time.perf_counter() - t0),
        "real_env_steps": 0,
        "train_seconds": 0.0,
    }
    report("random", methods["random"])
    return {
        "env_id": bench.env_id,
        "checkpoint": str(args.checkpoint),
        "evaluation": {
            k: v
            for k, v in dataclasses.asdict(bench).items()
            if k in ("episodes", "max_steps", "seed", "action_repeat")
        }
        | {"reset_options": dict(bench.reset_options)},
        "budgets": {
            "latent_steps": args.latent_steps,
            "dream_steps": args.dream_steps,
            "dream_start_steps": 0 if args.dream_starts else args.dream_start_steps,
            "num_envs": args.num_envs,
        },
        "machine": {"platform": platform.platform(), "threads": torch.get_num_threads()},
        "methods": methods,
    }


def report(name: str, row: dict[str, Any]) -> None:
    lo, hi = row["success_ci95"]
    print(
        f"{name:>11}: success {row['success_rate']:.2f} (95% CI {lo:.2f}-{hi:.2f}), "
        f"final distance {row['final_distance']:.3f}, real env steps {row['real_env_steps']}, "
        f"train {row['train_seconds']:.0f} s, eval {row['eval_seconds']:.0f} s"
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    defaults = PlanningBenchmarkConfig()
    unset = "default: what the checkpoint and its recipe say, as in the planning benchmark"
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", required=True, help="trained world-model checkpoint (or run) directory")
    p.add_argument("--latent-steps", type=int, default=200_000, help="real steps of PPO on latents")
    p.add_argument("--dream-steps", type=int, default=500_000, help="imagined steps of PPO in the dream")
    p.add_argument("--dream-starts", default="", help="episode directory whose frames start dream episodes")
    p.add_argument(
        "--dream-start-steps", type=int, default=2000, help="random real steps giving dream starts"
    )
    p.add_argument("--num-envs", type=int, default=8, help="environments stepped together in training")
    p.add_argument("--n-steps", type=int, default=256, help="PPO steps per environment per rollout")
    p.add_argument("--train-seed", type=int, default=0, help="seed of training (evaluation uses --seed)")
    p.add_argument("--episodes", type=int, default=defaults.episodes, help="evaluation episodes")
    p.add_argument("--seed", type=int, default=defaults.seed, help="seed of the first evaluation episode")
    p.add_argument("--max-steps", type=int, default=None, help=f"step budget of an episode, agent steps ({unset})")
    p.add_argument("--action-repeat", type=int, default=None, help=f"environment steps per action ({unset})")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: torch's default)")
    p.add_argument("--work-dir", default="runs/sb3_policies", help="policies, TensorBoard logs, summaries")
    p.add_argument("--out", default=str(RESULTS_PATH), help="results JSON")
    p.add_argument("--progress-bar", action=argparse.BooleanOptionalAction, default=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    results = run(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2, default=str))
    print(f"results in {out}")


if __name__ == "__main__":
    main()
