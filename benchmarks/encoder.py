"""Encoder training throughput and peak memory per capacity: fast path vs plain fp32 eager.

    python benchmarks/encoder.py                        # CUDA if present, else CPU
    python benchmarks/encoder.py --device cpu --capacities small --units 1000 --epochs 8

Fast path on CUDA: bf16 autocast, channels_last, pinned memory (+ torch.compile with --compile).
The baseline is the same model in fp32, eager, without those. On CPU both paths are the same code
(autocast and channels_last apply to CUDA only), so only the baseline is run there. Throughput
excludes the first epoch (allocator, cuDNN autotuning and compilation warm-up).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
import torch

from harness import measure as fresh
from harness import write_results
from models.representation.encoders import EncoderSpec, SequenceEncoder, parameter_count
from models.representation.training import SequenceData, TrainConfig, resolve_device, train_encoder


def synthetic(n: int, t: int = 8, c: int = 6, size: int = 32) -> SequenceData:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, t, c, size, size, generator=g)
    valid = torch.rand(n, t, size, size, generator=g) > 0.1
    return SequenceData(
        np.array([f"u{i}" for i in range(n)], dtype=object), x, valid, torch.arange(t, dtype=torch.float32), torch.zeros(c), torch.ones(c)
    )


def measure(capacity: str, data: SequenceData, cfg: TrainConfig, device: torch.device, objective: str) -> dict:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)
    target = data.x[:, :, 3].mean(dim=(1, 2, 3)).numpy() if objective == "prognostic" else None
    started = time.perf_counter()
    _, history = train_encoder(EncoderSpec(capacity=capacity), data, objective, cfg, device, target)
    wall = time.perf_counter() - started
    steady = history[1:] or history
    row = {
        "capacity": capacity,
        "parameters": parameter_count(SequenceEncoder(EncoderSpec(capacity=capacity))),
        "sequences_per_second": round(float(np.mean([r["sequences_per_second"] for r in steady])), 1),
        "wall_seconds": round(wall, 1),
    }
    if device.type == "cuda":
        row["peak_gpu_memory_mb"] = round(torch.cuda.max_memory_allocated(device) / 2**20)
    return row


def _measure_fresh(capacity: str, units: int, cfg: TrainConfig, device_name: str, objective: str) -> dict:
    """One measurement in its own process (the harness adds its peak RSS)."""
    return measure(capacity, synthetic(units), cfg, resolve_device(device_name), objective)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--capacities", nargs="+", default=["small", "medium", "large"])
    parser.add_argument("--units", type=int, default=2048)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--objective", default="contrastive", choices=["contrastive", "prognostic"])
    parser.add_argument("--compile", action="store_true")
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    device = resolve_device(args.device)
    paths = {"fp32 eager baseline": TrainConfig(epochs=args.epochs, batch_size=args.batch_size, amp=False, fast=False)}
    if device.type == "cuda":
        paths["fast (bf16, channels_last, pinned" + (", compile)" if args.compile else ")")] = TrainConfig(
            epochs=args.epochs, batch_size=args.batch_size, amp=True, fast=True, compile=args.compile
        )
    rows = []
    for capacity in args.capacities:
        for name, cfg in paths.items():
            rows.append(
                {
                    "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
                    "path": name,
                    **fresh(_measure_fresh, capacity, args.units, cfg, str(device), args.objective),
                }
            )
        if device.type == "cuda":
            base, fast = rows[-2], rows[-1]
            fast["speedup"] = round(fast["sequences_per_second"] / base["sequences_per_second"], 2)
    table = pd.DataFrame(rows)
    print(
        f"T=8 C=6 32x32, {args.units} sequences, batch {args.batch_size}, {args.objective}, {args.epochs} epochs, torch threads {torch.get_num_threads()}"
    )
    print(table.to_markdown(index=False))
    write_results(args.out or f"benchmarks/results/encoder_{device.type}.json", rows, vars(args))


if __name__ == "__main__":
    main()
