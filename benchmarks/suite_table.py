"""Print the suite's table (benchmarks/results/suite.json) as the README's Markdown, so the two never differ.

    python benchmarks/suite_table.py [--results benchmarks/results/suite.json]

One line per environment (and per environment with proprioception): the recipe's planner (MPPI from the
recipe's latent history) as mean (min–max) over the training seeds with seed 0's 95% interval, the same
planner from the other history the suite tried, the greedy one-step planner and the random policy on the same
starts and goals, the
target and whether the mean meets it, and the minutes of recording + training per seed (of the call that
wrote the row: a fit finished by an earlier, interrupted call shows no time).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from torchwm.bench.suite import row_key

RESULTS = Path(__file__).resolve().parent / "results" / "suite.json"


def _fmt(value: float, metric: str) -> str:
    return f"{value:.2f}" if metric == "success_rate" else f"{value:.0f}"


def _spread(values: list[float], metric: str, bold: bool = False) -> str:
    mean = sum(values) / len(values)
    text = f"**{_fmt(mean, metric)}**" if bold else _fmt(mean, metric)
    if len(values) == 1:
        return text
    return f"{text} ({_fmt(min(values), metric)}–{_fmt(max(values), metric)})"


def _histories(steps: list[int]) -> str:
    """Latent histories as a header names them: ``one-step``, ``3-step``, ``one-step/3-step``."""
    return "/".join(f"{c}-step" if c > 1 else "one-step" for c in steps)


def table(data: dict[str, Any]) -> str:
    every = data["rows"]
    own = sorted({int(r.get("context_steps", 1)) for r in every})
    other = sorted({int(k.removeprefix("value_context")) for r in every for k in r if k.startswith("value_context")})
    # rows from before the budget was recorded planned MPPI 50 x 2
    budgets = "/".join(dict.fromkeys(f"{r.get('num_samples', 50)} × {r.get('iterations', 2)}" for r in every))
    head = (f"| env | metric | training seeds | MPPI {budgets}, {_histories(own)} history: mean (min–max) "
            f"| seed 0's 95% CI | from a {_histories(other) or '(none)'} history "
            "| greedy one-step | random policy | target | met | fit min / seed |")  # fmt: skip
    lines = [head, "| " + " | ".join(["---"] * 11) + " |"]
    for key in dict.fromkeys(row_key(r) for r in every):
        rows = sorted((r for r in every if row_key(r) == key), key=lambda r: r["seed"])
        metric = rows[0]["metric"]
        first = rows[0]
        ci = f"{_fmt(first['ci95'][0], metric)}–{_fmt(first['ci95'][1], metric)}"
        mean = sum(r["value"] for r in rows) / len(rows)
        target = first["target"]
        met = "" if target is None else ("yes" if mean >= target else "**no**")
        context = [r[f"value_context{c}"] for r in rows for c in other if f"value_context{c}" in r]
        cells = [
            key, "success" if metric == "success_rate" else "return", ", ".join(str(r["seed"]) for r in rows),
            _spread([r["value"] for r in rows], metric, bold=True), ci,
            _spread(context, metric) if context else "",
            _spread([r["greedy"] for r in rows], metric), _spread([r["random"] for r in rows], metric),
            "reported" if target is None else ("≥ " + _fmt(target, metric)), met,
            ", ".join(f"{r['fit_seconds'] / 60:.1f}" if r["fit_seconds"] >= 1 else "(an earlier call)" for r in rows),
        ]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", default=str(RESULTS))
    args = p.parse_args(argv)
    print(table(json.loads(Path(args.results).read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
