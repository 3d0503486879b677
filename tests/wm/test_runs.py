"""Run folders: identity recorded and checked, one writer at a time, stale locks taken over, --overwrite."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torchwm.wm.runs import (
    HOLDER_FILE,
    RUN_FILE,
    RunLockedError,
    RunMismatchError,
    RunWriteError,
    open_run,
    read_run,
    write_fault,
)

HOLD = """
import sys, time
from torchwm.wm.runs import open_run
run = open_run(sys.argv[1], "fit", {"seed": 0})
print("held", flush=True)
time.sleep(60)
"""


def _holder(folder: Path) -> subprocess.Popen[str]:
    """A second process that opens ``folder`` as a run and keeps it open."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(folder)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_identity_is_recorded_and_a_matching_run_continues(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", "fit", {"env": "A-v0", "seed": 0, "proprio": (2, 3)}):
        (tmp_path / "run" / "payload").write_text("x")
    saved = read_run(tmp_path / "run")
    assert saved is not None and saved["kind"] == "fit" and saved["identity"]["proprio"] == [2, 3]
    assert saved["code_version"] and saved["created"]
    with open_run(tmp_path / "run", "fit", {"env": "A-v0", "seed": 0, "proprio": [2, 3]}):
        pass  # a tuple and its JSON list are the same setting
    assert not (tmp_path / "run" / HOLDER_FILE).exists()  # released


def test_another_identity_is_refused_naming_each_difference_and_both_ways_on(tmp_path: Path) -> None:
    with open_run(tmp_path, "fit", {"env": "A-v0", "seed": 0, "recipe": {"name": "two-phase"}}):
        pass
    with pytest.raises(RunMismatchError) as err:
        open_run(tmp_path, "fit", {"env": "B-v0", "seed": 5, "recipe": {"name": "two-phase"}})
    text = str(err.value)
    assert "env: the folder has 'A-v0', this command asks for 'B-v0'" in text
    assert "seed: the folder has 0, this command asks for 5" in text
    assert "recipe" not in text.split("To go on")[0]
    assert "--out" in text and "--overwrite move" in text
    with pytest.raises(RunMismatchError, match="holds a 'fit' run, not a 'record' run"):
        open_run(tmp_path, "record", {"env": "A-v0"})
    assert not (tmp_path / HOLDER_FILE).exists()  # a refusal releases the lock


def test_a_setting_new_to_the_code_does_not_block_an_older_run(tmp_path: Path) -> None:
    with open_run(tmp_path, "fit", {"seed": 0}):
        pass
    with open_run(tmp_path, "fit", {"seed": 0, "added_later": 1}):
        pass


def test_a_folder_with_files_but_no_identity_is_refused_unless_adopted(tmp_path: Path) -> None:
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(RunMismatchError, match=r"holds files \(manifest.json\) but no run.json"):
        open_run(tmp_path, "pretrain", {"seed": 0})
    with open_run(tmp_path, "record", {"env": "A-v0"}, adopt=True):
        pass
    assert json.loads((tmp_path / RUN_FILE).read_text())["identity"] == {"env": "A-v0"}


def test_run_neutral_fields_never_block_a_resume() -> None:
    from torchwm.wm.config import JEPAConfig

    a = JEPAConfig(progress=True, log_interval=10, num_workers=0, output_dir="a")
    b = JEPAConfig(progress=False, log_interval=99, num_workers=2, output_dir="b", overwrite="move")
    assert a.run_identity() == b.run_identity()
    assert JEPAConfig(seed=1).run_identity() != a.run_identity()


def test_a_second_writer_fails_at_once_naming_the_holder(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    try:
        t0 = time.perf_counter()
        with pytest.raises(RunLockedError) as err:
            open_run(tmp_path, "fit", {"seed": 0})
        assert time.perf_counter() - t0 < 5
        assert f"pid {proc.pid}" in str(err.value) and "since" in str(err.value) and "--out" in str(err.value)
    finally:
        proc.kill()
        proc.wait()


def test_the_command_line_refuses_a_second_writer_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from torchwm.cli import main

    proc = _holder(tmp_path / "episodes")
    try:
        code = main(["record", "--env", "torchwm/TwoRooms-v0", "--episodes", "1", "--out", str(tmp_path / "episodes"),
                     "--no-progress"])  # fmt: skip
    finally:
        proc.kill()
        proc.wait()
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and f"pid {proc.pid}" in err


def test_a_lock_left_by_a_killed_process_is_taken_over_with_a_warning(tmp_path: Path) -> None:
    proc = _holder(tmp_path)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert (tmp_path / HOLDER_FILE).exists()  # the dead writer never cleaned up
    with pytest.warns(UserWarning, match=f"taking over the lock of .* left by pid {proc.pid}.*gone"):
        run = open_run(tmp_path, "fit", {"seed": 0})
    assert json.loads((tmp_path / HOLDER_FILE).read_text())["pid"] == os.getpid()
    run.close()


@pytest.mark.parametrize("how", ["move", "delete"])
def test_overwrite_moves_the_old_run_aside_or_deletes_it(tmp_path: Path, how: str) -> None:
    folder = tmp_path / "run"
    with open_run(folder, "fit", {"seed": 0}):
        (folder / "old.txt").write_text("old")
    with open_run(folder, "fit", {"seed": 1}, overwrite=how):  # type: ignore[arg-type]
        pass
    assert not (folder / "old.txt").exists() and read_run(folder)["identity"] == {"seed": 1}  # type: ignore[index]
    aside = [p for p in tmp_path.iterdir() if p.name.startswith("run.old-")]
    if how == "move":
        assert len(aside) == 1 and (aside[0] / "old.txt").read_text() == "old"
    else:
        assert aside == []


def test_overwrite_never_pulls_a_folder_from_a_live_writer(tmp_path: Path) -> None:
    with open_run(tmp_path / "run", "fit", {"seed": 0}):
        pass
    proc = _holder(tmp_path / "run")
    try:
        with pytest.raises(RunLockedError):
            open_run(tmp_path / "run", "fit", {"seed": 1}, overwrite="delete")
        assert (tmp_path / "run" / RUN_FILE).exists()
    finally:
        proc.kill()
        proc.wait()


def test_write_fault_says_what_failed_and_what_to_do() -> None:
    err = write_fault(OSError(28, "No space left on device"), "/x/step_2", "then resume")
    assert isinstance(err, RunWriteError) and isinstance(err, OSError)
    assert str(err) == "could not write /x/step_2: No space left on device; free space on that disk or write to " \
        "another folder (--out or --output-dir), then resume"  # fmt: skip
    assert "make the folder writable" in str(write_fault(PermissionError(13, "Permission denied"), "/x"))
