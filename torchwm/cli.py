"""The ``torchwm`` command line. Options of ``pretrain`` are generated from `JEPAConfig`'s fields."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import sys
import textwrap
import types
import typing
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Literal

from torchwm.wm.config_base import C, Config, field_hints, read_config_file
from torchwm.wm.runs import RunError


def _field_docs(cls: type) -> dict[str, str]:
    """Field docstrings (the string literal under each field) of a dataclass and its bases, for --help."""
    import ast
    import inspect

    docs: dict[str, str] = {}
    for klass in reversed(cls.__mro__):
        if not dataclasses.is_dataclass(klass):
            continue
        body = ast.parse(textwrap.dedent(inspect.getsource(klass))).body[0].body  # type: ignore[attr-defined]
        for stmt, nxt in zip(body, body[1:]):
            if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[stmt.target.id] = " ".join(str(nxt.value.value).split())  # type: ignore[union-attr]
    return docs


def _option_kind(hint: Any) -> dict[str, Any] | None:
    """argparse keywords for a field's annotation; None for fields only a --config file can set (nested configs)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is typing.Annotated:
        return _option_kind(args[0])
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return _option_kind(inner[0]) if len(inner) == 1 else None
    if origin is Literal:
        return {"choices": list(args), "type": type(args[0])}
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:  # repeatable: --x a b, or --x a --x b
        item = _option_kind(args[0])
        return None if item is None or "action" in item else {**item, "nargs": "+", "action": "extend"}
    if hint is bool:
        return {"action": argparse.BooleanOptionalAction}
    if hint in (int, float, str):
        return {"type": hint}
    return None


_ALIASES = {"imports": ("--import",)}
"""Second spellings of a few options (``import`` cannot be a field name)."""


def add_config_arguments(parser: argparse.ArgumentParser, cls: type[Config]) -> None:
    """``--config FILE``, ``--preset NAME`` and one ``--field-name`` option per field of the config dataclass,
    typed from its annotation, documented by its docstring; an option not given leaves the field alone."""
    parser.add_argument("--config", help="YAML or JSON file of field values (layered on the preset)")
    parser.add_argument("--preset", default="default", choices=cls.preset_names(), help="starting preset")
    _add_fields(parser.add_argument_group(f"{cls.__name__} fields (override the preset and --config)"), cls, "")


def _add_fields(group: Any, cls: type, prefix: str) -> None:
    """One option per field; a nested config's fields as ``--name.field`` (dest ``name.field``)."""
    hints = field_hints(cls)
    docs = _field_docs(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        nested = _nested_config(hints[f.name])
        if nested is not None:
            _add_fields(group, nested, f"{prefix}{f.name}.")
            continue
        hint = hints[f.name]
        kind = _option_kind(hint)
        if kind is None:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = f" (default: {default})" if default not in (None, "") else ""
        help_text = (docs.get(f.name, "") + shown).replace("%", "%%")
        flags = ["--" + prefix + f.name.replace("_", "-"), *_ALIASES.get(prefix + f.name, ())]
        group.add_argument(*flags, dest=prefix + f.name, default=argparse.SUPPRESS, help=help_text, **kind)


def _nested_config(hint: Any) -> type | None:
    """The config class of a nested-config field (``X`` or ``X | None``), else None."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        hint = inner[0] if len(inner) == 1 else None
    if isinstance(hint, type) and issubclass(hint, Config) and dataclasses.is_dataclass(hint):
        return hint
    return None


def config_from_args(args: argparse.Namespace, cls: type[C]) -> C:
    """The preset, then the YAML/JSON file, then the command-line fields, validated."""
    data: dict[str, Any] = dict(cls.PRESETS.get(args.preset, {}))
    if args.config:  # only the fields the file sets, so a partial file layers on the preset
        data.update(read_config_file(args.config))
    names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, value in vars(args).items():
        head, _, rest = key.partition(".")
        if head not in names:
            continue
        if rest:  # a nested config's field: merged into what the preset and the file set for it
            data[head] = {**data.get(head, {}), rest: value}
        else:
            data[key] = value
    return cls.from_dict(data)


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
    from torchwm.wm.config import JEPAConfig
    from torchwm.wm.trainer import JEPAAgent

    cfg = config_from_args(args, JEPAConfig)  # a bad value fails here, before any process group is joined
    with torchrun_process_group() as rank:
        summary = JEPAAgent(cfg).train()
    if rank == 0:
        print(
            f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
            f"{summary.clips_per_s:.1f} clips/s; checkpoint {summary.checkpoint}"
        )
    return 0


def _cmd_fit(args: argparse.Namespace) -> int:
    from torchwm.pipeline import FitJob, fit

    job = config_from_args(args, FitJob)
    result = fit(job.env, job.out, job.recipe, seed=job.seed, num_envs=job.num_envs, progress=job.progress,
                 imports=job.imports, max_steps=job.max_steps or None, proprio=job.proprio,
                 overwrite=job.overwrite)  # fmt: skip
    print(f"world model: {result.world_model} (recipe {result.recipe!r}, seed {result.seed}); plan with "
          f"torchwm bench planning --checkpoint {result.world_model}")
    return 0


def _cmd_learn(args: argparse.Namespace) -> int:
    from torchwm.online import LearnJob, learn

    summary = learn(config_from_args(args, LearnJob))
    last = summary["curve"][-1]
    print(f"round {last['round']}: {summary['metric']} {last['value']:.3f} after {last['env_steps']} environment steps "
          f"({last['wall_seconds']:.0f} s); learning curve: {summary['job']['out']}/learning_curve.png")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from torchwm.demo import DemoJob, run_demo

    job = config_from_args(args, DemoJob)
    run_demo(job.out, quick=job.quick)
    return 0


def _cmd_record(args: argparse.Namespace) -> int:
    from torchwm.envs.record import RecordJob, record

    job = config_from_args(args, RecordJob)
    policy: Any = job.policy
    if policy != "random":
        from torchwm.agents.sb3 import load_sb3

        policy = load_sb3(policy)
    out = record(
        job.env, policy, job.episodes, job.out, num_envs=job.num_envs, seed=job.seed,
        max_steps=job.max_steps or None, frame_skip=job.frame_skip, lossless=job.lossless, progress=job.progress,
        imports=job.imports, image_size=job.image_size or None, overwrite=job.overwrite,
    )  # fmt: skip
    print(f"recorded {job.episodes} episode(s) of {job.env} into {out}")
    return 0


def _cmd_train_world_model(args: argparse.Namespace) -> int:
    from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer

    path = WorldModelTrainer(config_from_args(args, WorldModelConfig)).run()
    print(f"world model checkpoint: {path}")
    return 0


def _cmd_bench_planning(args: argparse.Namespace) -> int:
    import torchwm.envs  # noqa: F401  (registers the built-in environments)
    from torchwm.agents.benchmark import PlanningJob, run_planning_benchmark

    job = config_from_args(args, PlanningJob)
    run_planning_benchmark(job.checkpoint, job.out, job.benchmark_config())
    print(f"results in {job.out}/planning.json")
    return 0


def _cmd_bench_suite(args: argparse.Namespace) -> int:
    import torchwm.envs  # noqa: F401  (registers the built-in environments)
    from torchwm.bench.suite import SuiteJob, run_suite

    job = config_from_args(args, SuiteJob)
    run_suite(job)
    print(f"table in {job.results} (plot {job.results.removesuffix('.json')}.png)")
    return 0


def _cmd_train_policy(args: argparse.Namespace) -> int:
    from torchwm.agents.policy_config import PolicyTrainingConfig
    from torchwm.agents.train_policy import train_policy

    result = train_policy(config_from_args(args, PolicyTrainingConfig))
    print(
        f"policy: {result.policy} ({result.timesteps} timesteps, {result.real_env_steps} real env steps, "
        f"{result.seconds:.0f} s)"
    )
    return 0


def _cmd_features(args: argparse.Namespace) -> int:
    from torchwm.wm.downstream.features import FeaturesJob, export_features

    job = config_from_args(args, FeaturesJob)
    features = export_features(job.checkpoint, job.data, job.out, kind=job.kind, data_kind=job.data_kind,
                               batch_size=job.batch_size, device=job.device, progress=job.progress)  # fmt: skip
    print(f"wrote {job.kind} features of {len(features)} items of {job.data} to {job.out}")
    return 0


def _cmd_probe(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from torchwm.wm.downstream.features import FeatureSet
    from torchwm.wm.downstream.probes import ProbeJob, probe_checkpoint, run_probes

    job = config_from_args(args, ProbeJob)
    if job.features:
        results = run_probes(FeatureSet.load(job.features), job)
    else:
        results = probe_checkpoint(job.checkpoint, job.data, job, job.data_kind, job.encode_batch_size,
                                   progress=job.progress)  # fmt: skip
    report = json.dumps({kind: r.to_dict() for kind, r in results.items()}, indent=2)
    print(report)
    if job.out:
        Path(job.out).write_text(report + "\n")
    return 0


def _cmd_finetune(args: argparse.Namespace) -> int:
    from torchwm.wm.downstream.finetune import FinetuneConfig, Finetuner

    summary = Finetuner(config_from_args(args, FinetuneConfig)).run()
    print(f"done: {summary.steps} steps, held-out top-1 accuracy {summary.accuracy:.3f} "
          f"({summary.num_held_out} items); checkpoint {summary.checkpoint}")
    return 0


def _commands() -> list[tuple[str, str, str, Callable[[argparse.Namespace], int]]]:
    """(name, help, module:ConfigClass, handler) of every command; each command's options are its config's."""
    return [
        ("demo", "the main job: record, pretrain, train the world model and plan on TwoRooms (no downloads)",
         "torchwm.demo:DemoJob", _cmd_demo),
        ("fit", "record, pretrain and train a world model for an env with a named recipe (resumable)",
         "torchwm.pipeline:FitJob", _cmd_fit),
        ("learn", "model-based RL: fit on random episodes, then collect with the planner and update, in rounds "
         "(resumable)", "torchwm.online:LearnJob", _cmd_learn),
        ("record", "record rollouts of a gymnasium environment into an episode directory",
         "torchwm.envs.record:RecordJob", _cmd_record),
        ("pretrain", "pretrain a JEPA (python -m torchwm pretrain, or under torchrun)",
         "torchwm.wm.config:JEPAConfig", _cmd_pretrain),
        ("train-world-model", "train the action-conditioned world model on recorded rollouts",
         "torchwm.wm.wm_trainer:WorldModelConfig", _cmd_train_world_model),
        ("train-policy", "train a stable-baselines3 policy (PPO, SAC) on latents or in the dream",
         "torchwm.agents.policy_config:PolicyTrainingConfig", _cmd_train_policy),
        ("features", "export a checkpoint's frozen features of a folder to .npz",
         "torchwm.wm.downstream.features:FeaturesJob", _cmd_features),
        ("probe", "linear and attentive probes of a frozen encoder (held-out top-1 accuracy)",
         "torchwm.wm.downstream.probes:ProbeJob", _cmd_probe),
        ("finetune", "fine-tune a pretrained encoder with a classification head",
         "torchwm.wm.downstream.finetune:FinetuneConfig", _cmd_finetune),
    ]  # fmt: skip


def _config_class(ref: str) -> type[Config]:
    import importlib

    module, name = ref.split(":")
    cls: type[Config] = getattr(importlib.import_module(module), name)
    return cls


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchwm", description="Video world models for model-based RL.")
    sub = parser.add_subparsers(dest="command", required=True)
    for name, help_text, ref, handler in _commands():
        p = sub.add_parser(name, help=help_text)
        add_config_arguments(p, _config_class(ref))
        p.set_defaults(func=handler)
        if name == "train-policy":  # two spellings of --mode
            where = p.add_mutually_exclusive_group()
            for mode, what in (("latent", "in the real environment seen through the encoder"),
                               ("dream", "in the world model's dream environment")):  # fmt: skip
                where.add_argument(f"--{mode}", dest="mode", action="store_const", const=mode,
                                   default=argparse.SUPPRESS, help=f"learn {what} (--mode {mode})")  # fmt: skip
    b = sub.add_parser("bench", help="benchmarks")
    bsub = b.add_subparsers(dest="bench", required=True)
    bp = bsub.add_parser("planning", help="closed-loop MPC vs random and greedy baselines")
    add_config_arguments(bp, _config_class("torchwm.agents.benchmark:PlanningJob"))
    bp.set_defaults(func=_cmd_bench_planning)
    bs = bsub.add_parser("suite", help="one recipe trained and planned on every environment of the suite (resumable)")
    add_config_arguments(bs, _config_class("torchwm.bench.suite:SuiteJob"))
    bs.set_defaults(func=_cmd_bench_suite)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ValueError, FileNotFoundError, RunError) as err:
        print(f"torchwm {args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
