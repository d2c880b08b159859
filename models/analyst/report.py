"""A one-page, self-contained HTML report of a trial: figures inlined as PNG, tables as HTML.

One file to send to a co-author or open offline: no scripts, no external files, no Dagster.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
from matplotlib.figure import Figure

Block = Figure | pd.DataFrame | str | list[str]
STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-top: 1em; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.5em 0; }
th, td { border: 1px solid #ddd; padding: 3px 8px; text-align: right; } th { background: #f4f4f4; }
img { max-width: 100%; } p.note { color: #555; font-size: 0.9em; } ul.summary li { margin: 0.3em 0; }
"""


def figure_html(fig: Figure, alt: str) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(buf.getvalue()).decode()}">'


def block_html(block: Block, alt: str) -> str:
    """A figure, a table (numbers to 3 significant digits), a list of points or a paragraph of text."""
    if isinstance(block, Figure):
        return figure_html(block, alt)
    if isinstance(block, list):
        return '<ul class="summary">' + "".join(f"<li>{html.escape(item)}</li>" for item in block) + "</ul>"
    if isinstance(block, pd.DataFrame):
        return block.to_html(index=False, float_format=lambda v: f"{v:.3g}", border=0, na_rep="")
    return f'<p class="note">{html.escape(block)}</p>'


def write_report(path: str | Path, title: str, sections: Sequence[tuple[str, Sequence[Block]]]) -> Path:
    """Write ``sections`` (heading, blocks) as one HTML page at ``path``."""
    body = "\n".join(
        f"<h2>{html.escape(heading)}</h2>\n" + "\n".join(block_html(b, heading) for b in blocks) for heading, blocks in sections
    )
    page = f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
    page += f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n"
    Path(path).write_text(page, encoding="utf-8")
    return Path(path)
