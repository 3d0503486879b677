"""Clip data sets for pretraining: built-in moving shapes, image folders, video folders (decord),
and recorded rollouts (`wm.rollouts`).

Every data set yields dicts with ``frames``: uint8 [T, H, W, C] already at the model's image size (so
that batches stack), plus ``label`` where the layout has classes. A file that cannot be decoded is
skipped with one warning naming it and listed in the data set's ``skipped``; a folder with nothing
readable raises an error naming the folder and the extensions looked for.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch.utils.data import Dataset
from torchwm.wm.config import JEPAConfig
from torchwm.wm.episodes import decord_module

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov")


class MovingShapes(Dataset):
    """Synthetic video: 1-3 coloured squares and discs moving and bouncing on a dark background.

    Clip ``i`` is a pure function of (seed, i), so the data set needs no files and is reproducible.
    """

    def __init__(self, num_clips: int, num_frames: int, image_size: int, frame_step: int = 1, seed: int = 0) -> None:
        self.num_clips, self.num_frames, self.size = num_clips, num_frames, image_size
        self.frame_step, self.seed = frame_step, seed
        self.skipped: list[str] = []

    def __len__(self) -> int:
        return self.num_clips

    def __getitem__(self, index: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, index])
        s = self.size
        frames = np.zeros((self.num_frames, s, s, 3), dtype=np.uint8)
        frames[:] = rng.integers(0, 40, size=3, dtype=np.uint8)
        yy, xx = np.mgrid[0:s, 0:s]
        n_shapes = int(rng.integers(1, 4))
        label = 0
        for k in range(n_shapes):
            radius = rng.uniform(0.08, 0.18) * s
            pos = rng.uniform(radius, s - radius, size=2)
            vel = rng.uniform(-0.06, 0.06, size=2) * s * self.frame_step
            colour = rng.integers(80, 256, size=3, dtype=np.uint8)
            disc = bool(rng.integers(0, 2))
            label = label if k else int(disc)
            for t in range(self.num_frames):
                p = _bounce(pos + vel * t, radius, s)
                if disc:
                    inside = (yy - p[0]) ** 2 + (xx - p[1]) ** 2 <= radius**2
                else:
                    inside = (np.abs(yy - p[0]) <= radius) & (np.abs(xx - p[1]) <= radius)
                frames[t][inside] = colour
        return {"frames": torch.from_numpy(frames), "label": label}


def _bounce(p: np.ndarray, radius: float, size: int) -> np.ndarray:
    """Reflect positions into [radius, size - radius] (a ball bouncing off the walls)."""
    lo, span = radius, size - 2 * radius
    q = np.mod(p - lo, 2 * span)
    return lo + np.where(q > span, 2 * span - q, q)


def _class_files(folder: Path, extensions: tuple[str, ...]) -> tuple[list[Path], list[int], list[str]]:
    """Files under ``folder`` (class sub-folders as torchvision lays them out, or flat), with labels."""
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist (set root_path / image_folder)")
    # A directory named like a data file (``x.png/``) is not a class: it is listed with the files, to be skipped.
    classes = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.suffix.lower() not in extensions)
    files, labels = [], []
    for label, name in enumerate(classes or ["."]):
        for f in sorted((folder / name).iterdir() if classes else folder.iterdir()):
            if f.suffix.lower() in extensions:
                files.append(f)
                labels.append(label)
    return files, labels, classes


def _skip(dataset: Any, path: Path, reason: str) -> None:
    if str(path) not in dataset.skipped:
        dataset.skipped.append(str(path))
        warnings.warn(f"skipping {path}: {reason}", stacklevel=3)


class ImageFolder(Dataset):
    """``folder/<class>/*.png|jpg|...`` as torchvision lays it out; each image repeated to a clip."""

    def __init__(self, folder: str | Path, image_size: int, num_frames: int = 1) -> None:
        self.folder, self.size, self.num_frames = Path(folder), image_size, num_frames
        self.skipped: list[str] = []
        files, labels, self.classes = _class_files(self.folder, IMAGE_EXTENSIONS)
        self.items = []
        for f, label in zip(files, labels):
            if not f.is_file():
                _skip(self, f, "not a regular file")
            elif f.stat().st_size == 0:
                _skip(self, f, "empty file")
            else:
                self.items.append((f, label))
        if not self.items:
            raise ValueError(f"no readable image in {self.folder}; looked for {', '.join(IMAGE_EXTENSIONS)}")

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if not 0 <= index < len(self.items):
            raise IndexError(f"index {index} out of range for {len(self.items)} images")  # ends plain iteration
        # An image that fails to decode is skipped (warned once) and the next one is used instead.
        for offset in range(len(self.items)):
            path, label = self.items[(index + offset) % len(self.items)]
            if str(path) in self.skipped:
                continue
            try:
                image = _load_image(path, self.size)
            except (OSError, ValueError, SyntaxError) as err:
                _skip(self, path, f"cannot decode image ({err})")
                continue
            frames = torch.from_numpy(image).unsqueeze(0).repeat(self.num_frames, 1, 1, 1)
            return {"frames": frames, "label": label}
        raise ValueError(f"no readable image left in {self.folder}")


def _load_image(path: Path, size: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as opened:
        img = opened.convert("RGB")
        if img.size != (size, size):
            img = img.resize((size, size), Image.Resampling.BILINEAR)
        return np.asarray(img, dtype=np.uint8).copy()


class VideoFolder(Dataset):
    """A folder of videos (mp4/avi/webm/mkv/mov, class sub-folders optional) decoded by decord.

    Clips of ``num_frames`` frames ``frame_step`` apart start every ``num_frames * frame_step`` frames
    and never cross the end of a file. Frames are resized to ``image_size`` while decoding.
    """

    def __init__(self, folder: str | Path, image_size: int, num_frames: int, frame_step: int = 1) -> None:
        self.folder, self.size = Path(folder), image_size
        self.num_frames, self.frame_step = num_frames, frame_step
        self.skipped: list[str] = []
        files, labels, self.classes = _class_files(self.folder, VIDEO_EXTENSIONS)
        span = (num_frames - 1) * frame_step + 1
        self.clips: list[tuple[Path, int, int]] = []
        for f, label in zip(files, labels):
            if not f.is_file():
                _skip(self, f, "not a regular file")
                continue
            length = self._length(f)
            if length is None:
                continue
            if length < span:
                _skip(self, f, f"{length} frames, shorter than one clip ({span} frames)")
            self.clips += [(f, start, label) for start in range(0, length - span + 1, num_frames * frame_step)]
        if not self.clips:
            raise ValueError(
                f"no readable video clip in {self.folder}; looked for {', '.join(VIDEO_EXTENSIONS)} "
                f"with at least {span} frames"
            )
        self._readers: dict[Path, Any] = {}

    def _length(self, path: Path) -> int | None:
        decord = decord_module()

        try:
            return len(decord.VideoReader(str(path), num_threads=1))
        except (decord.DECORDError, RuntimeError, OSError) as err:
            _skip(self, path, f"cannot decode video ({str(err).splitlines()[0][:200]})")
            return None

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, index: int) -> dict[str, Any]:
        decord = decord_module()

        # A file that opened but fails to decode (cut short after its index, say) is skipped (warned once) and
        # the next readable clip is used instead.
        for offset in range(len(self.clips)):
            path, start, label = self.clips[(index + offset) % len(self.clips)]
            if str(path) in self.skipped:
                continue
            try:
                return {"frames": self._decode(path, start), "label": label}
            except (decord.DECORDError, RuntimeError, OSError) as err:
                self._readers.pop(path, None)
                _skip(self, path, f"cannot decode video ({str(err).splitlines()[0][:200]})")
        raise ValueError(f"no readable video clip left in {self.folder}")

    def _decode(self, path: Path, start: int) -> torch.Tensor:
        """uint8 frames [T, image_size, image_size, C] of the clip starting at frame ``start`` of ``path``."""
        decord = decord_module()

        width = _decord_width(self.size)
        reader = self._readers.get(path)
        if reader is None:  # opened lazily: decord readers cannot be pickled into workers
            reader = decord.VideoReader(str(path), width=width, height=self.size, num_threads=1)
            self._readers[path] = reader
        idx = list(range(start, start + self.num_frames * self.frame_step, self.frame_step))
        frames = torch.from_numpy(reader.get_batch(idx).asnumpy())  # (T, size, width, C)
        if width == self.size:
            return frames
        x = F.interpolate(rearrange(frames, "t h w c -> t c h w").float(), size=(self.size, self.size),
                          mode="bilinear", antialias=True, align_corners=False)  # fmt: skip
        return rearrange(x.round().clamp(0, 255).to(torch.uint8), "t c h w -> t h w c")

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_readers": {}}


def _decord_width(size: int) -> int:
    """The output width to ask decord for: ``size``, or the next one that decord 0.6 can copy (dmlc/decord#336)."""
    from torchwm.wm.episodes import DECORD_BAD_WIDTHS

    width = size
    while width in DECORD_BAD_WIDTHS:
        width += 1
    return width


def build_dataset(cfg: JEPAConfig, seed_offset: int = 0) -> Dataset:
    """The data set a config names, yielding uint8 frames [T, image_size, image_size, C]."""
    folder = Path(cfg.root_path) / cfg.image_folder
    if cfg.dataset == "synthetic":
        return MovingShapes(cfg.synthetic_clips, cfg.num_frames, cfg.image_size, cfg.frame_step, cfg.seed + seed_offset)
    if cfg.dataset == "imagefolder":
        return ImageFolder(folder, cfg.image_size, cfg.num_frames)
    if cfg.dataset == "video":
        return VideoFolder(folder, cfg.image_size, cfg.num_frames, cfg.frame_step)
    if cfg.dataset == "rollouts":
        from torchwm.wm.rollouts import RolloutClips

        return RolloutClips(cfg.root_path, cfg.num_frames, cfg.frame_step, cfg.image_size)
    raise ValueError(f"unknown dataset {cfg.dataset!r}; expected synthetic, imagefolder, video or rollouts")
