"""Plots are optional: matplotlib comes with the ``plots`` extra (``pip install 'torchwm[plots]'``).

Without it every command still runs and writes its JSON and GIFs; only the PNG plots are left out, with a
warning that names the extra.
"""

from __future__ import annotations

import warnings
from typing import Any


def pyplot() -> Any | None:
    """``matplotlib.pyplot`` on the non-interactive Agg backend, or None (with a warning) where matplotlib is
    not installed."""
    try:
        import matplotlib
    except ImportError:
        warnings.warn(
            "matplotlib is not installed, so no plot is drawn (the JSON and GIFs are written); "
            "install it with: pip install 'torchwm[plots]'",
            stacklevel=3,
        )
        return None
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


__all__ = ["pyplot"]
