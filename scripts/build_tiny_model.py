"""Build the embedded default: a byte-level BPE tokenizer and a tiny GPT-2, from scratch, on CPU.

    python scripts/build_tiny_model.py              # the default model, into data/tiny-gpt2/
    python scripts/build_tiny_model.py --size nano  # the ~0.25M-parameter one, data/nano-gpt2/
    python scripts/build_tiny_model.py --size mini  # the ~4M-parameter one, data/mini-gpt2/
    python scripts/build_tiny_model.py --quick      # a seconds-long smoke run into a temp folder

The three sizes (`SIZES`) share everything but depth and width: the same corpus, tokenizer
recipe, seed and token budget, so that they differ in scale alone.

Steps, all seeded:

1. Pretraining text: `synthetic_pretraining_corpus` — restaurant descriptions realized from
   training-split MRs only, 40% of them preceded by their facts in a plain `key=value` sheet
   of the corpus's own (`fact_sheet`). The sheets teach the model to copy from its context,
   as web text teaches real language models; E2E's `name[...]` format never appears, so
   reading an MR is left to prefix tuning and prompt tuning. Held-out text: references of
   validation-split MRs.
2. A byte-level BPE tokenizer (`tokenizers`) trained on that text, with one special token,
   `<|endoftext|>`, used as bos, eos and pad.
3. A GPT-2 trained as a language model on the text packed into a stream
   `<|endoftext|> text <|endoftext|> text ...`, each text with a leading space (as targets
   have in `prefixlab.batching.encode_for_training`), sampled in random windows.
4. config.json, model.safetensors, generation_config.json, tokenizer files, build_info.json
   (losses along the way) and README.md (the model card, with the measured numbers).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing
sys.path.insert(0, str(REPO / "scripts"))

import _build_common as common  # noqa: E402

from prefixlab.e2e import fact_sheet, synthetic_e2e, synthetic_pretraining_corpus  # noqa: E402

EOS = "<|endoftext|>"
# The family of embedded models: (layers, width, heads), heads of 32 dimensions each.
SIZES = {"nano": (2, 64, 2), "tiny": (4, 128, 4), "mini": (6, 224, 7)}


@dataclass
class BuildConfig:
    """Everything that decides the result. Two presets: `full` (shipped) and `quick` (tests)."""

    size: str = "tiny"  # a name in SIZES: the folder data/<size>-gpt2 and the card's title
    n_sentences: int = 80_000  # pretraining realizations (train-split MRs)
    fact_share: float = 0.4  # of them preceded by a fact sheet (teaches copying from context)
    n_heldout_mrs: int = 200  # validation-split MRs whose references measure held-out loss
    vocab_size: int = 2048  # BPE vocabulary, special token included
    n_layer: int = 4
    n_embd: int = 128
    n_head: int = 4
    n_positions: int = 256  # context: room for a prefix + MR + text
    block_size: int = 128  # tokens per training window
    batch_size: int = 32
    steps: int = 1500
    lr: float = 2e-3  # peak; linear warmup then cosine to lr / 10
    warmup: int = 100
    weight_decay: float = 0.1
    eval_every: int = 250
    eval_batches: int = 16  # batches of held-out (and train) windows per evaluation
    seed: int = 0
    threads: int = 2

    def __post_init__(self):
        if self.size not in SIZES and self.size != "quick":
            raise ValueError(f"size must be one of {tuple(SIZES)}, got {self.size!r}.")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd={self.n_embd} must be divisible by n_head={self.n_head}.")
        if self.block_size > self.n_positions:
            raise ValueError(
                f"block_size={self.block_size} exceeds n_positions={self.n_positions}."
            )
        if min(self.steps, self.batch_size, self.n_sentences, self.vocab_size) < 1:
            raise ValueError("steps, batch_size, n_sentences and vocab_size must be >= 1.")


QUICK = dict(
    size="quick",
    n_sentences=400,
    n_heldout_mrs=10,
    vocab_size=400,
    n_layer=2,
    n_embd=32,
    n_head=2,
    n_positions=64,
    block_size=32,
    batch_size=8,
    steps=20,
    warmup=5,
    eval_every=10,
    eval_batches=2,
    threads=1,  # a model this small gains nothing from a second thread
)


def train_tokenizer(texts: list[str], vocab_size: int):
    """Byte-level BPE on `texts`; returns a transformers fast tokenizer (eos = bos = pad)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token=EOS, eos_token=EOS, pad_token=EOS, unk_token=EOS
    )


def token_stream(tokenizer, texts: list[str]) -> torch.Tensor:
    """`<eos> text <eos> text ... <eos>` as one long tensor [n_tokens] (texts with a leading space)."""
    eos = tokenizer.eos_token_id
    stream = [eos]
    for ids in tokenizer([" " + t for t in texts], add_special_tokens=False)["input_ids"]:
        stream += ids + [eos]
    return torch.tensor(stream, dtype=torch.long)


def windows(stream: torch.Tensor, n: int, block: int, generator: torch.Generator) -> torch.Tensor:
    """n random windows of `block` tokens from the stream. Returns [n, block]."""
    starts = torch.randint(0, len(stream) - block, (n,), generator=generator)
    return torch.stack([stream[s : s + block] for s in starts.tolist()])


@torch.no_grad()
def mean_loss(model, batches: list[torch.Tensor]) -> float:
    """Mean next-token loss (nats/token) over [B, T] batches, in eval mode."""
    model.eval()
    losses = [model(input_ids=b, labels=b).loss.item() for b in batches]
    model.train()
    return sum(losses) / len(losses)


@torch.no_grad()
def context_checks(model, tokenizer, pairs: list[tuple[str, str]], seed: int) -> dict:
    """Can the model use its context? Mean loss (nats/token) on held-out descriptions:

    - `plain`: the description alone, after `<|endoftext|>`;
    - `after_facts`: the same description after its own fact sheet (validation MRs, never
      seen in training): lower than plain when the model reads and copies the facts;
    - `after_other_facts`: after the fact sheet of another MR: the facts must be the right ones;
    - `repeated`: the description's second copy, right after the first (copying anything).
    """
    import random

    model.eval()
    eos = tokenizer.eos_token_id
    rng = random.Random(seed)

    def ids(text):
        return tokenizer(text, add_special_tokens=False)["input_ids"]

    def scored(context: list[int], target: list[int]) -> float:
        full = torch.tensor([context + target])
        logits = model(input_ids=full).logits[0, len(context) - 1 : -1]
        return torch.nn.functional.cross_entropy(logits, full[0, len(context) :]).item()

    sums = {"plain": 0.0, "after_facts": 0.0, "after_other_facts": 0.0, "repeated": 0.0}
    others = [mr for mr, _ in pairs[1:]] + [pairs[0][0]]
    used, limit = 0, model.config.n_positions
    for (mr, text), other in zip(pairs, others, strict=True):
        target = ids(" " + text)
        own, wrong = ids(" " + fact_sheet(mr, rng) + "\n"), ids(" " + fact_sheet(other, rng) + "\n")
        if 2 + max(len(own), len(wrong), len(target)) + len(target) > limit:
            continue  # does not fit the context (only in --quick builds)
        used += 1
        sums["plain"] += scored([eos], target)
        sums["after_facts"] += scored([eos] + own, target)
        sums["after_other_facts"] += scored([eos] + wrong, target)
        sums["repeated"] += scored([eos] + target + [eos], target)
    model.train()
    return {k: round(v / max(1, used), 4) for k, v in sums.items()} | {"texts": used}


def build(cfg: BuildConfig, out: Path, *, command: str, log=print) -> dict:
    """Train tokenizer and model, write every file into `out`, return the measured numbers."""
    from transformers import GenerationConfig, GPT2Config, GPT2LMHeadModel

    t0 = common.start_build(cfg, out)

    texts = synthetic_pretraining_corpus(cfg.n_sentences, seed=cfg.seed, fact_share=cfg.fact_share)
    heldout = synthetic_e2e("validation", n_mrs=cfg.n_heldout_mrs, refs_per_mr=4, seed=cfg.seed)
    heldout_texts = [ref for _, ref in heldout.pairs]
    n_sheets = sum("\n" in t for t in texts)
    real_overlap = common.real_mrs_in_corpus(cfg)
    log(
        f"corpus: {len(texts)} descriptions ({n_sheets} after a fact sheet); held-out: "
        f"{len(heldout_texts)} references"
    )

    tokenizer = train_tokenizer([" " + t for t in texts], cfg.vocab_size)
    train_stream = token_stream(tokenizer, texts)
    heldout_stream = token_stream(tokenizer, heldout_texts)
    tokenizer.model_max_length = cfg.n_positions
    log(
        f"tokenizer: {len(tokenizer)} tokens; corpus {len(train_stream):,} tokens, "
        f"held-out {len(heldout_stream):,} tokens ({time.time() - t0:.0f}s)"
    )

    eos = tokenizer.eos_token_id
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
    )
    model = GPT2LMHeadModel(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(
        f"model: GPT-2 {cfg.n_layer} layers x {cfg.n_embd} wide, {cfg.n_head} heads, {n_params:,} params"
    )

    g_eval = torch.Generator().manual_seed(cfg.seed + 1)
    eval_bs = min(cfg.batch_size, 32)
    heldout_batches = [
        windows(heldout_stream, eval_bs, cfg.block_size, g_eval) for _ in range(cfg.eval_batches)
    ]
    train_eval_batches = [
        windows(train_stream, eval_bs, cfg.block_size, g_eval) for _ in range(cfg.eval_batches)
    ]
    optimizer = common.adamw(model, cfg)
    g_train = torch.Generator().manual_seed(cfg.seed)
    curve = []
    model.train()
    t_train = time.time()
    running = None
    for step in range(cfg.steps):
        batch = windows(train_stream, cfg.batch_size, cfg.block_size, g_train)  # [B, T]
        inputs = {"input_ids": batch, "labels": batch}
        loss = common.train_step(model, optimizer, inputs, common.lr_at(step, cfg))
        running = common.smoothed(running, loss)
        if common.eval_due(step, cfg):
            point = {
                "step": step + 1,
                "train_loss": round(mean_loss(model, train_eval_batches), 4),
                "heldout_loss": round(mean_loss(model, heldout_batches), 4),
                "minutes": round((time.time() - t_train) / 60, 2),
            }
            curve.append(point)
            log(
                f"step {step + 1}/{cfg.steps}  running {running:.3f}  train {point['train_loss']:.3f}"
                f"  held-out {point['heldout_loss']:.3f}  ({point['minutes']:.1f} min)"
            )
    train_minutes = (time.time() - t_train) / 60

    model.eval()
    checks_pairs = heldout.pairs[:: max(1, len(heldout.pairs) // 100)][:100]
    checks = context_checks(model, tokenizer, checks_pairs, cfg.seed)
    log(f"context checks (nats/token): {checks}")
    model.generation_config = GenerationConfig(
        bos_token_id=eos, eos_token_id=eos, pad_token_id=eos, max_new_tokens=80
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    torch.manual_seed(cfg.seed)
    with torch.no_grad():
        start = torch.full((3, 1), eos, dtype=torch.long)  # [3, 1]
        gen = model.generate(
            start,
            attention_mask=torch.ones_like(start),
            do_sample=True,
            top_k=20,
            max_new_tokens=60,
        )  # [3, <= 61]
    samples = [tokenizer.decode(row[1:], skip_special_tokens=True).strip() for row in gen]

    final = curve[-1]
    info = {
        "config": asdict(cfg),
        "n_params": n_params,
        "vocab_size": len(tokenizer),
        "corpus_sentences": len(texts),
        "corpus_fact_sheets": n_sheets,
        "real_dev_mrs_in_corpus": real_overlap,
        "context_checks": checks,
        "context_check_texts": checks.pop("texts"),
        "corpus_tokens": int(len(train_stream)),
        "heldout_references": len(heldout_texts),
        "heldout_tokens": int(len(heldout_stream)),
        "tokens_seen": cfg.steps * cfg.batch_size * cfg.block_size,
        "final_train_loss": final["train_loss"],
        "final_heldout_loss": final["heldout_loss"],
        "uniform_loss": round(math.log(len(tokenizer)), 4),
        "train_minutes": round(train_minutes, 2),
        **common.build_times(t0),
        "curve": curve,
        "samples": samples,
        **common.provenance(cfg, command, ("transformers", "tokenizers")),
    }
    common.write_build(out, info, model_card, log)
    return info


def model_card(info: dict) -> str:
    """The model card (README.md) with the numbers measured by this build."""
    cfg = info["config"]
    curve_rows = "\n".join(
        f"| {p['step']} | {p['train_loss']:.3f} | {p['heldout_loss']:.3f} | {p['minutes']:.1f} |"
        for p in info["curve"]
    )
    samples = "\n".join(f"- {s}" for s in info["samples"])
    cpu = f", {info['cpu_minutes']} CPU minutes" if "cpu_minutes" in info else ""
    load = ""
    if "load_average" in info:
        load = f" The 5-minute load average at the end was {info['load_average']}"
        if info["load_average"] > cfg["threads"] + 0.5:
            load += (
                f": above the build's {cfg['threads']} threads, other jobs shared the CPU and "
                "stretched the wall-clock time."
            )
        else:
            load += f", about the build's own {cfg['threads']} threads: little else was running."
    size = cfg.get("size", "tiny")
    threads = "1 CPU thread" if cfg["threads"] == 1 else f"{cfg['threads']} CPU threads"
    checks = info["context_checks"]
    worth = checks["after_other_facts"] - checks["after_facts"]
    if worth >= 0.1:
        context_reading = (
            f"The right facts are worth {worth:.3f} nats/token over the wrong ones: it reads "
            "the facts it is given."
        )
    else:
        context_reading = (
            f"The right facts are worth only {worth:.3f} nats/token over the wrong ones: this "
            "model barely reads the facts it is given, so a prefix or prompt has little "
            "copying to steer."
        )
    repeat_gap = checks["plain"] - checks["repeated"]
    if abs(repeat_gap) < 0.1 and worth < 0.1:
        context_reading += (
            " Nor does a description's second copy score better than the first: at this size "
            "it copies neither facts nor repeated text."
        )
    elif abs(repeat_gap) < 0.1:
        context_reading += (
            " A description's second copy scores about like the first: it copies facts from "
            "a sheet, the skill its corpus asks for, not any text that happens to repeat."
        )
    else:
        context_reading += (
            f" A description's second copy scores {repeat_gap:.3f} nats/token below the first: "
            "it also copies text that repeats."
        )
    role = {
        "tiny": "prefixlab's embedded default",
        "nano": "the smallest of prefixlab's embedded models",
        "mini": "the largest of prefixlab's embedded models",
    }.get(size, "a smoke build")
    overlap = info.get("real_dev_mrs_in_corpus")
    if overlap is None:
        overlap_text = "(The real E2E dev split was not on the build machine, so its overlap with the corpus was not counted.)"
    else:
        overlap_text = (
            f"The corpus samples MRs over E2E's own values, so an MR of the real E2E dev split "
            f"can occur in it by chance (with our sentences, never E2E's): "
            f"{overlap['realized_in_corpus']} of the dev split's {overlap['dev_mrs']} MRs do."
        )
    return f"""# {size}-gpt2: {role}

A small GPT-2, trained from scratch by this project, so that the whole lab runs offline on a
laptop CPU. One of a family of three built by the same recipe at three sizes (`nano`, `tiny`,
`mini`: `python scripts/build_tiny_model.py --size ...`), which differ in depth and width
only. `prefixlab.load_model("{size}")` loads it from this folder with no network;
`load_model("tiny")` is the default.

## Architecture

| | |
|---|---|
| type | GPT-2 (`GPT2LMHeadModel`, transformers), tied input/output embeddings |
| layers x width | {cfg["n_layer"]} x {cfg["n_embd"]}, {cfg["n_head"]} heads of {cfg["n_embd"] // cfg["n_head"]} |
| context | {cfg["n_positions"]} positions, pretrained on the first {cfg["block_size"]} only (windows of {cfg["block_size"]} tokens); a prefix or soft prompt of length P uses P of them and moves the text to positions P onwards (`prefixlab.studies.pretrained_positions`) |
| parameters | {info["n_params"]:,} |
| tokenizer | byte-level BPE trained with `tokenizers`, {info["vocab_size"]:,} tokens (cap {cfg["vocab_size"]:,}: the corpus's words need no more); `<|endoftext|>` is bos, eos and pad |
| weights | `model.safetensors`, float32, {info["weights_mb"]} MB |

## Training data

{info["corpus_sentences"]:,} restaurant descriptions ({info["corpus_tokens"]:,} tokens in all) made by
`prefixlab.e2e.synthetic_pretraining_corpus(n, seed={cfg["seed"]}, fact_share={cfg["fact_share"]})`:
this project's own generator (E2E's ontology: its slot values, venue and landmark names; our
own sentence plans, synonyms, aggregation and negation). Every description realizes an MR of
the *training* split; no validation or test MR of the synthetic data is realized in the
corpus. {info["corpus_fact_sheets"]:,} of the descriptions ({100 * info["corpus_fact_sheets"] / info["corpus_sentences"]:.0f}%) come after their facts
in a plain sheet of the corpus's own, one line such as
`cuisine=Italian; name=The Golden Curry; area=riverside` (`prefixlab.e2e.fact_sheet`: other
keys than E2E's, any order). The sheets are what teaches the model to copy names and values
from its context, as tables and lists on the web teach real language models. An earlier
build without them could not copy at all, and then no prefix or soft prompt could make it
follow an MR (slot error rates stayed near 0.83, what texts that ignore the MR score): both
methods steer what a frozen model can already do, neither changes its weights.
**E2E's MR format never appears in the text**: the model has never seen `name[...]`,
brackets, E2E's slot names or the `||` separator, so reading an MR has to be learned by the
tuning methods. Each text is preceded by a space and followed by `<|endoftext|>`, as targets
are in `prefixlab.batching.encode_for_training`. {overlap_text}

Held-out text: {info["heldout_references"]} references ({info["heldout_tokens"]:,} tokens) of
{cfg["n_heldout_mrs"]} validation-split MRs, never seen in training.

## Training

Language modelling on random windows of {cfg["block_size"]} tokens, batch {cfg["batch_size"]},
{cfg["steps"]:,} steps ({info["tokens_seen"]:,} tokens seen), AdamW (betas 0.9/0.95, weight decay
{cfg["weight_decay"]}), learning rate {cfg["lr"]} with {cfg["warmup"]} warmup steps then cosine
decay to a tenth, gradient clipping 1.0, dropout 0.1 (GPT-2's default; `load_model` runs the
frozen model in eval mode, without dropout), seed {cfg["seed"]}, {threads}.

| step | train loss | held-out loss | minutes |
|---:|---:|---:|---:|
{curve_rows}

Final loss in nats/token (eval mode, {cfg["eval_batches"]} batches of windows):
**train {info["final_train_loss"]:.3f}, held-out {info["final_heldout_loss"]:.3f}**; a uniform
guess over the vocabulary scores ln({info["vocab_size"]}) = {info["uniform_loss"]:.2f}.
Training took {info["train_minutes"]:.1f} minutes wall clock ({info["total_minutes"]:.1f} in all{cpu})
on {info["machine"].replace("1 CPU threads", "1 CPU thread")} (torch {info["versions"]["torch"]}, transformers
{info["versions"]["transformers"]}).{load}

Does it use its context? Mean loss in nats/token on {info["context_check_texts"]} held-out
descriptions (`context_checks` in the build script), alone, after their own fact sheet
(validation MRs: never seen), after another MR's sheet, and as the second copy of themselves:

| description | loss |
|---|---:|
| alone | {info["context_checks"]["plain"]:.3f} |
| after its own fact sheet | {info["context_checks"]["after_facts"]:.3f} |
| after another MR's fact sheet | {info["context_checks"]["after_other_facts"]:.3f} |
| repeated (second copy) | {info["context_checks"]["repeated"]:.3f} |

{context_reading}

Samples (top-k 20, after `<|endoftext|>`; the model invents the facts, it has no table):

{samples}

## Rebuild

```
{info["command"]}
```

The build is seeded; on another CPU or library version the numbers can differ in the last
digits. `--quick` makes a seconds-long smoke build into a temporary folder.

## Limits

- It knows only this project's restaurant language: E2E's names and values in the phrasings
  of `prefixlab.e2e.synthetic`. It is not a general language model, and its text on any
  other topic is nonsense. Real E2E references use some words it has rarely or never seen.
- The losses above include the generator's own randomness (which synonym, which sentence
  plan), which no model can predict; equal train and held-out loss means it learned the
  language rather than memorizing sentences. Unconditioned samples can still contradict
  themselves (a bar, then a restaurant): a few small layers hold little discourse state.
- The MR is foreign text to it: slot names such as `eatType`, brackets and `||` are
  fragments it never saw. A value after `[` tokenizes as it does after `=` in a fact sheet
  (`The| Golden| Curry`, no leading space), so what it learned to copy is there to copy.
- It was never trained to read an E2E MR; the tuning methods must teach that. Do not read
  its unconditioned samples as a baseline quality.
- Findings at this scale need not hold for large models (prompt tuning in particular is
  known to close the gap only at billions of parameters).
- English only; no safety training; for teaching and tests, not for deployment.

## Tuning evidence

<!-- tuning-evidence -->
Not measured yet: run `python scripts/evaluate_tiny_model.py`.
<!-- /tuning-evidence -->
"""


def main(argv: list[str] | None = None) -> int:
    parser = common.build_parser(__doc__, "data/<size>-gpt2")
    parser.add_argument(
        "--size", choices=tuple(SIZES), default="tiny", help="which model of the family"
    )
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--n-sentences", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args(argv)

    layers, width, heads = SIZES[args.size]
    overrides = (
        dict(QUICK)
        if args.quick
        else dict(size=args.size, n_layer=layers, n_embd=width, n_head=heads)
    )
    options = common.given_options(args, ("steps", "n_sentences", "seed", "threads"))
    cfg = BuildConfig(**(overrides | options))
    out = common.output_folder(args, f"{args.size}-gpt2", quick_prefix="tiny-gpt2-quick-")
    head = ["--quick"] if args.quick else [f"--size {args.size}"]
    command = common.command_line("build_tiny_model.py", head, options)
    build(cfg, out, command=command, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
