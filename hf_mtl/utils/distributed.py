"""Process-group helpers: the one test every collective in hf_mtl is guarded by, and a clean teardown."""

from __future__ import annotations

import gc

import torch.distributed as dist


def is_distributed() -> bool:
    """True inside an initialised process group of more than one process (DDP, FSDP under torchrun / accelerate)."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def end_process_group(*, wait_for_others: bool = True) -> None:
    """Destroy the default process group once nothing holds it any more, so its threads stop now.

    `destroy_process_group` only unregisters the group: a trainer's DDP wrapper and reducer still hold it, in
    reference cycles that may live until interpreter exit, and a gloo group torn down there can abort a finished
    run ("terminate called without an active exception", exit code -6 under torchrun). So the cycles are collected
    first; callers drop their own references to the trainer before calling. With `wait_for_others` (after a run
    that ended normally; not while handling an error, when another process may never arrive) every process waits
    at a barrier first, so none tears its connections down while another still uses them. A no-op without a group.
    """
    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait_for_others and dist.get_world_size() > 1:
        dist.barrier()
    gc.collect()
    dist.destroy_process_group()
