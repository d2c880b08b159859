"""Chip-extraction throughput and peak memory: ours vs a naive per-chip reader vs reading everything.

    python benchmarks/ingest.py                # 1,000 and 10,000 units, T=8, C=6, 32 x 32
    python benchmarks/ingest.py --units 1000   # one size

Each method runs in a fresh process (benchmarks/harness.py) so its peak RSS is its own. The naive baseline
opens every file once per chip (a boundless rasterio read), as a first script would; it is timed
on a sample of units and reported per chip.
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.windows import Window

from harness import measure, write_results
from models.ingest.catalog import build_catalog
from models.ingest.chips import chip_origins, integer_coding, iter_chip_tiles, scenes_from_catalog, write_sequence_cube
from models.simulation.simulator import SimulationConfig, simulate_study

SIZE = 32


def _ours(units: pd.DataFrame, catalog: pd.DataFrame, out: str) -> int:
    return write_sequence_cube(units, catalog, out, size=SIZE).n_units


def _extract_only(units: pd.DataFrame, catalog: pd.DataFrame, out: str) -> int:
    scenes = scenes_from_catalog(catalog)
    with contextlib.ExitStack() as stack:
        for scene in scenes:
            stack.enter_context(scene)
        coding = integer_coding(catalog)  # as the pipeline reads: the sources' integers when they are integer
        return sum(len(idx) for idx, _, _ in iter_chip_tiles(units["lon"], units["lat"], scenes, SIZE, coding=coding))


def _naive(units: pd.DataFrame, catalog: pd.DataFrame, out: str) -> int:
    from pyproj import Transformer

    chips = []
    for lon, lat in zip(units["lon"], units["lat"], strict=True):
        frames = []
        for scene in catalog.itertuples():
            x, y = Transformer.from_crs("EPSG:4326", scene.crs, always_xy=True).transform(lon, lat)
            with rasterio.open(scene.paths[0]) as src:
                r, c = chip_origins(np.array([x]), np.array([y]), src.transform, SIZE)
                frames.append(src.read(window=Window(int(c[0]), int(r[0]), SIZE, SIZE), boundless=True, fill_value=src.nodata))
        chips.append(np.stack(frames))
    return len(chips)


def _read_all(units: pd.DataFrame, catalog: pd.DataFrame, out: str) -> int:
    total = 0
    for scene in catalog.itertuples():
        with rasterio.open(scene.paths[0]) as src:
            total += src.read().size
    return total


METHODS = {
    "eotrials (grouped reads -> Zarr)": _ours,
    "eotrials reads only (no write)": _extract_only,
    "naive (open file per chip)": _naive,
    "read every raster once": _read_all,
}


def _worker(name: str, units: pd.DataFrame, catalog: pd.DataFrame, out: str, repeats: int) -> dict:
    """The median of ``repeats`` timed runs (single runs vary by +-15% on a shared 2-core machine)."""
    METHODS[name](units.iloc[:16], catalog, out + ".warmup")  # one-time lazy imports, not throughput
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        METHODS[name](units, catalog, out)
        times.append(time.perf_counter() - start)
    return {"seconds": float(np.median(times))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--naive-sample", type=int, default=300, help="units timed for the naive baseline")
    parser.add_argument("--region-px", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per method (the median is reported)")
    parser.add_argument("--out", default="benchmarks/results/ingest.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SimulationConfig(n_units=max(args.units), n_survey=10, n_dates=8, region_px=args.region_px, chip_size=SIZE)
        study = simulate_study(cfg, Path(tmp) / "study")
        catalog = build_catalog(study.imagery_dir)
        all_units = pd.read_csv(study.trial_table(cfg.trials[0]))
        for n in args.units:
            units = all_units.iloc[:n]
            for name in METHODS:
                sample = units.iloc[: args.naive_sample] if name.startswith("naive") else units
                measured = measure(_worker, name, sample, catalog, str(Path(tmp) / f"cube_{n}.zarr"), args.repeats)
                seconds, peak = measured["seconds"], measured["peak_rss_mb"]
                per_chip_seconds = seconds / len(sample)
                rows.append(
                    {
                        "units": n,
                        "method": name,
                        "timed_units": len(sample),
                        "seconds": round(seconds, 2),
                        "chips_per_second": round(1 / per_chip_seconds, 1) if not name.startswith("read") else None,
                        "peak_rss_mb": round(peak),
                    }
                )
            naive = next(r for r in rows if r["units"] == n and r["method"].startswith("naive"))
            read_all = next(r for r in rows if r["units"] == n and r["method"].startswith("read"))
            for row in rows:
                if row["units"] == n and row["method"].startswith("eotrials"):
                    row["speedup_vs_naive"] = round(row["chips_per_second"] / naive["chips_per_second"], 1)
                    row["ratio_to_read_all"] = round(row["seconds"] / read_all["seconds"], 2)
    table = pd.DataFrame(rows)
    print(table.to_markdown(index=False))
    write_results(args.out, rows, vars(args), config={"T": 8, "C": 6, "chip": SIZE, "region_px": args.region_px})


if __name__ == "__main__":
    main()
