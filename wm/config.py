"""`JEPAConfig`: every knob of the JEPA, its data and its trainer, in one validated dataclass.

The config stays mutable because the documented snippet sets fields by attribute
(``cfg.epochs = 100``); `JEPAConfig.validate` is therefore called again by everything that
consumes a config (the trainer, the model constructors), so a bad value set after construction
fails before any work starts, with an error naming the field.
"""

from __future__ import annotations

import dataclasses
import json
import re
import typing
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Literal

import yaml

CONFIG_FORMAT_VERSION = 1

EncoderKind = Literal["spatial", "temporal"]
MaskingKind = Literal["block", "random", "temporal"]
LossKind = Literal["mse", "l1"]
DatasetKind = Literal["synthetic", "imagefolder", "video", "rollouts"]


@dataclass
class JEPAConfig:
    """Configuration of a temporal JEPA run. Defaults are the paper-scale ``default`` preset."""

    # --- data -------------------------------------------------------------------------------
    dataset: DatasetKind = "synthetic"
    """Where clips come from: built-in moving shapes, an image folder, a video folder, or recorded rollouts."""
    root_path: str = "./data"
    """Root directory of the data set (ignored for ``synthetic``)."""
    image_folder: str = "train"
    """Sub-directory of ``root_path`` that holds the images or videos (``imagefolder``/``video``)."""
    num_frames: int = 1
    """Frames per clip. 1 means single images."""
    frame_step: int = 1
    """Temporal stride between the frames of a clip (frame skip for rollouts)."""
    synthetic_clips: int = 2048
    """Clips per epoch of the ``synthetic`` data set."""
    num_workers: int = 0
    """DataLoader worker processes (0 decodes in the training process)."""

    # --- model ------------------------------------------------------------------------------
    image_size: int = 224
    """Side of the square frames the model sees; inputs are resized to it."""
    patch_size: int = 16
    """Side of a square patch in pixels."""
    in_channels: int = 3
    """Colour channels of the frames."""
    encoder: EncoderKind = "temporal"
    """``spatial``: a ViT per frame (attention within a frame); ``temporal``: a ViT over tubelets of the clip."""
    tubelet_size: int = 1
    """Frames per tubelet of the temporal encoder (must divide ``num_frames``; 1 for ``spatial``)."""
    embed_dim: int = 768
    """Width of the encoder."""
    num_layers: int = 12
    """Depth of the encoder."""
    num_heads: int = 12
    """Attention heads of the encoder."""
    mlp_ratio: float = 4.0
    """Hidden width of the MLPs as a multiple of the layer width."""
    predictor_dim: int = 384
    """Width of the masked predictor (narrower than the encoder)."""
    predictor_depth: int = 6
    """Depth of the masked predictor."""
    predictor_heads: int = 6
    """Attention heads of the masked predictor."""

    # --- masking ----------------------------------------------------------------------------
    masking: MaskingKind = "block"
    """``block``: random rectangles extended through time; ``random``: single patches; ``temporal``: the last ``predict_horizon`` time steps."""
    mask_ratio: float = 0.75
    """Fraction of the tokens that are targets (``block`` and ``random``)."""
    mask_num_blocks: int = 8
    """Most rectangles unioned into one ``block`` mask."""
    mask_block_scale: float = 0.15
    """Area of one ``block`` rectangle as a fraction of the frame."""
    predict_horizon: int = 1
    """Time steps (tubelets) predicted ahead: the ``temporal`` mask and the world model's rollout length."""

    # --- objective --------------------------------------------------------------------------
    loss: LossKind = "mse"
    """Distance between predicted and target latents at the masked positions."""
    var_weight: float = 0.0
    """Weight of the variance hinge (VICReg) on the context embeddings, against collapse."""
    cov_weight: float = 0.0
    """Weight of the off-diagonal covariance penalty (VICReg) on the context embeddings."""
    cross_view_weight: float = 0.0
    """Weight of the consistency between two masked views of the same clip (a second mask set is drawn when > 0)."""
    ema_start: float = 0.996
    """EMA momentum of the target encoder at the first step."""
    ema_end: float = 1.0
    """EMA momentum of the target encoder at the last step (linear ramp)."""

    # --- optimisation -----------------------------------------------------------------------
    epochs: int = 100
    """Passes over the data set."""
    max_steps: int = 0
    """Train exactly this many optimiser steps if > 0, passing over the data as often as it takes (``epochs`` is
    then ignored); 0: ``epochs`` passes."""
    batch_size: int = 64
    """Clips per optimiser step (per process under torchrun)."""
    learning_rate: float = 1e-4
    """Peak AdamW learning rate."""
    min_learning_rate: float = 1e-6
    """Learning rate at the end of the cosine decay."""
    warmup_steps: int = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: float = 0.05
    """AdamW weight decay (not applied to biases, norms, tokens)."""
    grad_clip: float = 1.0
    """Clip the global gradient norm to this value (0 disables)."""

    # --- run --------------------------------------------------------------------------------
    seed: int = 0
    """Seed of every random draw: data order, masks, initialisation."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU), or a torch device string."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """``auto``: bf16 autocast on CUDA devices with bf16 support, fp32 elsewhere."""
    compile: bool = False
    """Wrap the model in ``torch.compile`` (useful on GPUs, no gain for small CPU models)."""
    output_dir: str = "runs/jepa"
    """Directory for checkpoints, TensorBoard events and the CSV log."""
    log_interval: int = 10
    """Steps between log lines (TensorBoard, CSV, progress bar)."""
    checkpoint_interval: int = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: int = 2
    """Most recent checkpoints kept on disk."""
    resume: bool = True
    """Continue from the latest checkpoint in ``output_dir`` if there is one."""
    progress: bool = True
    """Show a tqdm progress bar."""

    # ------------------------------------------------------------------------------------------
    @property
    def grid_size(self) -> int:
        """Patches along one side of a frame."""
        return self.image_size // self.patch_size

    @property
    def time_steps(self) -> int:
        """Token time steps of a clip (frames / tubelet)."""
        return self.num_frames // self.tubelet_size

    @property
    def num_tokens(self) -> int:
        """Tokens of one clip."""
        return self.time_steps * self.grid_size**2

    def validate(self) -> JEPAConfig:
        """Check every field; raise `ValueError` naming the field, its value and what is allowed."""
        for f in fields(self):
            _check_type(f.name, getattr(self, f.name), _field_types()[f.name])
        _positive(self, "image_size", "patch_size", "in_channels", "embed_dim", "num_layers", "num_heads")
        _positive(self, "predictor_dim", "predictor_depth", "predictor_heads", "num_frames", "frame_step")
        _positive(self, "tubelet_size", "batch_size", "mask_num_blocks", "predict_horizon", "log_interval")
        _positive(self, "checkpoint_interval", "synthetic_clips", "keep_checkpoints")
        _non_negative(self, "epochs", "max_steps", "warmup_steps", "weight_decay", "grad_clip", "num_workers")
        _non_negative(self, "var_weight", "cov_weight", "cross_view_weight")
        if self.epochs == 0 and self.max_steps == 0:
            _fail("epochs", self.epochs, "a positive number of epochs, or max_steps > 0")
        if self.image_size % self.patch_size:
            _fail("image_size", self.image_size, f"a multiple of patch_size={self.patch_size}")
        if self.num_frames % self.tubelet_size:
            _fail("num_frames", self.num_frames, f"a multiple of tubelet_size={self.tubelet_size}")
        if self.encoder == "spatial" and self.tubelet_size != 1:
            _fail("tubelet_size", self.tubelet_size, "1 with encoder='spatial' (tubelets need encoder='temporal')")
        if self.embed_dim % self.num_heads:
            _fail("embed_dim", self.embed_dim, f"a multiple of num_heads={self.num_heads}")
        if self.predictor_dim % self.predictor_heads:
            _fail("predictor_dim", self.predictor_dim, f"a multiple of predictor_heads={self.predictor_heads}")
        if not 0.0 < self.mask_ratio < 1.0:
            _fail("mask_ratio", self.mask_ratio, "a fraction strictly between 0 and 1")
        if not 0.0 < self.mask_block_scale < 1.0:
            _fail("mask_block_scale", self.mask_block_scale, "a fraction strictly between 0 and 1")
        if self.masking == "temporal" and self.predict_horizon >= self.time_steps:
            _fail(
                "predict_horizon",
                self.predict_horizon,
                f"fewer than the clip's {self.time_steps} time steps with masking='temporal' "
                "(raise num_frames or lower tubelet_size)",
            )
        for name in ("ema_start", "ema_end"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                _fail(name, getattr(self, name), "a momentum in [0, 1]")
        if self.learning_rate <= 0 or self.min_learning_rate < 0:
            _fail("learning_rate", self.learning_rate, "a positive learning rate (and min_learning_rate >= 0)")
        return self

    # --- serialisation ----------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JEPAConfig:
        """Build from a mapping; unknown keys raise `ValueError` listing the known ones."""
        data = {k: v for k, v in data.items() if k != "format_version"}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"JEPAConfig got unknown field(s) {unknown}; known fields are: {', '.join(sorted(known))}"
            )
        return cls(**data).validate()

    def save(self, path: str | Path) -> None:
        """Write as JSON (``.json``) or YAML (``.yaml``/``.yml``), with a format version."""
        path = Path(path)
        payload = {"format_version": CONFIG_FORMAT_VERSION, **self.to_dict()}
        if path.suffix in (".yaml", ".yml"):
            path.write_text(yaml.safe_dump(payload, sort_keys=False))
        else:
            path.write_text(json.dumps(payload, indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> JEPAConfig:
        """Read a config written by `save` (or by hand) in JSON or YAML; missing fields take the defaults."""
        return cls.from_dict(read_config_file(path))

    @classmethod
    def preset(cls, name: str, **overrides: Any) -> JEPAConfig:
        """A named preset (`PRESETS`), with fields overridden by keyword."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
        return cls.from_dict({**PRESETS[name], **overrides})


# Presets are plain mappings of overrides on top of the dataclass defaults.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    # Trains on a laptop CPU: 64x64 frames of 8x8 patches, 4 frames in 2 tubelets, a narrow ViT.
    "tiny": {
        "image_size": 64,
        "patch_size": 8,
        "num_frames": 4,
        "tubelet_size": 2,
        "embed_dim": 128,
        "num_layers": 4,
        "num_heads": 4,
        "predictor_dim": 64,
        "predictor_depth": 2,
        "predictor_heads": 4,
        "batch_size": 16,
        "learning_rate": 5e-4,
        "warmup_steps": 20,
        "epochs": 1,
        "synthetic_clips": 1024,
        "output_dir": "runs/tiny",
        "checkpoint_interval": 100,
    },
    # The reference configuration of the throughput benchmark (256 tokens a clip).
    "reference": {
        "image_size": 64,
        "patch_size": 8,
        "num_frames": 8,
        "tubelet_size": 2,
        "embed_dim": 192,
        "num_layers": 6,
        "num_heads": 3,
        "predictor_dim": 96,
        "predictor_depth": 3,
        "predictor_heads": 3,
        "batch_size": 16,
    },
}


class _YAMLLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that also reads ``1e-4`` as a float (plain PyYAML wants ``1.0e-4``, else a string)."""


_YAMLLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+$"),
    list("-+0123456789"),
)


def read_config_file(path: str | Path) -> dict[str, Any]:
    """The fields a JSON or YAML config file sets (only those: a partial file layers on a preset)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    text = path.read_text()
    data = yaml.load(text, Loader=_YAMLLoader) if path.suffix in (".yaml", ".yml") else json.loads(text)
    if not isinstance(data, dict):
        raise ValueError(f"config file {path} must hold a mapping of field names to values")
    version = data.pop("format_version", CONFIG_FORMAT_VERSION)
    if version != CONFIG_FORMAT_VERSION:
        raise ValueError(f"config file {path} has format_version {version}; this code reads {CONFIG_FORMAT_VERSION}")
    return data


def _fail(name: str, value: Any, allowed: str) -> None:
    raise ValueError(f"JEPAConfig.{name}={value!r} is invalid: expected {allowed}")


def _positive(cfg: JEPAConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) <= 0:
            _fail(name, getattr(cfg, name), "a positive number")


def _non_negative(cfg: JEPAConfig, *names: str) -> None:
    for name in names:
        if getattr(cfg, name) < 0:
            _fail(name, getattr(cfg, name), "a number >= 0")


def _field_types() -> dict[str, Any]:
    return typing.get_type_hints(JEPAConfig)


def _check_type(name: str, value: Any, hint: Any) -> None:
    if typing.get_origin(hint) is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            _fail(name, value, f"one of {list(choices)}")
    elif hint is bool:
        if not isinstance(value, bool):
            _fail(name, value, "true or false")
    elif hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            _fail(name, value, "an integer")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            _fail(name, value, "a number")
    elif hint is str and not isinstance(value, str):
        _fail(name, value, "a string")
