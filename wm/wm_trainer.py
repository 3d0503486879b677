"""Training the action-conditioned world model on recorded rollouts.

Loss of one step, on sequences of ``seq_len`` steps (frames with the actions that followed them):
  teacher forcing  — block-causal predictions of z_1..z_{T-1} from the true z_0..z_{T-2};
  rollout          — z_1..z_H predicted autoregressively from z_0, each prediction fed back;
  variance/covariance on the online latents (against collapse);
  reward           — r_t from (z_t, a_t), where the data has rewards and the head is on.
Targets are the EMA latent head's (and EMA encoder's, when the encoder is trained) latents.
Batches are drawn by a generator seeded by (seed, step), so a resumed run repeats the same steps.
"""

from __future__ import annotations

import dataclasses
import json
import pickle
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset
from torchwm.wm.checkpoint import (
    jepa_config_of,
    load_state_checked,
    load_weights,
    read_config,
    resolve_checkpoint,
)
from torchwm.wm.config import JEPAConfig
from torchwm.wm.config_base import Config, Fraction, NonNegFloat, NonNegInt, PositiveFloat, PositiveInt, Range
from torchwm.wm.device import resolve_device
from torchwm.wm.episodes import action_size, recorded_frame_skip
from torchwm.wm.loop import LoopSettings, TrainingLoop
from torchwm.wm.losses import collapse_stats, covariance_loss, variance_loss
from torchwm.wm.planning_spec import PlanningDefaults
from torchwm.wm.rollouts import RolloutClips
from torchwm.wm.runs import Overwrite
from torchwm.wm.schedule import linear_ramp
from torchwm.wm.wm_training import (
    autoregressive,
    init_value_scale,
    latents_from_pooled,
    pooled_features,
    set_feature_stats,
    teacher_forced,
    training_latents,
    update_targets,
    value_loss,
)
from torchwm.wm.world_model import DataFacts, DynamicsShape, WorldModel, WorldModelSpec
from tqdm.auto import tqdm

FeatureCache = Literal["pooled", "latents", "frames"]
"""What a trainer caches per frame: a frozen encoder's pooled regions (the head trains) or latents (it is frozen
too), or, for an encoder that trains, the decoded frames themselves."""


@dataclass
class WorldModelConfig(Config):
    """How to build and train a world model on an episode directory."""

    RUN_NEUTRAL: ClassVar[frozenset[str]] = Config.RUN_NEUTRAL | {"planning"}
    """How the model plans travels with its checkpoints but does not change the training."""

    root_path: str = "./episodes"
    """Episode directory written by `envs.record` (manifest.json + videos + npz)."""
    encoder_checkpoint: str = ""
    """JEPA checkpoint (or run directory) whose encoder to load; or a world model's, whose encoder and latent
    head are loaded and the head kept fixed (train the dynamics on a jointly learned latent: the second phase
    of the two-phase recipe); empty: a new encoder from ``encoder_preset``."""
    init_checkpoint: str = ""
    """A world-model checkpoint (or run directory) whose every weight (encoder, latent head, dynamics, reward and
    value heads) the model starts from, built as ``encoder_checkpoint`` says: training continues on the episodes
    of ``root_path`` (the rounds of ``torchwm learn``). The proprioception's mean and spread are those of
    ``root_path``'s episodes, as for a new model (the dynamics adapt to them within the steps); the value's units
    and a frozen head's input statistics stay the checkpoint's. Empty: the dynamics start new."""
    encoder_preset: str = "tiny"
    """`JEPAConfig` preset for a new encoder (used when ``encoder_checkpoint`` is empty)."""
    freeze_encoder: bool = True
    """Keep the encoder fixed (requires ``encoder_checkpoint``); False trains it jointly with an EMA target."""
    frame_step: PositiveInt = 1
    """Environment steps per model step (frame skip); actions of skipped steps are concatenated."""
    seq_len: PositiveInt = 9
    """Steps per training sequence (at least predict_horizon + 1)."""
    shape: DynamicsShape = field(default_factory=DynamicsShape)
    """The world model's latent and dynamics shape (``--shape.width 64``, or ``shape: {width: 64}`` in a file)."""
    predict_horizon: PositiveInt = 8
    """Autoregressive rollout length of the loss, and the default rollout length."""
    teacher_forcing_weight: NonNegFloat = 1.0
    """Weight of the teacher-forced prediction loss."""
    rollout_weight: NonNegFloat = 1.0
    """Weight of the autoregressive rollout loss."""
    var_weight: NonNegFloat = 1.0
    """Weight of the variance hinge on the online latents."""
    cov_weight: NonNegFloat = 0.05
    """Weight of the covariance penalty on the online latents."""
    smooth_weight: NonNegFloat = 0.0
    """Weight of the temporal smoothness term, the mean squared change of the online latent between steps
    (PLDM's time-similarity loss: with a jointly trained encoder it keeps the variance and covariance
    terms from being met by features that jump when the agent moves a little)."""
    reward_weight: NonNegFloat = 1.0
    """Weight of the reward regression."""
    value_weight: NonNegFloat = 1.0
    """Weight of the value's temporal-difference loss (where ``shape.value_head`` is on)."""
    value_expectile: Annotated[float, Range(gt=0, lt=1)] = 0.7
    """Expectile of the value's TD targets: above 0.5 the value leans towards the better of the recorded
    continuations (IQL's expectile regression on the state value), 0.5 is the behaviour policy's value."""
    proprio: tuple[int, ...] = ()
    """Proprioception: indices of the recorded state vector (``info["state"]`` or a state observation) that the
    dynamics take as an extra token each step and predict (``--proprio 2 --proprio 3``: PointMass's velocity).
    Empty: pixels only. The planning path hands the same entries of each step's state to the model."""
    proprio_weight: NonNegFloat = 1.0
    """Weight of the proprioception prediction (teacher-forced and rollout, in units of its spread)."""
    steps: PositiveInt = 2000
    """Optimiser steps."""
    batch_size: PositiveInt = 32
    """Sequences per step."""
    num_workers: NonNegInt = 0
    """DataLoader worker processes decoding the video batches ahead of the step (0: decoded in the step).
    The batches are the same either way; a frozen encoder's cached features never need workers."""
    frame_cache_gib: NonNegFloat = 2.0
    """An encoder that trains sees the episodes' frames decoded once and kept in memory when they fit in this many
    GiB (0: decode every batch from video). The same batches either way; decoding each batch inline took 15% of
    the two-phase recipe's phase-1 step on 2 cores, and decord's random access is slow on long keyframe
    intervals. Only with ``num_workers`` 0 (workers decode ahead instead)."""
    learning_rate: PositiveFloat = 1e-3
    """Peak AdamW learning rate."""
    warmup_steps: NonNegInt = 100
    """Linear warm-up steps."""
    weight_decay: NonNegFloat = 0.01
    """AdamW weight decay."""
    grad_clip: NonNegFloat = 1.0
    """Global gradient-norm clip (0 disables)."""
    ema_start: Fraction = 0.99
    """EMA momentum of the targets at the first step."""
    ema_end: Fraction = 0.999
    """EMA momentum of the targets at the last step."""
    seed: int = 0
    """Seed of batches and initialisation."""
    device: str = "auto"
    """``auto`` (CUDA if available, else CPU) or a torch device string."""
    output_dir: str = "runs/world_model"
    """Directory for checkpoints and logs."""
    log_interval: PositiveInt = 20
    """Steps between log rows."""
    checkpoint_interval: PositiveInt = 500
    """Steps between checkpoints (one is always written at the end)."""
    resume: bool = True
    """Continue from the latest checkpoint in ``output_dir``."""
    progress: bool = True
    """Show a tqdm progress bar."""
    overwrite: Overwrite = "never"
    """An existing run folder that holds another run: ``never`` refuses it (a matching run continues), ``move``
    moves it aside, ``delete`` deletes it."""
    recipe: str = ""
    """Name of the recipe (`torchwm.wm.recipes`) this config belongs to, recorded in the checkpoint. Empty: none."""
    planning: PlanningDefaults | None = None
    """How the trained world model plans, recorded in every checkpoint (a recipe passes its own; None: none
    recorded, and consumers use their own defaults)."""

    def check(self) -> None:
        """The rules that tie fields together (each field's own type and range come from its annotation)."""
        if self.seq_len < self.predict_horizon + 1:
            self.fail("seq_len", self.seq_len, f">= predict_horizon + 1 = {self.predict_horizon + 1}")
        if self.freeze_encoder and not self.encoder_checkpoint:
            raise ValueError(
                "WorldModelConfig.freeze_encoder=True needs encoder_checkpoint (a pretrained JEPA); "
                "set encoder_checkpoint or freeze_encoder=False to train the encoder jointly"
            )


def data_facts(cfg: WorldModelConfig, dataset: RolloutClips, window: int) -> DataFacts:
    """What a world model trained by ``cfg`` on ``dataset`` was trained on (see `DataFacts`)."""
    manifest = dataset.manifest
    return DataFacts(
        env_id=manifest.get("env_id"),
        imports=tuple(manifest.get("imports", ())),
        frame_skip=recorded_frame_skip(manifest) * cfg.frame_step,
        frame_shape=tuple(manifest["frame_shape"]),
        action_space=manifest.get("action_space"),
        frame_history=window,
        recipe=cfg.recipe,
        planning=cfg.planning,
        proprio=tuple(cfg.proprio),
    )


def build_world_model(cfg: WorldModelConfig, dataset: RolloutClips) -> WorldModel:
    """A world model for the data set's actions, with the encoder the config names, and every weight of
    ``init_checkpoint`` where one is given."""
    model = _new_world_model(cfg, dataset)
    if cfg.init_checkpoint:
        ckpt = resolve_checkpoint(cfg.init_checkpoint)
        load_state_checked(model, load_weights(ckpt), ckpt)
    return model


def _new_world_model(cfg: WorldModelConfig, dataset: RolloutClips) -> WorldModel:
    """A new world model for the data set's actions, with the encoder the config names."""
    desc = dataset.manifest["action_space"]
    spec = WorldModelSpec(
        action_dim=action_size(desc) * cfg.frame_step,
        discrete_actions=False,  # the data set already one-hot encodes discrete actions
        max_steps=max(64, cfg.seq_len + cfg.predict_horizon),
        predict_horizon=cfg.predict_horizon,
        proprio_dim=len(cfg.proprio),
        **dataclasses.asdict(cfg.shape),
    )
    if cfg.encoder_checkpoint:
        ckpt = resolve_checkpoint(cfg.encoder_checkpoint)
        jepa_cfg = jepa_config_of(ckpt)
        model = WorldModel(jepa_cfg, spec, cfg.freeze_encoder)
        weights = load_weights(ckpt)
        # `encode` reads the EMA targets, so those are the weights to carry over (a frozen world model has none).
        prefix = "target_encoder." if any(k.startswith("target_encoder.") for k in weights) else "encoder."
        load_state_checked(model.encoder, _under(weights, prefix), ckpt)
        source = read_config(ckpt)
        if source.get("kind") == "world_model":
            _check_same_latent(cfg, source.get("spec", {}), ckpt)
            load_state_checked(model.head, _under(weights, "target_head."), ckpt)
            model.target_head.load_state_dict(model.head.state_dict())
            model.head.requires_grad_(False)
        if model.target_encoder is not None:
            model.target_encoder.load_state_dict(model.encoder.state_dict())
        return model
    return WorldModel(JEPAConfig.preset(cfg.encoder_preset), spec, freeze_encoder=False)


def _check_same_latent(cfg: WorldModelConfig, spec: dict[str, Any], ckpt: Path) -> None:
    """A world model's latent head is reused as is, so the new model must ask for the same latent shape."""
    theirs = (spec.get("latent_grid"), spec.get("latent_dim"), spec.get("pooling", "mean"))
    ours = (cfg.shape.latent_grid, cfg.shape.latent_dim, cfg.shape.pooling)
    if theirs != ours:
        raise ValueError(
            f"encoder_checkpoint {ckpt} is a world model with latent_grid={theirs[0]}, latent_dim={theirs[1]}, "
            f"pooling={theirs[2]!r}; its latent head is reused, so set shape.latent_grid, shape.latent_dim and "
            f"shape.pooling to those (got {ours[0]}, {ours[1]}, {ours[2]!r})"
        )


def _under(weights: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors whose names start with ``prefix``, the prefix removed."""
    return {k[len(prefix) :]: v for k, v in weights.items() if k.startswith(prefix)}


def world_model_loss(
    model: WorldModel, cfg: WorldModelConfig, batch: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Every loss term of one batch (``total`` is their weighted sum)."""
    actions = batch["actions"]
    if "latents" in batch:  # frozen encoder and head: the cached latents are the inputs and the targets
        z = z_tgt = batch["latents"]
    elif "pooled" in batch:  # frozen encoder: cached pooled regions of each frame
        z, z_tgt = latents_from_pooled(model, batch["pooled"])
    else:
        # EMA momentum 0 all the way: the targets are the online latents, so their second forward pass is skipped.
        online = cfg.ema_start == cfg.ema_end == 0.0
        history = batch["frames"].shape[1] - actions.shape[1]  # frames before the first step (a temporal encoder's)
        z, z_tgt = training_latents(model, batch["frames"], online_targets=online, history=history)  # (B, T, K, D)
    proprio = batch.get("proprio")  # (B, T, P) or None
    tf, tf_p = teacher_forced(model, z, actions, proprio)
    terms = {"teacher_forcing": F.mse_loss(tf, z_tgt[:, 1:])}
    h = cfg.predict_horizon
    ar, ar_p = autoregressive(model, z[:, 0], actions[:, :h], h, None if proprio is None else proprio[:, 0])
    terms["rollout"] = F.mse_loss(ar, z_tgt[:, 1 : h + 1])
    # One sample per step, features = all K*D numbers: each token's dimensions must vary across states.
    # (Flattening tokens into samples instead lets the spread *between* tokens, e.g. which quadrant of a
    # static arena a token covers, satisfy the variance term while the agent's state is ignored.)
    flat = z.reshape(-1, z.shape[-2] * z.shape[-1])
    terms["variance"] = variance_loss(flat)
    terms["covariance"] = covariance_loss(flat)
    terms["smoothness"] = (z[:, 1:] - z[:, :-1]).pow(2).mean()
    total = (
        cfg.teacher_forcing_weight * terms["teacher_forcing"]
        + cfg.rollout_weight * terms["rollout"]
        + cfg.var_weight * terms["variance"]
        + cfg.cov_weight * terms["covariance"]
        + cfg.smooth_weight * terms["smoothness"]
    )
    if proprio is not None and tf_p is not None and ar_p is not None:
        scale = model.dynamics.proprio_scale
        terms["proprio"] = F.mse_loss(tf_p / scale, proprio[:, 1:] / scale) + F.mse_loss(
            ar_p / scale, proprio[:, 1 : h + 1] / scale
        )
        total = total + cfg.proprio_weight * terms["proprio"]
    if model.reward_head is not None and "rewards" in batch:
        pred_r = model.reward_head(z.detach(), actions)
        terms["reward"] = F.mse_loss(pred_r, batch["rewards"])
        total = total + cfg.reward_weight * terms["reward"]
    if model.value_head is not None and "rewards" in batch:
        terms["value"] = value_loss(model, z_tgt.detach(), batch["rewards"], cfg.value_expectile)
        total = total + cfg.value_weight * terms["value"]
    terms["total"] = total
    return terms


class WorldModelTrainer:
    """Train (or resume) a world model as a config says; `run` returns the final checkpoint path.

    The trainer is the `TrainingTask` of `TrainingLoop` (batches, loss, EMA update, checkpoint config); the loop
    owns the schedule, clipping, NaN stop, logging, checkpoints and resume."""

    def __init__(self, cfg: WorldModelConfig) -> None:
        self.cfg = cfg.validate()
        self.device = resolve_device(cfg.device)
        torch.manual_seed(cfg.seed)
        self.dataset = RolloutClips(cfg.root_path, cfg.seq_len, cfg.frame_step)
        self.model = build_world_model(cfg, self.dataset).to(self.device)
        self.model.data = data_facts(cfg, self.dataset, self.model.window)
        if cfg.proprio:
            self._set_proprio_stats()
        if self.model.value_head is not None and not cfg.init_checkpoint:
            init_value_scale(self.model, [e.rewards for e in self.dataset.episodes], cfg.frame_step)
        self.module = self.model  # what `TrainingLoop` saves and restores
        params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        self.run_dir = Path(cfg.output_dir)
        self.step = 0
        self.last_terms: dict[str, float] = {}
        self.features: list[torch.Tensor] = []
        self.feature_kind: FeatureCache = "pooled"
        if cfg.freeze_encoder:
            # A head loaded from a world model keeps the input statistics it was trained with.
            self._cache_features(set_stats=any(p.requires_grad for p in self.model.head.parameters()))
        else:
            self._cache_frames()
            self._sample_feature_stats()

    def _set_proprio_stats(self) -> None:
        """Check that every episode recorded the state entries ``cfg.proprio`` names; centre and scale the
        dynamics' proprioception on their mean and spread over the data set."""
        dims = list(self.cfg.proprio)
        states = [e.states for e in self.dataset.episodes]
        if any(s is None for s in states):
            raise ValueError(
                f"proprio={self.cfg.proprio} needs recorded states, but episodes in {self.cfg.root_path} have none "
                "(the recorder stores info['state'] or a state observation); record an env that gives one"
            )
        size = min(s.shape[1] for s in states if s is not None)
        if max(dims) >= size or min(dims) < 0:
            self.cfg.fail("proprio", self.cfg.proprio, f"indices of the recorded state vector (size {size})")
        values = torch.from_numpy(np.concatenate([s[:, dims] for s in states if s is not None]))
        self.model.dynamics.proprio_mean.copy_(values.mean(0))
        self.model.dynamics.proprio_scale.copy_(values.std(0).clamp_min(1e-6))

    def _cache_features(self, set_stats: bool = True) -> None:
        """Encode every frame once with the frozen encoder: pooled regions [L+1, K, F] per episode; centre
        the latent head's input on their statistics (``set_stats``). Where the head is frozen too (the second
        phase of the two-phase recipe), cache its latents [L+1, K, D] instead: every step would project the same
        features again (the same numbers: a row's projection does not depend on the rows beside it, checked to
        the bit on the recipe's phase 2), and the latents are F / D times smaller (32 in the recipe)."""
        self.features = []
        bar = tqdm(
            self.dataset.episodes, disable=not self.cfg.progress, desc="encoding frames", unit="episode"
        )
        for e in range(len(self.dataset.episodes)):
            self.features.append(self._pooled_in_chunks(self._episode_frames(e)))
            bar.update(1)
        bar.close()
        if set_stats:
            set_feature_stats(self.model, torch.cat(self.features))
        if not any(p.requires_grad for p in self.model.head.parameters()):
            with torch.no_grad():  # the head and its EMA copy are equal while the head is frozen
                self.features = [self.model.target_head.project(f) for f in self.features]
            self.feature_kind = "latents"

    def _cache_frames(self) -> None:
        """Decode every episode's frames once [L+1, H, W, C] uint8, when they fit in ``frame_cache_gib``."""
        if self.cfg.num_workers > 0 or self.cfg.frame_cache_gib == 0:
            return
        first = self.dataset.video(0).get([0])
        frames = sum(len(e.rewards) + 1 for e in self.dataset.episodes)
        need = frames * first[0].nbytes / 2**30
        if need > self.cfg.frame_cache_gib:
            warnings.warn(
                f"decoding each batch from video: the {frames} frames need {need:.1f} GiB, over frame_cache_gib="
                f"{self.cfg.frame_cache_gib} (raise it to keep them in memory, or set num_workers to decode ahead)",
                stacklevel=2,
            )
            return
        bar = tqdm(self.dataset.episodes, disable=not self.cfg.progress, desc="decoding frames", unit="episode")
        for e in range(len(self.dataset.episodes)):
            self.features.append(self._episode_frames(e))
            bar.update(1)
        bar.close()
        self.feature_kind = "frames"

    def _episode_frames(self, episode: int) -> torch.Tensor:
        """Every frame of one episode, decoded in order: uint8 [L+1, H, W, C]."""
        video = self.dataset.video(episode)
        return torch.from_numpy(video.get(list(range(len(video)))))

    def _sample_feature_stats(self, frames_per_episode: int = 8, max_frames: int = 4096) -> None:
        """Centre the latent head's input on the initial encoder's pooled regions of frames spread over the data
        set (a fixed affine map: the jointly trained encoder moves away from it, the head adapts). The frames
        come from the frame cache when there is one (the same frames as decoding them).

        Without it, a new or pretrained encoder's region means differ between states by a tiny fraction of
        their size, the latents start collapsed, and the variance term takes hundreds of steps to undo it.
        """
        gen = torch.Generator().manual_seed(self.cfg.seed)
        per = max(1, min(frames_per_episode, max_frames // max(1, len(self.dataset.episodes))))
        pooled = []
        cached = self.feature_kind == "frames"
        for e in range(len(self.dataset.episodes)):
            video = None if cached else self.dataset.video(e)
            length = len(self.features[e]) if video is None else len(video)
            picks = torch.randperm(length, generator=gen)[:per].sort().values.tolist()
            # (n, H, W, C): each frame a one-step clip
            frames = self.features[e][picks] if video is None else torch.from_numpy(video.get(picks))
            pooled.append(pooled_features(self.model, frames[:, None])[:, 0])
        set_feature_stats(self.model, torch.cat(pooled))

    def _pooled_in_chunks(self, frames: torch.Tensor, chunk: int = 256) -> torch.Tensor:
        """Region means of one episode's frames [L+1, H, W, C] -> [L+1, K, De], ``chunk`` steps at a time.

        Each chunk also sees the window - 1 frames before it, so that a temporal encoder's sliding clip
        at a chunk's first steps holds the true history rather than the repeated first frame.
        """
        out, overlap = [], self.model.window - 1
        for start in range(0, len(frames), chunk):
            lo = max(0, start - overlap)
            out.append(pooled_features(self.model, frames[None, lo : start + chunk])[0, start - lo :])
        return torch.cat(out)

    # --- the step, as `TrainingLoop` calls it ---------------------------------------------------
    def batches(self, start_step: int) -> Iterator[dict[str, torch.Tensor]]:
        """Step i's batch is drawn by a generator seeded by (seed, i), so a resumed run repeats the same steps;
        decoded ahead in ``num_workers`` worker processes when the batches come from video."""
        history = self.model.window - 1 if self.feature_kind == "frames" or not self.features else 0
        sequences = TrainingSequences(self.dataset, self.cfg, self.features, self.feature_kind, history)
        if self.features or self.cfg.num_workers == 0:
            step = start_step
            while True:
                yield {k: v.to(self.device) for k, v in sequences.batch(step).items()}
                step += 1
        loader = DataLoader(_FromStep(sequences, start_step), batch_size=None, num_workers=self.cfg.num_workers,
                            prefetch_factor=2, persistent_workers=False)  # fmt: skip
        for batch in loader:
            yield {k: v.to(self.device, non_blocking=True) for k, v in batch.items()}

    def loss(self, batch: dict[str, torch.Tensor], step: int, log_now: bool) -> dict[str, torch.Tensor]:
        return world_model_loss(self.model, self.cfg, batch)

    def after_update(self, step: int) -> None:
        update_targets(self.model, linear_ramp(step + 1, self.cfg.steps, self.cfg.ema_start, self.cfg.ema_end))

    def checkpoint_config(self) -> dict[str, Any]:
        return self.model.checkpoint_config(train=dataclasses.asdict(self.cfg))

    def check_resume(self, checkpoint: Path) -> None:
        saved = read_config(checkpoint)
        if saved.get("kind") != "world_model" or saved.get("spec") != self.model.spec.to_dict():
            raise ValueError(
                f"cannot resume from {checkpoint}: it holds a {saved.get('kind')!r} checkpoint of another shape "
                f"({saved.get('spec')}); use another output_dir, or overwrite='move' (or 'delete') to start over"
            )

    def extra_logs(self, step: int, log_now: bool) -> dict[str, float]:
        return {}

    # --- running ----------------------------------------------------------------------------------
    def run(self) -> Path:
        """Train (or resume) to ``cfg.steps``; writes ``summary.json`` and returns the final checkpoint."""
        cfg = self.cfg
        settings = LoopSettings.of(
            cfg, cfg.steps, min_learning_rate=cfg.learning_rate * 0.01, desc="world model",
            items_per_step=cfg.batch_size, throughput_name="seqs_per_s", kind="train-world-model",
        )  # fmt: skip
        loop = TrainingLoop(self, self.optimizer, settings)
        result = loop.run()
        self.step, self.last_terms = result.steps, result.last
        assert result.checkpoint is not None  # a single process always writes one
        summary = {
            "steps": result.steps, "loss": result.last, "seconds": result.seconds, "seqs_per_s": result.items_per_s,
            "data_wait_fraction": result.data_wait_fraction, "resumed_from": result.resumed_from,
            "skipped_files": self.dataset.skipped,
            "checkpoint": str(result.checkpoint),
        }  # fmt: skip
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return result.checkpoint


class TrainingSequences:
    """The training batches of a world-model config: step i's ``batch_size`` sequences are drawn by a generator
    seeded by (seed, i), from the frozen encoder's cached features (``kind``: pooled regions, or the frozen
    head's latents) or decoded from video. Picklable without a feature cache, so DataLoader workers can make
    the video batches ahead of the step.

    ``history``: frames handed over before each sequence's first step (a temporal encoder's clip length - 1),
    ``frame_step`` apart like the steps and the episode's first frame repeated before its start, as an
    environment's frame history is padded; the batch's ``frames`` are then [B, history + T, H, W, C]."""

    def __init__(
        self, dataset: RolloutClips, cfg: WorldModelConfig, features: list[torch.Tensor], kind: FeatureCache = "pooled",
        history: int = 0,
    ) -> None:
        self.dataset, self.cfg, self.features, self.kind, self.history = dataset, cfg, features, kind, history

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        """The CPU batch of ``step``."""
        gen = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + step)
        idx = torch.randint(len(self.dataset), (self.cfg.batch_size,), generator=gen).tolist()
        items = [self.cached_item(i) if self.features else self.item(i) for i in idx]
        keys = [k for k in ("frames", "pooled", "latents", "actions", "rewards", "proprio") if k in items[0]]
        return {k: torch.stack([it[k] for it in items]) for k in keys}

    def item(self, index: int) -> dict[str, torch.Tensor]:
        """A training sequence decoded from video, with its proprioception when the config asks for it."""
        item = self.dataset[index]
        if self.history:
            past = self._history_indices(int(item["start"]))
            item["frames"] = torch.cat([torch.from_numpy(self.dataset.video(int(item["episode"])).get(past)), item["frames"]])
        if self.cfg.proprio:
            item["proprio"] = item["states"][:, list(self.cfg.proprio)]
        return item

    def cached_item(self, index: int) -> dict[str, torch.Tensor]:
        """A training sequence from the feature cache: the same slicing as `RolloutClips.__getitem__`."""
        episode, start = self.dataset.locate(index)
        steps, t, k = self.dataset.episodes[episode], self.cfg.seq_len, self.cfg.frame_step
        raw = slice(start, start + t * k)
        cached = self.features[episode][start : start + t * k : k]
        if self.kind == "frames" and self.history:
            cached = torch.cat([self.features[episode][self._history_indices(start)], cached])
        item = {
            self.kind: cached,
            "actions": torch.from_numpy(steps.actions[raw]).reshape(t, -1).float(),
            "rewards": torch.from_numpy(steps.rewards[raw]).reshape(t, k).sum(1).float(),
        }
        if self.cfg.proprio and steps.states is not None:
            item["proprio"] = torch.from_numpy(steps.states[start : start + t * k : k][:, list(self.cfg.proprio)]).float()
        return item

    def _history_indices(self, start: int) -> list[int]:
        """Raw frame indices of the ``history`` frames before raw step ``start`` (clamped at the first frame)."""
        k = self.cfg.frame_step
        return [max(0, start - j * k) for j in range(self.history, 0, -1)]


class _FromStep(Dataset):
    """`TrainingSequences` as a map-style data set for a DataLoader: item i is the batch of step start + i."""

    def __init__(self, sequences: TrainingSequences, start: int) -> None:
        # A copy without the open video readers (RolloutClips pickles without them): a decord reader opened in
        # the parent (the feature statistics open some) deadlocks in a forked worker.
        dataset = pickle.loads(pickle.dumps(sequences.dataset))
        self.sequences = TrainingSequences(dataset, sequences.cfg, [], history=sequences.history)
        self.start = start

    def __len__(self) -> int:
        return max(self.sequences.cfg.steps - self.start, 0) + 1_000_000  # the loop stops first

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return self.sequences.batch(self.start + i)


@torch.no_grad()
def latent_monitor(model: WorldModel, frames: torch.Tensor) -> dict[str, float]:
    """Collapse monitor of the world model's latents on a batch of frames [B, T, H, W, C]."""
    return collapse_stats(model.encode(frames).reshape(-1, model.spec.latent_dim))
