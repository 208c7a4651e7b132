"""Writing into ipywidgets Output widgets from anywhere the kernel runs code.

A debounced retrain runs from the kernel's event loop, after the message that scheduled it
is done, so the lab writes figures into each Output widget's `outputs` instead of
displaying them inside `with out:`.
"""

from __future__ import annotations

import asyncio
import html

CAPTION_CLASS = "prefixlab-caption"


def running_loop() -> asyncio.AbstractEventLoop | None:
    """The asyncio loop running on this thread (the Jupyter kernel's), or None."""
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def series(steps, values):
    import pandas as pd

    return pd.Series(list(values), index=list(steps), dtype=float)


def caption_html(caption: str) -> str:
    return f'<div class="{CAPTION_CLASS}"><b>{html.escape(caption)}</b></div>'


def display_data(obj) -> dict:
    """`obj` as a display_data output, formatted as the running IPython would display it
    (matplotlib's inline backend adds image/png); outside IPython, text/plain only."""
    from IPython import get_ipython
    from IPython.core.formatters import DisplayFormatter

    shell = get_ipython()
    formatter = shell.display_formatter if shell is not None else DisplayFormatter()
    data, metadata = formatter.format(obj)
    return {"output_type": "display_data", "data": data, "metadata": metadata}


def show(out, caption: str, figure) -> None:
    """Replace what an Output widget shows with a caption and a figure.

    Sets the widget's `outputs` (one state update) instead of displaying inside `with out:`:
    that routes output by the message being handled, and a debounced retrain runs from the
    kernel's event loop after that message is done, where captured output would go astray.
    """
    from IPython.display import HTML

    out.outputs = (display_data(HTML(caption_html(caption))), display_data(figure))
