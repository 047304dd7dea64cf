"""EDA-style random insertion (Wei & Zou, EMNLP 2019, "EDA: Easy Data Augmentation Techniques...", section 2),
with in-vocabulary words instead of WordNet synonyms."""

from __future__ import annotations

import random
from collections.abc import Sequence

from .base import AUGMENTATIONS, AugmentationError, SequenceAugmentation


@AUGMENTATIONS.register("random_insertion")
class RandomInsertion(SequenceAugmentation):
    """Inserts `n` words at random positions; `n = max(1, int(alpha * len(words)))` unless given (EDA's `alpha_ri`,
    default 0.1).

    Deviation from EDA: EDA inserts a WordNet synonym of a random word of the sentence. We draw the inserted word
    from the task's own training vocabulary (all text columns of the dataset being augmented), so no external
    resource or language-specific lexicon is needed. `distribution="unigram"` (default) samples words by corpus
    frequency, which mostly inserts function words and so rarely changes the label; `"uniform"` samples each
    distinct word equally. Either way the inserted word is not tied to the sentence, so it is noisier than a
    synonym.
    """

    name = "random_insertion"
    DISTRIBUTIONS = ("unigram", "uniform")

    def __init__(self, *, alpha: float = 0.1, n: int | None = None, distribution: str = "unigram"):
        self.alpha = self.check_probability("alpha", alpha)
        self.n = self.check_count("n", n)
        if distribution not in self.DISTRIBUTIONS:
            raise AugmentationError(
                f"Augmentation {self.name!r}: unknown `distribution` {distribution!r}. "
                f"Choose one of: {', '.join(self.DISTRIBUTIONS)}."
            )
        self.distribution = distribution
        self.vocabulary: list[str] = []

    def fit(self, texts: Sequence[list[str]]) -> None:
        occurrences = [word for words in texts for word in words]
        # dict keeps first-occurrence order: a set's order depends on PYTHONHASHSEED and would break reproducibility
        self.vocabulary = occurrences if self.distribution == "unigram" else list(dict.fromkeys(occurrences))

    def augment_words(self, words: list[str], rng: random.Random) -> list[str]:
        if not self.vocabulary:
            raise AugmentationError(
                f"Augmentation {self.name!r} was not fitted: call `fit(texts)` with the dataset first."
            )
        words = list(words)
        for _ in range(self.n or max(1, int(self.alpha * len(words)))):
            words.insert(rng.randint(0, len(words)), rng.choice(self.vocabulary))
        return words
