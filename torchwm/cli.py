"""The ``torchwm`` command line. Options of ``pretrain`` are generated from `JEPAConfig`'s fields."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from wm.config import PRESETS, JEPAConfig, read_config_file


def _field_docs() -> dict[str, str]:
    """Field docstrings (the string literal under each field) for --help."""
    import ast
    import inspect

    tree = ast.parse(inspect.getsource(JEPAConfig))
    docs: dict[str, str] = {}
    body = tree.body[0].body  # type: ignore[attr-defined]
    for stmt, nxt in zip(body, body[1:]):
        if isinstance(stmt, ast.AnnAssign) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            docs[stmt.target.id] = str(nxt.value.value)  # type: ignore[union-attr]
    return docs


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--field-name`` option per `JEPAConfig` field, typed from its annotation; default: unset."""
    hints = typing.get_type_hints(JEPAConfig)
    docs = _field_docs()
    group = parser.add_argument_group("config fields (override the preset and --config)")
    for f in dataclasses.fields(JEPAConfig):
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
    print(f"done: {summary.steps} steps, final loss {summary.final_loss:.4f}, "
          f"{summary.clips_per_s:.1f} clips/s; checkpoint {summary.checkpoint}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from wm.trainer import JEPAAgent

    cfg = JEPAConfig.preset("tiny", output_dir=args.out, max_steps=args.steps, synthetic_clips=4096)
    print(f"torchwm demo: pretraining the tiny JEPA on built-in moving-shapes video for {args.steps} steps -> {args.out}")
    summary = JEPAAgent(cfg).train()
    print(f"done: final loss {summary.final_loss:.4f}, {summary.clips_per_s:.1f} clips/s, "
          f"effective rank {summary.monitor.get('effective_rank', float('nan')):.1f}; checkpoint {summary.checkpoint}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="torchwm", description="Video world models for model-based RL.")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("pretrain", help="pretrain a JEPA (python -m torchwm pretrain, or under torchrun)")
    p.add_argument("--config", help="YAML or JSON config file")
    p.add_argument("--preset", default="default", choices=sorted(PRESETS), help="starting preset")
    add_config_arguments(p)
    p.set_defaults(func=_cmd_pretrain)
    d = sub.add_parser("demo", help="the main job: a short run on the built-in data, no downloads")
    d.add_argument("--out", default="runs/demo", help="output directory")
    d.add_argument("--steps", type=int, default=300, help="pretraining steps")
    d.set_defaults(func=_cmd_demo)
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
