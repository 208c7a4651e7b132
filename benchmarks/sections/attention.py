"""Section 2: what `record_attention` costs on top of an eager forward, and eager vs sdpa.

Goal: a forward inside the recorder at most 1.3x an eager forward without it.
"""

from __future__ import annotations

import copy
import statistics

import torch

from benchmarks.context import Results, Run
from benchmarks.harness import interleave, paired_ratio, verdict
from benchmarks.report import Goal, Report, log, mib, ms, table
from benchmarks.variants import BATCH, PREFIX, SEQ, describe, make_batch
from prefixlab import AdaptedModel, PrefixTuning
from prefixlab.hooks import record_attention
from prefixlab.loading import model_dims

GOAL_RECORDER = 1.3  # forward with record_attention / eager forward without it


def measure(report: Report, results: Results, model_name, base, settings, rounds, inner) -> None:
    """Interleaved no-grad forwards: eager, eager inside `record_attention`, sdpa."""
    log(f"2. attention recording ({model_name})")
    batch = make_batch(model_dims(base).vocab_size)
    prefix = PrefixTuning(base, PREFIX)
    eager = AdaptedModel(base, prefix)
    sdpa_model = copy.deepcopy(base)
    sdpa_model.set_attn_implementation("sdpa")
    sdpa = AdaptedModel(sdpa_model, prefix)
    recorded_bytes = []

    @torch.no_grad()
    def run_eager():
        eager(batch.ids, batch.mask)

    def run_recorded():
        with torch.no_grad(), record_attention(eager) as cache:
            eager(batch.ids, batch.mask)
        recorded_bytes.append(sum(t.nbytes for t in cache.values()))

    @torch.no_grad()
    def run_sdpa():
        sdpa(batch.ids, batch.mask)

    calls = {"recorder": run_recorded, "eager": run_eager, "sdpa": run_sdpa}
    samples = interleave(calls, rounds=rounds, warmup=settings.warmup, inner=inner)
    ratios = {
        "recorder / eager": paired_ratio(samples["recorder"], samples["eager"]),
        "recorder / sdpa": paired_ratio(samples["recorder"], samples["sdpa"]),
        "eager / sdpa": paired_ratio(samples["eager"], samples["sdpa"]),
    }
    results.attention[model_name] = ratios
    rows = [
        ["eager forward, no recorder", ms(statistics.median(samples["eager"]))],
        ["eager forward inside `record_attention`", ms(statistics.median(samples["recorder"]))],
        ["sdpa forward (no probabilities exist)", ms(statistics.median(samples["sdpa"]))],
    ]
    goal = ratios["recorder / eager"]
    report.add(
        f"### Attention recording: {model_name}",
        f"{results.sources[model_name]}; {describe(base)}. Inference forward (`no_grad`) of an "
        f"`AdaptedModel` with a P={PREFIX} prefix, batch {BATCH} x {SEQ}. The recorder run "
        "includes entering and leaving `record_attention` (hook registration) and keeps "
        f"{mib(recorded_bytes[-1])} MiB of probabilities ([batch, head, {SEQ}, {PREFIX + SEQ}] "
        f"float32 per layer). {rounds} rounds of {inner} calls.",
        table(["variant", "forward ms (median)"], rows),
        table(
            ["ratio", "median [IQR]", "goal", "verdict"],
            [["recorder / eager", str(goal), f"<= {GOAL_RECORDER}", verdict(goal, GOAL_RECORDER)]]
            + [
                [name, str(r), "-", "-"] for name, r in ratios.items() if name != "recorder / eager"
            ],
        ),
    )


def run(ctx: Run) -> None:
    ctx.report.add("## 2. Attention recording overhead")
    s = ctx.settings
    measure(ctx.report, ctx.results, "tiny", ctx.tiny, s, s.rounds, 2 * s.inner)


def goals(results: Results) -> list[Goal]:
    return [
        Goal(
            f"{model}: record_attention / eager forward", r["recorder / eager"], GOAL_RECORDER, "C"
        )
        for model, r in results.attention.items()
    ]


def notes(results: Results) -> list[str]:
    text = "**C. Attention recorder.** Median ratios of no-grad forwards:"
    text += ";".join(
        f" {model}: recorder / eager {r['recorder / eager'].median:.2f}, eager / sdpa "
        f"{r['eager / sdpa'].median:.2f}"
        for model, r in results.attention.items()
    )
    return [text + "."]
