"""A point mass with momentum in an open arena with one square obstacle, rendered with numpy.

A single frame shows where the mass is, not how fast it moves: the velocity is what a temporal
encoder has to read from the frame history.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
from torchwm.envs.two_rooms import PointArenaEnv, Rect, _check, move_point


class PointMassEnv(PointArenaEnv):
    """A damped point mass pushed by a force action in [-1, 1]^2, stopped (or bounced) by solids.

    Each step: `v <- (1 - damping) * v + force_scale * action`, each component of v clipped to
    [-max_speed, max_speed], then the mass moves by v; a wall or border face hit along an axis sets
    that component to `-restitution * v` (0: stop, 1: elastic) and the rest of the motion slides.
    Success: distance to the goal < `success_radius`, and, when `success_max_speed` is set, the
    speed (norm of v) is below it too. `info["state"]` is `(x, y, vx, vy)`.
    Reset options: `start=(x, y)`, `goal=(x, y)`, `velocity=(vx, vy)` (default zero).
    """

    OPTION_KEYS: ClassVar[frozenset[str]] = frozenset({"start", "goal", "velocity"})
    AGENT_COLOR: ClassVar[tuple[int, int, int]] = (40, 90, 220)

    def __init__(
        self,
        size: int = 64,
        force_scale: float = 0.01,
        damping: float = 0.1,
        max_speed: float = 0.05,
        restitution: float = 0.0,
        obstacle_size: float = 0.2,
        success_radius: float = 0.05,
        success_max_speed: float | None = None,
        agent_radius: float = 0.035,
        render_mode: str | None = None,
    ) -> None:
        _check(0.0 < force_scale <= 0.5, "force_scale", force_scale, "in (0, 0.5]")
        _check(0.0 <= damping <= 1.0, "damping", damping, "in [0, 1]")
        _check(0.0 < max_speed <= 0.5, "max_speed", max_speed, "in (0, 0.5]")
        _check(0.0 <= restitution <= 1.0, "restitution", restitution, "in [0, 1]")
        _check(0.0 <= obstacle_size < 0.8, "obstacle_size", obstacle_size, "in [0, 0.8) (0: no obstacle)")
        _check(
            success_max_speed is None or success_max_speed > 0.0,
            "success_max_speed",
            success_max_speed,
            "None or > 0",
        )
        self.force_scale, self.damping, self.max_speed = float(force_scale), float(damping), float(max_speed)
        self.restitution, self.success_max_speed = float(restitution), success_max_speed
        lo, hi = 0.5 - obstacle_size / 2, 0.5 + obstacle_size / 2
        walls: tuple[Rect, ...] = ((lo, lo, hi, hi),) if obstacle_size > 0 else ()
        super().__init__(walls, size, success_radius, agent_radius, render_mode)
        self._vx = self._vy = 0.0

    def _reset_dynamics(self, options: dict[str, Any]) -> None:
        """Set the velocity from `options["velocity"]` (clipped to max_speed) or to zero."""
        velocity = np.asarray(options.get("velocity", (0.0, 0.0)), dtype=np.float64)
        ok = velocity.shape == (2,) and bool(np.isfinite(velocity).all())
        _check(ok, "options['velocity']", options.get("velocity"), "a finite (vx, vy)")
        self._vx, self._vy = np.clip(velocity, -self.max_speed, self.max_speed).tolist()

    def _advance(self, ax: float, ay: float) -> None:
        """Update the velocity from the force, then move, stopping or bouncing at solids."""
        keep, vmax = 1.0 - self.damping, self.max_speed
        vx = min(max(keep * self._vx + self.force_scale * ax, -vmax), vmax)
        vy = min(max(keep * self._vy + self.force_scale * ay, -vmax), vmax)
        self._x, self._y, hit_x, hit_y = move_point(self._x, self._y, vx, vy, self._solids)
        self._vx = -self.restitution * vx if hit_x else vx
        self._vy = -self.restitution * vy if hit_y else vy

    def _is_success(self, distance: float) -> bool:
        """Within `success_radius` of the goal and, if `success_max_speed` is set, slower than it."""
        if distance >= self.success_radius:
            return False
        return self.success_max_speed is None or math.hypot(self._vx, self._vy) < self.success_max_speed

    def _state(self) -> np.ndarray:
        """Position and velocity (x, y, vx, vy)."""
        return np.array((self._x, self._y, self._vx, self._vy), dtype=np.float32)
