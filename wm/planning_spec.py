"""`PlanningDefaults`: how a world model plans, one typed spec from the recipe through the checkpoint to the
planner.

A recipe names its spec (`torchwm.wm.recipes.Recipe.planning`), the world-model trainer writes it into every
checkpoint it saves (`torchwm.wm.world_model.DataFacts.planning`), and the planning benchmark and the MPC agent
read it back from there, so ``torchwm bench planning --checkpoint DIR`` plans as the recipe says with no other
flag. Every field can be overridden by the consumer. Why each default is what it is: the documentation's
decisions page.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from torchwm.wm.config_base import Config, PositiveInt

PlannerKind = Literal["cem", "mppi"]


@dataclass(frozen=True)
class PlanningDefaults(Config):
    """How a world model plans: the planner and its budget (a consumer may override each)."""

    planner: PlannerKind = "mppi"
    """The recommended planner."""
    num_samples: PositiveInt = 32
    """Candidate action sequences per iteration, for every planner (elites: an eighth of them for MPPI, a
    tenth for CEM)."""
    iterations: PositiveInt = 2
    """Refinement rounds per planning call."""
    horizon: PositiveInt = 8
    """Model steps planned ahead (each ``frame_skip`` environment steps)."""
    context_steps: PositiveInt = 1
    """Latent steps a planned rollout starts from (the current one and those before it, with the actions taken
    between them)."""
    max_steps: PositiveInt = 25
    """Agent steps (planning calls) an evaluation episode may take."""


__all__ = ["PlannerKind", "PlanningDefaults"]
