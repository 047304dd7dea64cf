"""Task-balancing strategies, one file per method, registered by name (see `base.py` for the contract)."""

from .base import WEIGHTINGS, GradientWeighting, LossWeighting, WeightingStrategy, build_weighting


__all__ = ["WEIGHTINGS", "GradientWeighting", "LossWeighting", "WeightingStrategy", "build_weighting"]
