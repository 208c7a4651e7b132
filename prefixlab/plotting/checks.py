"""Input checks shared by the plot functions; each error says what the call should pass."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import pandas as pd

# --------------------------------------------------------------------------- validation


def _to_array(values, what: str) -> np.ndarray:
    if hasattr(values, "detach"):  # a torch tensor; plotting never needs its autograd graph
        values = values.detach().cpu()
    try:
        return np.asarray(values, dtype=float)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{what} must be numeric, got {type(values).__name__} ({err}).") from err


def _check_mapping(mapping, what: str, expected: str) -> None:
    if not isinstance(mapping, Mapping) or len(mapping) == 0:
        got = "an empty mapping" if isinstance(mapping, Mapping) else type(mapping).__name__
        raise ValueError(f"{what} must be a non-empty dict label -> {expected}; got {got}.")


def _array_nd(values, ndim: int, what: str, expected: str) -> np.ndarray:
    array = _to_array(values, what)
    if array.ndim != ndim or array.size == 0:
        raise ValueError(f"{what} must be a non-empty {expected}; got shape {array.shape}.")
    return array


def _xy(values, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of one curve: a pandas Series keeps its index, a sequence counts 0..n-1."""
    if isinstance(values, pd.Series):
        y = _array_nd(values.to_numpy(), 1, what, "1-D sequence [steps]")
        return _to_array(values.index, f"the index of {what}"), y
    y = _array_nd(values, 1, what, "1-D sequence [steps] (or a pandas Series indexed by step)")
    return np.arange(len(y), dtype=float), y


def _val_xy(pair, label) -> tuple[np.ndarray, np.ndarray]:
    what = f"val[{label!r}]"
    if not isinstance(pair, (tuple, list)) or len(pair) != 2:
        raise ValueError(f"{what} must be a pair (steps, values) of 1-D sequences.")
    steps = _array_nd(pair[0], 1, f"{what} steps", "1-D sequence")
    values = _array_nd(pair[1], 1, f"{what} values", "1-D sequence")
    if len(steps) != len(values):
        raise ValueError(f"{what}: {len(steps)} steps but {len(values)} values; they must match.")
    return steps, values


def _check_smooth(smooth) -> float:
    if isinstance(smooth, bool) or not isinstance(smooth, (int, float)) or not 0 <= smooth < 1:
        raise ValueError(
            f"smooth is an exponential-moving-average weight in [0, 1) (0 = off, 0.9 = strong); "
            f"got {smooth!r}."
        )
    return float(smooth)


def _check_frame(df, columns: Sequence[str], what: str = "df") -> pd.DataFrame:
    if not isinstance(df, pd.DataFrame) or df.empty:
        got = "an empty DataFrame" if isinstance(df, pd.DataFrame) else type(df).__name__
        raise ValueError(f"{what} must be a non-empty pandas DataFrame; got {got}.")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise ValueError(
            f"{what} lacks column(s) {missing}; expected columns {list(columns)}, "
            f"found {list(df.columns)}."
        )
    return df


def _check_mass(mass, what: str = "mass") -> np.ndarray:
    array = _array_nd(mass, 2, what, "2-D array [layers, heads] of attention mass (0..1)")
    finite = array[np.isfinite(array)]
    if finite.size and (finite.min() < -1e-6 or finite.max() > 1 + 1e-6):
        raise ValueError(
            f"{what} holds attention mass, a share between 0 and 1; got values from "
            f"{finite.min():.3g} to {finite.max():.3g}."
        )
    return array


def _check_masses(masses) -> dict[object, np.ndarray]:
    """label -> [layers, heads] attention mass, each checked as `_check_mass` does."""
    _check_mapping(masses, "masses", "2-D array [layers, heads]")
    return {label: _check_mass(m, f"masses[{label!r}]") for label, m in masses.items()}


def _vmax(arrays, vmax) -> float:
    if vmax is not None:
        if not np.isfinite(vmax) or vmax <= 0:
            raise ValueError(f"vmax must be a positive number, got {vmax!r}.")
        return float(vmax)
    finite = np.concatenate([a[np.isfinite(a)] for a in arrays])
    return float(finite.max()) if finite.size and finite.max() > 0 else 1.0
