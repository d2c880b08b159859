"""Turn figures and tables into Dagster metadata the asset page renders."""

import base64
import io

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
