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
from wm.features import FeatureSet, export_features, extract_features, labelled_dataset, load_encoder
from wm.finetune import Classifier, FinetuneConfig, Finetuner, FinetuneSummary, load_classifier
from wm.jepa import JEPA
from wm.probes import ProbeConfig, ProbeResult, fit_probe, probe_checkpoint, run_probes, split_held_out
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
    "Classifier",
    "EvalResult",
    "FeatureSet",
    "FinetuneConfig",
    "FinetuneSummary",
    "Finetuner",
    "ImageFolder",
    "JEPAAgent",
    "JEPAConfig",
    "MPCAgent",
    "MPPIConfig",
    "MovingShapes",
    "PlanningBenchmarkConfig",
    "PlanningModel",
    "PointMassEnv",
    "ProbeConfig",
    "ProbeResult",
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
    "export_features",
    "extract_features",
    "fit_probe",
    "greedy_one_step",
    "labelled_dataset",
    "latest_checkpoint",
    "load_classifier",
    "load_encoder",
    "load_world_model",
    "probe_checkpoint",
    "record",
    "run_planning_benchmark",
    "run_probes",
    "split_held_out",
]
__version__ = "0.1.0"
