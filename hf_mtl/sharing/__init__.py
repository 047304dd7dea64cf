"""Parameter-sharing schemes, one file each, registered under the key used in `MultiTaskConfig.sharing`:
`hard` (default), `lora`, `shared_private`, `hierarchical`, and the learned ones `mmoe`, `ple` (softmax-gated
experts) and `adashare` (per-task layer skipping)."""

from .adashare import AdaShareSharing, SkippableLayer
from .base import SHARING, EncodedBatch, SharingScheme
from .experts import ExpertMixtureLayer, FeedForwardExpert, MMoESharing, PLESharing
from .hard import HardSharing
from .hierarchical import GroupRoutedLayer, HierarchicalSharing
from .lora import LoraSharing
from .shared_private import PrivateEncoder, SharedPrivateSharing


__all__ = [
    "AdaShareSharing",
    "ExpertMixtureLayer",
    "FeedForwardExpert",
    "MMoESharing",
    "PLESharing",
    "SkippableLayer",
    "SHARING",
    "EncodedBatch",
    "GroupRoutedLayer",
    "HardSharing",
    "HierarchicalSharing",
    "LoraSharing",
    "PrivateEncoder",
    "SharedPrivateSharing",
    "SharingScheme",
]
