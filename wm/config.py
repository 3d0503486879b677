"""`JEPAConfig`: every knob of the JEPA, its data and its trainer, in one validated dataclass.

The config stays mutable because the documented snippet sets fields by attribute
(``cfg.epochs = 100``); `JEPAConfig.validate` is therefore called again by everything that
consumes a config (the trainer, the model constructors), so a bad value set after construction
fails before any work starts, with an error naming the field.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from torchwm.wm.config_base import (
    CONFIG_FORMAT_VERSION,
    Config,
    Fraction,
    NonNegFloat,
    NonNegInt,
    PositiveFloat,
    PositiveInt,
    Range,
    read_config_file,
)
from torchwm.wm.runs import Overwrite

OpenFraction = Annotated[float, Range(gt=0, lt=1)]
"""A fraction strictly between 0 and 1 (a mask ratio)."""

EncoderKind = Literal["spatial", "temporal"]
MaskingKind = Literal["block", "random", "temporal"]
LossKind = Literal["mse", "l1"]
DatasetKind = Literal["synthetic", "imagefolder", "video", "rollouts"]


@dataclass
class JEPAConfig(Config):
    """Configuration of a temporal JEPA run. Defaults are the paper-scale ``default`` preset."""

    # --- data -------------------------------------------------------------------------------
    dataset: DatasetKind = "synthetic"
    """Where clips come from: built-in moving shapes, an image folder, a video folder, or recorded rollouts."""
    root_path: str = "./data"
    """Root directory of the data set (ignored for ``synthetic``)."""
    image_folder: str = "train"
    """Sub-directory of ``root_path`` that holds the images or videos (``imagefolder``/``video``)."""
    num_frames: PositiveInt = 1
    """Frames per clip. 1 means single images."""
    frame_step: PositiveInt = 1
    """Temporal stride between the frames of a clip (frame skip for rollouts)."""
    synthetic_clips: PositiveInt = 2048
    """Clips per epoch of the ``synthetic`` data set."""
    num_workers: NonNegInt = 0
    """DataLoader worker processes (0 decodes in the training process)."""

    # --- model ------------------------------------------------------------------------------
    image_size: PositiveInt = 224
    """Side of the square frames the model sees; inputs are resized to it."""
    patch_size: PositiveInt = 16
    """Side of a square patch in pixels."""
    in_channels: PositiveInt = 3
    """Colour channels of the frames."""
    encoder: EncoderKind = "temporal"
    """``spatial``: a ViT per frame (attention within a frame); ``temporal``: a ViT over tubelets of the clip."""
    tubelet_size: PositiveInt = 1
    """Frames per tubelet of the temporal encoder (must divide ``num_frames``; 1 for ``spatial``)."""
    embed_dim: PositiveInt = 768
    """Width of the encoder."""
    num_layers: PositiveInt = 12
    """Depth of the encoder."""
    num_heads: PositiveInt = 12
    """Attention heads of the encoder."""
    mlp_ratio: float = 4.0
    """Hidden width of the MLPs as a multiple of the layer width."""
    predictor_dim: PositiveInt = 384
    """Width of the masked predictor (narrower than the encoder)."""
    predictor_depth: PositiveInt = 6
    """Depth of the masked predictor."""
    predictor_heads: PositiveInt = 6
    """Attention heads of the masked predictor."""

    # --- masking ----------------------------------------------------------------------------
    masking: MaskingKind = "block"
    """``block``: random rectangles extended through time; ``random``: single patches; ``temporal``: the last ``predict_horizon`` time steps."""
    mask_ratio: OpenFraction = 0.75
    """Fraction of the tokens that are targets (``block`` and ``random``)."""
    mask_num_blocks: PositiveInt = 8
    """Most rectangles unioned into one ``block`` mask."""
    mask_block_scale: OpenFraction = 0.15
    """Area of one ``block`` rectangle as a fraction of the frame."""
    predict_horizon: PositiveInt = 1
    """Time steps (tubelets) predicted ahead: the ``temporal`` mask and the world model's rollout length."""

    # --- objective --------------------------------------------------------------------------
    loss: LossKind = "mse"
    """Distance between predicted and target latents at the masked positions."""
    var_weight: NonNegFloat = 0.0
    """Weight of the variance hinge (VICReg) on the context embeddings, against collapse."""
    cov_weight: NonNegFloat = 0.0
    """Weight of the off-diagonal covariance penalty (VICReg) on the context embeddings."""
    cross_view_weight: NonNegFloat = 0.0
    """Weight of the consistency between two masked views of the same clip (a second mask set is drawn when > 0)."""
    ema_start: Fraction = 0.996
    """EMA momentum of the target encoder at the first step."""
    ema_end: Fraction = 1.0
    """EMA momentum of the target encoder at the last step (linear ramp)."""

    # --- optimisation -----------------------------------------------------------------------
    epochs: NonNegInt = 100
    """Passes over the data set."""
    max_steps: NonNegInt = 0
    """Train exactly this many optimiser steps if > 0, passing over the data as often as it takes (``epochs`` is
    then ignored); 0: ``epochs`` passes."""
    batch_size: PositiveInt = 64
    """Clips per optimiser step (per process under torchrun)."""
    learning_rate: PositiveFloat = 1e-4
    """Peak AdamW learning rate."""
    min_learning_rate: NonNegFloat = 1e-6
    """Learning rate at the end of the cosine decay."""
    warmup_steps: NonNegInt = 100
    """Linear warm-up steps before the cosine decay."""
    weight_decay: NonNegFloat = 0.05
    """AdamW weight decay (not applied to biases, norms, tokens)."""
    grad_clip: NonNegFloat = 1.0
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
    log_interval: PositiveInt = 10
    """Steps between log lines (TensorBoard, CSV, progress bar)."""
    checkpoint_interval: PositiveInt = 500
    """Steps between checkpoints (one is always written at the end)."""
    keep_checkpoints: PositiveInt = 2
    """Most recent checkpoints kept on disk."""
    resume: bool = True
    """Continue from the latest checkpoint in ``output_dir`` if there is one."""
    progress: bool = True
    """Show a tqdm progress bar."""
    overwrite: Overwrite = "never"
    """An existing run folder that holds another run: ``never`` refuses it (a matching run continues), ``move``
    moves it aside, ``delete`` deletes it."""

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

    def check(self) -> None:
        """The rules that tie fields together (each field's own type and range come from its annotation)."""
        if self.epochs == 0 and self.max_steps == 0:
            self.fail("epochs", self.epochs, "a positive number of epochs, or max_steps > 0")
        if self.image_size % self.patch_size:
            self.fail("image_size", self.image_size, f"a multiple of patch_size={self.patch_size}")
        if self.num_frames % self.tubelet_size:
            self.fail("num_frames", self.num_frames, f"a multiple of tubelet_size={self.tubelet_size}")
        if self.encoder == "spatial" and self.tubelet_size != 1:
            self.fail("tubelet_size", self.tubelet_size, "1 with encoder='spatial' (tubelets need encoder='temporal')")
        if self.embed_dim % self.num_heads:
            self.fail("embed_dim", self.embed_dim, f"a multiple of num_heads={self.num_heads}")
        if self.predictor_dim % self.predictor_heads:
            self.fail("predictor_dim", self.predictor_dim, f"a multiple of predictor_heads={self.predictor_heads}")
        if self.masking == "temporal" and self.predict_horizon >= self.time_steps:
            self.fail(
                "predict_horizon",
                self.predict_horizon,
                f"fewer than the clip's {self.time_steps} time steps with masking='temporal' "
                "(raise num_frames or lower tubelet_size)",
            )


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

JEPAConfig.PRESETS = PRESETS

__all__ = ["CONFIG_FORMAT_VERSION", "PRESETS", "JEPAConfig", "read_config_file"]
