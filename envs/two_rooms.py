"""Two rooms joined by a door (PLDM's task): a point agent in the unit square, rendered with numpy.

The module also holds what every built-in arena shares (`PointArenaEnv`): the point collision with
axis-aligned walls, the numpy renderer and the goal/info conventions. `PointMassEnv` builds on it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, ClassVar

import gymnasium as gym
import numpy as np
from gymnasium import spaces

Rect = tuple[float, float, float, float]
"""An axis-aligned rectangle `(x_lo, y_lo, x_hi, y_hi)` in arena units; its interior is solid."""

_BORDER: tuple[Rect, ...] = (
    (-1.0, -1.0, 0.0, 2.0),
    (1.0, -1.0, 2.0, 2.0),
    (-1.0, -1.0, 2.0, 0.0),
    (-1.0, 1.0, 2.0, 2.0),
)
_MAX_SLIDES = 3


def _slab(p: float, d: float, lo: float, hi: float) -> tuple[float, float, float] | None:
    """Entry time, exit time and entry face of the motion `p + t*d` through the open interval (lo, hi)."""
    if d > 0.0:
        return (lo - p) / d, (hi - p) / d, lo
    if d < 0.0:
        return (hi - p) / d, (lo - p) / d, hi
    return (-math.inf, math.inf, p) if lo < p < hi else None


def _first_hit(x: float, y: float, dx: float, dy: float, rects: Sequence[Rect]) -> tuple[float, int, float]:
    """Earliest fraction t < 1 at which the segment enters a rectangle's interior, its axis and face."""
    best_t, best_axis, best_face = 1.0, -1, 0.0
    for x0, y0, x1, y1 in rects:
        sx = _slab(x, dx, x0, x1)
        if sx is None:
            continue
        sy = _slab(y, dy, y0, y1)
        if sy is None:
            continue
        t_in, t_out = max(sx[0], sy[0]), min(sx[1], sy[1])
        if 0.0 <= t_in < t_out and t_in < best_t:
            best_t, best_axis, best_face = (t_in, 0, sx[2]) if sx[0] >= sy[0] else (t_in, 1, sy[2])
    return best_t, best_axis, best_face


def move_point(
    x: float, y: float, dx: float, dy: float, rects: Sequence[Rect]
) -> tuple[float, float, bool, bool]:
    """Move a point by (dx, dy) without entering any rectangle: stop at a face, slide along it.

    Returns the new position and whether the motion was blocked along x and along y.
    """
    hit_x = hit_y = False
    for _ in range(_MAX_SLIDES):
        if dx == 0.0 and dy == 0.0:
            break
        t, axis, face = _first_hit(x, y, dx, dy, rects)
        if axis == 0:
            x, y, dx, dy, hit_x = face, y + t * dy, 0.0, (1.0 - t) * dy, True
        elif axis == 1:
            x, y, dx, dy, hit_y = x + t * dx, face, (1.0 - t) * dx, 0.0, True
        else:
            return x + dx, y + dy, hit_x, hit_y
    return x, y, hit_x, hit_y


def _check(ok: bool, name: str, value: object, expected: str) -> None:
    """Raise a ValueError naming `name=value` and what would be right unless `ok`."""
    if not ok:
        raise ValueError(f"{name} must be {expected}, got {value!r}")


def _disk_mask(radius_px: float) -> np.ndarray:
    """A boolean (2R+1, 2R+1) disk of the given radius in pixels, centred on the middle pixel."""
    r = max(1, int(math.ceil(radius_px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    return (xx * xx + yy * yy) <= max(radius_px, 1.0) ** 2


class PointArenaEnv(gym.Env[np.ndarray, np.ndarray]):
    """Base of the built-in arenas: a point in the unit square among wall rectangles, goal-conditioned.

    Subclasses define the dynamics (`_advance`) and the true state (`_state`). Observations are
    uint8 RGB frames `(size, size, 3)` (row 0 at the top, y pointing up); the goal is not drawn.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 30}
    BACKGROUND_COLOR: ClassVar[tuple[int, int, int]] = (235, 235, 235)
    WALL_COLOR: ClassVar[tuple[int, int, int]] = (60, 60, 60)
    AGENT_COLOR: ClassVar[tuple[int, int, int]] = (220, 40, 40)
    OPTION_KEYS: ClassVar[frozenset[str]] = frozenset({"start", "goal"})

    def __init__(
        self,
        walls: Sequence[Rect],
        size: int,
        success_radius: float,
        agent_radius: float,
        render_mode: str | None,
    ) -> None:
        _check(isinstance(size, int) and size >= 8, "size", size, "an int >= 8")
        _check(0.0 < success_radius < 1.0, "success_radius", success_radius, "in (0, 1)")
        _check(0.0 < agent_radius < 0.5, "agent_radius", agent_radius, "in (0, 0.5)")
        _check(
            render_mode is None or render_mode in self.metadata["render_modes"],
            "render_mode",
            render_mode,
            f"None or one of {self.metadata['render_modes']}",
        )
        self.size, self.success_radius, self.render_mode = size, float(success_radius), render_mode
        self.walls: tuple[Rect, ...] = tuple(walls)
        self._solids = self.walls + _BORDER
        self.observation_space = spaces.Box(0, 255, (size, size, 3), np.uint8)
        self.action_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self._background = self._draw_background()
        self._sprite = _disk_mask(agent_radius * size)
        self._sprite_r = self._sprite.shape[0] // 2
        self._color = np.array(self.AGENT_COLOR, dtype=np.uint8)
        self._x = self._y = self._gx = self._gy = 0.5

    # ---- geometry -------------------------------------------------------------------------------

    def is_free(self, x: float, y: float) -> bool:
        """Whether (x, y) lies in the arena and outside every wall's interior."""
        if not (0.0 <= x <= 1.0 and 0.0 <= y <= 1.0):
            return False
        return not any(x0 < x < x1 and y0 < y < y1 for x0, y0, x1, y1 in self.walls)

    def _sample_free(self, x_lo: float = 0.0, x_hi: float = 1.0) -> tuple[float, float]:
        """A uniform sample of free space with x in [x_lo, x_hi], by rejection."""
        while True:
            x, y = self.np_random.uniform((x_lo, 0.0), (x_hi, 1.0)).tolist()
            if self.is_free(x, y):
                return x, y

    # ---- rendering ------------------------------------------------------------------------------

    def _draw_background(self) -> np.ndarray:
        """The static frame: background colour, every wall pixel (by its centre) in the wall colour."""
        centres = (np.arange(self.size) + 0.5) / self.size
        px, py = np.meshgrid(centres, 1.0 - centres)  # (H, W) each; row 0 is the top (y = 1)
        solid = np.zeros((self.size, self.size), dtype=bool)
        for x0, y0, x1, y1 in self.walls:
            solid |= (px >= x0) & (px <= x1) & (py >= y0) & (py <= y1)
        frame = np.empty((self.size, self.size, 3), dtype=np.uint8)
        frame[...] = self.BACKGROUND_COLOR
        frame[solid] = self.WALL_COLOR
        return frame

    def _draw(self, x: float, y: float) -> np.ndarray:
        """A fresh frame with the agent's sprite at (x, y)."""
        n, r = self.size, self._sprite_r
        row, col = min(int((1.0 - y) * n), n - 1) - r, min(int(x * n), n - 1) - r
        r0, c0 = max(0, -row), max(0, -col)
        r1, c1 = min(2 * r + 1, n - row), min(2 * r + 1, n - col)
        frame = self._background.copy()
        frame[row + r0 : row + r1, col + c0 : col + c1][self._sprite[r0:r1, c0:c1]] = self._color
        return frame

    def render(self) -> np.ndarray | None:
        """The current frame (uint8 (size, size, 3)) in `rgb_array` mode, otherwise None."""
        if self.render_mode is None:
            gym.logger.warn(f"{type(self).__name__}.render() called without render_mode='rgb_array'")
            return None
        return self._draw(self._x, self._y)

    def goal_frame(self) -> np.ndarray:
        """The observation the agent would see standing at the goal (the goal image for planners)."""
        return self._draw(self._gx, self._gy)

    # ---- episode --------------------------------------------------------------------------------

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """Start an episode; `options` may fix `start=(x, y)` and `goal=(x, y)` (see OPTION_KEYS)."""
        super().reset(seed=seed)
        options = dict(options or {})
        unknown = set(options) - self.OPTION_KEYS
        _check(not unknown, "reset options", sorted(unknown), f"among {sorted(self.OPTION_KEYS)}")
        self._reset_layout()
        (self._x, self._y), (self._gx, self._gy) = self._start_and_goal(options)
        self._reset_dynamics(options)
        info = self._info()
        info["goal_frame"] = self.goal_frame()
        return self._draw(self._x, self._y), info

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        """Apply a force/velocity action in [-1, 1]^2; reward is minus the distance to the goal."""
        a = np.asarray(action)
        if a.shape != (2,):
            raise ValueError(f"action must have shape (2,), got {a.shape}")
        ax, ay = a.tolist()
        if not (math.isfinite(ax) and math.isfinite(ay)):
            raise ValueError(f"action must be finite, got {a!r}")
        self._advance(min(max(ax, -1.0), 1.0), min(max(ay, -1.0), 1.0))
        info = self._info()
        return self._draw(self._x, self._y), -info["distance"], info["is_success"], False, info

    def _start_and_goal(self, options: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
        """Start and goal from the options, or sampled uniformly in free space (goal off success)."""
        start = self._option_point(options, "start")
        goal = self._option_point(options, "goal")
        start = start if start is not None else self._sample_free()
        if goal is None:
            goal = self._sample_free()
            while math.dist(start, goal) <= self.success_radius:
                goal = self._sample_free()
        return start, goal

    def _option_point(self, options: dict[str, Any], key: str) -> tuple[float, float] | None:
        """The point `options[key]`, validated to be a free (x, y), or None when absent."""
        if options.get(key) is None:
            return None
        point = np.asarray(options[key], dtype=np.float64)
        ok = point.shape == (2,) and self.is_free(float(point[0]), float(point[1]))
        _check(ok, f"options[{key!r}]", options[key], "a free (x, y) point in the unit square")
        return float(point[0]), float(point[1])

    def _distance(self) -> float:
        """Euclidean distance from the agent to the goal."""
        return math.hypot(self._gx - self._x, self._gy - self._y)

    def _is_success(self, distance: float) -> bool:
        """Success: the agent is strictly within `success_radius` of the goal."""
        return distance < self.success_radius

    def _info(self) -> dict[str, Any]:
        """The per-step info: positions, true state, distance and success."""
        distance = self._distance()
        return {
            "agent_pos": np.array((self._x, self._y), dtype=np.float32),
            "goal_pos": np.array((self._gx, self._gy), dtype=np.float32),
            "state": self._state(),
            "distance": distance,
            "is_success": self._is_success(distance),
        }

    # ---- layout and dynamics (subclass hooks) ---------------------------------------------------

    def _set_walls(self, walls: Sequence[Rect]) -> None:
        """Replace the wall rectangles (and the static frame drawn from them)."""
        self.walls = tuple(walls)
        self._solids = self.walls + _BORDER
        self._background = self._draw_background()

    def _reset_layout(self) -> None:
        """Draw a new layout at the start of an episode, from the seeded ``np_random`` (a fixed arena: nothing)."""

    def _reset_dynamics(self, options: dict[str, Any]) -> None:
        """Reset any dynamic state beyond the position (nothing for a kinematic point)."""

    def _advance(self, ax: float, ay: float) -> None:
        """Move the agent for one step under the clipped action (ax, ay)."""
        raise NotImplementedError

    def _state(self) -> np.ndarray:
        """The true state vector (float32) for probes."""
        raise NotImplementedError


class TwoRoomsEnv(PointArenaEnv):
    """Two rooms split by a vertical wall with one door; the action is a velocity, `max_step` per unit.

    The arena is the unit square; the wall is the slab `0.5 +- wall_thickness / 2` with a door of
    height `door_size` centred at `door_center`. The agent is a point for collisions (drawn as a disk of
    `agent_radius`); keep `wall_thickness >= success_radius` so that success never reaches through the
    wall. With the defaults a random policy changes rooms in about one 100-step episode in six.
    Reset options: `start=(x, y)`, `goal=(x, y)`, `different_rooms=True` (start and goal on
    opposite sides of the wall). `info["state"]` is the agent's position (2,).
    """

    OPTION_KEYS: ClassVar[frozenset[str]] = frozenset({"start", "goal", "different_rooms"})

    def __init__(
        self,
        size: int = 64,
        max_step: float = 0.06,
        wall_thickness: float = 0.05,
        door_size: float = 0.2,
        door_center: float = 0.5,
        success_radius: float = 0.05,
        agent_radius: float = 0.035,
        render_mode: str | None = None,
    ) -> None:
        _check(0.0 < max_step <= 0.5, "max_step", max_step, "in (0, 0.5]")
        _check(0.0 < wall_thickness < 0.5, "wall_thickness", wall_thickness, "in (0, 0.5)")
        _check(0.0 < door_size < 1.0, "door_size", door_size, "in (0, 1)")
        lo, hi = door_center - door_size / 2, door_center + door_size / 2
        _check(0.0 < lo and hi < 1.0, "door_center", door_center, f"such that the door fits, {door_size=}")
        self.max_step, self.door = float(max_step), (lo, hi)
        self.wall_x = (0.5 - wall_thickness / 2, 0.5 + wall_thickness / 2)
        super().__init__(self._door_walls(lo, hi), size, success_radius, agent_radius, render_mode)

    def _door_walls(self, lo: float, hi: float) -> tuple[Rect, Rect]:
        """The wall's two pieces around a door from y = lo to y = hi (running past the border, so that sliding
        along the border cannot slip through it)."""
        return (self.wall_x[0], -1.0, self.wall_x[1], lo), (self.wall_x[0], hi, self.wall_x[1], 2.0)

    def set_door(self, center: float, size: float) -> None:
        """Move the door: its centre ``center`` along the wall and its height ``size`` (both in arena units)."""
        lo, hi = center - size / 2, center + size / 2
        _check(0.0 < lo and hi < 1.0 and size > 0.0, "door", (center, size), "a door of height > 0 inside (0, 1)")
        self.door = (lo, hi)
        self._set_walls(self._door_walls(lo, hi))

    def room(self, x: float) -> int:
        """The room holding x-coordinate x: 0 left, 1 right, -1 inside the wall's slab (the doorway)."""
        if x <= self.wall_x[0]:
            return 0
        return 1 if x >= self.wall_x[1] else -1

    def _sample_in_room(self, room: int) -> tuple[float, float]:
        """A uniform free point in room 0 (left) or 1 (right)."""
        return self._sample_free(0.0, self.wall_x[0]) if room == 0 else self._sample_free(self.wall_x[1], 1.0)

    def _start_and_goal(self, options: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
        """As the base, and with `different_rooms` the sampled point(s) go to opposite rooms."""
        if not options.get("different_rooms", False):
            return super()._start_and_goal(options)
        start, goal = self._option_point(options, "start"), self._option_point(options, "goal")
        if start is None:
            room = self._room_of_fixed(goal, "goal") if goal is not None else int(self.np_random.integers(2))
            start = self._sample_in_room(1 - room)
        if goal is None:
            goal = self._sample_in_room(1 - self._room_of_fixed(start, "start"))
        rooms = (self.room(start[0]), self.room(goal[0]))
        _check(
            rooms in ((0, 1), (1, 0)),
            "options start/goal with different_rooms",
            (start, goal),
            "in two rooms",
        )
        return start, goal

    def _room_of_fixed(self, point: tuple[float, float], key: str) -> int:
        """The room of a point fixed by the options, which must not be the doorway."""
        room = self.room(point[0])
        _check(room >= 0, f"options[{key!r}] with different_rooms", point, "inside a room, not the doorway")
        return room

    def _advance(self, ax: float, ay: float) -> None:
        """Move by max_step * action, stopped and slid along by walls and the border."""
        self._x, self._y, _, _ = move_point(
            self._x, self._y, ax * self.max_step, ay * self.max_step, self._solids
        )

    def _state(self) -> np.ndarray:
        """The agent's position (x, y)."""
        return np.array((self._x, self._y), dtype=np.float32)


class TwoRoomsDoorEnv(TwoRoomsEnv):
    """TwoRooms whose door is drawn at every reset: its height uniform in ``door_sizes`` and its centre uniform
    anywhere along the wall (the door inside ``door_margin`` of the border), both from the reset's seed.

    The straight line to a goal in the other room rarely passes the door, so a planner must find the door in
    the frame. `info["state"]` is ``(x, y, door_lo, door_hi)``: the agent's position and the door's extent.
    Reset options as `TwoRoomsEnv`.
    """

    def __init__(
        self,
        size: int = 64,
        max_step: float = 0.06,
        wall_thickness: float = 0.05,
        door_sizes: tuple[float, float] = (0.08, 0.2),
        door_margin: float = 0.02,
        success_radius: float = 0.05,
        agent_radius: float = 0.035,
        render_mode: str | None = None,
    ) -> None:
        lo, hi = (float(v) for v in door_sizes)
        _check(0.0 < lo <= hi and hi + 2 * door_margin < 1.0, "door_sizes", door_sizes, "0 < low <= high < 1")
        _check(door_margin >= 0.0, "door_margin", door_margin, ">= 0")
        self.door_sizes, self.door_margin = (lo, hi), float(door_margin)
        super().__init__(size, max_step, wall_thickness, hi, 0.5, success_radius, agent_radius, render_mode)

    def _reset_layout(self) -> None:
        """Draw the door's height, then its centre, from the episode's ``np_random``."""
        size = float(self.np_random.uniform(*self.door_sizes))
        half = size / 2 + self.door_margin
        self.set_door(float(self.np_random.uniform(half, 1.0 - half)), size)

    def _state(self) -> np.ndarray:
        """The agent's position (x, y) and the door's extent (lo, hi)."""
        return np.array((self._x, self._y, *self.door), dtype=np.float32)
