"""The lab works where users meet it: in JupyterLab, in a real (headless) browser.

Unit tests and nbval never render a widget or a plotly figure. These tests start JupyterLab on
127.0.0.1 (random port and token, FAST preset in the kernel), drive Debian's Chromium through
Playwright, and use the notebooks as a person would: Run All from the menu, the prefix-length
slider moved with the keyboard (one step, then five quick steps that must retrain once), the
MLP switch clicked, the attention heatmap hovered.

    python -m pytest tests/test_browser.py -m browser          # only these
    python -m pytest -m "not browser"                          # everything else

They install nothing. They need Debian's Chromium (``apt-get update && apt-get install -y
chromium``, as root; .ci/run does it) and the Python packages of the ``test`` extra
(playwright, jupyterlab); Playwright's own browser download is never used. Without them the
tests skip with the command that installs what is missing, or fail when CI or
PREFIXLAB_REQUIRE_BROWSER is set. The lab serves a temporary copy of notebooks/, so running
them never leaves the committed notebooks modified. Screenshots go to $PREFIXLAB_SCREENSHOTS
(default: a pytest temp folder); a failing step adds a ``failure-*.png`` there and puts the
page's console errors in the message.

The stand-in notebooks (tests/browser/fixtures) are a fast self-test of the harness: they show
the same widget contract as the real lab with a one-second "training".
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from browser import checks, page, server

pytestmark = pytest.mark.browser

REAL_05 = "notebooks/05_prefix_length_lab.ipynb"
REAL_04 = "notebooks/04_prefix_attention.ipynb"


def _unavailable(reason: str):
    if os.environ.get("CI") or os.environ.get("PREFIXLAB_REQUIRE_BROWSER"):
        pytest.fail(f"headless browser tests cannot run: {reason}")
    pytest.skip(f"headless browser tests skipped: {reason}")


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        path = page.find_chromium()
    except page.BrowserUnavailable as err:
        _unavailable(str(err))
    server.check_labextensions()
    return path


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("PREFIXLAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """Copies of notebooks/ and of the stand-ins: the lab runs (and may save) only these."""
    return server.lab_root(tmp_path_factory.mktemp("lab"))


@pytest.fixture(scope="module")
def lab_server(chromium, lab_root):
    lab = server.LabServer(lab_root)
    try:
        with lab:
            yield lab
    finally:
        lab.cleanup()


@pytest.fixture(scope="module")
def browser(chromium):
    with page.chromium_browser(chromium) as browser:
        yield browser


@pytest.fixture
def lab(browser, lab_server, screenshots):
    lab_page = page.LabPage(browser, lab_server, screenshots)
    try:
        yield lab_page
    finally:
        lab_page.close()
        lab_server.shutdown_kernels()


def _require(notebook: str) -> None:
    if not (server.REPO / notebook).is_file():
        pytest.fail(f"{notebook} is missing: the browser test runs it (renamed? update REAL_*)")


def _show(summary: dict) -> None:
    for key, value in summary.items():
        print(f"{key}: {value}")


# ---------------------------------------------------------------------------------------------
# First the harness on stand-in notebooks (seconds): proves the browser checks themselves work
# ---------------------------------------------------------------------------------------------


def test_harness_on_standin_prefix_lab(lab):
    check = checks.PrefixLabCheck(
        notebook="standins/05_prefix_length_lab.ipynb",
        config=checks.standin_config,
        screenshot="standin_05_prefix_length_lab",
    )
    summary = check.run(lab)
    _show(summary)
    assert summary["after_slider"]["prefix_length"] == summary["before"]["prefix_length"] + 1
    assert summary["after_mlp"]["mlp"] is not summary["after_slider"]["mlp"]


def test_harness_on_standin_heatmap(lab):
    summary = checks.HeatmapCheck(
        notebook="standins/04_prefix_attention.ipynb", screenshot="standin_04_prefix_attention"
    ).run(lab)
    _show(summary)
    assert 0.0 <= summary["mass"] <= 1.0


# ---------------------------------------------------------------------------------------------
# The real lab
# ---------------------------------------------------------------------------------------------


def test_prefix_length_lab_in_browser(lab):
    """05: Run All; the slider moved with the keyboard retrains, and the parameter count, the
    context budget and the loss plot follow; the MLP switch changes the count as accounted.
    Then five quick presses on the slider: one retrain, for the final value, and "before" is
    the setting shown before the presses (issue #24: it used to retrain on every press)."""
    _require(REAL_05)
    check = checks.PrefixLabCheck(
        notebook=REAL_05, config=checks.tiny_config, mlp_hidden=checks.fast_mlp_hidden()
    )
    summary = check.run(lab)
    _show(summary)
    rapid = check.rapid_presses(lab, presses=5)
    _show(rapid)
    assert rapid["to"] == summary["after_mlp"]["prefix_length"] + 5


def test_prefix_attention_heatmap_in_browser(lab):
    """04: Run All; plotly's heatmap is drawn as SVG and its hover text names layer, head and
    attention mass."""
    _require(REAL_04)
    _show(checks.HeatmapCheck(notebook=REAL_04).run(lab))


def test_the_lab_serves_copies_and_leaves_the_work_tree_alone(lab_root):
    """Run All in JupyterLab saves the notebooks it runs (autosave): the lab serves copies."""
    assert (lab_root / REAL_05).is_file() and (
        lab_root / "standins" / "standin_config.json"
    ).is_file()
    assert server.REPO not in (lab_root / REAL_05).resolve().parents
