"""Checkpoints as directories: ``config.json`` + ``model.safetensors`` + ``trainer_state.pt``.

Writes are atomic: everything goes into a hidden temporary directory that is renamed into place once
complete and synced, so a run killed at any moment never leaves a half-written checkpoint that
`latest_checkpoint` would pick up. A write that fails (disk full, permission denied) removes the temporary
directory and raises `torchwm.wm.runs.RunWriteError` naming the checkpoint, the cause and the one to resume
from. Loading never unpickles arbitrary objects: weights come from safetensors and the trainer state is read
with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn
from torchwm.wm.config import CONFIG_FORMAT_VERSION, JEPAConfig
from torchwm.wm.runs import write_fault

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
STATE_FILE = "trainer_state.pt"
_STEP_DIR = re.compile(r"^step_(\d+)$")


def fsync_dir(path: Path) -> None:
    """Flush a directory entry to disk (so a rename in it survives a crash)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flush a file's contents to disk."""
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def user_file_mode() -> int:
    """The permission bits a file the user creates gets (0o666 less the umask), as `open` would give it."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def save_checkpoint(
    path: str | Path,
    config: dict[str, Any],
    weights: dict[str, torch.Tensor],
    trainer_state: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory atomically; ``config`` is a JSON-able mapping (with a ``kind``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    try:
        _write_files(tmp, config, weights, trainer_state)
    except (OSError, SafetensorError, RuntimeError) as err:  # disk full, permission denied, read-only folder
        shutil.rmtree(tmp, ignore_errors=True)
        kept = latest_checkpoint(path.parent.parent)
        raise write_fault(
            err, path, f"then run the same command again to resume from {kept or 'the start'} (left intact)"
        ) from err
    if path.exists():  # re-saving the same step: move the old one aside first, then drop it
        old = path.parent / f".{path.name}.old-{os.getpid()}"
        path.rename(old)
        tmp.rename(path)
        shutil.rmtree(old)
    else:
        tmp.rename(path)
    fsync_dir(path.parent)
    return path


def _write_files(
    tmp: Path, config: dict[str, Any], weights: dict[str, torch.Tensor], trainer_state: dict[str, Any] | None
) -> None:
    """Write a checkpoint's files into the (new) folder ``tmp`` and flush them to disk."""
    tmp.mkdir()
    (tmp / CONFIG_FILE).write_text(json.dumps({"format_version": CONFIG_FORMAT_VERSION, **config}, indent=2))
    save_file({k: v.detach().contiguous().cpu() for k, v in weights.items()}, str(tmp / WEIGHTS_FILE))
    files = [CONFIG_FILE, WEIGHTS_FILE]
    if trainer_state is not None:
        torch.save(trainer_state, tmp / STATE_FILE)
        files.append(STATE_FILE)
    mode = user_file_mode()  # safetensors writes 0600; every file of a checkpoint gets what the user's files get
    for name in files:
        os.chmod(tmp / name, mode)
        fsync_file(tmp / name)
    fsync_dir(tmp)


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file() and (path / WEIGHTS_FILE).is_file()


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete ``step_N`` checkpoints of a run directory, oldest first (temporary dirs are ignored)."""
    ckpt_dir = Path(run_dir) / "checkpoints"
    if not ckpt_dir.is_dir():
        return []
    found = [
        (int(m.group(1)), p)
        for p in ckpt_dir.iterdir()
        if (m := _STEP_DIR.match(p.name)) and is_checkpoint(p)
    ]
    return [p for _, p in sorted(found)]


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    ckpts = list_checkpoints(run_dir)
    return ckpts[-1] if ckpts else None


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory, or a run directory (its latest checkpoint)."""
    path = Path(path)
    if is_checkpoint(path):
        return path
    latest = latest_checkpoint(path)
    if latest is None:
        raise FileNotFoundError(
            f"{path} is neither a checkpoint directory ({CONFIG_FILE} + {WEIGHTS_FILE}) "
            "nor a run directory with checkpoints/step_N inside"
        )
    return latest


def read_config(path: str | Path) -> dict[str, Any]:
    """The raw ``config.json`` of a checkpoint, format version checked; a bad file raises `ValueError` naming it."""
    file = Path(path) / CONFIG_FILE
    try:
        data = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ValueError(
            f"{file} is not valid JSON ({err}); a checkpoint's {CONFIG_FILE} is written by torchwm"
        ) from err
    if not isinstance(data, dict):
        raise ValueError(f"{file} must hold a JSON object, got {type(data).__name__}")
    version = data.pop("format_version", None)
    if version != CONFIG_FORMAT_VERSION:
        raise ValueError(f"{file} has format_version {version!r}; this code reads {CONFIG_FORMAT_VERSION}")
    return data


def jepa_config_of(path: str | Path) -> JEPAConfig:
    """The `JEPAConfig` of a checkpoint; an unknown or invalid field raises `ValueError` naming the file."""
    data = read_config(path)
    try:
        return JEPAConfig.from_dict(data.get("jepa", data))
    except ValueError as err:
        raise ValueError(f"{Path(path) / CONFIG_FILE}: {err}") from err


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of ``model.safetensors`` (safetensors holds no code, so nothing is ever unpickled)."""
    file = Path(path) / WEIGHTS_FILE
    try:
        return load_file(str(file))
    except SafetensorError as err:
        raise ValueError(f"{file} is not a readable safetensors file ({err})") from err


def load_trainer_state(path: str | Path) -> dict[str, Any] | None:
    """The trainer state of a checkpoint, or None; refuses anything that is not plain tensors and containers."""
    file = Path(path) / STATE_FILE
    if not file.is_file():
        return None
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise ValueError(
            f"refusing to load {file}: it holds objects other than tensors and plain containers "
            f"(torch.load(weights_only=True) said: {str(err).splitlines()[0]})"
        ) from err


def load_state_checked(
    module: nn.Module, weights: dict[str, torch.Tensor], source: str | Path = "checkpoint"
) -> None:
    """Load weights into ``module``; any missing, unexpected or mis-shaped tensor raises `ValueError` naming it."""
    own = module.state_dict()
    missing = sorted(set(own) - set(weights))
    unexpected = sorted(set(weights) - set(own))
    shapes = [
        f"{k}: checkpoint {tuple(weights[k].shape)} vs model {tuple(own[k].shape)}"
        for k in own
        if k in weights and weights[k].shape != own[k].shape
    ]
    problems = []
    if missing:
        problems.append(f"missing tensors {missing[:5]}{' ...' if len(missing) > 5 else ''}")
    if unexpected:
        problems.append(f"unexpected tensors {unexpected[:5]}{' ...' if len(unexpected) > 5 else ''}")
    if shapes:
        problems.append("shape mismatch " + "; ".join(shapes[:5]))
    if problems:
        raise ValueError(f"{source} does not match the model built from its config: " + "; ".join(problems))
    module.load_state_dict(weights)


def prune_checkpoints(run_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    for old in list_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)


def restore_training(path: str | Path, module: nn.Module, optimizer: torch.optim.Optimizer) -> int:
    """Load a checkpoint's weights (checked) and optimizer state for resuming; returns the saved step."""
    load_state_checked(module, load_weights(path), path)
    state = load_trainer_state(path)
    if state is None:
        raise ValueError(
            f"cannot resume from {path}: it has no {STATE_FILE} (a checkpoint written for inference only)"
        )
    optimizer.load_state_dict(state["optimizer"])
    return int(state["step"])
