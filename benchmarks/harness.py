"""Measuring on a shared CPU: interleaved timing, paired ratios, saved tensors, peak RSS.

Nothing here knows about prefixlab: every function takes callables (or file paths) and
returns numbers, so `tests/test_bench_harness.py` checks each one with fake clocks, tiny
callables and fake /proc files.

- `interleave` times several variants round after round (A, B, C, then C, B, A, ...), so a
  slow spell on a shared machine hits every variant alike.
- `paired_ratio` is the median and interquartile range of the per-round ratios a_i / b_i
  (both sides of a round saw the same load); `verdict` reads it against a goal.
- `saved_tensor_bytes` counts what autograd keeps for the backward of one call.
- `rss_while` reads the kernel's VmRSS / VmHWM around a call, with the peak mark reset
  first. Not `ru_maxrss`: Linux carries it across exec, so a child started from a large
  benchmark process would report the parent's peak.
"""

from __future__ import annotations

import contextlib
import gc
import resource
import statistics
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import torch

PROC_STATUS = Path("/proc/self/status")
PROC_CLEAR_REFS = Path("/proc/self/clear_refs")
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")

# -- timing ---------------------------------------------------------------------------------


def interleave(
    calls: dict[str, Callable[[], object]],
    *,
    rounds: int,
    warmup: int,
    inner: int,
    clock: Callable[[], float] = time.perf_counter,
) -> dict[str, list[float]]:
    """Seconds per call of each variant: one sample per round, variants interleaved.

    Args:
        calls: variant name -> a call to time (no arguments).
        rounds: timed rounds; odd rounds run the variants in reverse order.
        warmup: untimed rounds first (caches, allocator, lazy initialisation).
        inner: calls per sample; a sample is their mean.
        clock: seconds as a float (a fake clock in tests).
    Returns:
        variant name -> [rounds] seconds per call. Garbage collection is off while timing
        (and collected between rounds), so a collection never lands inside one sample.
    """
    for what, value, least in (("rounds", rounds, 1), ("warmup", warmup, 0), ("inner", inner, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{what} must be an int >= {least}, got {value!r}.")
    if not calls:
        raise ValueError("calls must name at least one variant: {name: callable}.")
    names = list(calls)
    for _ in range(warmup):
        for name in names:
            calls[name]()
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(rounds):
            for name in names if r % 2 == 0 else names[::-1]:
                start = clock()
                for _ in range(inner):
                    calls[name]()
                samples[name].append((clock() - start) / inner)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


# -- statistics -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Ratio:
    """Median and interquartile range of per-round ratios."""

    median: float
    q1: float
    q3: float

    def __str__(self) -> str:
        return f"{self.median:.2f} [{self.q1:.2f}-{self.q3:.2f}]"


def paired_ratio(a: list[float], b: list[float]) -> Ratio:
    """Median and quartiles (inclusive method) of the per-round ratios a_i / b_i."""
    if len(a) != len(b) or not a:
        raise ValueError(
            f"paired_ratio needs two equally long, non-empty sample lists (one sample per "
            f"round on each side); got {len(a)} and {len(b)}."
        )
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(ratios) < 2:
        return Ratio(ratios[0], ratios[0], ratios[0])
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Ratio(statistics.median(ratios), q1, q3)


def verdict(ratio: Ratio, goal: float) -> str:
    """ "met" if the upper quartile is within the goal, "**missed**" if the lower quartile is
    beyond it, else either one "(within noise)", by the median."""
    if ratio.q3 <= goal:
        return "met"
    if ratio.q1 > goal:
        return "**missed**"
    return "met (within noise)" if ratio.median <= goal else "**missed** (within noise)"


# -- memory ---------------------------------------------------------------------------------


def saved_tensor_bytes(run: Callable[[], object], exclude: Iterable[torch.Tensor] = ()) -> int:
    """Bytes of the tensors autograd saves for backward while `run()` executes.

    Each storage is counted once (views share one), and the storages of `exclude` (the
    model's weights and buffers, which exist anyway) are not counted.
    """
    skip = {t.untyped_storage().data_ptr() for t in exclude}
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in skip:
            saved[ptr] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(saved.values())


def proc_status_kib(field_name: str, path: Path = PROC_STATUS) -> int | None:
    """A `VmRSS:`/`VmHWM:` line of /proc/self/status, in KiB; None where there is none."""
    with contextlib.suppress(OSError):
        for line in Path(path).read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def reset_peak_rss(path: Path = PROC_CLEAR_REFS) -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
    try:
        Path(path).write_text("5")  # "5": reset the peak RSS (proc(5), /proc/pid/clear_refs)
    except OSError:
        return False
    return True


def rss_while(
    run: Callable[[], object],
    *,
    status: Path = PROC_STATUS,
    clear_refs: Path = PROC_CLEAR_REFS,
) -> dict[str, int | bool | None]:
    """RSS now (VmRSS), then the peak (VmHWM) while `run()` executes, in KiB.

    Returns {"setup_kib", "peak_kib", "peak_reset"}. Where /proc is missing, setup_kib is
    None and peak_kib is the whole-life peak from `ru_maxrss` (peak_reset False).
    """
    gc.collect()
    setup = proc_status_kib("VmRSS", status)
    reset = reset_peak_rss(clear_refs)
    run()
    peak = proc_status_kib("VmHWM", status)
    if setup is None or peak is None:
        setup, peak, reset = None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    return {"setup_kib": setup, "peak_kib": peak, "peak_reset": reset}


# -- profiles -------------------------------------------------------------------------------


def _aten_ops(fn: Callable[[], object], steps: int, by_shape: bool):
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], record_shapes=by_shape) as prof:
        for _ in range(steps):
            fn()
    events = prof.key_averages(group_by_input_shape=by_shape)
    return [e for e in events if e.key.startswith("aten::")]


def profile_diff(a: Callable, b: Callable, steps: int = 2, top: int = 8) -> list[tuple]:
    """Operators whose call counts differ between a call of `a` and one of `b`.

    Returns rows (op, input shapes, calls a, calls b, self ms a, self ms b), per call, the
    `top` largest differences in self CPU time first.
    """
    tables = []
    for fn in (a, b):
        fn()  # warm up outside the profile
        tables.append(
            {
                (e.key, str(e.input_shapes)): (e.count / steps, e.self_cpu_time_total / steps)
                for e in _aten_ops(fn, steps, by_shape=True)
            }
        )
    rows = []
    for key in set(tables[0]) | set(tables[1]):
        (ca, ta), (cb, tb) = tables[0].get(key, (0, 0.0)), tables[1].get(key, (0, 0.0))
        if ca != cb:
            rows.append((key[0], key[1], ca, cb, ta / 1e3, tb / 1e3))
    rows.sort(key=lambda r: -abs(r[4] - r[5]))
    return rows[:top]


def matmul_share(fn: Callable[[], object]) -> float:
    """Share of matrix multiplications (MATMULS) in the self CPU time of one call of `fn`."""
    ops = _aten_ops(fn, 1, by_shape=False)
    matmul = sum(e.self_cpu_time_total for e in ops if e.key in MATMULS)
    return matmul / max(1, sum(e.self_cpu_time_total for e in ops))
