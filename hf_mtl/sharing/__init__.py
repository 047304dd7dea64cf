"""Parameter-sharing schemes, one file each, registered under the key used in `MultiTaskConfig.sharing`:
`hard` (default), `lora`, `shared_private`, `hierarchical`."""

from .base import SHARING, EncodedBatch, SharingScheme
from .hard import HardSharing
from .hierarchical import GroupRoutedLayer, HierarchicalSharing
from .lora import LoraSharing
from .shared_private import PrivateEncoder, SharedPrivateSharing


__all__ = [
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
