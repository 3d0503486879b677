"""Planners (CEM, MPPI), the MPC agent, closed-loop evaluation, stable-baselines3 helpers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from torchwm.agents.policy_config import PolicyTrainingConfig
    from torchwm.agents.sb3 import JEPACombinedExtractor, JEPAFeaturesExtractor, LatentPolicyPrior
    from torchwm.agents.train_policy import train_policy
    from torchwm.agents.vec_env import SB3VecEnv, latent_vector_env

__all__ = [
    "JEPACombinedExtractor",
    "JEPAFeaturesExtractor",
    "LatentPolicyPrior",
    "PolicyTrainingConfig",
    "SB3VecEnv",
    "latent_vector_env",
    "train_policy",
]

_LAZY = {
    "JEPACombinedExtractor": "torchwm.agents.sb3",
    "JEPAFeaturesExtractor": "torchwm.agents.sb3",
    "LatentPolicyPrior": "torchwm.agents.sb3",
    "PolicyTrainingConfig": "torchwm.agents.policy_config",
    "SB3VecEnv": "torchwm.agents.vec_env",
    "latent_vector_env": "torchwm.agents.vec_env",
    "train_policy": "torchwm.agents.train_policy",
}
"""Names imported on first use: they import stable-baselines3, which the planners and the command line's
option parsing should not wait for."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torchwm.agents' has no attribute {name!r}")
