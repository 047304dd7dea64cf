"""`AugmentationConfig`: a recipe's `augment:` entry, checked when the recipe is read rather than mid-run."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from datasets import Dataset

from ...tasks import TaskSpec
from .base import AUGMENTATIONS, AugmentationError, build_methods, check_method_names, check_ratio, check_seed
from .dataset import augment_dataset


@dataclass
class AugmentationConfig:
    """How to augment one task's training split.

    Args:
        methods: method names, or `None` for every method of the task's type.
        ratio: new rows as a fraction of the split size, in [0, 1]. Default 1.0: one augmented copy per sentence,
            the setting of Dai & Adel (COLING 2020).
        seed: seed of the whole augmentation run.
        kwargs: method hyperparameters, e.g. `{"p": 0.2}` or `{"random_deletion": {"p": 0.2}}`.

    Example (recipe YAML): `augment: {ratio: 0.5, methods: [random_swap, random_deletion], kwargs: {alpha: 0.2}}`.
    """

    methods: list[str] | None = None
    ratio: float = 1.0
    seed: int = 0
    kwargs: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        self.methods = check_method_names(self.methods)
        self.ratio = check_ratio(self.ratio)
        self.seed = check_seed(self.seed)
        if not isinstance(self.kwargs, dict):
            raise AugmentationError(f"`kwargs` must be a dict of method hyperparameters, got {self.kwargs!r}.")
        # Builds the methods once so unknown or out-of-range hyperparameters fail now; with `methods=None` the task
        # type is not known yet, so keywords are checked against every registered method.
        build_methods(self.methods or AUGMENTATIONS.choices(), self.kwargs)

    @classmethod
    def from_dict(cls, entry: dict[str, Any]) -> AugmentationConfig:
        """Parse a recipe's `augment:` mapping; unknown keys are errors (hyperparameters go under `kwargs`)."""
        if not isinstance(entry, dict):
            raise AugmentationError(
                f"An `augment:` entry is a mapping like {{ratio: 0.5, methods: [random_swap]}}, got {entry!r}."
            )
        known = sorted(cls.__dataclass_fields__)
        unknown = sorted(set(entry) - set(known))
        if unknown:
            raise AugmentationError(
                f"Unknown `augment:` keys {unknown}; known keys: {', '.join(known)} (method hyperparameters go under "
                "`kwargs`, e.g. kwargs: {p: 0.2})."
            )
        return cls(**entry)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def apply(self, dataset: Dataset, task: TaskSpec | dict[str, Any]) -> Dataset:
        return augment_dataset(dataset, task, self.ratio, self.methods, self.seed, **self.kwargs)
