"""Measured blocks in a model card (data/<model>/README.md): the scripts that measure a model
write their findings between two HTML-comment markers, replaced on every run."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def replace_card_block(model: str, block: str, start: str, end: str, heading: str) -> Path:
    """Write `block` (it begins with the marker `start` and ends with `end`) into the card of
    the embedded model `model` (data/<model>-gpt2/README.md): in place of the block between
    those markers, or, the first time, at the end of the card under a `## heading`. Returns
    the card's path."""
    card = REPO / "data" / f"{model}-gpt2" / "README.md"
    text = card.read_text()
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip() + f"\n\n## {heading}\n\n" + block + "\n"
    card.write_text(text)
    return card
