"""How (MR, text) pairs become batches, and how a model's output is read back, per architecture.

Training, validation, table gain and generation (`prefixlab.train`, `prefixlab.evaluate`) are
written once; the few places where a decoder-only and an encoder-decoder model differ are the
methods of a `PairFormat`:

                      decoder-only (`DECODER_ONLY`)        encoder-decoder (`ENCODER_DECODER`)
    training row      MR ||  text eos, one sequence        encoder: MR eos; decoder: text eos
    scored tokens     labels[:, 1:] (position t predicts   labels (the decoder input is the
                      token t + 1)                         labels shifted right)
    generation        continue the left-padded source     decode after the decoder start token
    max_length        source + text                        the source, and the text, each

`pair_format(model)` picks one from the model (an AdaptedModel, a Seq2SeqAdaptedModel, or a
bare transformers model): `config.is_encoder_decoder` decides. `model_call(adapted, batch)` is
the one model call of the training loop and of validation: input_ids and attention_mask by
position, labels and any other column of the batch (task_ids, decoder_attention_mask) by name.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

from prefixlab.adapted import check_generation_budget
from prefixlab.batching import EncodedPairs, encode_for_generation, encode_for_training
from prefixlab.seq2seq_batching import encode_seq2seq, encode_seq2seq_sources


def model_call(adapted, batch: Mapping[str, torch.Tensor], *, labels: bool = True):
    """`adapted` on one batch: input_ids and attention_mask by position, every other column
    by name (labels only when `labels`). Returns the model output (`.logits`, `.loss`)."""
    extra = {k: v for k, v in batch.items() if k not in ("input_ids", "attention_mask", "labels")}
    if labels:
        extra["labels"] = batch["labels"]
    return adapted(batch["input_ids"], batch["attention_mask"], **extra)


class PairFormat:
    """The decoder-only format: the MR and then the text in one sequence (`prefixlab.batching`)."""

    name = "decoder-only"

    def encode(self, tokenizer, pairs, max_length: int, *, overflow: str = "error") -> EncodedPairs:
        """(mr, text) pairs -> training batches ({"input_ids", "attention_mask", "labels", ...},
        each [N, T]) with `.kept` and `.n_dropped`; pairs longer than max_length raise or are
        left out (`overflow`)."""
        return encode_for_training(tokenizer, pairs, max_length, overflow=overflow)

    def encode_sources(self, tokenizer, mrs, max_length: int) -> dict[str, torch.Tensor]:
        """MRs alone, for `generate`. Returns {"input_ids", "attention_mask"}, [N, S]."""
        return encode_for_generation(tokenizer, mrs, max_length=max_length)

    def check_budget(self, adapted, source_length: int, max_new_tokens: int) -> None:
        """Fail before generating when the prefix, source and new tokens overflow the context."""
        dims = getattr(adapted, "dims", None)
        context = int(getattr(dims, "n_positions", 0) or 0)
        prefix_length = int(getattr(adapted, "prefix_length", 0) or 0)
        check_generation_budget(prefix_length, source_length, max_new_tokens, context)

    def new_tokens(self, out: torch.Tensor, source_length: int) -> torch.Tensor:
        """What `generate` wrote, without the source: [B, S + new] -> [B, new]."""
        return out[:, source_length:]

    def scored(self, logits: torch.Tensor, labels: torch.Tensor):
        """(logits, targets) of the scored positions: [B, T-1, V] and [B, T-1] (-100 = none)."""
        return logits[:, :-1], labels[:, 1:]

    def n_scored(self, labels: torch.Tensor) -> int:
        """Tokens a batch's mean loss averages over."""
        return int((labels[:, 1:] != -100).sum())

    def logits(self, adapted, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Logits of a batch, [B, T, V] (no loss computed)."""
        return model_call(adapted, batch, labels=False).logits

    def row_losses(self, adapted, batch: Mapping[str, torch.Tensor]):
        """Each row's summed cross-entropy and scored tokens: ([B] float64, [B] int64)."""
        logits, targets = self.scored(self.logits(adapted, batch), batch["labels"])
        losses = F.cross_entropy(
            logits.flatten(0, 1).float(), targets.reshape(-1), ignore_index=-100,
            reduction="none",
        ).view(targets.shape)  # fmt: skip
        return losses.sum(dim=1).double(), (targets != -100).sum(dim=1)

    def __repr__(self) -> str:
        return f"PairFormat({self.name!r})"


class Seq2SeqPairFormat(PairFormat):
    """The encoder-decoder format: the MR to the encoder, the text to the decoder
    (`prefixlab.seq2seq_batching`)."""

    name = "encoder-decoder"

    def encode(self, tokenizer, pairs, max_length: int, *, overflow: str = "error") -> EncodedPairs:
        return encode_seq2seq(
            tokenizer, pairs, max_source=max_length, max_target=max_length, overflow=overflow
        )

    def encode_sources(self, tokenizer, mrs, max_length: int) -> dict[str, torch.Tensor]:
        return encode_seq2seq_sources(tokenizer, mrs, max_source=max_length)

    def check_budget(self, adapted, source_length: int, max_new_tokens: int) -> None:
        # Seq2SeqAdaptedModel.generate checks the source and the decoder prefix plus the new
        # tokens against the position table itself, each against its own positions
        return None

    def new_tokens(self, out: torch.Tensor, source_length: int) -> torch.Tensor:
        return out[:, 1:]  # [B, 1 + new]: the decoder start token first

    def scored(self, logits: torch.Tensor, labels: torch.Tensor):
        return logits, labels

    def n_scored(self, labels: torch.Tensor) -> int:
        return int((labels != -100).sum())

    def logits(self, adapted, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return model_call(adapted, batch, labels=True).logits  # the labels make the decoder input


DECODER_ONLY = PairFormat()
ENCODER_DECODER = Seq2SeqPairFormat()


def is_encoder_decoder(model) -> bool:
    """Whether `model` (adapted or bare) is an encoder-decoder model."""
    base = getattr(model, "model", model)
    return bool(getattr(getattr(base, "config", None), "is_encoder_decoder", False))


def pair_format(model) -> PairFormat:
    """`ENCODER_DECODER` for encoder-decoder models (adapted or bare), else `DECODER_ONLY`."""
    return ENCODER_DECODER if is_encoder_decoder(model) else DECODER_ONLY
