"""The ``torchwm`` command line. Options of ``pretrain`` are generated from `JEPAConfig`'s fields."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from wm.config import PRESETS, JEPAConfig, read_config_file


def _field_docs(cls: type = JEPAConfig) -> dict[str, str]:
    """Field docstrings (the string literal under each field) for --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(cls))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for stmt, nxt in zip(body, body[1:]):
        if (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(nxt, ast.Expr)
            and isinstance(nxt.value, ast.Constant)
        ):
            docs[stmt.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def add_config_arguments(parser: argparse.ArgumentParser, cls: type = JEPAConfig) -> None:
    """One ``--field-name`` option per field of the config dataclass, typed from its annotation; default: unset."""
    hints = typing.get_type_hints(cls)
    docs = _field_docs(cls)
    group = parser.add_argument_group("config fields (override the preset and --config)")
    for f in dataclasses.fields(cls):
        hint, flag = hints[f.name], "--" + f.name.replace("_", "-")
        kwargs: dict[str, Any] = {"dest": f.name, "default": argparse.SUPPRESS, "help": docs.get(f.name, "")}
        if typing.get_origin(hint) is Literal:
            kwargs["choices"] = list(typing.get_args(hint))
        elif hint is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            kwargs["type"] = hint
        group.add_argument(flag, **kwargs)


def config_from_args(args: argparse.Namespace) -> JEPAConfig:
    """Preset, then the YAML/JSON file, then the command-line fields, validated."""
    data: dict[str, Any] = dict(PRESETS[args.preset])
    if args.config:  # only the fields the file sets, so a partial file layers on the preset
        data.update(read_config_file(args.config))
    names = {f.name for f in dataclasses.fields(JEPAConfig)}
    data.update({k: v for k, v in vars(args).items() if k in names})
    return JEPAConfig.from_dict(data)


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from wm.trainer import JEPAAgent

    summary = JEPAAgent(config_from_args(args)).train()
    print(
        f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
        f"{summary.clips_per_s:.1f} clips/s; checkpoint {summary.checkpoint}"
    )
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from torchwm.demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    import envs  # noqa: F401  (registers the built-in environments)
    from envs.record import record

    policy: Any = args.policy
    if policy != "random":
        from stable_baselines3.common.base_class import BaseAlgorithm

        policy = _load_sb3(policy, BaseAlgorithm)
    out = record(
        args.env,
        policy,
        args.episodes,
        args.out,
        num_envs=args.num_envs,
        seed=args.seed,
        max_steps=args.max_steps,
        frame_skip=args.frame_skip,
        lossless=args.lossless,
    )
    print(f"recorded {args.episodes} episode(s) of {args.env} into {out}")
    return 0


def _load_sb3(path: str, base: type) -> Any:
    """Load a stable-baselines3 ``.zip`` whatever its algorithm (the zip names it)."""
    import zipfile

    import stable_baselines3

    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"--policy must be 'random' or a stable-baselines3 model .zip; {path} is not a zip file"
        )
    for name in ("PPO", "SAC", "A2C", "TD3", "DDPG", "DQN"):
        try:
            return getattr(stable_baselines3, name).load(path, device="cpu")
        except (ValueError, KeyError, AssertionError, RuntimeError):
            continue
    raise ValueError(f"{path} is not a model of any stable-baselines3 algorithm this command knows")


def _cmd_train_world_model(args: argparse.Namespace) -> int:
    from wm.wm_trainer import WorldModelConfig, WorldModelTrainer

    names = {f.name for f in dataclasses.fields(WorldModelConfig)}
    cfg = WorldModelConfig.from_dict({k: v for k, v in vars(args).items() if k in names})
    path = WorldModelTrainer(cfg).run()
    print(f"world model checkpoint: {path}")
    return 0


def _cmd_bench_planning(args: argparse.Namespace) -> int:
    import envs  # noqa: F401  (registers the built-in environments)
    from agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark

    options = (("different_rooms", True),) if args.different_rooms else ()
    cfg = PlanningBenchmarkConfig(
        env_id=args.env,
        episodes=args.episodes,
        max_steps=args.max_steps,
        seed=args.seed,
        reset_options=options,
        planners=tuple(args.planners),
        horizon=args.horizon,
        gifs=args.gifs,
    )
    run_planning_benchmark(args.checkpoint, args.out, cfg)
    print(f"results in {args.out}/planning.json")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchwm", description="Video world models for model-based RL.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain a JEPA (python -m torchwm pretrain, or under torchrun)")
    p.add_argument("--config", help="YAML or JSON config file")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="starting preset")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_pretrain)
    d = sub.add_parser("demo", help="the main job: record, pretrain, plan on TwoRooms (no downloads)")
    d.add_argument("--out", default="runs/demo", help="output directory")
    d.add_argument("--quick", action="store_true", help="a tiny budget (a smoke test, not a result)")
    d.set_defaults(func=_cmd_demo)
    r = sub.add_parser("record", help="record rollouts of a gymnasium environment into an episode directory")
    r.add_argument("--env", required=True, help="gymnasium id, e.g. torchwm/TwoRooms-v0 or Pendulum-v1")
    r.add_argument("--episodes", type=int, required=True, help="episodes to record")
    r.add_argument("--out", required=True, help="episode directory (appended to if it exists)")
    r.add_argument("--policy", default="random", help="'random' or a stable-baselines3 model .zip")
    r.add_argument(
        "--frame-skip", type=int, default=1, help="repeat each action k times, record every k-th frame"
    )
    r.add_argument("--num-envs", type=int, default=4, help="sub-environments of the vector env")
    r.add_argument("--max-steps", type=int, default=None, help="cut episodes at this many recorded steps")
    r.add_argument("--seed", type=int, default=0, help="episode i is reset with seed + i")
    r.add_argument("--lossless", action="store_true", help="bit-exact frames (larger files)")
    r.set_defaults(func=_cmd_record)
    from wm.wm_trainer import WorldModelConfig

    w = sub.add_parser(
        "train-world-model", help="train the action-conditioned world model on recorded rollouts"
    )
    add_config_arguments(w, WorldModelConfig)
    w.set_defaults(func=_cmd_train_world_model)
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bp = bsub.add_parser("planning", help="closed-loop MPC vs random and greedy baselines")
    bp.add_argument("--checkpoint", required=True, help="world-model checkpoint or run directory")
    bp.add_argument("--env", default="torchwm/TwoRooms-v0")
    bp.add_argument("--episodes", type=int, default=50)
    bp.add_argument("--max-steps", type=int, default=100)
    bp.add_argument("--seed", type=int, default=1000)
    bp.add_argument("--horizon", type=int, default=8)
    bp.add_argument("--planners", nargs="+", default=["cem", "mppi"], choices=["cem", "mppi"])
    bp.add_argument("--different-rooms", action=argparse.BooleanOptionalAction, default=True)
    bp.add_argument("--gifs", type=int, default=2)
    bp.add_argument("--out", default="runs/bench_planning")
    bp.set_defaults(func=_cmd_bench_planning)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, FileNotFoundError) as err:
        print(f"torchwm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
