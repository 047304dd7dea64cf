"""Mention replacement, MR (Dai & Adel, COLING 2020, "An Analysis of Simple Data Augmentation for Named Entity
Recognition", section 3)."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import AUGMENTATIONS, AugmentationError, TokenAugmentation
from .bio import check_bio_tags, mention_tags, segments


@AUGMENTATIONS.register("mention_replacement")
class MentionReplacement(TokenAugmentation):
    """Replaces each entity mention with probability `p` (default 0.3, the reference code's `replace_ratio`) by a
    mention of the same entity type drawn uniformly from the distinct mentions of the training set.

    The new mention may be longer or shorter, so its tags are regenerated as `B-X I-X ...`; the sentence keeps
    its sequence of entity types and its O tokens. Needs BIO tags.
    """

    name = "mention_replacement"

    def __init__(self, *, p: float = 0.3):
        self.p = self.check_probability("p", p)
        self.mentions: dict[str, list[tuple[str, ...]]] = {}

    def fit(self, sentences: Sequence[tuple[list[str], list[str]]]) -> None:
        found: dict[str, dict[tuple[str, ...], None]] = {}
        for row, (tokens, tags) in enumerate(sentences):
            check_bio_tags(tags, row, self.name)
            for seg in segments(tags):
                if seg.entity_type is not None:
                    found.setdefault(seg.entity_type, {})[tuple(tokens[seg.start : seg.end])] = None
        # dicts keep first-occurrence order, so draws are reproducible across processes
        self.mentions = {entity_type: list(m) for entity_type, m in found.items()}

    def augment_tokens(self, tokens: list[str], tags: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
        new_tokens: list[str] = []
        new_tags: list[str] = []
        for seg in segments(tags):
            if seg.entity_type is not None and rng.random() < self.p:
                if seg.entity_type not in self.mentions:
                    raise AugmentationError(
                        f"Augmentation {self.name!r}: entity type {seg.entity_type!r} was not seen by `fit`; "
                        "fit on the dataset you augment."
                    )
                mention = rng.choice(self.mentions[seg.entity_type])
                new_tokens.extend(mention)
                new_tags.extend(mention_tags(seg.entity_type, len(mention)))
            else:
                new_tokens.extend(tokens[seg.start : seg.end])
                new_tags.extend(tags[seg.start : seg.end])
        return new_tokens, new_tags
