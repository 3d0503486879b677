"""``torchwm bench suite``: one recipe, trained and planned on every environment of a table, resumably.

For each environment of `SUITE` and each training seed: `torchwm.pipeline.fit` with the named recipe (the
same hyperparameters everywhere; only what the environment dictates, its action repeat, goal source, cost
and step budget, comes from its table row), then the planning benchmark on 50 episodes from reset seed 1000
on (never a training seed) with a random policy and a greedy one-step planner on the same starts and goals.
Every finished row is written at once to ``suite.json`` (seed, commit and the command that reproduces it), so
a killed suite run again continues with the first row it lacks: finished fits and finished evaluations are
kept, an unfinished fit resumes from its last checkpoint.

    torchwm bench suite                          # every environment, seed 0
    torchwm bench suite --envs tworooms --seeds 0 1 2
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from torchwm.agents.benchmark import (
    GoalKind,
    benchmark_config_for,
    run_planning_benchmark,
)
from torchwm.agents.planners import CostKind
from torchwm.agents.plotting import pyplot
from torchwm.pipeline import fit
from torchwm.wm.config_base import Config, NonNegInt, PositiveInt
from torchwm.wm.recipes import get_recipe
from torchwm.wm.runs import open_run

Metric = Literal["success_rate", "mean_return"]


@dataclass(frozen=True)
class SuiteEnv(Config):
    """One row of the suite: an environment and what it dictates (nothing of the recipe)."""

    name: str
    """Short name (``--envs``)."""
    env_id: str
    """Gymnasium id."""
    metric: Metric = "success_rate"
    """What the row reports: goal-reaching success, or the mean episode return (reward-cost planning)."""
    target: float | None = None
    """The issue's target for ``metric`` (None: reported without one)."""
    imports: tuple[str, ...] = ()
    """Modules that register the environment."""
    frame_skip: PositiveInt | None = None
    """Action repeat, where the environment's time scale needs another than the recipe's (None: the recipe's)."""
    cost: CostKind = "latent_l2"
    """What the planner minimises: the latent distance to a goal image, or ``reward`` (the reward head)."""
    goal: GoalKind = "info"
    """Goal images from the env's reset info, or ``offline`` (frames of held-out recorded episodes)."""
    goal_offset: PositiveInt = 25
    """``goal="offline"``: steps from the start to the goal frame on the held-out episode."""
    success_distance: float | None = None
    """``goal="offline"``: success within this distance of the goal state."""
    reset_options: tuple[tuple[str, Any], ...] = ()
    """Options of every evaluation reset (TwoRooms: start and goal in different rooms)."""
    max_steps: PositiveInt | None = None
    """Agent steps of an evaluation episode (None: the recipe's)."""
    proprio: tuple[int, ...] = ()
    """Entries of the env's state the world model may also take as proprioception, for rows run with
    ``--proprio`` (empty: the env offers none)."""
    gl: str = ""
    """``MUJOCO_GL`` to render with (``egl``: MuJoCo headless on the CPU); empty: not a MuJoCo env."""


SUITE: dict[str, SuiteEnv] = {
    env.name: env
    for env in (
        SuiteEnv("tworooms", "torchwm/TwoRooms-v0", target=0.95, reset_options=(("different_rooms", True),)),
        SuiteEnv("pointmass", "torchwm/PointMass-v0", target=0.80, proprio=(2, 3)),  # its velocity
        # The door drawn at every reset (anywhere along the wall, 0.08-0.2 high); start and goal in different rooms.
        SuiteEnv("tworooms-door", "torchwm/TwoRoomsDoor-v0", target=0.80, reset_options=(("different_rooms", True),)),
        # A U-maze: start and goal at the closed ends of its two arms, the straight line between them blocked.
        SuiteEnv("umaze", "torchwm/UMaze-v0", target=0.80),
        # 200 environment steps (the swing-up task's length) at the recipe's action repeat of 4.
        SuiteEnv("pendulum", "Pendulum-v1", metric="mean_return", target=-400.0, cost="reward", max_steps=50,
                 proprio=(2,)),  # its angular velocity (the observation is cos, sin, velocity)
        # Goals: the frame 25 agent steps later on held-out random-policy episodes; success: the state (agent
        # x, y, block x, y in the 512-pixel arena and the block's angle) within 20 of the goal state.
        SuiteEnv("pusht", "gym_pusht/PushT-v0", imports=("gym_pusht",), goal="offline", success_distance=20.0,
                 target=0.50),  # fmt: skip
        # 50-step episodes: an action repeat of 2 leaves 25 decisions an episode.
        SuiteEnv("reacher", "Reacher-v5", metric="mean_return", cost="reward", frame_skip=2, max_steps=25, gl="egl",
                 proprio=(0, 1, 2, 3, 6, 7)),  # cos, sin of both joints, their velocities
    )
}
"""The suite's environments by name, with each one's target (Reacher: reported, no target)."""


@dataclass(frozen=True)
class SuiteJob(Config):
    """``torchwm bench suite``: which environments and seeds, where the runs and the table go."""

    envs: tuple[str, ...] = tuple(SUITE)
    """Environments to run (names of `SUITE`), in this order."""
    seeds: tuple[int, ...] = (0,)
    """Training seeds of every environment."""
    recipe: str = "two-phase"
    """The recipe every environment is trained with."""
    episodes: PositiveInt = 50
    """Evaluation episodes per method (reset seeds 1000 on)."""
    out: str = "runs/suite"
    """Run folders: ``OUT/ENV/seedS`` (fit stages, ``planning/``)."""
    results: str = "benchmarks/results/suite.json"
    """The table: one row per environment and seed, rewritten after every row."""
    gifs: NonNegInt = 1
    """Planner episodes rendered as GIFs per row."""
    also_context_steps: tuple[PositiveInt, ...] = (3,)
    """Also plan from these latent histories (the recipe's planner, same episodes), reported beside the
    recipe's own (``value_context<C>``): the measurement that decides how much history the planner needs."""
    proprio: bool = False
    """Train and plan with each environment's proprioception (`SuiteEnv.proprio`); rows are kept apart from
    the pixel-only ones (``proprio: true`` in the table)."""
    progress: bool = True
    """Show tqdm progress bars."""

    def check(self) -> None:
        unknown = [name for name in self.envs if name not in SUITE]
        if unknown:
            self.fail("envs", self.envs, f"names from {sorted(SUITE)} (unknown: {unknown})")
        get_recipe(self.recipe)


def commit() -> str:
    """The checked-out commit, ``+dirty`` when tracked files other than the benchmarks' results differ from it
    ('unknown' outside a git clone). The results are left out because a suite rewrites its own table and GIFs
    there: a second call would otherwise stamp its rows dirty for the first call's output."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ":/",
                                ":(top,exclude)benchmarks/results"], capture_output=True, text=True,
                               check=True).stdout.strip()  # fmt: skip
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return head + ("+dirty" if dirty else "")


def _row_command(job: SuiteJob, env: str, seed: int) -> str:
    args = ["torchwm", "bench", "suite", "--envs", env, "--seeds", str(seed), "--recipe", job.recipe]
    if job.proprio:
        args.append("--proprio")
    if job.episodes != SuiteJob.episodes:
        args += ["--episodes", str(job.episodes)]
    return shlex.join(args)


def _metric(row: dict[str, Any], metric: Metric) -> tuple[float, list[float] | None]:
    """A method's value of the metric and its 95% interval (Wilson for success, a t-free normal one for the
    mean return: mean +- 1.96 standard errors over the episodes)."""
    if metric == "success_rate":
        return float(row["success_rate"]), [float(x) for x in row["success_ci95"]]
    returns = np.array([e["episode_return"] for e in row["records"]], dtype=np.float64)
    half = 1.96 * returns.std(ddof=1) / np.sqrt(len(returns)) if len(returns) > 1 else float("nan")
    return float(returns.mean()), [float(returns.mean() - half), float(returns.mean() + half)]


def run_env(job: SuiteJob, env: SuiteEnv, seed: int, code: str | None = None) -> dict[str, Any]:
    """Fit (or finish fitting) one environment at one seed and evaluate it; the row of the table. ``code``: the
    commit the running code was loaded from (default: the checkout's now)."""
    if env.gl:
        os.environ.setdefault("MUJOCO_GL", env.gl)
    recipe = get_recipe(job.recipe)
    if env.frame_skip is not None:
        recipe = recipe.scaled(frame_skip=env.frame_skip)
    proprio = env.proprio if job.proprio else ()
    if job.proprio and not proprio:
        raise ValueError(f"{env.name} offers no proprioception (SuiteEnv.proprio is empty); run it without --proprio")
    run_dir = Path(job.out) / env.name / (f"seed{seed}_proprio" if job.proprio else f"seed{seed}")
    t0 = time.perf_counter()
    fitted = fit(env.env_id, run_dir, recipe, seed=seed, progress=job.progress, imports=env.imports, proprio=proprio)
    fit_seconds = time.perf_counter() - t0
    overrides: dict[str, Any] = {"episodes": job.episodes, "gifs": job.gifs, "goal": env.goal,
                                 "also_context_steps": job.also_context_steps,
                                 "goal_offset": env.goal_offset, "success_distance": env.success_distance,
                                 "reset_options": env.reset_options}  # fmt: skip
    if env.max_steps is not None:
        overrides["max_steps"] = env.max_steps
    # The recipe's planner as it is registered now, not as the checkpoint recorded it: a fit finished before
    # the recipe's planning defaults changed (they do not touch training) is planned as a fresh fit would be.
    cfg = benchmark_config_for(fitted.world_model, planning=recipe.planning, **overrides)
    if env.cost != cfg.mppi.cost:  # only the cost: the recipe's budget and first round stay
        cfg = replace(cfg, cem=replace(cfg.cem, cost=env.cost), mppi=replace(cfg.mppi, cost=env.cost))
    t0 = time.perf_counter()
    summary = run_planning_benchmark(fitted.world_model, run_dir / "planning", cfg)
    methods = summary["methods"]
    planner = f"mpc_{cfg.planners[0]}"
    chosen = getattr(cfg, cfg.planners[0])  # the recipe's planner's settings (CEMConfig or MPPIConfig)
    value, ci = _metric(methods[planner], env.metric)
    random_value, random_ci = _metric(methods["random"], env.metric)
    greedy_value, greedy_ci = _metric(methods["greedy_one_step"], env.metric)
    contexts: dict[str, Any] = {}
    for steps in cfg.also_context_steps:
        value_c, ci_c = _metric(methods[f"{planner}_context{steps}"], env.metric)
        contexts[f"value_context{steps}"], contexts[f"ci95_context{steps}"] = value_c, ci_c
    return {
        "env": env.name, "env_id": env.env_id, "seed": seed, "recipe": recipe.name, "metric": env.metric,
        "proprio": list(proprio),
        "target": env.target,
        "planner": planner, "num_samples": chosen.num_samples, "iterations": chosen.iterations, "horizon": cfg.horizon,
        "value": value, "ci95": ci,
        "random": random_value, "random_ci95": random_ci, "greedy": greedy_value, "greedy_ci95": greedy_ci,
        "met": None if env.target is None else value >= env.target,
        "context_steps": cfg.context_steps, **contexts,
        "success_rate": methods[planner]["success_rate"], "mean_return": methods[planner]["mean_return"],
        "random_success_rate": methods["random"]["success_rate"], "random_mean_return": methods["random"]["mean_return"],
        "median_ms_per_call": methods[planner]["median_ms_per_step"],
        "episodes": job.episodes, "eval_seed": cfg.seed, "action_repeat": cfg.action_repeat, "cost": env.cost,
        "goal": env.goal, "max_steps": cfg.max_steps,
        "fit_seconds": fit_seconds, "fit_stage_seconds": fitted.seconds, "planning_seconds": time.perf_counter() - t0,
        "run_dir": str(run_dir), "gif": str(run_dir / "planning" / "episode_0.gif") if job.gifs else None,
        "commit": code or commit(), "command": _row_command(job, env.name, seed),
        "machine": summary["machine"],  # where the seconds and the model come from (another CPU trains another)
    }  # fmt: skip


def _load(path: Path) -> dict[str, Any]:
    if path.is_file():
        return json.loads(path.read_text())
    return {"rows": []}


def run_suite(job: SuiteJob) -> dict[str, Any]:
    """Every (environment, seed) of the job not yet in the table: fit, evaluate, add its row, write the table
    (and its plot). Rows already in the table are kept, so a killed run continues where it stopped. The run
    folder ``job.out`` is locked meanwhile and records the recipe and episode count (`torchwm.wm.runs`)."""
    job = job.validate()
    with open_run(job.out, "suite", {"recipe": job.recipe, "episodes": job.episodes}, adopt=True):
        return _run_rows(job)


def _run_rows(job: SuiteJob) -> dict[str, Any]:
    path = Path(job.results)
    path.parent.mkdir(parents=True, exist_ok=True)
    table = _load(path)
    code = commit()  # the code this process runs, whatever is checked out by the time a row ends
    for name in job.envs:
        for seed in job.seeds:
            done = [r for r in table["rows"] if r["env"] == name and r["seed"] == seed and r["recipe"] == job.recipe
                    and bool(r.get("proprio")) == job.proprio]  # fmt: skip
            if done:
                print(f"[suite] {name} seed {seed}: in {path} already ({done[0]['value']:.3f}), skipped")
                continue
            print(f"[suite] {name} seed {seed}: fit with recipe {job.recipe!r}, then plan")
            row = run_env(job, SUITE[name], seed, code)
            table["rows"].append(row)
            table["summary"] = summarise(table["rows"])
            path.write_text(json.dumps(table, indent=2, default=str) + "\n")
            plot_suite(table, path.with_suffix(".png"))
            if row["gif"] and Path(row["gif"]).is_file():  # one GIF of what the planner did, beside the table
                kind = "_proprio" if job.proprio else ""  # kept apart, as the rows are
                shutil.copy(row["gif"], path.parent / f"{path.stem}_{name}{kind}_seed{seed}.gif")
            print(f"[suite] {name} seed {seed}: {row['metric']} {row['value']:.3f} (random {row['random']:.3f}), "
                  f"fit {row['fit_seconds'] / 60:.1f} min -> {path}")  # fmt: skip
    return table


def summarise(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Per environment: the metric's mean, min and max over the training seeds, the random policy's mean."""
    out: dict[str, Any] = {}
    for name in dict.fromkeys(row_key(r) for r in rows):
        mine = [r for r in rows if row_key(r) == name]
        values = [r["value"] for r in mine]
        out[name] = {
            "metric": mine[0]["metric"], "target": mine[0]["target"], "seeds": [r["seed"] for r in mine],
            "mean": float(np.mean(values)), "min": float(np.min(values)), "max": float(np.max(values)),
            "random_mean": float(np.mean([r["random"] for r in mine])),
            "greedy_mean": float(np.mean([r["greedy"] for r in mine])),
        }  # fmt: skip
    return out


def row_key(row: dict[str, Any]) -> str:
    """The table line a row belongs to: its environment, ``+proprio`` when it used proprioception."""
    return row["env"] + ("+proprio" if row.get("proprio") else "")


def plot_suite(table: dict[str, Any], path: Path) -> None:
    """One panel per environment: planner, greedy and random with their 95% intervals, the target dashed (none
    without matplotlib)."""
    plt = pyplot()
    if plt is None:
        return

    names = list(table["summary"])
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        rows = [r for r in table["rows"] if row_key(r) == name]
        labels, values, errors = [], [], []
        for r in rows:
            for method, key in (("mpc", "value"), ("greedy", "greedy"), ("random", "random")):
                lo, hi = r["ci95" if key == "value" else f"{key}_ci95"]
                labels.append(f"{method}\ns{r['seed']}")
                values.append(r[key])
                errors.append([max(r[key] - lo, 0.0), max(hi - r[key], 0.0)])
        colors = ["tab:blue", "tab:gray", "tab:orange"] * len(rows)
        ax.bar(range(len(values)), values, yerr=np.array(errors).T, capsize=3, color=colors)
        ax.set_xticks(range(len(values)), labels, fontsize=6)
        target = table["summary"][name]["target"]
        if target is not None:
            ax.axhline(target, linestyle="--", color="k", linewidth=1)
        ax.set_title(f"{name} ({table['summary'][name]['metric']})", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
