"""The demo study simulator at the pipeline's sizes: wall time and peak memory of ``simulate_study``
for one trial of ``units`` units over a region that grows with it as ``benchmarks/pipeline.py``
grows it (``study_inputs`` there), and the size of what it writes.

    python benchmarks/simulator.py --units 1000 10000 100000

Every scene, land-cover map and post-treatment overlay is written (the demo's three change effects
and four change settings); the figures are the whole call, in a fresh process per size.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from pipeline import region_px

from harness import measure, write_results


def simulate(units: int, region: int, survey: int) -> dict:
    """Simulate one study in a temporary folder; the size of its files."""
    from models.simulation.simulator import SimulationConfig, simulate_study

    with tempfile.TemporaryDirectory() as tmp:
        simulate_study(SimulationConfig(n_units=units, n_survey=survey, region_px=region, trials=("west",)), tmp)
        files = [p for p in Path(tmp).rglob("*") if p.is_file()]
        return {"files": len(files), "written_mb": round(sum(p.stat().st_size for p in files) / 2**20)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--units", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--survey", type=int, default=3000, help="surveyed places (the post-treatment overlays' windows)")
    parser.add_argument("--limit", type=float, default=3600, help="seconds before a size is stopped")
    parser.add_argument("--out", default="benchmarks/results/simulator.json")
    args = parser.parse_args()
    rows = []
    for units in args.units:
        region = region_px(units)
        row = {"units": units, "region_px": region, **measure(simulate, units, region, args.survey, limit=args.limit)}
        rows.append(row)
        print(row, flush=True)
        write_results(args.out, rows, vars(args))


if __name__ == "__main__":
    main()
