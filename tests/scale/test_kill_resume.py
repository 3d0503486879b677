"""Surviving SIGKILL: a real ``python -m torchwm pretrain`` killed after its first checkpoint and started again
with the same command ends with the weights of an uninterrupted run, never picking up a half-written checkpoint;
a ``torchwm record`` killed mid-run leaves an episode directory that reads cleanly and can be appended to."""

from __future__ import annotations

import csv
import json
import os
import shutil
import signal
import subprocess
import warnings
from pathlib import Path

import pytest
from torchwm.wm.checkpoint import WEIGHTS_FILE, latest_checkpoint, list_checkpoints
from torchwm.wm.episodes import read_manifest
from torchwm.wm.rollouts import RolloutClips

from tests.scale.tiny import (
    TINY_PRETRAIN,
    assert_same_weights,
    child_env,
    run_torchwm,
    torchwm_command,
    wait_for,
)
from torchwm.cli import main

pytestmark = pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs POSIX signals")

STEPS = 12


def pretrain_args(out: Path) -> list[str]:
    return [
        "pretrain", *TINY_PRETRAIN, "--batch-size", "2", "--max-steps", str(STEPS), "--epochs", "100", "--checkpoint-interval", "2",
        "--log-interval", "1", "--output-dir", str(out),
    ]  # fmt: skip


def logged_losses(run: Path) -> dict[int, float]:
    with open(run / "log.csv", newline="") as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


def kill(proc: subprocess.Popen) -> None:
    """SIGKILL the process (no handler, no cleanup), then whatever it started (an orphaned ffmpeg, say)."""
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, f"the process had already ended with {proc.returncode}"
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # its own session: only what it started
    except ProcessLookupError:
        pass


def test_pretrain_killed_after_a_checkpoint_resumes_to_the_uninterrupted_weights(tmp_path: Path) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert main(pretrain_args(reference)) == 0
    final = Path("checkpoints") / f"step_{STEPS:08d}"

    proc = subprocess.Popen(
        torchwm_command(*pretrain_args(run)), cwd=tmp_path, env=child_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: list_checkpoints(run), proc)
    kill(proc)
    killed_at = latest_checkpoint(run)
    assert killed_at is not None and killed_at.name < final.name  # killed mid-run, after a checkpoint
    # A kill during a save leaves its temporary directory; plant one further ahead, its weights cut short.
    partial = run / "checkpoints" / f".step_{STEPS - 1:08d}.tmp-{proc.pid}"
    shutil.copytree(killed_at, partial, dirs_exist_ok=True)
    (partial / WEIGHTS_FILE).write_bytes((partial / WEIGHTS_FILE).read_bytes()[:100])

    resumed = run_torchwm(*pretrain_args(run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert f"done: {STEPS} steps" in resumed.stdout
    assert_same_weights(run / final / WEIGHTS_FILE, reference / final / WEIGHTS_FILE, atol=1e-6)
    assert logged_losses(run) == pytest.approx(
        logged_losses(reference), abs=1e-6
    )  # one row a step, none twice
    assert [p.name for p in list_checkpoints(run)][-1] == final.name


def test_record_killed_mid_run_leaves_a_readable_directory_that_record_appends_to(tmp_path: Path) -> None:
    out = tmp_path / "episodes"
    args = [
        "record",
        "--env",
        "torchwm/TwoRooms-v0",
        "--episodes",
        "50",
        "--out",
        str(out),
        "--num-envs",
        "2",
    ]
    proc = subprocess.Popen(
        torchwm_command(*args), cwd=tmp_path, env=child_env(), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip

    def episodes_listed() -> int:
        try:
            return len(read_manifest(out)["episodes"])
        except (FileNotFoundError, ValueError):  # not written yet
            return 0

    wait_for(episodes_listed, proc)
    kill(proc)
    recorded = episodes_listed()
    assert 1 <= recorded < 50

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a skipped (corrupt or missing) episode would warn
        clips = RolloutClips(out, num_frames=2)
        assert len(clips.episodes) == recorded and clips.skipped == []
        for i in (0, len(clips) - 1):
            assert clips[i]["frames"].shape[0] == 2

    more = ["record", "--env", "torchwm/TwoRooms-v0", "--episodes", "1", "--out", str(out), "--num-envs", "1"]
    assert main([*more, "--seed", "1000", "--max-steps", "10"]) == 0
    names = [e["name"] for e in read_manifest(out)["episodes"]]
    assert len(names) == recorded + 1 and len(set(names)) == len(names)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(RolloutClips(out, num_frames=2).episodes) == recorded + 1


@pytest.fixture(scope="module")
def world_model_inputs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(TwoRooms episodes, a tiny pretrained JEPA, a labelled image folder) for the other two trainers."""
    import numpy as np
    from PIL import Image

    root = tmp_path_factory.mktemp("inputs")
    assert main(["record", "--env", "torchwm/TwoRooms-v0", "--episodes", "4", "--out", str(root / "ep"),
                 "--num-envs", "2", "--max-steps", "20", "--no-progress"]) == 0  # fmt: skip
    jepa_args = [a for a in pretrain_args(root / "jepa") if a not in ("--max-steps", str(STEPS))]
    assert main([*jepa_args, "--max-steps", "2"]) == 0
    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (root / "images" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "images" / cls / f"{i}.png")
    return root / "ep", root / "jepa", root / "images"


def trainer_args(kind: str, inputs: tuple[Path, Path, Path], out: Path) -> list[str]:
    episodes, jepa, images = inputs
    common = ["--checkpoint-interval", "2", "--log-interval", "1", "--device", "cpu", "--no-progress",
              "--output-dir", str(out)]  # fmt: skip
    if kind == "train-world-model":
        return ["train-world-model", "--root-path", str(episodes), "--encoder-checkpoint", str(jepa),
                "--steps", "40", "--batch-size", "4", "--seq-len", "4", "--predict-horizon", "3", "--shape.width", "32",
                "--shape.heads", "2", "--shape.latent-dim", "16", "--warmup-steps", "0", *common]  # fmt: skip
    return ["finetune", "--checkpoint", str(jepa), "--data", str(images), "--max-steps", "40", "--batch-size", "4",
            "--warmup-steps", "0", *common]  # fmt: skip


@pytest.mark.parametrize("kind", ["train-world-model", "finetune"])
def test_the_other_trainers_killed_after_a_checkpoint_resume_to_the_uninterrupted_weights(
    kind: str, world_model_inputs: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    reference, run = tmp_path / "reference", tmp_path / "run"
    done = run_torchwm(*trainer_args(kind, world_model_inputs, reference), cwd=tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    final = latest_checkpoint(reference)
    assert final is not None and final.name == "step_00000040"

    proc = subprocess.Popen(
        torchwm_command(*trainer_args(kind, world_model_inputs, run)), cwd=tmp_path, env=child_env(),
        start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    wait_for(lambda: list_checkpoints(run), proc)
    kill(proc)
    killed_at = latest_checkpoint(run)
    assert killed_at is not None and killed_at.name < final.name  # killed mid-run, after a checkpoint

    resumed = run_torchwm(*trainer_args(kind, world_model_inputs, run), cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert latest_checkpoint(run).name == final.name  # type: ignore[union-attr]
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == int(killed_at.name.removeprefix("step_")) > 0  # it did resume
    assert_same_weights(run / "checkpoints" / final.name / WEIGHTS_FILE, final / WEIGHTS_FILE, atol=1e-6)
    assert logged_losses(run) == pytest.approx(logged_losses(reference), abs=1e-6)  # one row a step, none twice
