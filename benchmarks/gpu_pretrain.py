"""GPU pretraining throughput: clips/s and model FLOP utilisation (MFU) of the trainer's own step, for the
``reference`` preset and a ViT-B/16 at 224 px (the ``default`` preset), in fp32 and bf16, eager and compiled.

Run ``python benchmarks/gpu_pretrain.py`` on a machine with a CUDA GPU (about 5 minutes on an H100, a hard
time guard stops it at ``--time-budget`` seconds); it writes ``benchmarks/results/gpu_pretrain.json`` as
``{"machine": {...}, "results": [{"preset", "precision", "compiled", "clips_per_s", "tflop_per_step",
"achieved_tflop_s", "mfu", "matmul_fraction", ...}, ...]}``. Without CUDA it says so and exits 0 without
writing numbers. ``--dry-run`` runs one tiny step on the CPU and prints the table (no JSON), as a smoke test.

Method:
- the step: the trainer's own ``TrainingLoop.train_step`` (uint8 frames -> floats, masks from the seeded generator made ahead as the DataLoader's workers make them,
  forward under ``cfg.precision``'s autocast, backward, clip, AdamW, EMA), with ``cfg.compile`` wrapping the
  forward in ``torch.compile`` exactly as the trainer does; batches are generated beforehand and already on
  the GPU, so data loading is not timed; each step ends with a synchronise, and the median is reported;
- FLOPs of a step: `torch.utils.flop_counter.FlopCounterMode` over one eager step (forward, backward, the
  EMA target's forward; elementwise work counts no FLOPs); compiled steps do the same arithmetic;
- MFU: achieved FLOP/s over the GPU's peak dense bf16 FLOP/s (``--peak-tflops``, by default from the
  device name: H100 SXM 989, H200 989, A100 312), for fp32 steps too, so the settings compare on one
  scale; ``matmul_fraction`` divides by the bf16 rate that large matmuls reach in the same run instead;
- fp32 means strict fp32 matmuls (PyTorch's default ``allow_tf32=False``), recorded in the JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script from a checkout

from torchwm.wm.config import JEPAConfig  # noqa: E402
from torchwm.wm.data import MovingShapes  # noqa: E402
from torchwm.wm.loop import TrainingLoop
from torchwm.wm.trainer import JEPAAgent, StepMasks  # noqa: E402

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "gpu_pretrain.json"
PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}
"""Dense bf16 tensor-core peaks from the vendor's data sheets (SXM parts; an H100 PCIe is 756)."""
PRESETS: dict[str, tuple[str, dict[str, Any]]] = {
    "reference": ("reference", {"batch_size": 64}),
    "vit-b-224": ("default", {"batch_size": 64}),
}
"""Benchmark name -> (preset, overrides): the 256-token reference config, and ViT-B/16 on 224 px images."""
DRY_RUN_PRESET = (
    "tiny",
    {"image_size": 32, "embed_dim": 32, "num_layers": 1, "num_heads": 4, "predictor_dim": 32, "predictor_depth": 1,
     "predictor_heads": 4, "batch_size": 2},
)  # fmt: skip
COMPILE_SECONDS_NEEDED = 100.0
"""Time a compiled setting is allowed to need (compilation included) before the guard skips it."""


class TimeGuard(Exception):
    """Raised by the alarm when the time budget is spent."""


def _alarm(signum: int, frame: Any) -> None:
    raise TimeGuard


def peak_tflops(name: str, given: float | None) -> tuple[float | None, str]:
    """The peak dense bf16 TFLOP/s of the device and where the number came from."""
    if given is not None:
        return given, "--peak-tflops"
    for key, value in PEAK_BF16_TFLOPS.items():
        if key in name:
            return value, f"data sheet ({key})"
    return None, "unknown device: pass --peak-tflops"


def matmul_tflops(device: torch.device, n: int = 8192, repeats: int = 10) -> float:
    """Best bf16 TFLOP/s of an n x n x n matmul on ``device`` (random data, after warm-up)."""
    a = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    b = torch.randn(n, n, device=device, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    best = float("inf")
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        a @ b
        _sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e12


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_config(name: str, precision: str, compiled: bool, device: torch.device, run_dir: str) -> JEPAConfig:
    preset, overrides = DRY_RUN_PRESET if name == "dry-run" else PRESETS[name]
    return JEPAConfig.preset(
        preset,
        **{
            **overrides,
            "synthetic_clips": 4 * overrides["batch_size"],
            "max_steps": 100_000,
            "epochs": 10_000,
        },
        device=str(device),
        precision=precision,
        compile=compiled,
        output_dir=run_dir,
        progress=False,
    )


def make_loop(cfg: JEPAConfig, device: torch.device) -> TrainingLoop:
    """The trainer's loop state (model, AdamW, schedules, autocast and compile switches) as `JEPAAgent.train` builds it."""
    return JEPAAgent(cfg).training_loop()


def make_batches(cfg: JEPAConfig, device: torch.device, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` distinct batches of uint8 frames [B, T, H, W, C], already on ``device``."""
    data = MovingShapes(count * cfg.batch_size, cfg.num_frames, cfg.image_size, cfg.frame_step, cfg.seed)
    batches = []
    for i in range(count):
        frames = torch.stack([data[i * cfg.batch_size + j]["frames"] for j in range(cfg.batch_size)])
        masks = [(c.to(device), t.to(device)) for c, t in StepMasks(cfg, 2 if cfg.cross_view_weight > 0 else 1, 0, 1)(i)]
        batches.append({"frames": frames.to(device), "masks": masks})
    return batches


def step_seconds(loop: TrainingLoop, batch: dict[str, torch.Tensor]) -> float:
    device = next(loop.task.module.parameters()).device
    _sync(device)
    start = time.perf_counter()
    loop.train_step(batch)
    _sync(device)
    return time.perf_counter() - start


def count_step_tflop(loop: TrainingLoop, batch: dict[str, torch.Tensor]) -> float:
    """TFLOP of one eager training step, counted by FlopCounterMode."""
    with FlopCounterMode(display=False) as counter:
        step_seconds(loop, batch)
    return counter.get_total_flops() / 1e12


def bench_setting(
    name: str,
    precision: str,
    compiled: bool,
    device: torch.device,
    args: argparse.Namespace,
    tflop: float | None,
) -> tuple[dict[str, Any], float]:
    """Every number of one setting, measured in this process, and the TFLOP of its step (counted once a preset)."""
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = bench_config(name, precision, compiled, device, run_dir)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        torch._dynamo.reset()
        loop = make_loop(cfg, device)
        batches = make_batches(cfg, device, 4)
        if tflop is None:  # counted on an eager step, which doubles as a warm-up step
            tflop = count_step_tflop(make_loop(cfg, device) if compiled else loop, batches[0])
        first = step_seconds(loop, batches[0])  # compiles, when compiled
        warm = [step_seconds(loop, batches[i % 4]) for i in range(args.warmup)]
        seconds = [step_seconds(loop, batches[i % 4]) for i in range(args.steps)]
    step = statistics.median(seconds)
    return {
        "preset": name,
        "precision": precision,
        "compiled": compiled,
        "status": "ok",
        "batch_size": cfg.batch_size,
        "tokens_per_clip": cfg.num_tokens,
        "clips_per_s": round(cfg.batch_size / step, 2),
        "step_ms_median": round(1000 * step, 3),
        "step_ms_min": round(1000 * min(seconds), 3),
        "first_step_s": round(first, 2),
        "warmup_steps": len(warm),
        "timed_steps": len(seconds),
        "tflop_per_step": round(tflop, 4),
        "achieved_tflop_s": round(tflop / step, 3),
        "peak_memory_gib": round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
        if device.type == "cuda"
        else None,
        "config": {k: getattr(cfg, k) for k in _SHAPE_FIELDS},
    }, tflop


_SHAPE_FIELDS = (
    "image_size", "patch_size", "num_frames", "tubelet_size", "embed_dim", "num_layers", "num_heads",
    "predictor_dim", "predictor_depth", "predictor_heads", "batch_size", "masking", "mask_ratio",
)  # fmt: skip


def settings(names: list[str]) -> list[tuple[str, str, bool]]:
    """Eager settings first (cheap), then compiled bf16 (the one that matters on GPUs), then compiled fp32."""
    eager = [(n, p, False) for n in names for p in ("fp32", "bf16")]
    return eager + [(n, "bf16", True) for n in names] + [(n, "fp32", True) for n in names]


def run_all(device: torch.device, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Every setting that fits in the time budget; the rest are listed as skipped."""
    names = ["dry-run"] if args.dry_run else args.presets
    plan = [("dry-run", "fp32", False)] if args.dry_run else settings(names)
    deadline = time.monotonic() + args.time_budget
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(args.time_budget) + 1)
    tflop: dict[str, float] = {}
    results = []
    try:
        for name, precision, compiled in plan:
            left = deadline - time.monotonic()
            if compiled and left < COMPILE_SECONDS_NEEDED or left < 10:
                results.append(_skipped(name, precision, compiled, f"time guard: {left:.0f} s left"))
                continue
            print(f"{name} {precision} {'compiled' if compiled else 'eager'} ...", flush=True)
            try:
                row, tflop[name] = bench_setting(name, precision, compiled, device, args, tflop.get(name))
            except TimeGuard:
                results.append(_skipped(name, precision, compiled, "time guard: stopped while running"))
                break
            except torch.cuda.OutOfMemoryError:
                results.append(_skipped(name, precision, compiled, "out of GPU memory"))
                torch.cuda.empty_cache()
                continue
            results.append(row)
    finally:
        signal.alarm(0)
    done = {(r["preset"], r["precision"], r["compiled"]) for r in results}
    results += [_skipped(*s, "time guard: not started") for s in plan if s not in done]
    return results


def _skipped(name: str, precision: str, compiled: bool, why: str) -> dict[str, Any]:
    return {"preset": name, "precision": precision, "compiled": compiled, "status": why}


def add_utilisation(results: list[dict[str, Any]], peak: float | None, matmul: float | None) -> None:
    for row in results:
        if row["status"] == "ok":
            row["mfu"] = round(row["achieved_tflop_s"] / peak, 4) if peak else None
            row["matmul_fraction"] = round(row["achieved_tflop_s"] / matmul, 4) if matmul else None


def table(results: list[dict[str, Any]]) -> str:
    head = f"{'preset':<10} {'prec':<5} {'mode':<8} {'clips/s':>9} {'ms/step':>9} {'TFLOP/step':>11} {'TFLOP/s':>9} {'MFU':>7} {'of mm':>7}"
    lines = [head, "-" * len(head)]
    for r in results:
        mode = "compiled" if r["compiled"] else "eager"
        if r["status"] != "ok":
            lines.append(f"{r['preset']:<10} {r['precision']:<5} {mode:<8} {r['status']}")
            continue
        mfu = "n/a" if r.get("mfu") is None else f"{100 * r['mfu']:.1f}%"
        mm = "n/a" if r.get("matmul_fraction") is None else f"{100 * r['matmul_fraction']:.1f}%"
        lines.append(
            f"{r['preset']:<10} {r['precision']:<5} {mode:<8} {r['clips_per_s']:>9.1f} {r['step_ms_median']:>9.2f} "
            f"{r['tflop_per_step']:>11.4g} {r['achieved_tflop_s']:>9.2f} {mfu:>7} {mm:>7}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--dry-run", action="store_true", help="one tiny step on the CPU; print, write nothing"
    )
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=list(PRESETS))
    parser.add_argument("--peak-tflops", type=float, default=None, help="peak dense bf16 TFLOP/s of the GPU")
    parser.add_argument("--steps", type=int, default=20, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps per setting (after the first)")
    parser.add_argument("--time-budget", type=float, default=330.0, help="seconds before the guard stops")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH)
    args = parser.parse_args(argv)
    if args.dry_run:
        args.steps, args.warmup = 1, 0
        device = torch.device("cpu")
    elif not torch.cuda.is_available():
        print(
            "gpu_pretrain: no CUDA device here, nothing measured (--dry-run runs one tiny CPU step instead)"
        )
        return 0
    else:
        device = torch.device("cuda", torch.cuda.current_device())
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    peak, peak_source = peak_tflops(name, args.peak_tflops) if device.type == "cuda" else (None, "cpu")
    matmul = matmul_tflops(device) if device.type == "cuda" else None
    results = run_all(device, args)
    if device.type == "cuda":
        matmul = max(matmul, matmul_tflops(device))  # the better of before and after
    add_utilisation(results, peak, matmul)
    print(
        f"device: {name}; peak bf16 {peak} TFLOP/s ({peak_source}); bf16 matmul reached {matmul and round(matmul, 1)}"
    )
    print(table(results))
    if args.dry_run:
        return 0
    machine = {
        "device": name,
        "torch_version": torch.__version__,
        "cuda_version": torch.version.cuda,
        "peak_bf16_tflop_s": peak,
        "peak_source": peak_source,
        "matmul_bf16_tflop_s": round(matmul, 2) if matmul else None,
        "allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "time_budget_s": args.time_budget,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine, "results": results}, indent=2) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
