"""Section 5: the training comparison at growing model sizes.

The tiny model's numbers come from section 1; a random 6 x 256 GPT-2 and (full run) a random
GPT-2 with GPT-2-small dimensions are measured here. At GPT-2-small dimensions it also runs
the profile diff, the phase breakdown, attention recording, generation and the prefix-length
sweep, with fewer rounds since each call takes seconds.
"""

from __future__ import annotations

import gc
import statistics

from benchmarks.context import Run
from benchmarks.report import Report, log, ms, table
from benchmarks.sections import attention, inference, prefix_length
from benchmarks.sections.training import (
    MEMORY_HEADERS,
    PHASE_TEXT,
    memory_cells,
    phase_breakdown,
    phase_table,
    profile_chunks,
    ratio_rows,
)
from benchmarks.variants import (
    BATCH,
    PREFIX,
    SEQ,
    VARIANTS,
    build_model,
    make_batch,
    train_compare,
)
from prefixlab.loading import model_dims

NAMES = ["prefix", "peft-prefix", "prompt", "peft-prompt", "lora", "full"]
RATIOS = [
    ("prefix", "peft-prefix"),
    ("prompt", "peft-prompt"),
    ("prefix", "full"),
    ("prompt", "full"),
    ("lora", "full"),
]


def run(ctx: Run) -> None:
    """The training comparison at each size, then the GPT-2-small extras."""
    report, results, settings, tiny = ctx.report, ctx.results, ctx.settings, ctx.tiny
    size_rows, size_ratio_rows, extra = [], [], Report()
    for model_name in settings.models:
        if model_name == "tiny":
            base = tiny
            samples, mem = results.samples["tiny"], results.memory["tiny"]
        else:
            log(f"5. model size: {model_name}")
            base, results.sources[model_name] = build_model(model_name)
            big = model_name == "gpt2-small"
            rounds = settings.big_rounds if big else max(3, settings.rounds // 2)
            batch = make_batch(model_dims(base).vocab_size)
            trainers, samples, mem = train_compare(
                NAMES, base, batch, PREFIX, rounds, 1, 1 if big else settings.inner
            )
            results.samples[model_name], results.memory[model_name] = samples, mem
            if big:
                log("   profiling prefixlab vs PEFT")
                extra.add(*profile_chunks(trainers, (("prefix", "peft-prefix"),), base))
                log("   phase breakdown")
                pair = {name: trainers[name] for name in ("prefix", "full")}
                results.phases[model_name] = phase_breakdown(pair, 2)
                extra.add(
                    "### Where a step's time goes at GPT-2-small dimensions",
                    PHASE_TEXT,
                    phase_table(results.phases[model_name]),
                )
            del trainers
            gc.collect()
        full_total = mem.get("full", {}).get("total")
        size_rows += [
            [
                f"{model_name} ({sum(p.numel() for p in base.parameters()) / 1e6:.1f}M)",
                VARIANTS[name][0],
                ms(statistics.median(samples[name])),
                *memory_cells(mem[name], full_total),
            ]
            for name in NAMES
            if name in samples
        ]
        for row in ratio_rows(results, model_name, samples, RATIOS):
            size_ratio_rows.append([model_name, *row])
        if model_name == "gpt2-small":
            attention.measure(extra, results, model_name, base, settings, 3, 1)
            inference.measure(extra, results, model_name, base, settings, 3, (1,))
            if settings.big_p_values:
                names = ["prefix", "peft-prefix"]
                prefix_length.measure(
                    extra, results, model_name, base, settings.big_p_values, 3, 1, names
                )
        if base is not tiny:
            del base
            gc.collect()
    rounds = f"{max(3, settings.rounds // 2)} rounds of {settings.inner} steps each beyond the tiny model"
    if "gpt2-small" in settings.models:
        rounds += f", {settings.big_rounds} rounds of one step at GPT-2-small dimensions"
    report.add(
        "## 5. Scaling with the model",
        f"Batch {BATCH} x {SEQ}, P={PREFIX}, the section-1 variants ({rounds}). Beyond the tiny "
        "model the weights are random: speed and memory do not depend on what they learned. "
        + ("" if "gpt2-small" in settings.models else "`--quick` stops before GPT-2-small."),
        table(["model", "variant", "step ms", *MEMORY_HEADERS], size_rows),
        table(["model", "step-time ratio", "median [IQR]"], size_ratio_rows),
    )
    if extra.sections:
        report.add(
            "### GPT-2-small dimensions: attention recording, generation, prefix length",
            "Fewer rounds (3) than on the tiny model.",
        )
        report.sections += extra.sections
