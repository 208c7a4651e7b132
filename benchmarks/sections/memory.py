"""Section 5 (end): peak RSS of a fresh process per variant, at GPT-2-small dimensions.

Each variant runs in its own process (`bench.py --rss-child NAME`), so one variant's
allocations never count toward another's peak. The child builds the model and the variant,
runs a no-grad forward, then measures with `harness.rss_while` around two training steps.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import torch

from benchmarks.context import Run
from benchmarks.harness import rss_while
from benchmarks.report import log, mib, table
from benchmarks.variants import (
    PREFIX,
    VARIANTS,
    build_model,
    make_batch,
    share_base_weights,
)
from prefixlab.loading import model_dims

NAMES = ["prefix", "peft-prefix", "lora", "full"]
MODEL = "gpt2-small"
BENCH = Path(__file__).resolve().parents[1] / "bench.py"


def child(name: str) -> dict:
    """In the child process: RSS after setup, then the peak over two training steps."""
    if name not in VARIANTS:
        raise ValueError(
            f"--rss-child must name a variant, one of {sorted(VARIANTS)}; got {name!r}."
        )
    share_base_weights()  # one variant per process: a private copy would count weights twice
    base, _ = build_model(MODEL)
    trainer = VARIANTS[name][1](base, make_batch(model_dims(base).vocab_size), PREFIX)
    with torch.no_grad():
        trainer.loss_fn()

    def two_steps():  # the second step holds AdamW state, gradients and activations at once
        for _ in range(2):
            trainer.step()

    return rss_while(two_steps)


def in_child(name: str, threads: int, timeout: float = 900) -> dict | None:
    """Run `child(name)` in a fresh Python process; its last stdout line is the JSON result."""
    command = [sys.executable, str(BENCH), "--rss-child", name, "--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"RSS child {name} timed out")
        return None
    if done.returncode != 0:
        log(f"RSS child {name} failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def run(ctx: Run) -> None:
    if not ctx.settings.rss:
        return
    log("5. peak RSS per variant in fresh processes (GPT-2-small dimensions)")
    rows = []
    for name in NAMES:
        label = VARIANTS[name][0]
        found = in_child(name, ctx.threads)
        if found is None:
            rows.append([label, "failed or timed out", "", ""])
            continue
        peak = found["peak_kib"] * 1024
        if found["setup_kib"] is None:
            rows.append([label, "n/a", mib(peak), "n/a (no /proc)"])
            continue
        setup = found["setup_kib"] * 1024
        rows.append([label, mib(setup), mib(peak), mib(peak - setup)])
    ctx.report.add(
        "### Peak RSS of a fresh process (GPT-2-small dimensions)",
        "One process per variant builds the model and the variant and runs one no-grad "
        "forward ('after setup' = VmRSS then), then two training steps ('peak' = the "
        "kernel's VmHWM, reset after setup; the second step holds AdamW state, gradients and "
        "activations at once). RSS includes the Python, torch and transformers runtime and "
        "transient buffers; the growth column is the one to compare.",
        table(["variant", "after setup MiB", "peak MiB", "growth while training MiB"], rows),
    )
