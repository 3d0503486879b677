"""The planning benchmark: closed-loop goal reaching in the real environment, MPC beside baselines.

Every method is run through `agents.evaluate.evaluate` on the same seeded episodes with the same step
budget. Planners see only pixels and the goal image (never the simulator's state). Reported for each:
success rate with a Wilson 95% interval, final distance to the goal, median and 95th-percentile
planning milliseconds per environment step. Also written: a plot of the table, and GIFs of a few MPC
episodes (the frames beside the goal image) with plots of the latent distance to the goal, as
measured (encoded frame) and as predicted by the plan.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import gymnasium as gym
import numpy as np
import torch
from torchwm.agents.evaluate import RandomPolicy, evaluate
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.machine import machine_facts
from torchwm.agents.mpc import MPCAgent, greedy_one_step
from torchwm.agents.planners import (
    CEM,
    MPPI,
    CEMConfig,
    CostKind,
    CostOn,
    MPPIConfig,
    PlannerConfig,
)
from torchwm.agents.plotting import pyplot
from torchwm.envs.action_repeat import ActionRepeat
from torchwm.envs.goals import FunctionGoal, OfflineGoals, load_goal_function
from torchwm.envs.pixels import PixelObservations
from torchwm.envs.registration import TWO_ROOMS_DOOR_ID, TWO_ROOMS_ID
from torchwm.envs.reset_options import ResetOptions
from torchwm.envs.resolve import import_plugins
from torchwm.wm.checkpoint import read_config, resolve_checkpoint
from torchwm.wm.config_base import Config, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.planning_spec import PlannerKind, PlanningDefaults
from torchwm.wm.world_model import DataFacts, WorldModel

GoalKind = Literal["info", "function", "offline"]
_Planner = TypeVar("_Planner", bound=PlannerConfig)

HELDOUT_GOAL_SEED = 900_000
"""First reset seed of the held-out episodes the benchmark records for offline goals."""


@dataclass(frozen=True)
class PlanningBenchmarkConfig(Config):
    """What to evaluate and how."""

    env_id: str = "torchwm/TwoRooms-v0"
    """A gymnasium id whose reset info carries ``goal_frame`` and whose info carries ``is_success``."""
    episodes: PositiveInt = 50
    """Seeded episodes per method (episode i is reset with seed + i)."""
    max_steps: PositiveInt = 100
    """Step budget of an episode, in agent steps (each ``action_repeat`` environment steps)."""
    seed: NonNegInt = 1000
    """Seed of the first episode (keep it away from the seeds the training data was recorded with)."""
    reset_options: tuple[tuple[str, Any], ...] = (("different_rooms", True),)
    """Options passed to every reset (TwoRooms: start and goal in different rooms)."""
    action_repeat: PositiveInt = 1
    """Apply each action this many times (`envs.action_repeat.ActionRepeat`); match the recording's frame_skip."""
    planners: tuple[PlannerKind, ...] = ("cem", "mppi")
    """MPC planners to evaluate."""
    horizon: PositiveInt = 8
    """Planning horizon of the MPC planners."""
    context_steps: PositiveInt = 1
    """Latent steps the planners' rollouts start from (the current one and those before it, with the actions
    taken between them; `MPCAgent`'s ``context_steps``)."""
    proprio: tuple[int, ...] = ()
    """Entries of the state vector handed to the agents as ``obs["proprio"]`` (the checkpoint's by default:
    what a model with proprioception was trained on)."""
    also_context_steps: tuple[PositiveInt, ...] = ()
    """Also evaluate the first planner from these latent histories (rows ``mpc_<planner>_context<C>``), to
    compare with ``context_steps`` on the same episodes."""
    cem: CEMConfig = CEMConfig()
    """CEM settings (its horizon is replaced by ``horizon``)."""
    mppi: MPPIConfig = MPPIConfig()
    """MPPI settings (its horizon is replaced by ``horizon``)."""
    baselines: bool = True
    """Also evaluate a random policy and a greedy one-step planner."""
    gifs: NonNegInt = 2
    """Episodes rendered as GIFs with latent-distance plots (first planner only)."""
    imports: tuple[str, ...] = ()
    """Modules to import before ``env_id`` is made (plugins that register it; from the checkpoint by default)."""
    frame_size: NonNegInt = 0
    """Side of the frames the agent sees, resized as the recorder resized them (0: the environment's; by
    default the checkpoint's recorded frame size)."""
    goal: GoalKind = "info"
    """Where goal images come from: the env's ``info["goal_frame"]``; a ``function`` of the env
    (``goal_function``); or ``offline``: the frame ``goal_offset`` steps later on a held-out recorded episode
    (`torchwm.envs.goals.OfflineGoals`), for environments without goals."""
    goal_function: str = ""
    """``module:function`` with ``goal_fn(env) -> frame`` (``goal="function"``)."""
    goal_episodes: str = ""
    """Held-out episodes for ``goal="offline"`` (empty: recorded by the benchmark with reset seeds from
    900000 on, never a training seed, one per evaluation episode)."""
    goal_offset: PositiveInt = 25
    """Steps from the start to the goal on the held-out episode (``goal="offline"``)."""
    success_distance: float | None = None
    """``goal="offline"``: success when ``info["state"]`` is this close to the recorded goal state (None: only
    the environment's own ``is_success``)."""
    episode_options: str = ""
    """``module:function`` giving each episode's reset options from its seed (``options(seed) -> dict``), on
    top of ``reset_options``; empty: the same options every episode."""
    distance_key: str = "distance"
    """The ``info`` entry that holds the environment's distance to the goal, reported as the final distance."""
    threads: NonNegInt = 1
    """torch CPU threads while planning (1: a planning call's small matmuls run faster on one thread than
    split over two; 0: leave torch's setting). The previous setting is restored afterwards."""
    compile: bool = False
    """Roll the planners' candidates out through ``torch.compile`` (`WorldModel.compile_rollout`): the same
    plans, each call faster, after a first call that compiles (tens of seconds)."""

    def __post_init__(self) -> None:
        self.validate()  # frozen: checked whole when it is built


@dataclass(frozen=True)
class PlanningJob(Config):
    """``torchwm bench planning``: a checkpoint, and what to change of the evaluation it asks for.

    Every unset field (None) takes what the checkpoint and its recipe say (`benchmark_config_for`)."""

    checkpoint: str = ""
    """World-model checkpoint or run directory."""
    out: str = "runs/bench_planning"
    """Where planning.json, the plot and the GIFs go."""
    env: str | None = None
    """Gymnasium id of the evaluation environment (default: the checkpoint's)."""
    episodes: PositiveInt | None = None
    """Seeded episodes per method (default 50)."""
    max_steps: PositiveInt | None = None
    """Agent steps an episode may take (default: the recipe's)."""
    seed: NonNegInt | None = None
    """Seed of the first episode (default 1000, never a training seed)."""
    planners: tuple[PlannerKind, ...] | None = None
    """Planners to evaluate (default: the recipe's)."""
    horizon: PositiveInt | None = None
    """Planning horizon in model steps (default: the recipe's)."""
    context_steps: PositiveInt | None = None
    """Latent history the rollouts start from, in model steps (default: the recipe's)."""
    action_repeat: PositiveInt | None = None
    """Environment steps per action (default: the checkpoint's frame skip)."""
    samples: PositiveInt | None = None
    """Candidate sequences per iteration, both planners (default: the recipe's)."""
    elites: PositiveInt | None = None
    """Elites (default: samples / 8 for MPPI, samples / 10 for CEM)."""
    iterations: PositiveInt | None = None
    """Refinement iterations per planning call (default: the recipe's, else each planner's)."""
    init_std: PositiveFloat | None = None
    """Standard deviation of a call's first round, both planners, in units of half the action range (default:
    each planner's, 2.0 for MPPI as TD-MPC2, 1.0 for CEM)."""
    narrow_std: NonNegFloat | None = None
    """Draw a share of a call's first-round samples at this standard deviation, both planners (default 0: off)."""
    narrow_fraction: Annotated[float, Range(gt=0, lt=1)] | None = None
    """That share (default 0.5)."""
    cost_on: CostOn | None = None
    """Latent cost of the ``final`` step or the ``sum`` over the horizon (default: sum)."""
    cost: CostKind | None = None
    """What the planners minimise: ``latent_l2`` to the goal image (the default), ``latent_l1``, or ``reward``
    (minus the reward head's predicted reward: no goal needed)."""
    different_rooms: bool | None = None
    """TwoRooms: start and goal in different rooms (default: on for TwoRooms)."""
    gifs: NonNegInt | None = None
    """MPC episodes rendered as GIFs (default 2)."""
    threads: NonNegInt | None = None
    """Torch threads while planning (default 1)."""
    baselines: bool | None = None
    """Also evaluate a random policy and a greedy one-step planner (default: yes)."""
    compile: bool | None = None
    """Roll out through ``torch.compile``: the same plans, faster calls after the first (default: off)."""
    goal: GoalKind | None = None
    """Goal source: ``info`` (the env's goal_frame, the default), ``function`` or ``offline``."""
    goal_function: str | None = None
    """``module:function`` giving the goal image of the env (with ``--goal function``)."""
    goal_episodes: str | None = None
    """Held-out episodes for ``--goal offline`` (default: recorded by the benchmark)."""
    goal_offset: PositiveInt | None = None
    """Steps from the start to the goal on a held-out episode (default 25)."""
    success_distance: float | None = None
    """Offline goals: success within this state distance of the goal state."""
    episode_options: str | None = None
    """``module:function``: each episode's reset options from its seed."""
    distance_key: str | None = None
    """The ``info`` entry holding the env's distance to the goal (default ``distance``)."""
    imports: tuple[str, ...] | None = None
    """More modules to import before the environment is made (``--import``; the checkpoint's come anyway)."""

    def check(self) -> None:
        if not self.checkpoint:
            self.fail("checkpoint", self.checkpoint, "a world-model checkpoint or run directory (--checkpoint)")

    def benchmark_config(self) -> PlanningBenchmarkConfig:
        """The checkpoint's evaluation with this job's set fields in place of its defaults: each field this job
        shares by name with `PlanningBenchmarkConfig` as it is, and ``env``, ``different_rooms``, the sample
        budget, the cost and the first round translated into the planners' settings."""
        bench = {f.name for f in fields(PlanningBenchmarkConfig)}
        shared = [f.name for f in fields(self) if f.name in bench]
        overrides: dict[str, Any] = {name: value for name in shared if (value := getattr(self, name)) is not None}
        if self.env is not None:
            overrides["env_id"] = self.env
        if self.different_rooms is not None:
            overrides["reset_options"] = (("different_rooms", True),) if self.different_rooms else ()
        cfg = benchmark_config_for(self.checkpoint, **overrides)
        if any(v is not None for v in (self.samples, self.elites, self.iterations, self.cost_on, self.cost)):
            # the checkpoint's rounds stay unless given (--samples alone changes the samples and their elites)
            cfg = with_budget(
                cfg, cfg.mppi.num_samples if self.samples is None else self.samples, self.elites, self.iterations,
                cost_on=cfg.mppi.cost_on if self.cost_on is None else self.cost_on,
                cost=cfg.mppi.cost if self.cost is None else self.cost,
            )  # fmt: skip
        first = {k: v for k in ("init_std", "narrow_std", "narrow_fraction") if (v := getattr(self, k)) is not None}
        if first:
            cfg = replace(cfg, cem=replace(cfg.cem, **first), mppi=replace(cfg.mppi, **first))
        return cfg


DEFAULT_RESET_OPTIONS: dict[str, tuple[tuple[str, Any], ...]] = {
    TWO_ROOMS_ID: (("different_rooms", True),),
    TWO_ROOMS_DOOR_ID: (("different_rooms", True),),
}
"""Reset options the benchmark uses by default for an environment (the task its table reports)."""


def default_elites(planner: PlannerKind, num_samples: int) -> int:
    """Elites of a sample budget: an eighth of the samples for MPPI, a tenth for CEM, at least 2."""
    return max(num_samples // (8 if planner == "mppi" else 10), 2)


def with_budget(
    cfg: PlanningBenchmarkConfig,
    num_samples: int,
    num_elites: int | None = None,
    iterations: int | None = None,
    **planner_fields: Any,
) -> PlanningBenchmarkConfig:
    """``cfg`` with both planners given ``num_samples`` candidates, ``num_elites`` elites (None: each planner's
    `default_elites` of the samples), ``iterations`` rounds (None: each keeps its own) and any other planner
    ``planner_fields``; every other setting of the planners (their first round, temperature, ...) stays."""
    rounds: dict[str, Any] = {} if iterations is None else {"iterations": iterations}

    def budget(name: PlannerKind, planner: _Planner) -> _Planner:
        elites = default_elites(name, num_samples) if num_elites is None else num_elites
        return replace(planner, num_samples=num_samples, num_elites=elites, **rounds, **planner_fields)

    return replace(cfg, cem=budget("cem", cfg.cem), mppi=budget("mppi", cfg.mppi))


def apply_planning(cfg: PlanningBenchmarkConfig, spec: PlanningDefaults) -> PlanningBenchmarkConfig:
    """``cfg`` planned as ``spec`` says: its planner alone, its horizon, latent history and step budget, and both
    planners given its sample budget and rounds (`with_budget`: elites derived from the samples, each planner's
    own rounds where the spec gives None)."""
    cfg = with_budget(cfg, spec.num_samples, iterations=spec.iterations)
    return replace(cfg, planners=(spec.planner,), horizon=spec.horizon, context_steps=spec.context_steps,
                   max_steps=spec.max_steps)  # fmt: skip


def planner_settings(spec: PlanningDefaults) -> CEMConfig | MPPIConfig:
    """The settings ``spec``'s planner plans with, its horizon included (`apply_planning` on the default
    planner settings)."""
    planned = apply_planning(PlanningBenchmarkConfig(), spec)
    settings: CEMConfig | MPPIConfig = planned.mppi if spec.planner == "mppi" else planned.cem
    return replace(settings, horizon=spec.horizon)


def benchmark_config_for(
    checkpoint: str | Path, planning: PlanningDefaults | None = None, **overrides: Any
) -> PlanningBenchmarkConfig:
    """The evaluation a world-model checkpoint asks for: its environment, its frame skip as the action repeat,
    the environment's default reset options, and its planning spec (`DataFacts.planning`, or ``planning`` in
    its place) applied by `apply_planning`; any field of `PlanningBenchmarkConfig` in ``overrides`` replaces
    what the checkpoint and the spec say (``imports`` add to the checkpoint's)."""
    data = DataFacts.from_checkpoint_config(read_config(resolve_checkpoint(checkpoint)))
    spec = data.planning if planning is None else planning
    env_id = overrides.get("env_id", data.env_id or PlanningBenchmarkConfig.env_id)
    facts: dict[str, Any] = {"env_id": env_id, "action_repeat": data.frame_skip, "proprio": data.proprio,
                             "reset_options": DEFAULT_RESET_OPTIONS.get(env_id, ())}  # fmt: skip
    if data.frame_shape is not None:
        facts["frame_size"] = int(data.frame_shape[0])
    extra_imports = overrides.pop("imports", ())
    facts["imports"] = tuple(dict.fromkeys((*data.imports, *extra_imports)))  # the checkpoint's, then more
    cfg = PlanningBenchmarkConfig(**facts)
    if spec is not None:
        cfg = apply_planning(cfg, spec)
    return replace(cfg, **overrides)


def make_benchmark_env(cfg: PlanningBenchmarkConfig) -> gym.Env:
    """The evaluation environment: pixels, the goal image in the reset info, the benchmark's action repeat
    and reset options (shared with `benchmarks/sb3_policies.py`, so that every row sees the same task)."""
    import_plugins(cfg.imports)
    env = gym.make(cfg.env_id, render_mode="rgb_array")
    if cfg.action_repeat > 1:
        env = ActionRepeat(env, cfg.action_repeat)
    if cfg.reset_options:
        env = ResetOptions(env, dict(cfg.reset_options))
    if cfg.goal == "function":
        if not cfg.goal_function:
            raise ValueError("goal='function' needs goal_function='module:function' (--goal-function)")
        env = FunctionGoal(env, cfg.goal_function)
    elif cfg.goal == "offline":
        if not cfg.goal_episodes:
            raise ValueError("goal='offline' needs goal_episodes (run_planning_benchmark records them when unset)")
        env = OfflineGoals(env, cfg.goal_episodes, cfg.goal_offset, cfg.success_distance)
    # frames (and goal frames) as the recorder stored them, and the state entries the model takes
    return PixelObservations(env, cfg.frame_size or None, cfg.proprio)


def heldout_goal_episodes(cfg: PlanningBenchmarkConfig, out_dir: Path) -> Path:
    """Record (once) the held-out episodes of offline goals: random policy, reset seeds from 900000 on, the
    benchmark's action repeat as frame skip, episodes long enough for the goal offset."""
    from torchwm.envs.record import record
    from torchwm.wm.episodes import MANIFEST, read_manifest

    root = out_dir / "heldout_goals"
    have = len(read_manifest(root)["episodes"]) if (root / MANIFEST).is_file() else 0
    if have < cfg.episodes:
        record(cfg.env_id, "random", cfg.episodes - have, root, seed=HELDOUT_GOAL_SEED + have,
               frame_skip=cfg.action_repeat, imports=cfg.imports, image_size=cfg.frame_size or None,
               progress=False)  # fmt: skip
    return root


def make_mpc_agent(
    model: PlanningModel, cfg: PlanningBenchmarkConfig, space: gym.spaces.Box, planner: PlannerKind | None = None,
    context_steps: int | None = None, seed: int | None = 0,
) -> MPCAgent:  # fmt: skip
    """The MPC agent ``cfg`` describes: its first planner (or ``planner``) at its horizon, from its latent history
    (or ``context_steps``), with the model's frame history."""
    name = planner or cfg.planners[0]
    settings = replace(cfg.cem if name == "cem" else cfg.mppi, horizon=cfg.horizon)
    kind = CEM if name == "cem" else MPPI
    return MPCAgent(
        model, kind(model, space.low, space.high, settings), frame_history=model.frame_history,  # type: ignore[arg-type]
        context_steps=context_steps or cfg.context_steps, seed=seed,
    )  # fmt: skip


def run_planning_benchmark(
    checkpoint: str | Path, out_dir: str | Path, cfg: PlanningBenchmarkConfig
) -> dict[str, Any]:
    """Evaluate MPC planners (and baselines) with a trained world model; write JSON, plot and GIFs."""
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    try:
        return _run_planning_benchmark(checkpoint, out_dir, cfg)
    finally:
        torch.set_num_threads(threads)


def _run_planning_benchmark(
    checkpoint: str | Path, out_dir: str | Path, cfg: PlanningBenchmarkConfig
) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if cfg.goal == "offline" and not cfg.goal_episodes:
        cfg = replace(cfg, goal_episodes=str(heldout_goal_episodes(cfg, out)))
    model = PlanningModel(WorldModel.from_pretrained(checkpoint), compile=cfg.compile)
    env = make_benchmark_env(cfg)
    needs_goal = cfg.planners and needs_goal_image(cfg)
    if needs_goal and "goal_frame" not in env.reset(seed=cfg.seed)[1]:
        raise ValueError(
            f"{cfg.env_id}'s reset info has no 'goal_frame', so the planners have no goal image: take goals from a "
            "function of the env (--goal function --goal-function module:function) or from held-out recorded "
            "episodes (--goal offline)"
        )
    space = env.action_space
    if not isinstance(space, gym.spaces.Box):
        raise ValueError(f"the planners need a continuous (Box) action space; {cfg.env_id} has {space}")
    methods: dict[str, Any] = {}
    for name in cfg.planners:
        methods[f"mpc_{name}"] = make_mpc_agent(model, cfg, space, name)
    for steps in cfg.also_context_steps:
        first = cfg.planners[0]
        methods[f"mpc_{first}_context{steps}"] = make_mpc_agent(model, cfg, space, first, context_steps=steps)
    first_settings = cfg.cem if cfg.planners and cfg.planners[0] == "cem" else cfg.mppi
    if cfg.planners and first_settings.cost == "reward" and first_settings.terminal_value and model.discount is not None:
        # the same planner without the value beyond the horizon, on the same episodes
        off = replace(cfg, cem=replace(cfg.cem, terminal_value=False), mppi=replace(cfg.mppi, terminal_value=False))
        methods[f"mpc_{cfg.planners[0]}_no_value"] = make_mpc_agent(model, off, space, cfg.planners[0])
    if cfg.baselines:
        methods["greedy_one_step"] = greedy_one_step(
            model, space, frame_history=model.frame_history, cost=cfg.mppi.cost
        )
        methods["random"] = RandomPolicy(space, seed=cfg.seed)
    per_episode = load_goal_function(cfg.episode_options) if cfg.episode_options else None
    results: dict[str, Any] = {}
    for label, policy in methods.items():
        t0 = time.perf_counter()
        res = evaluate(policy, lambda: make_benchmark_env(cfg), cfg.episodes, cfg.seed, cfg.max_steps,
                       episode_options=per_episode, distance_key=cfg.distance_key)  # fmt: skip
        row = res.to_dict()
        row["wall_seconds"] = time.perf_counter() - t0
        results[label] = row
        print(
            f"{label:>16}: success {res.success_rate:.2f} (95% CI {res.success_ci95[0]:.2f}-{res.success_ci95[1]:.2f}), "
            f"final distance (info[{cfg.distance_key!r}]) {_maybe(res.final_distance)}, "
            f"median {res.median_ms_per_step:.1f} ms/step"
        )
    ran = {name: replace(getattr(cfg, name), horizon=cfg.horizon) for name in ("cem", "mppi")}
    summary = {
        "env_id": cfg.env_id,
        "checkpoint": str(checkpoint),
        "config": {
            **{k: v for k, v in cfg.__dict__.items() if k not in ("cem", "mppi")},
            "cem": ran["cem"].__dict__,
            "mppi": ran["mppi"].__dict__,
        },
        "planners_ran": {  # the settings each planner actually planned with
            name: {"horizon": ran[name].horizon, "num_samples": ran[name].num_samples,
                   "iterations": ran[name].iterations, "cost": ran[name].cost}
            for name in cfg.planners
        },  # fmt: skip
        "distance_key": cfg.distance_key,
        "threads": torch.get_num_threads(),
        "machine": machine_facts(torch.get_num_threads()),  # the ms above are this machine's
        "methods": results,
    }
    (out / "planning.json").write_text(json.dumps(summary, indent=2, default=str))
    plot_table(results, out / "planning.png", cfg.env_id)
    if cfg.gifs and cfg.planners:
        first = cfg.planners[0]
        for i in range(cfg.gifs):
            agent = make_mpc_agent(model, cfg, space, first)
            render_episode(agent, make_benchmark_env(cfg), cfg.seed + i, cfg.max_steps, out / f"episode_{i}")
    return summary


def needs_goal_image(cfg: PlanningBenchmarkConfig) -> bool:
    """Whether the benchmark's planners minimise a distance to a goal image (not the predicted reward)."""
    return any(getattr(cfg, name).cost != "reward" for name in cfg.planners)


def _maybe(value: float | None) -> str:
    """A number to three places, or 'n/a' where the environment reports none (no ``info[distance_key]``)."""
    return "n/a" if value is None else f"{value:.3f}"


def plot_table(results: dict[str, Any], path: Path, title: str) -> None:
    """Bar chart: success rate with its 95% interval, and median ms per step, per method (none without
    matplotlib)."""
    plt = pyplot()
    if plt is None:
        return
    names = list(results)
    rate = np.array([results[n]["success_rate"] for n in names])
    lo = np.array([results[n]["success_ci95"][0] for n in names])
    hi = np.array([results[n]["success_ci95"][1] for n in names])
    ms = [results[n]["median_ms_per_step"] for n in names]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    # Wilson bounds can sit a rounding error past the rate (0 successes: lo ~ 1e-17 > 0): clip the bars at 0.
    ax1.bar(names, rate, yerr=[np.clip(rate - lo, 0, None), np.clip(hi - rate, 0, None)], capsize=4, color="tab:blue")
    ax1.set_ylim(0, 1)
    ax1.set_ylabel("success rate (95% CI)")
    ax2.bar(names, ms, color="tab:orange")
    ax2.set_ylabel("median planning ms / step")
    for ax in (ax1, ax2):
        ax.tick_params(axis="x", rotation=20)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _beside(frame: Any, goal: np.ndarray | None) -> np.ndarray:
    """The frame (a dict observation's ``"pixels"``) and, if there is one, the goal image to its right."""
    if isinstance(frame, dict):
        frame = frame["pixels"]
    if goal is None:
        return frame
    return np.concatenate([frame, np.full((frame.shape[0], 2, 3), 255, np.uint8), goal], axis=1)


def render_episode(agent: MPCAgent, env: gym.Env, seed: int, max_steps: int, stem: Path) -> dict[str, Any]:
    """One MPC episode as ``stem.gif`` (frame | goal) and ``stem_distance.png`` (latent distances; without
    matplotlib, the GIF alone)."""
    import imageio.v3 as iio

    obs, info = env.reset(seed=seed)
    goal = info.get("goal_frame")  # None: a reward-cost planner, nothing to show beside the frame
    if goal is not None:
        agent.set_goal(goal)
    agent.record_distance = True
    frames, measured, predicted, success = [], [], [], False
    for t in range(max_steps):
        action, _ = agent.predict(obs, episode_start=np.array([t == 0]))
        assert agent.last_latent_distance is not None and agent.last_predicted_distance is not None
        measured.append(float(np.ravel(agent.last_latent_distance)[0]))
        predicted.append(float(np.ravel(agent.last_predicted_distance)[0]))
        frames.append(_beside(obs, goal))
        obs, _, terminated, truncated, info = env.step(action)
        success = bool(info.get("is_success", False))
        if terminated or truncated:
            break
    frames.append(_beside(obs, goal))
    big = [np.kron(f, np.ones((3, 3, 1), np.uint8)) for f in frames]
    iio.imwrite(f"{stem}.gif", np.stack(big), duration=80, loop=0)
    plt = pyplot()
    if plt is None:
        return {"seed": seed, "success": success, "steps": len(frames) - 1}
    fig, ax = plt.subplots(figsize=(5, 3))
    ax.plot(measured, label="latent distance to goal (encoded frame)")
    ax.plot(predicted, label="best planned cost (predicted)", linestyle="--")
    ax.set_xlabel("environment step")
    ax.set_title(f"seed {seed}: {'success' if success else 'failure'}")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(f"{stem}_distance.png", dpi=100)
    plt.close(fig)
    return {"seed": seed, "success": success, "steps": len(frames) - 1}
