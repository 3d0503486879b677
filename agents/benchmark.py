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
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

import gymnasium as gym
import numpy as np
import torch
from torchwm.agents.evaluate import RandomPolicy, evaluate
from torchwm.agents.latent_model import PlanningModel
from torchwm.agents.mpc import MPCAgent, greedy_one_step
from torchwm.agents.planners import CEM, MPPI, CEMConfig, CostKind, CostOn, MPPIConfig, SamplingPlanner
from torchwm.agents.plotting import pyplot
from torchwm.envs.action_repeat import ActionRepeat
from torchwm.envs.goals import FunctionGoal, OfflineGoals, load_goal_function
from torchwm.envs.pixels import PixelObservations
from torchwm.envs.registration import TWO_ROOMS_DOOR_ID, TWO_ROOMS_ID
from torchwm.envs.reset_options import ResetOptions
from torchwm.envs.resolve import import_plugins
from torchwm.wm.checkpoint import read_config, resolve_checkpoint
from torchwm.wm.config_base import Config, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.machine import machine_facts
from torchwm.wm.world_model import DataFacts, WorldModel

PlannerName = Literal["cem", "mppi"]
GoalKind = Literal["info", "function", "offline"]

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
    planners: tuple[PlannerName, ...] = ("cem", "mppi")
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
    planners: tuple[PlannerName, ...] | None = None
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
        """The checkpoint's evaluation with this job's fields in place of its defaults."""
        direct = ("episodes", "max_steps", "seed", "planners", "horizon", "context_steps", "action_repeat", "gifs",
                  "threads", "baselines", "compile", "goal", "goal_function", "goal_episodes", "goal_offset",
                  "success_distance", "episode_options", "distance_key")  # fmt: skip
        overrides: dict[str, Any] = {k: getattr(self, k) for k in direct if getattr(self, k) is not None}
        if self.env is not None:
            overrides["env_id"] = self.env
        if self.imports:
            overrides["imports"] = self.imports
        if self.different_rooms is not None:
            overrides["reset_options"] = (("different_rooms", True),) if self.different_rooms else ()
        cfg = benchmark_config_for(self.checkpoint, **overrides)
        if any(v is not None for v in (self.samples, self.elites, self.iterations, self.cost_on, self.cost)):
            # the checkpoint's rounds stay unless given (--samples alone changes the samples alone)
            cfg = with_budget(
                cfg, self.samples or cfg.mppi.num_samples, self.elites or 0, self.iterations or 0,
                cost_on=self.cost_on or cfg.mppi.cost_on, cost=self.cost or cfg.mppi.cost,
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


def planner_configs(
    num_samples: int, cost_on: CostOn = "sum", num_elites: int = 0, iterations: int = 0,
    cost: CostKind = "latent_l2",
) -> tuple[CEMConfig, MPPIConfig]:
    """CEM and MPPI settings for a sample budget: elites an eighth of the samples for MPPI and a tenth for
    CEM unless ``num_elites`` is given; each planner's default iterations unless ``iterations`` is."""
    cem = CEMConfig(
        num_samples=num_samples, num_elites=num_elites or max(num_samples // 10, 2), cost_on=cost_on, cost=cost
    )
    mppi = MPPIConfig(
        num_samples=num_samples, num_elites=num_elites or max(num_samples // 8, 2), cost_on=cost_on, cost=cost
    )
    if iterations:
        cem, mppi = replace(cem, iterations=iterations), replace(mppi, iterations=iterations)
    return cem, mppi


def with_budget(
    cfg: PlanningBenchmarkConfig, num_samples: int, num_elites: int = 0, iterations: int = 0, **fields: Any
) -> PlanningBenchmarkConfig:
    """``cfg`` with both planners given ``num_samples`` candidates, ``num_elites`` elites (0: derived from the
    samples as `planner_configs` does), ``iterations`` rounds (0: each keeps its own) and any other planner
    ``fields``; every other setting of the planners (their first round, temperature, ...) stays as it was."""
    cem_elites, mppi_elites = (c.num_elites for c in planner_configs(num_samples, num_elites=num_elites))
    rounds: dict[str, Any] = {"iterations": iterations} if iterations else {}
    return replace(
        cfg,
        cem=replace(cfg.cem, num_samples=num_samples, num_elites=cem_elites, **rounds, **fields),
        mppi=replace(cfg.mppi, num_samples=num_samples, num_elites=mppi_elites, **rounds, **fields),
    )


def planning_fields(planning: dict[str, Any]) -> dict[str, Any]:
    """`PlanningBenchmarkConfig` fields of a recipe's planning defaults (`PlanningDefaults.to_dict()`, as a
    checkpoint records them): its planner, sample budget, rounds, horizon, step budget and latent history."""
    cem, mppi = planner_configs(int(planning["num_samples"]), iterations=int(planning.get("iterations", 0)))
    return {
        "planners": (planning["planner"],), "horizon": int(planning["horizon"]), "max_steps": int(planning["max_steps"]),
        "cem": cem, "mppi": mppi, "context_steps": int(planning.get("context_steps", 1)),
    }  # fmt: skip


def benchmark_config_for(checkpoint: str | Path, **overrides: Any) -> PlanningBenchmarkConfig:
    """The evaluation a world-model checkpoint asks for: its environment, its frame skip as the action repeat,
    its recipe's planner, sample budget, horizon and step budget, and the environment's default reset
    options; any field of `PlanningBenchmarkConfig` in ``overrides`` replaces what the checkpoint says
    (``imports`` add to the checkpoint's)."""
    data = DataFacts.from_checkpoint_config(read_config(resolve_checkpoint(checkpoint)))
    planning = data.planning
    env_id = overrides.get("env_id", data.env_id or PlanningBenchmarkConfig.env_id)
    fields: dict[str, Any] = {"env_id": env_id, "action_repeat": data.frame_skip, "imports": data.imports}
    if data.frame_shape is not None:
        fields["frame_size"] = int(data.frame_shape[0])
    fields["reset_options"] = DEFAULT_RESET_OPTIONS.get(env_id, ())
    fields["proprio"] = data.proprio
    if planning:
        fields.update(planning_fields(planning))
    extra_imports = overrides.pop("imports", ())
    fields["imports"] = tuple(dict.fromkeys((*data.imports, *extra_imports)))  # the checkpoint's, then more
    fields.update(overrides)
    return PlanningBenchmarkConfig(**fields)


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


def _planner(
    name: PlannerName, model: PlanningModel, space: gym.spaces.Box, cfg: PlanningBenchmarkConfig
) -> SamplingPlanner:
    if name == "cem":
        return CEM(model, space.low, space.high, replace(cfg.cem, horizon=cfg.horizon))
    return MPPI(model, space.low, space.high, replace(cfg.mppi, horizon=cfg.horizon))


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
        methods[f"mpc_{name}"] = MPCAgent(
            model, _planner(name, model, space, cfg), frame_history=model.frame_history,
            context_steps=cfg.context_steps,
        )  # fmt: skip
    for steps in cfg.also_context_steps:
        first = cfg.planners[0]
        methods[f"mpc_{first}_context{steps}"] = MPCAgent(
            model, _planner(first, model, space, cfg), frame_history=model.frame_history, context_steps=steps
        )
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
            agent = MPCAgent(model, _planner(first, model, space, cfg), frame_history=model.frame_history,
                             context_steps=cfg.context_steps)  # fmt: skip
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
