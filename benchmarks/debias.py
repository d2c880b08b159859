"""Correcting a 10-million-cell map: cells per second for LCC and Tweedie (grid + interpolation)
against a direct KDE score evaluation (every cell against every calibration point).

    python benchmarks/debias.py                    # 10,000,000 cells, 1,000 calibration points
    python benchmarks/debias.py --cells 1000000

The direct evaluation is timed on a sample of cells and reported per cell. The three timings share
one process on purpose (they correct the same in-memory arrays); the environment record comes from
benchmarks/harness.py.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

from harness import write_results
from models.debiasing.corrections import LinearCalibrationCorrection, TweedieCorrection, kde_score


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cells", type=int, default=10_000_000)
    parser.add_argument("--calibration", type=int, default=1000)
    parser.add_argument("--direct-sample", type=int, default=200_000)
    parser.add_argument("--out", default="benchmarks/results/debias.json")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    truth = rng.standard_normal(args.calibration)
    pred = 0.6 * truth + 0.5 * rng.standard_normal(args.calibration)
    cells = (0.6 * rng.standard_normal(args.cells) + 0.5 * rng.standard_normal(args.cells)).astype(np.float32)
    lcc, tweedie = LinearCalibrationCorrection().fit(pred, truth), TweedieCorrection().fit(pred, truth)
    rows = []
    for name, fn, n in (
        ("LCC", lambda x: lcc.transform(x), args.cells),
        ("Tweedie (KDE score on a bandwidth-scaled grid + interpolation)", lambda x: tweedie.transform(x), args.cells),
        (
            "Tweedie score, direct KDE (every cell x every calibration point)",
            lambda x: kde_score(x, pred, tweedie.bandwidth_),
            args.direct_sample,
        ),
    ):
        started = time.perf_counter()
        fn(cells[:n])
        seconds = time.perf_counter() - started
        rows.append({"method": name, "cells_timed": n, "seconds": round(seconds, 3), "cells_per_second": round(n / seconds)})
    rows[1]["speedup_vs_direct"] = round(rows[1]["cells_per_second"] / rows[2]["cells_per_second"], 1)
    sample = cells[: args.direct_sample].astype(float)
    inside = (sample > pred.min()) & (sample < pred.max())
    err = np.abs(tweedie.score(sample[inside]) - kde_score(sample[inside], pred, tweedie.bandwidth_)).max()
    print(f"{args.cells:,} cells, {args.calibration:,} calibration points; max |grid - direct| score error inside the support: {err:.2e}")
    print(pd.DataFrame(rows).to_markdown(index=False))
    write_results(args.out, rows, vars(args), max_score_error=float(err))


if __name__ == "__main__":
    main()
