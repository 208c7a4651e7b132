"""Section 6: serving N users' prefixes from one frozen model vs N fine-tuned copies.

For N = 1, 10, 100, 1,000 users, a batch of BATCH x SEQ rows whose users are drawn at random
from the N is scored (a no-grad forward) two ways:

- bank: one `AdapterBank` of N P=10 prefixes on the one frozen model, one forward with
  `task_ids` (the bank stacks only the prefixes the batch uses);
- copies: one full model per user (a stand-in for N fine-tuned copies: same size, same
  cost), the batch split by user, one forward per distinct user.

Memory is the bytes of parameters held: the base plus the bank's prefixes, vs N models. The
copies are measured (built and run) up to `MEASURED_COPIES` users; beyond that memory is N
times one model and time is computed from the same batch's group sizes: the sum, over the
distinct users in the batch, of the measured time of one model scoring that many rows. The
computed time leaves out what N separate models would add on a real machine (their weights
do not fit in cache, or in memory at all), so it flatters the copies.
"""

from __future__ import annotations

import statistics

import torch
from torch import nn

from benchmarks.context import Run
from benchmarks.harness import interleave, paired_ratio
from benchmarks.report import log, mib, table
from benchmarks.variants import BATCH, PREFIX, SEQ, describe, make_batch
from prefixlab import AdaptedModel, AdapterBank, PrefixTuning
from prefixlab.loading import model_dims

USERS = (1, 10, 100, 1000)
MEASURED_COPIES = 10  # above this many users the copies are computed, not built


def parameter_bytes(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in module.parameters())


def user_bank(base: nn.Module, n_users: int, prefix_length: int = PREFIX) -> AdapterBank:
    """N random prefixes (as trained ones would be: the same shapes), one per user."""
    dims = model_dims(base)
    return AdapterBank(
        {f"user{k}": PrefixTuning(dims, prefix_length, seed=k) for k in range(n_users)}
    )


def serve_users(
    base: nn.Module,
    n_users: int,
    *,
    rows: int = BATCH,
    seq: int = SEQ,
    rounds: int = 5,
    warmup: int = 1,
    measured_copies: int = MEASURED_COPIES,
    seed: int = 0,
) -> dict:
    """Throughput (rows/s, median over rounds) and parameter memory of both ways.

    Returns a dict: users, distinct (users in the batch), bank_rows_per_s, bank_bytes,
    copies_rows_per_s, copies_bytes, copies_measured (False = computed), and speedup: the
    copies' time / the bank's time per round, {"median", "q1", "q3"} (computed copies: the
    round's sum of group times).
    """
    dims = model_dims(base)
    batch = make_batch(dims.vocab_size, rows, seq, seed=seed)
    g = torch.Generator().manual_seed(seed)
    users = torch.randint(n_users, (rows,), generator=g)  # [rows]
    bank = user_bank(base, n_users)
    served = AdaptedModel(base, bank)
    groups = [users == u for u in users.unique().tolist()]
    model_bytes = parameter_bytes(base)

    @torch.no_grad()
    def bank_call():
        served(batch.ids, batch.mask, task_ids=users)

    calls = {"bank": bank_call}
    measured = n_users <= measured_copies
    if measured:  # every user's copy is built and held; the batch uses some of them
        copies = [_copy_of(base) for _ in range(n_users)]
        held = sum(parameter_bytes(c) for c in copies)

        @torch.no_grad()
        def copies_call():
            for u, rows_of_u in zip(users.unique().tolist(), groups, strict=True):
                copies[u](input_ids=batch.ids[rows_of_u], attention_mask=batch.mask[rows_of_u])

        calls["copies"] = copies_call
    else:
        held = model_bytes * n_users
        sizes = sorted({int(m.sum()) for m in groups})

        def size_call(k):
            @torch.no_grad()
            def call():
                base(input_ids=batch.ids[:k], attention_mask=batch.mask[:k])

            return call

        calls.update({f"rows{k}": size_call(k) for k in sizes})
    samples = interleave(calls, rounds=rounds, warmup=warmup, inner=1)
    bank_time = statistics.median(samples["bank"])
    if measured:
        per_round = samples["copies"]
    else:  # each round: the time of one model on every user group's rows, summed
        per_round = [sum(samples[f"rows{int(m.sum())}"][r] for m in groups) for r in range(rounds)]
    copies_time = statistics.median(per_round)
    speedup = paired_ratio(per_round, samples["bank"])
    return {
        "users": n_users,
        "distinct": len(groups),
        "bank_rows_per_s": rows / bank_time,
        "bank_bytes": model_bytes + parameter_bytes(bank),
        "copies_rows_per_s": rows / copies_time,
        "copies_bytes": held,
        "copies_measured": measured,
        "speedup": {"median": speedup.median, "q1": speedup.q1, "q3": speedup.q3},
    }


def _copy_of(base: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(base)


def data(results) -> dict:
    """The serving rows for other programs (benchmarks/serving.json, read by notebook 09)."""
    return {
        "model": results.sources.get("tiny", "tiny model"),
        "batch_rows": BATCH,
        "seq": SEQ,
        "prefix_length": PREFIX,
        "measured_copies_up_to": MEASURED_COPIES,
        "rows": results.serving,
    }


def run(ctx: Run) -> None:
    s = ctx.settings
    log("6. per-user prefixes vs fine-tuned copies")
    found = [serve_users(ctx.tiny, n, rounds=s.rounds, warmup=s.warmup) for n in USERS]
    ctx.results.serving = found
    rows = []
    for r in found:
        how = "measured" if r["copies_measured"] else "computed"
        rows.append(
            [
                f"{r['users']:,}",
                str(r["distinct"]),
                f"{r['bank_rows_per_s']:.0f}",
                f"{r['copies_rows_per_s']:.0f} ({how})",
                "{median:.2f} [{q1:.2f}-{q3:.2f}]".format(**r["speedup"]),
                mib(r["bank_bytes"]),
                f"{mib(r['copies_bytes'])} ({how})",
                f"{r['copies_bytes'] / r['bank_bytes']:.1f}x",
            ]
        )
    ctx.report.add(
        "## 6. Serving per-user prefixes",
        f"{ctx.results.sources.get('tiny', 'tiny model')}; {describe(ctx.tiny)}. A batch of "
        f"{BATCH} x {SEQ} rows, each from a user drawn at random from N, scored in one "
        f"no-grad forward through one `AdapterBank` of N P={PREFIX} prefixes, vs one model "
        "copy per user (one forward per distinct user in the batch). Memory: parameters held "
        "(base + prefixes, vs N models). Copies are built and timed up to "
        f"{MEASURED_COPIES} users; beyond, memory is N models and time the sum of one "
        "model's measured time per user group of the same batch (which leaves out the cache "
        f"and memory pressure of N real models). {s.rounds} interleaved rounds; rows/s from "
        "the median times, the throughput ratio from the per-round ratios (copies' time / "
        "bank's time in the same round). A batch of "
        f"{BATCH} rows holds at most {BATCH} users, so beyond N = {BATCH} only the bank's "
        "size and the copies' memory grow.",
        table(
            [
                "users N",
                "distinct in batch",
                "bank rows/s",
                "copies rows/s",
                "bank / copies throughput, median [IQR]",
                "bank MiB",
                "copies MiB",
                "copies / bank memory",
            ],
            rows,
        ),  # fmt: skip
    )
