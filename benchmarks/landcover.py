"""Land-cover classification speed and memory: training and prediction pixels per second, against
reading the scene once, on a full demo scene and on a large synthetic scene.

    python benchmarks/landcover.py                       # demo scene (1024 x 1024 x 8 dates) and 10,000 x 10,000
    python benchmarks/landcover.py --large-px 4000       # a smaller large scene

Each measurement runs in a fresh process (benchmarks/harness.py): peak RSS is its own. Prediction
runs window by window (256 rows), so memory should stay flat as the scene grows.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import rasterio
from rasterio.transform import from_origin

from harness import measure, write_results
from models.ingest.catalog import build_catalog
from models.interpretation.classifier import classify_scenes
from models.interpretation.landcover import labels_for_scenes
from models.simulation.simulator import BANDS, SPECTRA, SimulationConfig, gaussian_field, simulate_study


def _read_all(catalog: pd.DataFrame) -> dict:
    total = 0
    for paths in catalog["paths"]:
        for path in paths:
            with rasterio.open(path) as src:
                for _, window in src.block_windows(1):
                    total += src.read(window=window).size
    return {"values_read": total}


def _classify(catalog: pd.DataFrame, label_paths: list[str], out: str) -> dict:
    labels = {i: labels_for_scenes("raster", catalog.iloc[[i]].reset_index(drop=True), path=p)[0] for i, p in enumerate(label_paths)}
    result = classify_scenes(catalog, labels, Path(out), per_class=2000)
    pixels = int((catalog["width"] * catalog["height"]).sum())
    return {
        "classifier": result.classifier,
        "accuracy": round(result.accuracy, 3),
        "training_pixels": result.training_pixels,
        "train_seconds": round(result.train_seconds, 1),
        "train_pixels_per_second": round(result.training_pixels / result.train_seconds),
        "predict_seconds": round(result.predict_seconds, 1),
        "predict_pixels_per_second": round(pixels / result.predict_seconds),
    }


def large_scene(folder: Path, px: int) -> tuple[Path, Path]:
    """A px x px six-band scene (int16, scale 1e-4, tiled) and its true classes, from smooth random fields."""
    rng = np.random.default_rng(0)
    small = 512
    classes = np.array(list(SPECTRA))
    field = np.digitize(gaussian_field((small, small), 20, rng), np.linspace(-1.5, 1.5, len(classes) - 1))
    profile = {
        "driver": "GTiff",
        "width": px,
        "height": px,
        "crs": "EPSG:32636",
        "transform": from_origin(500_000, 60_000, 30, 30),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
    }
    scene, truth = folder / "scene_2020-07-15.tif", folder.parent / "labels.tif"
    lut = np.array([SPECTRA[c] for c in classes], dtype=np.float32)
    with (
        rasterio.open(scene, "w", count=len(BANDS), dtype="int16", nodata=-9999, **profile) as dst,
        rasterio.open(truth, "w", count=1, dtype="uint8", nodata=0, **profile) as lab,
    ):
        dst.scales = (1e-4,) * len(BANDS)
        for row0 in range(0, px, 512):
            h = min(512, px - row0)
            rows = (np.arange(row0, row0 + h) * small // px)[:, None]
            cols = (np.arange(px) * small // px)[None, :]
            idx = field[rows, cols]
            values = lut[idx].transpose(2, 0, 1) * (1 + 0.05 * rng.standard_normal((len(BANDS), h, px)))
            window = rasterio.windows.Window(0, row0, px, h)
            dst.write(np.round(values / 1e-4).astype(np.int16), window=window)
            lab.write(classes[idx].astype(np.uint8)[None], window=window)
    return scene, truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--large-px", type=int, default=10_000)
    parser.add_argument("--demo-px", type=int, default=1024, help="side of the simulated demo region")
    parser.add_argument("--demo-dates", type=int, default=8)
    parser.add_argument("--out", default="benchmarks/results/landcover.json")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        study = simulate_study(SimulationConfig(n_units=10, n_survey=10, region_px=args.demo_px, n_dates=args.demo_dates), tmp / "demo")
        catalog = build_catalog(study.imagery_dir)
        truth = [str(p) for p in sorted(study.landcover_dir.glob("*.tif"))]
        started = time.perf_counter()
        (tmp / "large").mkdir()
        scene, labels = large_scene(tmp / "large", args.large_px)
        print(f"wrote the {args.large_px} x {args.large_px} scene in {time.perf_counter() - started:.0f} s", flush=True)
        large = build_catalog(tmp / "large", band_names=list(BANDS))
        for name, cat, label_paths in (
            (f"demo scene, {args.demo_px} x {args.demo_px} x {args.demo_dates} dates", catalog, truth),
            (f"synthetic, {args.large_px:,} x {args.large_px:,} x 1 date", large, [str(labels)]),
        ):
            pixels = int((cat["width"] * cat["height"]).sum())
            read = measure(_read_all, cat)
            classify = measure(_classify, cat, label_paths, str(tmp / f"maps_{len(rows)}"))
            rows.append(
                {
                    "scene": name,
                    "pixels": pixels,
                    "read_seconds": read["seconds"],
                    "read_peak_rss_mb": read["peak_rss_mb"],
                    **classify,
                    "classify_peak_rss_mb": classify.get("peak_rss_mb"),
                }
            )
            if "predict_seconds" in classify:
                rows[-1]["predict_over_read"] = round(classify["predict_seconds"] / read["seconds"], 1)
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).drop(columns=["peak_rss_mb", "seconds"], errors="ignore").to_markdown(index=False))
    write_results(args.out, rows, vars(args))


if __name__ == "__main__":
    main()
