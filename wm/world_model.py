"""The action-conditioned world model and its query API: `encode`, `step`, `rollout`, `reward`.

    frames [B, T, H, W, C] --encoder (per frame, or a sliding clip)--> tokens --latent head--> z [B, T, K, D]
    z_<=t, a_<=t --DynamicsPredictor (block-causal, cached)--> z_{t+1}

The per-step latent z_t is K tokens of width D: the encoder's patch tokens of frame t pooled over the regions
of a ``latent_grid`` x ``latent_grid`` grid (K = latent_grid²; averaged, or side by side: ``pooling``) and
projected to D by a small head. The head is trained with the dynamics (its EMA copy gives the targets, a
variance/covariance term keeps it from collapsing); the encoder is either loaded frozen from a JEPA
pretraining checkpoint or trained jointly with an EMA target. Every query is batched over any leading batch
and runs under `torch.inference_mode()`; no Python loop runs over samples.
"""

from __future__ import annotations

import copy
import dataclasses
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn
from torchwm.wm.checkpoint import (
    CONFIG_FILE,
    load_state_checked,
    load_weights,
    read_config,
    resolve_checkpoint,
    save_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.config_base import Config, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.device import resolve_device
from torchwm.wm.dynamics import DynamicsPredictor, KVBuffer
from torchwm.wm.encoders import VisionEncoder, prepare_frames
from torchwm.wm.jepa import build_encoder
from torchwm.wm.planning_spec import PlanningDefaults, read_planning

Pooling = Literal["mean", "patches"]
"""How a latent token is made from its region of patch tokens (see `LatentHead`)."""


def check_finite(name: str, x: torch.Tensor) -> None:
    """Raise `ValueError` naming the tensor, its shape and the first non-finite entry's index (NaN or inf
    handed to a rollout would come back as NaN latents, far from where it went in)."""
    bad = ~torch.isfinite(x)
    if bool(bad.any()):
        index = tuple(int(i) for i in bad.nonzero()[0])
        raise ValueError(
            f"{name} {tuple(x.shape)} holds a non-finite value ({x[index].item()}) at index {index}; "
            "check what produced it (an action outside the policy's range, a diverged planner, ...)"
        )


@dataclass
class WorldModelSpec(Config):
    """The shape of a world model (everything needed to rebuild it from a checkpoint)."""

    action_dim: PositiveInt
    """Size of one action vector as the model sees it (discrete actions: number of choices, one-hot)."""
    discrete_actions: bool = False
    """Actions are integer choices, one-hot encoded inside the model."""
    latent_grid: PositiveInt = 2
    """K = latent_grid² tokens a step, one per region of patch tokens."""
    pooling: Pooling = "mean"
    """How a region's patch tokens become its latent token: ``mean`` (their average, projected) or ``patches``
    (all of them side by side, projected: where in the region something is survives). Default ``mean``: what
    checkpoints written before the option were."""
    latent_dim: PositiveInt = 64
    """D, the width of a latent token."""
    width: PositiveInt = 128
    """Width of the dynamics predictor."""
    depth: PositiveInt = 2
    """Depth of the dynamics predictor."""
    heads: PositiveInt = 4
    """Attention heads of the dynamics predictor."""
    max_steps: PositiveInt = 64
    """Longest sequence (context + horizon) the predictor accepts."""
    proprio_dim: NonNegInt = 0
    """Size of an optional proprioception vector per step (0: none)."""
    reward_head: bool = True
    """Learn recorded rewards r_t = R(z_t, a_t)."""
    value_head: bool = False
    """Learn a value V(z_t) of the recorded rewards by temporal differences (discounted by ``discount`` per model
    step), which a planner adds to its predicted return beyond the horizon."""
    discount: Annotated[float, Range(gt=0, lt=1)] = 0.99
    """Discount per model step of the value (and of the planners' predicted return when they use it)."""
    predict_horizon: PositiveInt = 8
    """Default rollout length H."""
    residual: bool = True
    """The dynamics predict z_{t+1} - z_t (added to z_t) rather than z_{t+1} itself."""
    action_token: bool = True
    """The action is a token of its own in each step (K + 1 tokens); False adds its embedding to the K latent
    tokens instead (DINO-WM's conditioning), a fifth fewer tokens through every layer at K = 4."""
    mlp_ratio: PositiveFloat = 4.0
    """Hidden width of the dynamics' MLPs, as a multiple of ``width``."""

    def check(self) -> None:
        if self.width % self.heads:
            self.fail("width", self.width, f"a multiple of heads={self.heads}")


@dataclass(frozen=True)
class DynamicsShape(Config):
    """The part of a world model's shape a training config chooses; `WorldModelSpec` adds what the data fixes
    (the action size) and the trainer derives (the longest sequence). Defaults are `WorldModelSpec`'s, except
    ``pooling``."""

    latent_grid: PositiveInt = WorldModelSpec.latent_grid
    """K = latent_grid² tokens a step, one per region of patch tokens."""
    pooling: Pooling = "patches"
    """How a region's patch tokens become its latent token: ``patches`` (side by side) or ``mean`` (see
    `WorldModelSpec`, whose default stays ``mean`` so that older checkpoints load as they were trained). A new
    model pools ``patches``: with ``mean`` the latent barely knew where in a region the agent was, and planning
    stopped at the goal's region (`benchmarks/oracle_planning.py`)."""
    latent_dim: PositiveInt = WorldModelSpec.latent_dim
    """D, the width of a latent token."""
    width: PositiveInt = WorldModelSpec.width
    """Width of the dynamics predictor."""
    depth: PositiveInt = WorldModelSpec.depth
    """Depth of the dynamics predictor."""
    heads: PositiveInt = WorldModelSpec.heads
    """Attention heads of the dynamics predictor."""
    reward_head: bool = WorldModelSpec.reward_head
    """Learn recorded rewards r_t = R(z_t, a_t)."""
    value_head: bool = WorldModelSpec.value_head
    """Learn a value V(z_t) of the recorded rewards by temporal differences (see `WorldModelSpec`)."""
    discount: Annotated[float, Range(gt=0, lt=1)] = WorldModelSpec.discount
    """Discount per model step of the value."""
    action_token: bool = WorldModelSpec.action_token
    """The action is a token of its own in each step; False adds its embedding to every latent token."""
    mlp_ratio: PositiveFloat = WorldModelSpec.mlp_ratio
    """Hidden width of the dynamics' MLPs, as a multiple of ``width``."""

    def check(self) -> None:
        if self.width % self.heads:
            self.fail("width", self.width, f"a multiple of heads={self.heads}")


@dataclass(frozen=True)
class DataFacts(Config):
    """What a world model was trained on, recorded in its checkpoint so that every consumer (the planning
    benchmark, the latent wrappers, the dream env, the MPC agent) needs nothing but the checkpoint."""

    env_id: str | None = None
    """Gymnasium id of the recorded environment (None: unknown, e.g. a model built in code)."""
    imports: tuple[str, ...] = ()
    """Modules to import before ``env_id`` resolves (plugins that register environments)."""
    frame_skip: PositiveInt = 1
    """Environment steps per model step: the recording's frame skip times the trainer's ``frame_step``."""
    frame_shape: tuple[int, ...] | None = None
    """Shape of the recorded frames [H, W, C]."""
    action_space: dict[str, Any] | None = None
    """The environment's action space, as the episode manifest describes it."""
    frame_history: PositiveInt = 1
    """Frames the encoder sees for one step (1: a single frame)."""
    recipe: str = ""
    """Name of the recipe (`torchwm.wm.recipes`) that trained the model; empty if none."""
    planning: PlanningDefaults | None = None
    """How the model plans: its recipe's spec (written into the checkpoint as its ``to_dict()`` and read back
    as a `PlanningDefaults`); None: none recorded, and consumers use their own defaults."""
    proprio: tuple[int, ...] = ()
    """Indices of the recorded state vector (``info["state"]`` or a state observation) the model takes as
    proprioception, in this order (empty: none)."""

    @classmethod
    def from_checkpoint_config(cls, raw: dict[str, Any]) -> DataFacts:
        """From a checkpoint's ``config.json``; checkpoints written before the ``data`` section existed give
        what they knew (environment id and action space, frame skip 1). The planning spec is read by
        `read_planning` (a record without one, ``null`` or ``{}``, gives None)."""
        data = raw.get("data")
        if data is None:
            return cls(env_id=raw.get("env_id"), action_space=raw.get("action_space"))
        known = {f.name for f in dataclasses.fields(cls)}
        fields = {k: v for k, v in data.items() if k in known}
        return cls.from_dict({**fields, "planning": read_planning(data.get("planning"))})


class LatentHead(nn.Module):
    """Patch tokens of one step [B, g*g, De] -> per-step latent [B, K, D]: each region of the patch grid pooled
    (``mean``: its tokens' average, [De]; ``patches``: its r*r tokens side by side, [r*r*De]), then projected
    and layer-normed.

    ``mean`` keeps which region the agent is in and little of where inside it: on the built-in arenas (an agent
    of ~4 pixels, regions of 32) the latent distance to a goal was nearly flat across the goal's quadrant, so a
    planner reached the quadrant and not the goal (`benchmarks/oracle_planning.py --learned-cost`). ``patches``
    lets the projection see which patch of the region holds what.
    """

    feature_mean: torch.Tensor  # [K, F] (a buffer set from data)
    feature_scale: torch.Tensor  # [] (a buffer set from data)

    def __init__(
        self, grid: int, embed_dim: int, latent_grid: int, latent_dim: int, pooling: Pooling = "mean"
    ) -> None:
        super().__init__()
        if grid % latent_grid:
            raise ValueError(f"latent_grid={latent_grid} must divide the encoder's patch grid {grid}")
        if pooling not in ("mean", "patches"):
            raise ValueError(f"pooling must be 'mean' or 'patches', got {pooling!r}")
        self.grid, self.latent_grid, self.pooling = grid, latent_grid, pooling
        self.region = grid // latent_grid
        features = embed_dim * (self.region**2 if pooling == "patches" else 1)
        self.proj = nn.Linear(features, latent_dim)
        # What the projection sees is (pooled - feature_mean) / feature_scale, set from data by
        # `WorldModel.set_feature_stats` (identity until then).
        self.register_buffer("feature_mean", torch.zeros(latent_grid**2, features))
        self.register_buffer("feature_scale", torch.ones(()))

    def pool(self, tokens: torch.Tensor) -> torch.Tensor:
        """Patch tokens [B, g*g, De] -> pooled regions [B, K, F] (no parameters; F = De, or r*r*De)."""
        if self.pooling == "patches":
            return rearrange(
                tokens, "b (gh r1 gw r2) d -> b (gh gw) (r1 r2 d)", gh=self.latent_grid, r1=self.region, r2=self.region
            )
        x = F.adaptive_avg_pool2d(rearrange(tokens, "b (h w) d -> b d h w", h=self.grid), self.latent_grid)
        return rearrange(x, "b d h w -> b (h w) d")

    def project(self, pooled: torch.Tensor) -> torch.Tensor:
        """Pooled regions [.., K, F] -> latent tokens [.., K, D], centred and scaled, projected, layer-normed."""
        x = self.proj((pooled - self.feature_mean) / self.feature_scale)
        return F.layer_norm(x, x.shape[-1:])

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.project(self.pool(tokens))


class RewardHead(nn.Module):
    """r_t = R(z_t, a_t): a small MLP on the flattened latent and the action."""

    def __init__(self, latent_size: int, action_dim: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_size + action_dim, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, z: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
        """z [..., K, D], a [..., A] -> [...]."""
        return self.net(torch.cat([z.flatten(-2), a], dim=-1)).squeeze(-1)


class ValueHead(nn.Module):
    """V(z_t): a small MLP on the flattened latent, its output in units of ``scale`` (a buffer the trainer sets
    from the data's rewards, so that returns of any size are learnt at the same rate)."""

    scale: torch.Tensor

    def __init__(self, latent_size: int, hidden: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(latent_size, hidden), nn.GELU(), nn.Linear(hidden, hidden), nn.GELU(),
                                 nn.Linear(hidden, 1))  # fmt: skip
        self.register_buffer("scale", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        """z [..., K, D] -> [...]."""
        return self.net(z.flatten(-2)).squeeze(-1) * self.scale


def cpp_compiler_available() -> bool:
    """Whether a C++ compiler is on PATH (what ``torch.compile`` needs on the CPU)."""
    return any(shutil.which(c) for c in ("c++", "g++", "clang++"))


class WorldModel(nn.Module):
    """Encoder + latent head + block-causal dynamics (+ reward head), with EMA targets for training."""

    def __init__(self, jepa_cfg: JEPAConfig, spec: WorldModelSpec, freeze_encoder: bool = True) -> None:
        super().__init__()
        jepa_cfg.validate()
        self.jepa_cfg, self.spec, self.freeze_encoder = jepa_cfg, spec, freeze_encoder
        self.data = DataFacts(frame_history=self.window)
        """What the model was trained on (read from its checkpoint; set by the trainer)."""
        self.encoder: VisionEncoder = build_encoder(jepa_cfg)
        self.head = LatentHead(jepa_cfg.grid_size, jepa_cfg.embed_dim, spec.latent_grid, spec.latent_dim, spec.pooling)
        self.dynamics = DynamicsPredictor(
            spec.latent_dim,
            self.k,
            spec.action_dim,
            spec.width,
            spec.depth,
            spec.heads,
            spec.max_steps,
            spec.proprio_dim,
            spec.residual,
            spec.action_token,
            spec.mlp_ratio,
        )
        self.reward_head = RewardHead(self.k * spec.latent_dim, spec.action_dim) if spec.reward_head else None
        self.value_head = ValueHead(self.k * spec.latent_dim) if spec.value_head else None
        self.target_value_head = None if self.value_head is None else copy.deepcopy(self.value_head).requires_grad_(False)
        self.target_head = copy.deepcopy(self.head).requires_grad_(False)
        self.target_encoder = None if freeze_encoder else copy.deepcopy(self.encoder).requires_grad_(False)
        if freeze_encoder:
            self.encoder.requires_grad_(False)
        self._compiled_rollout: Callable[..., tuple[torch.Tensor, torch.Tensor | None]] | None = None

    def compile_rollout(self, enabled: bool = True, options: dict[str, Any] | None = None) -> WorldModel:
        """Run `rollout` and `rollout_candidates` through ``torch.compile`` (``enabled=False``: eager again).

        A planning rollout is many tiny steps, where eager PyTorch spends much of its time launching separate
        kernels for every layer norm, GELU, softmax and residual add; inductor fuses them. The numbers agree with
        eager to ~1e-5. The first call of each new shape compiles (tens of seconds on 2 cores; a few seconds once
        torch's on-disk cache holds it), so it pays in a control loop that plans many times with one shape, not
        for a single call. On the CPU it needs a C++ compiler on PATH. ``options`` go to inductor
        (``torch.compile(options=...)``); by default its C++ wrapper (``{"cpp_wrapper": True}``), which launches
        the kernels from C++ instead of Python. Do not call a compiled model under a dispatch mode such as
        ``FlopCounterMode``: torch then falls back to eager for good.
        """
        if not enabled:
            self._compiled_rollout = None
            return self
        if self.device.type == "cpu" and not cpp_compiler_available():
            raise RuntimeError(
                "torch.compile on the CPU needs a C++ compiler (c++, g++ or clang++) on PATH and none was found: "
                "install one (e.g. `apt install g++`) or plan without compiling (compile=False)"
            )
        options = {"cpp_wrapper": True} if options is None else options
        self._compiled_rollout = torch.compile(self._rollout, dynamic=False, options=options)
        return self

    # --- checkpoints ------------------------------------------------------------------------
    def checkpoint_config(self, **sections: Any) -> dict[str, Any]:
        """The ``config.json`` of this model: its shape, what it was trained on, and any extra sections."""
        return {
            "kind": "world_model",
            "jepa": self.jepa_cfg.to_dict(),
            "spec": self.spec.to_dict(),
            "freeze_encoder": self.freeze_encoder,
            "data": self.data.to_dict(),
            **sections,
        }

    def save_pretrained(self, path: str | Path, trainer_state: dict[str, Any] | None = None, **sections: Any) -> Path:
        """Write this model as a checkpoint directory (atomically); `from_pretrained` reads it back."""
        return save_checkpoint(path, self.checkpoint_config(**sections), self.state_dict(), trainer_state)

    @classmethod
    def from_pretrained(cls, path: str | Path, device: str | torch.device = "cpu") -> WorldModel:
        """Rebuild a world model from its checkpoint (or run) directory, in eval mode, on ``device`` (``auto``:
        CUDA where available, else the CPU)."""
        ckpt = resolve_checkpoint(path)
        raw = read_config(ckpt)
        if raw.get("kind") != "world_model":
            raise ValueError(f"{ckpt} holds a {raw.get('kind', 'unknown')!r} checkpoint, not a world model")
        try:
            # Checkpoints written before WorldModelSpec.residual existed hold direct (non-residual) predictors.
            jepa_cfg = JEPAConfig.from_dict(raw["jepa"])
            spec = WorldModelSpec(**{"residual": False, **raw["spec"]})
            freeze = bool(raw["freeze_encoder"] if "freeze_encoder" in raw else raw["train"]["freeze_encoder"])
            data = DataFacts.from_checkpoint_config(raw)
        except (KeyError, TypeError, ValueError) as err:  # a missing section, an unknown or invalid field
            raise ValueError(
                f"{ckpt / CONFIG_FILE} does not describe a world model this code builds ({type(err).__name__}: {err})"
            ) from err
        model = cls(jepa_cfg, spec, freeze)
        load_state_checked(model, load_weights(ckpt), ckpt)
        model.data = dataclasses.replace(data, frame_history=model.window)
        return model.to(resolve_device(device)).eval()

    @property
    def k(self) -> int:
        """Tokens per step."""
        return self.spec.latent_grid**2

    @property
    def window(self) -> int:
        """Frames the encoder sees for one step: 1 (spatial) or the clip length (temporal)."""
        return 1 if self.jepa_cfg.encoder == "spatial" else self.jepa_cfg.num_frames

    # --- encoding ---------------------------------------------------------------------------
    def _step_tokens(self, frames: torch.Tensor, encoder: VisionEncoder, history: int = 0) -> torch.Tensor:
        """uint8 frames [B, history + T, H, W, C] -> patch tokens of the last T steps [B, T, g*g, De].

        The ``history`` frames before the steps only fill a temporal encoder's clips (a trainer hands them over so
        that a sequence's first steps see the frames that really came before them, as in an episode)."""
        extra = max(0, history - (self.window - 1))  # frames no clip reaches
        frames, history = frames[:, extra:], history - extra
        b, t = frames.shape[0], frames.shape[1] - history
        clips = prepare_frames(frames, self.jepa_cfg.image_size)  # (B, history + T, C, S, S)
        if self.window == 1:
            tokens = encoder(rearrange(clips[:, history:], "b t c h w -> (b t) 1 c h w"))
        else:  # a sliding clip ending at each step, the first frame repeated before the start
            pad = clips[:, :1].expand(-1, self.window - 1 - history, -1, -1, -1)
            windows = torch.cat([pad, clips], dim=1).unfold(1, self.window, 1)  # (B, T, C, S, S, window)
            windows = rearrange(windows, "b t c h w n -> (b t) n c h w")
            tokens = encoder(windows)[:, -encoder.tokens_per_step :]  # the last time step's tokens
        return rearrange(tokens, "(b t) n d -> b t n d", b=b, t=t)

    def check_frames(self, frames: Any) -> torch.Tensor:
        """Validate and convert frames to a uint8 tensor [B, T, H, W, C] on the model's device."""
        x = torch.as_tensor(np.asarray(frames) if not isinstance(frames, torch.Tensor) else frames)
        c = self.jepa_cfg.in_channels
        if x.ndim != 5 or x.shape[-1] != c:
            raise ValueError(f"expected frames [B, T, H, W, {c}], got shape {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            raise TypeError(f"expected uint8 frames (0..255) as environments give them, got dtype {x.dtype}")
        return x.to(self.device)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def encode(self, frames: Any) -> torch.Tensor:
        """uint8 frames [B, T, H, W, C] -> per-step latents z [B, T, K, D] (EMA target encoder and head: the
        space that the dynamics were trained to predict in)."""
        with torch.inference_mode():
            encoder = self.target_encoder if self.target_encoder is not None else self.encoder
            tokens = self._step_tokens(self.check_frames(frames), encoder)
            return rearrange(self.target_head(self._flat(tokens)), "(b t) k d -> b t k d", b=tokens.shape[0])

    def _flat(self, tokens: torch.Tensor) -> torch.Tensor:
        return tokens.flatten(0, 1) if tokens.ndim == 4 else tokens

    # --- dynamics ---------------------------------------------------------------------------
    def to_actions(self, actions: torch.Tensor) -> torch.Tensor:
        """Actions as the model sees them: float [.., A]; discrete choices [..] become one-hot."""
        if self.spec.discrete_actions:
            n = self.spec.action_dim
            if actions.dtype.is_floating_point and actions.shape[-1:] == (n,):
                return actions
            index = actions.long()
            whole = torch.equal(index.to(actions.dtype), actions)  # no fractional choice
            if index.numel() and not (whole and 0 <= index.min() and index.max() < n):
                raise ValueError(
                    f"expected discrete actions as indices in [0, {n}) or one-hot [..., {n}], got shape "
                    f"{tuple(actions.shape)} with values in [{actions.min().item()}, {actions.max().item()}]"
                )
            return F.one_hot(index, n).float()
        if actions.shape[-1] != self.spec.action_dim:
            raise ValueError(
                f"expected actions [..., {self.spec.action_dim}], got shape {tuple(actions.shape)}"
            )
        return actions.float()

    def step(
        self, z_history: torch.Tensor, actions: torch.Tensor, proprio: torch.Tensor | None = None,
        return_proprio: bool = False,
    ) -> Any:
        """z_history [B, T, K, D] and the actions taken after each step [B, T, A] -> z_{T} [B, K, D].

        A model with proprioception (``spec.proprio_dim > 0``) needs ``proprio [B, T, P]`` of every step;
        ``return_proprio`` also returns the predicted next proprioception [B, P]: (z, p)."""
        with torch.inference_mode():
            z_next, p_next, _ = self.dynamics.forward_full(
                z_history, self.to_actions(actions), None, self._proprio(proprio, z_history.shape[:2])
            )
            if return_proprio:
                return z_next[:, -1], None if p_next is None else p_next[:, -1]
            return z_next[:, -1]

    def _proprio(self, proprio: torch.Tensor | None, steps: tuple[int, ...]) -> torch.Tensor | None:
        """Checked proprioception [B, T, P] for a model that takes it (None for one that does not)."""
        p = self.spec.proprio_dim
        if p == 0:
            if proprio is not None:
                raise ValueError("this world model takes no proprioception (spec.proprio_dim=0); pass proprio=None")
            return None
        if proprio is None:
            raise ValueError(f"this world model takes proprioception: pass proprio [B, T, P] = [{steps[0]}, {steps[1]}, {p}]")
        proprio = torch.as_tensor(proprio, dtype=torch.float32, device=self.device)
        if tuple(proprio.shape) != (*steps, p):
            raise ValueError(f"expected proprio [B, T, P] = {[*steps, p]}, got shape {tuple(proprio.shape)}")
        check_finite("proprio", proprio)
        return proprio

    def rollout(
        self, z_context: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None, return_proprio: bool = False,
    ) -> Any:
        """Imagine H steps: z_context [B, K, D] or [B, Tc, K, D], actions [B, H, A] -> z [B, H, K, D].

        ``past_actions`` [B, Tc-1, A] are the actions taken between the context steps (zeros if not given).
        Step h reuses the keys and values of steps < h (one step of compute per step). A model with
        proprioception needs ``proprio`` of the context steps, [B, P] or [B, Tc, P]; its predictions are fed
        back, and ``return_proprio`` returns them too: (z [B, H, K, D], p [B, H, P]).
        """
        with torch.inference_mode():
            check_finite("rollout's z_context", z_context)
            check_finite("rollout's actions", torch.as_tensor(actions, dtype=torch.float32))
            z = z_context.unsqueeze(1) if z_context.ndim == 3 else z_context
            acts = self.to_actions(actions)
            if acts.ndim != 3 or acts.shape[0] != z.shape[0]:
                raise ValueError(f"expected actions [B={z.shape[0]}, H, A], got shape {tuple(actions.shape)}")
            if proprio is not None and proprio.ndim == 2:
                proprio = proprio[:, None]
            z_pred, p_pred = self._candidates(z, acts[:, None], past_actions, proprio)
            if return_proprio:
                return z_pred[:, 0], None if p_pred is None else p_pred[:, 0]
            return z_pred[:, 0]

    def rollout_candidates(
        self, z_context: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None = None,
        proprio: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Imagine S candidate futures of each of B contexts: z_context [B, Tc, K, D], actions [B, S, H, A],
        past_actions [B, Tc-1, A] (zeros if not given) -> z [B, S, H, K, D].

        The first Tc-1 context steps do not depend on the candidate, so they pass through the dynamics once per
        context, not once per candidate; their keys and values are shared by the S candidates that continue it.
        A model with proprioception needs ``proprio [B, Tc, P]`` of the context steps.
        """
        with torch.inference_mode():
            check_finite("rollout's z_context", z_context)
            check_finite("rollout's actions", torch.as_tensor(actions, dtype=torch.float32))
            return self._candidates(z_context, actions, past_actions, proprio)[0]

    def _candidates(
        self, z_context: torch.Tensor, actions: torch.Tensor, past_actions: torch.Tensor | None,
        proprio: torch.Tensor | None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`rollout_candidates` after its finite checks: validate shapes, convert actions, roll out."""
        if z_context.ndim != 4:
            raise ValueError(f"expected z_context [B, Tc, K, D], got shape {tuple(z_context.shape)}")
        b, tc = z_context.shape[:2]
        acts = self.to_actions(actions)
        if acts.ndim != 4 or acts.shape[0] != b:
            raise ValueError(f"expected actions [B={b}, S, H, A], got shape {tuple(actions.shape)}")
        if past_actions is None:
            past = acts.new_zeros(b, tc - 1, acts.shape[-1])
        else:
            past = self.to_actions(past_actions)
            if past.shape[:2] != (b, tc - 1):
                raise ValueError(
                    f"expected past_actions [B={b}, Tc-1={tc - 1}, A] for a context of {tc} steps, "
                    f"got shape {tuple(past_actions.shape)}"
                )
        rollout = self._rollout if self._compiled_rollout is None else self._compiled_rollout
        return rollout(z_context, acts, past, self._proprio(proprio, (b, tc)))

    def _rollout(
        self, z: torch.Tensor, actions: torch.Tensor, past: torch.Tensor, proprio: torch.Tensor | None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """z [B, Tc, K, D], one-hot/float actions [B, S, H, A], past [B, Tc-1, A], proprio [B, Tc, P] or None
        -> (z [B, S, H, K, D], proprio [B, S, H, P] or None)."""
        b, tc = z.shape[:2]
        s, horizon = actions.shape[1:3]
        steps = tc + horizon - 1
        if tc > 1:  # the shared context, once per row of B
            _, _, cache = self.dynamics.forward_full(z[:, :-1], past, None, None if proprio is None else proprio[:, :-1])
            buffer = KVBuffer.of(cache, steps * self.dynamics.tokens_per_block, repeat=s)
        else:
            buffer = self.dynamics.empty_buffer(b * s, steps, z)
        flat = rearrange(actions, "b s h a -> (b s) h a")
        current = z[:, -1:].repeat_interleave(s, dim=0)  # (B S, 1, K, D)
        p_now = None if proprio is None else proprio[:, -1:].repeat_interleave(s, dim=0)  # (B S, 1, P)
        out, out_p = [], []
        for h in range(horizon):
            current, p_now = self.dynamics.decode_full(current, flat[:, h : h + 1], buffer, p_now)
            out.append(current[:, 0])
            if p_now is not None:
                out_p.append(p_now[:, 0])
        z_out = rearrange(torch.stack(out, dim=1), "(b s) h k d -> b s h k d", b=b)
        p_out = rearrange(torch.stack(out_p, dim=1), "(b s) h p -> b s h p", b=b) if out_p else None
        return z_out, p_out

    @property
    def discount(self) -> float:
        """Discount per model step of the value and of a planner's return that adds it."""
        return self.spec.discount

    def value(self, z: torch.Tensor) -> torch.Tensor:
        """Predicted discounted return from latents z [.., K, D] on -> [..] (the EMA target of the value head)."""
        if self.target_value_head is None:
            raise ValueError("this world model was trained without a value head (WorldModelSpec.value_head=False)")
        with torch.inference_mode():
            return self.target_value_head(z)

    def reward(self, z: torch.Tensor, actions: torch.Tensor) -> torch.Tensor:
        """Predicted reward of taking actions [.., A] in latents z [.., K, D] -> [..]."""
        if self.reward_head is None:
            raise ValueError(
                "this world model was trained without a reward head (WorldModelSpec.reward_head=False)"
            )
        with torch.inference_mode():
            return self.reward_head(z, self.to_actions(actions))
