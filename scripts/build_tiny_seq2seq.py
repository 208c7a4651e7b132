"""Build the embedded encoder-decoder: a tiny BART pretrained by this project, on one CPU thread.

    python scripts/build_tiny_seq2seq.py           # the shipped model, into data/tiny-bart/
    python scripts/build_tiny_seq2seq.py --quick   # a seconds-long smoke run into a temp folder

It is the decoder-only family's recipe (scripts/build_tiny_model.py) for an encoder and a
decoder, and shares that family's corpus and tokenizer:

1. Examples (`pretraining_examples`): the same descriptions of training-split MRs as the
   decoder-only corpus (`synthetic_pretraining_pairs`, same seed), and the same draws: the
   40% that follow a fact sheet there are (fact sheet -> description) pairs here; of the
   others a quarter are copied whole (description -> itself) and the rest rebuilt from a
   copy that lost up to half of its words in short spans (`delete_spans`, BART's span
   deletion). E2E's `name[...]` format never appears.
2. The tokenizer: tiny-gpt2's files, copied. `<|endoftext|>` is pad, eos, bos and the
   decoder start token (real BART starts its decoder with its eos token too).
3. A BART (2 + 2 layers, width 128, weights initialized with std 0.1 rather than BART's 0.02:
   see `BuildConfig.init_std`) trained with teacher forcing on random batches of pairs,
   encoded as `prefixlab.seq2seq_batching.encode_seq2seq` encodes them.
4. The weights are stored in float16 (the data/ budget), and everything measured after
   training is measured on the stored weights read back in float32, as `load_seq2seq("tiny")`
   gives them: held-out losses, `context_checks` (does the source matter?), `copy_checks`
   (do generated descriptions carry the sheet's values?), the float16 logit difference.
   build_info.json keeps the numbers and README.md is the model card.
"""

from __future__ import annotations

import copy
import json
import math
import random
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run from a plain checkout without installing
sys.path.insert(0, str(REPO / "scripts"))

import _build_common as common  # noqa: E402

from prefixlab.e2e import (  # noqa: E402
    fact_sheet,
    parse_mr,
    slot_error_rate,
    synthetic_e2e,
    synthetic_pretraining_pairs,
)
from prefixlab.paths import embedded_model_dir  # noqa: E402
from prefixlab.seq2seq_batching import encode_seq2seq  # noqa: E402

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
MAX_TOKENS = 256  # per source and per target: the position table and tokenizer's max length


@dataclass
class BuildConfig:
    """Everything that decides the result. Two presets: the shipped one and `QUICK` (tests)."""

    name: str = "tiny"  # the folder data/<name>-bart and the card's title ("quick" for smoke)
    n_sentences: int = 80_000  # pretraining descriptions (train-split MRs), as tiny-gpt2
    fact_share: float = 0.4  # of them paired with their fact sheet, the rest with a deletion
    # Each deletion example loses a share of its words drawn uniformly from (0, deletion), in
    # spans of 1-3 words: the light ones teach the cross-attention to align and copy.
    deletion: float = 0.5
    copy_share: float = 0.25  # of the descriptions without a sheet, copied whole instead
    dropout: float = 0.0  # no dropout: a model this small is not at risk of overfitting
    # Weight init. BART's 0.02 (made for width 1024) left this model ignoring its source:
    # the cross-attention starts near uniform and the encoder's output collapsed to one
    # vector before copying was learned. 0.1 (about 1 / sqrt(width)) copies within 300 steps.
    init_std: float = 0.1
    n_heldout_mrs: int = 200  # validation-split MRs for held-out losses and the checks
    n_check_mrs: int = 100  # of them used by context_checks and copy_checks
    layers: int = 2  # encoder layers, and as many decoder layers
    d_model: int = 128
    heads: int = 4
    ffn_dim: int = 512
    batch_size: int = 32
    steps: int = 2000  # about 10 CPU minutes of one thread on the build machine
    lr: float = 2e-3  # peak; linear warmup then cosine to lr / 10 (_build_common.lr_at)
    warmup: int = 100
    weight_decay: float = 0.1
    eval_every: int = 250
    eval_batches: int = 8  # held-out (and train) batches per evaluation
    max_new_tokens: int = 80  # generation in copy_checks
    # The budget, in CPU minutes of the training loop: with one thread that is the thread's
    # own time, which other jobs sharing the cores do not stretch (wall time they do).
    max_train_cpu_minutes: float = 25.0  # stop early (and say so in the card) past this
    seed: int = 0
    threads: int = 1

    def __post_init__(self):
        if self.d_model % self.heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by heads={self.heads}.")
        if not 0 <= self.fact_share <= 1 or not 0 < self.deletion < 1:
            raise ValueError("fact_share must be in [0, 1] and deletion in (0, 1); try 0.4, 0.3.")
        if min(self.steps, self.batch_size, self.n_sentences, self.n_check_mrs) < 1:
            raise ValueError("steps, batch_size, n_sentences and n_check_mrs must be >= 1.")


QUICK = dict(
    name="quick",
    n_sentences=400,
    n_heldout_mrs=10,
    n_check_mrs=5,
    layers=1,
    d_model=32,
    heads=2,
    ffn_dim=64,
    batch_size=8,
    steps=20,
    warmup=5,
    eval_every=10,
    eval_batches=2,
    max_new_tokens=20,
)


def delete_spans(text: str, share: float, rng: random.Random) -> str:
    """`text` with about `share` of its words deleted, in spans of 1 to 3 words (at least one
    word goes, at least one stays)."""
    words = text.split(" ")
    want = min(len(words) - 1, max(1, round(share * len(words))))
    deleted: set[int] = set()
    while len(deleted) < want:
        start = rng.randrange(len(words))
        deleted.update(range(start, min(len(words), start + rng.randint(1, 3))))
    if len(deleted) >= len(words):  # a span overshot: keep one word
        deleted.discard(min(deleted))
    return " ".join(w for i, w in enumerate(words) if i not in deleted)


def pretraining_examples(
    n: int, seed: int, fact_share: float, deletion: float, copy_share: float
) -> list[tuple[str, str, str]]:
    """(kind, source, target) triples, kind "sheet", "copy" or "deletion"; target a description.

    The descriptions and the sheet draws are those of `synthetic_pretraining_corpus(n, seed,
    fact_share)`: where that corpus puts `sheet + "\\n " + text`, this gives (sheet, text).
    """
    sheet_rng = random.Random(f"prefixlab-facts:{seed}")  # the corpus's own draws
    deletion_rng = random.Random(f"prefixlab-deletion:{seed}")
    examples = []
    for mr, text in synthetic_pretraining_pairs(n, seed):
        if sheet_rng.random() < fact_share:
            examples.append(("sheet", fact_sheet(mr, sheet_rng), text))
        elif deletion_rng.random() < copy_share:
            examples.append(("copy", text, text))
        else:
            share = deletion_rng.uniform(0, deletion)
            examples.append(("deletion", delete_spans(text, share, deletion_rng), text))
    return examples


def copy_tokenizer(out: Path):
    """Copy tiny-gpt2's tokenizer files into `out`; returns the tokenizer loaded from there."""
    from transformers import AutoTokenizer

    for name in TOKENIZER_FILES:
        shutil.copyfile(embedded_model_dir("tiny") / name, out / name)
    return AutoTokenizer.from_pretrained(out)


def trimmed(encoded: dict, rows: torch.Tensor) -> dict:
    """The given rows of encode_seq2seq's tensors, cut to the batch's longest source/target."""
    mask = encoded["attention_mask"][rows]  # [B, S]
    labels = encoded["labels"][rows]  # [B, T]
    S = int(mask.sum(1).max())
    T = int((labels != -100).sum(1).max())
    return {
        "input_ids": encoded["input_ids"][rows, :S],
        "attention_mask": mask[:, :S],
        "labels": labels[:, :T].contiguous(),  # BART views the labels flat
    }


@torch.no_grad()
def target_loss(model, batches: list[dict]) -> float:
    """Mean loss in nats per target token (eos included) over batches, in eval mode."""
    was_training = model.training
    model.eval()
    total, tokens = 0.0, 0
    for batch in batches:
        logits = model(**batch).logits  # [B, T, V]
        labels = batch["labels"]
        total += torch.nn.functional.cross_entropy(
            logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum"
        ).item()
        tokens += int((labels != -100).sum())
    model.train(was_training)
    return total / max(1, tokens)


def pair_batches(tokenizer, pairs: list[tuple[str, str]], batch_size: int = 32) -> list[dict]:
    """(source, target) pairs as encoded batches, in order."""
    return [
        encode_seq2seq(
            tokenizer, pairs[i : i + batch_size], max_source=MAX_TOKENS, max_target=MAX_TOKENS
        )
        for i in range(0, len(pairs), batch_size)
    ]


def context_checks(model, tokenizer, pairs: list[tuple[str, str]], seed: int) -> dict:
    """Does the model use its source? Loss (nats/token) of held-out descriptions when the
    encoder reads: their own fact sheet (validation MRs, never seen), another MR's sheet,
    nothing (an empty source), and the description itself (copying it whole).
    """
    rng = random.Random(f"context-checks:{seed}")
    mrs = [mr for mr, _ in pairs]
    others = mrs[1:] + mrs[:1]
    sources = {
        "own_sheet": [fact_sheet(mr, rng) for mr in mrs],
        "other_sheet": [fact_sheet(mr, rng) for mr in others],
        "empty": ["" for _ in mrs],
        "itself": [text for _, text in pairs],
    }
    targets = [text for _, text in pairs]
    losses = {}
    for kind, src in sources.items():
        batches = pair_batches(tokenizer, list(zip(src, targets, strict=True)))
        losses[kind] = round(target_loss(model, batches), 4)
    return losses


@torch.no_grad()
def generate_from(model, tokenizer, sources: list[str], max_new_tokens: int) -> list[str]:
    """Greedy outputs for the sources, decoded without special tokens."""
    model.eval()
    texts = []
    for i in range(0, len(sources), 32):
        batch = encode_seq2seq(
            tokenizer, [(s, "") for s in sources[i : i + 32]], max_source=MAX_TOKENS
        )
        out = model.generate(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
        )  # [B, 1 + new]
        texts += [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]
    return texts


def copy_checks(model, tokenizer, pairs: list[tuple[str, str]], seed: int, max_new_tokens: int):
    """What can it do with a held-out fact sheet? Greedy descriptions of validation MRs' sheets:

    - `name_copied`, `near_copied`: share of the sheets' restaurant names and landmark names
      written out verbatim (open values, copied token by token from the source);
    - `slot_error_rate`: `prefixlab.e2e.slot_error_rate` of the descriptions against the MRs
      (missing or contradicted facts over all facts);
    - `exact_copy`: share of held-out descriptions reproduced exactly when the source is the
      description itself.
    Returns the numbers and three (sheet, description) samples.
    """
    rng = random.Random(f"copy-checks:{seed}")
    mrs = [mr for mr, _ in pairs]
    sheets = [fact_sheet(mr, rng) for mr in mrs]
    texts = generate_from(model, tokenizer, sheets, max_new_tokens)
    parsed = [parse_mr(mr) for mr in mrs]
    rates = {}
    for slot in ("name", "near"):
        having = [(p[slot], t) for p, t in zip(parsed, texts, strict=True) if slot in p]
        rates[f"{slot}_copied"] = round(sum(v in t for v, t in having) / max(1, len(having)), 3)
        rates[f"{slot}_sheets"] = len(having)
    rates["slot_error_rate"] = round(slot_error_rate(mrs, texts)["slot_error_rate"], 3)
    originals = [text for _, text in pairs]
    copies = generate_from(model, tokenizer, originals, max_new_tokens)
    rates["exact_copy"] = round(
        sum(a == b for a, b in zip(originals, copies, strict=True)) / len(originals), 3
    )
    rates["sheets"] = len(sheets)
    samples = [{"sheet": s, "text": t} for s, t in zip(sheets[:3], texts[:3], strict=True)]
    return rates, samples


@torch.no_grad()
def float16_difference(model32, model16, batch: dict) -> dict:
    """Max |logit difference| between the float32 model and its float16-stored weights read
    back in float32, on one batch; with the largest |logit| for scale."""
    a = model32.eval()(**batch).logits  # [B, T, V]
    b = model16.eval()(**batch).logits
    real = batch["labels"] != -100  # [B, T]: positions that are real target tokens
    return {
        "max_abs_logit_diff": float((a - b).abs()[real].max()),
        "max_abs_logit": round(float(a.abs()[real].max()), 2),
        "same_argmax": float((a.argmax(-1) == b.argmax(-1))[real].float().mean()),
        "positions": int(real.sum()),
    }


def build(cfg: BuildConfig, out: Path, *, command: str, log=print) -> dict:
    """Pretrain the model, write every file into `out`, return the measured numbers."""
    from transformers import BartConfig, BartForConditionalGeneration, GenerationConfig

    t0 = common.start_build(cfg, out)

    tokenizer = copy_tokenizer(out)
    eos = tokenizer.eos_token_id
    examples = pretraining_examples(
        cfg.n_sentences, cfg.seed, cfg.fact_share, cfg.deletion, cfg.copy_share
    )
    n_sheets = sum(kind == "sheet" for kind, _, _ in examples)
    encoded = encode_seq2seq(
        tokenizer, [(s, t) for _, s, t in examples], max_source=MAX_TOKENS, max_target=MAX_TOKENS
    )
    source_tokens = int(encoded["attention_mask"].sum())
    target_tokens = int((encoded["labels"] != -100).sum())
    log(
        f"examples: {len(examples)} ({n_sheets} sheet -> text, {len(examples) - n_sheets} "
        f"copy or deletion -> text); {source_tokens:,} source, {target_tokens:,} target tokens"
    )

    heldout = synthetic_e2e("validation", n_mrs=cfg.n_heldout_mrs, refs_per_mr=4, seed=cfg.seed)
    rng = random.Random(f"heldout:{cfg.seed}")
    heldout_sheet = [(fact_sheet(mr, rng), ref) for mr, ref in heldout.pairs]
    heldout_deletion = [
        (delete_spans(ref, rng.uniform(0, cfg.deletion), rng), ref) for _, ref in heldout.pairs
    ]
    g_eval = torch.Generator().manual_seed(cfg.seed + 1)
    eval_bs = min(cfg.batch_size, 32)

    def sampled_batches(pairs):
        rows = torch.randperm(len(pairs), generator=g_eval)[: cfg.eval_batches * eval_bs]
        return pair_batches(tokenizer, [pairs[i] for i in rows.tolist()], eval_bs)

    eval_sets = {
        "heldout_sheet": sampled_batches(heldout_sheet),
        "heldout_deletion": sampled_batches(heldout_deletion),
        "train": sampled_batches([(s, t) for _, s, t in examples]),
    }

    config = BartConfig(
        vocab_size=len(tokenizer),
        d_model=cfg.d_model,
        encoder_layers=cfg.layers,
        decoder_layers=cfg.layers,
        encoder_attention_heads=cfg.heads,
        decoder_attention_heads=cfg.heads,
        encoder_ffn_dim=cfg.ffn_dim,
        decoder_ffn_dim=cfg.ffn_dim,
        max_position_embeddings=MAX_TOKENS,
        dropout=cfg.dropout,
        init_std=cfg.init_std,
        pad_token_id=eos,
        bos_token_id=eos,
        eos_token_id=eos,
        decoder_start_token_id=eos,
        forced_bos_token_id=None,
        forced_eos_token_id=None,
        tie_word_embeddings=True,
    )
    model = BartForConditionalGeneration(config)
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: BART {cfg.layers}+{cfg.layers} layers x {cfg.d_model}, {n_params:,} params")

    optimizer = common.adamw(model, cfg)
    g_train = torch.Generator().manual_seed(cfg.seed)
    curve, running, steps_done, tokens_seen = [], None, 0, 0
    model.train()
    t_train, cpu_train = time.time(), time.process_time()
    for step in range(cfg.steps):
        rows = torch.randint(0, len(examples), (cfg.batch_size,), generator=g_train)
        batch = trimmed(encoded, rows)
        loss = common.train_step(model, optimizer, batch, common.lr_at(step, cfg))
        steps_done += 1
        tokens_seen += int(batch["attention_mask"].sum()) + int((batch["labels"] != -100).sum())
        running = common.smoothed(running, loss)
        over_time = (time.process_time() - cpu_train) / 60 > cfg.max_train_cpu_minutes
        if common.eval_due(step, cfg) or over_time:
            point = {"step": step + 1}
            point |= {k: round(target_loss(model, b), 4) for k, b in eval_sets.items()}
            point["minutes"] = round((time.time() - t_train) / 60, 2)
            point["cpu_minutes"] = round((time.process_time() - cpu_train) / 60, 2)
            curve.append(point)
            log(
                f"step {step + 1}/{cfg.steps}  running {running:.3f}  train {point['train']:.3f}  "
                f"held-out sheet {point['heldout_sheet']:.3f}  deletion "
                f"{point['heldout_deletion']:.3f}  ({point['minutes']:.1f} min, "
                f"{point['cpu_minutes']:.1f} CPU min)"
            )
        if over_time:
            log(f"stopped after {steps_done} steps: past {cfg.max_train_cpu_minutes} CPU minutes")
            break
    train_minutes = (time.time() - t_train) / 60
    train_cpu_minutes = (time.process_time() - cpu_train) / 60

    # Store in float16; measure everything on the stored weights, read back in float32.
    model.eval()
    model.generation_config = GenerationConfig(
        bos_token_id=eos,
        eos_token_id=eos,
        pad_token_id=eos,
        decoder_start_token_id=eos,
        max_new_tokens=cfg.max_new_tokens,
    )
    copy.deepcopy(model).to(torch.float16).save_pretrained(out)  # `model` stays float32
    shipped = BartForConditionalGeneration.from_pretrained(out, dtype=torch.float32).eval()
    fp16 = float16_difference(model, shipped, eval_sets["heldout_sheet"][0])
    log(f"float16 storage: {fp16}")
    final = {k: round(target_loss(shipped, b), 4) for k, b in eval_sets.items()}
    check_pairs = heldout.pairs[:: max(1, len(heldout.pairs) // cfg.n_check_mrs)]
    check_pairs = check_pairs[: cfg.n_check_mrs]
    checks = context_checks(shipped, tokenizer, check_pairs, cfg.seed)
    log(f"context checks (nats/token): {checks}")
    copies, samples = copy_checks(shipped, tokenizer, check_pairs, cfg.seed, cfg.max_new_tokens)
    log(f"copy checks: {copies}")

    info = {
        "config": asdict(cfg),
        "n_params": n_params,
        "vocab_size": len(tokenizer),
        "examples": len(examples),
        "sheet_examples": n_sheets,
        "copy_examples": sum(kind == "copy" for kind, _, _ in examples),
        "deletion_examples": sum(kind == "deletion" for kind, _, _ in examples),
        "source_tokens": source_tokens,
        "target_tokens": target_tokens,
        "real_dev_mrs_in_corpus": common.real_mrs_in_corpus(cfg),
        "heldout_references": len(heldout.pairs),
        "steps_done": steps_done,
        "stopped_early": steps_done < cfg.steps,
        "tokens_seen": tokens_seen,
        "curve": curve,
        "final_losses": final,
        "uniform_loss": round(math.log(len(tokenizer)), 4),
        "context_checks": checks,
        "check_texts": len(check_pairs),
        "copy_checks": copies,
        "float16": fp16,
        "samples": samples,
        "train_minutes": round(train_minutes, 2),
        "train_cpu_minutes": round(train_cpu_minutes, 2),
        **common.build_times(t0),
        **common.provenance(cfg, command, ("transformers",)),
    }
    common.write_build(out, info, model_card, log)
    return info


def model_card(info: dict) -> str:
    """The model card (README.md) with the numbers measured by this build."""
    cfg = info["config"]
    name = cfg["name"]
    curve_rows = "\n".join(
        f"| {p['step']} | {p['train']:.3f} | {p['heldout_sheet']:.3f} | "
        f"{p['heldout_deletion']:.3f} | {p['cpu_minutes']:.1f} | {p['minutes']:.1f} |"
        for p in info["curve"]
    )
    checks, copies, fp16, final = (
        info["context_checks"],
        info["copy_checks"],
        info["float16"],
        info["final_losses"],
    )
    worth = checks["other_sheet"] - checks["own_sheet"]
    samples = "\n".join(f"- `{s['sheet']}`\n  -> {s['text']}" for s in info["samples"])
    stopped = ""
    if info["stopped_early"]:
        stopped = (
            f" Training stopped after {info['steps_done']:,} of {cfg['steps']:,} steps, at "
            f"its {cfg['max_train_cpu_minutes']}-CPU-minute limit (the learning rate had not finished "
            "its decay)."
        )
    load = info["load_average"]
    load_text = (
        f"The 5-minute load average at the end was {load}: other jobs shared the machine's "
        "cores and stretched the wall-clock time."
        if load > cfg["threads"] + 0.5
        else f"The 5-minute load average at the end was {load}: little else was running."
    )
    overlap = info.get("real_dev_mrs_in_corpus")
    overlap_text = (
        "(The real E2E dev split was not on the build machine, so its overlap was not counted.)"
        if overlap is None
        else f"As in tiny-gpt2's corpus, {overlap['realized_in_corpus']} of the real E2E dev "
        f"split's {overlap['dev_mrs']} MRs occur in it by chance (with our sentences)."
    )
    role = "prefixlab's embedded encoder-decoder" if name == "tiny" else "a smoke build"
    gpt = json.loads((embedded_model_dir("tiny") / "build_info.json").read_text())
    return f"""# {name}-bart: {role}

A small BART (encoder-decoder), pretrained from scratch by this project so that prefix and
prompt tuning for encoder-decoder models (`prefixlab.seq2seq`) can be run offline on a CPU.
`prefixlab.seq2seq.load_seq2seq("tiny")` loads it from this folder, frozen, in float32, with
no network, as `prefixlab.load_model("tiny")` loads the decoder-only tiny-gpt2.

## Architecture

| | |
|---|---|
| type | BART (`BartForConditionalGeneration`, transformers), input and output embeddings tied (one table for encoder, decoder and head) |
| layers x width | {cfg["layers"]} encoder + {cfg["layers"]} decoder layers x {cfg["d_model"]}, {cfg["heads"]} heads of {cfg["d_model"] // cfg["heads"]}, feed-forward {cfg["ffn_dim"]} |
| context | {MAX_TOKENS} learned positions for the source and {MAX_TOKENS} for the target (a prefix or soft prompt of length P uses P of them) |
| parameters | {info["n_params"]:,} (tiny-gpt2: {gpt["n_params"]:,}) |
| tokenizer | **tiny-gpt2's, unchanged** (the same files): byte-level BPE, {info["vocab_size"]:,} tokens; `<|endoftext|>` is pad, eos, bos and the decoder start token. A text is the same tokens for both models |
| weights | `model.safetensors`, **float16**, {info["weights_mb"]} MB (trained in float32; `load_seq2seq` reads them back in float32) |

Inputs, as `prefixlab.seq2seq_batching.encode_seq2seq` makes them: the encoder reads
`" " + source` then `<|endoftext|>`; the labels are `" " + target` then `<|endoftext|>`;
the decoder input is the labels shifted right behind `<|endoftext|>`.

Float16 storage, measured: on {fp16["positions"]} target positions of held-out pairs, the
largest logit difference between the trained float32 weights and the stored float16 weights
read back in float32 is **{fp16["max_abs_logit_diff"]:.2e}** (largest logit
{fp16["max_abs_logit"]}); the two agree on the top token at {100 * fp16["same_argmax"]:.1f}% of
positions. All numbers below are of the stored weights.

## Pretraining objective, and why

Every example is (source -> description), over the same {info["examples"]:,} descriptions of
training-split MRs as tiny-gpt2's corpus (`synthetic_pretraining_pairs`, seed {cfg["seed"]}),
with the same draws:

- **fact sheet -> description** for the {info["sheet_examples"]:,} descriptions
  ({100 * info["sheet_examples"] / info["examples"]:.0f}%) that follow their fact sheet in tiny-gpt2's corpus: the encoder
  reads `cuisine=Italian; name=The Golden Curry; area=riverside` (`prefixlab.e2e.fact_sheet`,
  not E2E's format), the decoder writes the description;
- **copy -> description** for {100 * cfg["copy_share"]:.0f}% of the others ({info["copy_examples"]:,}): the encoder reads
  the description itself;
- **span deletion -> description** for the rest ({info["deletion_examples"]:,}): the encoder reads the
  description after a share of its words, drawn uniformly up to {100 * cfg["deletion"]:.0f}%, was deleted
  in spans of one to three words (`delete_spans`); the decoder writes it whole.

Why this mix. The sheets do for this model what they do for tiny-gpt2: they teach it to carry
names and values from what it reads into what it writes, which is the skill a prefix or soft
prompt must then steer towards an E2E MR. Sheets alone would make the model a sheet-to-text
converter one renaming away from the E2E task, and leave it nothing to do without a sheet;
the deletions keep the decoder a language model of descriptions that also copies (most of a
target is in its source) and fills gaps, as BART's denoising does, from light to heavy, with
whole copies as the easiest case. Deletion rather than BART's masking because the shared
tokenizer has no mask token, and adding one would break "the same tokens for both models".
Mirroring tiny-gpt2's 40/60 split keeps the two models comparable: same texts, same facts,
same share of facts. **E2E's MR format never appears** (no `name[...]`, brackets, slot names
or `||`): reading an MR is left to the tuning methods.

What it took. The first build used BART's weight init (std 0.02, made for width 1024),
dropout 0.1 and a fixed 30% deletion. After 2,500 steps it wrote the sheet's restaurant name
in 3% of descriptions and never wrote a text back from itself; the right sheet was worth
0.10 nats/token over a wrong one (closed values such as the cuisine, not names): the decoder
had learned the language from its own past, and the cross-attention had not learned to
find a token to copy. Two 500-step trials with init 0.02 and no dropout, one with lighter
deletions, one adding whole copies, ignored the source altogether: every source gave the
same loss to four decimals, the encoder's output having collapsed to nearly one vector (its
spread across positions 0.2% of its size). A 300-step trial with init std 0.1 (about
1/sqrt(width)) copied 73% of the names. This build uses that init, without dropout.

{overlap_text}

Held-out: {info["heldout_references"]} references of {cfg["n_heldout_mrs"]} validation-split MRs
(never realized in training), paired with their sheets and with deletions of themselves
(drawn as in training).

## Training

Teacher forcing, batch {cfg["batch_size"]} pairs drawn at random, {info["steps_done"]:,} steps
({info["tokens_seen"]:,} source + target tokens), AdamW (betas 0.9/0.95, weight decay
{cfg["weight_decay"]}), learning rate {cfg["lr"]} with {cfg["warmup"]} warmup steps then cosine decay to a
tenth, gradient clipping 1.0, no dropout, weight init std {cfg["init_std"]}, seed {cfg["seed"]},
{info["machine"].split(", ")[1]}.{stopped}

Loss in nats per target token (eval mode, {cfg["eval_batches"]} batches each):

| step | train | held-out, from sheet | held-out, from deletion | CPU minutes | wall minutes |
|---:|---:|---:|---:|---:|---:|
{curve_rows}

Stored weights: **train {final["train"]:.3f}, held-out from sheet {final["heldout_sheet"]:.3f}, from
deletion {final["heldout_deletion"]:.3f}**; a uniform guess scores ln({info["vocab_size"]}) =
{info["uniform_loss"]:.2f}. (tiny-gpt2 scores held-out descriptions {gpt["final_heldout_loss"]:.3f} with no context;
this model, never trained without a source, scores {checks["empty"]:.3f} with an empty one: see below.)

Budget and time: training used **{info["train_cpu_minutes"]:.1f} CPU minutes** of its one thread
(the budget is {cfg["max_train_cpu_minutes"]:.0f}, counted in CPU time because the machine was
shared) and took {info["train_minutes"]:.1f} minutes wall clock; the whole build took
{info["total_minutes"]:.1f} minutes ({info["cpu_minutes"]} CPU minutes) on {info["machine"]} (torch
{info["versions"]["torch"]}, transformers {info["versions"]["transformers"]}). {load_text}

## What it can do

Does the source matter? Loss of {info["check_texts"]} held-out descriptions (validation MRs)
when the encoder reads (`context_checks`):

| encoder reads | loss |
|---|---:|
| the description's own fact sheet | {checks["own_sheet"]:.3f} |
| another MR's fact sheet | {checks["other_sheet"]:.3f} |
| nothing (empty source) | {checks["empty"]:.3f} |
| the description itself | {checks["itself"]:.3f} |

The right sheet is worth {worth:.3f} nats/token over a wrong one.

Does it copy? Greedy descriptions of {copies["sheets"]} held-out fact sheets (`copy_checks`):
the restaurant's name is written verbatim in **{100 * copies["name_copied"]:.0f}%**
({copies["name_sheets"]} sheets have one), the landmark of `near=` in
**{100 * copies["near_copied"]:.0f}%** ({copies["near_sheets"]} sheets); the slot checker
(`prefixlab.e2e.slot_error_rate`) finds a slot error rate of **{copies["slot_error_rate"]:.3f}**
(missing or contradicted facts over all facts). Given a held-out description as its source,
it writes it back exactly in {100 * copies["exact_copy"]:.0f}% of cases.

Samples (greedy, from held-out sheets):

{samples}

## Rebuild

```
{info["command"]}
```

Seeded; another CPU or library version can change the last digits. `--quick` makes a
seconds-long smoke build into a temporary folder (tests run it).

## Limits

- It knows only this project's restaurant language (E2E's names and values, our phrasings);
  on any other text it writes nonsense. English only; for teaching and tests.
- It reads fact sheets, not E2E MRs: `name[...]`, slot names such as `eatType` and `||`
  are text it never saw. A value after `[` is the same tokens as after `=`, so what it
  learned to copy is there to copy; learning to read the MR is the tuning methods' job.
- Two layers each side, {info["train_cpu_minutes"]:.0f} CPU minutes of training: findings at this scale need not
  hold for BART-base or T5.
- `<|endoftext|>` is also BART's padding index (`pad_token_id`): its embedding row starts
  at zero, and the input side of the tied table gives that row no gradient, so it learned
  only as the output row that ends every text. As an input (the decoder start token) it
  is what that training made of it.
"""


def main(argv: list[str] | None = None) -> int:
    parser = common.build_parser(__doc__, "data/tiny-bart")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--n-sentences", type=int, default=None)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--init-std", type=float, default=None)
    parser.add_argument("--copy-share", type=float, default=None)
    parser.add_argument(
        "--max-train-cpu-minutes", type=float, default=None, help="budget of the training loop"
    )
    args = parser.parse_args(argv)
    overrides = dict(QUICK) if args.quick else {}
    keys = ("steps", "n_sentences", "seed", "max_train_cpu_minutes", "init_std", "copy_share")
    options = common.given_options(args, keys)
    cfg = BuildConfig(**(overrides | options))
    out = common.output_folder(args, "tiny-bart", quick_prefix="tiny-bart-quick-")
    head = ["--quick"] if args.quick else []
    command = common.command_line("build_tiny_seq2seq.py", head, options)
    build(cfg, out, command=command, log=lambda m: print(m, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
