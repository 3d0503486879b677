"""Evidence that the world model learned the world: linear probes of TwoRooms' agent position.

Run `python benchmarks/probe.py` (``--work-dir runs/demo`` probes the model `torchwm demo` trained, with no
training of its own). It

1. trains (or finds finished, and then reuses) the named recipe's world model with `torchwm.fit` in
   ``--work-dir``: the same record -> JEPA -> two world-model phases as the demo and `torchwm fit`, each stage
   timed; and records a held-out set of random-policy episodes with other seeds and the recipe's frame skip;
2. fits a closed-form ridge probe (the penalty chosen on a validation split of the training episodes)
   from the latents z (flattened K*D) to the agent's true position and reports R² on the held-out
   episodes; the same probe on the JEPA's mean-pooled patch tokens and on the z of a randomly
   initialised encoder and head are the baselines;
3. applies the probe fitted on encoded latents to the latents that ``rollout`` predicts 1..H steps
   ahead from held-out states under the recorded actions: R² against the horizon, next to the probe
   on z_t itself (no motion: what a prediction must beat) and on the encoded z_{t+h}; the same for a
   second probe with a fixed, heavy penalty (``--robust-alpha``), which reads only z's dominant directions;
4. reports the collapse monitor on held-out latents, and the speed of a planning-sized rollout
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
import sys
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
from torchwm.wm.episodes import load_episode, read_manifest
from torchwm.wm.losses import collapse_stats
from torchwm.wm.recipes import get_recipe
from torchwm.wm.trainer import JEPAAgent
from torchwm.wm.wm_training import pooled_features
from torchwm.wm.world_model import WorldModel

from torchwm.pipeline import fit

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENV_ID = "torchwm/TwoRooms-v0"


@dataclass(frozen=True)
class ProbeSettings:
    """What the benchmark trains and measures (every field is a command-line option)."""

    recipe: str = "two-phase"
    """The named recipe (`torchwm.wm.recipes`) whose world model is probed."""
    work_dir: str = "runs/probe"
    """The `torchwm fit` run folder: trained here, or reused when finished (``runs/demo`` probes the demo's)."""
    heldout_episodes: int = 60
    """Held-out episodes, recorded with other seeds; every R² is measured on them."""
    robust_alpha: float = 100.0
    """Fixed ridge penalty of the second, heavily regularised probe (on standardised features)."""
    horizon: int = 8
    """Longest predicted horizon probed."""
    probe_stride: int = 4
    """Use every n-th frame of the training episodes to fit the probes."""
    rollout_candidates: int = 256
    """Candidate action sequences of the timed rollout."""
    threads: int = 1
    """torch intra-op threads (on a shared machine, 2 threads on 2 busy cores spin-wait and run ~5x slower)."""
    device: str = "cpu"
    """Where to probe (the timings in the JSON are for this device)."""
    seed: int = 0
    """Training seed of the recipe (held-out episodes: reset seeds from 500000 + 10000 * seed)."""
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


def record_split(root: Path, episodes: int, seed: int, frame_skip: int) -> Path:
    """``episodes`` random TwoRooms episodes in ``root``, recorded unless it already holds exactly those."""
    if (root / "manifest.json").exists() and len(read_manifest(root)["episodes"]) == episodes:
        return root
    shutil.rmtree(root, ignore_errors=True)
    return record(ENV_ID, "random", episodes=episodes, out_dir=root, num_envs=4, seed=seed, frame_skip=frame_skip,
                  progress=False)  # fmt: skip


def heldout_dir(s: ProbeSettings) -> Path:
    """The held-out episodes (reset seeds far from the training and the planning benchmark's)."""
    recipe = get_recipe(s.recipe)
    seed = 500_000 + 10_000 * s.seed
    root = Path(s.work_dir) / f"heldout_{s.heldout_episodes}ep_seed{seed}"
    return record_split(root, s.heldout_episodes, seed, recipe.frame_skip)


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


# ----------------------------------------------------------------------------- probes


def ridge_fit(x: np.ndarray, y: np.ndarray, alphas: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Closed-form ridge on standardised features for every alpha: [(weights [F+1, S], ...)].

    One eigendecomposition of XᵀX serves every alpha; the last weight row is the intercept. With fewer rows
    than features (the region means of ``patches`` pooling: 8192 of them) it is that of XXᵀ instead, the same
    solution (Xᵀ(XXᵀ + alpha I)⁻¹y) from an N x N matrix rather than an F x F one.
    """
    mean, std = x.mean(0), x.std(0) + 1e-8
    xs = (x - mean) / std
    y_mean = y.mean(0)
    if len(xs) < xs.shape[1]:
        evals, evecs = np.linalg.eigh(xs @ xs.T)
        proj, basis = evecs.T @ (y - y_mean), xs.T @ evecs  # (N, S), (F, N)
    else:
        evals, evecs = np.linalg.eigh(xs.T @ xs)
        proj, basis = evecs.T @ (xs.T @ (y - y_mean)), evecs  # (F, S), (F, F)
    out = []
    for alpha in alphas:
        w = basis @ (proj / (evals + alpha)[:, None])  # (F, S) on standardised features
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
    return [pooled_features(model, torch.from_numpy(f)[None])[0] for f in frames]


@torch.inference_mode()
def token_split(agent: JEPAAgent, frames: list[np.ndarray]) -> list[torch.Tensor]:
    """The JEPA target encoder's patch tokens [L+1, N, De] of each episode."""
    return [agent.encode(f[None])[0] for f in frames]


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


def main(argv: list[str] | None = None) -> dict[str, Any]:
    s = parse_args(argv)
    torch.set_num_threads(s.threads)
    if s.speed_only:
        return speed_only(s)
    recipe = get_recipe(s.recipe)
    fitted = fit(ENV_ID, s.work_dir, recipe, seed=s.seed, progress=s.progress)  # skips what is finished
    print(f"world model ready: {fitted.world_model} ({', '.join(f'{k} {v:.0f} s' for k, v in fitted.seconds.items())})")
    test_dir = heldout_dir(s)
    agent = JEPAAgent.from_pretrained(fitted.jepa, device=s.device)
    model = WorldModel.from_pretrained(fitted.world_model, s.device)
    train, test = load_split(Path(fitted.episodes)), load_split(test_dir)
    probes = evaluate_probes(s, model, agent, train, test)
    speed = rollout_speed(model, probes.pop("z_example"), s.rollout_candidates, 8)
    result = {
        **report(probes, speed),
        "recipe": recipe.name,
        "seed": s.seed,
        "stage_seconds": {k: round(v, 1) for k, v in fitted.seconds.items()},
        "load_average_at_end": [round(v, 2) for v in os.getloadavg()],
        "latent": {"K": model.k, "D": model.spec.latent_dim, "K*D": model.k * model.spec.latent_dim},
        "data": {
            "train_steps": sum(len(a) for a in train.actions),
            "heldout_steps": sum(len(a) for a in test.actions),
            "frame_skip": recipe.frame_skip,
        },
        "config": {"benchmark": dataclasses.asdict(s), "recipe": recipe.to_dict()},
        "command": "python benchmarks/probe.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": machine_info(),
    }
    write_results(Path(s.out_dir), result)
    return result


def speed_only(s: ProbeSettings) -> dict[str, Any]:
    """Time a trained model's planning-sized rollout from a held-out state; write rollout_speed.json."""
    model = WorldModel.from_pretrained(s.speed_only, s.device)
    test_dir = heldout_dir(s)
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
