"""The gymnasium side of torchwm: built-in pixel environments, the recorder, latent wrappers."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from torchwm.envs import registration as _registration  # noqa: F401
from torchwm.envs.point_mass import PointMassEnv
from torchwm.envs.two_rooms import TwoRoomsDoorEnv, TwoRoomsEnv
from torchwm.envs.u_maze import UMazeEnv

if TYPE_CHECKING:
    from torchwm.envs.dream import LatentDreamEnv, LatentDreamVectorEnv
    from torchwm.envs.latent import (
        LatentObservationWrapper,
        VectorLatentObservationWrapper,
        make_latent_env,
        pixel_env,
    )

__all__ = [
    "LatentDreamEnv",
    "LatentDreamVectorEnv",
    "LatentObservationWrapper",
    "PointMassEnv",
    "TwoRoomsDoorEnv",
    "TwoRoomsEnv",
    "UMazeEnv",
    "VectorLatentObservationWrapper",
    "make_latent_env",
    "pixel_env",
]

_LAZY = {
    name: "torchwm.envs.latent"
    for name in ("LatentObservationWrapper", "VectorLatentObservationWrapper", "make_latent_env", "pixel_env")
}
"""Names imported on first use: they need torch, which `gymnasium.make` of a built-in env (in every
worker of an async vector env) should not have to import."""
_LAZY.update({name: "torchwm.envs.dream" for name in ("LatentDreamEnv", "LatentDreamVectorEnv")})


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'torchwm.envs' has no attribute {name!r}")
