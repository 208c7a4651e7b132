"""The browser harness's own logic, without a browser (runs with `-m "not browser"`)."""

from __future__ import annotations

import json

import pytest
from browser import checks, page, server


def test_missing_chromium_says_how_to_install_it(monkeypatch, tmp_path):
    monkeypatch.setattr(page, "CHROMIUM", str(tmp_path / "no-chromium"))
    with pytest.raises(page.BrowserUnavailable) as err:
        page.find_chromium()
    if "playwright is missing" not in str(err.value):
        assert "apt-get update && apt-get install -y chromium" in str(err.value)


def test_lab_root_holds_copies_of_the_notebooks_and_the_standins(tmp_path):
    root = server.lab_root(tmp_path)
    committed = sorted(p.name for p in (server.REPO / "notebooks").glob("*.ipynb"))
    assert sorted(p.name for p in (root / "notebooks").glob("*.ipynb")) == committed
    assert (root / "standins" / "05_prefix_length_lab.ipynb").is_file()
    assert server.REPO not in (root / "notebooks").resolve().parents


@pytest.mark.parametrize("name", ["04_prefix_attention", "05_prefix_length_lab"])
def test_standin_notebooks_are_valid_and_unexecuted(name):
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(server.FIXTURES / f"{name}.ipynb", as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)


def test_standin_config_is_the_one_the_standin_lab_loads():
    source = json.loads((server.FIXTURES / "05_prefix_length_lab.ipynb").read_text())
    text = "".join("".join(c["source"]) for c in source["cells"])
    assert 'Path("standin_config.json")' in text
    assert checks.standin_config().n_layer == 2


@pytest.mark.parametrize(
    ("status", "want"),
    [
        (
            "done · run 4: prefix tuning + MLP, P=46, 30 steps (before: prefix tuning + MLP, "
            "P=41, 30 steps) · validation loss 1.234 (trained in 3.1 s)",
            (4, 46 - 5),
        ),
        ("done · run 1: prefix tuning, P=10, 30 steps (before: none) · ...", (1, None)),
        ("done · final loss 0.123", (None, None)),
    ],
)
def test_run_and_before_reads_the_status_line(status, want):
    assert checks.run_and_before(status) == want
