"""Section 3: generation latency with a prefix vs without, and mixed-task serving.

Goal: greedy generation with a P=10 prefix at most 1.1x as slow as without one. The mixed
part serves rows of several tasks as one `AdapterBank` batch vs one batch per task.
"""

from __future__ import annotations

import statistics

import torch

from benchmarks.context import Results, Run
from benchmarks.harness import interleave, paired_ratio, verdict
from benchmarks.report import Goal, Report, log, ms, table
from benchmarks.variants import BATCH, N_TASKS, PREFIX, PROMPT_LEN, SEQ, Batch, describe, make_batch
from prefixlab import AdaptedModel, AdapterBank, PrefixTuning
from prefixlab.loading import model_dims

GOAL_GENERATE = 1.10  # generation latency with a P=10 prefix / without


def greedy(settings) -> dict:
    """generate() arguments: greedy, exactly `settings.new_tokens` new tokens per row."""
    n = settings.new_tokens
    return {"max_new_tokens": n, "min_new_tokens": n, "do_sample": False}


def measure(report: Report, results: Results, model_name, base, settings, rounds, batch_sizes):
    """Generation latency with a P=10 prefix vs without, per batch size."""
    log(f"3. inference ({model_name})")
    dims = model_dims(base)
    prefix = PrefixTuning(base, PREFIX)
    with_prefix, without = AdaptedModel(base, prefix), AdaptedModel(base, None)
    gen = greedy(settings)
    rows = []
    for batch_size in batch_sizes:
        batch = make_batch(dims.vocab_size, batch_size, PROMPT_LEN, seed=1)
        calls = {
            "prefix": lambda b=batch: with_prefix.generate(b.ids, b.mask, **gen),
            "none": lambda b=batch: without.generate(b.ids, b.mask, **gen),
        }
        samples = interleave(calls, rounds=rounds, warmup=settings.warmup, inner=1)
        r = paired_ratio(samples["prefix"], samples["none"])
        results.generate[(model_name, batch_size)] = r
        rows.append(
            [
                f"{batch_size} x {PROMPT_LEN} + {settings.new_tokens} new",
                ms(statistics.median(samples["none"])),
                ms(statistics.median(samples["prefix"])),
                str(r),
                verdict(r, GOAL_GENERATE),
            ]
        )
    report.add(
        f"### Generation latency with and without a prefix: {model_name}",
        f"{results.sources[model_name]}; {describe(base)}. Greedy `AdaptedModel.generate`, "
        f"exactly {settings.new_tokens} new tokens, a P={PREFIX} prefix vs no adapter (same "
        f"glue). {rounds} interleaved rounds.",
        table(
            ["batch", "no prefix ms", "prefix ms", "prefix / none", f"goal <= {GOAL_GENERATE}"],
            rows,
        ),
    )


def measure_mixed(report: Report, model_name, base, settings, rounds) -> None:
    """One AdapterBank pass over rows of several tasks vs the same rows, one batch per task."""
    dims = model_dims(base)
    gen = greedy(settings)
    adapters = [PrefixTuning(base, PREFIX, seed=k) for k in range(N_TASKS)]
    bank = AdaptedModel(base, AdapterBank(adapters))
    singles = [AdaptedModel(base, a) for a in adapters]
    task_ids = torch.arange(BATCH) % N_TASKS  # rows interleave tasks 0, 1, 2, 3, 0, ...
    forward_batch = make_batch(dims.vocab_size)
    prompt_batch = make_batch(dims.vocab_size, BATCH, PROMPT_LEN, seed=2)

    def split(b: Batch):
        return [(b.ids[task_ids == k], b.mask[task_ids == k]) for k in range(N_TASKS)]

    @torch.no_grad()
    def forward_mixed():
        bank(forward_batch.ids, forward_batch.mask, task_ids=task_ids)

    forward_parts, prompt_parts = split(forward_batch), split(prompt_batch)

    @torch.no_grad()
    def forward_by_task():
        for single, (ids, mask) in zip(singles, forward_parts, strict=True):
            single(ids, mask)

    def generate_mixed():
        bank.generate(prompt_batch.ids, prompt_batch.mask, task_ids=task_ids, **gen)

    def generate_by_task():
        for single, (ids, mask) in zip(singles, prompt_parts, strict=True):
            single.generate(ids, mask, **gen)

    mixed_rows = []
    for what, run_mixed, run_by_task in (
        (f"forward {BATCH} x {SEQ} (scoring)", forward_mixed, forward_by_task),
        (
            f"generate {BATCH} x {PROMPT_LEN} + {settings.new_tokens}",
            generate_mixed,
            generate_by_task,
        ),
    ):
        samples = interleave(
            {"mixed": run_mixed, "by_task": run_by_task},
            rounds=rounds,
            warmup=settings.warmup,
            inner=1,
        )
        gain = paired_ratio(samples["by_task"], samples["mixed"])
        mixed_rows.append(
            [
                what,
                f"{BATCH / statistics.median(samples['mixed']):.1f}",
                f"{BATCH / statistics.median(samples['by_task']):.1f}",
                str(gain),
            ]
        )
    report.add(
        f"### Mixed-task batch vs task by task: {model_name}",
        f"{BATCH} rows from {N_TASKS} tasks (one P={PREFIX} prefix each), served as one "
        "`AdapterBank` batch with `task_ids`, vs the same rows as one batch per task "
        f"({BATCH // N_TASKS} rows each) through that task's `AdaptedModel`.",
        table(
            ["call", "mixed batch rows/s", "task by task rows/s", "throughput gain, median [IQR]"],
            mixed_rows,
        ),
    )


def run(ctx: Run) -> None:
    ctx.report.add("## 3. Inference")
    s = ctx.settings
    measure(ctx.report, ctx.results, "tiny", ctx.tiny, s, s.rounds, (1, BATCH))
    measure_mixed(ctx.report, "tiny", ctx.tiny, s, s.rounds)


def goals(results: Results) -> list[Goal]:
    return [
        Goal(f"{model}: generate with P={PREFIX} / without, batch {size}", r, GOAL_GENERATE, "D")
        for (model, size), r in results.generate.items()
    ]


def notes(results: Results) -> list[str]:
    text = f"**D. Generation with a prefix.** Ratios with a P={PREFIX} prefix / without:"
    text += ";".join(f" {model} batch {size}: {r}" for (model, size), r in results.generate.items())
    return [text + "."]
