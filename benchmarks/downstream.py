"""Pretrained representations for downstream use: probes and fine-tuning on moving-shape videos.

Run `python benchmarks/downstream.py` (the full budget; `--budget small` for a smoke run). It

1. writes two video folders of moving-shape clips (H.264 mp4, keyframe every 4 frames): an unlabelled
   pretraining set and a labelled set with one sub-folder per class. The class is the shape AND the
   direction of motion: {square, disc} x {moving left, moving right}, so a single frame holds only
   half of it (at best 50% accuracy) and a video model has motion to find;
2. pretrains the tiny temporal JEPA on the pretraining videos (wall-clock timed);
3. encodes the labelled clips once with the frozen pretrained encoder and trains a linear probe (on
   mean-pooled features) and an attentive probe (on patch tokens); the same for a randomly initialised
   encoder of the same shape; and the linear probe of the pretrained encoder on static clips (the
   first frame repeated), which bounds what appearance alone gives;
4. fine-tunes the pretrained encoder with a classification head (no flips: they swap left and right).

Every accuracy is top-1 on the same held-out videos (20% of each class, by seed), never trained on.
``*_probe_seconds`` time a probe on cached features (``*features_seconds`` the one encoding pass they
share); ``finetune_seconds`` and ``pretrain_seconds`` the whole runs. It writes
benchmarks/results/downstream.json (with the budget and every setting) and downstream.png.
Target: the pretrained encoder's linear probe beats the random encoder's by at least 20 points.

The full budget (the defaults: 2000 pretraining steps of a 32x32-pixel tiny JEPA) takes 5-8
minutes on two CPU cores; ``--budget small`` (500 steps) about 2 minutes, and proves the pipeline
rather than the target (its margin is ~5-10 points).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import numpy as np
import torch
from torch.utils.data import Dataset
from torchwm.wm.downstream.features import extract_features, labelled_dataset, load_encoder
from torchwm.wm.downstream.finetune import FinetuneConfig, Finetuner
from torchwm.wm.downstream.probes import ProbeConfig, run_probes
from torchwm.wm.jepa import build_encoder

from torchwm import JEPAAgent, JEPAConfig

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the backend)

RESULTS_DIR = Path(__file__).resolve().parent / "results"
CLASSES = ("disc_left", "disc_right", "square_left", "square_right")
GENERATOR_VERSION = 2
"""Bumped whenever `shape_clip` changes, so that cached videos are regenerated."""


@dataclass(frozen=True)
class DownstreamSettings:
    """What the benchmark generates, trains and measures (every field is a command-line option)."""

    budget: str = "full"
    """A name for the budget, written into the JSON (``small`` also switches to the small defaults)."""
    pretrain_videos: int = 60
    """Unlabelled pretraining videos per class."""
    labelled_videos: int = 100
    """Labelled videos per class (20% of them held out)."""
    frames: int = 8
    """Frames per video (two 4-frame clips each)."""
    image_size: int = 32
    """Side of the frames the model sees (the videos are 64x64; the model resizes them)."""
    pretrain_steps: int = 2000
    """Optimiser steps of JEPA pretraining."""
    masking: str = "temporal"
    """JEPA mask: ``temporal`` (predict the second tubelet from the first) or ``block``."""
    probe_epochs: int = 100
    """Epochs of the attentive probe on the cached features (the linear probe is fitted by L-BFGS)."""
    finetune_epochs: int = 10
    """Epochs of fine-tuning."""
    seed: int = 0
    """Seed of the data, the pretraining, the split and the heads."""
    threads: int = 1
    """torch CPU threads."""
    work_dir: str = "runs/bench_downstream"
    """Where the videos and the runs go (the videos are reused when they match)."""
    out_dir: str = str(RESULTS_DIR)
    """Where downstream.json and downstream.png go."""


SMALL = {
    "labelled_videos": 60,
    "pretrain_steps": 500,
    "finetune_epochs": 3,
}
"""The ``--budget small`` defaults: a smoke run of about five minutes on two busy CPU cores."""


def parse_args(argv: list[str] | None = None) -> DownstreamSettings:
    """Settings from the command line; ``--budget small`` first swaps in the `SMALL` defaults."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for f in dataclasses.fields(DownstreamSettings):
        parser.add_argument(f"--{f.name.replace('_', '-')}", type=type(f.default), default=None, help=f.name)
    given = {k: v for k, v in vars(parser.parse_args(argv)).items() if v is not None}
    base = SMALL if given.get("budget") == "small" else {}
    return DownstreamSettings(**{**base, **given})


# --- data ---------------------------------------------------------------------------------------
def shape_clip(rng: np.random.Generator, disc: bool, right: bool, frames: int, size: int = 64) -> np.ndarray:
    """uint8 [frames, size, size, 3]: one square or disc of a random bright colour and size crossing a
    black frame to the left or right (with a little vertical drift), never touching the sides."""
    video = np.zeros((frames, size, size, 3), dtype=np.uint8)
    colour = rng.integers(150, 256, size=3, dtype=np.uint8)
    radius = rng.uniform(0.20, 0.28) * size
    speed = rng.uniform(0.045, 0.06) * size * (1 if right else -1)
    travel = abs(speed) * (frames - 1)
    x0 = rng.uniform(radius, size - radius - travel)
    x0 = x0 if right else size - x0
    y, vy = rng.uniform(radius, size - radius), rng.uniform(-0.01, 0.01) * size
    yy, xx = np.mgrid[0:size, 0:size]
    for t in range(frames):
        cy, cx = np.clip(y + vy * t, radius, size - radius), x0 + speed * t
        if disc:
            inside = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius**2
        else:
            inside = (np.abs(yy - cy) <= radius) & (np.abs(xx - cx) <= radius)
        video[t][inside] = colour
    return video


def write_video_folder(root: Path, videos_per_class: int, frames: int, seed: int) -> Path:
    """root/<class>/NNNN.mp4 for the four classes (skipped when it already holds them)."""
    import imageio

    stamp = root / "settings.json"
    wanted = {
        "videos_per_class": videos_per_class,
        "frames": frames,
        "seed": seed,
        "generator": GENERATOR_VERSION,
    }
    if stamp.is_file() and json.loads(stamp.read_text()) == wanted:
        return root
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(videos_per_class):
            clip = shape_clip(rng, name.startswith("disc"), name.endswith("right"), frames)
            imageio.mimwrite(
                root / name / f"{i:04d}.mp4", list(clip), fps=10, codec="libx264",
                macro_block_size=1, ffmpeg_params=["-g", "4"],
            )  # fmt: skip
    stamp.write_text(json.dumps(wanted))
    return root


class StaticClips(Dataset):
    """Each clip of a data set with its first frame repeated: what appearance alone offers."""

    def __init__(self, dataset: Any) -> None:
        self.dataset, self.folder, self.classes = dataset, dataset.folder, dataset.classes
        self.clips, self.skipped = dataset.clips, dataset.skipped

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        item = self.dataset[index]
        return {**item, "frames": item["frames"][:1].expand_as(item["frames"]).clone()}


# --- the steps ----------------------------------------------------------------------------------
def jepa_config(s: DownstreamSettings, work: Path) -> JEPAConfig:
    return JEPAConfig.preset(
        "tiny",
        dataset="video",
        root_path=str(work),
        image_folder="pretrain",
        masking=s.masking,
        image_size=s.image_size,
        max_steps=s.pretrain_steps,
        # A run of a few thousand steps needs a faster EMA than the preset's 0.996 -> 1.0: the target
        # encoder (the one `encode` and the probes use) would otherwise stay close to its random init.
        ema_start=0.99,
        ema_end=0.999,
        epochs=1000,
        warmup_steps=min(50, s.pretrain_steps // 5),
        output_dir=str(work / "pretrain_run"),
        checkpoint_interval=10_000,
        resume=False,
        seed=s.seed,
        device="cpu",
    )


def timed(fn: Any, *args: Any, **kwargs: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t0


def probe_encoder(
    encoder: torch.nn.Module, dataset: Any, cfg: JEPAConfig, probe_cfg: ProbeConfig, prefix: str
) -> dict:
    """Encode once (timed), then the linear and attentive probes (each timed)."""
    features, seconds = timed(extract_features, encoder, dataset, cfg.image_size, "both", 32, progress=False)
    results = run_probes(features, probe_cfg)
    out: dict[str, Any] = {f"{prefix}features_seconds": seconds}
    for kind, r in results.items():
        out[f"{prefix}{kind}_probe_acc"] = r.accuracy
        out[f"{prefix}{kind}_probe_train_acc"] = r.train_accuracy
        out[f"{prefix}{kind}_probe_seconds"] = r.seconds
    out["num_train"], out["num_held_out"] = results["linear"].num_train, results["linear"].num_held_out
    return out


def random_encoder(cfg: JEPAConfig, seed: int) -> torch.nn.Module:
    """An encoder of the pretrained one's shape, freshly initialised from ``seed``, frozen."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return build_encoder(cfg).eval().requires_grad_(False)


def finetune(s: DownstreamSettings, checkpoint: str, labelled: Path, work: Path) -> dict[str, Any]:
    """Fine-tune the pretrained encoder (no flips: a mirror swaps left and right) on the same split."""
    ft_cfg = FinetuneConfig(
        checkpoint=checkpoint, data=str(labelled), data_kind="video", epochs=s.finetune_epochs,
        batch_size=16, learning_rate=5e-4, flip_prob=0.0, crop_scale=0.8, seed=s.seed, device="cpu",
        output_dir=str(work / "finetune_run"), resume=False, checkpoint_interval=10_000,
    )  # fmt: skip
    ft, seconds = timed(Finetuner(ft_cfg).run)
    return {"finetune_acc": ft.accuracy, "finetune_seconds": seconds, "finetune_steps": ft.steps}


def run(s: DownstreamSettings) -> dict[str, Any]:
    torch.set_num_threads(s.threads)
    work = Path(s.work_dir)
    t0 = time.perf_counter()
    write_video_folder(work / "pretrain", s.pretrain_videos, s.frames, s.seed + 1)
    labelled = write_video_folder(work / "labelled", s.labelled_videos, s.frames, s.seed + 2)
    data_seconds = time.perf_counter() - t0  # near 0 when the videos were already there
    cfg = jepa_config(s, work)
    summary, pretrain_seconds = timed(JEPAAgent(cfg).train)
    encoder, _ = load_encoder(summary.checkpoint)
    dataset = labelled_dataset(labelled, cfg, "video")
    probe_cfg = ProbeConfig(epochs=s.probe_epochs, seed=s.seed, device="cpu")
    result: dict[str, Any] = {
        "budget": s.budget,
        "settings": dataclasses.asdict(s),
        "classes": list(CLASSES),
        "chance_acc": 1 / len(CLASSES),
        "data_seconds": data_seconds,
        "pretrain_seconds": pretrain_seconds,
        "pretrain_final_loss": summary.final_loss,
        "pretrain_monitor": summary.monitor,
    }
    result.update(probe_encoder(encoder, dataset, cfg, probe_cfg, ""))
    result.update(probe_encoder(random_encoder(cfg, s.seed + 7), dataset, cfg, probe_cfg, "random_"))
    static = run_probes(extract_features(encoder, StaticClips(dataset), cfg.image_size, "pooled", 32, progress=False),
                        dataclasses.replace(probe_cfg, kind="linear"))["linear"]  # fmt: skip
    result["static_linear_probe_acc"] = static.accuracy
    result.update(finetune(s, summary.checkpoint, labelled, work))
    margin = result["linear_probe_acc"] - result["random_linear_probe_acc"]
    result.update(linear_probe_margin=margin, target_met=bool(margin >= 0.20))
    result["machine"] = {"platform": platform.platform(), "torch": torch.__version__, "threads": s.threads}
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    """Bars of held-out accuracy, pretrained vs random encoder, with their wall-clock seconds."""
    names = ["linear_probe", "attentive_probe", "random_linear_probe", "random_attentive_probe", "finetune"]
    labels = [
        "linear\nprobe",
        "attentive\nprobe",
        "random enc.\nlinear",
        "random enc.\nattentive",
        "fine-tune",
    ]
    accs = [result[f"{n}_acc"] for n in names]
    secs = [result[f"{n}_seconds"] for n in names]
    fig, ax = plt.subplots(figsize=(7, 4))
    bars = ax.bar(labels, accs, color=["C0", "C0", "C7", "C7", "C2"])
    for bar, acc, sec in zip(bars, accs, secs):
        ax.text(
            bar.get_x() + bar.get_width() / 2, acc + 0.01, f"{acc:.0%}\n{sec:.1f}s", ha="center", va="bottom"
        )
    ax.axhline(result["chance_acc"], color="k", ls="--", lw=1, label="chance")
    ax.axhline(
        result["static_linear_probe_acc"], color="C1", ls=":", lw=1.5, label="linear probe, first frame only"
    )
    ax.set_ylim(0, 1.35)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("top-1 accuracy (held-out videos)")
    ax.set_title(f"shape x direction of motion, 4 classes (budget: {result['budget']})")
    ax.legend(loc="upper left", ncol=2, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    s = parse_args(argv)
    result = run(s)
    out = Path(s.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "downstream.json").write_text(json.dumps(result, indent=2) + "\n")
    plot(result, out / "downstream.png")
    keys = ["linear_probe_acc", "attentive_probe_acc", "random_linear_probe_acc", "random_attentive_probe_acc",
            "static_linear_probe_acc", "finetune_acc", "target_met"]  # fmt: skip
    print(json.dumps({k: result[k] for k in keys}, indent=2))


if __name__ == "__main__":
    main()
