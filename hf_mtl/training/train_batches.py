"""How the trainer's training batches are drawn: the per-task splits merged into training streams (a task alone, or
the tasks of an input group reading the same rows, see `hf_mtl.data.joint`) and one dataset, the task sampler that
picks each step's stream, and the rank-aware batch sampler and DataLoader that `get_train_dataloader` returns.
"""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset
from torch.utils.data import DataLoader

from ..data import MultiTaskDataset
from ..data.joint import merge_stream
from ..sampling import MultiTaskBatchSampler, TaskSampler, build_task_sampler
from ..sampling.fixed import in_task_order
from ..tasks import TaskSpec
from .arguments import MultiTaskTrainingArguments


def build_train_data(task_datasets: Mapping[str, Dataset], train_streams: list, task_specs: Mapping[str, TaskSpec],
                     task_names: list[str], args: MultiTaskTrainingArguments) -> tuple[MultiTaskDataset, TaskSampler]:
    """The training dataset (one part per stream) and the task sampler of `args.sampling` over the streams."""
    stream_data = {s[0]: merge_stream(task_datasets, s, task_specs) for s in train_streams}
    sizes = [len(stream_data[stream[0]]) for stream in train_streams]
    stream_names = ["+".join(stream) for stream in train_streams]
    sampler_kwargs = dict(args.sampling_kwargs)
    if args.sampling == "fixed" and "probabilities" in sampler_kwargs:  # {task: p} or a list in task order
        sampler_kwargs["probabilities"] = in_task_order(sampler_kwargs["probabilities"], stream_names)
    task_sampler = build_task_sampler(args.sampling, sizes, **sampler_kwargs)
    task_sampler.task_names = stream_names
    stream_ids = [task_names.index(s[0]) for s in train_streams]
    dataset = MultiTaskDataset(stream_data, [s[0] for s in train_streams], stream_ids)
    return dataset, task_sampler


def row_lengths(dataset: Dataset, length_column: str = "length") -> list[int]:
    """Tokens of each row: the `length_column` when the dataset has one (as Trainer's LengthGroupedSampler reads
    it), else the length of `input_ids` (the longest choice of a multiple-choice row)."""
    if length_column in dataset.column_names:
        return [int(length) for length in dataset[length_column]]
    column = dataset.with_format("arrow")["input_ids"]
    if pa.types.is_list(column.type.value_type) or pa.types.is_large_list(column.type.value_type):
        return [max(map(len, choices), default=0) for choices in column.to_pylist()]
    return pc.list_value_length(column).to_pylist()


def train_dataloader(trainer) -> tuple[DataLoader, MultiTaskBatchSampler]:
    """The trainer's training DataLoader, prepared by its accelerator, and the batch sampler that drives it."""
    args = trainer.args
    sampler = MultiTaskBatchSampler(
        trainer.train_dataset.sizes,
        trainer.task_sampler,
        batch_size=trainer._train_batch_size,
        batching=args.batching,
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        num_replicas=args.world_size,
        rank=args.process_index,
        seed=args.data_seed if args.data_seed is not None else args.seed,
        lengths=[row_lengths(dataset, args.length_column_name) for dataset in trainer.train_dataset.datasets]
        if args.train_sampling_strategy == "group_by_length" else None,
    )
    sampler.num_epochs = sampler.epochs_for_steps(sampler.planned_steps(args.max_steps, args.num_train_epochs))
    loader = DataLoader(
        trainer.train_dataset,
        batch_sampler=sampler,
        collate_fn=trainer.data_collator,
        num_workers=args.dataloader_num_workers,
        pin_memory=args.dataloader_pin_memory and torch.cuda.is_available(),
        persistent_workers=args.dataloader_persistent_workers if args.dataloader_num_workers > 0 else False,
    )
    prepared = trainer.accelerator.prepare(loader)
    # The sampler is rank-aware (every process trains the same task at the same step): make accelerate's
    # `BatchSamplerShard` a pass-through instead of re-sharding its batches, as Trainer does for its own
    # rank-aware `BatchRebalanceSampler`.
    shard = getattr(prepared, "batch_sampler", None)
    if shard is not None and getattr(shard, "batch_sampler", None) is sampler:
        shard.num_processes, shard.process_index = 1, 0
    return prepared, sampler
