"""Run the notebook series headless and write each one as HTML (`prefixlab run-notebooks`)."""

from __future__ import annotations

import math
import os
import sys
import time
from pathlib import Path

CELL_TIMEOUT = 1800  # seconds one cell may run (a CPU-preset training cell takes minutes)
NOTEBOOK_TIMEOUT = 3600  # seconds one whole notebook may run, kernel start excluded


def series(folder: str | Path | None = None) -> list[Path]:
    """The numbered notebooks (`NN_name.ipynb`) in order."""
    root = Path(folder) if folder else Path(__file__).resolve().parent.parent / "notebooks"
    if not root.is_dir():
        raise FileNotFoundError(
            f"No notebooks folder at {root}. Run from a checkout of the repository, or pass the "
            "notebook files explicitly."
        )
    return sorted(p for p in root.glob("[0-9][0-9]_*.ipynb"))


class NotebookFailed(RuntimeError):
    pass


def check_notebook_timeout(value) -> float:
    """Validate a wall-clock limit in seconds: a finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(
            f"notebook_timeout must be a number of seconds > 0 (default {NOTEBOOK_TIMEOUT}), "
            f"got {value!r}; on the command line: --notebook-timeout 3600."
        )
    if not math.isfinite(value):
        raise ValueError(
            f"notebook_timeout must be finite, got {value!r}; pass a number of seconds such as "
            f"{NOTEBOOK_TIMEOUT} (--notebook-timeout {NOTEBOOK_TIMEOUT})."
        )
    return float(value)


def _first_line(nb, index: int | None) -> str:
    if index is None or not nb.cells[index].source:
        return ""
    return nb.cells[index].source.splitlines()[0]


def run_notebook(
    path: Path,
    out_dir: Path,
    *,
    timeout: int = CELL_TIMEOUT,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
    inplace: bool = False,
) -> Path:
    """Execute one notebook in its own folder and write `out_dir/<name>.html`.

    With `inplace`, the executed notebook is also written back to `path`, the way the series
    is committed: outputs kept, saved widget state (`metadata.widgets`, hundreds of KB that a
    live kernel rebuilds anyway) and per-cell execution timestamps dropped.

    Two clocks stop a notebook that hangs (a cell that never returns, or a kernel that went
    idle without replying while the client waits): each cell gets at most `timeout` seconds,
    and the whole notebook `notebook_timeout` seconds (each cell's limit is cut to what is left
    of it). A dead kernel is reported by nbclient as soon as it is noticed.

    Raises:
        NotebookFailed: naming the notebook and the failing cell (index and first line).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError, CellTimeoutError, DeadKernelError
    from nbconvert import HTMLExporter

    notebook_timeout = check_notebook_timeout(notebook_timeout)
    if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
        raise ValueError(
            f"timeout (seconds per cell) must be an int >= 1, got {timeout!r}; the default is "
            f"{CELL_TIMEOUT}."
        )
    nb = nbformat.read(path, as_version=4)
    current: dict = {"index": None}  # the cell being executed, for the error message
    clock = {"deadline": math.inf}  # set when the first cell starts: kernel start excluded

    def cell_limit(cell) -> int:
        """Seconds this cell may take: its own limit, cut to what is left of the notebook's."""
        if clock["deadline"] == math.inf:
            clock["deadline"] = time.monotonic() + notebook_timeout
        left = clock["deadline"] - time.monotonic()
        return max(1, math.ceil(min(timeout, left)))

    def on_cell_start(cell, cell_index, **_):
        current["index"] = cell_index

    client = NotebookClient(
        nb,
        timeout_func=cell_limit,
        kernel_name="python3",
        record_timing=not inplace,
        on_cell_start=on_cell_start,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
    except CellTimeoutError as err:
        index = current["index"]
        over = time.monotonic() >= clock["deadline"] - 1
        limit = (
            f"the notebook's wall-clock limit of {notebook_timeout:g} s (--notebook-timeout)"
            if over
            else f"the per-cell limit of {timeout} s"
        )
        raise NotebookFailed(
            f"{path.name}: cell {index} ({_first_line(nb, index)!r}) was still running after "
            f"{limit}: it hangs, or the kernel stopped replying. Run the notebook in Jupyter to "
            "see where it stops, or raise the limit."
        ) from err
    except DeadKernelError as err:
        index = current["index"]
        raise NotebookFailed(
            f"{path.name}: the kernel died in cell {index} ({_first_line(nb, index)!r}): {err}"
        ) from err
    except CellExecutionError as err:
        index = next(
            (
                i
                for i, c in enumerate(nb.cells)
                if c.get("outputs") and any(o.get("output_type") == "error" for o in c.outputs)
            ),
            None,
        )
        where = f"cell {index}" if index is not None else "a cell"
        raise NotebookFailed(
            f"{path.name}: {where} failed ({_first_line(nb, index)!r}):\n{err}"
        ) from err
    if inplace:
        nb.metadata.pop("widgets", None)
        nbformat.write(nb, path)
    html, _ = HTMLExporter().from_notebook_node(nb)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = out_dir / (path.stem + ".html")
    target.write_text(html, encoding="utf-8")
    return target


def run_notebooks(
    notebooks=None,
    *,
    out: str | Path = "notebooks-html",
    fast: bool = False,
    inplace: bool = False,
    notebook_timeout: float = NOTEBOOK_TIMEOUT,
) -> int:
    """Execute notebooks (default: the whole series) and write HTML; returns an exit code.

    `notebook_timeout` is each notebook's wall-clock limit in seconds (see `run_notebook`).
    """
    notebook_timeout = check_notebook_timeout(notebook_timeout)
    paths = [Path(p) for p in notebooks] if notebooks else series()
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        print(f"prefixlab: no such notebook: {', '.join(missing)}", file=sys.stderr)
        return 2
    if fast:
        os.environ["PREFIXLAB_PRESET"] = "fast"
    out_dir = Path(out)
    for i, path in enumerate(paths, 1):
        start = time.perf_counter()
        print(f"[{i}/{len(paths)}] {path.name} ...", end=" ", flush=True)
        try:
            target = run_notebook(path, out_dir, inplace=inplace, notebook_timeout=notebook_timeout)
        except NotebookFailed as err:
            print("FAILED", flush=True)
            print(f"prefixlab: {err}", file=sys.stderr)
            return 1
        print(f"ok in {time.perf_counter() - start:.0f}s -> {target}", flush=True)
    return 0
