"""Shared fixtures: tiny configs and generated data (tests never download anything)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torchwm.wm.config import JEPAConfig
from torchwm.wm.episodes import decord_module

# Test modules that import decord are collected before any test runs; loading decord through
# `decord_module` here first keeps its bundled zlib from breaking pygame's PNG reading (Pendulum-v1).
decord_module()

# Tiny shapes gain nothing from intra-op threads, and on a busy machine OpenMP workers that spin-wait
# for a descheduled sibling make a 10 ms step take over a second.
torch.set_num_threads(1)


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


VIDEO_FRAMES = 12
"""Frames in each generated video of `video_folder`."""


def frame_marker(index: int) -> int:
    """Grey level of the top-left square of frame ``index`` in a `video_folder` video (reads back the index)."""
    return 10 + 20 * index


@pytest.fixture
def video_folder(tmp_path: Path) -> Path:
    """root/train/<class>/*.mp4: three 12-frame 40x48 H.264 videos (keyframe every 4 frames) and one
    corrupt ``broken.mp4`` of garbage bytes. The top-left 16x16 square of frame t is `frame_marker(t)`."""
    import imageio

    root = tmp_path / "videos"
    layout = {"a": ["v0.mp4", "v1.mp4"], "b": ["v2.mp4"]}
    for k, (cls, names) in enumerate(layout.items()):
        (root / "train" / cls).mkdir(parents=True)
        for j, name in enumerate(names):
            frames = np.full((VIDEO_FRAMES, 40, 48, 3), 60 + 40 * (k + j), dtype=np.uint8)
            for t in range(VIDEO_FRAMES):
                frames[t, :16, :16] = frame_marker(t)
            imageio.mimwrite(
                root / "train" / cls / name,
                list(frames),
                fps=10,
                codec="libx264",
                macro_block_size=1,
                ffmpeg_params=["-g", "4"],
            )
    (root / "train" / "b" / "broken.mp4").write_bytes(b"this is not a video\x00\xff" * 64)
    return root
