"""`MetaLearningArguments`: every knob of meta-training, readable by `HfArgumentParser` (YAML, JSON, CLI)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field

from .algorithms import META_ALGORITHMS


INNER_ADAPT_CHOICES = ("all", "head")
EPISODE_HEAD_CHOICES = ("fresh", "task")
TASK_SAMPLING_CHOICES = ("uniform", "proportional")
META_OPTIMIZERS = ("adamw", "sgd")


@dataclass
class MetaLearningArguments:
    r"""
    Arguments of [`MetaTrainer`].

    What is meta-learned: the shared encoder (and, with `episode_head="task"`, the meta-training tasks' own heads).
    What is not: a new task's head, which cannot exist before its labels do. With `episode_head="fresh"` (default)
    every episode starts from a newly initialised head, exactly as a held-out task will, so the encoder learns to
    be a good starting point *for a fresh head*; those heads are thrown away after the episode.
    """

    output_dir: str = field(metadata={"help": "Where checkpoints and the final meta-trained model are written."})
    algorithm: str = field(default="fomaml", metadata={"help": "fomaml, reptile or maml (second order; more memory)."})
    meta_steps: int = field(default=100, metadata={"help": "Outer (meta) optimizer steps."})
    meta_batch_size: int = field(default=4, metadata={"help": "Episodes (tasks drawn with replacement) per meta step."})
    meta_lr: float = field(default=3e-5, metadata={"help": "Learning rate of the outer optimizer."})
    meta_optimizer: str = field(
        default="adamw",
        metadata={"help": "Outer optimizer: adamw, or sgd (plain Reptile / MAML updates θ ← θ - meta_lr · g)."},
    )
    weight_decay: float = field(default=0.0, metadata={"help": "Weight decay of the outer AdamW optimizer."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Clip the meta-gradient to this norm (0 disables)."})
    inner_steps: int = field(default=5, metadata={"help": "Inner-loop SGD steps on the support set."})
    inner_lr: float = field(default=1e-3, metadata={"help": "Inner-loop SGD learning rate of the encoder."})
    inner_head_lr: float | None = field(
        default=1e-1,
        metadata={"help": "Inner-loop SGD learning rate of the episode head (a fresh head needs larger steps); None = inner_lr."},
    )
    k_shot: int = field(default=8, metadata={"help": "Support examples per episode (balanced over labels for single-label tasks)."})
    query_size: int = field(default=16, metadata={"help": "Query examples per episode (disjoint from the support set)."})
    inner_adapt: str = field(
        default="all",
        metadata={"help": "What the inner loop adapts: all (encoder + head) or head (ANIL, Raghu et al. 2020; not with reptile)."},
    )
    episode_head: str = field(
        default="fresh",
        metadata={"help": "fresh: a newly initialised head per episode (as a new task has); task: the task's own head, meta-learned too."},
    )
    task_sampling: str = field(default="uniform", metadata={"help": "How episodes pick tasks: uniform or proportional to size."})
    max_seq_length: int = field(default=128, metadata={"help": "Texts are truncated to this many tokens."})
    seed: int = field(default=42, metadata={"help": "Seed of model initialisation and episode sampling."})
    logging_steps: int = field(default=10, metadata={"help": "Log mean support/query losses every N meta steps."})
    save_steps: int = field(default=0, metadata={"help": "Save a checkpoint every N meta steps (0: only at the end)."})
    eval_steps: int = field(default=0, metadata={"help": "Run few-shot episodes on the eval data every N steps (0: never during training)."})
    eval_episodes: int = field(default=4, metadata={"help": "Evaluation episodes per task."})
    disable_tqdm: bool = field(default=False, metadata={"help": "Hide the progress bar."})
    use_cpu: bool = field(default=False, metadata={"help": "Run on the CPU even when an accelerator is available."})

    def __post_init__(self):
        if self.algorithm not in META_ALGORITHMS:
            raise ValueError(META_ALGORITHMS.unknown_message(self.algorithm))
        for name, choices in (
            ("inner_adapt", INNER_ADAPT_CHOICES),
            ("episode_head", EPISODE_HEAD_CHOICES),
            ("task_sampling", TASK_SAMPLING_CHOICES),
            ("meta_optimizer", META_OPTIMIZERS),
        ):
            if getattr(self, name) not in choices:
                raise ValueError(f"Unknown {name} {getattr(self, name)!r}. Choose one of: {', '.join(choices)}.")
        for name in ("meta_steps", "meta_batch_size", "inner_steps", "k_shot", "logging_steps", "eval_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        for name in ("query_size", "save_steps", "eval_steps", "weight_decay", "max_grad_norm"):
            if getattr(self, name) < 0:
                raise ValueError(f"`{name}` must be >= 0, got {getattr(self, name)}.")
        if self.query_size < 1 and self.algorithm != "reptile":
            raise ValueError(f"{self.algorithm} learns from the query loss: query_size must be >= 1.")
        for name in ("meta_lr", "inner_lr"):
            if not getattr(self, name) > 0:
                raise ValueError(f"`{name}` must be > 0, got {getattr(self, name)}.")
        if self.inner_head_lr is not None and not self.inner_head_lr > 0:
            raise ValueError(f"`inner_head_lr` must be > 0 (or None to use inner_lr), got {self.inner_head_lr}.")
        if self.inner_adapt == "head" and not META_ALGORITHMS.get(self.algorithm).supports_frozen_inner:
            raise ValueError(
                f"{self.algorithm} moves the encoder only through the inner loop, so inner_adapt='head' would never "
                "change it. Use inner_adapt='all', or algorithm='fomaml' for a head-only inner loop."
            )
        if self.max_seq_length < 2:
            raise ValueError(f"`max_seq_length` must be at least 2, got {self.max_seq_length}.")

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, directory: str, name: str = "meta_learning_args.json") -> None:
        os.makedirs(directory, exist_ok=True)
        with open(os.path.join(directory, name), "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)
