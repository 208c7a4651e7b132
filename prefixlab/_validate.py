"""Argument checks shared by the whole package, each raising a ValueError that says how to
fix the call ("steps must be an int >= 1, got 0. Try 300.").

`bool` is never accepted as a number: `True` is an int to Python, but `prefix_length=True`
is a mistake, not a length of 1.
"""

from __future__ import annotations

import difflib
import math


def is_int(value) -> bool:
    """An int that is not a bool."""
    return isinstance(value, int) and not isinstance(value, bool)


def is_number(value) -> bool:
    """A finite int or float that is not a bool."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _hint(hint: str) -> str:
    return f" {hint}" if hint else ""


def require_int(name: str, value, *, low: int, hint: str = "", allow_none: bool = False) -> None:
    """`value` is an int >= `low` (or None when `allow_none`)."""
    if allow_none and value is None:
        return
    if not is_int(value) or value < low:
        none = " or None" if allow_none else ""
        raise ValueError(f"{name} must be an int >= {low}{none}, got {value!r}.{_hint(hint)}")


def require_number(
    name: str,
    value,
    *,
    above: float | None = None,
    at_least: float | None = None,
    below: float | None = None,
    at_most: float | None = None,
    hint: str = "",
    allow_none: bool = False,
) -> None:
    """`value` is a finite number inside the given bounds (`above`/`below` exclusive,
    `at_least`/`at_most` inclusive), or None when `allow_none`.

    The message states the bounds: "factor must be a number > 1, got 1.0. Try 1.5.",
    "warmup_ratio must be a number in [0, 1), got 1.0."
    """
    if allow_none and value is None:
        return
    ok = is_number(value)
    ok = ok and (above is None or value > above)
    ok = ok and (at_least is None or value >= at_least)
    ok = ok and (below is None or value < below)
    ok = ok and (at_most is None or value <= at_most)
    if ok:
        return
    low = ("(", above) if above is not None else ("[", at_least)
    high = (")", below) if below is not None else ("]", at_most)
    if low[1] is not None and high[1] is not None:
        what = f"a number in {low[0]}{low[1]:g}, {high[1]:g}{high[0]}"
    elif low[1] is not None:
        what = (
            "a positive number"
            if low == ("(", 0)
            else f"a number {'>' if low[0] == '(' else '>='} {low[1]:g}"
        )
    elif high[1] is not None:
        what = f"a number {'<' if high[0] == ')' else '<='} {high[1]:g}"
    else:
        what = "a finite number"
    none = " or None" if allow_none else ""
    raise ValueError(f"{name} must be {what}{none}, got {value!r}.{_hint(hint)}")


def require_bool(name: str, value) -> None:
    """`value` is True or False (not 0, 1 or a string such as "no")."""
    if not isinstance(value, bool):
        raise ValueError(f"{name} must be True or False, got {value!r}.")


def did_you_mean(value, choices) -> str:
    """ " Did you mean 'x'?" for the closest choice, or "" when none is close."""
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    return f" Did you mean {close[0]!r}?" if close else ""


def require_choice(name: str, value, choices, hint: str = "") -> None:
    """`value` is one of `choices`; the message names the closest one."""
    if value not in choices:
        raise ValueError(
            f"{name} must be one of {tuple(choices)}, got {value!r}."
            f"{did_you_mean(value, choices)}{_hint(hint)}"
        )
