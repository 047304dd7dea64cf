"""`TaskAffinityCallback`: measures TAG inter-task affinity during training (the measure, the grouping and the
files are in `hf_mtl.evaluation.affinity`)."""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from transformers import TrainerCallback
from transformers.utils import logging

from ...evaluation.affinity import AFFINITY_JSON, AFFINITY_PNG, lookahead_affinity, plot_affinity, suggest_groups


if TYPE_CHECKING:
    from .trainer_protocol import TrainerProtocol


logger = logging.get_logger(__name__)


class TaskAffinityCallback(TrainerCallback):
    """Measures TAG inter-task affinity every `args.task_affinity_steps` steps (see the module docstring).

    Added by `MultiTaskTrainer` when `task_affinity_steps > 0`. Only the main process measures and writes.
    """

    def __init__(self, trainer: TrainerProtocol):
        self.trainer = trainer
        args = trainer.args
        model = trainer.model
        self.task_names = list(model.config.task_names)
        if len(self.task_names) < 2:
            raise ValueError(f"Task affinity compares tasks: the model has {len(self.task_names)} task(s); set task_affinity_steps=0.")
        if not model.shared_parameters():
            raise ValueError(
                f"Task affinity measures how a step on one task's *shared* parameters changes the other tasks' losses, "
                f"but this model shares no trainable parameter (sharing={model.config.sharing!r}, e.g. LoRA with a frozen "
                "backbone). Set task_affinity_steps=0, or train the shared backbone (sharing_kwargs freeze_backbone=False)."
            )
        self.every = args.task_affinity_steps
        self.lr = args.task_affinity_lr if args.task_affinity_lr is not None else args.learning_rate
        self.batch_size = args.task_affinity_batch_size or args.per_device_train_batch_size
        self.num_groups = args.task_affinity_groups
        self.history: list[tuple[int, np.ndarray]] = []

    # ------------------------------------------------------------------ Trainer events

    def on_train_begin(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        path = os.path.join(args.output_dir, AFFINITY_JSON)
        if state.global_step > 0 and os.path.isfile(path):  # resumed: keep the measurements made before the checkpoint
            with open(path) as handle:
                saved = json.load(handle)
            if saved.get("tasks") == self.task_names:
                self.history = [
                    (step, np.asarray(matrix)) for step, matrix in zip(saved["steps"], saved["history"]) if step <= state.global_step
                ]

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and state.global_step % self.every == 0:
            self.history.append((state.global_step, self.measure(state.global_step)))
            self.write(args.output_dir, final=False)

    def on_train_end(self, args, state, control, **kwargs):
        if not state.is_world_process_zero:
            return
        if self.history:
            self.write(args.output_dir, final=True)
        else:
            logger.warning(
                f"No task affinity was measured: task_affinity_steps={self.every} but training ran {state.global_step} "
                "step(s). Lower task_affinity_steps."
            )

    # ------------------------------------------------------------------ measurement

    def _task_batch(self, task: str, step: int) -> dict[str, Any]:
        trainer = self.trainer
        dataset = trainer.task_train_datasets[task]
        generator = torch.Generator().manual_seed(trainer.args.seed * 100_003 + step * 101 + self.task_names.index(task))
        rows = torch.randperm(len(dataset), generator=generator)[: self.batch_size].tolist()
        collate = trainer.data_collator.for_task(task)
        return trainer._prepare_inputs(collate([dataset[i] for i in rows]))

    def measure(self, step: int = 0) -> np.ndarray:
        """One affinity matrix `z[i, j]` at the current parameters (restored exactly afterwards)."""
        model = self.trainer.model
        batches = {task: self._task_batch(task, step) for task in self.task_names}
        return lookahead_affinity(model, batches, self.task_names, self.lr)

    # ------------------------------------------------------------------ output

    def average(self) -> np.ndarray:
        return np.mean([matrix for _, matrix in self.history], axis=0)

    def write(self, output_dir: str, final: bool) -> dict[str, Any]:
        os.makedirs(output_dir, exist_ok=True)
        matrix = self.average()
        result = {
            "method": "TAG lookahead affinity z[i][j] = 1 - L_j(after an SGD step on task i) / L_j(before) "
            "(Fifty et al. 2021); rows: the task stepped on, columns: the task whose loss changes",
            "tasks": self.task_names,
            "affinity": matrix.tolist(),
            "num_measurements": len(self.history),
            "every_steps": self.every,
            "lookahead_lr": self.lr,
            "batch_size": self.batch_size,
            "steps": [step for step, _ in self.history],
            "history": [m.tolist() for _, m in self.history],
            "suggested_groups": suggest_groups(matrix, self.num_groups, self.task_names),
            "num_groups": self.num_groups,
        }
        path = os.path.join(output_dir, AFFINITY_JSON)
        with open(path + ".tmp", "w") as handle:
            json.dump(result, handle, indent=2)
        os.replace(path + ".tmp", path)  # a reader never sees half a file
        if final:
            plot_affinity(matrix, self.task_names, os.path.join(output_dir, AFFINITY_PNG), len(self.history))
            logger.info(f"Task affinity over {len(self.history)} measurement(s): suggested groups {result['suggested_groups']}.")
        return result
