"""Label-wise token replacement, LwTR (Dai & Adel, COLING 2020, "An Analysis of Simple Data Augmentation for
Named Entity Recognition", section 3)."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Sequence
from itertools import accumulate

from .base import AUGMENTATIONS, AugmentationError, TokenAugmentation


@AUGMENTATIONS.register("label_wise_token_replacement")
class LabelWiseTokenReplacement(TokenAugmentation):
    """Replaces each token with probability `p` (default 0.3, the reference code's `replace_ratio`) by a token drawn
    from the training tokens with the same tag, weighted by frequency. The tag sequence is unchanged, so alignment,
    BIO validity and entity types hold by construction.

    Deviation from the reference code: it skips NLTK English stopwords; we replace any token (no external
    resource, any language). The draw may return the original token, as in the paper's distribution sampling.
    Works with any tag scheme (BIO, IOBES, IO) since tags are matched exactly.
    """

    name = "label_wise_token_replacement"

    def __init__(self, *, p: float = 0.3):
        self.p = self.check_probability("p", p)
        self.pools: dict[str, tuple[list[str], list[int]]] = {}

    def fit(self, sentences: Sequence[tuple[list[str], list[str]]]) -> None:
        counts: dict[str, Counter] = {}
        for tokens, tags in sentences:
            for token, tag in zip(tokens, tags):
                counts.setdefault(tag, Counter())[token] += 1
        # Counter keeps insertion order, so the pools (and the draws) do not depend on PYTHONHASHSEED
        self.pools = {tag: (list(c), list(accumulate(c.values()))) for tag, c in counts.items()}

    def augment_tokens(self, tokens: list[str], tags: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
        new_tokens = []
        for token, tag in zip(tokens, tags):
            if rng.random() < self.p:
                if tag not in self.pools:
                    raise AugmentationError(
                        f"Augmentation {self.name!r}: tag {tag!r} was not seen by `fit`; "
                        "fit on the dataset you augment."
                    )
                candidates, cum_weights = self.pools[tag]
                token = rng.choices(candidates, cum_weights=cum_weights)[0]
            new_tokens.append(token)
        return new_tokens, list(tags)
