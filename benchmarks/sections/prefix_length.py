"""Section 4: step time and memory as the prefix length P grows, prefix vs prompt tuning.

A prefix lengthens only the key axis of attention; P soft tokens are P more positions
through every layer, the LM head and the loss. This section measures what each costs.
"""

from __future__ import annotations

import gc
import statistics

from benchmarks.context import Results, Run
from benchmarks.harness import paired_ratio
from benchmarks.report import Report, log, mib, ms, table
from benchmarks.variants import BATCH, PEERS, SEQ, VARIANTS, describe, make_batch, train_compare
from prefixlab.loading import model_dims

NAMES = ["prefix", "peft-prefix", "prompt", "peft-prompt"]


def measure(report: Report, results: Results, model_name, base, p_values, rounds, inner, names):
    """Step time and memory of the named variants at each P (clipped to the context)."""
    log(f"4. prefix-length sweep ({model_name})")
    dims = model_dims(base)
    batch = make_batch(dims.vocab_size)
    limit = dims.n_positions - SEQ
    rows, clipped = [], []
    for wanted in p_values:
        length = min(wanted, limit)
        if length < wanted:
            clipped.append(wanted)
        log(f"   P={length}")
        trainers, samples, mem = train_compare(names, base, batch, length, rounds, 1, inner)
        for name in names:
            results.p_sweep[(model_name, length, name)] = statistics.median(samples[name])
            peer = PEERS.get(name)
            r = str(paired_ratio(samples[name], samples[peer])) if peer in samples else ""
            rows.append(
                [
                    length,
                    VARIANTS[name][0],
                    ms(statistics.median(samples[name])),
                    f"{trainers[name].trainable:,}",
                    mib(mem[name]["activations"]),
                    mib(mem[name]["state"]),
                    r,
                ]
            )
        del trainers
        gc.collect()
    note = ""
    if clipped:
        note = (
            f"P={', '.join(map(str, clipped))} does not fit this model: its context holds "
            f"{dims.n_positions} positions, the {SEQ} tokens use {SEQ} and the prefix the rest, "
            f"so the longest prefix, P={limit}, is measured instead."
        )
    report.add(
        f"### Prefix length: {model_name}",
        f"{results.sources[model_name]}; {describe(base)}. Batch {BATCH} x {SEQ}; {rounds} "
        f"interleaved rounds of {inner} steps per P. Memory as in section 1.",
        note,
        table(
            [
                "P",
                "variant",
                "step ms",
                "trainable",
                "saved for backward MiB",
                "grad + AdamW MiB",
                "vs PEFT, median [IQR]",
            ],
            rows,
        ),
    )


def run(ctx: Run) -> None:
    ctx.report.add("## 4. Scaling with the prefix length P")
    s = ctx.settings
    rounds = max(3, s.rounds // 2)
    measure(ctx.report, ctx.results, "tiny", ctx.tiny, s.p_values, rounds, s.inner, NAMES)


def notes(results: Results) -> list[str]:
    sweep = {(P, v): t for (m, P, v), t in results.p_sweep.items() if m == "tiny"}
    lengths = sorted({P for P, _ in sweep})
    if len(lengths) < 2 or (lengths[0], "prompt") not in sweep:
        return []
    lo, hi = lengths[0], lengths[-1]
    grow_prefix = sweep[(hi, "prefix")] / sweep[(lo, "prefix")]
    grow_prompt = sweep[(hi, "prompt")] / sweep[(lo, "prompt")]
    return [
        f"**E. Prefix length.** From P={lo} to P={hi} on the tiny model a prefix-tuning "
        f"step goes from {ms(sweep[(lo, 'prefix')])} to {ms(sweep[(hi, 'prefix')])} ms "
        f"({grow_prefix:.1f}x), a prompt-tuning step from {ms(sweep[(lo, 'prompt')])} to "
        f"{ms(sweep[(hi, 'prompt')])} ms ({grow_prompt:.1f}x)."
    ]
