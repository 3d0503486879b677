"""torchwm: video world models for model-based RL.

One import package. Its subpackages are the layers of the library (``torchwm.wm``: model, data and
training; ``torchwm.envs``: the gymnasium side; ``torchwm.agents``: planners, evaluation, SB3); this
module is the public face, the curated names a user needs:

>>> from torchwm import JEPAAgent, JEPAConfig
>>> cfg = JEPAConfig.preset("tiny")
>>> cfg.image_size, cfg.embed_dim
(64, 128)

Importing ``torchwm`` registers the built-in environments with gymnasium (``torchwm/TwoRooms-v0``,
``torchwm/PointMass-v0``) and nothing else: every public name is imported on first use, so
``import torchwm`` does not wait for torch or stable-baselines3.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from torchwm.envs import registration as _registration  # noqa: F401  (gymnasium ids of the built-in envs)

if TYPE_CHECKING:
    from torchwm.agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
    from torchwm.agents.evaluate import EvalResult, RandomPolicy, evaluate
    from torchwm.agents.mpc import MPCAgent
    from torchwm.agents.planners import CEM, MPPI, CEMConfig, MPPIConfig, PlannerConfig
    from torchwm.agents.policy_config import PolicyTrainingConfig
    from torchwm.agents.sb3 import JEPACombinedExtractor, JEPAFeaturesExtractor
    from torchwm.agents.train_policy import train_policy
    from torchwm.bench.suite import SuiteJob, run_suite
    from torchwm.envs.action_repeat import ActionRepeat
    from torchwm.envs.dream import LatentDreamEnv, LatentDreamVectorEnv
    from torchwm.envs.latent import LatentObservationWrapper, VectorLatentObservationWrapper, make_latent_env
    from torchwm.envs.point_mass import PointMassEnv
    from torchwm.envs.record import record
    from torchwm.envs.two_rooms import TwoRoomsEnv
    from torchwm.online import LearnJob, learn
    from torchwm.pipeline import fit
    from torchwm.wm.config import JEPAConfig
    from torchwm.wm.jepa import JEPA
    from torchwm.wm.trainer import JEPAAgent
    from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer
    from torchwm.wm.world_model import WorldModel, WorldModelSpec

_PUBLIC: dict[str, str] = {
    # pretraining
    "JEPAAgent": "torchwm.wm.trainer",
    "JEPAConfig": "torchwm.wm.config",
    "JEPA": "torchwm.wm.jepa",
    # the world model
    "WorldModel": "torchwm.wm.world_model",
    "WorldModelSpec": "torchwm.wm.world_model",
    "WorldModelConfig": "torchwm.wm.wm_trainer",
    "WorldModelTrainer": "torchwm.wm.wm_trainer",
    # the gymnasium side
    "LatentObservationWrapper": "torchwm.envs.latent",
    "VectorLatentObservationWrapper": "torchwm.envs.latent",
    "make_latent_env": "torchwm.envs.latent",
    "fit": "torchwm.pipeline",
    "learn": "torchwm.online",
    "LearnJob": "torchwm.online",
    "run_suite": "torchwm.bench.suite",
    "SuiteJob": "torchwm.bench.suite",
    "LatentDreamEnv": "torchwm.envs.dream",
    "LatentDreamVectorEnv": "torchwm.envs.dream",
    "ActionRepeat": "torchwm.envs.action_repeat",
    "TwoRoomsEnv": "torchwm.envs.two_rooms",
    "PointMassEnv": "torchwm.envs.point_mass",
    "record": "torchwm.envs.record",
    # planning and evaluation
    "MPCAgent": "torchwm.agents.mpc",
    "CEM": "torchwm.agents.planners",
    "MPPI": "torchwm.agents.planners",
    "CEMConfig": "torchwm.agents.planners",
    "MPPIConfig": "torchwm.agents.planners",
    "PlannerConfig": "torchwm.agents.planners",
    "evaluate": "torchwm.agents.evaluate",
    "EvalResult": "torchwm.agents.evaluate",
    "RandomPolicy": "torchwm.agents.evaluate",
    "PlanningBenchmarkConfig": "torchwm.agents.benchmark",
    "run_planning_benchmark": "torchwm.agents.benchmark",
    # stable-baselines3 (imported only when one of these is first used)
    "JEPAFeaturesExtractor": "torchwm.agents.sb3",
    "JEPACombinedExtractor": "torchwm.agents.sb3",
    "PolicyTrainingConfig": "torchwm.agents.policy_config",
    "train_policy": "torchwm.agents.train_policy",
}
"""Each public name -> the module that defines it (imported on first use of the name)."""

__all__ = [
    "ActionRepeat",
    "CEM",
    "CEMConfig",
    "EvalResult",
    "JEPA",
    "JEPAAgent",
    "JEPACombinedExtractor",
    "JEPAConfig",
    "JEPAFeaturesExtractor",
    "LatentDreamEnv",
    "LatentDreamVectorEnv",
    "LatentObservationWrapper",
    "LearnJob",
    "MPCAgent",
    "MPPI",
    "MPPIConfig",
    "PlannerConfig",
    "PlanningBenchmarkConfig",
    "PointMassEnv",
    "PolicyTrainingConfig",
    "RandomPolicy",
    "SuiteJob",
    "TwoRoomsEnv",
    "VectorLatentObservationWrapper",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelSpec",
    "WorldModelTrainer",
    "evaluate",
    "fit",
    "learn",
    "make_latent_env",
    "record",
    "run_planning_benchmark",
    "run_suite",
    "train_policy",
]
"""The curated public names; `tests/torchwm/test_public.py` holds it equal to ``_PUBLIC``."""
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    if name in _PUBLIC:
        value = getattr(importlib.import_module(_PUBLIC[name]), name)
        globals()[name] = value  # later look-ups skip this function
        return value
    raise AttributeError(
        f"module 'torchwm' has no attribute {name!r}; the public names are in torchwm.__all__, "
        "everything else lives in its subpackage (torchwm.wm, torchwm.envs, torchwm.agents)"
    )


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
