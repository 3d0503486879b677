"""MkDocs hook: the reference pages are generated from the code at build time, so they never drift from it.

``<!-- torchwm:cli -->`` in a page becomes the ``--help`` of every ``torchwm`` command (generated from the config
dataclasses by `torchwm.cli.build_parser`); ``<!-- torchwm:api -->`` becomes every public name of ``torchwm``
(`torchwm.__all__`) with its signature and docstring.
"""

from __future__ import annotations

import argparse
import inspect
import os
from typing import Any


def _help(parser: argparse.ArgumentParser) -> str:
    os.environ["COLUMNS"] = "110"  # argparse wraps to the terminal; a fixed width keeps the page stable
    return parser.format_help()


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # argparse keeps its subcommands here and nowhere public
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def cli_reference() -> str:
    from torchwm.cli import build_parser

    parser = build_parser()
    parts = ["```text", _help(parser).rstrip(), "```"]
    for name, sub in _subparsers(parser).items():
        nested = _subparsers(sub)
        for full, p in ([(f"{name} {k}", v) for k, v in nested.items()] if nested else [(name, sub)]):
            parts += [f"## `torchwm {full}`", "", "```text", _help(p).rstrip(), "```", ""]
    return "\n".join(parts)


def _signature(obj: Any) -> str:
    try:
        return str(inspect.signature(obj))
    except (TypeError, ValueError):
        return ""


def api_reference() -> str:
    import torchwm

    parts = []
    for name in torchwm.__all__:
        obj = getattr(torchwm, name)
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
        module = getattr(obj, "__module__", "") if kind != "value" else ""
        parts += [f"## `{name}`", "", f"*{kind}*" + (f", `{module}`" if module else ""), ""]
        if kind != "value":
            parts += ["```python", f"{name}{_signature(obj)}", "```", ""]
        doc = inspect.getdoc(obj) if kind != "value" else repr(obj)
        parts += ["```text", (doc or "(no docstring)").rstrip(), "```", ""]
    return "\n".join(parts)


def on_page_markdown(markdown: str, **_: Any) -> str:
    if "<!-- torchwm:cli -->" in markdown:
        markdown = markdown.replace("<!-- torchwm:cli -->", cli_reference())
    if "<!-- torchwm:api -->" in markdown:
        markdown = markdown.replace("<!-- torchwm:api -->", api_reference())
    return markdown
