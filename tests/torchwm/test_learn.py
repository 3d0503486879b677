"""`torchwm learn`: the online loop on a toy budget (never its benchmark targets): rounds that collect with the
planner, grow the episode folder without losing or repeating an episode, update the model from the last one's
weights, and write the learning curve; a killed run continues."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from torchwm.agents.collect import MPCCollector
from torchwm.wm.checkpoint import latest_checkpoint, load_weights
from torchwm.wm.episodes import read_manifest
from torchwm.wm.runs import RunMismatchError
from torchwm.wm.world_model import WorldModel

from torchwm.cli import main
from torchwm.online import LearnJob, learn

JOB = LearnJob(
    env="torchwm/TwoRooms-v0", out="", recipe="two-phase-smoke", seed_episodes=4, rounds=2, episodes_per_round=2,
    update_steps=3, eval_every=1, eval_episodes=2, num_envs=2, progress=False,
)  # fmt: skip


@pytest.fixture(scope="module")
def learned(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("learn")
    learn(replace(JOB, out=str(out)))
    return out


def test_rounds_collect_with_the_planner_and_the_curve_grows(learned: Path) -> None:
    entries = read_manifest(learned / "episodes")["episodes"]
    assert len(entries) == JOB.seed_episodes + JOB.rounds * JOB.episodes_per_round
    assert [e["info"]["policy"] for e in entries] == ["random"] * 4 + ["mpc+noise0.3"] * 4
    seeds = [e["info"]["seed"] for e in entries]
    assert len(set(seeds)) == len(seeds) and min(seeds) > 1049  # no seed twice, never an evaluation seed
    summary = json.loads((learned / "learn.json").read_text())
    curve = summary["curve"]
    assert [row["round"] for row in curve] == [0, 1, 2]
    assert [row["episodes"] for row in curve] == [4, 6, 8]
    steps = [row["env_steps"] for row in curve]
    assert steps[0] < steps[1] < steps[2]
    assert steps[-1] == sum(e["num_steps"] for e in entries) * 4  # frame skip 4
    assert {"random", "greedy"} <= set(curve[0]) and curve[1]["collect_plan_ms_per_call"] > 0
    assert all(0.0 <= row["value"] <= 1.0 and row["metric"] == "success_rate" for row in curve)
    assert summary["cost"] == "latent_l2"  # TwoRooms gives goal frames
    for name in ("learning_curve.png", "latest_eval.gif", "learn_log/log.csv", "rounds/002/world_model"):
        assert (learned / name).exists(), name


def test_each_round_starts_from_the_last_rounds_weights(learned: Path) -> None:
    """Round 1's model is round 0's trained a few steps further: its fixed encoder is identical, its dynamics moved
    a little from round 0's, far less than a new model's dynamics lie from them."""
    before = load_weights(latest_checkpoint(learned / "world_model"))
    after = load_weights(latest_checkpoint(learned / "rounds" / "001" / "world_model"))
    assert before.keys() == after.keys()
    frozen = [k for k in before if k.startswith("encoder.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)
    round0 = WorldModel.from_pretrained(learned / "world_model")
    torch.manual_seed(123)
    fresh = WorldModel(round0.jepa_cfg, round0.spec).state_dict()
    weights = [k for k in before if k.startswith("dynamics.") and before[k].is_floating_point() and before[k].ndim > 1]

    def distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
        return float(sum((a[k] - b[k]).pow(2).sum() for k in weights))

    assert 0 < distance(after, before) < 0.01 * distance(fresh, before)


def test_the_same_command_again_changes_nothing_and_more_rounds_extend_the_run(learned: Path) -> None:
    before = {p: p.stat().st_mtime_ns for p in learned.rglob("model.safetensors")}
    learn(replace(JOB, out=str(learned)))
    assert {p: p.stat().st_mtime_ns for p in learned.rglob("model.safetensors")} == before
    with pytest.raises(RunMismatchError, match="noise"):
        learn(replace(JOB, out=str(learned), noise=0.5))


def test_a_run_killed_while_collecting_continues_without_losing_or_repeating_an_episode(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: dict[int, int] = {}  # collector -> calls; one collector a round
    act = MPCCollector.act

    def dies_in_round_two(self: MPCCollector, step: object) -> np.ndarray:
        calls[id(self)] = calls.get(id(self), 0) + 1
        if len(calls) == 2 and calls[id(self)] == 30:  # round 2, after its first episodes (25 steps) ended
            raise KeyboardInterrupt
        return act(self, step)  # type: ignore[arg-type]

    monkeypatch.setattr(MPCCollector, "act", dies_in_round_two)
    job = replace(JOB, out=str(tmp_path / "run"), episodes_per_round=3)
    with pytest.raises(KeyboardInterrupt):
        learn(job)
    kept = read_manifest(tmp_path / "run" / "episodes")["episodes"]
    assert JOB.seed_episodes + 3 <= len(kept) < JOB.seed_episodes + 6  # round 1 whole, round 2 in part
    monkeypatch.setattr(MPCCollector, "act", act)
    learn(job)
    entries = read_manifest(tmp_path / "run" / "episodes")["episodes"]
    assert len(entries) == JOB.seed_episodes + 2 * 3
    assert [e["name"] for e in entries[: len(kept)]] == [e["name"] for e in kept]  # nothing lost
    seeds = [e["info"]["seed"] for e in entries]
    assert len(set(seeds)) == len(seeds)
    assert [row["round"] for row in json.loads((tmp_path / "run" / "learn.json").read_text())["curve"]] == [0, 1, 2]


def test_learn_on_the_command_line_names_a_bad_option(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["learn", "--env", "torchwm/TwoRooms-v0", "--out", str(tmp_path), "--cost", "pixels"])
    assert "--cost" in capsys.readouterr().err
