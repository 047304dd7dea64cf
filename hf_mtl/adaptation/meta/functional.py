"""What an episode needs at run time: padded batches of chosen rows, an episode head, and loss / logits closures
over a parameter dict (so the algorithms can run the model on adapted weights with `functional_call`)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping

import torch
from datasets import Dataset
from torch.func import functional_call

from ...data import MODEL_INPUTS, MultiTaskCollator
from ...modeling_multitask import MultiTaskModel
from ...tasks import TaskSpec


class EpisodeBatches:
    """Pads rows of the tokenised per-task datasets into model inputs (`task=<name>`, `labels`) on `device`."""

    def __init__(self, tokenizer, tasks: list[TaskSpec], splits: Mapping[str, Mapping[str, Dataset]], device: torch.device):
        self.collator = MultiTaskCollator(tokenizer, tasks)
        self.splits = {split: dict(datasets) for split, datasets in splits.items()}
        self.device = device

    def __call__(self, task: str, rows: list[int], split: str = "train") -> dict:
        dataset = self.splits[split][task]
        features = [{key: dataset[row][key] for key in (*MODEL_INPUTS, "labels") if key in dataset.column_names} for row in rows]
        batch = self.collator.for_task(task)(features)
        return {key: value.to(self.device) if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


@contextlib.contextmanager
def episode_head(model: MultiTaskModel, spec: TaskSpec, fresh: bool) -> Iterator[torch.nn.Module]:
    """Within the block, `model.heads[spec.name]` is a newly initialised head (`fresh=True`, initialised as
    `add_task` does) or the task's own head; the original head is always put back."""
    original = model.heads[spec.name]
    if not fresh:
        yield original
        return
    head = model.fresh_head(spec)
    model.heads[spec.name] = head
    try:
        yield head
    finally:
        model.heads[spec.name] = original


def loss_fn(model: MultiTaskModel, batch: dict):
    """`params -> loss` of `model` on `batch` with `params` substituted for the model's own."""

    def compute(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        return functional_call(model, dict(params), args=(), kwargs=batch, strict=False).loss

    return compute


def logits_fn(model: MultiTaskModel, batch: dict):
    def compute(params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        inputs = {key: value for key, value in batch.items() if key != "labels"}
        return functional_call(model, dict(params), args=(), kwargs=inputs, strict=False).logits

    return compute
