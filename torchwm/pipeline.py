"""``torchwm fit``: from an environment id to a trained world model with a named recipe, resumably.

record random episodes -> pretrain the JEPA -> phase 1 (encoder with the dynamics) -> phase 2 (dynamics
alone), each stage into its own folder of ``out_dir``. Every stage continues where a killed run stopped
(the recorder appends the missing episodes, the trainers resume from their last checkpoint), and a stage
whose output is complete is skipped, so running the same command again finishes the job or does nothing.
The run folder records what it holds (environment, imports, recipe, seed, ...; `torchwm.wm.runs`): a command
that asks for another run there is refused with the differences named, and one process writes it at a time.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gymnasium as gym

from torchwm.envs.record import record
from torchwm.wm.checkpoint import latest_checkpoint
from torchwm.wm.config_base import Config, NonNegInt, PositiveInt
from torchwm.wm.episodes import MANIFEST, read_manifest
from torchwm.wm.recipes import Recipe, get_recipe
from torchwm.wm.runs import Overwrite, open_run
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_trainer import WorldModelTrainer

TRAINING_SEED_STRIDE = 10_000
"""Training seed s records its episodes from reset seed ``TRAINING_SEED_STRIDE * (s + 1)`` on, so no recipe
(of fewer than 10,000 episodes) ever records an episode the planning benchmark evaluates (seeds 1000+50)."""


@dataclass(frozen=True)
class FitJob(Config):
    """``torchwm fit``: an environment, a run folder and a named recipe."""

    env: str = ""
    """Gymnasium id of an environment that gives pixels, e.g. ``torchwm/TwoRooms-v0``."""
    out: str = ""
    """Run folder (a killed run continues where it stopped)."""
    recipe: str = "two-phase"
    """Named recipe (`torchwm.wm.recipes.RECIPES`)."""
    seed: NonNegInt = 0
    """Training seed."""
    num_envs: PositiveInt = 4
    """Sub-environments of the recorder."""
    imports: tuple[str, ...] = ()
    """Modules to import first, which register environments (``--import my_pkg.envs``); the checkpoint
    records them, so later commands need no import again."""
    max_steps: NonNegInt = 0
    """Cut recorded episodes at this many agent steps (0: the environment's own limit; needed for an
    environment without one)."""
    proprio: tuple[int, ...] = ()
    """Entries of the recorded state vector the world model also takes as proprioception (``--proprio 2
    --proprio 3``); empty: pixels only."""
    overwrite: Overwrite = "never"
    """An existing run folder that holds another run: ``never`` refuses it (a matching run continues), ``move``
    moves it aside, ``delete`` deletes it."""
    progress: bool = True
    """Show tqdm progress bars."""

    def check(self) -> None:
        for name in ("env", "out"):
            if not getattr(self, name):
                self.fail(name, getattr(self, name), f"a value (--{name})")
        get_recipe(self.recipe)  # an unknown name lists the known ones


@dataclass
class FitResult:
    """Where each stage wrote, and how long each took in this call (0 for a stage found complete)."""

    world_model: str
    episodes: str
    jepa: str
    joint: str
    recipe: str
    seed: int
    seconds: dict[str, float] = field(default_factory=dict)


def first_recording_seed(seed: int) -> int:
    """The reset seed of the first recorded episode for training seed ``seed``."""
    return TRAINING_SEED_STRIDE * (seed + 1)


def stage_finished(run_dir: Path, steps: int) -> bool:
    """Whether a trainer's run directory holds its final checkpoint (``step_<steps>``)."""
    latest = latest_checkpoint(run_dir)
    return latest is not None and latest.name == f"step_{steps:08d}"


def recorded_episodes(episodes_dir: Path) -> int:
    """Episodes an episode folder lists (0 for a folder without a manifest)."""
    return len(read_manifest(episodes_dir)["episodes"]) if (episodes_dir / MANIFEST).is_file() else 0


def fit(
    env: str | Callable[[], gym.Env],
    out_dir: str | Path = "runs/fit",
    recipe: str | Recipe = "two-phase",
    *,
    seed: int = 0,
    num_envs: int = 4,
    progress: bool = True,
    imports: Sequence[str] = (),
    max_steps: int | None = None,
    proprio: Sequence[int] = (),
    overwrite: Overwrite = "never",
) -> FitResult:
    """Train a world model for the environment ``env`` (a gymnasium id) with a named recipe.

    Args:
        env: gymnasium id of an environment that gives pixels (observations or ``rgb_array`` renders), or a
            function that makes one.
        out_dir: folder of the run: ``episodes/``, ``jepa/``, ``world_model_joint/``, ``world_model/``.
        recipe: a registered recipe's name (`torchwm.wm.recipes.RECIPES`) or a `Recipe`.
        seed: training seed (initialisation, batches, and which episodes are recorded).
        num_envs: sub-environments the recorder steps together.
        progress: tqdm progress bars.
        imports: modules that register the environment, imported first (also ``module:EnvId``).
        max_steps: cut recorded episodes at this many agent steps (for an environment without a step limit).
        proprio: entries of the recorded state the world model takes as proprioception (both phases).
        overwrite: ``out_dir`` holding another run (another environment, recipe, seed, ...) is refused with
            ``never``; ``move`` moves it aside and ``delete`` deletes it before starting afresh.

    Returns:
        The stages' folders (``world_model`` is the checkpoint to plan with) and their wall times.
    """
    r = get_recipe(recipe) if isinstance(recipe, str) else recipe
    env_id = env if isinstance(env, str) else getattr(env, "__qualname__", repr(env))
    identity = {"env": env_id, "imports": list(imports), "recipe": r.run_identity(), "seed": seed,
                "max_steps": max_steps, "proprio": list(proprio)}  # fmt: skip
    with open_run(out_dir, "fit", identity, overwrite=overwrite):
        result = fit_stages(env, Path(out_dir), r, seed, num_envs, progress, imports, max_steps, proprio)
        (Path(out_dir) / "fit.json").write_text(json.dumps({"env_id": env_id, **asdict(result)}, indent=2) + "\n")
    return result


def fit_stages(
    env: str | Callable[[], gym.Env], out: Path, r: Recipe, seed: int, num_envs: int, progress: bool,
    imports: Sequence[str], max_steps: int | None, proprio: Sequence[int],
) -> FitResult:  # fmt: skip
    """Record, pretrain and train both world-model phases into ``out``, skipping the stages found complete."""
    dirs = {name: out / name for name in ("episodes", "jepa", "world_model_joint", "world_model")}
    seconds: dict[str, float] = {}

    t0 = time.perf_counter()
    have = recorded_episodes(dirs["episodes"])
    if have < r.episodes:
        record(
            env, "random", r.episodes - have, dirs["episodes"], num_envs=num_envs,
            seed=first_recording_seed(seed), frame_skip=r.frame_skip, progress=progress, imports=imports,
            max_steps=max_steps, image_size=r.image_size,
        )  # fmt: skip
    seconds["record"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    if not stage_finished(dirs["jepa"], r.jepa_steps):
        JEPAAgent(replace(r.jepa_config(dirs["episodes"], dirs["jepa"], seed=seed), progress=progress)).train()
    seconds["pretrain"] = time.perf_counter() - t0

    for stage, make in (("world_model_joint", r.joint_config), ("world_model", r.dynamics_config)):
        t0 = time.perf_counter()
        source = dirs["jepa"] if stage == "world_model_joint" else dirs["world_model_joint"]
        wm_cfg = replace(make(dirs["episodes"], source, dirs[stage], seed=seed), progress=progress,
                         proprio=tuple(proprio))  # fmt: skip
        if not stage_finished(dirs[stage], wm_cfg.steps):
            WorldModelTrainer(wm_cfg).run()
        seconds[stage] = time.perf_counter() - t0

    return FitResult(
        world_model=str(dirs["world_model"]), episodes=str(dirs["episodes"]), jepa=str(dirs["jepa"]),
        joint=str(dirs["world_model_joint"]), recipe=r.name, seed=seed, seconds=seconds,
    )  # fmt: skip
