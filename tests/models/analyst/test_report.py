"""The HTML report writer: figures inlined, tables rendered, text escaped."""

import pandas as pd
from matplotlib.figure import Figure

from models.analyst.report import write_report


def test_report_inlines_figures_and_renders_tables(tmp_path):
    fig = Figure()
    fig.subplots().plot([0, 1], [1, 0])
    table = pd.DataFrame({"method": ["naive", "lcc"], "slope": [0.51234, 1.0]})
    path = write_report(tmp_path / "r.html", "trial <A>", [("Figures", [fig]), ("Tables & text", [table, "a < b"])])
    page = path.read_text()
    assert page.count('src="data:image/png;base64,') == 1
    assert "<td>0.512</td>" in page and "<td>naive</td>" in page
    assert "trial &lt;A&gt;" in page and "a &lt; b" in page and "Tables &amp; text" in page
    assert "<script" not in page and "http" not in page.replace("<!DOCTYPE html>", "")
