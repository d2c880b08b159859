"""The demo's headline figures from its data root (and, given its DAGSTER_HOME, the land-cover accuracy):
AUTOC per data choice x learner, the ATEs, the trial wealth effects, LCC, the debiasing evaluation and the
simulation comparison. Diff two runs to check that a change left the science alone:

    python benchmarks/demo_figures.py data .dagster_home > before.txt
"""

import json
import sys
from pathlib import Path

import pandas as pd

root = Path(sys.argv[1])
pd.set_option("display.width", 200)
for trial in ("west", "east"):
    ev = pd.read_parquet(root / "heterogeneity_evaluation" / f"{trial}.parquet")
    print(trial, "AUTOC")
    print(ev[["data_choice", "learner", "autoc", "autoc_se", "qini"]].round(4).to_string(index=False))
    ate = pd.read_parquet(root / "ate_summary" / f"{trial}.parquet")
    print(ate.round(4).to_string(index=False))
    eff = pd.read_parquet(root / "wealth_effects" / f"{trial}.parquet")
    print(eff[["method", "estimate", "std_error"]].round(4).to_string(index=False))
corr = json.loads((root / "wealth_corrections.json").read_text())
print("lcc", {k: round(v, 4) for k, v in corr["lcc"].items() if isinstance(v, float)})
de = pd.read_parquet(root / "debiasing_evaluation.parquet")
print(de.drop(columns=[c for c in de.columns if de[c].dtype == object and c not in ("method", "response")]).round(4).to_string(index=False))
sim = pd.read_parquet(root / "simulation_comparison.parquet")
print(sim.round(4).to_string(index=False))
if len(sys.argv) > 2:
    import dagster as dg

    with dg.DagsterInstance.from_config(sys.argv[2]) as inst:
        ev = inst.get_latest_materialization_event(dg.AssetKey("land_cover_maps"))
        print("land cover accuracy", ev.asset_materialization.metadata["accuracy"].value)
