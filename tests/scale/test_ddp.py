"""Distributed pretraining: ``torchrun --nproc_per_node=2 -m torchwm pretrain`` with per-process batch b ends with
the weights of one process with batch 2b on the same data, rank 0 alone writes, and every rank holds the same
model and EMA target at the end."""

from __future__ import annotations

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from safetensors.torch import load_file, save_file
from torchwm.wm.checkpoint import WEIGHTS_FILE
from torchwm.wm.config import JEPAConfig
from torchwm.wm.trainer import JEPAAgent

from tests.scale.tiny import TINY_PRETRAIN, assert_same_weights, child_env
from torchwm.cli import build_parser, config_from_args, main, torchrun_process_group

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available")

STEPS = 3
FINAL = Path("checkpoints") / f"step_{STEPS:08d}"


def pretrain_args(out: Path, batch_size: int) -> list[str]:
    return [
        "pretrain",
        *TINY_PRETRAIN,
        "--max-steps",
        str(STEPS),
        "--batch-size",
        str(batch_size),
        "--output-dir",
        str(out),
    ]


def logged_losses(run: Path) -> dict[int, float]:
    with open(run / "log.csv", newline="") as f:
        return {int(row["step"]): float(row["loss"]) for row in csv.DictReader(f)}


def files_under(run: Path) -> list[str]:
    """Every file a run wrote, TensorBoard event files (named by time, host and pid) as ``tb/events``."""
    names = (str(p.relative_to(run)) for p in run.rglob("*") if p.is_file())
    return sorted("tb/events" if name.startswith("tb/events.") else name for name in names)


def test_torchrun_two_processes_equal_one_process_with_the_global_batch(tmp_path: Path) -> None:
    ddp, single, half = tmp_path / "ddp", tmp_path / "single", tmp_path / "half"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    proc = subprocess.run(
        [*cmd, "-m", "torchwm", *pretrain_args(ddp, 2)],
        cwd=tmp_path, env=child_env(), capture_output=True, text=True, timeout=150,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("done: 3 steps") == 1  # rank 0 alone reports
    assert main(pretrain_args(single, 4)) == 0  # one process, the global batch of 2 x 2
    assert main(pretrain_args(half, 2)) == 0  # one process, the per-process batch: not the same run

    assert_same_weights(ddp / FINAL / WEIGHTS_FILE, single / FINAL / WEIGHTS_FILE, atol=1e-5)
    w_ddp, w_half = load_file(str(ddp / FINAL / WEIGHTS_FILE)), load_file(str(half / FINAL / WEIGHTS_FILE))
    assert max((w_ddp[k] - w_half[k]).abs().max().item() for k in w_ddp) > 1e-3  # the comparison can fail
    # rank 0 alone writes: one set of files, one TensorBoard stream, one log row per logged step
    assert files_under(ddp) == files_under(single)
    assert len(list((ddp / "tb").iterdir())) == 1
    assert logged_losses(ddp) == pytest.approx(logged_losses(single), abs=1e-5)  # the global batch's loss


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, argv: list[str], out: str) -> None:
    """One torchrun-like rank: the CLI's process group around the trainer, then this rank's whole state saved."""
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    cfg = config_from_args(build_parser().parse_args(argv), JEPAConfig)
    with torchrun_process_group() as group_rank:
        assert group_rank == rank and dist.get_world_size() == world
        agent = JEPAAgent(cfg)
        agent.train()
        assert agent.model is not None
        save_file(
            {k: v.contiguous() for k, v in agent.model.state_dict().items()}, f"{out}/rank{rank}.safetensors"
        )
    assert not dist.is_initialized()  # the group is left at the end


def test_every_rank_ends_with_the_same_model_and_ema_target(tmp_path: Path) -> None:
    run = tmp_path / "run"
    mp.spawn(_worker, args=(2, _free_port(), pretrain_args(run, 2), str(tmp_path)), nprocs=2, join=True)
    rank0, rank1 = (
        load_file(str(tmp_path / "rank0.safetensors")),
        load_file(str(tmp_path / "rank1.safetensors")),
    )
    assert any(k.startswith("target_encoder.") for k in rank0)
    for name in rank0:  # bit for bit: DDP all-reduces the gradients, so every rank takes the same steps
        assert torch.equal(rank0[name], rank1[name]), name
    assert_same_weights(tmp_path / "rank0.safetensors", run / FINAL / WEIGHTS_FILE, atol=0.0)
