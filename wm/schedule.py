"""Schedules shared by the trainers: warm-up + cosine learning rate, linear EMA momentum ramp."""

from __future__ import annotations

import math


def warmup_cosine(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    """Linear warm-up to ``peak`` over ``warmup`` steps, then cosine decay to ``floor`` at ``total``."""
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + 0.5 * (peak - floor) * (1 + math.cos(math.pi * frac))


def linear_ramp(step: int, total: int, start: float, end: float) -> float:
    """``start`` at step 0 to ``end`` at ``total``, constant after."""
    return start + (end - start) * min(step / max(total, 1), 1.0)
