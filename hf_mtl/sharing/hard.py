"""Hard parameter sharing (Caruana 1997): one encoder for every task, a head per task. The default."""

from __future__ import annotations

from .base import SHARING, SharingScheme


@SHARING.register("hard")
class HardSharing(SharingScheme):
    """Every encoder parameter is shared; the encoder runs once on the whole batch, whatever tasks it mixes.

    The base class already implements this behaviour; the class exists so `sharing="hard"` is a registry key
    like the others.
    """

    name = "hard"
    encodes_per_task = False
