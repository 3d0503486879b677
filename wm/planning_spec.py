"""`PlanningDefaults`: how a world model plans, one typed spec from the recipe through the checkpoint to the
planner.

A recipe names its spec (`torchwm.wm.recipes.Recipe.planning`), the world-model trainer writes it into every
checkpoint it saves (`torchwm.wm.world_model.DataFacts.planning`), and the planning benchmark and the MPC agent
read it back from there, so ``torchwm bench planning --checkpoint DIR`` plans as the recipe says with no other
flag. Every field can be overridden by the consumer. Why each default is what it is: the documentation's
decisions page.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Literal

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
    iterations: PositiveInt | None = 2
    """Refinement rounds per planning call (None: each planner's own, as its planner config sets it)."""
    horizon: PositiveInt = 8
    """Model steps planned ahead (each ``frame_skip`` environment steps)."""
    context_steps: PositiveInt = 1
    """Latent steps a planned rollout starts from (the current one and those before it, with the actions taken
    between them)."""
    max_steps: PositiveInt = 25
    """Agent steps (planning calls) an evaluation episode may take."""


def read_planning(recorded: dict[str, Any] | None) -> PlanningDefaults | None:
    """The spec a checkpoint records (its ``to_dict()``), as a `PlanningDefaults`; None where it records none
    (``null``, or an empty mapping).

    A field missing from the record takes its default, except ``iterations``: a record without it gets None
    (each planner's own rounds, how such a spec plans). Entries that are no field of `PlanningDefaults` are
    dropped."""
    if not recorded:
        return None
    known = {f.name for f in dataclasses.fields(PlanningDefaults)}
    fields = {k: v for k, v in recorded.items() if k in known}
    return PlanningDefaults.from_dict({"iterations": None, **fields})


__all__ = ["PlannerKind", "PlanningDefaults", "read_planning"]
