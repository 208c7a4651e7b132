"""benchmarks/harness.py: timing, paired ratios, verdicts, saved tensors and RSS readings.

Fake clocks, tiny callables and fake /proc files: nothing here depends on machine speed.
"""

from __future__ import annotations

import gc
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository: `benchmarks`

from benchmarks import harness  # noqa: E402
from benchmarks.harness import Ratio, paired_ratio, verdict  # noqa: E402
from benchmarks.report import mib, ms, table  # noqa: E402


class FakeClock:
    """A clock that only moves when a timed call says how long it took."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_interleave_alternates_the_order_and_measures_each_variant_with_its_own_cost():
    clock, order = FakeClock(), []

    def costs(name, seconds):
        def call():
            order.append(name)
            clock.now += seconds

        return call

    calls = {"a": costs("a", 0.5), "b": costs("b", 2.0), "c": costs("c", 1.0)}
    samples = harness.interleave(calls, rounds=4, warmup=1, inner=3, clock=clock)
    assert samples == {"a": [0.5] * 4, "b": [2.0] * 4, "c": [1.0] * 4}
    rounds = [order[i : i + 9 : 3] for i in range(3, len(order), 9)]  # one name per sample
    assert order[:3] == ["a", "b", "c"]  # warmup: one call each
    assert rounds == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]
    assert len(order) == 3 + 4 * 3 * 3


def test_interleave_turns_garbage_collection_off_only_while_timing():
    seen = []
    samples = harness.interleave(
        {"x": lambda: seen.append(gc.isenabled())}, rounds=2, warmup=1, inner=1
    )
    assert seen == [True, False, False]
    assert gc.isenabled()
    assert len(samples["x"]) == 2


def test_interleave_turns_garbage_collection_back_on_when_a_call_fails():
    def boom():
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        harness.interleave({"x": boom}, rounds=1, warmup=0, inner=1)
    assert gc.isenabled()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rounds": 0, "warmup": 0, "inner": 1}, "rounds must be an int >= 1"),
        ({"rounds": 1, "warmup": -1, "inner": 1}, "warmup must be an int >= 0"),
        ({"rounds": 1, "warmup": 0, "inner": 1.5}, "inner must be an int >= 1"),
        ({"rounds": True, "warmup": 0, "inner": 1}, "rounds must be an int"),
    ],
)
def test_interleave_checks_its_counts(kwargs, message):
    with pytest.raises(ValueError, match=message):
        harness.interleave({"x": lambda: None}, **kwargs)
    with pytest.raises(ValueError, match="at least one variant"):
        harness.interleave({}, rounds=1, warmup=0, inner=1)


def test_paired_ratio_is_the_median_and_quartiles_of_per_round_ratios():
    # per-round ratios 1, 2, 3, 4, 5 (the pairing matters: sorted sides would give other ones)
    a = [3.0, 1.0, 10.0, 4.0, 2.0]
    b = [1.0, 1.0, 2.0, 1.0, 1.0]
    assert paired_ratio(a, b) == Ratio(median=3.0, q1=2.0, q3=4.0)
    assert str(paired_ratio(a, b)) == "3.00 [2.00-4.00]"
    assert paired_ratio([2.0, 6.0], [1.0, 2.0]) == Ratio(2.5, 2.25, 2.75)
    assert paired_ratio([3.0], [2.0]) == Ratio(1.5, 1.5, 1.5)


def test_paired_ratio_cancels_a_load_that_slows_both_sides_of_a_round():
    load = [1.0, 3.0, 1.5, 10.0]  # a shared machine: each round is slower or faster
    a = [0.9 * x for x in load]
    b = list(load)
    r = paired_ratio(a, b)
    assert r.q1 == r.median == r.q3 == pytest.approx(0.9)


def test_paired_ratio_rejects_unpaired_samples():
    with pytest.raises(ValueError, match="equally long"):
        paired_ratio([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="non-empty"):
        paired_ratio([], [])


@pytest.mark.parametrize(
    "ratio, expected",
    [
        (Ratio(0.90, 0.85, 0.95), "met"),
        (Ratio(1.20, 1.10, 1.30), "**missed**"),
        (Ratio(0.98, 0.90, 1.05), "met (within noise)"),
        (Ratio(1.02, 0.95, 1.10), "**missed** (within noise)"),
        (Ratio(1.00, 0.95, 1.00), "met"),  # the goal itself counts as met
    ],
)
def test_verdict_reads_the_quartiles_against_the_goal(ratio, expected):
    assert verdict(ratio, 1.0) == expected


def test_saved_tensor_bytes_counts_what_autograd_keeps_except_the_weights():
    weight = torch.nn.Parameter(torch.ones(4, 8))  # 128 bytes, excluded
    x = torch.ones(3, 4, requires_grad=True)  # 48 bytes, saved by the matmul

    def step():
        (x @ weight).sum().backward()

    assert harness.saved_tensor_bytes(step, exclude=[weight]) == 3 * 4 * 4
    assert harness.saved_tensor_bytes(step) == 3 * 4 * 4 + 4 * 8 * 4
    with torch.no_grad():
        assert harness.saved_tensor_bytes(lambda: x @ weight) == 0


def test_saved_tensor_bytes_counts_a_shared_storage_once():
    x = torch.ones(16, requires_grad=True)
    base = x * 1.0  # 64 bytes; both views below keep this one storage alive

    def step():
        (base[:8] * base[8:]).sum().backward()

    assert harness.saved_tensor_bytes(step, exclude=[x]) == 16 * 4


def write_status(path: Path, rss: int, hwm: int) -> None:
    path.write_text(f"Name:\tpython\nVmHWM:\t{hwm:>8} kB\nVmRSS:\t{rss:>8} kB\nThreads:\t1\n")


def test_proc_status_kib_reads_one_field(tmp_path):
    status = tmp_path / "status"
    write_status(status, rss=1234, hwm=5678)
    assert harness.proc_status_kib("VmRSS", status) == 1234
    assert harness.proc_status_kib("VmHWM", status) == 5678
    assert harness.proc_status_kib("VmSwap", status) is None
    assert harness.proc_status_kib("VmRSS", tmp_path / "missing") is None


def test_reset_peak_rss_writes_5_to_clear_refs(tmp_path):
    clear_refs = tmp_path / "clear_refs"
    assert harness.reset_peak_rss(clear_refs)
    assert clear_refs.read_text() == "5"
    assert not harness.reset_peak_rss(tmp_path / "no" / "such" / "file")


def test_rss_while_reads_rss_before_and_the_peak_after_a_reset(tmp_path):
    status, clear_refs = tmp_path / "status", tmp_path / "clear_refs"
    write_status(status, rss=1000, hwm=9000)  # an old peak from before setup

    def run():  # the kernel's view after the reset and the training steps
        assert clear_refs.read_text() == "5", "the peak mark must be reset before the run"
        write_status(status, rss=1200, hwm=1500)

    found = harness.rss_while(run, status=status, clear_refs=clear_refs)
    assert found == {"setup_kib": 1000, "peak_kib": 1500, "peak_reset": True}


def test_rss_while_falls_back_to_ru_maxrss_without_proc(tmp_path):
    calls = []
    found = harness.rss_while(
        lambda: calls.append(1), status=tmp_path / "none", clear_refs=tmp_path / "x" / "y"
    )
    assert calls == [1]
    assert found["setup_kib"] is None and found["peak_reset"] is False
    assert isinstance(found["peak_kib"], int) and found["peak_kib"] > 0


def test_profile_diff_lists_the_operators_only_one_side_runs():
    x = torch.ones(8, 8)
    rows = harness.profile_diff(lambda: x + x, lambda: (x + x).mm(x), steps=2)
    ops = {row[0]: row for row in rows}
    assert "aten::mm" in ops
    assert ops["aten::mm"][2:4] == (0, 1.0)  # calls per step: a never, b once
    assert "aten::add" not in ops  # same count on both sides


def test_markdown_formats():
    assert ms(0.0123) == "12.3" and ms(0.25) == "250"
    assert mib(2**20) == "1.00" and mib(20 * 2**20) == "20.0" and mib(200 * 2**20) == "200"
    assert table(["a", "b"], [[1, 2]]) == "| a | b |\n|---|---|\n| 1 | 2 |"


# ------------------------------------------------------------------------- generated prose


def fake_results(scale: float):
    """Results as a run would leave them, every ratio and time multiplied by `scale`."""
    from benchmarks.context import Results

    def r(x):
        return Ratio(x * scale, 0.95 * x * scale, 1.05 * x * scale)

    mem = {"activations": 2**20, "state": 3 * 2**20, "total": 4 * 2**20}
    full = {"activations": 2 * 2**20, "state": 6 * 2**20, "total": 8 * 2**20}
    return Results(
        ratios={
            ("tiny", "prefix", "peft-prefix"): r(0.97),
            ("tiny", "prompt", "peft-prompt"): r(1.01),
            ("tiny", "prefix+mlp", "peft-prefix+mlp"): r(0.99),
            ("tiny", "prefix", "full"): r(0.7),
        },
        memory={"tiny": {"prefix": mem, "full": full}},
        phases={
            "tiny": {
                v: {
                    "forward": 0.02 * scale,
                    "backward": 0.03,
                    "AdamW step": 0.001,
                    "matmul share": 0.5,
                }
                for v in ("prefix", "full")
            }
        },
        attention={"tiny": {"recorder / eager": r(1.1), "eager / sdpa": r(1.05)}},
        generate={("tiny", 1): r(1.02)},
        p_sweep={
            ("tiny", p, v): t * scale
            for p, v, t in [
                (1, "prefix", 0.05),
                (192, "prefix", 0.07),
                (1, "prompt", 0.05),
                (192, "prompt", 0.25),
            ]
        },
    )


def test_goals_and_notes_come_from_the_results_alone():
    from benchmarks.sections import SECTIONS

    def written(results):
        goals = [g.row() for s in SECTIONS if hasattr(s, "goals") for g in s.goals(results)]
        notes = [n for s in SECTIONS if hasattr(s, "notes") for n in s.notes(results)]
        return goals, notes

    goals, notes = written(fake_results(1.0))
    by_what = {row[0]: row for row in goals}
    assert by_what["tiny: prefixlab prefix / PEFT prefix"][1:4] == [
        "0.97 [0.92-1.02]",
        "<= 1.0",
        "met (within noise)",
    ]
    assert by_what["tiny: prefixlab prefix / full fine-tuning"][3:] == [
        "met",
        "B; memory 50% of full",
    ]
    assert by_what["tiny: record_attention / eager forward"][3] == "met"
    assert [n[:6] for n in notes] == ["**A. p", "**B. P", "**C. A", "**D. G", "**E. P"]
    assert "prefix tiny 0.97" in notes[0] and "(3.5x)" not in notes[4] and "(5.0x)" in notes[4]

    slower_goals, slower_notes = written(fake_results(2.0))  # other numbers, other words
    assert {row[0] for row in slower_goals} == set(by_what)
    assert all(a != b for a, b in zip(notes, slower_notes, strict=True))
    verdicts = {row[0]: row[3] for row in slower_goals}
    assert verdicts["tiny: prefixlab prefix / PEFT prefix"] == "**missed**"


def test_a_section_without_results_writes_no_goals_and_no_numbers():
    from benchmarks.context import Results
    from benchmarks.sections import attention, inference, prefix_length, training

    empty = Results()
    assert training.goals(empty) == attention.goals(empty) == inference.goals(empty) == []
    assert prefix_length.notes(empty) == []
    assert "n/a" in training.notes(empty)[0]


def test_serving_section_counts_bank_and_copies_memory():
    from tiny_models import make_gpt2

    from benchmarks.sections.serving import parameter_bytes, serve_users
    from prefixlab.loading import model_dims

    base = make_gpt2()
    dims = model_dims(base)
    prefix_bytes = 10 * dims.n_layers * 2 * dims.kv_dim * 4  # P=10, float32
    small = serve_users(base, 3, rows=4, seq=5, rounds=1, warmup=0, measured_copies=5)
    large = serve_users(base, 20, rows=4, seq=5, rounds=1, warmup=0, measured_copies=5)
    assert small["copies_measured"] and not large["copies_measured"]
    for found, n in ((small, 3), (large, 20)):
        assert found["bank_bytes"] == parameter_bytes(base) + n * prefix_bytes
        assert found["copies_bytes"] == n * parameter_bytes(base)
        assert 1 <= found["distinct"] <= min(n, 4)
        assert found["bank_rows_per_s"] > 0 and found["copies_rows_per_s"] > 0
        speedup = found["speedup"]
        assert 0 < speedup["q1"] <= speedup["median"] <= speedup["q3"]


# ------------------------------------------------------------ RESULTS.md, one section at a time


def test_select_sections_names_sections_and_keeps_the_goal_sections_together():
    from benchmarks.bench import select_sections
    from benchmarks.sections import GOAL_SECTIONS, SECTIONS, memory, serving

    assert select_sections(None) == list(SECTIONS)
    assert select_sections("serving") == [serving]
    assert select_sections(" serving , memory") == [memory, serving]  # report order
    goal_names = ",".join(s.__name__.rsplit(".", 1)[-1] for s in GOAL_SECTIONS)
    assert select_sections(goal_names) == list(GOAL_SECTIONS)
    with pytest.raises(ValueError, match="name one or more of training, attention"):
        select_sections("servng")
    with pytest.raises(ValueError, match="name one or more"):
        select_sections(",")
    with pytest.raises(ValueError, match="goals table is computed from sections training"):
        select_sections("training,serving")


def test_bench_rejects_bad_sections_with_a_usage_error(capsys):
    from benchmarks.bench import parse_args

    with pytest.raises(SystemExit):
        parse_args(["--sections", "attention"])
    assert "name all of them (or none)" in capsys.readouterr().err


def test_results_file_round_trips_and_updates_only_the_named_sections():
    from benchmarks.results_file import ResultsFile, parse, update

    old = ResultsFile(
        head="# title\n\nold head",
        measured={"a": ["day 1", "c1"], "b": ["day 1", "c1"]},
        goals="## Goals\n\n| x |\n|---|\n| 1 |",
        sections={"a": "## 1. A\n\n| t |\n|---|\n| old a |", "b": "## 2. B\n\nold b"},
    )
    text = old.render(["a", "b", "c"])
    assert parse(text) == old
    assert text.index("## 1. A") < text.index("## 2. B")

    new = ResultsFile(head="# title\n\nnew head", measured={"c": ["day 2", "c2"]})
    new.sections["c"] = "## 3. C\n\nnew c"
    merged = update(parse(text), new).render(["a", "c", "b"])  # c goes between a and b
    back = parse(merged)
    assert back.sections == {**old.sections, "c": "## 3. C\n\nnew c"}
    assert back.goals == old.goals  # the run measured no goal section: kept as it was
    assert back.measured == {"a": ["day 1", "c1"], "b": ["day 1", "c1"], "c": ["day 2", "c2"]}
    assert back.head.strip() == "# title\n\nnew head"
    assert merged.index("## 1. A") < merged.index("## 3. C") < merged.index("## 2. B")

    again = ResultsFile(head="h", measured={"a": ["day 3", "c3"]}, sections={"a": "new a"})
    assert parse(update(back, again).render(["a", "c", "b"])).sections["a"] == "new a"


def test_results_file_refuses_a_file_without_part_marks():
    from benchmarks.results_file import parse

    with pytest.raises(ValueError, match="run the full benchmark once"):
        parse("# prefixlab benchmarks\n\n## Goals\n\n## 1. Training step\n")


def test_a_sections_run_rewrites_its_part_and_its_json_and_keeps_the_rest(tmp_path, monkeypatch):
    import json
    import types

    from benchmarks import bench

    measured = []

    def fake_section(name, text, goals=False):
        def run(ctx):
            measured.append(name)
            ctx.report.add(f"## {name}\n\n{text} {len(measured)}")

        section = types.ModuleType(f"benchmarks.sections.{name}")
        section.run = run
        if goals:
            section.goals = lambda results: []
            section.notes = lambda results: [f"note from run {len(measured)}"]
        return section

    one, two = fake_section("one", "numbers of run", goals=True), fake_section("two", "rows")
    two.data = lambda results: {"rows": [len(measured)]}
    monkeypatch.setattr(bench, "SECTIONS", (one, two))
    monkeypatch.setattr(bench, "GOAL_SECTIONS", (one,))
    monkeypatch.setattr(bench, "NAMES", ("one", "two"))
    monkeypatch.setattr(bench, "build_model", lambda name: (torch.nn.Linear(1, 1), "fake"))
    machine = [["CPU", "fake"], ["cores", "2"], ["memory", "1 GiB"], ["python", "3"]]
    machine += [["prefixlab commit", "abc1234"], ["torch threads", "1"]]
    machine += [["torch / transformers / peft", "v / v / v"]]
    monkeypatch.setattr(bench, "machine_description", lambda threads, repo: machine)
    out = tmp_path / "RESULTS.md"

    bench.main(["--out", str(out)])  # the full run: every part
    full = out.read_text()
    assert measured == ["one", "two"]
    assert "numbers of run 1" in full and "rows 2" in full and "note from run 2" in full
    assert json.loads((tmp_path / "two.json").read_text())["rows"] == [2]

    bench.main(["--out", str(out), "--sections", "two"])  # one section
    partial = out.read_text()
    assert measured == ["one", "two", "two"]
    assert "rows 3" in partial and "rows 2" not in partial
    assert "numbers of run 1" in partial and "note from run 2" in partial  # kept as they were
    assert "--sections two" in partial
    data = json.loads((tmp_path / "two.json").read_text())
    assert data["rows"] == [3] and data["prefixlab commit"] == "abc1234"
    assert partial.index("## one") < partial.index("## two")
