"""Section 1: a training step of prefixlab vs PEFT vs LoRA vs full fine-tuning (tiny model).

Also the helpers the scaling section reuses at larger sizes: memory cells, ratio rows, the
operator diff against PEFT and the forward / backward / AdamW breakdown. Its goals: prefixlab
no slower than PEFT, prefix tuning at least 25% faster than full fine-tuning.
"""

from __future__ import annotations

import statistics
import time

from benchmarks.context import Results, Run
from benchmarks.harness import matmul_share, paired_ratio, profile_diff
from benchmarks.report import Goal, log, mib, ms, table
from benchmarks.variants import (
    BATCH,
    LORA_RANK,
    MLP_HIDDEN,
    PEERS,
    PREFIX,
    SEQ,
    VARIANTS,
    Trainer,
    describe,
    make_batch,
    train_compare,
)
from prefixlab.loading import model_dims

GOAL_VS_PEFT = 1.0  # prefixlab step time / PEFT step time
GOAL_VS_FULL = 0.75  # prefix tuning step time / full fine-tuning step time (25% faster)

ORDER = list(VARIANTS)  # every variant, in the table's order
RATIOS = [
    *PEERS.items(),
    ("prefix", "full"),
    ("prefix+mlp", "full"),
    ("prompt", "full"),
    ("lora", "full"),
    ("prefix", "lora"),
    ("prefix-sdpa", "prefix"),
]
MEMORY_HEADERS = ["saved for backward MiB", "grad + AdamW MiB", "training memory MiB", "of full FT"]
PHASE_TEXT = (
    "Forward, backward and AdamW step timed separately (median of interleaved steps); matmul "
    "share = self CPU time of mm/addmm/bmm/baddbmm over that of all operators in one profiled "
    "step."
)


def memory_cells(m: dict[str, int], full_total: int | None) -> list[str]:
    share = f"{100 * m['total'] / full_total:.1f}%" if full_total else ""
    return [mib(m["activations"]), mib(m["state"]), mib(m["total"]), share]


def ratio_rows(results: Results, model: str, samples, pairs) -> list[list[str]]:
    """One "A / B", "median [IQR]" row per pair measured here; stores each in results.ratios."""
    rows = []
    for a, b in pairs:
        if a in samples and b in samples:
            r = paired_ratio(samples[a], samples[b])
            results.ratios[(model, a, b)] = r
            rows.append([f"{VARIANTS[a][0]} / {VARIANTS[b][0]}", str(r)])
    return rows


def phase_breakdown(trainers: dict[str, Trainer], rounds: int) -> dict[str, dict[str, float]]:
    """Median forward, backward and AdamW seconds per variant (interleaved), plus the share of
    matrix multiplications in the self CPU time of one profiled step."""
    times = {name: {"forward": [], "backward": [], "AdamW step": []} for name in trainers}
    for _ in range(rounds):
        for name, trainer in trainers.items():
            t0 = time.perf_counter()
            loss = trainer.loss_fn()
            t1 = time.perf_counter()
            loss.backward()
            t2 = time.perf_counter()
            trainer.opt.step()
            trainer.opt.zero_grad(set_to_none=True)
            t3 = time.perf_counter()
            for phase, seconds in zip(times[name], (t1 - t0, t2 - t1, t3 - t2), strict=True):
                times[name][phase].append(seconds)
    result = {}
    for name, trainer in trainers.items():
        result[name] = {phase: statistics.median(v) for phase, v in times[name].items()}
        result[name]["matmul share"] = matmul_share(trainer.step)
    return result


def phase_table(phases: dict[str, dict[str, float]]) -> str:
    return table(
        ["variant", "forward ms", "backward ms", "AdamW step ms", "matmul share of the step"],
        [
            [
                VARIANTS[name][0],
                ms(p["forward"]),
                ms(p["backward"]),
                ms(p["AdamW step"]),
                f"{100 * p['matmul share']:.0f}%",
            ]
            for name, p in phases.items()
        ],
    )


def profile_chunks(trainers, pairs, base=None) -> list[str]:
    """A heading, then per (a, b) pair the operators whose call counts differ (profile_diff)."""
    where = "" if base is None else f" at {describe(base)}"
    chunks = [f"### Operators that differ between prefixlab and PEFT steps{where}"]
    for a, b in pairs:
        diff = profile_diff(trainers[a].step, trainers[b].step, steps=1 if base else 2)
        chunks.append(f"**{VARIANTS[a][0]} vs {VARIANTS[b][0]}**")
        chunks.append(
            table(
                ["op", "input shapes", "calls prefixlab", "calls PEFT", "ms prefixlab", "ms PEFT"],
                [
                    [op, f"`{shapes[:70]}`", f"{ca:g}", f"{cb:g}", f"{ta:.2f}", f"{tb:.2f}"]
                    for op, shapes, ca, cb, ta, tb in diff
                ],
            )
        )
    return chunks


def run(ctx: Run) -> None:
    settings, results, base = ctx.settings, ctx.results, ctx.tiny
    log("1. training step comparison (tiny model)")
    dims = model_dims(base)
    batch = make_batch(dims.vocab_size)
    trainers, samples, mem = train_compare(
        ORDER, base, batch, PREFIX, settings.rounds, settings.warmup, settings.inner
    )
    results.samples["tiny"], results.memory["tiny"] = samples, mem
    full_total = mem.get("full", {}).get("total")
    rows = [
        [
            VARIANTS[name][0],
            ms(statistics.median(samples[name])),
            f"{trainer.trainable:,}",
            *memory_cells(mem[name], full_total),
        ]
        for name, trainer in trainers.items()
    ]
    ctx.report.add(
        "## 1. Training step: prefixlab vs PEFT vs LoRA vs full fine-tuning",
        f"Model: {results.sources['tiny']}; {describe(base)}. Batch {BATCH} x {SEQ} tokens, "
        f"P={PREFIX}, MLP hidden {MLP_HIDDEN}, LoRA rank {LORA_RANK}, eager attention (the "
        "lab's default) unless named. Step = forward + backward + AdamW step + zero_grad. "
        f"{settings.rounds} interleaved rounds of {settings.inner} steps after "
        f"{settings.warmup} warmup rounds. prefixlab variants (LoRA and full fine-tuning "
        "included) go through `AdaptedModel` and its loss; PEFT variants through PEFT and "
        "transformers' loss.",
        "Memory columns: *training memory beyond the frozen weights* = tensors saved for "
        "backward during one step (`saved_tensors_hooks`, each storage once, weights "
        "excluded) + gradient and AdamW state (trainable x 3 x 4 bytes). Not process RSS "
        "(section 5 has peak RSS at GPT-2-small dimensions).",
        table(["variant", "step ms (median)", "trainable", *MEMORY_HEADERS], rows),
        table(
            ["step-time ratio", "median [IQR] of per-round ratios"],
            ratio_rows(results, "tiny", samples, RATIOS),
        ),
    )

    log("   profiling prefixlab vs PEFT, prefix vs full fine-tuning")
    chunks = [
        "### Why prefixlab's step differs from PEFT's (torch.profiler)",
        "Operators whose call counts differ between a prefixlab and a PEFT training step, "
        "largest self-time difference first (per step; times are noisy on a shared machine, "
        f"the counts are exact). Shapes containing the vocabulary size ({dims.vocab_size}) "
        "are logits-sized.",
    ]
    chunks += profile_chunks(trainers, (("prefix", "peft-prefix"), ("prompt", "peft-prompt")))[1:]
    pair = {name: trainers[name] for name in ("prefix", "full")}
    results.phases["tiny"] = phase_breakdown(pair, max(3, settings.rounds // 2))
    chunks += ["### Where a step's time goes: prefix tuning vs full fine-tuning", PHASE_TEXT]
    chunks.append(phase_table(results.phases["tiny"]))
    ctx.report.add(*chunks)


def goals(results: Results) -> list[Goal]:
    """prefixlab vs PEFT (note A) and prefix tuning vs full fine-tuning (note B), per model."""
    found = []
    for model in ("tiny", "gpt2-small"):
        pairs = [(a, PEERS[a], GOAL_VS_PEFT, "A") for a in ("prefix", "prefix+mlp", "prompt")]
        mem = results.memory.get(model, {})
        note = "B"
        if "prefix" in mem and "full" in mem:
            note += f"; memory {100 * mem['prefix']['total'] / mem['full']['total']:.0f}% of full"
        pairs.append(("prefix", "full", GOAL_VS_FULL, note))
        for a, b, goal, note in pairs:
            r = results.ratios.get((model, a, b))
            if r is not None:
                found.append(Goal(f"{model}: {VARIANTS[a][0]} / {VARIANTS[b][0]}", r, goal, note))
    return found


def ratio_list(results: Results, a: str, b: str) -> str:
    """ "tiny 0.98, mid 1.01": the median ratio a / b at each model size measured."""
    found = [
        f"{m} {results.ratios[(m, a, b)].median:.2f}"
        for m in ("tiny", "mid", "gpt2-small")
        if (m, a, b) in results.ratios
    ]
    return ", ".join(found) or "n/a"


def notes(results: Results) -> list[str]:
    a_text = (
        "**A. prefixlab vs PEFT.** Step-time ratios prefixlab / PEFT: prefix "
        f"{ratio_list(results, 'prefix', 'peft-prefix')}; prompt "
        f"{ratio_list(results, 'prompt', 'peft-prompt')}; prefix + MLP "
        f"{ratio_list(results, 'prefix+mlp', 'peft-prefix+mlp')}. The profile tables in "
        "section 1 list every operator whose call count differs between the two steps."
    )
    b_text = "**B. Prefix tuning vs full fine-tuning.**"
    for model, phases in results.phases.items():
        if {"prefix", "full"} <= set(phases):
            p, f = phases["prefix"], phases["full"]
            b_text += (
                f" {model}: forward {ms(p['forward'])} vs {ms(f['forward'])} ms, backward "
                f"{ms(p['backward'])} vs {ms(f['backward'])} ms, AdamW "
                f"{ms(p['AdamW step'])} vs {ms(f['AdamW step'])} ms; matrix multiplications "
                f"are {100 * f['matmul share']:.0f}% of the self time of a full fine-tuning "
                "step."
            )
    b_text += f" Step ratio prefix / full by model size: {ratio_list(results, 'prefix', 'full')}."
    for model, mem in results.memory.items():
        if "prefix" in mem and "full" in mem:
            p, f = mem["prefix"], mem["full"]
            b_text += (
                f" Memory, {model}: saved for backward {mib(p['activations'])} vs "
                f"{mib(f['activations'])} MiB, gradient + AdamW state {mib(p['state'])} vs "
                f"{mib(f['state'])} MiB."
            )
    return [a_text, b_text]
