"""torchwm: video world models for model-based RL.

>>> from torchwm import JEPAAgent, JEPAConfig
"""

from wm.config import PRESETS, JEPAConfig

__all__ = ["JEPAConfig", "PRESETS"]
__version__ = "0.1.0"
