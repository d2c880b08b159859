"""The real UI: dagster-webserver and dagster-daemon on 127.0.0.1 over the tiny demo's instance (built
once per session by the README's main command), a job launched through the GraphQL API and run by
the daemon, then the asset graph, an asset page and the trials' partitions in headless Chromium
(Debian's package, driven by Playwright). Screenshots go to ``test-artifacts/ui/``."""

from __future__ import annotations

import contextlib
import os

import pytest
from dagster import DagsterInstance
from dagster_graphql import DagsterGraphQLClient
from playwright.sync_api import Page, sync_playwright
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tests.services import ARTIFACTS, BIN, Processes, free_port, http_ok, require, wait_for_run, wait_until

pytestmark = pytest.mark.slow

SHOTS = ARTIFACTS / "ui"
# Chromium on a machine without network: no background connections, no sandbox (runs as root in CI).
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def webserver(tiny_demo) -> str:
    """Base URL of a webserver with a daemon beside it over the tiny demo's home and data root (its
    two trials materialized), with a third trial registered and not yet run."""
    with DagsterInstance.from_config(str(tiny_demo.home)) as instance:
        instance.add_dynamic_partitions("trials", ["south"])
    env = os.environ | {"DAGSTER_HOME": str(tiny_demo.home), "EOTRIALS_DATA": str(tiny_demo.data), "EOTRIALS_DEVICE": "cpu"}
    port = free_port()
    servers = Processes(tiny_demo.home.parent / "logs", env)
    try:
        web = servers.start("webserver", [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)])
        servers.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"])
        wait_until(http_ok(f"http://127.0.0.1:{port}/server_info"), "dagster-webserver", timeout=120, process=web)
        yield f"http://127.0.0.1:{port}"
    finally:
        servers.stop()


@pytest.fixture(scope="module")
def launched_run(webserver: str) -> str:
    """The analyst's database rebuilt by a run launched through GraphQL: queued, dequeued and run by
    the daemon over the tiny demo's outputs."""
    port = int(webserver.rsplit(":", 1)[1])
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    run_id = client.submit_job_execution("analyst_job")
    assert wait_for_run(client, run_id, timeout=600) == "SUCCESS", f"run {run_id} did not succeed"
    return run_id


@pytest.fixture(scope="module")
def page():
    chromium = require("chromium", "chromium")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1600, "height": 1000})
        browser.close()


def dismiss_welcome(page: Page) -> None:
    """A fresh instance greets the first visitor with a newsletter dialog; skip it if it is there."""
    with contextlib.suppress(PlaywrightTimeout):
        page.get_by_role("button", name="Skip").click(timeout=5000)


def test_asset_graph_renders_every_group(webserver, launched_run, page):
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{webserver}/asset-groups")
    dismiss_welcome(page)
    for group in ("ingest", "representation", "causal", "interpretation", "generalization", "simulation", "debiasing", "analyst"):
        # each group is a node of the SVG graph (the sidebar tree lists them too, outside the SVG)
        page.locator(f"foreignObject [data-tooltip='{group}']").first.wait_for(timeout=30_000)
    page.screenshot(path=SHOTS / "asset_graph.png", animations="disabled")


def test_asset_page_renders_metadata_table_and_plot(webserver, launched_run, page):
    """The shared map's survey page: the split table and the calibration plot from Markdown metadata."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{webserver}/assets/survey_predictions")
    dismiss_welcome(page)
    splits = page.locator("tr", has=page.get_by_text("splits", exact=True)).first
    splits.wait_for(timeout=30_000)
    # the split sizes table, rendered from Markdown metadata: a header and one row per split
    assert "calibration" in splits.inner_text() and splits.locator("table tr").count() == 4
    page.screenshot(path=SHOTS / "asset_page.png", animations="disabled")

    page.locator("tr", has=page.get_by_text("calibration_plot", exact=True)).first.get_by_text("Show Markdown").click()
    plot = page.get_by_role("dialog").locator("img").first
    plot.wait_for(timeout=10_000)
    width, height, alt = plot.evaluate("img => [img.naturalWidth, img.naturalHeight, img.alt]")
    assert alt == "predicted vs surveyed" and width > 200 and height > 200, "the calibration plot did not decode"
    page.screenshot(path=SHOTS / "asset_plot.png", animations="disabled")


def test_trial_partitions_show_which_trial_ran(webserver, launched_run, page):
    """A trial-level asset lists the three trials as partitions, west and east materialized and south
    missing, and west's page shows what its estimate rests on (the imagery dates)."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(f"{webserver}/assets/cate_estimates?view=partitions")
    dismiss_welcome(page)
    page.get_by_text("south", exact=True).first.wait_for(timeout=30_000)
    body = page.locator("body").inner_text()
    assert "Materialized (2)" in body and "Missing (1)" in body, body[:2000]
    page.get_by_text("west", exact=True).first.click()
    page.get_by_text("imagery_dates", exact=True).first.wait_for(timeout=30_000)
    page.get_by_text("trial_table_sha256", exact=True).first.wait_for(timeout=30_000)  # which table version it came from
    page.screenshot(path=SHOTS / "trial_partitions.png", animations="disabled")


def test_trial_report_opens_with_the_answer(tiny_demo, page):
    """The report's first section is the summary an analyst can quote; the paired differences are a
    forest plot, not a 36-row table."""
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.goto((tiny_demo.data / "trial_report" / "west.html").as_uri())
    headings = page.locator("h2").all_inner_texts()
    assert headings[0] == "Summary", headings
    points = page.locator("ul.summary li").all_inner_texts()
    assert len(points) == 6 and points[0].startswith("Average treatment effect (doubly robust):"), points
    assert any("RATE" in p and "heterogeneity" in p.lower() for p in points) and points[-1].startswith("Trial table: 60 rows, sha256 ")
    differences = page.locator("h2", has_text="Which data reveal it").locator("xpath=following-sibling::*[1]")
    assert differences.evaluate("node => node.tagName") == "IMG" and differences.evaluate("node => node.naturalWidth") > 200
    page.screenshot(path=SHOTS / "trial_report.png", full_page=False, animations="disabled")
