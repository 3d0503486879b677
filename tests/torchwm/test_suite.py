"""`torchwm bench suite` on a toy budget: every row fits, plans beside a random policy, records its seed,
commit and command; a second run keeps the finished rows; reward-cost environments report returns."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from torchwm.bench.suite import SUITE, SuiteJob, run_suite
from torchwm.cli import main


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("suite")
    results = root / "suite.json"
    code = main(["bench", "suite", "--envs", "tworooms", "pendulum", "--recipe", "two-phase-smoke",
                 "--episodes", "2", "--out", str(root / "runs"), "--results", str(results), "--no-progress"])  # fmt: skip
    assert code == 0
    return results


def test_every_row_reports_the_planner_beside_random_with_its_provenance(table: Path) -> None:
    data = json.loads(table.read_text())
    rows = {r["env"]: r for r in data["rows"]}
    assert list(rows) == ["tworooms", "pendulum"]  # only the environments asked for, in order
    for row in rows.values():
        assert row["seed"] == 0 and row["recipe"] == "two-phase-smoke" and row["episodes"] == 2
        assert (row["num_samples"], row["iterations"]) == (16, 1)  # the recipe's planner, recorded with the row
        assert row["eval_seed"] == 1000 and len(row["ci95"]) == 2 and len(row["random_ci95"]) == 2
        assert row["commit"] and row["command"].startswith("torchwm bench suite --envs " + row["env"])
        assert row["fit_seconds"] > 0 and Path(row["run_dir"], "world_model").is_dir()
    assert rows["tworooms"]["metric"] == "success_rate" and rows["tworooms"]["target"] == 0.95
    assert rows["tworooms"]["value"] == rows["tworooms"]["success_rate"]
    pendulum = rows["pendulum"]
    assert pendulum["metric"] == "mean_return" and pendulum["cost"] == "reward"
    assert pendulum["value"] == pytest.approx(pendulum["mean_return"]) and pendulum["value"] < 0
    assert pendulum["random"] == pytest.approx(pendulum["random_mean_return"])
    assert pendulum["max_steps"] == 50 and pendulum["action_repeat"] == 4  # 200 environment steps
    assert set(data["summary"]) == {"tworooms", "pendulum"}
    assert table.with_suffix(".png").is_file()
    assert (table.parent / "suite_tworooms_seed0.gif").is_file()


def test_a_second_run_keeps_the_finished_rows(table: Path) -> None:
    before = table.read_text()
    job = SuiteJob(envs=("tworooms",), recipe="two-phase-smoke", episodes=2, results=str(table),
                   out=str(table.parent / "runs"), progress=False)  # fmt: skip
    again = run_suite(job)
    assert table.read_text() == before and len(again["rows"]) == 2


def test_proprio_rows_and_their_gifs_are_kept_apart_from_the_pixel_ones(tmp_path: Path) -> None:
    job = SuiteJob(envs=("pointmass",), recipe="two-phase-smoke", episodes=2, results=str(tmp_path / "suite.json"),
                   out=str(tmp_path / "runs"), progress=False, proprio=True)  # fmt: skip
    (row,) = run_suite(job)["rows"]
    assert row["proprio"] == [2, 3] and "--proprio" in row["command"].split()
    assert row["run_dir"].endswith("seed0_proprio")
    assert (tmp_path / "suite_pointmass_proprio_seed0.gif").is_file()
    assert not (tmp_path / "suite_pointmass_seed0.gif").exists()  # the pixel row's GIF name stays its own


def test_unknown_environment_names_list_the_known_ones() -> None:
    with pytest.raises(ValueError, match="unknown: \\['cartpole'\\]"):
        SuiteJob(envs=("cartpole",)).validate()
    assert {"tworooms", "pointmass", "pendulum", "pusht", "reacher"} <= set(SUITE)


def test_the_commit_stamp_is_dirty_for_changed_code_but_not_for_the_benchmarks_own_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import subprocess

    from torchwm.bench.suite import commit

    def git(*args: str) -> None:
        subprocess.run(["git", *args], cwd=tmp_path, check=True, capture_output=True)

    (tmp_path / "benchmarks" / "results").mkdir(parents=True)
    (tmp_path / "code.py").write_text("x = 1\n")
    (tmp_path / "benchmarks" / "results" / "suite.gif").write_text("old\n")
    git("init", "-q")
    git("add", ".")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "init")
    monkeypatch.chdir(tmp_path / "benchmarks")  # from a subfolder too
    head = commit()
    assert len(head) == 40 and not head.endswith("+dirty")
    (tmp_path / "benchmarks" / "results" / "suite.gif").write_text("new\n")  # what a suite rewrites
    assert commit() == head
    (tmp_path / "code.py").write_text("x = 2\n")
    assert commit() == head + "+dirty"
