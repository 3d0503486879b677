"""The ``torchwm`` command line. Options of ``pretrain`` are generated from `JEPAConfig`'s fields."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from torchwm.wm.config import PRESETS, JEPAConfig, read_config_file


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


@contextlib.contextmanager
def torchrun_process_group() -> Iterator[int]:
    """Under ``torchrun`` (``WORLD_SIZE`` > 1 in the environment) join the process group for the block,
    NCCL on GPUs (one per ``LOCAL_RANK``) and gloo on CPUs; yields this process's rank (0 without torchrun).

    The trainer sees the group and wraps the model in DDP; the group is left again at the end.
    """
    import torch
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 or dist.is_initialized():
        yield dist.get_rank() if dist.is_initialized() else 0
        return
    if torch.cuda.is_available():
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    try:
        yield dist.get_rank()
        dist.barrier()  # no rank leaves while rank 0 still writes the final checkpoint
    finally:
        dist.destroy_process_group()


def _cmd_pretrain(args: argparse.Namespace) -> int:
    from torchwm.wm.trainer import JEPAAgent

    cfg = config_from_args(args)  # a bad value fails here, before any process group is joined
    with torchrun_process_group() as rank:
        summary = JEPAAgent(cfg).train()
    if rank == 0:
        print(
            f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
            f"{summary.clips_per_s:.1f} clips/s; checkpoint {summary.checkpoint}"
        )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    import torchwm.envs  # noqa: F401  (registers the built-in environments)
    from torchwm.pipeline import fit

    result = fit(args.env, args.out, args.recipe, seed=args.seed, num_envs=args.num_envs)
    print(f"world model: {result.world_model} (recipe {result.recipe!r}, seed {result.seed}); plan with "
          f"torchwm bench planning --checkpoint {result.world_model}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from torchwm.demo import run_demo

    run_demo(args.out, quick=args.quick)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    import torchwm.envs  # noqa: F401  (registers the built-in environments)
    from torchwm.envs.record import record

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
    from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer

    names = {f.name for f in dataclasses.fields(WorldModelConfig)}
    cfg = WorldModelConfig.from_dict({k: v for k, v in vars(args).items() if k in names})
    path = WorldModelTrainer(cfg).run()
    print(f"world model checkpoint: {path}")
    return 0


def _cmd_bench_planning(args: argparse.Namespace) -> int:
    import torchwm.envs  # noqa: F401  (registers the built-in environments)
    from torchwm.agents.benchmark import benchmark_config_for, planner_configs, run_planning_benchmark

    given = {k: v for k, v in vars(args).items() if v is not None}
    overrides: dict[str, Any] = {
        field: given[name]
        for name, field in (
            ("env", "env_id"), ("episodes", "episodes"), ("max_steps", "max_steps"), ("seed", "seed"),
            ("horizon", "horizon"), ("action_repeat", "action_repeat"), ("gifs", "gifs"), ("threads", "threads"),
        )
        if name in given
    }  # fmt: skip
    if "planners" in given:
        overrides["planners"] = tuple(given["planners"])
    if "different_rooms" in given:
        overrides["reset_options"] = (("different_rooms", True),) if given["different_rooms"] else ()
    cfg = benchmark_config_for(args.checkpoint, **overrides)
    if any(k in given for k in ("samples", "elites", "iterations", "cost_on")):
        cem, mppi = planner_configs(
            given.get("samples", cfg.mppi.num_samples), given.get("cost_on", cfg.mppi.cost_on),
            given.get("elites", 0), given.get("iterations", 0),
        )  # fmt: skip
        cfg = dataclasses.replace(cfg, cem=cem, mppi=mppi)
    run_planning_benchmark(args.checkpoint, args.out, cfg)
    print(f"results in {args.out}/planning.json")
    return 0


def _cmd_train_policy(args: argparse.Namespace) -> int:
    from torchwm.agents.policy_config import PolicyTrainingConfig
    from torchwm.agents.train_policy import train_policy

    names = {f.name for f in dataclasses.fields(PolicyTrainingConfig)}
    result = train_policy(PolicyTrainingConfig.from_dict({k: v for k, v in vars(args).items() if k in names}))
    print(
        f"policy: {result.policy} ({result.timesteps} timesteps, {result.real_env_steps} real env steps, "
        f"{result.seconds:.0f} s)"
    )
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from torchwm.wm.features import export_features

    features = export_features(args.checkpoint, args.data, args.out, kind=args.kind, data_kind=args.data_kind,
                               batch_size=args.batch_size, device=args.device, progress=args.progress)
    print(f"wrote {args.kind} features of {len(features)} items of {args.data} to {args.out}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from torchwm.wm.features import FeatureSet
    from torchwm.wm.probes import ProbeConfig, probe_checkpoint, run_probes

    names = {f.name for f in dataclasses.fields(ProbeConfig)}
    cfg = ProbeConfig.from_dict({k: v for k, v in vars(args).items() if k in names})
    if args.features:
        results = run_probes(FeatureSet.load(args.features), cfg)
    elif args.checkpoint and args.data:
        results = probe_checkpoint(args.checkpoint, args.data, cfg, args.data_kind, args.encode_batch_size,
                                   progress=args.progress)
    else:
        raise ValueError("give --features FILE.npz (from `torchwm features`), or --checkpoint DIR and --data DIR")
    report = json.dumps({kind: r.to_dict() for kind, r in results.items()}, indent=2)
    print(report)
    if args.out:
        Path(args.out).write_text(report + "\n")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from torchwm.wm.finetune import FinetuneConfig, Finetuner

    names = {f.name for f in dataclasses.fields(FinetuneConfig)}
    summary = Finetuner(FinetuneConfig.from_dict({k: v for k, v in vars(args).items() if k in names})).run()
    print(f"done: {summary.steps} steps, held-out top-1 accuracy {summary.accuracy:.3f} "
          f"({summary.num_held_out} items); checkpoint {summary.checkpoint}")
    return 0


def _add_downstream_commands(sub: Any) -> None:
    """``features``, ``probe`` and ``finetune``: a pretrained encoder on a labelled image or video folder."""
    from torchwm.wm.finetune import FinetuneConfig
    from torchwm.wm.probes import ProbeConfig

    data_kinds = ["auto", "imagefolder", "video"]
    f = sub.add_parser("features", help="export a checkpoint's frozen features of a folder to .npz")
    f.add_argument("--checkpoint", required=True, help="JEPA (or fine-tuned classifier) checkpoint or run directory")
    f.add_argument("--data", required=True, help="folder of images or videos, one sub-folder per class")
    f.add_argument("--out", required=True, help="the .npz to write (pooled, patch, paths, starts, labels, classes)")
    f.add_argument("--kind", default="both", choices=["pooled", "patch", "both"], help="which features to keep")
    f.add_argument("--data-kind", default="auto", choices=data_kinds, help="auto: videos if the folder has any")
    f.add_argument("--batch-size", type=int, default=32, help="items encoded at once")
    f.add_argument("--device", default="auto", help="auto, cpu, cuda, ...")
    f.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    f.set_defaults(func=_cmd_features)
    p = sub.add_parser("probe", help="linear and attentive probes of a frozen encoder (held-out top-1 accuracy)")
    p.add_argument("--checkpoint", help="JEPA checkpoint or run directory (with --data)")
    p.add_argument("--data", help="folder of images or videos, one sub-folder per class (with --checkpoint)")
    p.add_argument("--features", help="a .npz from `torchwm features`, instead of --checkpoint and --data")
    p.add_argument("--data-kind", default="auto", choices=data_kinds, help="auto: videos if the folder has any")
    p.add_argument("--encode-batch-size", type=int, default=32, help="items encoded at once")
    p.add_argument("--out", help="also write the results to this JSON file")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="tqdm progress bar")
    add_config_arguments(p, ProbeConfig)
    p.set_defaults(func=_cmd_probe)
    t = sub.add_parser("finetune", help="fine-tune a pretrained encoder with a classification head")
    add_config_arguments(t, FinetuneConfig)
    t.set_defaults(func=_cmd_finetune)


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
    from torchwm.wm.recipes import RECIPES

    ft = sub.add_parser("fit", help="record, pretrain and train a world model for an env with a named recipe")
    ft.add_argument("--env", required=True, help="gymnasium id, e.g. torchwm/TwoRooms-v0")
    ft.add_argument("--out", required=True, help="run folder (a killed run continues where it stopped)")
    ft.add_argument("--recipe", default="two-phase", choices=sorted(RECIPES), help="named recipe")
    ft.add_argument("--seed", type=int, default=0, help="training seed")
    ft.add_argument("--num-envs", type=int, default=4, help="sub-environments of the recorder")
    ft.set_defaults(func=_cmd_fit)
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
    from torchwm.wm.wm_trainer import WorldModelConfig

    w = sub.add_parser(
        "train-world-model", help="train the action-conditioned world model on recorded rollouts"
    )
    add_config_arguments(w, WorldModelConfig)
    w.set_defaults(func=_cmd_train_world_model)
    from torchwm.agents.policy_config import PolicyTrainingConfig

    tp = sub.add_parser(
        "train-policy", help="train a stable-baselines3 policy (PPO, SAC) on latents or in the dream"
    )
    add_config_arguments(tp, PolicyTrainingConfig)
    where = tp.add_mutually_exclusive_group()
    where.add_argument(
        "--latent",
        dest="mode",
        action="store_const",
        const="latent",
        default=argparse.SUPPRESS,
        help="learn in the real environment seen through the encoder (--mode latent)",
    )
    where.add_argument(
        "--dream",
        dest="mode",
        action="store_const",
        const="dream",
        default=argparse.SUPPRESS,
        help="learn in the world model's dream environment (--mode dream)",
    )
    tp.set_defaults(func=_cmd_train_policy)
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bp = bsub.add_parser("planning", help="closed-loop MPC vs random and greedy baselines")
    bp.add_argument("--checkpoint", required=True, help="world-model checkpoint or run directory")
    bp.add_argument("--out", default="runs/bench_planning")
    unset = "default: what the checkpoint and its recipe say"
    bp.add_argument("--env", help=f"gymnasium id ({unset})")
    bp.add_argument("--episodes", type=int, help="seeded episodes per method (default 50)")
    bp.add_argument("--max-steps", type=int, help=f"agent steps an episode may take ({unset})")
    bp.add_argument("--seed", type=int, help="seed of the first episode (default 1000)")
    bp.add_argument("--horizon", type=int, help=f"planning horizon in model steps ({unset})")
    bp.add_argument("--action-repeat", type=int, help="env steps per action (default: the checkpoint's frame skip)")
    bp.add_argument("--planners", nargs="+", choices=["cem", "mppi"], help=f"planners to evaluate ({unset})")
    bp.add_argument("--samples", type=int, help=f"candidate sequences per iteration ({unset})")
    bp.add_argument("--elites", type=int, help="elites (default: samples/8 for MPPI, samples/10 for CEM)")
    bp.add_argument("--iterations", type=int, help="iterations per planning call (default: each planner's)")
    bp.add_argument("--cost-on", choices=["final", "sum"], help="latent cost of the final step or summed (sum)")
    bp.add_argument("--different-rooms", action=argparse.BooleanOptionalAction,
                    help="TwoRooms: start and goal in different rooms (default on TwoRooms)")
    bp.add_argument("--gifs", type=int, help="MPC episodes rendered as GIFs (default 2)")
    bp.add_argument("--threads", type=int, help="torch threads while planning (default 1)")
    bp.set_defaults(func=_cmd_bench_planning)
    _add_downstream_commands(sub)
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
