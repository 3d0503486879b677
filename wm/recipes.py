"""Named world-model recipes: every stage's config of one way to train a world model, written once.

A recipe says how much data to record, how to pretrain the JEPA, how to train the world model (today in
two phases) and how to plan with the result. The demo, ``torchwm fit``, the benchmarks and the README ask
for a recipe by name (``RECIPES["two-phase"]``), so a change to it changes all of them at once; nothing
copies its numbers. A world model trained by a recipe records the recipe's name and its planning defaults
in its checkpoint, so that ``torchwm bench planning --checkpoint DIR`` needs no other flag.

>>> recipe = get_recipe("two-phase")
>>> recipe.frame_skip, recipe.planning.planner, recipe.planning.num_samples, recipe.planning.iterations
(4, 'mppi', 32, 2)
>>> jepa = recipe.jepa_config("runs/x/episodes", "runs/x/jepa")
>>> jepa.dataset, jepa.encoder, jepa.max_steps
('rollouts', 'spatial', 300)
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from torchwm.wm.config import EncoderKind, JEPAConfig
from torchwm.wm.config_base import Config, PositiveFloat, PositiveInt
from torchwm.wm.wm_trainer import WorldModelConfig
from torchwm.wm.world_model import DynamicsShape, Pooling

PlannerKind = Literal["cem", "mppi"]


@dataclass(frozen=True)
class PlanningDefaults(Config):
    """How a recipe's world models plan: the planner and its budget (a consumer may override each)."""

    planner: PlannerKind = "mppi"
    """The recommended planner."""
    num_samples: PositiveInt = 32
    """Candidate action sequences per iteration, for every planner (elites: an eighth of them for MPPI, a
    tenth for CEM). 32, 50 until 2026-12-02: on the suite's six TwoRooms and PointMass fits MPPI 32 x 2 planned
    as well or better on the suite's episodes (TwoRooms 0.89 against 0.87, PointMass 0.89 against 0.87) and on
    50 fresh ones from reset seed 2000 (0.93 against 0.89, 0.89 against 0.89), in 0.64 of the arithmetic:
    `benchmarks/results/planning_*_mppi_32x2_suite_seeds.json`, `planning_*_mppi_{32,50}x2_seed2000_seeds.json`.
    More samples planned worse (100 and 200: 0.81 on TwoRooms), as if a larger draw found more of the candidates
    whose predicted latents err toward the goal."""
    iterations: PositiveInt = 2
    """Refinement rounds per planning call. With 50 samples, MPPI 50 x 2 planned as well as 100 x 6 on TwoRooms
    over three training seeds (mean success 0.67 against 0.65, 50 episodes each) at a fifth of the time (29 against
    150 ms a call on one thread): `benchmarks/results/planning_tworooms_mppi_50x2_seeds.json`. One round halves
    the call (13.8 against 27.5 ms) but planned worse on the suite's six fits (TwoRooms 0.82 against 0.87,
    PointMass 0.78 against 0.87): `benchmarks/results/planning_*_mppi_50x1_seeds.json`."""
    horizon: PositiveInt = 8
    """Model steps planned ahead (each ``frame_skip`` environment steps). Horizon 6 (three quarters of the FLOPs)
    planned worse on TwoRooms, 0.85 against 0.91 over three fits of one machine, the same episodes (PointMass 0.88
    against 0.85): `benchmarks/results/planning_*_mppi_50x2_h6_avx2_seeds.json`."""
    context_steps: PositiveInt = 1
    """Latent steps a planned rollout starts from (the current one and those before it, with the actions taken
    between them). One: on this recipe's three seeds of TwoRooms and PointMass a 3-step history planned no
    better (mean success 0.83 against 0.87, 0.86 against 0.87, the same episodes: `benchmarks/results/suite.json`),
    though with twice the training (`two-phase-long`) it planned better on 4 of 6 fits
    (`benchmarks/results/suite_full_budget.json`); the suite reports both."""
    max_steps: PositiveInt = 25
    """Agent steps (planning calls) an evaluation episode may take."""



@dataclass(frozen=True)
class Recipe(Config):
    """Every stage of one way to train a world model for an environment, with its budget."""

    RUN_NEUTRAL: ClassVar[frozenset[str]] = Config.RUN_NEUTRAL | {"planning"}
    """The planner's defaults travel with the checkpoint but do not change the training."""

    name: str
    """Name the recipe is registered and recorded under."""
    episodes: PositiveInt = 300
    """Random-policy episodes recorded for training."""
    frame_skip: PositiveInt = 4
    """Environment steps per recorded step, per model step and per planned action."""
    image_size: PositiveInt = 64
    """Side of the recorded frames (resized when recording: the tiny JEPA sees 64 x 64)."""
    jepa_steps: PositiveInt = 300
    """Optimiser steps of JEPA pretraining (the tiny spatial preset, pairs of consecutive frames)."""
    joint_steps: PositiveInt = 400
    """Phase 1: steps fine-tuning the encoder with the dynamics into a smooth latent (PLDM-style)."""
    dynamics_steps: PositiveInt = 1500
    """Phase 2: steps training the dynamics alone on the fixed latent of phase 1. The three budgets were 400,
    600 and 3000 until 2026-12-01 (now the recipe ``two-phase-long``): with the patch-pooling head half of each
    plans as well from one latent step over three training seeds (TwoRooms 0.87 against 0.85, PointMass 0.87
    against 0.90: `benchmarks/results/suite.json`, `suite_full_budget.json`) in 4.1-5.7 minutes of recording
    and training against 8.0-9.0, which puts the demo under 5 minutes."""
    width: PositiveInt = 64
    """Width of the dynamics predictor (both phases)."""
    action_token: bool = True
    """The action as a token of its own in each step (True) or added to every latent token (False, DINO-WM's
    conditioning: 4 tokens a step instead of 5). Kept True: on seed 0's phase-1 latent the cheaper shapes
    planned worse (MPPI 50 x 2 success 0.32-0.36 against 0.50, `benchmarks/results/dynamics_shapes.json`)."""
    mlp_ratio: PositiveFloat = 4.0
    """Hidden width of the dynamics' MLPs over ``width`` (2 was measured with the cheaper shapes above)."""
    pooling: Pooling = "patches"
    """How the latent head pools each region of patch tokens (`torchwm.wm.world_model.LatentHead`): ``patches``
    keeps where in a region the agent is. With region means (``mean``, the recipe until 2026-12-01) the latent
    distance to a goal was flat across the goal's quadrant: with the TRUE dynamics, planning on seed 0's latent
    reached 0.32 of PointMass goals, against 1.00 with this pooling and 0.98 by the true position
    (`benchmarks/results/oracle_planning*.json`)."""
    encoder: EncoderKind = "spatial"
    """The JEPA encoder of every stage: ``spatial`` (each frame on its own: one step's latent shows no motion,
    the dynamics' latent history does) or ``temporal`` (tubelets of 2 frames over the last ``frame_history``
    frames, pretrained with temporal masking: each step's latent sees the recent motion itself)."""
    frame_history: PositiveInt = 4
    """Frames a temporal encoder sees for one step (its clip; a multiple of its tubelets of 2)."""
    planning: PlanningDefaults = field(default_factory=PlanningDefaults)
    """How its world models plan."""

    def jepa_config(self, episodes_dir: str | Path, out_dir: str | Path, seed: int = 0) -> JEPAConfig:
        """Pretraining: the tiny JEPA, a per-frame (spatial) encoder on pairs of consecutive recorded frames, or
        a temporal one on clips of ``frame_history`` frames whose last tubelet is predicted from the others."""
        if self.encoder == "temporal":
            clip: dict[str, Any] = {"encoder": "temporal", "tubelet_size": 2, "num_frames": self.frame_history,
                                    "masking": "temporal", "predict_horizon": 1}  # fmt: skip
        else:
            clip = {"encoder": "spatial", "tubelet_size": 1, "num_frames": 2}
        return JEPAConfig.preset(
            "tiny",
            dataset="rollouts",
            root_path=str(episodes_dir),
            **clip,
            frame_step=1,
            max_steps=self.jepa_steps,
            num_workers=1,  # decoding in a worker: the step waited 22% of its time for data without it, 5% with
            seed=seed,
            output_dir=str(out_dir),
            checkpoint_interval=max(self.jepa_steps // 2, 1),
        )

    def joint_config(
        self, episodes_dir: str | Path, jepa_dir: str | Path, out_dir: str | Path, seed: int = 0
    ) -> WorldModelConfig:
        """Phase 1: the JEPA encoder fine-tuned with the dynamics on short sequences, held apart from collapse
        by a strong variance term and smooth in time, so that latent distance follows distance in the world.
        Targets come from the online weights (EMA momentum 0: with an EMA target the online input and the
        target output spaces drift apart and rollouts explode)."""
        return WorldModelConfig(
            root_path=str(episodes_dir),
            encoder_checkpoint=str(jepa_dir),
            freeze_encoder=False,
            seq_len=4,
            predict_horizon=3,
            batch_size=16,
            # num_workers stays 0: a worker cut the step's data wait from 15% to 1%, but on 2 cores phase 1 took
            # longer (179 s in the demo against 139 s inline, other stages ~15% slower that day): the decoder
            # takes the core the step needs. Worth 1 where there are cores to spare (same batches either way).
            var_weight=10.0,
            smooth_weight=2.0,
            ema_start=0.0,
            ema_end=0.0,
            shape=self.shape,
            steps=self.joint_steps,
            seed=seed,
            recipe=self.name,
            output_dir=str(out_dir),
            checkpoint_interval=max(self.joint_steps // 2, 1),
        )

    def dynamics_config(
        self, episodes_dir: str | Path, joint_dir: str | Path, out_dir: str | Path, seed: int = 0
    ) -> WorldModelConfig:
        """Phase 2: the dynamics alone, on the encoder and latent head of phase 1 (which stay fixed): with the
        latent no longer moving, the dynamics learn to use the action."""
        return WorldModelConfig(
            root_path=str(episodes_dir),
            encoder_checkpoint=str(joint_dir),
            shape=self.shape,
            steps=self.dynamics_steps,
            seed=seed,
            recipe=self.name,
            output_dir=str(out_dir),
            checkpoint_interval=max(self.dynamics_steps // 2, 1),
        )

    @property
    def shape(self) -> DynamicsShape:
        """The world model's shape in both phases (phase 2 reuses phase 1's latent head, so they must agree)."""
        return DynamicsShape(
            width=self.width, action_token=self.action_token, mlp_ratio=self.mlp_ratio, pooling=self.pooling
        )

    def scaled(self, **budget: Any) -> Recipe:
        """The same recipe with other budgets (``episodes``, ``jepa_steps``, ...), under the same name."""
        return dataclasses.replace(self, **budget)


RECIPES: dict[str, Recipe] = {}
"""Every registered recipe by name."""


def register_recipe(recipe: Recipe) -> Recipe:
    """Add a recipe under its name (a second recipe of the same name is refused)."""
    if recipe.name in RECIPES:
        raise ValueError(f"a recipe named {recipe.name!r} is registered already")
    RECIPES[recipe.name] = recipe
    return recipe


def get_recipe(name: str) -> Recipe:
    """The recipe registered under ``name``; the error lists the known names."""
    try:
        return RECIPES[name]
    except KeyError:
        raise ValueError(f"no recipe named {name!r}; known recipes: {sorted(RECIPES)}") from None


register_recipe(Recipe("two-phase"))
register_recipe(
    Recipe("two-phase-long", jepa_steps=400, joint_steps=600, dynamics_steps=3000,
           planning=PlanningDefaults(context_steps=3))  # fmt: skip
)
"""``two-phase-long``: twice the training (the two-phase budget until 2026-12-01, 8-10 minutes a fit on 2 cores)
planning from a 3-step latent history, which this longer training uses better: TwoRooms 0.89 and PointMass 0.95
over three seeds each (`benchmarks/results/suite_full_budget.json`, its ``value_context3`` column)."""
register_recipe(Recipe("two-phase-narrow", mlp_ratio=2.0, planning=PlanningDefaults(num_samples=50, context_steps=3)))
"""``two-phase-narrow``: the two-phase recipe with dynamics MLPs half as wide (hidden 2 x width, not 4 x), for
planning in real time: the MLPs are two thirds of a planning call's arithmetic, so a call costs 0.72 of the FLOPs
(0.61 GFLOP with its history against 0.82); in alternating rounds its call took 0.86 of two-phase's eager one,
0.64 compiled (`benchmarks/results/planning_speed_amd512_vs_narrow.json`).
It plans from a 3-step latent history: from one step PointMass fell to 0.77 (0.72-0.84) against two-phase's 0.87
over three seeds; from three it gave TwoRooms 0.90 and PointMass 0.85 against two-phase's one-step 0.87 and 0.87
(`benchmarks/results/suite_amd512_narrow.json`, chosen on those same episodes). The history costs a call little:
it passes through the dynamics once per call, not once per candidate. Measured with MPPI 50 x 2, which it keeps
(the 32 samples of `PlanningDefaults` were not measured on it)."""
register_recipe(Recipe("two-phase-temporal", encoder="temporal"))
"""``two-phase-temporal``: the same stages and budgets with a temporal encoder (each step's latent from the last 4
frames, in tubelets of 2) instead of a latent history: the alternative the suite measures it against."""
register_recipe(
    Recipe(
        "two-phase-smoke",
        episodes=8,
        jepa_steps=5,
        joint_steps=5,
        dynamics_steps=5,
        planning=PlanningDefaults(num_samples=16, iterations=1, max_steps=5),
    )
)
"""``two-phase-smoke``: the same stages on a toy budget, to check that a pipeline runs (not a result)."""
