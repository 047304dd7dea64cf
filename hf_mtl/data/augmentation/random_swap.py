"""EDA random swap (Wei & Zou, EMNLP 2019, "EDA: Easy Data Augmentation Techniques...", section 2): swap the
positions of two random words, `n` times."""

from __future__ import annotations

import random

from .base import AUGMENTATIONS, SequenceAugmentation


@AUGMENTATIONS.register("random_swap")
class RandomSwap(SequenceAugmentation):
    """Swaps two distinct positions `n` times; `n = max(1, int(alpha * len(words)))` unless given (EDA's
    `alpha_rs`, default 0.1). Texts of fewer than two words are returned unchanged."""

    name = "random_swap"

    def __init__(self, *, alpha: float = 0.1, n: int | None = None):
        self.alpha = self.check_probability("alpha", alpha)
        self.n = self.check_count("n", n)

    def augment_words(self, words: list[str], rng: random.Random) -> list[str]:
        words = list(words)
        if len(words) < 2:
            return words
        for _ in range(self.n or max(1, int(self.alpha * len(words)))):
            i, j = rng.sample(range(len(words)), 2)
            words[i], words[j] = words[j], words[i]
        return words
