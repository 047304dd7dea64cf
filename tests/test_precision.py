"""Every weighting under every precision the CPU can run, with and without gradient accumulation.

fp16 on a CPU: accelerate autocasts to float16 but creates no `GradScaler` (it does on CUDA), so the fp16 arm adds a
CPU `torch.amp.GradScaler` to the accelerator before training, which is the path a GPU run takes (scaled losses,
unscaled gradients before clipping, the scaler's own step). Two processes are covered in `test_multiprocess.py`.
"""

import itertools

import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.weighting import WEIGHTINGS

from .conftest import tiny_bert_config


# Row-level tasks: a token task's loss is a mean over each micro-batch's tokens, so accumulation would weigh tokens
# differently from one larger batch (as in transformers without `average_tokens_across_devices`).
TASKS = ["sentiment", "rating", "topics"]
PRECISIONS = ["fp32", "bf16", "fp16"]


@pytest.fixture(scope="module")
def data():
    return demo_datasets(num_train=48, num_eval=8, seed=5, tasks=TASKS)


def train(tmp_path, tokenizer, data, weighting, precision="fp32", accumulation=1, batch=8, batching="mixed", steps=3,
          optim="adamw_torch"):
    encoder = tiny_bert_config(vocab_size=30522, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    torch.manual_seed(0)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(TASKS), classifier_dropout=0.0))
    args = MultiTaskTrainingArguments(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation,
        max_steps=steps, learning_rate=2e-3, weighting=weighting, batching=batching, report_to="none",
        save_strategy="no", disable_tqdm=True, max_seq_length=32, seed=11, use_cpu=True, optim=optim,
        bf16=precision == "bf16", fp16=precision == "fp16",
    )
    trainer = MultiTaskTrainer(model=model, args=args, processing_class=tokenizer,
                               train_dataset={name: split["train"] for name, split in data.items()})
    if precision == "fp16":
        assert trainer.accelerator.mixed_precision == "fp16" and trainer.accelerator.scaler is None
        trainer.accelerator.scaler = torch.amp.GradScaler("cpu", init_scale=2.0**10)
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer.train()
    return trainer, before


@pytest.mark.slow
@pytest.mark.parametrize("weighting,precision", list(itertools.product(WEIGHTINGS.choices(), PRECISIONS)))
def test_every_weighting_trains_in_every_precision(tmp_path, tokenizer, data, weighting, precision):
    for accumulation in (1, 2):
        trainer, before = train(tmp_path, tokenizer, data, weighting, precision, accumulation, batch=8 // accumulation)
        model = trainer.model
        assert all(torch.isfinite(p).all() for p in model.parameters()), (weighting, precision, accumulation)
        encoder_moved = [n for n, p in model.named_parameters() if n.startswith("encoder.") and not torch.equal(before[n], p)]
        assert encoder_moved, (weighting, precision, accumulation)
        assert all(torch.isfinite(torch.tensor(w)) for w in trainer.weighting.weights().values())
        if precision == "fp16":  # the scaler scaled the losses and stepped (no step was an overflow)
            assert trainer.accelerator.scaler.get_scale() >= 2.0**10
            assert trainer.state.global_step == 3


@pytest.mark.parametrize("weighting,batching", [("static", "per_task"), ("uncertainty", "per_task"), ("pcgrad", "mixed"),
                                                ("cagrad", "mixed"), ("gradnorm", "mixed")])
def test_accumulation_equals_a_larger_batch(tmp_path, tokenizer, data, weighting, batching):
    """Where it is defined (one task per step; or per-task gradients combined once per step, weighted by rows),
    2 micro-batches of 4 rows make the same update as 1 batch of 8: the whole update agrees to float precision (a
    parameter whose gradient is 0 in exact arithmetic, e.g. an attention key bias, only moves by rounding noise, so
    the comparison is over all parameters together). Not defined: loss weightings on mixed batches, where each
    micro-batch weighs its own per-task means (see the README)."""
    one, start = train(tmp_path / "one", tokenizer, data, weighting, batch=8, batching=batching)
    two, _ = train(tmp_path / "two", tokenizer, data, weighting, accumulation=2, batch=4, batching=batching)
    first = torch.cat([(p - start[n]).flatten() for n, p in one.model.named_parameters()])
    second = torch.cat([(p - start[n]).flatten() for n, p in two.model.named_parameters()])
    assert first.norm() > 0 and (first - second).norm() / first.norm() < 1e-4
