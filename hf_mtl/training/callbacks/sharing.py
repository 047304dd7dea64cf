"""`SharingCallback`: drives the sharing scheme's training hooks (temperature annealing, the end of a search phase,
its files at the end of training)."""

from __future__ import annotations

from transformers import TrainerCallback
from transformers.utils import logging


logger = logging.get_logger(__name__)


class SharingCallback(TrainerCallback):
    """Calls the sharing scheme's training hooks (`SharingScheme.on_step_begin` / `on_train_end`); added by
    `MultiTaskTrainer` for every model (the hooks of fixed schemes do nothing). It holds nothing: the model comes with
    each event, as Trainer passes it to every callback. Training logs are added by the trainer's `log` (a callback
    cannot change what is logged)."""

    def on_step_begin(self, args, state, control, model=None, **kwargs):
        model.sharing.on_step_begin(model, state.global_step, state.max_steps)

    def on_train_end(self, args, state, control, model=None, **kwargs):
        written = model.sharing.on_train_end(model, args.output_dir, write=state.is_world_process_zero)
        for path in written:
            logger.info(f"sharing={model.config.sharing!r}: wrote {path}")
