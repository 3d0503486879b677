"""Planners (CEM, MPPI), the MPC agent, closed-loop evaluation, stable-baselines3 helpers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from agents.policy_config import PolicyTrainingConfig
    from agents.sb3 import JEPACombinedExtractor, JEPAFeaturesExtractor, LatentPolicyPrior
    from agents.train_policy import train_policy
    from agents.vec_env import SB3VecEnv, latent_vector_env

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
    "JEPACombinedExtractor": "agents.sb3",
    "JEPAFeaturesExtractor": "agents.sb3",
    "LatentPolicyPrior": "agents.sb3",
    "PolicyTrainingConfig": "agents.policy_config",
    "SB3VecEnv": "agents.vec_env",
    "latent_vector_env": "agents.vec_env",
    "train_policy": "agents.train_policy",
}
"""Names imported on first use: they import stable-baselines3, which the planners and the command line's
option parsing should not wait for."""


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'agents' has no attribute {name!r}")
