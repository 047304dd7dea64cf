"""`MetaTrainer`: meta-trains a multi-task model's shared encoder so that a few SGD steps on a few examples of a
new task reach good accuracy (FOMAML, Reptile, second-order MAML; see `algorithms.py`).

One meta step draws `meta_batch_size` episodes (a task, a k-shot support set, a disjoint query set), runs the inner
loop on each from the episode head, averages the episodes' meta-gradients into `.grad` and takes one outer optimizer
step. The result is saved with `save_pretrained`, so `MultiTaskModel.from_pretrained` (and `hf-mtl few-shot`)
load it like any multi-task checkpoint.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping

import numpy as np
import torch
from accelerate import Accelerator
from datasets import Dataset
from tqdm.auto import tqdm
from transformers.utils import logging

from ...data import DataError, preprocess_task
from ...errors import TaskError
from ...evaluation import compute_task_metrics, main_metric
from ...modeling_multitask import MultiTaskModel
from .algorithms import META_ALGORITHMS, InnerLoop, adapt
from .arguments import MetaLearningArguments
from .episodes import balancing_labels, sample_episode
from .functional import EpisodeBatches, episode_head, logits_fn, loss_fn


logger = logging.get_logger(__name__)

STATE_FILE = "meta_trainer_state.json"
OPTIMIZER_FILE = "meta_optimizer.pt"


class MetaTrainer:
    r"""
    Meta-trains a [`MultiTaskModel`] over its tasks.

    Args:
        model ([`MultiTaskModel`]): the model; every task with training data takes part in meta-training.
            Parameters with `requires_grad=False` stay fixed (freeze with [`apply_freeze`] first if you want to).
        args ([`MetaLearningArguments`]): the algorithm and its settings.
        train_dataset (`dict[str, Dataset]`): per-task training data (raw or tokenised), the episode source.
        processing_class: the tokenizer.
        eval_dataset (`dict[str, Dataset]`, *optional*): per-task data for few-shot evaluation episodes.

    Example:

    ```python
    >>> args = MetaLearningArguments(output_dir="meta", algorithm="fomaml", meta_steps=200, k_shot=8)
    >>> MetaTrainer(model, args, {"sst2": sst2, "ner": ner}, tokenizer).train()
    >>> MultiTaskModel.from_pretrained("meta")  # the meta-trained encoder, ready for few-shot adaptation
    ```
    """

    def __init__(
        self,
        model: MultiTaskModel,
        args: MetaLearningArguments,
        train_dataset: Mapping[str, Dataset],
        processing_class,
        eval_dataset: Mapping[str, Dataset] | None = None,
    ):
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"MetaTrainer trains a hf_mtl.MultiTaskModel, got {type(model).__name__}.")
        if not isinstance(args, MetaLearningArguments):
            raise TypeError(f"MetaTrainer needs MetaLearningArguments, got {type(args).__name__}.")
        if processing_class is None:
            raise ValueError("Pass `processing_class` (the tokenizer): episodes are tokenised and padded with it.")
        self.model, self.args, self.tokenizer = model, args, processing_class
        self.accelerator = Accelerator(cpu=args.use_cpu)
        if self.accelerator.num_processes > 1:
            raise RuntimeError("MetaTrainer runs in one process; launch it without torchrun / accelerate multi-process.")
        self.specs = {spec.name: spec for spec in model.config.task_specs}
        self.train_data = self._prepare(train_dataset, "train", args.k_shot + args.query_size)
        if not self.train_data:
            raise TaskError(f"Meta-training needs training data for at least one task of the model ({', '.join(self.specs)}).")
        self.eval_data = self._prepare(eval_dataset or {}, "eval", args.k_shot + args.query_size)
        self.task_names = [name for name in model.config.task_names if name in self.train_data]
        self.balancing = {
            split: {name: balancing_labels(data, self.specs[name]) for name, data in datasets.items()}
            for split, datasets in (("train", self.train_data), ("eval", self.eval_data))
        }
        self.model.to(self.accelerator.device)
        splits = {"train": self.train_data, "eval": self.eval_data}
        self.batches = EpisodeBatches(processing_class, list(self.specs.values()), splits, self.accelerator.device)
        self.algorithm = META_ALGORITHMS.get(args.algorithm)()
        self.inner = InnerLoop(args.inner_steps, args.inner_lr, args.inner_head_lr)
        self.meta_parameters = self._meta_parameters()
        self.optimizer = self._build_optimizer()
        self.generator = torch.Generator().manual_seed(args.seed)
        self.global_step = 0
        self.log_history: list[dict] = []

    # ------------------------------------------------------------------ setup

    def _prepare(self, datasets: Mapping[str, Dataset], split: str, needed: int) -> dict[str, Dataset]:
        unknown = sorted(set(datasets) - set(self.specs))
        if unknown:
            raise TaskError(
                f"Task(s) {unknown} in the {split} data are not tasks of the model ({', '.join(self.specs)}). "
                "Add them with `model.add_task(...)` or drop them from the data."
            )
        prepared = {}
        for name, dataset in datasets.items():
            data = preprocess_task(dataset, self.specs[name], self.tokenizer, self.args.max_seq_length, split)
            if len(data) < needed:
                raise DataError(
                    f"Task {name!r} ({split}) has {len(data)} examples; an episode needs k_shot + query_size = {needed}. "
                    "Lower k_shot / query_size or give the task more data."
                )
            prepared[name] = data
        return prepared

    def _meta_parameters(self) -> dict[str, torch.nn.Parameter]:
        """The encoder (and, with `episode_head='task'`, the meta-training tasks' heads): what the outer step moves."""
        params = {}
        for name, parameter in self.model.named_parameters():
            if not parameter.requires_grad:
                continue
            if name.startswith("encoder.") or (
                self.args.episode_head == "task" and any(name.startswith(f"heads.{t}.") for t in self.task_names)
            ):
                params[name] = parameter
        if not params:
            raise ValueError("No trainable encoder parameter to meta-learn: every encoder parameter has requires_grad=False.")
        return params

    def _build_optimizer(self) -> torch.optim.Optimizer:
        params = list(self.meta_parameters.values())
        if self.args.meta_optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.args.meta_lr)
        return torch.optim.AdamW(params, lr=self.args.meta_lr, weight_decay=self.args.weight_decay)

    # ------------------------------------------------------------------ one episode

    def episode_gradients(self, task: str, support: list[int], query: list[int], split: str = "train"):
        """Meta-gradients (`{name: tensor}`) and metrics of one episode of `task` on the given rows."""
        spec = self.specs[task]
        support_batch = self.batches(task, support, split)
        query_batch = self.batches(task, query, split) if query else None
        with episode_head(self.model, spec, fresh=self.args.episode_head == "fresh") as head:
            head_names = {f"heads.{task}.{name}" for name, _ in head.named_parameters()}
            encoder_names = {n for n in self.meta_parameters if n.startswith("encoder.")}
            adapt_names = head_names | (encoder_names if self.args.inner_adapt == "all" else set())
            meta_names = [n for n in self.meta_parameters if n.startswith("encoder.") or n in head_names]
            params = {n: p for n, p in self.model.named_parameters() if n in adapt_names or n in meta_names}
            return self.algorithm.meta_gradients(
                params,
                adapt_names,
                meta_names,
                loss_fn(self.model, support_batch),
                loss_fn(self.model, query_batch) if query_batch is not None else None,
                self.inner,
            )

    def _draw_task(self) -> str:
        if self.args.task_sampling == "uniform":
            weights = torch.ones(len(self.task_names))
        else:
            weights = torch.tensor([len(self.train_data[name]) for name in self.task_names], dtype=torch.float)
        return self.task_names[int(torch.multinomial(weights, 1, generator=self.generator))]

    # ------------------------------------------------------------------ training

    def train(self, resume_from_checkpoint: str | None = None) -> dict[str, float]:
        """Run `meta_steps` outer steps (from a checkpoint's step when resuming). Returns the last logged metrics."""
        args = self.args
        if resume_from_checkpoint is not None:
            self._load_checkpoint(resume_from_checkpoint)
        self.model.train()
        window: dict[str, list[float]] = {}
        progress = tqdm(total=args.meta_steps, initial=self.global_step, desc=f"Meta-training ({args.algorithm})", disable=args.disable_tqdm)
        last_logs: dict[str, float] = {}
        while self.global_step < args.meta_steps:
            self.optimizer.zero_grad(set_to_none=True)
            for _ in range(args.meta_batch_size):
                task = self._draw_task()
                episode = sample_episode(
                    self.train_data[task], self.specs[task], args.k_shot, args.query_size, self.generator,
                    labels=self.balancing["train"][task],
                )
                grads, metrics = self.episode_gradients(task, episode.support, episode.query)
                self._accumulate(grads)
                for name, value in metrics.items():
                    window.setdefault(name, []).append(value)
                    window.setdefault(f"{name}_{task}", []).append(value)
            if args.max_grad_norm > 0:
                grad_norm = torch.nn.utils.clip_grad_norm_(list(self.meta_parameters.values()), args.max_grad_norm)
                window.setdefault("grad_norm", []).append(float(grad_norm))
            self.optimizer.step()
            self.global_step += 1
            progress.update(1)
            if self.global_step % args.logging_steps == 0 or self.global_step == args.meta_steps:
                last_logs = {name: float(np.mean(values)) for name, values in window.items()}
                self._log(last_logs)
                progress.set_postfix({k: f"{v:.3f}" for k, v in last_logs.items() if k in ("support_loss", "query_loss")})
                window = {}
            if args.eval_steps and self.eval_data and self.global_step % args.eval_steps == 0:
                last_logs.update(self.evaluate())
            if args.save_steps and self.global_step % args.save_steps == 0 and self.global_step < args.meta_steps:
                self.save_checkpoint(os.path.join(args.output_dir, f"checkpoint-{self.global_step}"))
        progress.close()
        self.save_checkpoint(args.output_dir)
        return last_logs

    def _accumulate(self, grads: dict[str, torch.Tensor]) -> None:
        scale = 1.0 / self.args.meta_batch_size
        for name, grad in grads.items():
            parameter = self.meta_parameters[name]
            if parameter.grad is None:
                parameter.grad = grad.to(parameter.dtype) * scale
            else:
                parameter.grad.add_(grad.to(parameter.dtype), alpha=scale)

    def _log(self, logs: dict[str, float]) -> None:
        entry = {"step": self.global_step, **logs}
        self.log_history.append(entry)
        logger.info(json.dumps(entry))

    # ------------------------------------------------------------------ evaluation

    @torch.no_grad()
    def _query_predictions(self, task: str, fast: dict, query: list[int]):
        batch = self.batches(task, query, "eval")
        self.model.eval()
        try:
            logits = logits_fn(self.model, batch)(fast)
        finally:
            self.model.train()
        return logits.float().cpu().numpy(), batch["labels"].cpu().numpy()

    def evaluate(self) -> dict[str, float]:
        """Few-shot episodes on the eval data (the same episodes every time): adapt with the inner loop from the
        episode head, score the query set. Returns `eval_<task>_<metric>` (means over episodes) and `eval_average`."""
        if not self.eval_data:
            raise ValueError("MetaTrainer.evaluate needs `eval_dataset` (a dict of per-task datasets).")
        args, results, mains = self.args, {}, []
        generator = torch.Generator().manual_seed(args.seed + 1)
        for task, data in self.eval_data.items():
            spec = self.specs[task]
            scores: dict[str, list[float]] = {}
            for _ in range(args.eval_episodes):
                episode = sample_episode(data, spec, args.k_shot, args.query_size, generator, labels=self.balancing["eval"][task])
                with episode_head(self.model, spec, fresh=args.episode_head == "fresh") as head:
                    names = {f"heads.{task}.{n}" for n, _ in head.named_parameters()}
                    if args.inner_adapt == "all":
                        names |= {n for n in self.meta_parameters if n.startswith("encoder.")}
                    params = {n: p.detach().requires_grad_(True) for n, p in self.model.named_parameters() if n in names}
                    with torch.enable_grad():
                        fast, _ = adapt(params, names, loss_fn(self.model, self.batches(task, episode.support, "eval")), self.inner)
                    predictions, labels = self._query_predictions(task, fast, episode.query)
                for name, value in compute_task_metrics(spec, predictions, labels).items():
                    scores.setdefault(name, []).append(value)
            for name, values in scores.items():
                results[f"eval_{task}_{name}"] = float(np.mean(values))
            mains.append(results[f"eval_{task}_{main_metric(spec)}"])
        results["eval_average"] = float(np.mean(mains))
        self._log(results)
        return results

    # ------------------------------------------------------------------ checkpoints

    def save_checkpoint(self, output_dir: str) -> None:
        """The model in the standard format (`from_pretrained` loads it), the tokenizer, the arguments, and the
        optimizer / sampling state that `train(resume_from_checkpoint=...)` continues from."""
        os.makedirs(output_dir, exist_ok=True)
        self.model.save_pretrained(output_dir)
        if hasattr(self.tokenizer, "save_pretrained"):
            self.tokenizer.save_pretrained(output_dir)
        self.args.save(output_dir)
        with open(os.path.join(output_dir, STATE_FILE), "w") as handle:
            json.dump({"global_step": self.global_step, "log_history": self.log_history}, handle, indent=2)
        torch.save(
            # The global RNG draws fresh heads and dropout masks: restoring it makes a resumed run continue exactly.
            {"optimizer": self.optimizer.state_dict(), "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state()},
            os.path.join(output_dir, OPTIMIZER_FILE),
        )

    def _load_checkpoint(self, checkpoint: str) -> None:
        for name in (STATE_FILE, OPTIMIZER_FILE):
            if not os.path.isfile(os.path.join(checkpoint, name)):
                raise FileNotFoundError(f"{checkpoint!r} has no {name}: resume from a checkpoint written by MetaTrainer.")
        loaded = MultiTaskModel.from_pretrained(checkpoint)
        self.model.load_state_dict(loaded.state_dict())
        with open(os.path.join(checkpoint, STATE_FILE)) as handle:
            state = json.load(handle)
        extra = torch.load(os.path.join(checkpoint, OPTIMIZER_FILE), weights_only=True)
        self.optimizer.load_state_dict(extra["optimizer"])
        self.generator.set_state(extra["generator"])
        torch.set_rng_state(extra["torch_rng"])
        self.global_step, self.log_history = int(state["global_step"]), list(state["log_history"])
