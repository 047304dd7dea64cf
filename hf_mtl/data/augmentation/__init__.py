"""Offline, label-preserving data augmentation for low-resource tasks, one module per method.

Sentence-level tasks get EDA's random deletion / swap / insertion (Wei & Zou, EMNLP 2019); token classification
gets label-wise token replacement, mention replacement and shuffle within segments (Dai & Adel, COLING 2020).
"""

from .base import (
    AUGMENTATIONS,
    Augmentation,
    AugmentationError,
    SequenceAugmentation,
    TokenAugmentation,
    methods_for_type,
)
from .config import AugmentationConfig
from .dataset import augment_dataset
from .label_wise_token_replacement import LabelWiseTokenReplacement
from .mention_replacement import MentionReplacement
from .random_deletion import RandomDeletion
from .random_insertion import RandomInsertion
from .random_swap import RandomSwap
from .shuffle_within_segments import ShuffleWithinSegments


__all__ = [
    "AUGMENTATIONS",
    "Augmentation",
    "AugmentationConfig",
    "AugmentationError",
    "LabelWiseTokenReplacement",
    "MentionReplacement",
    "RandomDeletion",
    "RandomInsertion",
    "RandomSwap",
    "SequenceAugmentation",
    "ShuffleWithinSegments",
    "TokenAugmentation",
    "augment_dataset",
    "methods_for_type",
]
