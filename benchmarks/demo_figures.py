"""The demo's headline figures from its data root (and, given its DAGSTER_HOME, the land-cover accuracy):
AUTOC per data choice x learner, the ATEs, the trials' wealth effects, LCC, the debiasing evaluation and
the simulation comparison. Diff two runs to check that a change left the science alone:

    python benchmarks/demo_figures.py data .dagster_home > before.txt
"""

import argparse
import json
from pathlib import Path

import pandas as pd

TRIALS = ("west", "east")


def trial_figures(root: Path, trial: str) -> str:
    evaluation = pd.read_parquet(root / "heterogeneity_evaluation" / f"{trial}.parquet")
    ate = pd.read_parquet(root / "ate_summary" / f"{trial}.parquet")
    effects = pd.read_parquet(root / "wealth_effects" / f"{trial}.parquet")
    return "\n".join(
        [
            f"{trial} AUTOC",
            evaluation[["data_choice", "learner", "autoc", "autoc_se", "qini"]].round(4).to_string(index=False),
            ate.round(4).to_string(index=False),
            effects[["method", "estimate", "std_error"]].round(4).to_string(index=False),
        ]
    )


def map_figures(root: Path) -> str:
    corrections = json.loads((root / "wealth_corrections.json").read_text())
    lcc, trust = corrections["lcc"], corrections.get("trust", {})
    evaluation = pd.read_parquet(root / "debiasing_evaluation.parquet")
    numeric = evaluation[[c for c in evaluation.columns if evaluation[c].dtype != object or c in ("method", "response")]]
    comparison = pd.read_parquet(root / "simulation_comparison.parquet")
    return "\n".join(
        [
            "lcc " + str({k: round(v, 4) for k, v in lcc.items() if isinstance(v, float)}),
            "trust " + trust.get("verdict", "(no diagnostics)"),
            numeric.round(4).to_string(index=False),
            comparison.round(4).to_string(index=False),
        ]
    )


def land_cover_accuracy(home: str) -> float:
    import dagster as dg

    with dg.DagsterInstance.from_config(home) as instance:
        event = instance.get_latest_materialization_event(dg.AssetKey("land_cover_maps"))
        return event.asset_materialization.metadata["accuracy"].value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data", type=Path, help="the demo's data root (EOTRIALS_DATA)")
    parser.add_argument("home", nargs="?", help="its DAGSTER_HOME, for the land-cover accuracy")
    args = parser.parse_args()
    pd.set_option("display.width", 200)
    print("\n".join([*(trial_figures(args.data, t) for t in TRIALS), map_figures(args.data)]))
    if args.home:
        print("land cover accuracy", land_cover_accuracy(args.home))


if __name__ == "__main__":
    main()
