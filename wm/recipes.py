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
from typing import Any, ClassVar

from torchwm.wm.config import EncoderKind, JEPAConfig
from torchwm.wm.config_base import Config, PositiveFloat, PositiveInt
from torchwm.wm.planning_spec import PlanningDefaults
from torchwm.wm.wm_trainer import WorldModelConfig
from torchwm.wm.world_model import DynamicsShape, Pooling


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
    """Phase 2: steps training the dynamics alone on the fixed latent of phase 1."""
    width: PositiveInt = 64
    """Width of the dynamics predictor (both phases)."""
    action_token: bool = True
    """The action as a token of its own in each step (True) or added to every latent token (False, DINO-WM's
    conditioning: 4 tokens a step instead of 5)."""
    mlp_ratio: PositiveFloat = 4.0
    """Hidden width of the dynamics' MLPs over ``width``."""
    pooling: Pooling = "patches"
    """How the latent head pools each region of patch tokens (`torchwm.wm.world_model.LatentHead`): ``patches``
    keeps where in a region the agent is, ``mean`` averages the region."""
    encoder: EncoderKind = "spatial"
    """The JEPA encoder of every stage: ``spatial`` (each frame on its own: one step's latent shows no motion,
    the dynamics' latent history does) or ``temporal`` (tubelets of 2 frames over the last ``frame_history``
    frames, pretrained with temporal masking: each step's latent sees the recent motion itself)."""
    frame_history: PositiveInt = 4
    """Frames a temporal encoder sees for one step (its clip; a multiple of its tubelets of 2)."""
    value: bool = False
    """Learn a value of the latents by temporal differences from the recorded rewards beside the reward head (both
    phases); the planners' reward cost adds it beyond the horizon."""
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
            planning=self.planning,
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
            planning=self.planning,
            output_dir=str(out_dir),
            checkpoint_interval=max(self.dynamics_steps // 2, 1),
        )

    @property
    def shape(self) -> DynamicsShape:
        """The world model's shape in both phases (phase 2 reuses phase 1's latent head, so they must agree)."""
        return DynamicsShape(
            width=self.width, action_token=self.action_token, mlp_ratio=self.mlp_ratio, pooling=self.pooling,
            value_head=self.value,
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
"""``two-phase-long``: twice the training of ``two-phase`` (8-10 minutes a fit on 2 cores), planning from a 3-step
latent history."""
register_recipe(Recipe("two-phase-narrow", mlp_ratio=2.0, planning=PlanningDefaults(num_samples=50, context_steps=3)))
"""``two-phase-narrow``: the two-phase recipe with dynamics MLPs half as wide (hidden 2 x width, not 4 x), planning
with MPPI 50 x 2 from a 3-step latent history: 0.72 of a planning call's arithmetic."""
register_recipe(Recipe("two-phase-temporal", encoder="temporal"))
"""``two-phase-temporal``: the same stages and budgets with a temporal encoder (each step's latent from the last 4
frames, in tubelets of 2) instead of a latent history: the alternative the suite measures it against."""
register_recipe(Recipe("two-phase-value", value=True))
"""``two-phase-value``: the two-phase recipe with a value head (expectile TD on the recorded rewards), which the
reward cost adds beyond the planning horizon."""
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
