"""Faults inside one process: non-finite losses and gradients on every training path (loss weighting, learnable
task weights beside the model, gradient strategies, gradient accumulation, auxiliary losses), and checkpoints that
a crash interrupts while they are written. The multi-process and kill -9 versions are in `test_crash_resume.py`."""

from __future__ import annotations

import logging
import os

import pytest
import torch
from transformers import Trainer
from transformers.trainer_utils import get_last_checkpoint

from hf_mtl import CheckpointError, MultiTaskConfig, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.training.checkpointing import COMPLETE_MARKER, checkpoint_problems, get_last_complete_checkpoint
from hf_mtl.training.non_finite import NonFiniteLossError

from .conftest import tiny_bert_config


TASKS = ["sentiment", "rating", "entities"]


@pytest.fixture(scope="module")
def data():
    return demo_datasets(num_train=24, num_eval=8, seed=5, tasks=TASKS)


def make_trainer(tmp_path, tokenizer, data, adversarial=False, **overrides) -> MultiTaskTrainer:
    torch.manual_seed(0)
    config = MultiTaskConfig(encoder=tiny_bert_config(vocab_size=30522), tasks=demo_tasks(TASKS), adversarial=adversarial)
    values = dict(
        output_dir=str(tmp_path / "out"), per_device_train_batch_size=6, max_steps=2, learning_rate=1e-2,
        logging_steps=1, save_strategy="no", report_to="none", disable_tqdm=True, max_seq_length=24, seed=3,
    )
    values.update(overrides)
    return MultiTaskTrainer(
        model=MultiTaskModel(config),
        args=MultiTaskTrainingArguments(**values),
        train_dataset={name: split["train"] for name, split in data.items()},
        processing_class=tokenizer,
    )


def inject_nan(monkeypatch, trainer, tasks, when=lambda call: True):
    """Make the loss of `tasks` NaN on the training forward calls (counted from 0) for which `when(call)` holds.
    Forwards without gradients (FAMO's re-evaluation of a step's batches) are neither counted nor changed."""
    calls = {"n": 0}
    model = trainer.model
    original_forward = model.forward

    def counting_forward(*args, **kwargs):
        output = original_forward(*args, **kwargs)
        training = model.training and torch.is_grad_enabled()
        if training and output.task_losses and when(calls["n"]):
            for name in tasks:
                if name in output.task_losses:
                    output.task_losses[name] = output.task_losses[name] * float("nan")
        calls["n"] += training
        return output

    monkeypatch.setattr(model, "forward", counting_forward)


def snapshot(trainer):
    weights = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    weights.update({f"weighting.{n}": v.detach().clone() for n, v in trainer.weighting.state_dict().items()})
    return weights


def assert_unchanged(before, trainer):
    after = snapshot(trainer)
    for name, value in before.items():
        assert torch.equal(value, after[name]), name


# ---------------------------------------------------------------------------------------------- non-finite losses


@pytest.mark.parametrize(
    "weighting,batching,accumulation,nan_tasks,when",
    [
        ("static", "per_task", 1, TASKS, lambda call: True),  # every step, whatever task it trains
        ("uncertainty", "mixed", 1, ["rating"], lambda call: True),  # learnable weights beside the model
        ("famo", "mixed", 2, ["rating"], lambda call: call % 2 == 1),  # only the 2nd micro-batch of each step
        ("gradnorm", "mixed", 1, ["entities"], lambda call: True),  # per-task gradients, state updated mid-step
    ],
    ids=["static-per_task", "uncertainty-mixed", "famo-accumulation", "gradnorm-gradients"],
)
def test_skipped_steps_change_no_weight_and_no_strategy_state(
    tmp_path, tokenizer, data, monkeypatch, caplog, weighting, batching, accumulation, nan_tasks, when
):
    trainer = make_trainer(
        tmp_path, tokenizer, data, weighting=weighting, batching=batching, gradient_accumulation_steps=accumulation,
        per_device_train_batch_size=6 // accumulation, non_finite_loss="skip",
    )
    inject_nan(monkeypatch, trainer, nan_tasks, when)
    before = snapshot(trainer)
    with caplog.at_level(logging.WARNING):
        trainer.train()
    assert_unchanged(before, trainer)
    assert trainer.loss_tracker.skipped_steps == 2
    assert [entry["skipped_steps"] for entry in trainer.state.log_history if "skipped_steps" in entry][-1] == 2
    assert "Skipped optimizer step 0 (non-finite loss for [" in caplog.text and "Skipped optimizer step 1" in caplog.text
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_one_bad_step_is_dropped_and_training_goes_on(tmp_path, tokenizer, data, monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="famo", batching="mixed", max_steps=3, non_finite_loss="skip")
    inject_nan(monkeypatch, trainer, ["rating"], when=lambda call: call == 1)
    before = snapshot(trainer)
    trainer.train()
    assert trainer.loss_tracker.skipped_steps == 1
    after = snapshot(trainer)
    assert not torch.equal(before["encoder.embeddings.LayerNorm.weight"], after["encoder.embeddings.LayerNorm.weight"])
    assert all(torch.isfinite(value.float()).all() for value in after.values())
    logged = [entry for entry in trainer.state.log_history if "loss_rating" in entry]
    assert all(torch.isfinite(torch.tensor(entry["loss_rating"])) for entry in logged)  # NaN never reaches the logs


@pytest.mark.parametrize("weighting", ["static", "pcgrad"])
def test_error_names_the_task_and_the_step_on_every_path(tmp_path, tokenizer, data, monkeypatch, weighting):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting=weighting, batching="mixed", max_steps=3)
    inject_nan(monkeypatch, trainer, ["entities"], when=lambda call: call == 1)
    before = None
    original_step = trainer.training_step

    def remember(*args, **kwargs):
        nonlocal before
        if trainer.state.global_step == 1 and before is None:
            before = snapshot(trainer)
        return original_step(*args, **kwargs)

    monkeypatch.setattr(trainer, "training_step", remember)
    with pytest.raises(NonFiniteLossError, match=r"Non-finite loss for task\(s\) \['entities'\] at step 1 \(values: \[nan\]\)"):
        trainer.train()
    assert_unchanged(before, trainer)  # stopped before the optimizer saw the step


def test_non_finite_auxiliary_loss_is_caught(tmp_path, tokenizer, data, monkeypatch):
    for policy in ("error", "skip"):
        trainer = make_trainer(tmp_path / policy, tokenizer, data, adversarial=True, adversarial_weight=0.5, non_finite_loss=policy)
        discriminator = trainer.model.discriminator
        monkeypatch.setattr(discriminator, "loss", lambda pooled, task_ids: pooled.sum() * float("inf"))
        before = snapshot(trainer)
        if policy == "error":
            with pytest.raises(NonFiniteLossError, match=r"\['adversarial \(auxiliary\)'\] at step 0"):
                trainer.train()
        else:
            trainer.train()
            assert trainer.loss_tracker.skipped_steps == 2
        assert_unchanged(before, trainer)


def test_non_finite_gradient_with_finite_losses_is_caught(tmp_path, tokenizer, data):
    for policy in ("error", "skip"):
        trainer = make_trainer(tmp_path / policy, tokenizer, data, batching="mixed", non_finite_loss=policy)
        weight = trainer.model.encoder.encoder.layer[0].attention.self.query.weight
        weight.register_hook(lambda grad: grad * float("inf"))  # an overflow in the backward pass
        before = snapshot(trainer)
        if policy == "error":
            with pytest.raises(NonFiniteLossError, match=r"Non-finite gradient at step 0 although every loss was finite"):
                trainer.train()
        else:
            trainer.train()
            assert trainer.loss_tracker.skipped_steps == 2
        assert_unchanged(before, trainer)


def test_non_finite_gradient_of_a_learnable_task_weight_is_caught(tmp_path, tokenizer, data):
    """The model's gradients are judged by Trainer's clipping norm; task weights outside the model by their own."""
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="uncertainty", non_finite_loss="skip")
    log_variance = next(trainer.weighting.parameters())
    log_variance.register_hook(lambda grad: grad * float("nan"))
    before = snapshot(trainer)
    trainer.train()
    assert trainer.loss_tracker.skipped_steps == 2
    assert_unchanged(before, trainer)


# ---------------------------------------------------------------------------------------------- checkpoints


def test_checkpoints_are_marked_complete_and_checked(tmp_path, tokenizer, data):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="uncertainty", max_steps=4, save_strategy="steps", save_steps=2)
    trainer.train()
    out = tmp_path / "out"
    for step in (2, 4):
        folder = out / f"checkpoint-{step}"
        assert checkpoint_problems(folder) == []
        marker = (folder / COMPLETE_MARKER).read_text()
        for name in ("model.safetensors", "optimizer.pt", "rng_state.pth", "trainer_state.json", "hf_mtl_trainer_state.safetensors"):
            assert f'"{name}"' in marker, name
    assert get_last_complete_checkpoint(out) == str(out / "checkpoint-4")

    os.remove(out / "checkpoint-4" / "rng_state.pth")  # a file lost after the fact
    assert checkpoint_problems(out / "checkpoint-4") == ["rng_state.pth is missing"]
    assert get_last_checkpoint(str(out)) == str(out / "checkpoint-4")  # what plain Trainer would resume from
    assert get_last_complete_checkpoint(out) == str(out / "checkpoint-2")
    with open(out / "checkpoint-2" / "optimizer.pt", "r+b") as handle:
        handle.truncate(100)
    assert checkpoint_problems(out / "checkpoint-2")[0].startswith("optimizer.pt has 100 bytes")
    with pytest.raises(CheckpointError, match=r"No complete checkpoint to resume from .* \(incomplete: checkpoint-4, checkpoint-2\)"):
        trainer.train(resume_from_checkpoint=True)


def test_a_crash_while_saving_never_leaves_a_complete_looking_checkpoint(tmp_path, tokenizer, data, monkeypatch):
    """Saving checkpoint-4 dies half way (after weights and optimizer, before the RNG and trainer state): it is not
    marked complete, and with save_total_limit=1 the previous checkpoint was not rotated out for it."""
    original = Trainer._save_rng_state

    def crash_at_step_4(self, output_dir):
        if self.state.global_step == 4:
            raise KeyboardInterrupt("simulated crash while saving")
        return original(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", crash_at_step_4)
    trainer = make_trainer(
        tmp_path, tokenizer, data, weighting="famo", batching="mixed", max_steps=4, save_strategy="steps", save_steps=2,
        save_total_limit=1,
    )
    with pytest.raises(KeyboardInterrupt):
        trainer.train()
    out = tmp_path / "out"
    partial = out / "checkpoint-4"
    assert (partial / "model.safetensors").exists() and (partial / "optimizer.pt").exists()
    assert not (partial / COMPLETE_MARKER).exists() and checkpoint_problems(partial)
    assert get_last_complete_checkpoint(out) == str(out / "checkpoint-2")  # kept: rotation waits for completion

    # Re-saving into a complete folder makes it incomplete until the save ends.
    complete = out / "checkpoint-2"
    trainer.state.global_step = 2
    monkeypatch.setattr(Trainer, "_save_rng_state", lambda self, output_dir: (_ for _ in ()).throw(KeyboardInterrupt()))
    with pytest.raises(KeyboardInterrupt):
        trainer._save_checkpoint(trainer.model, None)
    assert not (complete / COMPLETE_MARKER).exists()
