"""Small notebooks written on the fly for tests of the notebook runner and the CLI."""

from __future__ import annotations

import nbformat


def write_notebook(path, *sources):
    """A notebook at `path` with one code cell per source string, on the python3 kernel."""
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nbformat.write(nb, path)
    return path
