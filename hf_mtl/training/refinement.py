"""Two-stage training: after multi-task training, a short refinement of each task (MT-DNN, Liu et al. 2019, fine-tunes
a copy of the model per task). Here the refinement keeps ONE checkpoint: the shared encoder is frozen and each task's
head alone is fine-tuned on the task's own rows for `refine_steps` steps, so every head fits the final shared
representation that the other tasks' updates moved under it. Set `MultiTaskTrainingArguments.refine_steps`.
"""

from __future__ import annotations

import itertools
import time

import torch
from torch.utils.data import DataLoader
from transformers.trainer_pt_utils import LengthGroupedSampler

from ..sharing.length_buckets import padding_free_in_eval
from .train_batches import row_lengths


def refine_heads(trainer, steps: int) -> dict[str, float]:
    """Fine-tune each task's head alone for `steps` steps (AdamW at `learning_rate * head_lr_multiplier`, linear
    decay, no warm-up), the encoder and every other parameter frozen. Every process runs the same loop on the same
    rows, so the heads stay identical across processes. Returns `refine_<task>_loss` (mean of the last quarter of
    the steps) and `refine_runtime` (seconds)."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    learning_rate = args.learning_rate * args.head_lr_multiplier
    trainable = {name: p.requires_grad for name, p in model.named_parameters()}
    was_training = model.training
    generator = torch.Generator().manual_seed(args.seed)
    metrics: dict[str, float] = {}
    start = time.time()
    try:
        # No dropout in the frozen encoder (the head being refined trains with its own dropout); its rows still run
        # packed as in training, since the heads read only real positions (same states up to float rounding).
        model.eval()
        for task in trainer.task_names:
            head = model.heads[task]
            for name, parameter in model.named_parameters():
                parameter.requires_grad_(name.startswith(f"heads.{task}."))
            head.train()
            optimizer = torch.optim.AdamW(head.parameters(), lr=learning_rate, weight_decay=args.weight_decay)
            schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 - step / steps)
            dataset = trainer.task_train_datasets[task]
            if args.train_sampling_strategy == "group_by_length":  # Transformers' own sampler for one dataset
                order = LengthGroupedSampler(args.per_device_train_batch_size, lengths=row_lengths(
                    dataset, args.length_column_name), generator=generator)
            else:
                order = torch.utils.data.RandomSampler(dataset, generator=generator)
            loader = DataLoader(dataset, batch_size=args.per_device_train_batch_size, sampler=order,
                                collate_fn=trainer.data_collator.for_task(task))
            losses = []
            for batch in itertools.islice(itertools.cycle(loader), steps):
                with padding_free_in_eval():
                    loss = model(**trainer._prepare_inputs(batch)).task_losses[task]
                loss.backward()
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
                losses.append(loss.item())
            head.eval()
            tail = losses[-max(1, steps // 4):]
            metrics[f"refine_{task}_loss"] = sum(tail) / len(tail)
    finally:
        for name, parameter in model.named_parameters():
            parameter.requires_grad_(trainable[name])
        model.train(was_training)
    metrics["refine_runtime"] = round(time.time() - start, 2)
    return metrics
