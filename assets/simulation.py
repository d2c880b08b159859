"""Simulation: the comparison of data and model choices on simulated trials with known CATEs."""
import dagster as dg

from assets.metadata import figure_md, table_md
from models.plots import metric_bars
from models.simulation_study import StudyGrid, run_study, summarize
from pipelines.resources import ComputeResource, StorageResource

GROUP = "simulation"


class SimulationStudyConfig(dg.Config):
    """The grid of settings (the demo default runs in about 2 minutes on 2 cores)."""

    seeds: list[int] = [0, 1]
    n_units: list[int] = [600]
    effect_strength: list[float] = [1.0]
    heterogeneity: list[str] = ["static", "change"]
    encoders: list[str] = ["small:contrastive", "small:random"]
    learners: list[str] = ["causal_forest"]
    epochs: int = 3
    region_px: int = 256
    n_dates: int = 6
    chip_size: int = 16
    full: bool = False  # the long grid of models.simulation_study (hours); overrides the rest

    def grid(self) -> StudyGrid:
        if self.full:
            return StudyGrid.full()
        fields = self.model_dump(exclude={"full"})
        return StudyGrid(**{k: tuple(v) if isinstance(v, list) else v for k, v in fields.items()})


@dg.asset(group_name=GROUP, kinds={"parquet", "torch", "econml"}, pool="gpu")
def simulation_study(context: dg.AssetExecutionContext, config: SimulationStudyConfig, compute: ComputeResource, storage: StorageResource) -> dg.Output:
    """Repeats the simulator over seeds and settings and fits every data choice x encoder x learner:
    which choice detects heterogeneity (RATE ratio) and estimates it best (PEHE)?"""
    workdir = storage.path(".staging")
    workdir.mkdir(parents=True, exist_ok=True)
    results = run_study(config.grid(), compute.torch_device(), log=context.log.info, workdir=workdir)
    summary = summarize(results)
    return dg.Output(
        results,
        metadata={
            "rows": len(results),
            "summary": table_md(summary),
            "rate_ratio": figure_md(metric_bars(results, "autoc_ratio", "data_choice", "heterogeneity", "AUTOC RATE ratio by data choice")),
            "pehe": figure_md(metric_bars(results, "pehe", "data_choice", "heterogeneity", "PEHE by data choice")),
        },
    )
