"""Token batches for table-to-text: the MR as source, the text as target, loss on the target.

Each training row is `format_source(mr)` (the MR then `SEPARATOR`), then the reference with a
leading space, then EOS; labels are -100 on the source and on padding, so the loss scores the
text only. Training rows are padded on the right, generation sources on the left (so that
`generate` continues every row). `iterate_batches` slices the [N, T] tensors into batches.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Iterator, Sequence

import torch

SEPARATOR = " ||"


def format_source(mr: str) -> str:
    """The model's input for an MR: the MR then `SEPARATOR` ("name[X], area[riverside] ||").

    The target follows with a leading space, so the separator is a token the text never uses.
    """
    return mr + SEPARATOR


class EncodedPairs(dict):
    """What `encode_for_training` returns: {"input_ids", "attention_mask", "labels"}, each
    [N, T], plus `n_dropped`, the number of pairs left out for being longer than max_length,
    and `kept`, the index in the given pairs of each row (row i encodes pair `kept[i]`).

    Both are attributes, not keys, so the object iterates, slices and moves to a device like the
    plain dict of tensors it is (`iterate_batches`, `{k: v.to(device) for ...}`).
    `dict(encoded)` and slices made by `iterate_batches` are plain dicts without them.
    """

    def __init__(
        self, tensors: dict[str, torch.Tensor], n_dropped: int = 0, kept: list[int] | None = None
    ):
        super().__init__(tensors)
        self.n_dropped = n_dropped  # pairs longer than max_length, left out (overflow="skip")
        n_rows = len(tensors["input_ids"]) if "input_ids" in tensors else 0
        self.kept = list(range(n_rows)) if kept is None else list(kept)  # pair index per row

    def __repr__(self) -> str:
        shapes = ", ".join(f"{k}: {list(v.shape)}" for k, v in self.items())
        return f"EncodedPairs({shapes}; n_dropped={self.n_dropped})"


def _check_max_length(max_length) -> None:
    if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < 2:
        raise ValueError(f"max_length must be an int >= 2 (tokens per row), got {max_length!r}.")


def pad_id(tokenizer) -> int:
    """The id that pads rows: the pad token, else eos (a ValueError when it has neither)."""
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    if pad is None:
        raise ValueError(
            "The tokenizer has neither a pad nor an eos token; set tokenizer.pad_token."
        )
    return int(pad)


def _source_ids(tokenizer, mrs: Sequence[str]) -> list[list[int]]:
    """Token ids of format_source(mr), with a BOS first if the tokenizer normally adds one."""
    ids = tokenizer([format_source(mr) for mr in mrs], add_special_tokens=False)["input_ids"]
    specials = tokenizer("", add_special_tokens=True)["input_ids"]
    bos = tokenizer.bos_token_id
    if bos is not None and specials[:1] == [bos]:
        ids = [[bos] + row for row in ids]
    return [list(row) for row in ids]


def string_pairs(pairs, names: str, error: type[Exception], empty: str) -> list:
    """`pairs` as a list after checking that it holds string pairs: an `error` naming the
    first bad item (as `names`, e.g. "(mr, ref)") and a ValueError ending with `empty` when
    there is none; the check both encoders make."""
    pairs = list(pairs)
    if not pairs:
        raise ValueError(f"No pairs to encode; {empty}")
    for i, pair in enumerate(pairs):
        if not (
            isinstance(pair, (tuple, list))
            and len(pair) == 2
            and all(isinstance(x, str) for x in pair)
        ):
            raise error(
                f"pairs must hold {names} string pairs; item {i} is {pair!r}. Pass "
                f"dataset.pairs or a list of {names} tuples."
            )
    return pairs


def encode_for_training(
    tokenizer,
    pairs: Iterable[tuple[str, str]],
    max_length: int = 224,
    *,
    overflow: str = "error",
) -> EncodedPairs:
    """Tokenize (mr, ref) pairs as source + target, right padded, loss on the target only.

    Each row is `format_source(mr)` then `" " + ref` then EOS. Labels copy the target tokens
    (EOS included) and are -100 on the source and on padding, so the loss only scores the text.

    Args:
        pairs: (mr, ref) string pairs, or an E2EDataset.
        max_length: longest row allowed (source + target). The default fits synthetic data and
            the real E2E devset with the tiny model's tokenizer (longest row 208) and leaves 32 of
            its 256 positions for a prefix or soft prompt. It only guards the context: rows are
            padded to the longest one, not to max_length.
        overflow: what to do with a pair longer than `max_length` — "error" (default) raises
            with the length needed; "skip" drops it and warns once per call with the number
            dropped and the max_length that would keep them. Nothing is ever cut short.

    Returns:
        EncodedPairs: {"input_ids", "attention_mask", "labels"}, each [N, T] (long), N = pairs
        kept, T = longest kept row; `.n_dropped` = pairs left out (0 unless overflow="skip"),
        `.kept` = the index in `pairs` of each row.
    """
    if overflow not in ("error", "skip"):
        raise ValueError(f"overflow must be 'error' or 'skip', got {overflow!r}.")
    _check_max_length(max_length)
    if tokenizer.eos_token_id is None:
        raise ValueError("The tokenizer has no eos token; the target must end with one.")
    pairs = string_pairs(pairs, "(mr, ref)", TypeError, "the dataset is empty.")
    sources = _source_ids(tokenizer, [mr for mr, _ in pairs])
    targets = tokenizer([" " + ref for _, ref in pairs], add_special_tokens=False)["input_ids"]
    rows, kept, too_long = [], [], []
    for i, (src, tgt) in enumerate(zip(sources, targets, strict=True)):
        tgt = list(tgt) + [tokenizer.eos_token_id]
        if len(src) + len(tgt) > max_length:
            too_long.append((i, len(src), len(tgt)))
            continue
        rows.append((src, tgt))
        kept.append(i)
    if too_long:
        need = max(s + t for _, s, t in too_long)
        i, s, t = max(too_long, key=lambda x: x[1] + x[2])
        message = (
            f"{len(too_long)} of {len(pairs)} pairs are longer than max_length={max_length} "
            f"tokens (the longest, pair {i}, has source {s} + target {t} = {s + t})"
        )
        if overflow == "error":
            raise ValueError(f"{message}. Pass max_length={need}, or overflow='skip' to drop them.")
        if not rows:
            raise ValueError(f"{message}; nothing left. Pass max_length={need}.")
        warnings.warn(
            f"{message}; left them out (overflow='skip', counted in .n_dropped). "
            f"Pass max_length={need} to keep them.",
            stacklevel=2,
        )
    width = max(len(s) + len(t) for s, t in rows)
    pad = pad_id(tokenizer)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((len(rows), width), dtype=torch.long)  # [N, T]
    labels = torch.full((len(rows), width), -100, dtype=torch.long)  # [N, T]
    for row, (src, tgt) in enumerate(rows):
        n_src, n = len(src), len(src) + len(tgt)
        input_ids[row, :n] = torch.tensor(src + tgt)
        attention_mask[row, :n] = 1
        labels[row, n_src:n] = torch.tensor(tgt)
    tensors = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
    return EncodedPairs(tensors, n_dropped=len(too_long), kept=kept)


def check_longest(rows: list[list[int]], texts: Sequence[str], noun: str, option: str,
                  limit: int) -> int:  # fmt: skip
    """The length of the longest of `rows` (token ids of `texts`); a ValueError naming that
    text (as `noun`) and the `option` value it needs when it is longer than `limit`. Sources
    for generation are never cut."""
    longest = max(range(len(rows)), key=lambda i: len(rows[i]))
    if len(rows[longest]) > limit:
        raise ValueError(
            f"{noun} {texts[longest]!r} takes {len(rows[longest])} tokens, more than "
            f"{option}={limit}; pass {option}={len(rows[longest])} or more."
        )
    return len(rows[longest])


def encode_for_generation(
    tokenizer, mrs: Sequence[str], max_length: int = 128
) -> dict[str, torch.Tensor]:
    """Tokenize MRs as sources only, left padded, so that generation continues every row.

    Returns:
        {"input_ids", "attention_mask"}, each [N, T] (long), T = longest source.

    Raises:
        ValueError: when a source is longer than `max_length` (sources are never cut).
    """
    _check_max_length(max_length)
    mrs = [mrs] if isinstance(mrs, str) else list(mrs)
    if not mrs:
        raise ValueError("No MRs to encode.")
    sources = _source_ids(tokenizer, mrs)
    width = check_longest(sources, mrs, "MR", "max_length", max_length)
    input_ids = torch.full((len(sources), width), pad_id(tokenizer), dtype=torch.long)  # [N, T]
    attention_mask = torch.zeros((len(sources), width), dtype=torch.long)  # [N, T]
    for row, src in enumerate(sources):
        input_ids[row, width - len(src) :] = torch.tensor(src)
        attention_mask[row, width - len(src) :] = 1
    return {"input_ids": input_ids, "attention_mask": attention_mask}


def iterate_batches(
    encoded: dict[str, torch.Tensor],
    batch_size: int,
    *,
    shuffle: bool = False,
    seed: int = 0,
    drop_last: bool = False,
    trim: bool = True,
) -> Iterator[dict[str, torch.Tensor]]:
    """Yield dict slices of `encoded` ([N, T] tensors) of `batch_size` rows each.

    shuffle: a random row order fixed by `seed` (same seed, same batches).
    trim: drop columns that are padding in every row of the batch (on either side), so short
    batches run faster. Yields {key: [B, T_batch]}.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}.")
    n = len(encoded["input_ids"])
    order = (
        torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        if shuffle
        else torch.arange(n)
    )
    for start in range(0, n, batch_size):
        index = order[start : start + batch_size]
        if drop_last and len(index) < batch_size:
            return
        batch = {key: value[index] for key, value in encoded.items()}
        if trim and "attention_mask" in batch:
            # an encoder-decoder batch (it has a decoder mask) pads its targets on their own
            targets = TARGET_KEYS if "decoder_attention_mask" in batch else ()
            batch = _trim(batch, "attention_mask", [k for k in batch if k not in targets])
            if targets:
                batch = _trim(batch, "decoder_attention_mask", [k for k in batch if k in targets])
        yield batch


# The target-side columns of an encoder-decoder batch (`seq2seq_batching.encode_seq2seq`).
TARGET_KEYS = ("labels", "decoder_input_ids", "decoder_attention_mask")


def _trim(batch: dict, mask_key: str, keys) -> dict:
    """Drop the columns of `keys` that are padding in every row of `batch[mask_key]`."""
    used = batch[mask_key].any(dim=0).nonzero().flatten()  # columns with a token
    if not len(used):
        return batch
    lo, hi = int(used[0]), int(used[-1]) + 1
    width = batch[mask_key].shape[1]
    return {  # per-row entries such as task_ids [B] are not token columns
        key: value[:, lo:hi]
        if key in keys and value.dim() == 2 and value.shape[1] == width
        else value
        for key, value in batch.items()
    }
