"""torchwm: video world models for model-based RL.

>>> from torchwm import JEPAAgent, JEPAConfig
"""

from wm.checkpoint import latest_checkpoint
from wm.config import PRESETS, JEPAConfig
from wm.data import ImageFolder, MovingShapes, VideoFolder
from wm.jepa import JEPA
from wm.trainer import JEPAAgent, TrainSummary

__all__ = [
    "JEPA",
    "PRESETS",
    "ImageFolder",
    "JEPAAgent",
    "JEPAConfig",
    "MovingShapes",
    "TrainSummary",
    "VideoFolder",
    "latest_checkpoint",
]
__version__ = "0.1.0"
