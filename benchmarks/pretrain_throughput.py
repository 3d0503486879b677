"""Pretraining throughput: clips/s of the real JEPA training step and its achieved FLOP/s as a fraction
of this machine's measured fp32 matmul rate, both measured in the same run.

Run ``python benchmarks/pretrain_throughput.py``; it writes benchmarks/results/pretrain_throughput.json
as ``{"machine": {...}, "results": [{"preset", "clips_per_s", "gflop_per_step", "achieved_gflop_s",
"matmul_gflop_s", "matmul_fraction", "threads", "torch_version", ...}, ...]}``.

Method:
- matmul rate: the best of several ``n x n @ n x n`` fp32 matmuls (n = 2048) at the current thread count;
- FLOPs of a step: `torch.utils.flop_counter.FlopCounterMode` over one whole training step (forward,
  backward, AdamW, EMA), with CPU flash attention counted like the GPU kernels (2·N²·d a head forward);
  elementwise work (norms, GELU, AdamW, EMA) counts no FLOPs, as everywhere;
- step time: the trainer's own ``TrainingLoop.train_step`` (frames -> floats, masks (pre-made, as the DataLoader's workers make them), forward, backward, clip,
  AdamW, EMA) on MovingShapes batches generated beforehand, so data generation is not timed; the
  median of per-step times after warm-up. ``end_to_end_clips_per_s`` adds the data set and DataLoader.
The matmul rate is measured before and after the steps and the better one is used. On a machine that
other processes keep busy these numbers mean little: the JSON records the load average before and
after each preset, and ``matmul_fraction_paired`` (the median over steps of the step's rate over a
matmul timed right after it), which holds up under a steady load at one thread. With two or more
threads a busy machine hurts the step far more than a matmul: each of its thousands of small parallel
regions waits for a descheduled thread, and libgomp's spinning makes that wait cost a time slice.
On a shared machine run ``OMP_WAIT_POLICY=PASSIVE python benchmarks/pretrain_throughput.py --threads 2 1``
(the JSON records the policy); on a quiet machine leave it unset.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode, sdpa_backward_flop_count, sdpa_flop_count
from torchwm.wm.config import JEPAConfig
from torchwm.wm.data import MovingShapes
from torchwm.wm.loop import TrainingLoop
from torchwm.wm.trainer import JEPAAgent, StepMasks

RESULTS_PATH = Path(__file__).resolve().parent / "results" / "pretrain_throughput.json"
PRESETS = ("tiny", "reference")
VJEPA_REFERENCE = {"clips_per_s": 16.6, "gflop_per_step": 68.0, "matmul_fraction": 0.59}
"""V-JEPA's own training step at the reference config on this CPU (the number to match)."""
_DEFAULT_THREADS = torch.get_num_threads()


def _cpu_attention_flops(query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs) -> int:  # type: ignore[no-untyped-def]
    return sdpa_flop_count(query_shape, key_shape, value_shape)


def _cpu_attention_backward_flops(
    grad_out_shape, query_shape, key_shape, value_shape, *args, out_shape=None, **kwargs
) -> int:  # type: ignore[no-untyped-def]
    return sdpa_backward_flop_count(grad_out_shape, query_shape, key_shape, value_shape)


# CPU flash attention has no formula in FlopCounterMode (it would count 0); count it like the GPU kernels.
CPU_ATTENTION_FLOPS = {
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu: _cpu_attention_flops,
    torch.ops.aten._scaled_dot_product_flash_attention_for_cpu_backward: _cpu_attention_backward_flops,
}


def matmul_gflop_s(n: int = 2048, repeats: int = 5) -> float:
    """Best fp32 GFLOP/s of an n x n x n matmul at the current thread count."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    out = torch.empty(n, n)
    torch.mm(a, b, out=out)  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b, out=out)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def bench_config(preset: str, run_dir: str) -> JEPAConfig:
    """The preset as the benchmark runs it: fp32 on the CPU, block masks, no progress bar."""
    return JEPAConfig.preset(
        preset,
        device="cpu",
        precision="fp32",
        masking="block",
        output_dir=run_dir,
        progress=False,
        synthetic_clips=256,
        max_steps=10_000,
        epochs=1000,
    )


def make_loop(cfg: JEPAConfig) -> TrainingLoop:
    """The trainer's loop (model, AdamW, schedules, the moving-shapes data set) exactly as `JEPAAgent.train` builds it."""
    return JEPAAgent(cfg).training_loop()


def pregenerate(cfg: JEPAConfig, count: int) -> list[dict[str, torch.Tensor]]:
    """``count`` batches as the DataLoader hands them to the step (uint8 frames [B, T, H, W, C])."""
    data = MovingShapes(count * cfg.batch_size, cfg.num_frames, cfg.image_size, cfg.frame_step, cfg.seed)
    batches = []
    for i in range(count):
        items = [data[i * cfg.batch_size + j] for j in range(cfg.batch_size)]
        batches.append(
            {
                "frames": torch.stack([it["frames"] for it in items]),
                "label": torch.tensor([it["label"] for it in items]),
                "masks": StepMasks(cfg, 2 if cfg.cross_view_weight > 0 else 1, 0, 1)(i),
            }
        )
    return batches


def count_step_gflop(loop: TrainingLoop, batch: dict[str, torch.Tensor]) -> float:
    """GFLOP of one training step (forward + backward + AdamW + EMA), counted by FlopCounterMode."""
    with FlopCounterMode(display=False, custom_mapping=CPU_ATTENTION_FLOPS) as counter:
        loop.train_step(batch)
    return counter.get_total_flops() / 1e9


def time_steps(
    loop: TrainingLoop, batches: list[dict[str, torch.Tensor]], warmup: int, paired: list[float] | None = None
) -> list[float]:
    """Seconds of each training step after ``warmup`` untimed ones. With ``paired``, a matmul rate
    measured right after each timed step is appended to it (so that both see the same machine load)."""
    seconds = []
    for i, batch in enumerate(batches):
        start = time.perf_counter()
        terms = loop.train_step(batch)
        terms["total"].item()  # the step is done (a no-op wait on the CPU, kept for accelerators)
        if i >= warmup:
            seconds.append(time.perf_counter() - start)
            if paired is not None:
                paired.append(matmul_gflop_s(repeats=1))
    return seconds


def end_to_end_clips_per_s(loop: TrainingLoop, steps: int) -> float:
    """Clips/s with the data set and DataLoader in the loop (MovingShapes rendered on the fly)."""
    loop.step = 0
    batches = loop.task.batches(0)
    loop.train_step(next(batches))  # warm-up
    start = time.perf_counter()
    for _ in range(steps):
        loop.train_step(next(batches))
    return steps * loop.settings.items_per_step / (time.perf_counter() - start)


def bench_preset(preset: str, steps: int, warmup: int) -> dict[str, Any]:
    """Every number of one preset, measured in this process."""
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as run_dir:
        cfg = bench_config(preset, run_dir)
        loop = make_loop(cfg)
        batches = pregenerate(cfg, warmup + steps)
        gflop = count_step_gflop(loop, batches[0])
        peak_before = matmul_gflop_s()
        paired: list[float] = []
        seconds = time_steps(loop, batches, warmup, paired)
        peak_after = matmul_gflop_s()
        e2e = end_to_end_clips_per_s(loop, max(steps // 2, 3))
    step_s = statistics.median(seconds)
    peak = max(peak_before, peak_after)
    achieved = gflop / step_s
    return {
        "preset": preset,
        "clips_per_s": round(cfg.batch_size / step_s, 2),
        "end_to_end_clips_per_s": round(e2e, 2),
        "step_ms_median": round(1000 * step_s, 2),
        "step_ms_min": round(1000 * min(seconds), 2),
        "gflop_per_step": round(gflop, 3),
        "achieved_gflop_s": round(achieved, 2),
        "matmul_gflop_s": round(peak, 2),
        "matmul_fraction": round(achieved / peak, 3),
        "matmul_fraction_fastest_step": round(gflop / min(seconds) / peak, 3),
        "matmul_fraction_paired": round(statistics.median(gflop / t / r for t, r in zip(seconds, paired)), 3),
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "threads": torch.get_num_threads(),
        "torch_version": torch.__version__,
        "batch_size": cfg.batch_size,
        "tokens_per_clip": cfg.num_tokens,
        "timed_steps": len(seconds),
        "config": {k: getattr(cfg, k) for k in _SHAPE_FIELDS},
    }


_SHAPE_FIELDS = (
    "image_size", "patch_size", "num_frames", "tubelet_size", "embed_dim", "num_layers", "num_heads",
    "predictor_dim", "predictor_depth", "predictor_heads", "batch_size", "masking", "mask_ratio", "precision",
)  # fmt: skip


def profile_step(preset: str, steps: int = 5, rows: int = 25) -> str:
    """torch.profiler table (self CPU time) of a few training steps of a preset."""
    from torch.profiler import ProfilerActivity, profile

    with tempfile.TemporaryDirectory() as run_dir:
        cfg = bench_config(preset, run_dir)
        loop = make_loop(cfg)
        batches = pregenerate(cfg, steps + 2)
        time_steps(loop, batches[:2], warmup=2)
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            time_steps(loop, batches[2:], warmup=0)
    return prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows)


def compare_with_vjepa(result: dict[str, Any]) -> dict[str, Any]:
    """Our reference-preset numbers against V-JEPA's recorded step (measured once, on a machine of ~120 GFLOP/s).

    Clips/s of two machines do not compare; at one matmul rate, clips/s scale with the fraction of it a step
    achieves over the FLOPs a step needs, so ``clips_per_s_ratio_at_one_matmul_rate`` = (our fraction / V-JEPA's)
    x (V-JEPA's GFLOP a step / ours): how many times V-JEPA's clips/s we would train at on its machine."""
    ours = result["matmul_fraction"]
    fraction_ratio = ours / VJEPA_REFERENCE["matmul_fraction"]
    return {
        "vjepa": VJEPA_REFERENCE,
        "fraction_ratio": round(fraction_ratio, 3),
        "clips_per_s_ratio_at_one_matmul_rate": round(
            fraction_ratio * VJEPA_REFERENCE["gflop_per_step"] / result["gflop_per_step"], 3
        ),
        "matches": ours >= 0.9 * VJEPA_REFERENCE["matmul_fraction"],
    }


def machine_info() -> dict[str, Any]:
    """Where the numbers were measured."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "default_threads": _DEFAULT_THREADS,
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY", "(unset: libgomp spins)"),
    }


def main(argv: list[str] | None = None) -> None:
    """Benchmark every preset and write the JSON results (or print a profile with --profile)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", nargs="+", default=list(PRESETS), choices=PRESETS)
    parser.add_argument("--steps", type=int, default=20, help="timed training steps per preset")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps before timing")
    parser.add_argument(
        "--threads", type=int, nargs="+", default=[0], help="torch thread counts to run (0: torch's default)"
    )
    parser.add_argument("--profile", action="store_true", help="print a torch.profiler table instead")
    parser.add_argument("--out", type=Path, default=RESULTS_PATH, help="where to write the JSON")
    args = parser.parse_args(argv)
    default_threads = torch.get_num_threads()
    results = []
    for threads in args.threads:
        torch.set_num_threads(threads or default_threads)
        for preset in args.presets:
            if args.profile:
                print(f"== {preset}, {torch.get_num_threads()} threads\n{profile_step(preset)}")
                continue
            result = bench_preset(preset, args.steps, args.warmup)
            if preset == "reference":
                result["vs_vjepa"] = compare_with_vjepa(result)
            results.append(result)
            print(json.dumps(result))
    if args.profile:
        return
    args.out.parent.mkdir(parents=True, exist_ok=True)
    payload = {"machine": machine_info(), "results": results}
    args.out.write_text(json.dumps(payload, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
