"""The README's headline table says what its one JSON file (`benchmarks/results/suite.json`) holds."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
NAMES = {"TwoRooms": "tworooms", "TwoRoomsDoor": "tworooms-door", "PointMass": "pointmass", "Pendulum": "pendulum",
         "PushT": "pusht", "Reacher": "reacher"}  # fmt: skip


def _numbers(cell: str) -> list[str]:
    return re.findall(r"[−-]?\d+(?:\.\d+)?", cell.split("≥")[0])


def _close(written: str, actual: float) -> bool:
    decimals = len(written.split(".")[1]) if "." in written else 0
    return abs(float(written.replace("−", "-")) - actual) <= 0.5 * 10**-decimals + 1e-12


def suite_rows() -> dict[str, list[str]]:
    """The README's suite table: environment key -> its cells."""
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        first = cells[0].split(" ")[0] if cells else ""
        if line.startswith("|") and first in NAMES:
            rows[NAMES[first]] = cells
    return rows


def test_every_number_of_the_readme_suite_table_is_the_json_s() -> None:
    summary = json.loads((ROOT / "benchmarks" / "results" / "suite.json").read_text())["summary"]
    rows = suite_rows()
    assert set(rows) == set(summary), "the README's suite table and suite.json list other environments"
    for env, cells in rows.items():
        facts = summary[env]
        assert [int(s) for s in _numbers(cells[1])] == facts["seeds"], env
        planner = _numbers(cells[2])
        expected = [facts["mean"]] + ([facts["min"], facts["max"]] if len(facts["seeds"]) > 1 else [])
        assert len(planner) == len(expected), (env, cells[2])
        for written, actual in zip(planner, expected):
            assert _close(written, actual), (env, written, actual)
        assert _close(_numbers(cells[3])[0], facts["greedy_mean"]), (env, cells[3])
        assert _close(_numbers(cells[4])[0], facts["random_mean"]), (env, cells[4])
