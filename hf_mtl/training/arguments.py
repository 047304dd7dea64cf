"""`MultiTaskTrainingArguments`: `TrainingArguments` plus task sampling, batching, weighting and adversarial
settings, so `HfArgumentParser` reads everything from YAML, JSON or the command line."""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field

import torch
from transformers import TrainingArguments

from ..sampling import BATCHING_CHOICES, SAMPLERS
from ..sampling.batch_sampler import LENGTH_GROUP_STEPS
from ..weighting import WEIGHTINGS


ADVERSARIAL_SCHEDULES = ("constant", "ganin")


def _has_accelerator() -> bool:
    xpu = getattr(torch, "xpu", None)
    return torch.cuda.is_available() or bool(xpu and xpu.is_available()) or torch.backends.mps.is_available()

NON_FINITE_CHOICES = ("error", "skip")
LOSS_SCALING_CHOICES = ("none", "log_num_labels")


# `repr=False`: keep TrainingArguments' `__repr__`, which masks `*_token` fields (a generated one would print them).
@dataclass(repr=False)
class MultiTaskTrainingArguments(TrainingArguments):
    r"""
    [`TrainingArguments`] for [`MultiTaskTrainer`]. Every field of `TrainingArguments` keeps its meaning (epochs and
    `max_steps` count optimizer steps over the multi-task stream; `per_device_train_batch_size` is the number of rows
    per micro-batch); the fields below add the multi-task choices.

    Fields the multi-task path treats differently: `label_smoothing_factor` is applied by each classification head
    (refused when no head can smooth); `average_tokens_across_devices` does not apply (each task's loss is the mean
    over its own rows or tokens, and the weighting combines the task means); `train_sampling_strategy` takes
    "random" or "group_by_length" (rows of similar length share a step; each step keeps the tasks and row counts the
    task sampler drew), and `dataloader_drop_last` is refused (the task sampler builds every batch and keeps every row).
    """

    sampling: str = field(
        default="proportional",
        metadata={"help": f"How tasks are drawn (the SAMPLERS registry): {', '.join(SAMPLERS.choices())}.",
                  "choices": SAMPLERS.choices()},
    )
    sampling_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Sampler arguments as a dict or JSON string, e.g. {"temperature": 2.0}.'},
    )
    batching: str = field(
        default="per_task",
        metadata={
            "help": "per_task: each optimizer step trains one sampled task (the same on every process); "
            "mixed: each micro-batch mixes rows of several tasks in one encoder pass (needed by gradient surgery).",
            "choices": list(BATCHING_CHOICES),
        },
    )
    weighting: str = field(
        default="static",
        metadata={"help": f"Task balancing (the WEIGHTINGS registry): {', '.join(WEIGHTINGS.choices())}.",
                  "choices": WEIGHTINGS.choices()},
    )
    weighting_kwargs: dict | str | None = field(
        default=None,
        metadata={"help": 'Strategy hyperparameters as a dict or JSON string, e.g. {"weights": {"sst2": 2.0}}.'},
    )
    weighting_lr: float | None = field(
        default=None,
        metadata={"help": "Learning rate of learnable task weights (defaults to the strategy's own default)."},
    )
    head_lr_multiplier: float = field(
        default=10.0,
        metadata={
            "help": "Learning rate of the task heads (and task embeddings) = learning_rate x this. Heads start random "
            "under a pretrained encoder; a larger rate lets them catch up within a short budget."
        },
    )
    loss_scaling: str = field(
        default="none",
        metadata={
            "help": "Scale each task's loss before weighting: none, or log_num_labels (divide a classification "
            "loss by log(number of labels), MUPPET, Aghajanyan et al. 2021, so many-label heads do not dominate).",
            "choices": list(LOSS_SCALING_CHOICES),
        },
    )
    refine_steps: int = field(
        default=0,
        metadata={
            "help": "Two-stage training (MT-DNN): after multi-task training, fine-tune each task's head alone for this "
            "many steps on its own rows, the shared encoder frozen, in the same checkpoint (so each head fits the final "
            "shared encoder that the other tasks moved under it); 0 = off. Recipes (`hf-mtl train`, `transfer-report`) "
            "default to 100."
        },
    )
    max_seq_length: int = field(
        default=128, metadata={"help": "Texts are truncated to this many tokens when the trainer tokenises raw data."}
    )
    adversarial_weight: float = field(
        default=0.0,
        metadata={
            "help": "Weight of the task-discriminator loss (Liu, Qiu & Huang 2017); > 0 needs a model built with "
            "`adversarial=True` in its config."
        },
    )
    adversarial_schedule: str = field(
        default="ganin",
        metadata={"help": "Gradient-reversal coefficient over training: constant (1.0) or ganin (2/(1+exp(-10p))-1).",
                  "choices": list(ADVERSARIAL_SCHEDULES)},
    )
    orthogonality_weight: float = field(
        default=0.0,
        metadata={"help": "Weight of the shared/private orthogonality loss (shared-private models only)."},
    )
    task_affinity_steps: int = field(
        default=0,
        metadata={
            "help": "Measure inter-task affinity (TAG lookahead, Fifty et al. 2021) every N optimizer steps and write "
            "task_affinity.json / .png with suggested task groups to output_dir; 0 = off."
        },
    )
    task_affinity_lr: float | None = field(
        default=None,
        metadata={"help": "Learning rate of the affinity lookahead SGD step (defaults to learning_rate)."},
    )
    task_affinity_batch_size: int | None = field(
        default=None,
        metadata={"help": "Rows per task in each affinity measurement (defaults to per_device_train_batch_size)."},
    )
    task_affinity_groups: int | None = field(
        default=None,
        metadata={"help": "Number of task groups to suggest from the affinity matrix (default: the best number)."},
    )
    non_finite_loss: str = field(
        default="error",
        metadata={"help": "On a NaN/inf task loss: error (stop, naming the task and step) or skip (drop the step, log it).",
                  "choices": list(NON_FINITE_CHOICES)},
    )

    _VALID_DICT_FIELDS = TrainingArguments._VALID_DICT_FIELDS + ["sampling_kwargs", "weighting_kwargs"]

    def __getstate__(self):
        """Pickles carry no secrets: Trainer saves these arguments as `training_args.bin` in every checkpoint and
        pushes it to the Hub, so `*_token` fields (`hub_token`) are pickled as `None`. Unpickled arguments then fall
        back to `HF_TOKEN` / the `hf auth login` cache, as when no token is given. Copies keep the token."""
        state = dict(self.__dict__)
        for name in state:
            if name.endswith("_token"):
                state[name] = None
        return state

    def __copy__(self):
        clone = type(self).__new__(type(self))
        clone.__dict__.update(self.__dict__)
        return clone

    def __deepcopy__(self, memo):
        import copy

        clone = type(self).__new__(type(self))
        memo[id(self)] = clone
        clone.__dict__.update(copy.deepcopy(dict(self.__dict__), memo))
        return clone

    def __post_init__(self):
        if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not self.use_cpu and not _has_accelerator():
            # Launched with several processes (torchrun / accelerate launch) on a machine without GPUs: without
            # `use_cpu`, Trainer silently runs N independent single-process trainings. Train data-parallel on CPU.
            self.use_cpu = True
        if self.label_names is None:
            # Trainer would take every forward argument with "label" in its name; `joint_labels` rides along with
            # the batch only in training, so evaluation must look for `labels` alone.
            self.label_names = ["labels"]
        if self.ddp_find_unused_parameters is None:
            # One task per step leaves the other heads without gradients; DDP must not wait for them.
            self.ddp_find_unused_parameters = True
        # Parsed before TrainingArguments' own pass over `_VALID_DICT_FIELDS`, whose JSON error does not name the field.
        for name in ("sampling_kwargs", "weighting_kwargs"):
            value = getattr(self, name)
            if isinstance(value, str):
                try:
                    value = json.loads(value) if value.strip() else {}
                except json.JSONDecodeError as error:
                    raise ValueError(f"`{name}` must be a dict or a JSON object string, got {value!r} ({error}).") from None
            if value is not None and not isinstance(value, dict):
                raise ValueError(f"`{name}` must be a dict or a JSON object string, got {type(value).__name__}.")
            setattr(self, name, dict(value or {}))
        # Checked before Trainer's own pass, whose errors for these come late (torch's "Invalid layout" for an
        # accumulation of 0, the optimizer's for a NaN rate) and without the field's name.
        for name in ("per_device_train_batch_size", "per_device_eval_batch_size", "gradient_accumulation_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be at least 1, got {getattr(self, name)}.")
        if not 0 <= self.learning_rate < math.inf:
            raise ValueError(f"`learning_rate` must be a finite number >= 0, got {self.learning_rate}.")
        # Trainer features that the multi-task batch plan replaces: refused rather than silently ignored.
        if self.train_sampling_strategy not in ("random", "group_by_length"):
            raise ValueError(f"`train_sampling_strategy` {self.train_sampling_strategy!r} is not applied by "
                             "MultiTaskTrainer: its task sampler builds every batch (one task, or a mix of tasks; "
                             "choose it with `sampling`). Use 'random', or 'group_by_length' to batch rows of similar "
                             "length together (less padding, the same tasks per step).")
        if self.dataloader_drop_last:
            raise ValueError("`dataloader_drop_last` is not applied by MultiTaskTrainer: its task sampler keeps every "
                             "row (a task's last, smaller batch included). Set dataloader_drop_last=False.")
        if self.weighting_lr is not None and not 0 < self.weighting_lr < math.inf:
            raise ValueError(f"`weighting_lr` must be a finite number > 0 (or unset for the strategy's default), "
                             f"got {self.weighting_lr}.")
        super().__post_init__()
        if self.sampling not in SAMPLERS:
            raise ValueError(SAMPLERS.unknown_message(self.sampling))
        if self.weighting not in WEIGHTINGS:
            raise ValueError(WEIGHTINGS.unknown_message(self.weighting))
        if self.batching not in BATCHING_CHOICES:
            raise ValueError(f"Unknown batching {self.batching!r}. Choose one of: {', '.join(BATCHING_CHOICES)}.")
        if self.train_sampling_strategy == "group_by_length" and SAMPLERS.get(self.sampling).learns_from_training():
            raise ValueError(f"`train_sampling_strategy='group_by_length'` regroups {LENGTH_GROUP_STEPS} planned steps at "
                             f"a time, and sampling {self.sampling!r} changes its task probabilities at every step: "
                             "use another sampling, or train_sampling_strategy='random'.")
        if self.adversarial_schedule not in ADVERSARIAL_SCHEDULES:
            raise ValueError(
                f"Unknown adversarial_schedule {self.adversarial_schedule!r}. Choose one of: {', '.join(ADVERSARIAL_SCHEDULES)}."
            )
        if self.loss_scaling not in LOSS_SCALING_CHOICES:
            raise ValueError(f"Unknown loss_scaling {self.loss_scaling!r}. Choose one of: {', '.join(LOSS_SCALING_CHOICES)}.")
        if not self.head_lr_multiplier > 0:
            raise ValueError(f"`head_lr_multiplier` must be > 0 (1.0 = the encoder's learning rate), got {self.head_lr_multiplier}.")
        if self.non_finite_loss not in NON_FINITE_CHOICES:
            raise ValueError(f"Unknown non_finite_loss {self.non_finite_loss!r}. Choose one of: {', '.join(NON_FINITE_CHOICES)}.")
        for name in ("adversarial_weight", "orthogonality_weight"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.refine_steps < 0:
            raise ValueError(f"`refine_steps` must be >= 0 (0 = no refinement stage), got {self.refine_steps}.")
        if self.task_affinity_steps < 0:
            raise ValueError(f"`task_affinity_steps` must be >= 0 (0 = off), got {self.task_affinity_steps}.")
        if self.task_affinity_lr is not None and self.task_affinity_lr <= 0:
            raise ValueError(f"`task_affinity_lr` must be > 0, got {self.task_affinity_lr}.")
        for name in ("task_affinity_batch_size", "task_affinity_groups"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1 (or unset), got {getattr(self, name)}.")
        if self.max_seq_length < 2:
            raise ValueError(f"`max_seq_length` must be at least 2 (room for [CLS] and [SEP]), got {self.max_seq_length}.")
