"""`Config`: the one base of every config dataclass in torchwm.

What a field may hold is written in its annotation, and validation reads it from there: ``Literal`` choices,
``bool`` / ``int`` / ``float`` / ``str``, tuples, nested configs, ``X | None``, and numeric ranges given with
``Annotated`` (`Range`, or the aliases `PositiveInt`, `NonNegInt`, `PositiveFloat`, `NonNegFloat`,
`Fraction`). A config class adds the rules that tie fields together in ``check``. Every error names the class,
the field, the value and what is allowed. Each config also gets ``to_dict`` / ``from_dict``, ``save`` /
``load`` (JSON or YAML) and named presets (``PRESETS``, on top of the dataclass defaults; ``default`` is
always there). The command line is generated from the same fields (`torchwm.cli`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True)
... class Demo(Config):
...     steps: PositiveInt = 10
...     mode: Literal["fast", "slow"] = "fast"
>>> Demo.from_dict({"steps": 3}).steps
3
>>> Demo(steps=0)
Traceback (most recent call last):
...
ValueError: Demo.steps=0 is invalid: expected an integer > 0
>>> Demo.from_dict({"mode": "medium"})
Traceback (most recent call last):
...
ValueError: Demo.mode='medium' is invalid: expected one of ['fast', 'slow']
"""

from __future__ import annotations

import dataclasses
import json
import re
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, TypeVar

import yaml

CONFIG_FORMAT_VERSION = 1
"""Format version written into saved config files and checkpoints' ``config.json``."""

C = TypeVar("C", bound="Config")


@dataclass(frozen=True)
class Range:
    """Bounds of a numeric field, for ``Annotated[int, Range(gt=0)]``."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def holds(self, value: float) -> bool:
        return (
            (self.ge is None or value >= self.ge)
            and (self.gt is None or value > self.gt)
            and (self.le is None or value <= self.le)
            and (self.lt is None or value < self.lt)
        )

    def describe(self) -> str:
        parts = [f"{op} {bound:g}" for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt))
                 if bound is not None]  # fmt: skip
        return " and ".join(parts)


PositiveInt = Annotated[int, Range(gt=0)]
NonNegInt = Annotated[int, Range(ge=0)]
PositiveFloat = Annotated[float, Range(gt=0)]
NonNegFloat = Annotated[float, Range(ge=0)]
Fraction = Annotated[float, Range(ge=0, le=1)]
"""A number in [0, 1] (a momentum, a probability)."""


class Config:
    """Mixin base of the config dataclasses: validation from annotations, serialisation, presets."""

    PRESETS: ClassVar[dict[str, dict[str, Any]]] = {}
    """Named presets: mappings of field overrides on top of the dataclass defaults."""
    RUN_NEUTRAL: ClassVar[frozenset[str]] = frozenset({
        "out", "output_dir", "overwrite", "resume", "progress", "progress_bar", "verbose", "log_interval",
        "checkpoint_interval", "keep_checkpoints", "num_workers", "threads", "device", "compile", "frame_cache_gib",
        "tensorboard",
    })  # fmt: skip
    """Fields that do not change a run's result (where it goes, how it shows progress, how fast it runs): they
    are left out of `run_identity`, so changing them never blocks continuing a run."""

    def __post_init__(self) -> None:
        self._check_fields()

    # --- validation -------------------------------------------------------------------------
    def validate(self: C) -> C:
        """Check every field against its annotation and the class's own rules (`check`); returns self.

        Mutable configs (`JEPAConfig`, whose documented use sets fields by attribute) are validated again
        by everything that consumes them, so a bad value set after construction fails before any work.
        """
        self._check_fields()
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if isinstance(value, Config):  # a nested config: its own rules too
                value.validate()
        self.check()
        return self

    def check(self) -> None:
        """Rules that tie fields together; override and call `fail` (the per-field rules come from annotations)."""

    def fail(self, name: str, value: Any, allowed: str) -> typing.NoReturn:
        """Raise the `ValueError` every config error has: class, field, value, what is allowed."""
        raise ValueError(f"{type(self).__name__}.{name}={value!r} is invalid: expected {allowed}")

    def _check_fields(self) -> None:
        hints = field_hints(type(self))
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            problem = _mismatch(getattr(self, f.name), hints[f.name])
            if problem:
                self.fail(f.name, getattr(self, f.name), problem)

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able fields (nested configs as dicts, tuples as lists)."""
        return json.loads(json.dumps(dataclasses.asdict(self), default=list))  # type: ignore[call-overload]

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any]) -> C:
        """Build and validate from a mapping; unknown fields raise `ValueError` listing the known ones, and
        nested configs and tuples are rebuilt from their plain forms."""
        data = {k: v for k, v in data.items() if k != "format_version"}
        known = [f.name for f in dataclasses.fields(cls)]  # type: ignore[arg-type]
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"{cls.__name__} got unknown field(s) {unknown}; known fields are: {', '.join(known)}")
        hints = field_hints(cls)
        return cls(**{k: _from_plain(v, hints[k]) for k, v in data.items()}).validate()

    def run_identity(self) -> dict[str, Any]:
        """The fields that change a run's result (all but `RUN_NEUTRAL`), as a run folder records them."""
        return {k: v for k, v in self.to_dict().items() if k not in self.RUN_NEUTRAL}

    def save(self, path: str | Path) -> None:
        """Write as JSON (``.json``) or YAML (``.yaml`` / ``.yml``), with a format version."""
        path = Path(path)
        payload = {"format_version": CONFIG_FORMAT_VERSION, **self.to_dict()}
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(payload, sort_keys=False))
        else:
            path.write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def load(cls: type[C], path: str | Path) -> C:
        """Read a config written by `save` (or by hand) in JSON or YAML; missing fields take the defaults."""
        return cls.from_dict(read_config_file(path))

    @classmethod
    def preset(cls: type[C], name: str, **overrides: Any) -> C:
        """A named preset (``PRESETS``, plus ``default``: the dataclass defaults), fields overridden by keyword."""
        presets = cls.preset_names()
        if name not in presets:
            raise ValueError(f"unknown {cls.__name__} preset {name!r}; choose one of {presets}")
        return cls.from_dict({**cls.PRESETS.get(name, {}), **overrides})

    @classmethod
    def preset_names(cls) -> list[str]:
        return sorted({"default", *cls.PRESETS})


def field_hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields, ``Annotated`` extras kept."""
    return typing.get_type_hints(cls, include_extras=True)


def _mismatch(value: Any, hint: Any) -> str:
    """'' if ``value`` fits the annotation ``hint``, else what would have been allowed."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        base, ranges = args[0], [a for a in args[1:] if isinstance(a, Range)]
        problem = _mismatch(value, base)
        if problem:
            return problem
        for r in ranges:
            if not r.holds(value):
                return f"{_describe(base)} {r.describe()}"
        return ""
    if origin is Literal:
        return "" if value in args else f"one of {list(args)}"
    if origin in (typing.Union, types.UnionType):
        problems = [_mismatch(value, a) for a in args]
        return "" if "" in problems else " or ".join(p or "" for p in problems)
    if hint is type(None):
        return "" if value is None else "None"
    if hint is bool:
        return "" if isinstance(value, bool) else "true or false"
    if hint is int:
        return "" if isinstance(value, int) and not isinstance(value, bool) else "an integer"
    if hint is float:
        return "" if isinstance(value, (int, float)) and not isinstance(value, bool) else "a number"
    if hint is str:
        return "" if isinstance(value, str) else "a string"
    if origin is tuple:
        if not isinstance(value, tuple):
            return "a tuple"
        if len(args) == 2 and args[1] is Ellipsis:
            problems = [_mismatch(v, args[0]) for v in value]
            bad = next((p for p in problems if p), "")
            return f"a tuple of {bad.removeprefix('a ').removeprefix('an ')}s" if bad else ""
        return ""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        return "" if isinstance(value, hint) else f"a {hint.__name__}"
    return ""  # Any, dict, ...: not checked


def _describe(hint: Any) -> str:
    return {int: "an integer", float: "a number"}.get(hint, str(hint))


def _from_plain(value: Any, hint: Any) -> Any:
    """Rebuild tuples and nested configs from their JSON/YAML forms (lists and dicts)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is Annotated:
        return _from_plain(value, args[0])
    if origin in (typing.Union, types.UnionType):
        for a in args:
            if a is not type(None) and value is not None:
                return _from_plain(value, a)
        return value
    if origin is tuple and isinstance(value, list):
        inner = args[0] if len(args) == 2 and args[1] is Ellipsis else None
        return tuple(_from_plain(v, inner) if inner is not None else v for v in value)
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        if issubclass(hint, Config):
            return hint.from_dict(value)
        return hint(**value)
    return value


class _YAMLLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads ``1e-4`` as a float (plain PyYAML wants ``1.0e-4``, else a string)."""


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The fields a JSON or YAML config file sets (only those: a partial file layers on a preset)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    data = yaml.load(text, Loader=_YAMLLoader) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of field names to values")
    version = data.pop("format_version", CONFIG_FORMAT_VERSION)
    if version != CONFIG_FORMAT_VERSION:
        raise ValueError(f"config file {path} has format_version {version}; this code reads {CONFIG_FORMAT_VERSION}")
    return data
