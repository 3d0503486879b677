"""Shared fixtures: tiny configs and generated data (tests never download anything)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wm.config import JEPAConfig

torch.set_num_threads(2)


@pytest.fixture
def tiny_cfg(tmp_path: Path) -> JEPAConfig:
    """A very small temporal JEPA that trains in well under a second a step."""
    return JEPAConfig.preset(
        "tiny",
        image_size=32,
        embed_dim=32,
        num_layers=2,
        num_heads=2,
        predictor_dim=32,
        predictor_depth=1,
        predictor_heads=2,
        batch_size=4,
        synthetic_clips=32,
        output_dir=str(tmp_path / "run"),
        progress=False,
        log_interval=1,
        warmup_steps=2,
    )


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """root/train/<class>/*.png with two classes of small random images."""
    from PIL import Image

    rng = np.random.default_rng(0)
    root = tmp_path / "data"
    for cls in ("a", "b"):
        (root / "train" / cls).mkdir(parents=True)
        for i in range(6):
            img = rng.integers(0, 255, size=(40, 48, 3), dtype=np.uint8)
            Image.fromarray(img).save(root / "train" / cls / f"{i}.png")
    return root
