"""The lab works where users meet it: in JupyterLab, in a real (headless) browser.

Unit tests and nbval never render a widget or a plotly figure. These tests start JupyterLab on
127.0.0.1 (random port and token, FAST preset in the kernel), drive Debian's Chromium through
Playwright, and use the notebooks as a person would: Run All from the menu, the prefix-length
slider moved with the keyboard, the MLP switch clicked, the attention heatmap hovered.

    python -m pytest tests/test_browser.py -m browser          # only these
    python -m pytest -m "not browser"                          # everything else

What they install when missing (bounded, from the package registries only): Debian's
``chromium`` (as root, with apt-get; otherwise the tests skip, or fail when CI or
PREFIXLAB_REQUIRE_BROWSER is set) and the Python packages playwright, jupyterlab, ipywidgets
and plotly. Playwright's own browser download is never used. Screenshots go to
$PREFIXLAB_SCREENSHOTS (default: a pytest temp folder); a failing step adds a
``failure-*.png`` there and puts the page's console errors in the message.

The stand-in notebooks (tests/browser_helpers.py) are a fast self-test of the harness: they
show the same widget contract as the real lab with a one-second "training".
"""

from __future__ import annotations

import os
from pathlib import Path

import browser_helpers as bh
import pytest

pytestmark = pytest.mark.browser

REAL_05 = "notebooks/05_prefix_length_lab.ipynb"
REAL_04 = "notebooks/04_prefix_attention.ipynb"


def _unavailable(reason: str):
    if os.environ.get("CI") or os.environ.get("PREFIXLAB_REQUIRE_BROWSER"):
        pytest.fail(f"headless browser tests cannot run: {reason}")
    pytest.skip(f"headless browser tests need Chromium: {reason}")


@pytest.fixture(scope="module")
def chromium() -> str:
    try:
        bh.ensure_python_packages()
        path = bh.ensure_chromium()
    except bh.BrowserUnavailable as err:
        _unavailable(str(err))
    bh.check_labextensions()
    return path


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    folder = os.environ.get("PREFIXLAB_SCREENSHOTS")
    path = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="module")
def lab_root(tmp_path_factory) -> Path:
    """A copy of notebooks/ (the lab must not write into the work tree) plus the stand-ins."""
    root = tmp_path_factory.mktemp("lab")
    bh.copy_notebooks(root)
    bh.write_standins(root / "standins")
    return root


@pytest.fixture(scope="module")
def lab_server(chromium, lab_root):
    server = bh.LabServer(lab_root)
    try:
        with server:
            yield server
    finally:
        server.cleanup()


@pytest.fixture(scope="module")
def browser(chromium):
    with bh.chromium_browser(chromium) as browser:
        yield browser


@pytest.fixture
def lab(browser, lab_server, screenshots):
    page = bh.LabPage(browser, lab_server, screenshots)
    try:
        yield page
    finally:
        page.close()
        lab_server.shutdown_kernels()


def _require(notebook: str) -> None:
    if not (bh.REPO / notebook).is_file():
        pytest.fail(f"{notebook} is missing: the browser test runs it (renamed? update REAL_*)")


def _show(summary: dict) -> None:
    for key, value in summary.items():
        print(f"{key}: {value}")


# ---------------------------------------------------------------------------------------------
# First the harness on stand-in notebooks (seconds): proves the browser checks themselves work
# ---------------------------------------------------------------------------------------------


def test_harness_on_standin_prefix_lab(lab):
    check = bh.PrefixLabCheck(
        notebook="standins/05_prefix_length_lab.ipynb",
        config=bh.standin_config,
        screenshot="standin_05_prefix_length_lab",
    )
    summary = check.run(lab)
    _show(summary)
    assert summary["after_slider"]["prefix_length"] == summary["before"]["prefix_length"] + 1
    assert summary["after_mlp"]["mlp"] is not summary["after_slider"]["mlp"]


def test_harness_on_standin_heatmap(lab):
    summary = bh.HeatmapCheck(
        notebook="standins/04_prefix_attention.ipynb", screenshot="standin_04_prefix_attention"
    ).run(lab)
    _show(summary)
    assert 0.0 <= summary["mass"] <= 1.0


# ---------------------------------------------------------------------------------------------
# The real lab
# ---------------------------------------------------------------------------------------------


def test_prefix_length_lab_in_browser(lab):
    """05: Run All; the slider moved with the keyboard retrains, and the parameter count, the
    context budget and the loss plot follow; the MLP switch changes the count as accounted."""
    _require(REAL_05)
    check = bh.PrefixLabCheck(
        notebook=REAL_05, config=bh.tiny_config, mlp_hidden=bh.fast_mlp_hidden()
    )
    _show(check.run(lab))


def test_prefix_attention_heatmap_in_browser(lab):
    """04: Run All; plotly's heatmap is drawn as SVG and its hover text names layer, head and
    attention mass."""
    _require(REAL_04)
    _show(bh.HeatmapCheck(notebook=REAL_04).run(lab))
