"""Side-by-side benchmarks of prefixlab against PEFT, LoRA and full fine-tuning, on a CPU.

    python benchmarks/bench.py                          # full run, ~10-15 min on a 2-core CPU
    python benchmarks/bench.py --quick                  # smoke run, ~1-2 min
    python benchmarks/bench.py --threads 1 --out benchmarks/RESULTS.md

Not part of the test suite. Everything runs offline: the embedded tiny model (or, until it is
built, a random GPT-2 of the same size) and random-initialized GPT-2 configs up to GPT-2-small
dimensions.

Method (benchmarks/README.md says more):

- Compared variants share one frozen model's weights, one batch (8 x 64 tokens), one prefix
  length (P=10) and one thread count.
- They run interleaved, round after round (A, B, C, then C, B, A, ...), after warmup rounds.
  A sample is the mean of `inner` consecutive calls. Tables give the median over rounds; a
  ratio is the median of the per-round ratios (paired: a slow spell on a shared machine slows
  both sides of a ratio alike), with the interquartile range of those ratios.
- A training step is forward + backward + AdamW step + zero_grad, with each library's own
  loss (labels passed to its forward). All models stay in eval mode (no dropout), so every
  variant computes the same network.
- Training memory beyond the frozen weights = bytes of the tensors autograd saves for backward
  during one step (`torch.autograd.graph.saved_tensors_hooks`, each storage counted once,
  parameter storages excluded) + gradient and AdamW state (trainable parameters x 3 x element
  size). The full run also reports the peak RSS of a fresh process per variant at GPT-2-small
  dimensions.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import gc
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing

from prefixlab import AdaptedModel, AdapterBank, PrefixTuning, PromptTuning  # noqa: E402
from prefixlab.loading import freeze, model_dims  # noqa: E402

BATCH, SEQ, PREFIX = 8, 64, 10
MLP_HIDDEN, LORA_RANK, LR = 512, 8, 1e-4
PROMPT_LEN, NEW_TOKENS = 32, 32  # generation: prompt tokens and new tokens per row
N_TASKS = 4  # adapters in the mixed-task bank

GOAL_VS_PEFT = 1.0  # prefixlab step time / PEFT step time
GOAL_VS_FULL = 0.75  # prefix tuning step time / full fine-tuning step time (25% faster)
GOAL_RECORDER = 1.3  # forward with record_attention / eager forward without it
GOAL_GENERATE = 1.10  # generation latency with a P=10 prefix / without

_SHARE_BASE = False  # in an RSS child process, variants use the base model instead of a copy


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# -- settings -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """How long each comparison runs. Two presets: `full` (the default) and `quick`."""

    quick: bool
    rounds: int  # timed rounds per comparison on small models
    warmup: int  # untimed rounds first
    inner: int  # calls per timed sample on small models
    big_rounds: int  # timed rounds at GPT-2-small dimensions (one call per sample)
    p_values: tuple[int, ...]  # prefix lengths for the scaling sweep on the tiny model
    big_p_values: tuple[int, ...]  # prefix lengths at GPT-2-small dimensions
    models: tuple[str, ...]  # model sizes for the size sweep
    rss: bool  # peak RSS of a fresh process per variant (GPT-2-small dimensions)
    new_tokens: int  # generated tokens per row

    @classmethod
    def full(cls) -> Settings:
        return cls(
            quick=False,
            rounds=15,
            warmup=2,
            inner=3,
            big_rounds=8,
            p_values=(1, 10, 50, 100, 200),
            big_p_values=(1, 200),
            models=("tiny", "mid", "gpt2-small"),
            rss=True,
            new_tokens=NEW_TOKENS,
        )

    @classmethod
    def quick_preset(cls) -> Settings:
        return cls(
            quick=True,
            rounds=5,
            warmup=1,
            inner=2,
            big_rounds=2,
            p_values=(1, 10, 200),
            big_p_values=(),
            models=("tiny", "mid"),
            rss=False,
            new_tokens=16,
        )


# -- models and inputs ----------------------------------------------------------------------

# name -> (layers, width, heads, vocab, positions) of a random-initialized GPT-2
RANDOM_GPT2 = {
    "mid": (6, 256, 8, 8192, 512),
    "gpt2-small": (12, 768, 12, 50257, 1024),
}


def build_model(name: str, attn: str = "eager") -> tuple[nn.Module, str]:
    """A frozen causal LM in eval mode, and a one-line description of where it came from."""
    if name == "tiny":
        from prefixlab import load_model

        model, _ = load_model("tiny", attn_implementation=attn)
        return model, "embedded tiny model (`load_model('tiny')`, data/tiny-gpt2)"
    from transformers import GPT2Config, GPT2LMHeadModel

    layers, width, heads, vocab, positions = RANDOM_GPT2[name]
    config = GPT2Config(
        n_layer=layers,
        n_embd=width,
        n_head=heads,
        vocab_size=vocab,
        n_positions=positions,
        bos_token_id=0,
        eos_token_id=0,
        attn_implementation=attn,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = GPT2LMHeadModel(config)
    return freeze(model), f"random GPT-2, {layers} layers x {width} wide, {heads} heads ({name})"


def describe(model: nn.Module) -> str:
    dims = model_dims(model)
    n = sum(p.numel() for p in model.parameters())
    return (
        f"{dims.n_layers} layers, d_model {dims.d_model}, {dims.n_heads} heads, vocab "
        f"{dims.vocab_size}, context {dims.n_positions}, {n / 1e6:.2f}M parameters"
    )


@dataclass
class Batch:
    ids: torch.Tensor  # [B, T]
    mask: torch.Tensor  # [B, T]
    labels: torch.Tensor  # [B, T]


def make_batch(vocab_size: int, batch: int = BATCH, seq: int = SEQ, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (batch, seq), generator=g)
    return Batch(ids, torch.ones_like(ids), ids.clone())


def private_copy(base: nn.Module) -> nn.Module:
    """Variants that change or train the model get their own copy of the same weights."""
    return base if _SHARE_BASE else copy.deepcopy(base)


# -- training variants ----------------------------------------------------------------------


@dataclass
class Trainer:
    """One way to train: a loss function and AdamW over its trainable parameters."""

    loss_fn: Callable[[], torch.Tensor]
    params: list[nn.Parameter]
    modules: list[nn.Module]  # whose parameters count as weights, not as training memory
    opt: torch.optim.Optimizer = field(init=False)

    def __post_init__(self):
        self.opt = torch.optim.AdamW(self.params, lr=LR)

    def step(self) -> None:
        self.loss_fn().backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)

    @property
    def trainable(self) -> int:
        return sum(p.numel() for p in self.params)


def _adapter(kind: str, model: nn.Module, P: int) -> nn.Module:
    if kind == "prompt":
        return PromptTuning(model, P)
    return PrefixTuning(model, P, reparam="mlp" if kind == "prefix+mlp" else "none")


def ours(kind: str, *, attn: str | None = None):
    def build(base: nn.Module, batch: Batch, P: int) -> Trainer:
        model = base
        if attn is not None:
            model = private_copy(base)
            model.set_attn_implementation(attn)
        adapter = _adapter(kind, model, P)
        adapted = AdaptedModel(model, adapter)

        def loss():
            return adapted(batch.ids, batch.mask, labels=batch.labels).loss

        return Trainer(loss, list(adapter.parameters()), [adapted])

    return build


def peft_variant(kind: str):
    def build(base: nn.Module, batch: Batch, P: int) -> Trainer:
        from peft import LoraConfig, PrefixTuningConfig, PromptTuningConfig, get_peft_model

        if kind == "prompt":
            config = PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=P)
        elif kind == "lora":
            config = LoraConfig(
                task_type="CAUSAL_LM",
                r=LORA_RANK,
                lora_alpha=2 * LORA_RANK,
                lora_dropout=0.0,
                target_modules=["c_attn"],
                fan_in_fan_out=True,  # GPT-2's Conv1D stores [in, out]
            )
        else:
            config = PrefixTuningConfig(
                task_type="CAUSAL_LM",
                num_virtual_tokens=P,
                prefix_projection=kind == "prefix+mlp",
                encoder_hidden_size=MLP_HIDDEN,
            )
        model = get_peft_model(private_copy(base), config).eval()

        def loss():
            return model(input_ids=batch.ids, attention_mask=batch.mask, labels=batch.labels).loss

        return Trainer(loss, [p for p in model.parameters() if p.requires_grad], [model])

    return build


def lora_variant(base: nn.Module, batch: Batch, P: int) -> Trainer:
    from prefixlab.lora import add_lora

    model = private_copy(base)
    params = add_lora(model, rank=LORA_RANK)
    adapted = AdaptedModel(model, None)

    def loss():
        return adapted(batch.ids, batch.mask, labels=batch.labels).loss

    return Trainer(loss, params, [adapted])


def full_variant(base: nn.Module, batch: Batch, P: int) -> Trainer:
    model = private_copy(base).eval()
    for p in model.parameters():
        p.requires_grad_(True)
    adapted = AdaptedModel(model, None)

    def loss():
        return adapted(batch.ids, batch.mask, labels=batch.labels).loss

    return Trainer(loss, list(model.parameters()), [adapted])


# name -> (label, builder). prefixlab variants go through AdaptedModel (the lab's glue and
# loss), PEFT variants through PEFT (its glue, transformers' loss).
VARIANTS: dict[str, tuple[str, Callable]] = {
    "prefix": ("prefixlab prefix", ours("prefix")),
    "peft-prefix": ("PEFT prefix", peft_variant("prefix")),
    "prefix+mlp": ("prefixlab prefix + MLP", ours("prefix+mlp")),
    "peft-prefix+mlp": ("PEFT prefix + MLP", peft_variant("prefix+mlp")),
    "prompt": ("prefixlab prompt", ours("prompt")),
    "peft-prompt": ("PEFT prompt", peft_variant("prompt")),
    "lora": (f"prefixlab LoRA r={LORA_RANK} (c_attn)", lora_variant),
    "peft-lora": (f"PEFT LoRA r={LORA_RANK} (c_attn)", peft_variant("lora")),
    "full": ("full fine-tuning", full_variant),
    "prefix-sdpa": ("prefixlab prefix, sdpa attention", ours("prefix", attn="sdpa")),
}


def build_trainers(names, base, batch, P) -> dict[str, Trainer]:
    """One Trainer per variant name."""
    return {name: VARIANTS[name][1](base, batch, P) for name in names}


# -- measuring ------------------------------------------------------------------------------


def interleave(calls: dict[str, Callable[[], object]], rounds: int, warmup: int, inner: int):
    """Seconds per call of each variant, one sample per round, variants interleaved.

    Odd rounds run the variants in reverse order, so a slow drift hits every variant alike.
    """
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
                start = time.perf_counter()
                for _ in range(inner):
                    calls[name]()
                samples[name].append((time.perf_counter() - start) / inner)
            gc.collect()
    finally:
        if gc_was_enabled:
            gc.enable()
    return samples


@dataclass(frozen=True)
class Ratio:
    median: float
    q1: float
    q3: float

    def __str__(self) -> str:
        return f"{self.median:.2f} [{self.q1:.2f}-{self.q3:.2f}]"


def paired_ratio(a: list[float], b: list[float]) -> Ratio:
    """Median and quartiles of the per-round ratios a_i / b_i."""
    ratios = sorted(x / y for x, y in zip(a, b, strict=True))
    if len(ratios) < 2:
        return Ratio(ratios[0], ratios[0], ratios[0])
    q1, _, q3 = statistics.quantiles(ratios, n=4, method="inclusive")
    return Ratio(statistics.median(ratios), q1, q3)


def verdict(ratio: Ratio, goal: float) -> str:
    if ratio.q3 <= goal:
        return "met"
    if ratio.q1 > goal:
        return "**missed**"
    return "met (within noise)" if ratio.median <= goal else "**missed** (within noise)"


def training_memory(trainer: Trainer) -> dict[str, int]:
    """Bytes beyond the frozen weights for one training step (see the module docstring)."""
    weights = {
        p.untyped_storage().data_ptr()
        for module in trainer.modules
        for p in list(module.parameters()) + list(module.buffers())
    }
    saved: dict[int, int] = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr and ptr not in weights:
            saved[ptr] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        loss = trainer.loss_fn()
        loss.backward()
    trainer.opt.zero_grad(set_to_none=True)
    element = trainer.params[0].element_size()
    state = 3 * trainer.trainable * element  # gradient + AdamW exp_avg + exp_avg_sq
    activations = sum(saved.values())
    return {"activations": activations, "state": state, "total": activations + state}


def profile_diff(a: Callable, b: Callable, steps: int = 2, top: int = 8):
    """Operators whose call counts differ between two training steps (torch.profiler).

    Returns rows (op, input shapes, calls a, calls b, self ms a, self ms b), per step, sorted
    by the difference in self CPU time.
    """
    from torch.profiler import ProfilerActivity, profile

    tables = []
    for fn in (a, b):
        fn()
        with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
            for _ in range(steps):
                fn()
        tables.append(
            {
                (e.key, str(e.input_shapes)): (e.count / steps, e.self_cpu_time_total / steps)
                for e in prof.key_averages(group_by_input_shape=True)
                if e.key.startswith("aten::")
            }
        )
    rows = []
    for key in set(tables[0]) | set(tables[1]):
        (ca, ta), (cb, tb) = tables[0].get(key, (0, 0.0)), tables[1].get(key, (0, 0.0))
        if ca != cb:
            rows.append((key[0], key[1], ca, cb, ta / 1e3, tb / 1e3))
    rows.sort(key=lambda r: -abs(r[4] - r[5]))
    return rows[:top]


def peak_rss_in_child(name: str, threads: int, timeout: float = 900) -> dict | None:
    """Peak RSS of a fresh process that builds the GPT-2-small-size model and trains 2 steps."""
    command = [sys.executable, str(Path(__file__).resolve()), "--rss-child", name]
    command += ["--threads", str(threads)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        log(f"RSS child {name} timed out")
        return None
    if done.returncode != 0:
        log(f"RSS child {name} failed:\n{done.stderr[-2000:]}")
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def _proc_status_kib(field_name: str) -> int | None:
    """A `VmRSS`/`VmHWM` line of /proc/self/status, in KiB (None where /proc is missing)."""
    with contextlib.suppress(OSError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process; False where not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def rss_child(name: str) -> None:
    """Runs in a fresh process: RSS after setup, then the peak while training two steps.

    Uses the kernel's VmRSS / VmHWM. Not `ru_maxrss`: Linux carries it across exec, so a
    child started from a large benchmark process would report the parent's peak.
    """
    global _SHARE_BASE
    _SHARE_BASE = True
    quiet_libraries()
    base, _ = build_model("gpt2-small")
    batch = make_batch(model_dims(base).vocab_size)
    trainer = VARIANTS[name][1](base, batch, PREFIX)
    with torch.no_grad():
        trainer.loss_fn()
    gc.collect()
    setup = _proc_status_kib("VmRSS")
    reset = _reset_peak_rss()
    for _ in range(2):  # the second step holds AdamW state, gradients and activations at once
        trainer.step()
    peak = _proc_status_kib("VmHWM")
    if setup is None or peak is None:  # no /proc: fall back to ru_maxrss (whole-life peak)
        setup, peak, reset = None, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, False
    print(json.dumps({"setup_kib": setup, "peak_kib": peak, "peak_reset": reset}))


# -- report ---------------------------------------------------------------------------------


def ms(seconds: float) -> str:
    value = seconds * 1e3
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def mib(n_bytes: float) -> str:
    value = n_bytes / 2**20
    return f"{value:.2f}" if value < 10 else f"{value:.1f}" if value < 100 else f"{value:.0f}"


def table(headers: list[str], rows: list[list]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


@dataclass
class Goal:
    what: str
    ratio: Ratio | None
    goal: float | None
    note: str = ""

    def row(self) -> list[str]:
        if self.ratio is None:
            return [self.what, "not measured", "-", "-", self.note]
        return [
            self.what,
            str(self.ratio),
            f"<= {self.goal}",
            verdict(self.ratio, self.goal),
            self.note,
        ]


@dataclass
class Report:
    sections: list[str] = field(default_factory=list)

    def add(self, *chunks: str) -> None:
        self.sections.append("\n\n".join(c for c in chunks if c))


def machine_description(threads: int) -> list[list[str]]:
    import peft
    import transformers

    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = "unknown"
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split("\n")[0].split()[1])
        memory = f"{kib / 2**20:.1f} GiB"
    commit = "unknown"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        git = ["git", "-C", str(REPO)]
        head = subprocess.run(
            [*git, "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        )
        dirty = subprocess.run([*git, "status", "--porcelain"], capture_output=True, text=True)
        commit = head.stdout.strip() + (" (plus uncommitted changes)" if dirty.stdout else "")
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    return [
        ["CPU", cpu],
        ["cores", f"{os.cpu_count()} logical, {len(os.sched_getaffinity(0))} usable"],
        ["memory", memory],
        ["torch threads", f"{threads} (`torch.set_num_threads`)"],
        ["load average at start (1/5/15 min)", load],
        ["python", platform.python_version()],
        [
            "torch / transformers / peft",
            f"{torch.__version__} / {transformers.__version__} / {peft.__version__}",
        ],
        ["prefixlab commit", commit],
        ["date (UTC)", datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M")],
    ]


# -- sections -------------------------------------------------------------------------------

TRAIN_ORDER = [
    "prefix",
    "peft-prefix",
    "prefix+mlp",
    "peft-prefix+mlp",
    "prompt",
    "peft-prompt",
    "lora",
    "peft-lora",
    "full",
    "prefix-sdpa",
]
# variant -> the variant it is compared with, in the ratio tables
PEERS = {
    "prefix": "peft-prefix",
    "prefix+mlp": "peft-prefix+mlp",
    "prompt": "peft-prompt",
    "lora": "peft-lora",
}
TRAIN_RATIOS = [(a, b) for a, b in PEERS.items()] + [
    ("prefix", "full"),
    ("prefix+mlp", "full"),
    ("prompt", "full"),
    ("lora", "full"),
    ("prefix", "lora"),
    ("prefix-sdpa", "prefix"),
]
SIZE_NAMES = ["prefix", "peft-prefix", "prompt", "peft-prompt"]
SIZE_NAMES += ["lora", "full"]
SIZE_RATIOS = [
    ("prefix", "peft-prefix"),
    ("prompt", "peft-prompt"),
    ("prefix", "full"),
    ("prompt", "full"),
    ("lora", "full"),
]
MATMULS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm")


@dataclass
class Results:
    """Everything the goals and notes are computed from."""

    sources: dict[str, str] = field(default_factory=dict)  # model -> where it came from
    samples: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # model -> variant
    memory: dict[str, dict[str, dict[str, int]]] = field(default_factory=dict)  # model -> variant
    ratios: dict[tuple[str, str, str], Ratio] = field(default_factory=dict)  # (model, a, b)
    attention: dict[str, dict[str, Ratio]] = field(default_factory=dict)  # model -> ratio name
    generate: dict[tuple[str, int], Ratio] = field(default_factory=dict)  # (model, batch)
    # model -> variant -> phase -> seconds (and the matmul share)
    phases: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)
    p_sweep: dict[tuple[str, int, str], float] = field(default_factory=dict)  # (model, P, v)


def train_compare(names, base, batch, P, rounds, warmup, inner):
    """Interleaved training steps of the named variants: trainers, samples, memory."""
    trainers = build_trainers(names, base, batch, P)
    mem = {name: training_memory(t) for name, t in trainers.items()}
    calls = {name: t.step for name, t in trainers.items()}
    samples = interleave(calls, rounds=rounds, warmup=warmup, inner=inner)
    return trainers, samples, mem


def memory_cells(m: dict[str, int], full_total: int | None) -> list[str]:
    share = f"{100 * m['total'] / full_total:.1f}%" if full_total else ""
    return [mib(m["activations"]), mib(m["state"]), mib(m["total"]), share]


MEMORY_HEADERS = ["saved for backward MiB", "grad + AdamW MiB", "training memory MiB", "of full FT"]


def ratio_rows(results: Results, model: str, samples, pairs) -> list[list[str]]:
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
    from torch.profiler import ProfilerActivity, profile

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
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            trainer.step()
        ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
        matmul = sum(e.self_cpu_time_total for e in ops if e.key in MATMULS)
        result[name] = {phase: statistics.median(v) for phase, v in times[name].items()}
        result[name]["matmul share"] = matmul / max(1, sum(e.self_cpu_time_total for e in ops))
    return result


def section_training(report: Report, results: Results, base, settings: Settings) -> None:
    log("1. training step comparison (tiny model)")
    dims = model_dims(base)
    batch = make_batch(dims.vocab_size)
    trainers, samples, mem = train_compare(
        TRAIN_ORDER, base, batch, PREFIX, settings.rounds, settings.warmup, settings.inner
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
    report.add(
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
            ratio_rows(results, "tiny", samples, TRAIN_RATIOS),
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
    phases = phase_breakdown(
        {name: trainers[name] for name in ("prefix", "full")}, max(3, settings.rounds // 2)
    )
    results.phases["tiny"] = phases
    chunks += ["### Where a step's time goes: prefix tuning vs full fine-tuning", PHASE_TEXT]
    chunks.append(phase_table(phases))
    report.add(*chunks)


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


PHASE_TEXT = (
    "Forward, backward and AdamW step timed separately (median of interleaved steps); matmul "
    "share = self CPU time of mm/addmm/bmm/baddbmm over that of all operators in one profiled "
    "step."
)


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


def section_attention(report, results, model_name, base, settings, rounds, inner) -> None:
    from prefixlab.hooks import record_attention

    log(f"2. attention recording ({model_name})")
    batch = make_batch(model_dims(base).vocab_size)
    prefix = PrefixTuning(base, PREFIX)
    eager = AdaptedModel(base, prefix)
    sdpa_model = copy.deepcopy(base)
    sdpa_model.set_attn_implementation("sdpa")
    sdpa = AdaptedModel(sdpa_model, prefix)
    recorded_bytes = []

    def run_eager():
        with torch.no_grad():
            eager(batch.ids, batch.mask)

    def run_recorded():
        with torch.no_grad(), record_attention(eager) as cache:
            eager(batch.ids, batch.mask)
        recorded_bytes.append(sum(t.nbytes for t in cache.values()))

    def run_sdpa():
        with torch.no_grad():
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


def section_inference(
    report, results, model_name, base, settings, rounds, batch_sizes, *, mixed: bool
) -> None:
    log(f"3. inference ({model_name})")
    dims = model_dims(base)
    prefix = PrefixTuning(base, PREFIX)
    with_prefix, without = AdaptedModel(base, prefix), AdaptedModel(base, None)
    gen = {"max_new_tokens": settings.new_tokens, "min_new_tokens": settings.new_tokens}
    gen["do_sample"] = False
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
    if not mixed:
        return

    # One AdapterBank pass over rows of several tasks vs the same rows, one batch per task.
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


def section_p_sweep(report, results, model_name, base, p_values, rounds, inner, names) -> None:
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


def section_sizes(report, results, settings, tiny, threads) -> None:
    """Section 5: the training comparison at growing sizes, then GPT-2-small extras and RSS."""
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
                SIZE_NAMES, base, batch, PREFIX, rounds, 1, 1 if big else settings.inner
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
            for name in SIZE_NAMES
            if name in samples
        ]
        for row in ratio_rows(results, model_name, samples, SIZE_RATIOS):
            size_ratio_rows.append([model_name, *row])
        if model_name == "gpt2-small":
            section_attention(extra, results, model_name, base, settings, 3, 1)
            section_inference(extra, results, model_name, base, settings, 3, (1,), mixed=False)
            if settings.big_p_values:
                names = ["prefix", "peft-prefix"]
                section_p_sweep(
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
            "Fewer rounds (3) than on the tiny model: each call takes seconds.",
        )
        report.sections += extra.sections
    if settings.rss:
        log("5. peak RSS per variant in fresh processes (GPT-2-small dimensions)")
        rss_rows = []
        for name in ["prefix", "peft-prefix", "lora", "full"]:
            found = peak_rss_in_child(name, threads)
            if found is None:
                rss_rows.append([VARIANTS[name][0], "failed or timed out", "", ""])
                continue
            peak = found["peak_kib"] * 1024
            if found["setup_kib"] is None:
                rss_rows.append([VARIANTS[name][0], "n/a", mib(peak), "n/a (no /proc)"])
                continue
            setup = found["setup_kib"] * 1024
            rss_rows.append([VARIANTS[name][0], mib(setup), mib(peak), mib(peak - setup)])
        report.add(
            "### Peak RSS of a fresh process (GPT-2-small dimensions)",
            "One process per variant builds the model and the variant and runs one no-grad "
            "forward ('after setup' = VmRSS then), then two training steps ('peak' = the "
            "kernel's VmHWM, reset after setup; the second step holds AdamW state, gradients and "
            "activations at once). RSS includes the Python, "
            "torch and transformers runtime and transient buffers; the growth column is the "
            "one to compare.",
            table(
                ["variant", "after setup MiB", "peak MiB", "growth while training MiB"], rss_rows
            ),
        )


# -- goals and notes ------------------------------------------------------------------------


def goals(results: Results) -> list[Goal]:
    found = []

    def add(model, a, b, goal, note, label=None):
        r = results.ratios.get((model, a, b))
        what = label or f"{VARIANTS[a][0]} / {VARIANTS[b][0]}"
        if r is not None:
            found.append(Goal(f"{model}: {what}", r, goal, note))

    for model in ("tiny", "gpt2-small"):
        for a in ("prefix", "prefix+mlp", "prompt"):
            add(model, a, PEERS[a], GOAL_VS_PEFT, "A")
        mem = results.memory.get(model, {})
        share = ""
        if "prefix" in mem and "full" in mem:
            share = f"B; memory {100 * mem['prefix']['total'] / mem['full']['total']:.0f}% of full"
        add(model, "prefix", "full", GOAL_VS_FULL, share or "B")
    for model, ratios in results.attention.items():
        found.append(
            Goal(
                f"{model}: record_attention / eager forward",
                ratios["recorder / eager"],
                GOAL_RECORDER,
                "C",
            )
        )
    for (model, batch_size), r in results.generate.items():
        what = f"{model}: generate with P={PREFIX} / without, batch {batch_size}"
        found.append(Goal(what, r, GOAL_GENERATE, "D"))
    return found


def _ratio_list(results: Results, a: str, b: str) -> str:
    found = [
        f"{m} {results.ratios[(m, a, b)].median:.2f}"
        for m in ("tiny", "mid", "gpt2-small")
        if (m, a, b) in results.ratios
    ]
    return ", ".join(found) or "n/a"


def notes(results: Results) -> str:
    """The notes under the goals table, with this run's numbers filled in."""
    items = [
        'Verdicts: "met" when the upper quartile of the per-round ratios is within the goal, '
        '"missed" when the lower quartile is beyond it, "within noise" when the quartiles '
        "straddle the goal.",
        "**A. prefixlab vs PEFT.** Step-time ratios prefixlab / PEFT: prefix "
        f"{_ratio_list(results, 'prefix', 'peft-prefix')}; prompt "
        f"{_ratio_list(results, 'prompt', 'peft-prompt')}; prefix + MLP "
        f"{_ratio_list(results, 'prefix+mlp', 'peft-prefix+mlp')}. Both libraries run the "
        "same frozen network; the profile tables in section 1 list every operator whose call "
        "count differs between the two steps. Two such differences were found by this "
        "benchmark and fixed in the package (benchmarks/README.md, 'History'): the loss used "
        "to slice the logits ([B, T, V]) and copy them, forward and backward, and the prefix "
        "split used 2L indexing ops, each allocating a zero gradient of the whole prefix in "
        "the backward. With the MLP, PEFT runs the MLP on a [B, P] batch of prefix tokens "
        "(one copy per row) where prefixlab runs it once on [P] and expands the result.",
    ]
    b_text = (
        "**B. Prefix tuning vs full fine-tuning.** Prefix tuning skips only the weight "
        "gradients and the AdamW update of the frozen weights; it still runs the whole forward "
        "and backpropagates through every layer (the prefix sits in every layer), so its "
        "saving is bounded by the share of those two in full fine-tuning's step."
    )
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
    b_text += (
        f" Step ratio prefix / full by model size: {_ratio_list(results, 'prefix', 'full')}. "
        "Memory: the activations saved for backward are about the same for both (the "
        "backward runs through the same network); what full fine-tuning adds is gradient + "
        "AdamW state, 3x its weights."
    )
    items.append(b_text)
    c_text = (
        "**C. Attention recorder.** `record_attention` adds one forward hook per layer that "
        "clones the probabilities eager attention has already computed."
    )
    for model, att in results.attention.items():
        c_text += (
            f" {model}: recorder / eager {att['recorder / eager'].median:.2f}, eager / sdpa "
            f"{att['eager / sdpa'].median:.2f}."
        )
    c_text += (
        " The eager / sdpa ratio is the price of materializing the probabilities at all, "
        "paid by eager attention (the lab's default) whether or not the recorder runs."
    )
    items.append(c_text)
    d_text = (
        f"**D. Generation with a prefix.** A P={PREFIX} prefix adds P keys to every attention "
        "call and one cache built per `generate` call; ratios with / without:"
    )
    d_text += ";".join(
        f" {model} batch {batch_size}: {r}" for (model, batch_size), r in results.generate.items()
    )
    d_text += "."
    items.append(d_text)
    sweep = {(P, v): t for (m, P, v), t in results.p_sweep.items() if m == "tiny"}
    lengths = sorted({P for P, _ in sweep})
    if len(lengths) >= 2 and (lengths[0], "prompt") in sweep:
        lo, hi = lengths[0], lengths[-1]
        grow_prefix = sweep[(hi, "prefix")] / sweep[(lo, "prefix")]
        grow_prompt = sweep[(hi, "prompt")] / sweep[(lo, "prompt")]
        items.append(
            f"**E. Prefix length.** From P={lo} to P={hi} on the tiny model a prefix-tuning "
            f"step goes from {ms(sweep[(lo, 'prefix')])} to {ms(sweep[(hi, 'prefix')])} ms "
            f"({grow_prefix:.1f}x), a prompt-tuning step from {ms(sweep[(lo, 'prompt')])} to "
            f"{ms(sweep[(hi, 'prompt')])} ms ({grow_prompt:.1f}x). A prefix only lengthens "
            "the key axis of attention; soft tokens are P more positions through every layer, "
            "the LM head and the loss."
        )
    return "\n".join(f"- {item}" for item in items)


# -- main -----------------------------------------------------------------------------------


def quiet_libraries() -> None:
    import transformers

    transformers.logging.set_verbosity_error()
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning, module="peft")


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description="Side-by-side benchmarks of prefixlab vs PEFT, LoRA and full fine-tuning.",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run (~1-2 minutes)")
    parser.add_argument(
        "--out", type=Path, default=REPO / "benchmarks" / "RESULTS.md", help="markdown output"
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch.set_num_threads for every measurement (default 1: on a shared 2-core "
        "machine more threads mostly measure the scheduler)",
    )
    parser.add_argument("--rss-child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error("--threads must be >= 1")
    return args


def command_line(args) -> str:
    parts = ["python", "benchmarks/bench.py"]
    if args.quick:
        parts.append("--quick")
    parts += ["--threads", str(args.threads)]
    out = args.out.resolve()
    with contextlib.suppress(ValueError):
        out = out.relative_to(REPO)
    return " ".join([*parts, "--out", str(out)])


def main(argv=None) -> None:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.rss_child:
        rss_child(args.rss_child)
        return
    quiet_libraries()
    settings = Settings.quick_preset() if args.quick else Settings.full()
    started = time.perf_counter()
    machine = machine_description(args.threads)
    report, results = Report(), Results()

    tiny, results.sources["tiny"] = build_model("tiny")
    section_training(report, results, tiny, settings)
    gc.collect()

    report.add("## 2. Attention recording overhead")
    section_attention(report, results, "tiny", tiny, settings, settings.rounds, 2 * settings.inner)

    report.add("## 3. Inference")
    section_inference(
        report, results, "tiny", tiny, settings, settings.rounds, (1, BATCH), mixed=True
    )

    report.add("## 4. Scaling with the prefix length P")
    section_p_sweep(
        report,
        results,
        "tiny",
        tiny,
        settings.p_values,
        max(3, settings.rounds // 2),
        settings.inner,
        ["prefix", "peft-prefix", "prompt", "peft-prompt"],
    )

    section_sizes(report, results, settings, tiny, args.threads)

    elapsed = time.perf_counter() - started
    load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    machine += [["load average at end", load], ["benchmark wall time", f"{elapsed / 60:.1f} min"]]
    head = [
        "# prefixlab benchmarks" + (" (quick smoke run)" if settings.quick else ""),
        "Written by `benchmarks/bench.py`; what it measures and how: "
        "[benchmarks/README.md](README.md). Reproduce with:",
        f"```bash\n{command_line(args)}\n```",
        "Absolute times are noise on a shared machine; the **ratios**, measured side by side "
        "(interleaved rounds; median of the per-round ratios, [interquartile range]), are the "
        "result.",
        "## Machine",
        table(["", ""], machine),
        "## Goals",
        table(
            ["comparison", "ratio, median [IQR]", "goal", "verdict", "note"],
            [g.row() for g in goals(results)],
        ),
        notes(results),
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n\n".join(head + report.sections) + "\n")
    log(f"wrote {args.out} in {elapsed / 60:.1f} min")


if __name__ == "__main__":
    main()
