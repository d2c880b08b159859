"""The simulation study: which data and model choices detect planted heterogeneity?

Repeats the simulator over seeds and settings (N, effect strength, heterogeneity driven by static
land cover or by change over time), fits every data choice x encoder x learner out of fold, and
returns a tidy table of RATE ratios, PEHE, rank correlation and coverage.

    python -m models.simulation.study --out study.parquet          # demo grid, minutes on 2 cores
    python -m models.simulation.study --full --out study.parquet   # hours; uses CUDA if present
"""

from __future__ import annotations

import argparse
import itertools
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from models.causal.cate import DATA_CHOICES, Learner, LearnerConfig, cross_fit_choices
from models.causal.heterogeneity import evaluate_choices
from models.ingest.catalog import build_catalog
from models.ingest.chips import open_cube, write_sequence_cube
from models.ingest.design import trial_frame
from models.ingest.folds import CrossFitting
from models.ingest.units import locate_units, standardize, tabular_matrix, validate_rct
from models.io.tables import read_table
from models.io.truth import read_unit_truth
from models.representation.encoders import Capacity, EncoderSpec
from models.representation.training import Objective, TrainConfig, fit_encoders, load_sequences, resolve_device
from models.simulation.simulator import Heterogeneity, SimulationConfig, simulate_study


@dataclass(frozen=True)
class EncoderChoice:
    """One encoder of the study: its capacity and its training objective."""

    capacity: Capacity = "small"
    objective: Objective = "contrastive"

    @property
    def label(self) -> str:
        return f"{self.capacity}:{self.objective}"


@dataclass(frozen=True)
class StudyGrid:
    """Settings to cross (seeds x N x effect strength x heterogeneity driver), and the models to compare.

    The default asks the source study's question on a CPU in about 3 minutes (2 cores): does the
    image sequence beat the single image, with change-driven heterogeneity (where it should) and
    static (where it need not)? Five seeds give each paired difference a t-interval across
    simulated worlds (``compare_choices``). ``full()`` is the long grid for a GPU.
    """

    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    n_units: tuple[int, ...] = (600,)
    effect_strength: tuple[float, ...] = (1.0,)
    heterogeneity: tuple[Heterogeneity, ...] = ("change", "static")
    encoders: tuple[EncoderChoice, ...] = (EncoderChoice("small", "contrastive"),)
    learners: tuple[Learner, ...] = ("causal_forest",)
    epochs: int = 3
    region_px: int = 256
    n_dates: int = 6
    chip_size: int = 16
    folds: int = 5
    n_estimators: int = 100
    n_boot: int = 100

    @classmethod
    def full(cls) -> StudyGrid:
        encoders = tuple(
            EncoderChoice(c, o)
            for c, o in (
                ("small", "random"),
                ("small", "contrastive"),
                ("medium", "contrastive"),
                ("large", "contrastive"),
                ("medium", "prognostic"),
            )
        )
        return cls(
            seeds=tuple(range(10)),
            n_units=(1000, 3000),
            effect_strength=(0.5, 1.0),
            heterogeneity=("static", "change", "both", "none"),
            encoders=encoders,
            learners=("causal_forest", "dr_learner", "t_learner"),
            epochs=15,
            region_px=1024,
            n_dates=8,
            chip_size=32,
            n_estimators=200,
            n_boot=200,
        )


@dataclass
class _Trial:
    unit_ids: np.ndarray
    T: np.ndarray
    Y: np.ndarray
    e: np.ndarray
    tau: pd.Series
    tabular: np.ndarray
    cross_fitting: CrossFitting
    cube: object = field(repr=False)


def _prepare(setting: dict, grid: StudyGrid, root: Path) -> _Trial:
    cfg = SimulationConfig(
        n_units=setting["n_units"],
        n_survey=10,
        n_dates=grid.n_dates,
        region_px=grid.region_px,
        chip_size=grid.chip_size,
        effect_strength=setting["effect_strength"],
        heterogeneity=setting["heterogeneity"],
        seed=setting["seed"],
        trials=("trial",),
    )
    paths = simulate_study(cfg, root)
    catalog = build_catalog(paths.imagery_dir)
    units, _ = locate_units(validate_rct(read_table(paths.trial_table("trial"))), catalog)
    write_sequence_cube(units, catalog, root / "cube.zarr", size=grid.chip_size)
    cube = open_cube(root / "cube.zarr")
    ids = np.asarray(cube["unit"].values.tolist(), dtype=object)
    table = pd.DataFrame(units.drop(columns="geometry")).set_index("unit_id").loc[ids].reset_index()
    trial = trial_frame(table, "outcome")
    tab = standardize(tabular_matrix(table).drop(columns="unit_id")).to_numpy()
    truth = read_unit_truth(paths.unit_truth)["tau"]
    return _Trial(
        ids,
        trial["treatment"].to_numpy(),
        trial["outcome"].to_numpy(),
        trial["propensity"].to_numpy(),
        truth,
        tab,
        CrossFitting(grid.folds, setting["seed"]),
        cube,
    )


def _embeddings(
    trial: _Trial, encoder: EncoderChoice, grid: StudyGrid, seed: int, device: torch.device, frames: list[int] | None
) -> np.ndarray:
    data = load_sequences(trial.cube, frames=frames)
    target = np.where(trial.T == 0, trial.Y, np.nan)
    spec = EncoderSpec(in_channels=data.x.shape[2], capacity=encoder.capacity)
    fitted = fit_encoders(
        spec,
        data,
        encoder.objective,
        TrainConfig(epochs=grid.epochs, seed=seed),
        device,
        target=target,
        cross_fitting=trial.cross_fitting,
        frames=frames,
    )
    return fitted.transform(data, device)[0]


def run_setting(
    setting: dict, grid: StudyGrid, root: Path, device: torch.device, log: Callable[[str], None] = print
) -> tuple[list[dict], list[dict]]:
    """All data choices x encoders x learners for one simulated study: the same fit-and-evaluate
    functions as the causal assets (``cross_fit_choices``, ``evaluate_choices``). Returns one row
    per data choice x encoder x learner, and the paired RATE differences between data choices."""
    trial = _prepare(setting, grid, root)
    cfg = LearnerConfig(n_estimators=grid.n_estimators, seed=setting["seed"])
    folds = trial.cross_fitting.assign(trial.unit_ids)
    rows, differences = [], []
    for encoder in grid.encoders:
        seq = _embeddings(trial, encoder, grid, setting["seed"], device, None)
        img = _embeddings(trial, encoder, grid, setting["seed"], device, [-1])
        choices = dict(zip(DATA_CHOICES, (trial.tabular, img, seq, np.hstack([seq, trial.tabular])), strict=True))
        if encoder != grid.encoders[0]:
            del choices["tabular"]  # the same for every encoder: fitted once
        estimates, timings = cross_fit_choices(trial.unit_ids, choices, trial.T, trial.Y, trial.e, folds, grid.learners, cfg)
        evaluation, paired = evaluate_choices(estimates, tau_true=trial.tau, n_boot=grid.n_boot)
        differences += [{**setting, "encoder": encoder.label, **row} for row in paired.to_dict("records")]
        evaluation = evaluation.merge(timings[["data_choice", "learner", "seconds"]], on=["data_choice", "learner"])
        evaluation = evaluation.set_index(["data_choice", "learner"]).loc[timings.set_index(["data_choice", "learner"]).index].reset_index()
        for row in evaluation.to_dict("records"):
            rows.append({**setting, "encoder": "none" if row["data_choice"] == "tabular" else encoder.label, **row})
            log(
                f"{setting} {rows[-1]['encoder']} {row['data_choice']} {row['learner']}: AUTOC ratio {row['autoc_ratio']:.2f}, PEHE {row['pehe']:.3f}"
            )
    return rows, differences


def settings(grid: StudyGrid) -> list[dict]:
    """One dict per simulated study of the grid."""
    keys = ("seed", "n_units", "effect_strength", "heterogeneity")
    values = (grid.seeds, grid.n_units, grid.effect_strength, grid.heterogeneity)
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*values)]


def run_study(
    grid: StudyGrid, device: torch.device | str = "auto", log: Callable[[str], None] = print, workdir: str | Path | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Every setting of the grid: (results, paired RATE differences between data choices)."""
    device = resolve_device(device) if isinstance(device, str) else device
    rows, differences = [], []
    with tempfile.TemporaryDirectory(dir=workdir) as tmp:
        for i, setting in enumerate(settings(grid)):
            r, d = run_setting(setting, grid, Path(tmp) / f"setting_{i}", device, log)
            rows, differences = rows + r, differences + d
    return pd.DataFrame(rows), pd.DataFrame(differences)


def compare_choices(differences: pd.DataFrame, a: str = "image_sequence", b: str = "image", target: str = "AUTOC") -> pd.DataFrame:
    """Does data choice ``a`` beat ``b``? Per heterogeneity driver, encoder and learner: the mean over
    seeds of the paired RATE difference a - b, its 95% t-interval across seeds (each seed a new
    simulated world), and in how many seeds the within-trial paired interval excludes zero."""
    pairs = differences[(differences["target"] == target)]
    forward = pairs[(pairs["data_choice_a"] == a) & (pairs["data_choice_b"] == b)]
    backward = pairs[(pairs["data_choice_a"] == b) & (pairs["data_choice_b"] == a)]
    flipped = backward.assign(difference=-backward["difference"], ci_lower=-backward["ci_upper"], ci_upper=-backward["ci_lower"])
    both = pd.concat([forward, flipped], ignore_index=True)
    rows = []
    for key, part in both.groupby(["heterogeneity", "encoder", "learner"]):
        n, mean, sd = len(part), part["difference"].mean(), part["difference"].std(ddof=1)
        half = stats.t.ppf(0.975, n - 1) * sd / np.sqrt(n) if n > 1 else np.nan
        rows.append(
            {
                **dict(zip(["heterogeneity", "encoder", "learner"], key, strict=True)),
                "comparison": f"{a} - {b} ({target})",
                "seeds": n,
                "mean_difference": mean,
                "ci_lower": mean - half,
                "ci_upper": mean + half,
                "seeds_a_wins": int((part["ci_lower"] > 0).sum()),
                "seeds_b_wins": int((part["ci_upper"] < 0).sum()),
            }
        )
    return pd.DataFrame(rows)


def summarize(results: pd.DataFrame) -> pd.DataFrame:
    """Mean over seeds of each metric per data choice, encoder, learner and heterogeneity driver."""
    keys = ["heterogeneity", "data_choice", "encoder", "learner"]
    return (
        results.groupby(keys)[["autoc_ratio", "qini_ratio", "pehe", "rank_correlation", "unit_interval_coverage", "gates_coverage"]]
        .mean()
        .reset_index()
        .sort_values(["heterogeneity", "autoc_ratio"], ascending=[True, False])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the long grid (hours); uses CUDA when present")
    parser.add_argument("--out", default="simulation_study.parquet")
    parser.add_argument("--device", default="auto")
    args = parser.parse_args()
    grid = StudyGrid.full() if args.full else StudyGrid()
    results, differences = run_study(grid, args.device)
    results.to_parquet(args.out, index=False)
    differences.to_parquet(Path(args.out).with_suffix(".differences.parquet"), index=False)
    print(summarize(results).to_markdown(index=False, floatfmt=".3f"))
    print(compare_choices(differences).to_markdown(index=False, floatfmt=".3f"))
    print(f"grid: {asdict(grid)}")


if __name__ == "__main__":
    main()
