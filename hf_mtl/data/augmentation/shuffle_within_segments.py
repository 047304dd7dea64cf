"""Shuffle within segments, SiS (Dai & Adel, COLING 2020, "An Analysis of Simple Data Augmentation for Named
Entity Recognition", section 3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import AUGMENTATIONS, TokenAugmentation
from .bio import check_bio_tags, segments


@AUGMENTATIONS.register("shuffle_within_segments")
class ShuffleWithinSegments(TokenAugmentation):
    """Splits the sentence into segments (each run of O tokens, each mention) and shuffles the tokens of each
    segment with probability `p` (default 0.3, the reference code's `replace_ratio`).

    B-/I- handling: tokens move, tags stay in place. A shuffled mention keeps `B-X` on its first position and
    `I-X` on the rest, so the span, its type and BIO validity are unchanged by construction; only which token
    carries `B-X` changes (as in the paper: "the label order is kept unchanged"). Needs BIO tags.
    """

    name = "shuffle_within_segments"

    def __init__(self, *, p: float = 0.3):
        self.p = self.check_probability("p", p)

    def fit(self, sentences: Sequence[tuple[list[str], list[str]]]) -> None:
        for row, (_, tags) in enumerate(sentences):
            check_bio_tags(tags, row, self.name)

    def augment_tokens(self, tokens: list[str], tags: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
        new_tokens = list(tokens)
        for seg in segments(tags):
            if seg.end - seg.start > 1 and rng.random() < self.p:
                piece = new_tokens[seg.start : seg.end]
                rng.shuffle(piece)
                new_tokens[seg.start : seg.end] = piece
        return new_tokens, list(tags)
