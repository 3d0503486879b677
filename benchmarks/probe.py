"""Evidence that the world model learned the world: linear probes of TwoRooms' agent position.

Run `python benchmarks/probe.py`. With the defaults, training takes about 15 minutes on 2 cores (JEPA
600 steps, world model 600 joint steps, then 2000 dynamics steps) and recording about 1 minute. It

1. records random-policy TwoRooms episodes: a training set and a held-out set with another seed
   (kept under ``--data-dir`` and reused when they already hold the asked-for episodes);
2. pretrains the tiny spatial JEPA on the training episodes, then trains the world model from it in two
   phases: the encoder fine-tuned jointly with the dynamics (PLDM-style: variance, covariance and
   temporal-smoothness terms, targets from the online weights; ``--freeze-encoder true`` keeps the JEPA
   encoder fixed instead), then the dynamics alone on that fixed latent (``--dynamics-steps``); each
   phase timed, wall-clock and this process's CPU seconds;
3. fits a closed-form ridge probe (the penalty chosen on a validation split of the training episodes)
   from the latents z (flattened K*D) to the agent's true position and reports R² on the held-out
   episodes; the same probe on the JEPA's mean-pooled patch tokens and on the z of a randomly
   initialised encoder and head are the baselines;
4. applies the probe fitted on encoded latents to the latents that ``rollout`` predicts 1..H steps
   ahead from held-out states under the recorded actions: R² against the horizon, next to the probe
   on z_t itself (no motion: what a prediction must beat) and on the encoded z_{t+h}; the same for a
   second probe with a fixed, heavy penalty (``--robust-alpha``), which reads only z's dominant directions;
5. reports the collapse monitor on held-out latents, and the speed of a planning-sized rollout
   (256 candidate sequences x 8 steps from one state) against the machine's measured fp32 matmul
   throughput.

It writes benchmarks/results/probe.json and benchmarks/results/probe_r2_vs_horizon.png.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
import torchwm.envs  # noqa: F401  (registers the built-in ids)
from torch.utils.flop_counter import FlopCounterMode
from torchwm.envs.record import record
from torchwm.wm.config import JEPAConfig
from torchwm.wm.episodes import load_episode, read_manifest
from torchwm.wm.losses import collapse_stats
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_trainer import WorldModelConfig, WorldModelTrainer, load_world_model
from torchwm.wm.world_model import WorldModel

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENV_ID = "torchwm/TwoRooms-v0"


@dataclass(frozen=True)
class ProbeSettings:
    """What the benchmark records, trains and measures (every field is a command-line option)."""

    episodes: int = 300
    """Random-policy training episodes (up to 100 steps each)."""
    heldout_episodes: int = 60
    """Held-out episodes, recorded with another seed; every R² is measured on them."""
    jepa_steps: int = 600
    """JEPA pretraining steps."""
    wm_steps: int = 600
    """World-model training steps."""
    image_size: int = 64
    """Side of the frames the encoder sees."""
    patch_size: int = 8
    """Side of an encoder patch (image_size / patch_size patches a side)."""
    jepa_frame_step: int = 4
    """Steps between the two frames of a JEPA training clip."""
    jepa_batch_size: int = 16
    """Clips per JEPA step."""
    jepa_workers: int = 0
    """DataLoader processes decoding the JEPA's clips (0: in the training process)."""
    latent_grid: int = 2
    """K = latent_grid² latent tokens a step."""
    latent_dim: int = 64
    """D, the width of a latent token."""
    wm_batch_size: int = 16
    """Sequences per world-model step."""
    freeze_encoder: bool = False
    """Keep the JEPA encoder frozen; false (the default): fine-tune it jointly with the dynamics (PLDM-style)."""
    wm_seq_len: int = 4
    """Steps per world-model training sequence (0: horizon + 1); its rollout loss spans wm_seq_len - 1 steps."""
    var_weight: float = 10.0
    """Weight of the world model's variance term (joint training needs more: the encoder can collapse)."""
    smooth_weight: float = 2.0
    """Weight of the world model's temporal smoothness term (see `WorldModelConfig.smooth_weight`)."""
    ema_start: float = 0.0
    """EMA momentum of the world model's targets at the first step (0: the online weights themselves)."""
    ema_end: float = 0.0
    """EMA momentum of the world model's targets at the last step."""
    dynamics_steps: int = 2000
    """Second phase: steps training the dynamics alone on the latent of the first phase, encoder and head
    fixed, over horizon + 1 step sequences (0: no second phase)."""
    dynamics_batch_size: int = 32
    """Sequences per second-phase step."""
    robust_alpha: float = 100.0
    """Fixed ridge penalty of the second, heavily regularised probe (on standardised features)."""
    horizon: int = 8
    """Longest predicted horizon probed (and the world model's predict_horizon)."""
    probe_stride: int = 4
    """Use every n-th frame of the training episodes to fit the probes."""
    rollout_candidates: int = 256
    """Candidate action sequences of the timed rollout."""
    threads: int = 1
    """torch intra-op threads (on a shared machine, 2 threads on 2 busy cores spin-wait and run ~5x slower)."""
    device: str = "cpu"
    """Where to train and probe (the timings in the JSON are for this device)."""
    seed: int = 0
    """Seed of the training episodes and of both trainings (held-out episodes: seed + 100000)."""
    work_dir: str = "runs/probe"
    """Where checkpoints and logs go (and the episodes, unless ``data_dir`` is set)."""
    data_dir: str = ""
    """Where the episodes are recorded, or found from an earlier run (empty: ``work_dir``)."""
    jepa_run: str = ""
    """A pretrained JEPA run directory to use instead of pretraining one (its time is then not measured)."""
    speed_only: str = ""
    """A trained world-model checkpoint: only time its rollout (on a quiet machine) into rollout_speed.json."""
    out_dir: str = str(RESULTS_DIR)
    """Where probe.json and probe_r2_vs_horizon.png go."""
    progress: bool = True
    """Show the trainers' progress bars."""


def parse_args(argv: list[str] | None = None) -> ProbeSettings:
    """The settings, one ``--field-name`` option per `ProbeSettings` field."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(ProbeSettings):
        kind = type(f.default)
        parse = (lambda v: v.lower() in ("1", "true", "yes")) if kind is bool else kind
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=parse, default=f.default)
    return ProbeSettings(**vars(parser.parse_args(argv)))


# ----------------------------------------------------------------------------- data


def record_split(root: Path, episodes: int, seed: int) -> Path:
    """``episodes`` random TwoRooms episodes in ``root``, recorded unless it already holds exactly those."""
    if (root / "manifest.json").exists() and len(read_manifest(root)["episodes"]) == episodes:
        return root
    shutil.rmtree(root, ignore_errors=True)
    return record(ENV_ID, "random", episodes=episodes, out_dir=root, num_envs=4, seed=seed, progress=False)


@dataclass
class Split:
    """The episodes of one directory: frames uint8 [L+1, H, W, C], states [L+1, 2], actions [L, 2] each."""

    frames: list[np.ndarray]
    states: list[np.ndarray]
    actions: list[np.ndarray]


def load_split(root: Path) -> Split:
    manifest = read_manifest(root)
    loaded = [load_episode(root, e["name"], manifest=manifest) for e in manifest["episodes"]]
    return Split(
        [e.frames for e in loaded], [e.states for e in loaded], [e.actions.astype(np.float32) for e in loaded]
    )


# ----------------------------------------------------------------------------- training


def jepa_config(s: ProbeSettings, data: Path, out: Path) -> JEPAConfig:
    """The tiny preset as a spatial image encoder, trained on pairs of frames ``jepa_frame_step`` apart."""
    return JEPAConfig.preset(
        "tiny",
        dataset="rollouts",
        root_path=str(data),
        encoder="spatial",
        tubelet_size=1,
        num_frames=2,
        frame_step=s.jepa_frame_step,
        image_size=s.image_size,
        patch_size=s.patch_size,
        batch_size=s.jepa_batch_size,
        num_workers=s.jepa_workers,
        epochs=1000,
        max_steps=s.jepa_steps,
        seed=s.seed,
        device=s.device,
        output_dir=str(out),
        resume=False,
        log_interval=50,
        checkpoint_interval=max(s.jepa_steps, 1),
        progress=s.progress,
    )


def world_model_config(s: ProbeSettings, data: Path, encoder: Path, out: Path) -> WorldModelConfig:
    return WorldModelConfig(
        root_path=str(data),
        encoder_checkpoint=str(encoder),
        latent_grid=s.latent_grid,
        latent_dim=s.latent_dim,
        predict_horizon=(s.wm_seq_len or s.horizon + 1) - 1,
        seq_len=s.wm_seq_len or s.horizon + 1,
        freeze_encoder=s.freeze_encoder,
        var_weight=s.var_weight,
        smooth_weight=s.smooth_weight,
        ema_start=s.ema_start,
        ema_end=s.ema_end,
        steps=s.wm_steps,
        batch_size=s.wm_batch_size,
        seed=s.seed,
        device=s.device,
        output_dir=str(out),
        resume=False,
        log_interval=50,
        checkpoint_interval=s.wm_steps,
        progress=s.progress,
    )


def dynamics_config(s: ProbeSettings, data: Path, world_model: Path, out: Path) -> WorldModelConfig:
    """The second phase: the first phase's encoder and latent head fixed, the dynamics trained alone over
    horizon + 1 step sequences (the head's regularisers are constants then, so they keep their defaults)."""
    defaults = WorldModelConfig()
    return dataclasses.replace(
        world_model_config(s, data, world_model, out),
        freeze_encoder=True,
        predict_horizon=s.horizon,
        seq_len=s.horizon + 1,
        steps=s.dynamics_steps,
        batch_size=s.dynamics_batch_size,
        checkpoint_interval=s.dynamics_steps,
        var_weight=defaults.var_weight,
        smooth_weight=defaults.smooth_weight,
        ema_start=defaults.ema_start,
        ema_end=defaults.ema_end,
    )


def pretrain_jepa(cfg: JEPAConfig) -> tuple[JEPAAgent, dict[str, float]]:
    """Train from scratch; (agent, wall-clock and CPU seconds)."""
    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    wall, cpu = time.perf_counter(), time.process_time()
    agent = JEPAAgent(cfg)
    agent.train()
    return agent, {"wall": time.perf_counter() - wall, "cpu": time.process_time() - cpu}


def train_world_model(cfg: WorldModelConfig) -> tuple[WorldModelTrainer, dict[str, float]]:
    """Train from scratch; (trainer, wall-clock seconds of the setup (feature cache or head centring), of the
    steps, in all, and CPU seconds).

    CPU seconds count this process's threads: on a machine that colleagues share, they show what the
    phase costs without the waiting.
    """
    shutil.rmtree(cfg.output_dir, ignore_errors=True)
    start, cpu = time.perf_counter(), time.process_time()
    trainer = WorldModelTrainer(cfg)  # frozen: encodes every frame once; joint: centres the head on a sample
    cached = time.perf_counter()
    trainer.run()
    end = time.perf_counter()
    trainer.model.eval()
    return trainer, {
        "setup": cached - start,
        "steps": end - cached,
        "total": end - start,
        "cpu": time.process_time() - cpu,
    }


# ----------------------------------------------------------------------------- probes


def ridge_fit(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form ridge on standardised features for every alpha: [(weights [F+1, S], ...)].

    One eigendecomposition of XᵀX serves every alpha; the last weight row is the intercept.
    """
    mean, std = x.mean(0), x.std(0) + 1e-8
    xs = (x - mean) / std
    y_mean = y.mean(0)
    evals, evecs = np.linalg.eigh(xs.T @ xs)
    proj = evecs.T @ (xs.T @ (y - y_mean))  # (F, S)
    out = []
    for alpha in alphas:
        w = evecs @ (proj / (evals + alpha)[:, None])  # (F, S) on standardised features
        w_raw = w / std[:, None]
        out.append((w_raw, y_mean - mean @ w_raw))
    return out


def r2_score(y: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """R² of each output column."""
    return 1.0 - ((y - pred) ** 2).sum(0) / ((y - y.mean(0)) ** 2).sum(0)


@dataclass
class RidgeProbe:
    """A linear map from features [N, F] to states [N, S], its penalty chosen on held-back episodes."""

    weights: np.ndarray
    bias: np.ndarray
    alpha: float

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return x @ self.weights + self.bias

    @classmethod
    def fit(cls, feats: list[np.ndarray], states: list[np.ndarray], val_fraction: float = 0.2) -> RidgeProbe:
        """Pick alpha by R² on the last ``val_fraction`` of the episodes, then refit on all of them."""
        alphas = np.logspace(-3, 5, 17)
        n_val = max(1, int(len(feats) * val_fraction))
        x_fit, y_fit = np.concatenate(feats[:-n_val]), np.concatenate(states[:-n_val])
        x_val, y_val = np.concatenate(feats[-n_val:]), np.concatenate(states[-n_val:])
        scores = [r2_score(y_val, x_val @ w + b).mean() for w, b in ridge_fit(x_fit, y_fit, alphas)]
        alpha = float(alphas[int(np.argmax(scores))])
        (w, b), = ridge_fit(np.concatenate(feats), np.concatenate(states), np.array([alpha]))  # fmt: skip
        return cls(w, b, alpha)

    def r2(self, x: np.ndarray, y: np.ndarray) -> tuple[float, list[float]]:
        """(mean R² over the state's coordinates, R² of each)."""
        per = r2_score(y, self(x))
        return float(per.mean()), [round(float(v), 4) for v in per]


@torch.inference_mode()
def encode_split(model: WorldModel, frames: list[np.ndarray]) -> list[torch.Tensor]:
    """Per-step latents z [L+1, K, D] of each episode."""
    return [model.encode(torch.from_numpy(f)[None])[0] for f in frames]


@torch.inference_mode()
def pooled_split(model: WorldModel, frames: list[np.ndarray]) -> list[torch.Tensor]:
    """The encoder's region means [L+1, K, De] of each episode (z before the latent head)."""
    return [model.pooled_features(torch.from_numpy(f)[None])[0] for f in frames]


@torch.inference_mode()
def token_split(agent: JEPAAgent, frames: list[np.ndarray]) -> list[torch.Tensor]:
    """The JEPA target encoder's patch tokens [L+1, N, De] of each episode."""
    return [agent.encode(f) for f in frames]


def every(items: list[np.ndarray], stride: int) -> list[np.ndarray]:
    return [x[::stride] for x in items]


def flat(latents: list[torch.Tensor]) -> list[np.ndarray]:
    """[L+1, ...] tensors -> [L+1, F] float64 arrays."""
    return [z.reshape(len(z), -1).double().cpu().numpy() for z in latents]


def probe_r2(
    train_feats: list[np.ndarray], train: Split, test_feats: list[np.ndarray], test: Split
) -> tuple[RidgeProbe, dict[str, Any]]:
    """Fit on the training episodes, score on every held-out step."""
    probe = RidgeProbe.fit(train_feats, train.states)
    r2, per = probe.r2(np.concatenate(test_feats), np.concatenate(test.states))
    return probe, {"r2": round(r2, 4), "r2_xy": per, "alpha": probe.alpha}


@torch.inference_mode()
def r2_by_horizon(
    model: WorldModel, probe: RidgeProbe, z: list[torch.Tensor], test: Split, horizon: int, stride: int = 4
) -> dict[str, list[float]]:
    """R² at h = 1..H of the probe on predicted latents, on the encoded latents of the same steps, and on
    the start latent z_t (the no-motion baseline that a useful prediction must beat).

    Starts: every ``stride``-th step t of each held-out episode with t + H <= L; the rollout gets z_t and
    the recorded actions a_t .. a_{t+H-1}; its step h is compared with the true state at t + h.
    """
    starts = [(e, t) for e, a in enumerate(test.actions) for t in range(0, len(a) - horizon + 1, stride)]
    z0 = torch.stack([z[e][t] for e, t in starts])  # (N, K, D)
    actions = torch.from_numpy(np.stack([test.actions[e][t : t + horizon] for e, t in starts]))  # (N, H, A)
    actions = actions.to(z0.device)
    pred = torch.cat([model.rollout(a, b) for a, b in zip(z0.split(512), actions.split(512))])  # (N, H, K, D)
    out: dict[str, list[float]] = {"predicted": [], "encoded": [], "copy": []}
    for h in range(1, horizon + 1):
        truth = np.stack([test.states[e][t + h] for e, t in starts])
        z_true = torch.stack([z[e][t + h] for e, t in starts])
        for key, latents in (("predicted", pred[:, h - 1]), ("encoded", z_true), ("copy", z0)):
            out[key].append(round(probe.r2(latents.flatten(1).double().cpu().numpy(), truth)[0], 4))
    return out


def spread(rows: torch.Tensor, seed: int = 0) -> dict[str, float]:
    """`collapse_stats` of a random sample of the rows [M, D] (it reads the first 4096 rows)."""
    order = torch.randperm(len(rows), generator=torch.Generator().manual_seed(seed))
    return {k: round(v, 4) for k, v in collapse_stats(rows[order[:4096]]).items()}


# ----------------------------------------------------------------------------- speed


def timed(fn: Any, device: torch.device) -> float:
    """Wall-clock seconds of ``fn()``, waiting for the device to finish."""
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    fn()
    sync()
    return time.perf_counter() - start


def matmul_flops_per_s(device: torch.device, n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 throughput of n x n matmuls on this device (CPU: with the current thread count)."""
    a, b = torch.randn(n, n, device=device), torch.randn(n, n, device=device)
    timed(lambda: a @ b, device)  # warm-up
    return 2 * n**3 / min(timed(lambda: a @ b, device) for _ in range(repeats))


def rollout_speed(
    model: WorldModel, z0: torch.Tensor, candidates: int, horizon: int, runs: int = 21
) -> dict[str, float]:
    """Median wall-clock of one batched rollout of ``candidates`` sequences from one state, and its FLOP/s."""
    gen = torch.Generator().manual_seed(0)
    z = z0[None].expand(candidates, -1, -1).contiguous()  # (S, K, D)
    actions = torch.rand(candidates, horizon, model.spec.action_dim, generator=gen) * 2 - 1  # (S, H, A)
    actions = actions.to(z.device)
    for _ in range(3):
        model.rollout(z, actions)
    seconds = statistics.median(timed(lambda: model.rollout(z, actions), z.device) for _ in range(runs))
    with FlopCounterMode(display=False) as counter:
        model.rollout(z, actions)
    flops = counter.get_total_flops()
    peak = matmul_flops_per_s(z.device)
    return {
        "rollout_ms": round(seconds * 1e3, 3),
        "rollout_gflop": round(flops / 1e9, 4),
        "rollout_gflops_per_s": round(flops / seconds / 1e9, 3),
        "matmul_gflops_per_s": round(peak / 1e9, 3),
        "rollout_matmul_fraction": round(flops / seconds / peak, 4),
    }


# ----------------------------------------------------------------------------- report


def plot(path: Path, result: dict[str, Any]) -> None:
    """R² of both probes on predicted latents against the horizon, with the reference levels."""
    fig, ax = plt.subplots(figsize=(6, 4.2), dpi=120)
    pred, copy = result["probe_r2_by_horizon"], result["probe_r2_copy_by_horizon"]
    pred_r, copy_r = result["probe_r2_by_horizon_robust"], result["probe_r2_copy_by_horizon_robust"]
    hs = list(range(1, len(pred) + 1))
    alpha = result["probes"]["z"]["alpha"]
    ax.plot(hs, pred, "o-", color="C0", label=f"predicted $z_{{t+h}}$, probe alpha={alpha:g} (validation)")
    ax.plot(hs, copy, "s--", color="C0", alpha=0.5, ms=3, label="no motion: $z_t$ for $t+h$ (same probe)")
    robust = result["probes"]["robust"]["alpha"]
    ax.plot(hs, pred_r, "o-", color="C4", label=f"predicted $z_{{t+h}}$, probe alpha={robust:g}")
    ax.plot(hs, copy_r, "s--", color="C4", alpha=0.5, ms=3, label="no motion (same probe)")
    encoded, random_encoder = result["probe_r2"], result["probe_r2_random_encoder"]
    ax.axhline(encoded, color="C2", ls="--", label=f"encoded z ({encoded:.3f})")
    ax.axhline(random_encoder, color="C3", ls="-.", label=f"random encoder z ({random_encoder:.3f})")
    ax.set(
        xlabel="horizon h (steps)",
        ylabel="held-out R² (agent position)",
        title="TwoRooms: linear probes of $z_{t+h}$",
    )
    low = min(*pred_r, *copy, *copy_r, random_encoder)
    bottom = max(0.0, low - 0.05)
    ax.set_ylim(bottom, 1.0)  # a prediction far below sits under the frame; say so
    if min(pred) < bottom:
        values = ", ".join(f"{v:.2f}" for v in pred)
        ax.text(0.99, 0.99, f"alpha={alpha:g} predictions (off the scale): {values}", transform=ax.transAxes,
                ha="right", va="top", fontsize=6, color="C0")
    ax.legend(fontsize=6.5, loc="lower left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine_info() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor(),
        "torch_threads": torch.get_num_threads(),
    }


def random_world_model(trained: WorldModel, seed: int) -> WorldModel:
    """A model of the same shape with freshly initialised encoder and head (the random baseline)."""
    torch.manual_seed(seed)
    return WorldModel(trained.jepa_cfg, trained.spec, freeze_encoder=True).to(trained.device).eval()


def prepare_data(s: ProbeSettings) -> tuple[Path, Path, float]:
    """(training episodes, held-out episodes, seconds spent recording them)."""
    data, start = Path(s.data_dir or s.work_dir), time.perf_counter()
    train_dir = record_split(data / f"tworooms_train_{s.episodes}ep_seed{s.seed}", s.episodes, s.seed)
    test_seed = s.seed + 100_000
    test_dir = record_split(
        data / f"tworooms_heldout_{s.heldout_episodes}ep_seed{test_seed}", s.heldout_episodes, test_seed
    )
    return train_dir, test_dir, time.perf_counter() - start


def prepare_jepa(s: ProbeSettings, train_dir: Path) -> tuple[JEPAAgent, Path, dict[str, float] | None]:
    """(the pretrained JEPA, its run directory, seconds of pretraining or None when ``jepa_run`` is reused)."""
    if s.jepa_run:
        return JEPAAgent.from_pretrained(s.jepa_run, device=s.device), Path(s.jepa_run), None
    run_dir = Path(s.work_dir) / "jepa"
    agent, seconds = pretrain_jepa(jepa_config(s, train_dir, run_dir))
    print(f"JEPA: {s.jepa_steps} steps in {seconds['wall']:.0f}s, loss {agent.summary.final_loss:.4f}")
    return agent, run_dir, seconds


def main(argv: list[str] | None = None) -> dict[str, Any]:
    s = parse_args(argv)
    torch.set_num_threads(s.threads)
    if s.speed_only:
        return speed_only(s)
    train_dir, test_dir, record_seconds = prepare_data(s)
    print(f"episodes ready in {record_seconds:.0f}s")
    agent, jepa_dir, jepa_seconds = prepare_jepa(s, train_dir)
    wm_cfg = world_model_config(s, train_dir, jepa_dir, Path(s.work_dir) / "world_model")
    trainer, wm_seconds = train_world_model(wm_cfg)
    print(f"world model: {s.wm_steps} steps in {wm_seconds['total']:.0f}s, loss {trainer.last_terms}")
    dyn_cfg, dyn_seconds = None, None
    if s.dynamics_steps:
        dyn_cfg = dynamics_config(s, train_dir, Path(wm_cfg.output_dir), Path(s.work_dir) / "world_model_dynamics")
        trainer, dyn_seconds = train_world_model(dyn_cfg)
        print(f"dynamics: {s.dynamics_steps} steps in {dyn_seconds['total']:.0f}s, loss {trainer.last_terms}")
    train, test = load_split(train_dir), load_split(test_dir)
    probes = evaluate_probes(s, trainer.model, agent, train, test)
    speed = rollout_speed(trainer.model, probes.pop("z_example"), s.rollout_candidates, 8)
    result = {
        **report(probes, speed),
        "train_seconds_jepa": None if jepa_seconds is None else round(jepa_seconds["wall"], 1),
        "train_cpu_seconds_jepa": None if jepa_seconds is None else round(jepa_seconds["cpu"], 1),
        "train_cpu_seconds_world_model": round(wm_seconds["cpu"] + (dyn_seconds or {}).get("cpu", 0.0), 1),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "train_seconds_world_model": round(wm_seconds["total"] + (dyn_seconds or {}).get("total", 0.0), 1),
        "world_model_seconds": {k: round(v, 1) for k, v in wm_seconds.items()},
        "dynamics_seconds": None if dyn_seconds is None else {k: round(v, 1) for k, v in dyn_seconds.items()},
        "record_seconds": round(record_seconds, 1),
        "latent": {"K": trainer.model.k, "D": wm_cfg.latent_dim, "K*D": trainer.model.k * wm_cfg.latent_dim},
        "final_loss_jepa": round(agent.summary.final_loss, 5) if agent.summary else None,
        "final_loss_world_model": {k: round(v, 5) for k, v in trainer.last_terms.items()},
        "data": {
            "train_steps": sum(len(a) for a in train.actions),
            "heldout_steps": sum(len(a) for a in test.actions),
        },
        "config": {
            "benchmark": dataclasses.asdict(s),
            "jepa": agent.cfg.to_dict(),
            "world_model": dataclasses.asdict(wm_cfg),
            "dynamics": None if dyn_cfg is None else dataclasses.asdict(dyn_cfg),
        },
        "machine": machine_info(),
    }
    write_results(Path(s.out_dir), result)
    return result


def speed_only(s: ProbeSettings) -> dict[str, Any]:
    """Time a trained model's planning-sized rollout from a held-out state; write rollout_speed.json."""
    model = load_world_model(s.speed_only, s.device)
    _, test_dir, _ = prepare_data(s)
    z0 = model.encode(torch.from_numpy(load_split(test_dir).frames[0][:1])[None])[0, 0]
    result = {
        "checkpoint": s.speed_only,
        **rollout_speed(model, z0, s.rollout_candidates, 8),
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "machine": machine_info(),
    }
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "rollout_speed.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result


def report(probes: dict[str, Any], speed: dict[str, float]) -> dict[str, Any]:
    """The headline numbers under their plain names, then the details."""
    return {
        "probe_r2": probes["z"]["r2"],
        "probe_r2_jepa_tokens": probes["jepa_tokens"]["r2"],
        "probe_r2_random_encoder": probes["random_encoder"]["r2"],
        "probe_r2_by_horizon": probes["by_horizon"],
        "probe_r2_encoded_by_horizon": probes["encoded_by_horizon"],
        "probe_r2_copy_by_horizon": probes["copy_by_horizon"],
        "probe_r2_robust": probes["robust"]["r2"],
        "probe_r2_by_horizon_robust": probes["by_horizon_robust"],
        "probe_r2_copy_by_horizon_robust": probes["copy_by_horizon_robust"],
        "probes": {k: probes[k] for k in ("z", "robust", "jepa_tokens", "random_encoder", "region_means")},
        "collapse": probes["collapse"],
        "rollout_ms_256x8": speed["rollout_ms"],
        "rollout_matmul_fraction": speed["rollout_matmul_fraction"],
        "speed": speed,
    }


def write_results(out: Path, result: dict[str, Any]) -> None:
    """probe.json and probe_r2_vs_horizon.png in ``out``, and the headline numbers on stdout."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "probe.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(out / "probe_r2_vs_horizon.png", result)
    keys = ("probe_r2", "probe_r2_robust", "probe_r2_random_encoder", "probe_r2_by_horizon", "speed")
    print(json.dumps({k: result[k] for k in keys}))


def evaluate_probes(
    s: ProbeSettings, model: WorldModel, agent: JEPAAgent, train: Split, test: Split
) -> dict[str, Any]:
    """Every probe R², the R² against the horizon and the collapse monitor on the held-out episodes."""
    stride = s.probe_stride
    train_sub = Split(every(train.frames, stride), every(train.states, stride), train.actions)
    z_train, z_test = encode_split(model, train_sub.frames), encode_split(model, test.frames)
    probe, z_result = probe_r2(flat(z_train), train_sub, flat(z_test), test)
    tok_train, tok_test = token_split(agent, train_sub.frames), token_split(agent, test.frames)
    _, tok_result = probe_r2(
        flat([t.mean(1) for t in tok_train]), train_sub, flat([t.mean(1) for t in tok_test]), test
    )
    pooled_train, pooled_test = pooled_split(model, train_sub.frames), pooled_split(model, test.frames)
    _, pooled_result = probe_r2(flat(pooled_train), train_sub, flat(pooled_test), test)
    rand = random_world_model(model, s.seed + 1)
    _, rand_result = probe_r2(
        flat(encode_split(rand, train_sub.frames)), train_sub, flat(encode_split(rand, test.frames)), test
    )
    by_horizon = r2_by_horizon(model, probe, z_test, test, s.horizon)
    # The validation-chosen penalty is often tiny, so the probe leans on low-variance directions of z where
    # a rollout's small errors are large ones; a heavily penalised probe reads only the dominant directions.
    (w, b), = ridge_fit(np.concatenate(flat(z_train)), np.concatenate(train_sub.states), np.array([s.robust_alpha]))  # fmt: skip
    robust = RidgeProbe(w, b, s.robust_alpha)
    robust_r2, robust_xy = robust.r2(np.concatenate(flat(z_test)), np.concatenate(test.states))
    by_horizon_robust = r2_by_horizon(model, robust, z_test, test, s.horizon)
    collapse = {
        "z": spread(torch.cat(z_test).reshape(-1, model.spec.latent_dim)),
        "jepa_tokens": spread(torch.cat(tok_test).reshape(-1, tok_test[0].shape[-1])),
    }
    return {
        "z": z_result,
        "jepa_tokens": tok_result,
        "random_encoder": rand_result,
        "region_means": pooled_result,
        "by_horizon": by_horizon["predicted"],
        "encoded_by_horizon": by_horizon["encoded"],
        "copy_by_horizon": by_horizon["copy"],
        "robust": {"r2": round(robust_r2, 4), "r2_xy": robust_xy, "alpha": s.robust_alpha},
        "by_horizon_robust": by_horizon_robust["predicted"],
        "copy_by_horizon_robust": by_horizon_robust["copy"],
        "collapse": collapse,
        "z_example": z_test[0][0],
    }


if __name__ == "__main__":
    main()
