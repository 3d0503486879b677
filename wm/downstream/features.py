"""Frozen-encoder features of a labelled image or video folder: computed once, cached, exported.

A folder holds class sub-folders (as torchvision lays them out) of images or videos. Every image, or
every clip of a video (`wm.data.VideoFolder`'s clips), becomes one row of a `FeatureSet`: its patch
tokens [T', K, D] from the frozen encoder, their mean (pooled [D]), its file path, its start frame,
its label. `FeatureSet.save` writes a plain ``.npz`` that numpy opens without this library::

    f = np.load("features.npz")
    f["pooled"]  # [N, D] float32
    f["patch"]   # [N, T', K, D] float32
    f["paths"], f["starts"], f["labels"], f["classes"]

The encoder of a JEPA checkpoint is its EMA target encoder, the one `JEPAAgent.encode` uses; a
fine-tuned classifier checkpoint (`wm.finetune`) gives its fine-tuned encoder.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from einops import rearrange
from torch.utils.data import DataLoader, Dataset
from torchwm.wm.checkpoint import (
    jepa_config_of,
    load_state_checked,
    load_weights,
    read_config,
    resolve_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.config_base import Config, PositiveInt
from torchwm.wm.data import VIDEO_EXTENSIONS, ImageFolder, VideoFolder
from torchwm.wm.device import resolve_device
from torchwm.wm.encoders import VisionEncoder, prepare_frames
from torchwm.wm.jepa import build_encoder
from tqdm.auto import tqdm

DataKind = Literal["auto", "imagefolder", "video"]
FeatureKind = Literal["pooled", "patch", "both"]
ENCODER_PREFIX = {"jepa": "target_encoder.", "classifier": "encoder."}
"""Where a checkpoint of each kind keeps the encoder's weights."""


@dataclass
class FeatureSet:
    """Frozen features of N images or clips, in the order of the files (sorted by class, then name)."""

    pooled: np.ndarray
    """Mean of the patch tokens, float32 [N, D]."""
    patch: np.ndarray | None
    """Patch tokens, float32 [N, T', K, D] (T' time steps of K tokens); None when only pooled was kept."""
    paths: np.ndarray
    """File of each row, relative to ``root`` (unicode [N])."""
    starts: np.ndarray
    """First frame of each row's clip in its file (0 for images), int64 [N]."""
    labels: np.ndarray
    """Class index of each row, int64 [N]."""
    classes: np.ndarray
    """Class names, indexed by label (unicode; empty for a folder without class sub-folders)."""
    root: str = ""
    """The folder the paths are relative to."""

    def __len__(self) -> int:
        return len(self.labels)

    def tokens(self) -> np.ndarray:
        """Patch tokens with time and space flattened: float32 [N, T' * K, D]."""
        if self.patch is None:
            raise ValueError(
                "this FeatureSet holds pooled features only; extract it with kind='both' or 'patch'"
            )
        return rearrange(self.patch, "n t k d -> n (t k) d")

    def save(self, path: str | Path, kind: FeatureKind = "both") -> Path:
        """Write an ``.npz`` (atomically: a temporary file, then a rename) with the arrays ``kind`` asks for."""
        path = Path(path)
        arrays: dict[str, np.ndarray] = {
            "paths": self.paths,
            "starts": self.starts,
            "labels": self.labels,
            "classes": self.classes,
            "root": np.array(self.root),
        }
        if kind in ("pooled", "both"):
            arrays["pooled"] = self.pooled
        if kind in ("patch", "both"):
            if self.patch is None:
                raise ValueError("this FeatureSet holds pooled features only; it cannot save patch features")
            arrays["patch"] = self.patch
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.parent / f".{path.name}.tmp-{os.getpid()}"
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> FeatureSet:
        """Read an ``.npz`` written by `save` (pooled features are recomputed from patch ones if absent)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"feature file {path} does not exist")
        with np.load(path, allow_pickle=False) as f:
            missing = {"paths", "labels", "classes"} - set(f.files)
            if missing or not {"pooled", "patch"} & set(f.files):
                raise ValueError(
                    f"{path} is not a feature file: it lacks {sorted(missing) or 'pooled/patch'}"
                )
            patch = f["patch"] if "patch" in f.files else None
            pooled = f["pooled"] if "pooled" in f.files else patch.mean(axis=(1, 2))  # type: ignore[union-attr]
            starts = f["starts"] if "starts" in f.files else np.zeros(len(f["labels"]), dtype=np.int64)
            root = str(f["root"]) if "root" in f.files else ""
            return cls(pooled, patch, f["paths"], starts, f["labels"], f["classes"], root)


def labelled_dataset(
    folder: str | Path, cfg: JEPAConfig, kind: DataKind = "auto"
) -> ImageFolder | VideoFolder:
    """The images or video clips of ``folder`` (class sub-folders give labels) at the encoder's shape.

    ``auto`` reads videos when the folder holds any file with a video extension, images otherwise.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"data folder {folder} does not exist")
    if kind == "auto":
        has_video = any(p.suffix.lower() in VIDEO_EXTENSIONS for p in folder.rglob("*") if p.is_file())
        kind = "video" if has_video else "imagefolder"
    if kind == "video":
        return VideoFolder(folder, cfg.image_size, cfg.num_frames, cfg.frame_step)
    if kind == "imagefolder":
        return ImageFolder(folder, cfg.image_size, cfg.num_frames)
    raise ValueError(f"unknown data kind {kind!r}; expected 'auto', 'imagefolder' or 'video'")


def item_records(dataset: ImageFolder | VideoFolder) -> list[tuple[Path, int, int]]:
    """(file, start frame, label) of every item of a labelled data set, in its order."""
    clips = getattr(dataset, "clips", None)  # VideoFolder, and wrappers that keep its clip list
    if clips is not None:
        return list(clips)
    return [(path, 0, label) for path, label in dataset.items]  # type: ignore[union-attr]


def load_encoder(checkpoint: str | Path, device: str = "cpu") -> tuple[VisionEncoder, JEPAConfig]:
    """The frozen encoder of a JEPA checkpoint (its EMA target encoder) or of a fine-tuned classifier.

    Returned in eval mode with ``requires_grad`` off, with the config it was built from.
    """
    ckpt = resolve_checkpoint(checkpoint)
    kind = read_config(ckpt).get("kind", "jepa")
    if kind not in ENCODER_PREFIX:
        raise ValueError(
            f"checkpoint {ckpt} is a {kind!r} checkpoint; expected one of {sorted(ENCODER_PREFIX)}"
        )
    cfg = jepa_config_of(ckpt)
    encoder = build_encoder(cfg)
    prefix = ENCODER_PREFIX[kind]
    weights = {k[len(prefix) :]: v for k, v in load_weights(ckpt).items() if k.startswith(prefix)}
    load_state_checked(encoder, weights, ckpt)
    return encoder.to(resolve_device(device)).eval().requires_grad_(False), cfg


def encode_tokens(encoder: VisionEncoder, frames: torch.Tensor, image_size: int) -> torch.Tensor:
    """uint8 frames [B, T, H, W, C] -> patch tokens [B, T', K, D] (what `JEPAAgent.encode` computes)."""
    clips = prepare_frames(frames, image_size)
    tokens = encoder(clips)  # (B, T' * K, D)
    return rearrange(tokens, "b (t k) d -> b t k d", k=encoder.tokens_per_step)


@torch.inference_mode()
def extract_features(
    encoder: VisionEncoder,
    dataset: ImageFolder | VideoFolder,
    image_size: int,
    kind: FeatureKind = "both",
    batch_size: int = 32,
    num_workers: int = 0,
    progress: bool = True,
) -> FeatureSet:
    """Run the frozen encoder once over every item of a labelled data set, in order.

    Items whose file could not be decoded (the data set's ``skipped``) are dropped.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size={batch_size} is invalid: expected a positive integer")
    device = next(encoder.parameters()).device
    loader = DataLoader(_Frames(dataset), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    pooled, patch = [], []
    for frames in tqdm(loader, desc="features", unit="batch", disable=not progress):
        z = encode_tokens(encoder, frames.to(device), image_size).float()  # (B, T', K, D)
        pooled.append(z.mean(dim=(1, 2)).cpu())
        if kind != "pooled":
            patch.append(z.cpu())
    records = item_records(dataset)
    keep = np.array([str(path) not in dataset.skipped for path, _, _ in records], dtype=bool)
    root = Path(dataset.folder)
    return FeatureSet(
        pooled=torch.cat(pooled).numpy()[keep],
        patch=torch.cat(patch).numpy()[keep] if patch else None,
        paths=np.array([str(p.relative_to(root)) for p, _, _ in records], dtype=str)[keep],
        starts=np.array([s for _, s, _ in records], dtype=np.int64)[keep],
        labels=np.array([label for _, _, label in records], dtype=np.int64)[keep],
        classes=np.array(dataset.classes, dtype=str),
        root=str(root),
    )


class _Frames(Dataset):
    """The frames of a labelled data set alone (so a DataLoader stacks them into one tensor)."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.dataset[index]["frames"]


@dataclass(frozen=True)
class FeaturesJob(Config):
    """``torchwm features``: a checkpoint's frozen features of a labelled folder, written to ``.npz``."""

    checkpoint: str = ""
    """JEPA (or fine-tuned classifier) checkpoint or run directory."""
    data: str = ""
    """Folder of images or videos, one sub-folder per class."""
    out: str = ""
    """The ``.npz`` to write (pooled, patch, paths, starts, labels, classes)."""
    kind: FeatureKind = "both"
    """Which features to keep."""
    data_kind: DataKind = "auto"
    """``auto``: videos if the folder holds any, else images."""
    batch_size: PositiveInt = 32
    """Items encoded at once."""
    device: str = "auto"
    """``auto``, ``cpu``, ``cuda``, ..."""
    progress: bool = True
    """Show a tqdm progress bar."""

    def check(self) -> None:
        for name in ("checkpoint", "data", "out"):
            if not getattr(self, name):
                self.fail(name, getattr(self, name), f"a path (--{name})")


def export_features(
    checkpoint: str | Path,
    data: str | Path,
    out: str | Path,
    kind: FeatureKind = "both",
    data_kind: DataKind = "auto",
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
) -> FeatureSet:
    """Encode every image or clip of ``data`` with a checkpoint's frozen encoder and write ``out`` (.npz)."""
    if kind not in ("pooled", "patch", "both"):
        raise ValueError(f"kind={kind!r} is invalid: expected 'pooled', 'patch' or 'both'")
    encoder, cfg = load_encoder(checkpoint, device)
    dataset = labelled_dataset(data, cfg, data_kind)
    features = extract_features(encoder, dataset, cfg.image_size, kind, batch_size, progress=progress)
    features.save(out, kind)
    return features
