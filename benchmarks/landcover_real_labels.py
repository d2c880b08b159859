"""Land-cover accuracy on real labels: the hand-drawn polygons of tests/data on the real Landsat 7
scene, every classifier family on the same spatially blocked folds, one row per seed (a seed draws
a new split), with the one ``classifier: auto`` keeps and the coverage of the map.

    python benchmarks/landcover_real_labels.py                 # seeds 0-4
    python benchmarks/landcover_real_labels.py --seeds 0 1
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pandas as pd

from harness import write_results

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.ingest.catalog import build_catalog  # noqa: E402
from models.interpretation.classifier import classify_scenes  # noqa: E402
from models.interpretation.landcover import labels_for_scenes  # noqa: E402

SCENE = ROOT / "tests" / "data" / "nc_landsat7_2000"
LABELS = ROOT / "tests" / "data" / "nc_landsat7_2000_hand_labels.parquet"  # tests/data/make_hand_labels.py
BANDS = {"blue": "10", "green": "20", "red": "30", "nir": "40", "swir1": "50", "swir2": "70"}
CROSSWALK = {"water": 80, "forest": 10, "developed": 50, "grass": 30, "bare": 60}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(5)))
    parser.add_argument("--block-px", type=int, default=32)
    parser.add_argument("--out", default="benchmarks/results/landcover_real_labels.json")
    args = parser.parse_args()
    catalog = build_catalog(SCENE, band_names=list(BANDS), band_files=BANDS)
    labels = labels_for_scenes("vector", catalog, path=str(LABELS), class_column="cover", crosswalk=CROSSWALK)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            result = classify_scenes(catalog, labels, Path(tmp) / str(seed), min_per_class=20, block_px=args.block_px, seed=seed)
            compared = result.candidates.set_index("classifier")
            coverage = result.coverage.iloc[0]
            rows.append(
                {
                    "seed": seed,
                    **{kind: round(float(compared.loc[kind, "accuracy"]), 3) for kind in compared.index},
                    "chosen": result.classifier,
                    "chosen_behind_best": round(float(compared.loc[result.classifier, "behind_best"]), 3),
                    "macro_f1": round(result.cv.macro_f1, 3),
                    "fold_accuracy": "/".join(f"{a:.2f}" for a in result.cv.fold_accuracy),
                    "classified": float(coverage["classified"]),
                    "classified_from_all_bands": round(float(coverage["classified_from_all_bands"]), 3),
                }
            )
            print(rows[-1], flush=True)
    print(pd.DataFrame(rows).to_markdown(index=False))
    write_results(args.out, rows, vars(args), per_class_last_seed=result.cv.per_class.round(3).to_dict("records"))


if __name__ == "__main__":
    main()
