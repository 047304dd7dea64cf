"""Few-shot evaluation: adapt several encoders to a held-out task from k examples and compare them fairly.

For every model, every k in `shots` and every seed, the same procedure runs: a copy of the model gets the new task
(its head initialised from the seed, so all models start from the same head weights), the k support examples of
that seed (the same rows for every model; nested across k, balanced over labels, see `meta/episodes.py`) train it
for the same number of steps with the same optimizer and learning rates, and the held-out evaluation split is
scored. The result holds every run, the mean and spread per model and k, and renders as Markdown, JSON and a PNG
curve (main metric vs shots).

Typical comparison: the raw backbone (`MultiTaskModel.from_backbone`), a plain multi-task checkpoint and a
meta-trained one (see [`MetaTrainer`]).
"""

from __future__ import annotations

import copy
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np
import torch
from datasets import Dataset
from tqdm.auto import tqdm
from transformers import AutoConfig, AutoTokenizer, PreTrainedModel, get_scheduler

from ..configuration_multitask import MultiTaskConfig
from ..data import DataError, preprocess_task
from ..errors import HfMtlError, TaskError
from ..evaluation import compute_task_metrics, main_metric
from ..modeling_multitask import MultiTaskModel
from ..tasks import TaskSpec
from .freezing import apply_freeze
from .meta.episodes import balanced_order, balancing_labels
from .meta.functional import EpisodeBatches


OPTIMIZERS = ("sgd", "adamw")
ADAPT_CHOICES = ("all", "head")
SCHEDULES = ("constant", "linear")


@dataclass
class FewShotConfig:
    r"""
    How every model is adapted (identically) to the held-out task.

    Args:
        shots (`list[int]`): support-set sizes k (examples in total, balanced over labels for single-label tasks).
        seeds (`list[int]`): one run per seed and k; the seed fixes the head initialisation, the k examples, the
            mini-batch order and dropout.
        steps (`int`): optimizer steps on the support set.
        optimizer (`str`): `sgd` (the inner loop of [`MetaTrainer`]) or `adamw`.
        lr (`float`): learning rate of the encoder; head_lr (`float`, *optional*): of the new head (defaults to `lr`).
        lr_scheduler_type (`str`): `constant` (the inner loop of [`MetaTrainer`]) or `linear` (decay to 0 after the
            warm-up, Transformers' default schedule).
        warmup_ratio (`float`): share of `steps` over which the learning rates rise from 0; fine-tuning a random
            head without it sends its first, largest gradients straight into the pretrained encoder.
        max_grad_norm (`float`, *optional*): clip the gradient to this norm (Transformers' default is 1.0); `None`
            leaves it unclipped.
        batch_size (`int`): support examples per step (the whole support set when k is smaller).
        adapt (`str`): `all` (encoder + head) or `head` (the encoder stays frozen: a linear-probe baseline).
        max_seq_length (`int`): truncation of the texts.
        max_eval_samples (`int`, *optional*): score at most this many evaluation rows (a fixed subset).
        eval_batch_size (`int`): rows per evaluation batch.
    """

    shots: list[int] = field(default_factory=lambda: [8, 16, 32])
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    steps: int = 10
    optimizer: str = "sgd"
    lr: float = 1e-3
    head_lr: float | None = 1e-1
    lr_scheduler_type: str = "constant"
    warmup_ratio: float = 0.0
    max_grad_norm: float | None = None
    batch_size: int = 32
    adapt: str = "all"
    max_seq_length: int = 128
    max_eval_samples: int | None = None
    eval_batch_size: int = 64

    def __post_init__(self):
        self.shots = sorted({int(k) for k in self.shots})
        self.seeds = list(dict.fromkeys(int(s) for s in self.seeds))
        if not self.shots or self.shots[0] < 1:
            raise ValueError(f"`shots` must be positive numbers of examples, e.g. 8,16,32; got {self.shots}.")
        if not self.seeds:
            raise ValueError("Give at least one seed.")
        if self.optimizer not in OPTIMIZERS:
            raise ValueError(f"Unknown optimizer {self.optimizer!r}. Choose one of: {', '.join(OPTIMIZERS)}.")
        if self.lr_scheduler_type not in SCHEDULES:
            raise ValueError(
                f"Unknown lr_scheduler_type {self.lr_scheduler_type!r}. Choose one of: {', '.join(SCHEDULES)}."
            )
        if not 0.0 <= self.warmup_ratio < 1.0:
            raise ValueError(f"`warmup_ratio` must be in [0, 1), got {self.warmup_ratio}; 0.1 warms up over 10% of the steps.")
        if self.max_grad_norm is not None and not self.max_grad_norm > 0:
            raise ValueError(f"`max_grad_norm` must be > 0 (or None for no clipping), got {self.max_grad_norm}.")
        if self.adapt not in ADAPT_CHOICES:
            raise ValueError(f"Unknown adapt {self.adapt!r}. Choose one of: {', '.join(ADAPT_CHOICES)}.")
        for name in ("steps", "batch_size", "eval_batch_size", "max_seq_length"):
            if getattr(self, name) < 1:
                raise ValueError(f"`{name}` must be >= 1, got {getattr(self, name)}.")
        if not self.lr > 0 or (self.head_lr is not None and not self.head_lr > 0):
            raise ValueError(f"Learning rates must be > 0, got lr={self.lr}, head_lr={self.head_lr}.")
        if self.max_eval_samples is not None and self.max_eval_samples < 1:
            raise ValueError(f"`max_eval_samples` must be >= 1, got {self.max_eval_samples}.")


def load_candidate(path: str, **kwargs) -> MultiTaskModel:
    """An hf_mtl checkpoint as is, or any other backbone checkpoint (plain BERT, MiniLM, ...) wrapped with no tasks."""
    config = AutoConfig.from_pretrained(path)
    if isinstance(config, MultiTaskConfig):
        return MultiTaskModel.from_pretrained(path, **kwargs)
    return MultiTaskModel.from_backbone(path, tasks=[], **kwargs)


@dataclass
class FewShotResult:
    """Every run (`runs`: model, shots, seed, metrics, support rows) and its aggregates (`summary()`)."""

    task: str
    metric: str
    config: dict[str, Any]
    models: list[str]
    runs: list[dict[str, Any]] = field(default_factory=list)
    task_spec: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[int, dict[str, float]]]:
        """`{model: {k: {"mean", "std", "min", "max", "n"}}}` of the main metric; std is the sample std (ddof=1)."""
        table: dict[str, dict[int, dict[str, float]]] = {}
        for model in self.models:
            for k in self.config["shots"]:
                values = np.array([r["metrics"][self.metric] for r in self.runs if r["model"] == model and r["shots"] == k])
                if values.size:
                    table.setdefault(model, {})[k] = {
                        "mean": float(values.mean()),
                        "std": float(values.std(ddof=1)) if values.size > 1 else 0.0,
                        "min": float(values.min()),
                        "max": float(values.max()),
                        "n": int(values.size),
                    }
        return table

    def to_dict(self) -> dict[str, Any]:
        summary = {model: {str(k): v for k, v in rows.items()} for model, rows in self.summary().items()}
        return {
            "task": self.task, "task_spec": self.task_spec, "metric": self.metric, "config": self.config,
            "models": self.models, "summary": summary, "runs": self.runs,
        }

    def to_markdown(self) -> str:
        shots = self.config["shots"]
        summary = self.summary()
        lines = [
            f"# Few-shot `{self.task}` ({self.metric}, mean ± std over {len(self.config['seeds'])} seed(s))",
            "",
            f"Adaptation: {self.config['steps']} {self.config['optimizer']} steps, lr {self.config['lr']}, head lr "
            f"{self.config['head_lr'] or self.config['lr']}{_schedule_text(self.config)}, adapt {self.config['adapt']}; "
            "the same k examples and head initialisation per seed for every model.",
            "",
            "| model | " + " | ".join(f"{k} shots" for k in shots) + " |",
            "|---|" + "---|" * len(shots),
        ]
        for model in self.models:
            cells = [f"{summary[model][k]['mean']:.4f} ± {summary[model][k]['std']:.4f}" if k in summary.get(model, {}) else "—" for k in shots]
            lines.append(f"| {model} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"

    def plot(self, path: str) -> str:
        """Main metric vs shots, one line per model with a ±1 std band; written as PNG to `path`."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        summary = self.summary()
        figure, axis = plt.subplots(figsize=(6, 4), dpi=120)
        for model in self.models:
            shots = sorted(summary.get(model, {}))
            means = np.array([summary[model][k]["mean"] for k in shots])
            stds = np.array([summary[model][k]["std"] for k in shots])
            axis.plot(shots, means, marker="o", label=model)
            axis.fill_between(shots, means - stds, means + stds, alpha=0.2)
        axis.set_xscale("log", base=2)
        axis.set_xticks(self.config["shots"], [str(k) for k in self.config["shots"]])
        axis.set_xlabel("shots (support examples)")
        axis.set_ylabel(self.metric)
        axis.set_title(f"Few-shot {self.task}: {self.metric} vs shots ({len(self.config['seeds'])} seeds, ±1 std)")
        axis.grid(alpha=0.3)
        axis.legend()
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        return path

    def save(self, output_dir: str) -> dict[str, str]:
        """Writes `few_shot.json`, `few_shot.md` and `few_shot.png`; returns their paths."""
        os.makedirs(output_dir, exist_ok=True)
        paths = {key: os.path.join(output_dir, f"few_shot.{key}") for key in ("json", "md", "png")}
        with open(paths["json"], "w") as handle:
            json.dump(self.to_dict(), handle, indent=2)
        with open(paths["md"], "w") as handle:
            handle.write(self.to_markdown())
        self.plot(paths["png"])
        return paths

    @classmethod
    def load(cls, path: str) -> FewShotResult:
        """The result `save` wrote: `path` is its folder or its `few_shot.json` (the summary is recomputed)."""
        if os.path.isdir(path):
            path = os.path.join(path, "few_shot.json")
        with open(path) as handle:
            saved = json.load(handle)
        return cls(**{f.name: saved[f.name] for f in fields(cls) if f.name in saved})


def _schedule_text(config: Mapping[str, Any]) -> str:
    """`, linear schedule, 10% warm-up, clipped at 1.0`; empty for the constant, unclipped inner loop (and old JSON)."""
    parts = []
    if config.get("lr_scheduler_type", "constant") != "constant":
        parts.append(f"{config['lr_scheduler_type']} schedule")
    if config.get("warmup_ratio", 0.0):
        parts.append(f"{config['warmup_ratio']:.0%} warm-up")
    if config.get("max_grad_norm") is not None:
        parts.append(f"clipped at {config['max_grad_norm']}")
    return "".join(f", {part}" for part in parts)


def few_shot_evaluate(
    models: Mapping[str, str | MultiTaskModel],
    task: TaskSpec | dict[str, Any],
    train_dataset: Dataset,
    eval_dataset: Dataset,
    processing_class=None,
    config: FewShotConfig | None = None,
    disable_tqdm: bool = False,
) -> FewShotResult:
    r"""
    Adapt each model to `task` from k examples (for every k and seed) and score it on `eval_dataset`.

    Args:
        models (`dict[str, str | MultiTaskModel]`): display name -> checkpoint directory (hf_mtl or plain backbone)
            or a loaded model. Models are copied per run; the originals are not changed.
        task ([`TaskSpec`] or `dict`): the held-out task; it must not be a task of any of the models.
        train_dataset (`Dataset`): the pool the k-shot support sets are drawn from (raw or tokenised).
        eval_dataset (`Dataset`): the held-out evaluation split.
        processing_class: tokenizer for models whose directory has none (and for loaded models).
        config ([`FewShotConfig`], *optional*): shots, seeds and the adaptation procedure.

    Returns:
        [`FewShotResult`].
    """
    config = config or FewShotConfig()
    spec = TaskSpec.from_any(task)
    metric = main_metric(spec)
    if not models:
        raise ValueError("Give at least one model to evaluate.")
    if len(train_dataset) < config.shots[-1]:
        raise DataError(
            f"shots={config.shots[-1]} is larger than the {len(train_dataset)} training examples of task {spec.name!r}. "
            f"Use shots up to {len(train_dataset)} or give more data."
        )
    loaded = {}
    for name, model in models.items():
        if isinstance(model, (str, os.PathLike)):
            tokenizer = _tokenizer_for(str(model), processing_class)
            model = load_candidate(str(model))
        elif isinstance(model, MultiTaskModel):
            tokenizer = processing_class
        else:
            raise TypeError(f"Model {name!r}: expected a checkpoint path or a MultiTaskModel, got {type(model).__name__}.")
        if tokenizer is None:
            raise ValueError(f"Model {name!r} needs a tokenizer: pass `processing_class`.")
        if spec.name in model.config.task_names:
            raise TaskError(
                f"Task {spec.name!r} is already a task of model {name!r} ({', '.join(model.config.task_names)}): few-shot "
                "evaluation needs a held-out task. Evaluate another task, or name this one differently."
            )
        loaded[name] = (model, tokenizer)

    result = FewShotResult(task=spec.name, metric=metric, config=asdict(config), models=list(loaded), task_spec=spec.to_dict())
    reference = preprocess_task(train_dataset, spec, next(iter(loaded.values()))[1], config.max_seq_length, "train")
    labels = balancing_labels(reference, spec)
    supports = {seed: balanced_order(labels, len(reference), torch.Generator().manual_seed(seed)) for seed in config.seeds}
    eval_rows = list(range(len(eval_dataset)))
    if config.max_eval_samples is not None and config.max_eval_samples < len(eval_rows):
        eval_rows = torch.randperm(len(eval_rows), generator=torch.Generator().manual_seed(0))[: config.max_eval_samples].tolist()

    progress = tqdm(total=len(loaded) * len(config.shots) * len(config.seeds), desc=f"Few-shot {spec.name}", disable=disable_tqdm)
    for name, (model, tokenizer) in loaded.items():
        train = preprocess_task(train_dataset, spec, tokenizer, config.max_seq_length, "train")
        evaluation = preprocess_task(eval_dataset.select(eval_rows), spec, tokenizer, config.max_seq_length, "eval")
        for k in config.shots:
            for seed in config.seeds:
                rows = supports[seed][:k]
                metrics = _adapt_and_score(model, tokenizer, spec, train, evaluation, rows, seed, config)
                result.runs.append({"model": name, "shots": k, "seed": seed, "metrics": metrics, "support_rows": rows})
                progress.update(1)
                progress.set_postfix({"model": name, "k": k, metric: f"{metrics[metric]:.3f}"})
    progress.close()
    return result


def _tokenizer_for(path: str, fallback):
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError):
        if fallback is None:
            raise HfMtlError(f"{path!r} has no tokenizer files; pass a tokenizer (`processing_class` / `--tokenizer`).") from None
        return fallback


def _adapt_and_score(base: PreTrainedModel, tokenizer, spec, train, evaluation, rows, seed, config) -> dict[str, float]:
    model = copy.deepcopy(base)
    device = next(model.parameters()).device
    torch.manual_seed(seed)  # the same head initialisation for every model of the same width
    model.add_task(spec)
    apply_freeze(model, "head" if config.adapt == "head" else None, tasks=[spec.name])
    trainable = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    head = [p for n, p in trainable if n.startswith("heads.")]
    body = [p for n, p in trainable if not n.startswith("heads.")]
    groups = [{"params": body, "lr": config.lr}, {"params": head, "lr": config.head_lr or config.lr}]
    groups = [group for group in groups if group["params"]]
    optimizer = torch.optim.SGD(groups) if config.optimizer == "sgd" else torch.optim.AdamW(groups, weight_decay=0.0)
    scheduler = get_scheduler(
        "constant_with_warmup" if config.lr_scheduler_type == "constant" else "linear",
        optimizer, num_warmup_steps=math.ceil(config.warmup_ratio * config.steps), num_training_steps=config.steps,
    )
    batches = EpisodeBatches(tokenizer, [spec], {"train": {spec.name: train}, "eval": {spec.name: evaluation}}, device)
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # dropout masks
    model.train()
    order: list[int] = []
    for _ in range(config.steps):
        if len(rows) <= config.batch_size:
            step_rows = rows
        else:
            if len(order) < config.batch_size:
                order += [rows[i] for i in torch.randperm(len(rows), generator=generator).tolist()]
            step_rows, order = order[: config.batch_size], order[config.batch_size :]
        loss = model(**batches(spec.name, step_rows)).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if config.max_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_([p for _, p in trainable], config.max_grad_norm)
        optimizer.step()
        scheduler.step()
    return _score(model, batches, spec, len(evaluation), config.eval_batch_size)


@torch.no_grad()
def _score(model, batches, spec, size, batch_size) -> dict[str, float]:
    model.eval()
    logits, labels = [], []
    for start in range(0, size, batch_size):
        batch = batches(spec.name, list(range(start, min(start + batch_size, size))), "eval")
        target = batch.pop("labels")
        logits.append(model(**batch).logits.float().cpu().numpy())
        labels.append(target.cpu().numpy())
    return compute_task_metrics(spec, *_concatenate(logits, labels))


def _concatenate(logits: Sequence[np.ndarray], labels: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Joins per-batch outputs; token-level outputs are padded to the longest batch (labels with -100)."""
    if labels[0].ndim < 2 or logits[0].ndim < 3:
        return np.concatenate(logits), np.concatenate(labels)
    width = max(array.shape[1] for array in labels)
    logits = [np.pad(a, ((0, 0), (0, width - a.shape[1]), (0, 0))) for a in logits]
    labels = [np.pad(a, ((0, 0), (0, width - a.shape[1])), constant_values=-100) for a in labels]
    return np.concatenate(logits), np.concatenate(labels)


__all__ = ["FewShotConfig", "FewShotResult", "few_shot_evaluate", "load_candidate"]
