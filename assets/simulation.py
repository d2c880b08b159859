"""Simulation: the comparison of data and model choices on simulated trials with known CATEs."""

import dataclasses

import dagster as dg

from assets.config import HeterogeneityDriver, LearnerName, values
from assets.metadata import figure_md, table_md
from models.analyst.plots import metric_bars
from models.representation.encoders import Capacity
from models.representation.training import Objective
from models.simulation.study import EncoderChoice, StudyGrid, compare_choices, run_study, summarize
from pipelines.resources import ComputeResource, Config, StorageResource

GROUP = "simulation"


class EncoderChoiceConfig(Config):
    """One encoder of the study."""

    capacity: Capacity = EncoderChoice.capacity
    objective: Objective = EncoderChoice.objective


class SimulationStudyConfig(Config):
    """The grid of settings (the default runs in about 3 minutes on 2 cores: 5 seeds x 2 heterogeneity drivers)."""

    seeds: list[int] = list(StudyGrid.seeds)
    n_units: list[int] = list(StudyGrid.n_units)
    effect_strength: list[float] = list(StudyGrid.effect_strength)
    heterogeneity: list[HeterogeneityDriver] = list(StudyGrid.heterogeneity)
    encoders: list[EncoderChoiceConfig] = [dataclasses.asdict(e) for e in StudyGrid.encoders]  # Dagster wants plain defaults
    learners: list[LearnerName] = list(StudyGrid.learners)
    epochs: int = StudyGrid.epochs
    region_px: int = StudyGrid.region_px
    n_dates: int = StudyGrid.n_dates
    chip_size: int = StudyGrid.chip_size
    full: bool = False  # the long grid of models.simulation.study (hours); overrides the rest

    def grid(self) -> StudyGrid:
        if self.full:
            return StudyGrid.full()
        fields = self.model_dump(exclude={"full", "encoders", "heterogeneity", "learners"})
        return StudyGrid(
            **{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()},
            heterogeneity=values(self.heterogeneity),
            learners=values(self.learners),
            encoders=tuple(EncoderChoice(**dict(e)) for e in self.encoders),
        )


@dg.multi_asset(
    group_name=GROUP,
    pool="gpu",
    outs={
        "simulation_study": dg.AssetOut(
            kinds={"parquet", "torch", "econml"},
            description="One row per seed x setting x encoder x data choice x learner: RATE with SEs and intervals, BLP, PEHE, "
            "rank correlation, interval coverage, fit time.",
        ),
        "simulation_comparison": dg.AssetOut(
            kinds={"parquet"},
            description="Does the image sequence beat the single image? Paired AUTOC differences, mean over seeds with a 95% "
            "t-interval across seeds, per heterogeneity driver, encoder and learner.",
        ),
    },
)
def simulation_study(context: dg.AssetExecutionContext, config: SimulationStudyConfig, compute: ComputeResource, storage: StorageResource):
    """Repeats the simulator over seeds and settings and fits every data choice x encoder x learner:
    which choice detects heterogeneity (RATE ratio) and estimates it best (PEHE), and does the image
    sequence beat the single image by more than chance (paired differences across seeds)?"""
    with storage.staging() as stage:
        results, differences = run_study(config.grid(), compute.torch_device(), log=context.log.info, workdir=stage.folder)
    summary = summarize(results)
    yield dg.Output(
        results,
        output_name="simulation_study",
        metadata={
            "rows": len(results),
            "summary": table_md(summary),
            "rate_ratio": figure_md(metric_bars(results, "autoc_ratio", "data_choice", "heterogeneity", "AUTOC RATE ratio by data choice")),
            "pehe": figure_md(metric_bars(results, "pehe", "data_choice", "heterogeneity", "PEHE by data choice")),
        },
    )
    comparison = compare_choices(differences)
    yield dg.Output(comparison, output_name="simulation_comparison", metadata={"image_sequence_vs_image": table_md(comparison)})
