"""Run folders: what a folder holds (its identity, ``run.json``) and who writes it (a lock).

Every command that writes a folder opens it with `open_run`:

- **Identity.** ``run.json`` records the kind of run (``fit``, ``record``, ``pretrain``, ...), the settings that
  change its result (environment, recipe or config fields, seed, ...) and, for the record only, the code version
  and the time it was created. Continuing a folder whose recorded settings differ from the command's is refused
  with a `RunMismatchError` that names every difference and both ways on: another output folder, or
  ``overwrite="move"`` / ``"delete"`` (``--overwrite move|delete``), which moves the old folder aside or deletes
  it before starting afresh. Settings that do not change the result (progress bars, threads, log intervals)
  are never part of the identity, so they never block a resume.
- **One writer.** The writer holds an OS advisory lock (`filelock`) on ``.torchwm.lock`` in the folder and writes
  who it is (pid, host, command, start time) beside it. A second writer fails at once with a `RunLockedError`
  naming the holder. The OS drops the lock of a process that dies, so a lock left by a killed run is taken
  over, with a warning naming the process that left it. Readers (benchmarks, wrappers, ``from_pretrained``)
  never take the lock.
- **Write faults.** `write_fault` turns a failed write (disk full, permission denied, a read-only folder) into a
  `RunWriteError`: one line naming the file, the cause and what to do.
"""

from __future__ import annotations

import datetime
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

from filelock import FileLock, Timeout

Overwrite = Literal["never", "move", "delete"]
"""What to do with an existing run folder: continue it (``never`` overwrite), move it aside, or delete it."""

RUN_FILE = "run.json"
LOCK_FILE = ".torchwm.lock"
HOLDER_FILE = ".torchwm.lock.json"
RUN_FORMAT_VERSION = 1
_OWN_FILES = frozenset({RUN_FILE, LOCK_FILE, HOLDER_FILE})


class RunError(Exception):
    """A run folder cannot be written as asked (the command line prints it as one line)."""


class RunMismatchError(RunError, ValueError):
    """The folder holds another run than the one the command would continue."""


class RunLockedError(RunError):
    """Another live process writes the folder."""


class RunWriteError(RunError, OSError):
    """A write failed (disk full, permission denied, read-only folder)."""


def code_version() -> str:
    """The installed torchwm's version, and the git commit of its source tree where it is a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        found = version("torchwm")
    except PackageNotFoundError:
        found = "unknown"
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short=12", "HEAD"], cwd=Path(__file__).resolve().parent,
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout.strip()  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return found
    return f"{found}+g{head}"


def plain(value: Any) -> Any:
    """``value`` as JSON reads it back (tuples become lists, paths strings), so identities compare equal."""
    return json.loads(json.dumps(value, default=str))


def identity_differences(saved: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``name: folder has X, this command asks for Y`` for every setting present in both that differs.

    A setting present on one side only (a field added to a config by a later torchwm) is not a difference."""
    saved, wanted = plain(saved), plain(wanted)
    return [
        f"{name}: the folder has {saved[name]!r}, this command asks for {wanted[name]!r}"
        for name in wanted
        if name in saved and saved[name] != wanted[name]
    ]


def _holder_text(folder: Path) -> str:
    try:
        holder = json.loads((folder / HOLDER_FILE).read_text())
    except (OSError, ValueError):
        return "another process (its holder file is unreadable)"
    return (
        f"pid {holder.get('pid')} on {holder.get('host')} since {holder.get('started')} "
        f"({holder.get('command', '?')})"
    )


def write_fault(err: BaseException, path: Path | str, after: str = "") -> RunWriteError:
    """A `RunWriteError` for a failed write of ``path``: the cause in one line and what to do about it."""
    text = (getattr(err, "strerror", None) or str(err).strip() or type(err).__name__).splitlines()[0]
    lowered = text.lower()
    if "no space" in lowered or getattr(err, "errno", None) == 28:
        todo = "free space on that disk or write to another folder (--out or --output-dir)"
    elif "permission" in lowered or "read-only" in lowered or getattr(err, "errno", None) in (13, 30):
        todo = "make the folder writable or write to another folder (--out or --output-dir)"
    else:
        todo = "fix the cause or write to another folder (--out or --output-dir)"
    return RunWriteError(f"could not write {path}: {text}; {todo}{', ' + after if after else ''}")


class RunFolder:
    """An open run folder: holds its lock until closed (a context manager)."""

    def __init__(self, path: Path, kind: str, identity: dict[str, Any], lock: FileLock | None) -> None:
        self.path, self.kind, self.identity, self._lock = path, kind, identity, lock

    def close(self) -> None:
        """Release the lock (and remove the holder file, so the next writer sees no stale holder)."""
        if self._lock is not None and self._lock.is_locked:
            (self.path / HOLDER_FILE).unlink(missing_ok=True)
            self._lock.release()
        self._lock = None

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, err: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _lock(folder: Path, kind: str) -> FileLock:
    """Take the folder's lock now or raise `RunLockedError` naming the holder; warn when taking over a dead one's."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        lock = FileLock(str(folder / LOCK_FILE), timeout=0)
        lock.acquire()
    except Timeout:
        raise RunLockedError(
            f"{folder} is being written by {_holder_text(folder)}; wait for it to finish or use another output "
            "folder (--out or --output-dir)"
        ) from None
    except OSError as err:
        raise write_fault(err, folder) from err
    holder = folder / HOLDER_FILE
    if holder.exists():  # a live holder would still hold the lock: this one died without releasing it
        warnings.warn(
            f"taking over the lock of {folder} left by {_holder_text(folder)}: that process is gone", stacklevel=3
        )
    me = {
        "pid": os.getpid(), "host": socket.gethostname(), "kind": kind,
        "started": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]])[:500],
    }  # fmt: skip
    try:
        holder.write_text(json.dumps(me, indent=1) + "\n")
    except OSError as err:
        lock.release()
        raise write_fault(err, holder) from err
    return lock


def _contents(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in _OWN_FILES) if folder.is_dir() else []


def _start_over(folder: Path, kind: str, overwrite: Overwrite) -> None:
    """Move the folder aside or delete it, holding its lock meanwhile (a live writer is never pulled away)."""
    lock = _lock(folder, kind)
    try:
        if overwrite == "move":
            stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
            aside = folder.with_name(f"{folder.name}.old-{stamp}")
            n = 1
            while aside.exists():
                aside, n = folder.with_name(f"{folder.name}.old-{stamp}-{n}"), n + 1
            (folder / HOLDER_FILE).unlink(missing_ok=True)
            folder.rename(aside)
            print(f"moved the old run folder {folder} aside to {aside}", file=sys.stderr)
        else:
            shutil.rmtree(folder)
            print(f"deleted the old run folder {folder}", file=sys.stderr)
    finally:
        lock.release()


def open_run(
    folder: str | os.PathLike[str],
    kind: str,
    identity: dict[str, Any],
    *,
    overwrite: Overwrite = "never",
    adopt: bool = False,
    lock: bool = True,
) -> RunFolder:
    """Open ``folder`` for writing a run of ``kind`` whose result-changing settings are ``identity``.

    Args:
        folder: the run folder (created if missing).
        kind: what writes it (``fit``, ``record``, ``pretrain``, ...); another kind's folder is refused.
        identity: the settings that make the run what it is (JSON-able); compared with ``run.json``.
        overwrite: ``never`` continues a matching run and refuses another; ``move`` / ``delete`` put an existing
            folder aside or delete it first, whatever it holds.
        adopt: accept a non-empty folder without ``run.json`` (one written before run identities, whose own
            format checks what it holds) and record the identity in it; otherwise such a folder is refused.
        lock: take the writer's lock (False only where another process of the same run holds it, e.g. DDP ranks).

    Returns:
        The open `RunFolder`; close it (or use it in a ``with``) to release the lock.
    """
    if overwrite not in ("never", "move", "delete"):
        raise ValueError(f"overwrite must be 'never', 'move' or 'delete', got {overwrite!r}")
    path = Path(folder)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} is a file, not a run folder; pass a folder (--out or --output-dir)")
    if overwrite != "never" and _contents(path):
        _start_over(path, kind, overwrite)
    held = _lock(path, kind) if lock else None
    run = RunFolder(path, kind, plain(identity), held)
    try:
        _check_or_write(path, kind, run.identity, adopt)
    except BaseException:
        run.close()
        raise
    return run


def _check_or_write(path: Path, kind: str, identity: dict[str, Any], adopt: bool) -> None:
    file = path / RUN_FILE
    ways = "use another output folder (--out or --output-dir), or start over with --overwrite move (or delete)"
    if file.is_file():
        try:
            saved = json.loads(file.read_text())
        except (OSError, ValueError) as err:
            raise RunMismatchError(f"{file} is unreadable ({err}); {ways}") from err
        if saved.get("kind") != kind:
            raise RunMismatchError(f"{path} holds a {saved.get('kind')!r} run, not a {kind!r} run; {ways}")
        diffs = identity_differences(saved.get("identity", {}), identity)
        if diffs:
            raise RunMismatchError(f"{path} holds another {kind} run: " + "; ".join(diffs) + f". To go on, {ways}")
        return
    found = _contents(path)
    if found and not adopt:
        raise RunMismatchError(
            f"{path} already holds files ({', '.join(found[:4])}{' ...' if len(found) > 4 else ''}) but no {RUN_FILE}, "
            f"so what it holds cannot be checked; {ways}"
        )
    record = {
        "format_version": RUN_FORMAT_VERSION, "kind": kind, "identity": identity, "code_version": code_version(),
        "created": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
    }  # fmt: skip
    tmp = file.with_name(f".{RUN_FILE}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(record, indent=2) + "\n")
        os.replace(tmp, file)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise write_fault(err, file) from err


def read_run(folder: str | os.PathLike[str]) -> dict[str, Any] | None:
    """The ``run.json`` of a folder (kind, identity, code version, created), or None where there is none."""
    file = Path(folder) / RUN_FILE
    return json.loads(file.read_text()) if file.is_file() else None


__all__ = [
    "Overwrite", "RunError", "RunFolder", "RunLockedError", "RunMismatchError", "RunWriteError", "code_version",
    "identity_differences", "open_run", "read_run", "write_fault",
]  # fmt: skip
