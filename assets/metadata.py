"""Turn figures and tables into Dagster metadata the asset page renders, and say where results came from."""

import base64
import hashlib
import inspect
import io
from types import ModuleType

import dagster as dg
import pandas as pd
from matplotlib.figure import Figure


def figure_md(fig: Figure, alt: str = "plot") -> dg.MetadataValue:
    """Embed a figure as a base64 PNG in Markdown (Dagster has no image metadata type)."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return dg.MetadataValue.md(f"![{alt}](data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()})")


def table_md(df: pd.DataFrame, floatfmt: str = ".3g") -> dg.MetadataValue:
    """A small DataFrame as a Markdown table."""
    return dg.MetadataValue.md(df.to_markdown(index=False, floatfmt=floatfmt) if len(df) else "_none_")


def source_version(*modules: ModuleType) -> str:
    """A code version that changes when the science an asset runs changes: a digest of the source of
    the ``models`` modules it calls (Dagster then marks its materialization stale)."""
    digest = hashlib.sha256()
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()[:12]


def lineage(imagery_catalog: pd.DataFrame, calibration_ids: pd.Series | None = None) -> dict:
    """What an estimate rests on, for its asset page: the imagery dates and, for corrected outcomes,
    the calibration split (its size and a digest of its place ids, equal across runs that used it)."""
    dates = pd.to_datetime(imagery_catalog["date"]).dt.strftime("%Y-%m-%d")
    meta = {"imagery_dates": ", ".join(dates), "imagery_scenes": len(dates)}
    if calibration_ids is not None:
        ids = "\n".join(sorted(calibration_ids.astype(str)))
        meta |= {"calibration_places": len(calibration_ids), "calibration_split_digest": hashlib.sha256(ids.encode()).hexdigest()[:12]}
    return meta
