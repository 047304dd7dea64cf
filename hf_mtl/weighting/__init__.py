"""Task-balancing strategies, one file per method, registered by name (see `base.py` for the contract).

Loss level (one backward pass): `static`, `uncertainty`, `dwa`, `famo`, `rep_norm`, `gradnorm_rep`. Gradient level (one gradient per task):
`gradnorm`, `pcgrad`, `cagrad`. Importing this package registers all of them in `WEIGHTINGS`.
"""

from .base import WEIGHTINGS, GradientWeighting, LossWeighting, WeightingStrategy, build_weighting
from .cagrad import CAGradWeighting
from .dwa import DWAWeighting
from .famo import FAMOWeighting
from .gradnorm import GradNormWeighting
from .gradnorm_rep import GradNormRepresentationWeighting
from .pcgrad import PCGradWeighting
from .rep_norm import RepresentationNormWeighting
from .static import StaticWeighting
from .uncertainty import UncertaintyWeighting


__all__ = [
    "WEIGHTINGS",
    "CAGradWeighting",
    "DWAWeighting",
    "FAMOWeighting",
    "GradNormRepresentationWeighting",
    "GradNormWeighting",
    "GradientWeighting",
    "LossWeighting",
    "PCGradWeighting",
    "RepresentationNormWeighting",
    "StaticWeighting",
    "UncertaintyWeighting",
    "WeightingStrategy",
    "build_weighting",
]
