"""torchwm: video world models for model-based RL.

The public names, from the layers below (wm: model and training; envs: gymnasium side; agents:
planners, evaluation, SB3):

>>> from torchwm import JEPAAgent, JEPAConfig
>>> cfg = JEPAConfig.preset("tiny")
"""

import envs  # noqa: F401  (registers the built-in torchwm/... environments with gymnasium)
from agents.benchmark import PlanningBenchmarkConfig, run_planning_benchmark
from agents.evaluate import EvalResult, RandomPolicy, evaluate
from agents.latent_model import PlanningModel
from agents.mpc import MPCAgent, greedy_one_step
from agents.planners import CEM, MPPI, CEMConfig, MPPIConfig
from envs.action_repeat import ActionRepeat
from envs.point_mass import PointMassEnv
from envs.record import record
from envs.reset_options import ResetOptions
from envs.two_rooms import TwoRoomsEnv
from wm.checkpoint import latest_checkpoint
from wm.config import PRESETS, JEPAConfig
from wm.data import ImageFolder, MovingShapes, VideoFolder
from wm.jepa import JEPA
from wm.rollouts import RolloutClips
from wm.trainer import JEPAAgent, TrainSummary
from wm.wm_trainer import WorldModelConfig, WorldModelTrainer, load_world_model
from wm.world_model import WorldModel, WorldModelSpec

__all__ = [
    "CEM",
    "JEPA",
    "MPPI",
    "PRESETS",
    "ActionRepeat",
    "CEMConfig",
    "EvalResult",
    "ImageFolder",
    "JEPAAgent",
    "JEPAConfig",
    "MPCAgent",
    "MPPIConfig",
    "MovingShapes",
    "PlanningBenchmarkConfig",
    "PlanningModel",
    "PointMassEnv",
    "RandomPolicy",
    "ResetOptions",
    "RolloutClips",
    "TrainSummary",
    "TwoRoomsEnv",
    "VideoFolder",
    "WorldModel",
    "WorldModelConfig",
    "WorldModelSpec",
    "WorldModelTrainer",
    "evaluate",
    "greedy_one_step",
    "latest_checkpoint",
    "load_world_model",
    "record",
    "run_planning_benchmark",
]
__version__ = "0.1.0"
