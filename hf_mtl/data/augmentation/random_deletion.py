"""EDA random deletion (Wei & Zou, EMNLP 2019, "EDA: Easy Data Augmentation Techniques for Boosting Performance
on Text Classification Tasks", section 2): drop each word with probability `p`."""

from __future__ import annotations

import random

from .base import AUGMENTATIONS, SequenceAugmentation


@AUGMENTATIONS.register("random_deletion")
class RandomDeletion(SequenceAugmentation):
    """Deletes each word independently with probability `p` (EDA's `p_rd`, default 0.1).

    As in the EDA reference code, a one-word text is returned unchanged and, if every word was drawn for
    deletion, one random word of the original is kept: an empty text would carry no evidence for its label.
    """

    name = "random_deletion"

    def __init__(self, *, p: float = 0.1):
        self.p = self.check_probability("p", p)

    def augment_words(self, words: list[str], rng: random.Random) -> list[str]:
        if len(words) <= 1:
            return list(words)
        kept = [word for word in words if rng.random() >= self.p]
        return kept or [rng.choice(words)]
