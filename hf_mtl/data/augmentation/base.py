"""The augmentation contract, its registry, and the checks shared by every method.

Methods work on RAW examples (whitespace words for sentence-level tasks, pre-split tokens and string tags for
token classification), never on sub-word ids: labels must survive the edit, and that is only checkable before
tokenization. Every method draws from a `random.Random` handed to it, so one seed reproduces a whole run and no
global RNG is touched.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Sequence
from typing import Any, ClassVar

from ...errors import HfMtlError
from ...utils.registry import Registry


SEQUENCE_TASK_TYPES = ("sequence_classification", "multi_label_classification", "regression")
TOKEN_TASK_TYPES = ("token_classification",)


class AugmentationError(HfMtlError):
    """Bad augmentation input: unknown method, unsupported task type, bad ratio, missing column, malformed row."""


class Augmentation:
    """Base class. Subclasses set `name` and `task_types`, register with `@AUGMENTATIONS.register(name)`, and take
    their hyperparameters as keyword arguments with the paper's defaults (validated in `__init__`).

    `fit` receives the whole dataset being augmented, so statistics (vocabulary, tokens per tag, mentions per
    type) come from the task's own training data and nothing external is needed.
    """

    name: ClassVar[str] = ""
    task_types: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def hyperparameters(cls) -> list[str]:
        """Keyword arguments the method accepts (used to route `augment_dataset(**method_kwargs)`)."""
        params = inspect.signature(cls.__init__).parameters.values()
        return [p.name for p in params if p.name != "self" and p.kind is p.KEYWORD_ONLY]

    def check_probability(self, key: str, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
            raise AugmentationError(
                f"Augmentation {self.name!r}: `{key}` must be a probability in [0, 1], got {value!r}."
            )
        return float(value)

    def check_count(self, key: str, value: Any) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise AugmentationError(
                f"Augmentation {self.name!r}: `{key}` must be a positive integer (or None to derive it from "
                f"`alpha` and the sentence length), got {value!r}."
            )
        return value


class SequenceAugmentation(Augmentation):
    """Edits one text (as a list of whitespace words); the row's label is copied untouched.

    A sentence pair is augmented one text at a time, each independently, so a pair label (entailment,
    similarity) is kept as in EDA's sentence-level setting (Wei & Zou, EMNLP 2019).
    """

    task_types = SEQUENCE_TASK_TYPES

    def fit(self, texts: Sequence[list[str]]) -> None:
        """Collect statistics from every text of the dataset (all text columns). Default: none needed."""

    def augment_words(self, words: list[str], rng: random.Random) -> list[str]:
        """Return the edited words; non-empty whenever `words` is non-empty."""
        raise NotImplementedError


class TokenAugmentation(Augmentation):
    """Edits one token sequence with its string tags and returns both, still aligned (Dai & Adel, COLING 2020)."""

    task_types = TOKEN_TASK_TYPES

    def fit(self, sentences: Sequence[tuple[list[str], list[str]]]) -> None:
        """Collect statistics from every (tokens, tags) row of the dataset, in row order."""

    def augment_tokens(self, tokens: list[str], tags: list[str], rng: random.Random) -> tuple[list[str], list[str]]:
        raise NotImplementedError


AUGMENTATIONS: Registry[type[Augmentation]] = Registry("augmentation")
"""Method name (as in `augment_dataset(methods=...)` and a recipe's `augment: {methods: [...]}`) -> class."""


def methods_for_type(task_type: str) -> list[str]:
    """Registered methods that support `task_type` (also the default set for that type)."""
    return [name for name in AUGMENTATIONS if task_type in AUGMENTATIONS.get(name).task_types]


def supported_task_types() -> list[str]:
    return sorted({t for name in AUGMENTATIONS for t in AUGMENTATIONS.get(name).task_types})


def check_method_names(methods: Any) -> list[str] | None:
    """Normalise `methods` (None, one name, or a list of names) and reject unknown or repeated names."""
    if methods is None:
        return None
    if isinstance(methods, str):
        methods = [methods]
    if not isinstance(methods, (list, tuple)) or not methods:
        raise AugmentationError(
            f"`methods` must be a non-empty list of method names (or None for the task type's defaults), got "
            f"{methods!r}. Choose from: {', '.join(AUGMENTATIONS.choices())}."
        )
    for name in methods:
        if not isinstance(name, str) or name not in AUGMENTATIONS:
            raise AugmentationError(AUGMENTATIONS.unknown_message(name))
    repeated = sorted({name for name in methods if methods.count(name) > 1})
    if repeated:
        raise AugmentationError(f"`methods` lists {repeated} more than once; list each method once.")
    return list(methods)


def check_ratio(ratio: Any) -> float:
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0.0 <= ratio <= 1.0:
        raise AugmentationError(
            f"`ratio` must be a number in [0, 1] (new rows as a fraction of the dataset size, e.g. 0.5), got {ratio!r}."
        )
    return float(ratio)


def check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise AugmentationError(f"`seed` must be an integer, got {seed!r}.")
    return seed


def build_methods(names: list[str], method_kwargs: dict[str, Any]) -> list[Augmentation]:
    """Instantiate `names`, routing each keyword to the methods that accept it.

    A plain keyword (`p=0.2`) goes to every listed method with that hyperparameter; a keyword named after a method
    (`random_deletion={"p": 0.2}`) goes to that method only and wins over the plain one. A keyword no listed method
    accepts is an error, so a typo never silently keeps the default.
    """
    per_method = {key: value for key, value in method_kwargs.items() if key in AUGMENTATIONS}
    shared = {key: value for key, value in method_kwargs.items() if key not in AUGMENTATIONS}
    for key, value in per_method.items():
        if key not in names:
            raise AugmentationError(
                f"Hyperparameters given for method {key!r}, which is not among the methods used: {', '.join(names)}."
            )
        if not isinstance(value, dict):
            raise AugmentationError(
                f"Hyperparameters for method {key!r} must be a dict (e.g. {{'p': 0.2}}), got {value!r}."
            )
    accepted = {name: AUGMENTATIONS.get(name).hyperparameters() for name in names}
    unused = sorted(key for key in shared if not any(key in params for params in accepted.values()))
    if unused:
        known = "; ".join(f"{name}: {', '.join(params) or '(none)'}" for name, params in accepted.items())
        raise AugmentationError(
            f"No selected augmentation method accepts {unused}. Hyperparameters by method: {known}."
        )
    methods = []
    for name in names:
        kwargs = {key: value for key, value in shared.items() if key in accepted[name]}
        own = per_method.get(name, {})
        bad = sorted(key for key in own if key not in accepted[name])
        if bad:
            raise AugmentationError(
                f"Method {name!r} has no hyperparameter {bad}; it accepts: {', '.join(accepted[name]) or '(none)'}."
            )
        kwargs.update(own)
        methods.append(AUGMENTATIONS.get(name)(**kwargs))
    return methods
