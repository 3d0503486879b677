"""``torchwm learn``: model-based RL from the agent's own experience, resumably.

    seed episodes (random policy) -> the recipe's fit (JEPA, phase 1, phase 2)          round 0
    round r: collect episodes with the MPC agent of model r-1 (+ exploration noise)
             -> append them to the run's episode folder
             -> train the dynamics and reward head of model r-1 further on every episode    model r
             -> every ``eval_every`` rounds: the planning benchmark on held-out seeds

The encoder and latent head of phase 1 stay fixed across rounds (each round's model starts from the last one's
weights). The run folder holds ``episodes/`` (the seed episodes and every collected one, each manifest entry
naming its policy), the fit's stages, ``rounds/<r>/world_model`` and ``rounds/<r>/eval``, and ``learn.json``
(the learning curve: return or success against environment steps and wall-clock seconds), ``learn_log/``
(the same rows as CSV and TensorBoard), ``learning_curve.png`` and ``latest_eval.gif``. Every stage is
skipped when its output is complete and continues when it is not, so the same command finishes a killed run;
the run folder's identity and lock apply (`torchwm.wm.runs`; ``--rounds`` may grow between calls).
"""

from __future__ import annotations

import json
import math
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar, Literal

import gymnasium as gym
from tqdm.auto import tqdm

from torchwm.agents.benchmark import (
    DEFAULT_RESET_OPTIONS,
    PlanningBenchmarkConfig,
    benchmark_config_for,
    make_benchmark_env,
    make_mpc_agent,
    run_planning_benchmark,
)
from torchwm.agents.collect import MPCCollector
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.machine import machine_facts
from torchwm.agents.plotting import pyplot
from torchwm.envs.record import record
from torchwm.envs.reset_options import ResetOptions
from torchwm.envs.resolve import import_plugins, step_limit
from torchwm.pipeline import FitJob, first_recording_seed, fit_stages, recorded_episodes, stage_finished
from torchwm.wm.config_base import NonNegFloat, NonNegInt, PositiveInt
from torchwm.wm.episodes import read_manifest
from torchwm.wm.recipes import Recipe, get_recipe
from torchwm.wm.runlog import RunLog
from torchwm.wm.runs import open_run
from torchwm.wm.wm_trainer import WorldModelTrainer
from torchwm.wm.world_model import WorldModel

LearnCost = Literal["auto", "latent_l2", "reward"]


@dataclass(frozen=True)
class LearnJob(FitJob):
    """``torchwm learn``: the seed fit's environment, run folder, recipe and seed (`FitJob`'s fields), and the
    online loop's budget."""

    RUN_NEUTRAL: ClassVar[frozenset[str]] = FitJob.RUN_NEUTRAL | {"rounds", "eval_every", "eval_episodes", "out"}
    """A run may be extended by more rounds, and evaluated more or less often, without becoming another run."""

    frame_skip: PositiveInt | None = None
    """Environment steps per recorded step and per planned action (None: the recipe's)."""
    seed_episodes: PositiveInt = 30
    """Random-policy episodes recorded before the first round (the recipe's fit trains on them)."""
    rounds: PositiveInt = 8
    """Rounds of collect, update, evaluate."""
    episodes_per_round: PositiveInt = 10
    """Episodes the MPC agent collects each round."""
    update_steps: PositiveInt = 300
    """Optimiser steps of the dynamics (and reward head) each round, on every episode collected so far."""
    noise: NonNegFloat = 0.3
    """Exploration: standard deviation of the Gaussian noise on the collector's actions, in half action ranges."""
    cost: LearnCost = "auto"
    """What the planner minimises: ``latent_l2`` to the reset info's ``goal_frame``, or ``reward`` (minus the
    predicted return); ``auto``: ``latent_l2`` where the environment gives goal frames, else ``reward``."""
    eval_every: PositiveInt = 2
    """Rounds between evaluations (round 0, the fit on the seed episodes, and the last round always are)."""
    eval_episodes: PositiveInt = 10
    """Evaluation episodes, reset seeds 1000 on (never a training seed)."""
    eval_max_steps: NonNegInt = 0
    """Agent steps of an evaluation episode (0: the environment's step limit over the frame skip for the reward
    cost, the recipe's step budget for goals)."""


def learn(job: LearnJob, recipe: Recipe | None = None) -> dict[str, Any]:
    """Run (or continue) the online loop of ``job``; returns what ``learn.json`` holds.

    ``recipe`` replaces the registered recipe of ``job.recipe`` (a `Recipe` object that is not registered).
    """
    r = recipe or get_recipe(job.recipe)
    if job.frame_skip is not None:
        r = r.scaled(frame_skip=job.frame_skip)
    out = Path(job.out)
    identity = {**job.run_identity(), "recipe": r.run_identity()}
    with open_run(out, "learn", identity, overwrite=job.overwrite):
        return _Loop(job, r, out).run()


class _Loop:
    """One call of `learn`: the stages that are not complete yet, in order."""

    def __init__(self, job: LearnJob, recipe: Recipe, out: Path) -> None:
        self.job, self.recipe, self.out = job, recipe, out
        self.episodes = out / "episodes"
        self.timings_path = out / "timings.json"
        self.timings: dict[str, float] = (
            json.loads(self.timings_path.read_text()) if self.timings_path.is_file() else {}
        )
        self.log: RunLog | None = None

    # --- the loop ---------------------------------------------------------------------------------
    def run(self) -> dict[str, Any]:
        job, r = self.job, self.recipe
        import_plugins(job.imports)
        self._timed("fit", fit_stages, job.env, self.out, r.scaled(episodes=job.seed_episodes), job.seed,
                    job.num_envs, job.progress, job.imports, job.max_steps or None, job.proprio)  # fmt: skip
        base = self._eval_config(self.out / "world_model")
        curve = self._curve()
        self.log = RunLog(self.out / "learn_log", resume_step=int(curve[-1]["env_steps"]) if curve else 0)
        with tqdm(total=job.rounds, initial=0, disable=not job.progress, unit="round", desc=f"learn {job.env}") as bar:
            self._evaluate(0, self.out / "world_model", base, curve, baselines=True)
            for rnd in range(1, job.rounds + 1):
                previous = self._model_dir(rnd - 1)
                self._timed(f"collect_{rnd}", self._collect, rnd, previous, base)
                self._timed(f"update_{rnd}", self._update, rnd, previous)
                if rnd % job.eval_every == 0 or rnd == job.rounds:
                    self._evaluate(rnd, self._model_dir(rnd), base, curve, baselines=False)
                bar.update(1)
                bar.set_postfix(env_steps=self._env_steps(self._episodes_after(rnd)), last=curve[-1]["value"])
        self.log.close()
        return self._write(curve, base)

    def _model_dir(self, rnd: int) -> Path:
        return self.out / "world_model" if rnd == 0 else self.out / "rounds" / f"{rnd:03d}" / "world_model"

    def _collect_path(self, rnd: int) -> Path:
        """Where a round's collection facts go (planning ms a call, sub-environments)."""
        return self.out / "rounds" / f"{rnd:03d}" / "collect.json"

    def _episodes_after(self, rnd: int) -> int:
        return self.job.seed_episodes + rnd * self.job.episodes_per_round

    def _timed(self, stage: str, run: Callable[..., Any], *args: Any) -> None:
        """``run(*args)``, a stage; its wall time joins the run's (a stage found complete adds next to nothing)."""
        t0 = time.perf_counter()
        run(*args)
        seconds = time.perf_counter() - t0
        self.timings[stage] = self.timings.get(stage, 0.0) + seconds
        self.timings_path.write_text(json.dumps(self.timings, indent=2) + "\n")

    # --- stages -----------------------------------------------------------------------------------
    def _collect(self, rnd: int, model_dir: Path, cfg: PlanningBenchmarkConfig) -> None:
        """Record the round's episodes with the MPC agent of the previous round's model (appended; a killed
        round records only the episodes it lacks)."""
        job = self.job
        missing = self._episodes_after(rnd) - recorded_episodes(self.episodes)
        if missing <= 0:
            return
        model = PlanningModel(WorldModel.from_pretrained(model_dir))
        space = make_benchmark_env(cfg).action_space
        assert isinstance(space, gym.spaces.Box)
        agent = make_mpc_agent(model, cfg, space, seed=job.seed * 1000 + rnd)
        collector = MPCCollector(agent, space, job.noise, cfg.proprio, seed=job.seed * 1000 + rnd)
        options = dict(cfg.reset_options)

        def make_env() -> gym.Env:
            env = gym.make(job.env, render_mode="rgb_array")
            return ResetOptions(env, options) if options else env

        record(
            make_env, collector, missing, self.episodes, num_envs=min(job.num_envs, missing),
            frame_skip=self.recipe.frame_skip, max_steps=job.max_steps or None, imports=job.imports,
            image_size=self.recipe.image_size, progress=job.progress,
        )  # fmt: skip
        collect = {"plan_ms_per_call": sorted(collector.plan_ms)[len(collector.plan_ms) // 2] if collector.plan_ms
                   else None, "num_envs": min(job.num_envs, missing)}  # fmt: skip
        path = self._collect_path(rnd)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(collect) + "\n")

    def _update(self, rnd: int, previous: Path) -> None:
        """Train the previous model's dynamics and reward head further on every episode so far."""
        job, r = self.job, self.recipe
        steps = job.update_steps
        cfg = replace(
            r.dynamics_config(self.episodes, self.out / "world_model_joint", self._model_dir(rnd), seed=job.seed + rnd),
            init_checkpoint=str(previous), steps=steps, warmup_steps=min(100, steps // 10),
            checkpoint_interval=steps, progress=job.progress, proprio=tuple(job.proprio),
        )  # fmt: skip
        if not stage_finished(self._model_dir(rnd), steps):
            WorldModelTrainer(cfg).run()

    def _evaluate(
        self, rnd: int, model_dir: Path, cfg: PlanningBenchmarkConfig, curve: list[dict[str, Any]], baselines: bool
    ) -> None:
        """The planning benchmark on the round's model; its row joins the curve (once)."""
        if any(row["round"] == rnd for row in curve):
            return
        eval_dir = self.out / "rounds" / f"{rnd:03d}" / "eval"
        t0 = time.perf_counter()
        summary = run_planning_benchmark(model_dir, eval_dir, replace(cfg, baselines=baselines))
        self.timings[f"eval_{rnd}"] = time.perf_counter() - t0  # not part of the learning's wall time
        self.timings_path.write_text(json.dumps(self.timings, indent=2) + "\n")
        planner = f"mpc_{cfg.planners[0]}"
        methods = summary["methods"]
        metric = self.metric(cfg)
        episodes = self._episodes_after(rnd)
        row = {
            "round": rnd, "episodes": episodes, "env_steps": self._env_steps(episodes),
            "wall_seconds": round(self._learning_seconds(rnd), 1), "metric": metric,
            "value": methods[planner][metric], "success_rate": methods[planner]["success_rate"],
            "mean_return": methods[planner]["mean_return"], "ci95": methods[planner].get("success_ci95"),
            "median_ms_per_call": methods[planner]["median_ms_per_step"],
        }  # fmt: skip
        if f"{planner}_no_value" in methods:  # a model with a value: the same planner without it, same episodes
            row["no_value"] = methods[f"{planner}_no_value"][metric]
        if baselines:
            row["random"] = methods["random"][metric]
            row["greedy"] = methods["greedy_one_step"][metric]
        if rnd:  # the episodes this round collected, as the recorder saw them (with the exploration noise)
            made = read_manifest(self.episodes)["episodes"][self._episodes_after(rnd - 1) : episodes]
            row["collect_mean_return"] = sum(float(e["return"]) for e in made) / max(len(made), 1)
            collect = self._collect_path(rnd)
            if collect.is_file():
                facts = json.loads(collect.read_text())
                row["collect_plan_ms_per_call"] = facts["plan_ms_per_call"]  # every sub-environment in one call
                row["collect_num_envs"] = facts["num_envs"]
        curve.append(row)
        gif = eval_dir / "episode_0.gif"
        if gif.is_file():
            shutil.copyfile(gif, self.out / "latest_eval.gif")
        assert self.log is not None
        self.log.log(int(row["env_steps"]), {f"eval/{metric}": float(row["value"]), "eval/round": rnd,
                                             "time/wall_seconds": float(row["wall_seconds"])})  # fmt: skip
        self._write(curve, cfg)

    # --- facts --------------------------------------------------------------------------------------
    def _eval_config(self, model_dir: Path) -> PlanningBenchmarkConfig:
        """The evaluation (and collection) settings: the checkpoint's, the job's cost and step budget."""
        job = self.job
        cfg = benchmark_config_for(
            model_dir, episodes=job.eval_episodes, gifs=1, reset_options=DEFAULT_RESET_OPTIONS.get(job.env, ()),
        )  # fmt: skip
        cfg = replace(cfg, planners=cfg.planners[:1], imports=tuple(dict.fromkeys((*cfg.imports, *job.imports))))
        env = make_benchmark_env(replace(cfg, goal="info"))
        has_goal = "goal_frame" in env.reset(seed=cfg.seed)[1]
        cost = job.cost if job.cost != "auto" else ("latent_l2" if has_goal else "reward")
        if cost != "reward" and not has_goal:
            raise ValueError(
                f"cost={cost!r} plans towards info['goal_frame'], but {job.env}'s reset info has none; use --cost reward"
            )
        cfg = replace(cfg, cem=replace(cfg.cem, cost=cost), mppi=replace(cfg.mppi, cost=cost))
        max_steps = job.eval_max_steps
        if not max_steps and cost == "reward":
            limit = step_limit(gym.make(job.env))
            max_steps = math.ceil(limit / cfg.action_repeat) if limit else 0
        return replace(cfg, max_steps=max_steps) if max_steps else cfg

    @staticmethod
    def metric(cfg: PlanningBenchmarkConfig) -> str:
        return "mean_return" if cfg.mppi.cost == "reward" else "success_rate"

    def _env_steps(self, episodes: int) -> int:
        """Environment steps of the run's first ``episodes`` episodes (each recorded step is frame_skip of them)."""
        entries = read_manifest(self.episodes)["episodes"][:episodes]
        return sum(int(e["num_steps"]) * int(e.get("info", {}).get("frame_skip", 1)) for e in entries)

    def _learning_seconds(self, rnd: int) -> float:
        """Wall time of the fit and of rounds 1..rnd's collection and updates (evaluations left out)."""
        keys = ["fit"] + [f"{stage}_{i}" for i in range(1, rnd + 1) for stage in ("collect", "update")]
        return sum(self.timings.get(k, 0.0) for k in keys)

    def _curve(self) -> list[dict[str, Any]]:
        path = self.out / "learn.json"
        return list(json.loads(path.read_text())["curve"]) if path.is_file() else []

    def _write(self, curve: list[dict[str, Any]], cfg: PlanningBenchmarkConfig) -> dict[str, Any]:
        job = self.job
        summary = {
            "env": job.env, "seed": job.seed, "recipe": self.recipe.name, "metric": self.metric(cfg),
            "planner": f"mpc_{cfg.planners[0]}", "cost": cfg.mppi.cost, "eval_episodes": job.eval_episodes,
            "eval_seed": cfg.seed, "eval_max_steps": cfg.max_steps, "action_repeat": cfg.action_repeat,
            "job": job.to_dict(), "first_recording_seed": first_recording_seed(job.seed),
            "curve": curve, "timings": self.timings, "machine": machine_facts(1),
        }  # fmt: skip
        (self.out / "learn.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        plot_curves([summary], self.out / "learning_curve.png")
        return summary


def plot_curves(runs: Sequence[dict[str, Any]], path: Path, reference: Sequence[dict[str, Any]] = ()) -> None:
    """Metric against environment steps (left) and wall-clock seconds (right) for each ``learn.json`` summary,
    with round 0's random and greedy levels as lines; ``reference``: other curves (rows of ``env_steps``,
    ``wall_seconds``, ``value``, and a ``label``), for example a model-free agent's. Nothing without matplotlib."""
    plt = pyplot()
    if plt is None or not runs:
        return
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.6))
    for run in runs:
        rows = run["curve"]
        label = f"torchwm learn, {run.get('recipe') or 'recipe'}, seed {run['seed']}"
        ax1.plot([r["env_steps"] for r in rows], [r["value"] for r in rows], marker="o", label=label)
        ax2.plot([r["wall_seconds"] for r in rows], [r["value"] for r in rows], marker="o", label=label)
    first = runs[0]["curve"][0] if runs[0]["curve"] else {}
    for key, style in (("random", ":"), ("greedy", "--")):
        if key in first:
            for ax in (ax1, ax2):
                ax.axhline(first[key], color="grey", linestyle=style, label=f"{key} (round 0)")
    for ref in reference:
        rows = ref["curve"]
        ax1.plot([r["env_steps"] for r in rows], [r["value"] for r in rows], color="black", label=ref["label"])
        ax2.plot([r["wall_seconds"] for r in rows], [r["value"] for r in rows], color="black", label=ref["label"])
    ax1.set_xlabel("environment steps")
    ax2.set_xlabel("wall-clock seconds (2 cores)")
    for ax in (ax1, ax2):
        ax.set_ylabel(runs[0]["metric"])
        ax.legend(fontsize=7)
    fig.suptitle(runs[0]["env"])
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


__all__ = ["LearnJob", "learn", "plot_curves"]
