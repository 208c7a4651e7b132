"""Run the notebook series headless and write each one as HTML (`prefixlab run-notebooks`)."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


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


def run_notebook(path: Path, out_dir: Path, *, timeout: int = 1800, inplace: bool = False) -> Path:
    """Execute one notebook in its own folder and write `out_dir/<name>.html`.

    With `inplace`, the executed notebook is also written back to `path`, the way the series
    is committed: outputs kept, saved widget state (`metadata.widgets`, hundreds of KB that a
    live kernel rebuilds anyway) and per-cell execution timestamps dropped.

    Raises:
        NotebookFailed: naming the notebook and the failing cell (index and first line).
    """
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbconvert import HTMLExporter

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(
        nb,
        timeout=timeout,
        kernel_name="python3",
        record_timing=not inplace,
        resources={"metadata": {"path": str(path.parent)}},
    )
    try:
        client.execute()
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
        first = (
            nb.cells[index].source.splitlines()[0]
            if index is not None and nb.cells[index].source
            else ""
        )
        raise NotebookFailed(f"{path.name}: {where} failed ({first!r}):\n{err}") from err
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
) -> int:
    """Execute notebooks (default: the whole series) and write HTML; returns an exit code."""
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
            target = run_notebook(path, out_dir, inplace=inplace)
        except NotebookFailed as err:
            print("FAILED", flush=True)
            print(f"prefixlab: {err}", file=sys.stderr)
            return 1
        print(f"ok in {time.perf_counter() - start:.0f}s -> {target}", flush=True)
    return 0
