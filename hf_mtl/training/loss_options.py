"""Per-task loss options the trainer applies: MUPPET loss scaling and label smoothing of the cross-entropy heads."""

from __future__ import annotations

import math

from transformers.utils import logging


logger = logging.get_logger(__name__)


def task_loss_scales(specs, loss_scaling: str) -> dict[str, float]:
    """Per-task loss factors of `loss_scaling`: `log_num_labels` divides each classification loss by log(n) for n
    labels (MUPPET, Aghajanyan et al. 2021: a uniform guess then scores 1 whatever n is); regression keeps 1."""
    if loss_scaling == "none":
        return {}
    return {
        spec.name: 1.0 / math.log(spec.num_labels) if spec.type != "regression" and spec.num_labels >= 2 else 1.0
        for spec in specs
    }


def set_label_smoothing(model, factor: float) -> None:
    """`label_smoothing_factor` goes to each cross-entropy head (Trainer's own `LabelSmoother` never sees the
    per-task logits); regression and multi-label heads have no classes to smooth and are named in a warning."""
    smoothable = [name for name, head in model.heads.items() if head.smoothable]
    if factor > 0 and not smoothable:
        raise ValueError(
            f"label_smoothing_factor={factor} smooths cross-entropy losses, and no task of this model has one "
            f"({', '.join(f'{n}: {h.task_type}' for n, h in model.heads.items())}). Set label_smoothing_factor=0."
        )
    for head in model.heads.values():
        head.label_smoothing = factor if head.smoothable else 0.0
    others = [name for name in model.heads if name not in smoothable]
    if factor > 0 and others:
        logger.warning(f"label_smoothing_factor={factor} applies to {smoothable}; {others} have no classes to smooth.")
