"""Registers the built-in pixel environments with gymnasium; importing it twice is harmless."""

from __future__ import annotations

import gymnasium as gym

TWO_ROOMS_ID = "torchwm/TwoRooms-v0"
"""Gymnasium id of `envs.two_rooms.TwoRoomsEnv`."""
TWO_ROOMS_DOOR_ID = "torchwm/TwoRoomsDoor-v0"
"""Gymnasium id of `envs.two_rooms.TwoRoomsDoorEnv` (the door drawn at every reset)."""
POINT_MASS_ID = "torchwm/PointMass-v0"
"""Gymnasium id of `envs.point_mass.PointMassEnv`."""
U_MAZE_ID = "torchwm/UMaze-v0"
"""Gymnasium id of `envs.u_maze.UMazeEnv` (the straight line from start to goal blocked by a wall)."""

BUILTIN_ENVS: dict[str, tuple[str, int]] = {
    TWO_ROOMS_ID: ("torchwm.envs.two_rooms:TwoRoomsEnv", 100),
    TWO_ROOMS_DOOR_ID: ("torchwm.envs.two_rooms:TwoRoomsDoorEnv", 100),
    POINT_MASS_ID: ("torchwm.envs.point_mass:PointMassEnv", 200),
    U_MAZE_ID: ("torchwm.envs.u_maze:UMazeEnv", 200),
}
"""Each built-in id -> (entry point, max_episode_steps)."""


def register_builtin_envs() -> None:
    """Register every built-in environment that gymnasium's registry does not hold yet."""
    for env_id, (entry_point, max_episode_steps) in BUILTIN_ENVS.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point=entry_point, max_episode_steps=max_episode_steps)


register_builtin_envs()
