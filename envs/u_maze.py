"""A U-shaped maze: a point agent in the unit square whose straight path to the goal is blocked by a wall.

A horizontal wall runs from the left border to `wall_length` at mid-height and leaves an opening between
its free end and the right border. Start and goal lie at the closed (left) ends of the lower and the
upper corridor, so the agent has to go around the wall's free end: walking straight at the goal stops at
the wall. Rendered with numpy, like every `PointArenaEnv`.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
from torchwm.envs.two_rooms import PointArenaEnv, Rect, _check, move_point


class UMazeEnv(PointArenaEnv):
    """A U-maze: a horizontal wall from the left border to x = `wall_length` splits the unit square into a
    lower and an upper arm joined beside the wall's free end; the action is a velocity, `max_step` per unit.

    The wall is the slab `0.5 +- wall_thickness / 2` in y, solid from the left border (running past it,
    so that sliding along the border cannot slip around it) to `wall_length`; the opening is
    `wall_length <= x <= 1`. The agent is a point for collisions (drawn as a disk of `agent_radius`);
    `wall_thickness >= success_radius`, so success never reaches through the wall.

    Reset: by default the start goes to one arm (drawn from the seed) and the goal to the other, both
    uniform at the arm's closed end (`x <= closed_end`), so the straight segment between them crosses the
    wall and greedy straight-line motion stays stuck under it. Reset options: `start=(x, y)`,
    `goal=(x, y)`, `different_arms` (default True; False draws sampled points uniformly in free space, as
    the base does). A point fixed by the options is used as given and the sampled one goes to the other
    arm's closed end (to an arm drawn from the seed when the fixed point lies beside the free end, in no
    arm); passing `different_arms=True` explicitly also requires the fixed points to lie in two arms.
    `info["state"]` is the agent's position (2,).
    """

    OPTION_KEYS: ClassVar[frozenset[str]] = frozenset({"start", "goal", "different_arms"})

    def __init__(
        self,
        size: int = 64,
        max_step: float = 0.06,
        wall_thickness: float = 0.1,
        wall_length: float = 0.7,
        closed_end: float = 0.3,
        success_radius: float = 0.05,
        agent_radius: float = 0.035,
        render_mode: str | None = None,
    ) -> None:
        _check(0.0 < max_step <= 0.5, "max_step", max_step, "in (0, 0.5]")
        _check(0.0 < wall_thickness < 0.5, "wall_thickness", wall_thickness, "in (0, 0.5)")
        _check(0.0 < wall_length < 1.0, "wall_length", wall_length, "in (0, 1)")
        _check(0.0 < closed_end < wall_length, "closed_end", closed_end, f"in (0, wall_length={wall_length})")
        _check(
            success_radius <= wall_thickness,
            "success_radius",
            success_radius,
            f"<= wall_thickness={wall_thickness}",
        )
        self.max_step, self.closed_end = float(max_step), float(closed_end)
        self.wall_length = float(wall_length)
        self.wall_y = (0.5 - wall_thickness / 2, 0.5 + wall_thickness / 2)
        wall: Rect = (-1.0, self.wall_y[0], self.wall_length, self.wall_y[1])
        super().__init__((wall,), size, success_radius, agent_radius, render_mode)

    def arm(self, y: float) -> int:
        """The arm holding y-coordinate y: 0 lower, 1 upper, -1 inside the wall's slab (beside the free end)."""
        if y <= self.wall_y[0]:
            return 0
        return 1 if y >= self.wall_y[1] else -1

    def _sample_closed_end(self, arm: int) -> tuple[float, float]:
        """A uniform point of arm 0 (lower) or 1 (upper) with x in [0, closed_end]."""
        y_lo, y_hi = (0.0, self.wall_y[0]) if arm == 0 else (self.wall_y[1], 1.0)
        x, y = self.np_random.uniform((0.0, y_lo), (self.closed_end, y_hi)).tolist()
        return x, y

    def _other_arm(self, point: tuple[float, float] | None, key: str, strict: bool) -> int:
        """The arm opposite a fixed point's; an arm drawn from the seed when there is no point or it lies in no
        arm (an error when `strict`)."""
        arm = -1 if point is None else self.arm(point[1])
        if arm < 0:
            ok, name = point is None or not strict, f"options[{key!r}] with different_arms"
            _check(ok, name, point, "inside an arm, not beside the free end")
            return int(self.np_random.integers(2))
        return 1 - arm

    def _start_and_goal(self, options: dict[str, Any]) -> tuple[tuple[float, float], tuple[float, float]]:
        """Start and goal in different arms at their closed ends (see the class); with `different_arms=False`,
        as the base."""
        if not options.get("different_arms", True):
            return super()._start_and_goal(options)
        strict = "different_arms" in options
        start, goal = self._option_point(options, "start"), self._option_point(options, "goal")
        if start is None:
            start = self._sample_closed_end(self._other_arm(goal, "goal", strict))
        if goal is None:
            goal = self._sample_closed_end(self._other_arm(start, "start", strict))
        if strict:
            arms = (self.arm(start[1]), self.arm(goal[1]))
            _check(
                arms in ((0, 1), (1, 0)),
                "options start/goal with different_arms",
                (start, goal),
                "in two arms",
            )
        return start, goal

    def _advance(self, ax: float, ay: float) -> None:
        """Move by max_step * action, stopped and slid along by the wall and the border."""
        self._x, self._y, _, _ = move_point(
            self._x, self._y, ax * self.max_step, ay * self.max_step, self._solids
        )

    def _state(self) -> np.ndarray:
        """The agent's position (x, y)."""
        return np.array((self._x, self._y), dtype=np.float32)
