"""torchwm's model layer: config, encoders, masks, losses, data, trainer, checkpoints.

Imports torch, numpy, einops, decord and imageio only: no gymnasium, no stable-baselines3.
"""

from torchwm.wm.config import PRESETS, JEPAConfig

__all__ = ["JEPAConfig", "PRESETS"]
