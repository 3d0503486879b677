"""The gymnasium side of torchwm: built-in pixel environments, the recorder, latent wrappers."""

from envs import registration as _registration  # noqa: F401
from envs.point_mass import PointMassEnv
from envs.two_rooms import TwoRoomsEnv

__all__ = ["PointMassEnv", "TwoRoomsEnv"]
