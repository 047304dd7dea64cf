"""Whether this process trains alongside others: the one test every collective in hf_mtl is guarded by."""

from __future__ import annotations

import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process (DDP, FSDP under torchrun / accelerate)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1
