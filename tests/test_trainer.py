import itertools
import math
import os

import pytest
import torch
from datasets import Dataset, DatasetDict

from hf_mtl import (
    DataError,
    LabelError,
    MultiTaskConfig,
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    NonFiniteLossError,
    TaskError,
)
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.weighting import WEIGHTINGS

from .conftest import tiny_bert_config


TASKS = ["sentiment", "rating", "entities", "topics"]


@pytest.fixture(scope="module")
def data():
    return demo_datasets(num_train=48, num_eval=24, seed=1, tasks=TASKS)


def make_model(tasks=TASKS, dropout=0.1, **config):
    encoder = tiny_bert_config(vocab_size=30522, hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    torch.manual_seed(0)
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(tasks), **config))


def make_trainer(tmp_path, tokenizer, data, model=None, eval_data=True, **overrides):
    values = dict(
        output_dir=str(tmp_path / "out"),
        per_device_train_batch_size=8,
        max_steps=6,
        learning_rate=2e-3,
        logging_steps=2,
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        max_seq_length=32,
        seed=7,
    )
    values.update(overrides)
    model = model or make_model([name for name in TASKS if name in data])
    return MultiTaskTrainer(
        model=model,
        args=MultiTaskTrainingArguments(**values),
        train_dataset={name: split["train"] for name, split in data.items()},
        eval_dataset={name: split["validation"] for name, split in data.items()} if eval_data else None,
        processing_class=tokenizer,
    )


def params(model):
    return {name: p.detach().clone() for name, p in model.named_parameters()}


def test_famo_same_batch_runs_each_step_again_after_the_update(tmp_path, tokenizer, data):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="famo", batching="mixed", max_steps=3,
                           gradient_accumulation_steps=2, weighting_kwargs={"update": "same_batch"})
    calls = []
    trainer.model.register_forward_hook(lambda module, args, kwargs, output: calls.append(torch.is_grad_enabled()),
                                        with_kwargs=True)
    moved = []
    original = trainer.weighting.on_step_reevaluated
    trainer.weighting.on_step_reevaluated = lambda before, after: (moved.append((before, after)), original(before, after))
    trainer.train()
    # Per step: 2 micro-batches with gradients, then the same 2 again without, through the updated model.
    assert calls == [True, True, False, False] * 3
    assert len(moved) == 3 and all(set(before) == set(after) == set(TASKS) for before, after in moved)
    assert all(after != before for before, after in moved)
    assert trainer.weighting.weights() != dict.fromkeys(TASKS, 1.0) and trainer.step_reevaluation.batches == []


def test_sharded_training_is_refused_where_it_cannot_run(tmp_path, monkeypatch):
    from hf_mtl.training.compatibility import check_launcher
    from hf_mtl.weighting import build_weighting

    static, uncertainty, pcgrad, rep_norm = (build_weighting(n, TASKS) for n in ("static", "uncertainty", "pcgrad", "rep_norm"))
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), fsdp="full_shard", report_to="none")
    # CPU: FSDP2 shards across several processes (tests/test_multiprocess.py); one process or FSDP1 is refused.
    with pytest.raises(ValueError, match=r"fsdp shards the model across processes, but this is one CPU process"):
        check_launcher(args, static)
    monkeypatch.setattr(MultiTaskTrainingArguments, "world_size", property(lambda self: 2))
    check_launcher(args, static)
    version1 = MultiTaskTrainingArguments(output_dir=str(tmp_path), fsdp="full_shard", fsdp_config={"version": 1},
                                          report_to="none")
    with pytest.raises(ValueError, match=r"FSDP version 1 was requested on CPU processes.*'version': 2"):
        check_launcher(version1, static)
    # Per-task gradients, learned task weights and task affinity are refused under sharding, naming the alternative.
    for weighting in (pcgrad, rep_norm):
        with pytest.raises(ValueError, match=r"which fsdp shards.*static, uncertainty, dwa or famo"):
            check_launcher(args, weighting)
    check_launcher(args, uncertainty)  # its task weights' optimizer state is checkpointed beside FSDP's
    args.task_affinity_steps = 5
    with pytest.raises(ValueError, match="task_affinity_steps > 0 measures task affinity"):
        check_launcher(args, static)
    # DeepSpeed (arguments or the accelerate launcher's switch) needs GPUs; on GPUs it gets the same checks.
    plain = MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none")
    check_launcher(plain, pcgrad)
    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    with pytest.raises(ValueError, match=r"deepspeed was requested, but these processes run on the CPU.*FSDP"):
        check_launcher(plain, static)
    monkeypatch.setattr(MultiTaskTrainingArguments, "device", property(lambda self: torch.device("cuda", 0)))
    check_launcher(plain, static)
    with pytest.raises(ValueError, match=r"which deepspeed shards.*static, dwa or famo"):
        check_launcher(plain, pcgrad)
    plain.weighting = "uncertainty"
    with pytest.raises(ValueError, match=r"'uncertainty' learns task weights.*DeepSpeed's optimizer"):
        check_launcher(plain, uncertainty)


def test_fsdp_wraps_the_encoder_layers_not_the_embeddings_parent():
    """accelerate shards the input embedding as a unit of its own; wrapping BertEmbeddings too would shard it twice."""
    from hf_mtl.training.sharding import fsdp_wrap_classes

    model = make_model()
    assert "BertEmbeddings" in model._no_split_modules
    assert fsdp_wrap_classes(model) == ["BertLayer"]


# ------------------------------------------------------------------ training and logging


def test_trains_and_logs_per_task_losses_and_weights(tmp_path, tokenizer, data):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="uncertainty", batching="mixed")
    assert trainer.weighting.log_vars.device == trainer.args.device  # beside the model (NCCL reduces device tensors)
    before = params(trainer.model)
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss" in entry and "eval_loss" not in entry]
    assert logs, trainer.state.log_history
    for task in TASKS:
        assert any(f"loss_{task}" in entry for entry in logs)
        assert f"weight_{task}" in logs[-1]
    assert any(logs[-1][f"weight_{t}"] != 1.0 for t in TASKS)  # learned weights moved
    after = params(trainer.model)
    assert all(not torch.equal(before[n], after[n]) for n in before if n.startswith("encoder.encoder.layer.0"))


def test_evaluate_reports_every_task_metric_and_the_average(tmp_path, tokenizer, data):
    trainer = make_trainer(tmp_path, tokenizer, data)
    metrics = trainer.evaluate()
    for key in [
        "eval_sentiment_accuracy", "eval_sentiment_f1", "eval_sentiment_mcc", "eval_rating_pearson",
        "eval_rating_spearman", "eval_entities_f1", "eval_entities_precision", "eval_topics_micro_f1",
        "eval_sentiment_loss", "eval_average", "eval_loss",
    ]:
        assert key in metrics, key
    mains = [metrics["eval_sentiment_accuracy"], metrics["eval_rating_pearson"], metrics["eval_entities_f1"], metrics["eval_topics_micro_f1"]]
    assert metrics["eval_average"] == pytest.approx(sum(mains) / 4)
    assert trainer.last_eval_metrics["entities"]["f1"] == metrics["eval_entities_f1"]


def test_load_dataset_output_fits_directly_and_predict_returns_each_task(tmp_path, tokenizer, data):
    # {task: DatasetDict} as load_dataset returns it: train from "train", evaluation from "validation"
    trainer = MultiTaskTrainer(
        model=make_model(), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none", max_seq_length=32),
        train_dataset=dict(data), eval_dataset=dict(data), processing_class=tokenizer,
    )
    assert {name: len(d) for name, d in trainer.task_eval_datasets.items()} == {name: len(d["validation"]) for name, d in data.items()}
    test = {name: DatasetDict(test=split["validation"]) for name, split in data.items()}
    test["sentiment"] = DatasetDict(test=data["sentiment"]["validation"].remove_columns("label"))  # no labels: still predicted
    results = trainer.predict(test)
    assert set(results) == set(data)
    sentiment, rating = results["sentiment"], results["rating"]
    assert sentiment.predictions.shape == (len(data["sentiment"]["validation"]), 2) and sentiment.label_ids is None
    assert rating.predictions.shape == (len(data["rating"]["validation"]),) and "test_rating_pearson" in rating.metrics
    assert results["entities"].predictions.ndim == 3
    with pytest.raises(TypeError, match=r"DatasetDict of splits \(train, validation\), not of tasks"):
        trainer.predict(data["sentiment"])
    with pytest.raises(TypeError, match=r"Task 'sentiment': its DatasetDict has splits \['train', 'validation'\] and none of \['test'\]"):
        trainer.predict({"sentiment": data["sentiment"]})


def test_load_best_model_at_end_on_a_task_metric(tmp_path, tokenizer, data):
    trainer = make_trainer(
        tmp_path, tokenizer, data, max_steps=4, eval_strategy="steps", eval_steps=2, save_strategy="steps",
        save_steps=2, load_best_model_at_end=True, metric_for_best_model="sentiment_accuracy",
    )
    trainer.train()
    assert trainer.state.best_metric is not None
    assert trainer.state.best_model_checkpoint is not None
    assert os.path.exists(os.path.join(trainer.state.best_model_checkpoint, "hf_mtl_trainer_state.safetensors"))


def test_gradient_accumulation_equals_a_larger_batch(tmp_path, tokenizer, data):
    """Static weighting, no dropout: 4 accumulated micro-batches of 2 rows == 1 batch of 8 rows."""
    runs = []
    for batch, accumulation in [(8, 1), (2, 4)]:
        trainer = make_trainer(
            tmp_path / f"{batch}", tokenizer, data, model=make_model(dropout=0.0), max_steps=3,
            per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, eval_data=False,
        )
        trainer.train()
        runs.append(params(trainer.model))
    for name in runs[0]:
        torch.testing.assert_close(runs[0][name], runs[1][name], rtol=1e-4, atol=1e-5, msg=name)


@pytest.mark.parametrize("weighting", ["pcgrad", "gradnorm"])
def test_gradient_surgery_under_accumulation_equals_a_larger_batch(tmp_path, tokenizer, data, weighting):
    """Per-task gradients are summed (row-weighted) over the micro-batches of a step and combined once: 4 x 2 rows ==
    1 x 8 rows (per micro-batch surgery made them ~38% apart in a toy). Row-mean losses only: a token tagger's loss
    is a mean over tokens, which rows do not weigh exactly."""
    tasks = ["sentiment", "rating", "topics"]
    subset = {name: data[name] for name in tasks}
    runs = []
    for batch, accumulation in [(8, 1), (2, 4)]:
        trainer = make_trainer(
            tmp_path / f"{batch}", tokenizer, subset, model=make_model(tasks, dropout=0.0), max_steps=3, weighting=weighting,
            batching="mixed", per_device_train_batch_size=batch, gradient_accumulation_steps=accumulation, eval_data=False,
        )
        trainer.train()
        runs.append((params(trainer.model), trainer.weighting.weights()))
    for name in runs[0][0]:  # float round-off only: at most ~5e-5 here; per micro-batch surgery left 0.026
        torch.testing.assert_close(runs[0][0][name], runs[1][0][name], rtol=1e-4, atol=2e-4, msg=name)
    assert runs[0][1] == pytest.approx(runs[1][1], rel=1e-4)


@pytest.mark.parametrize("weighting", ["static", "uncertainty", "dwa", "famo"])
def test_loss_weightings_add_no_backward_pass(tmp_path, tokenizer, data, weighting, monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting=weighting, batching="mixed", max_steps=3, eval_data=False)
    calls = {"backward": 0, "grad": 0}
    original_backward, original_grad = trainer.accelerator.backward, torch.autograd.grad

    def counting_backward(*args, **kwargs):
        calls["backward"] += 1
        return original_backward(*args, **kwargs)

    def counting_grad(*args, **kwargs):
        calls["grad"] += 1
        return original_grad(*args, **kwargs)

    monkeypatch.setattr(trainer.accelerator, "backward", counting_backward)
    monkeypatch.setattr(torch.autograd, "grad", counting_grad)
    trainer.train()
    assert calls == {"backward": 3, "grad": 0}


@pytest.mark.parametrize("weighting", ["pcgrad", "cagrad", "gradnorm"])
def test_gradient_strategies_train_with_one_backward_per_task(tmp_path, tokenizer, data, weighting, monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting=weighting, batching="mixed", max_steps=2, eval_data=False)
    calls = []
    original = torch.autograd.grad
    monkeypatch.setattr(torch.autograd, "grad", lambda *a, **k: calls.append(1) or original(*a, **k))
    before = params(trainer.model)
    trainer.train()
    assert len(calls) == 2 * len(TASKS)  # mixed batches of 8 rows hold every task
    assert not torch.equal(before["encoder.embeddings.LayerNorm.weight"], trainer.model.encoder.embeddings.LayerNorm.weight)
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_adversarial_loss_and_schedule_are_logged(tmp_path, tokenizer, data):
    model = make_model(adversarial=True)
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, adversarial_weight=0.1, max_steps=6, eval_data=False)
    before = model.discriminator.classifier.weight.detach().clone()
    trainer.train()
    logs = [entry for entry in trainer.state.log_history if "loss_adversarial" in entry]
    assert len(logs) == 3
    coefficients = [entry["adversarial_coefficient"] for entry in logs]
    assert coefficients == sorted(coefficients) and 0 < coefficients[0] < coefficients[-1] < 1  # Ganin ramp
    assert not torch.equal(before, model.discriminator.classifier.weight)


def test_non_finite_loss_stops_with_the_task_name_or_skips_the_step(tmp_path, tokenizer, data, monkeypatch):
    trainer = make_trainer(tmp_path, tokenizer, data, max_steps=2, eval_data=False)
    head = trainer.model.heads["rating"]
    monkeypatch.setattr(head, "compute_loss", lambda logits, labels: (logits * float("nan")).mean())
    trainer.args.batching = "mixed"
    with pytest.raises(NonFiniteLossError, match=r"Non-finite loss for task\(s\) \['rating'\] at step 0"):
        trainer.train()

    trainer = make_trainer(tmp_path, tokenizer, data, max_steps=2, eval_data=False, non_finite_loss="skip", batching="mixed", logging_steps=1)
    monkeypatch.setattr(trainer.model.heads["rating"], "compute_loss", lambda logits, labels: (logits * float("nan")).mean())
    before = params(trainer.model)
    trainer.train()
    assert all(torch.equal(before[name], p) for name, p in trainer.model.named_parameters())
    assert trainer.state.log_history[-2]["skipped_steps"] == 2


# ------------------------------------------------------------------ resume


@pytest.mark.parametrize("weighting,batching", [("static", "per_task"), ("uncertainty", "mixed"), ("famo", "mixed")])
def test_resume_from_checkpoint_is_exact(tmp_path, tokenizer, data, weighting, batching):
    common = dict(weighting=weighting, batching=batching, max_steps=6, save_strategy="steps", save_steps=3, eval_data=False)
    full = make_trainer(tmp_path / "full", tokenizer, data, **common)
    full.train()
    expected_weights = full.weighting.weights()

    first = make_trainer(tmp_path / "resumed", tokenizer, data, **{**common, "max_steps": 6})
    first.args.max_steps = 6
    first.train()  # writes checkpoint-3 and checkpoint-6; resume from 3 in a fresh trainer
    resumed = make_trainer(tmp_path / "resumed", tokenizer, data, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "out" / "checkpoint-3"))
    for name, p in full.model.named_parameters():
        torch.testing.assert_close(resumed.model.state_dict()[name], p.detach(), rtol=0, atol=0, msg=name)
    assert resumed.weighting.weights() == pytest.approx(expected_weights, rel=0, abs=0)


def test_dwa_resume_from_a_checkpoint_at_an_epoch_end_is_exact(tmp_path, tokenizer, data):
    # 4 tasks x 48 rows, batch 8, per-task batches: 24 steps per epoch. The checkpoint at step 24 is taken after the
    # epoch's last step but before its end is closed (on_epoch_end runs after the save).
    common = dict(weighting="dwa", max_steps=72, save_strategy="steps", save_steps=24, eval_data=False, logging_steps=100)
    full = make_trainer(tmp_path / "full", tokenizer, data, **common)
    full.train()
    assert len(set(full.weighting.weights().values())) > 1  # two closed epochs: DWA weights moved off 1
    make_trainer(tmp_path / "resumed", tokenizer, data, **common).train()  # writes checkpoint-24 (same schedule)
    resumed = make_trainer(tmp_path / "resumed", tokenizer, data, **common)
    resumed.train(resume_from_checkpoint=str(tmp_path / "resumed" / "out" / "checkpoint-24"))
    assert resumed.weighting.weights() == pytest.approx(full.weighting.weights(), rel=0, abs=1e-12)
    for name, p in full.model.named_parameters():
        torch.testing.assert_close(resumed.model.state_dict()[name], p.detach(), rtol=0, atol=0, msg=name)


# ------------------------------------------------------------------ bad input


def test_bad_inputs_fail_before_training(tmp_path, tokenizer, data):
    train = {name: split["train"] for name, split in data.items()}
    args = MultiTaskTrainingArguments(output_dir=str(tmp_path), report_to="none")
    with pytest.raises(TaskError, match=r"Task\(s\) \['nli'\] in the train data are not tasks of the model"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset={**train, "nli": train["sentiment"]}, processing_class=tokenizer)
    with pytest.raises(TaskError, match=r"Task\(s\) \['topics'\] of the model have no train data"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset={k: v for k, v in train.items() if k != "topics"}, processing_class=tokenizer)
    with pytest.raises(DataError, match=r"Task 'sentiment' \(train split\): column\(s\) \['label'\] not found"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset={**train, "sentiment": train["sentiment"].remove_columns("label")}, processing_class=tokenizer)
    with pytest.raises(DataError, match="Task 'rating': the train split is empty"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset={**train, "rating": train["rating"].select([])}, processing_class=tokenizer)
    bad_label = Dataset.from_list([{"text": "fine", "label": "neutral"}])
    with pytest.raises(LabelError, match=r"row 1: label 'neutral' is not in the label set \['negative', 'positive'\]"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset={**train, "sentiment": bad_label}, processing_class=tokenizer)
    with pytest.raises(TypeError, match=r"must be a dict \{task_name: datasets.Dataset or DatasetDict\}"):
        MultiTaskTrainer(model=make_model(), args=args, train_dataset=train["sentiment"], processing_class=tokenizer)
    with pytest.raises(ValueError, match=r"Unknown weighting 'pcgrd'.*Did you mean 'pcgrad'"):
        MultiTaskTrainingArguments(output_dir=str(tmp_path), weighting="pcgrd")
    with pytest.raises(ValueError, match="weight"):
        MultiTaskTrainer(
            model=make_model(), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), weighting_kwargs={"weights": {"sst2": 2.0}}),
            train_dataset=train, processing_class=tokenizer,
        )
    with pytest.raises(ValueError, match="batching='per_task' trains one task per step. Set batching='mixed'"):
        MultiTaskTrainer(model=make_model(), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), weighting="pcgrad"), train_dataset=train, processing_class=tokenizer)
    with pytest.raises(ValueError, match="needs a task discriminator"):
        MultiTaskTrainer(model=make_model(), args=MultiTaskTrainingArguments(output_dir=str(tmp_path), adversarial_weight=0.5), train_dataset=train, processing_class=tokenizer)
    with pytest.raises(TypeError, match="needs MultiTaskTrainingArguments"):
        from transformers import TrainingArguments

        MultiTaskTrainer(model=make_model(), args=TrainingArguments(output_dir=str(tmp_path)), train_dataset=train, processing_class=tokenizer)


def test_every_registered_weighting_trains(tmp_path, tokenizer, data):
    for name in WEIGHTINGS:
        trainer = make_trainer(tmp_path / name, tokenizer, data, weighting=name, batching="mixed", max_steps=2, eval_data=False)
        trainer.train()
        assert all(torch.isfinite(p).all() for p in trainer.model.parameters()), name


def test_rep_norm_reweights_the_tasks_of_a_mixed_batch(tmp_path, tokenizer, data):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting="rep_norm", batching="mixed", max_steps=2, eval_data=False)
    trainer.train()
    weights = trainer.weighting.weights()
    assert all(math.isfinite(w) and w > 0 for w in weights.values())
    assert len({round(w, 6) for w in weights.values()}) > 1, f"mixed batches give the tasks different weights: {weights}"


def test_mixed_batch_task_gradients_never_meet_at_the_representation(tmp_path, tokenizer, data):
    """Why gradient surgery stays on the shared parameters (no `rep_grad` option, unlike LibMTL): in a mixed batch each
    task's gradient with respect to the representation lives on that task's rows only, so every pairwise inner product
    there is exactly 0 and PCGrad/CAGrad would change nothing; the same gradients do conflict in the encoder's
    parameters. Norm balancing is the representation-level method that still acts (`rep_norm`)."""
    trainer = make_trainer(tmp_path, tokenizer, data, batching="mixed", eval_data=False)
    batch = next(iter(trainer.get_train_dataloader()))
    model = trainer.model.train()
    outputs = model(**batch)
    names = sorted(outputs.task_losses)
    assert len(names) >= 3, names
    shared = [p for _, p in model.shared_parameters()]
    at_representation, at_parameters = {}, {}
    for name in names:
        loss = outputs.task_losses[name]
        at_representation[name] = torch.autograd.grad(loss, outputs.head_inputs, retain_graph=True)[0].flatten()
        grads = torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True)
        at_parameters[name] = torch.cat([g.flatten() for g in grads if g is not None])
    for first, second in itertools.combinations(names, 2):
        assert torch.dot(at_representation[first], at_representation[second]).item() == 0.0
    dots = [torch.dot(at_parameters[a], at_parameters[b]).item() for a, b in itertools.combinations(names, 2)]
    assert all(dot != 0.0 for dot in dots)


@pytest.mark.parametrize("weighting", ["static", "pcgrad"])
def test_bf16_autocast_on_cpu(tmp_path, tokenizer, data, weighting):
    trainer = make_trainer(tmp_path, tokenizer, data, weighting=weighting, batching="mixed", bf16=True, use_cpu=True, max_steps=2, eval_data=False)
    assert trainer.accelerator.mixed_precision == "bf16"
    before = params(trainer.model)
    trainer.train()
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())
    assert not torch.equal(before["encoder.embeddings.LayerNorm.weight"], trainer.model.encoder.embeddings.LayerNorm.weight)


def test_push_to_hub_card_arguments_reach_the_card(tmp_path, tokenizer, data):
    from huggingface_hub import ModelCard

    trainer = make_trainer(tmp_path, tokenizer, data)
    trainer.create_model_card(license="mit", language=["en", "fr"], tags="nlu", finetuned_from="ignored")
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert (card.data.license, card.data.language) == ("mit", ["en", "fr"]) and "nlu" in card.data.tags
    trainer.save_model()  # later saves keep them
    assert ModelCard.load(tmp_path / "out" / "README.md").data.license == "mit"


def test_fixed_sampling_takes_probabilities_by_task_name(tmp_path, tokenizer, data):
    names = list(data)
    weights = {name: float(i == 0) for i, name in enumerate(names)}  # only the first task is drawn
    trainer = make_trainer(tmp_path, tokenizer, data, sampling="fixed", sampling_kwargs={"probabilities": dict(reversed(weights.items()))})
    assert trainer.task_sampler.probabilities(0, 1).tolist() == [weights[name] for name in names]
    with pytest.raises(ValueError, match=r"must name every task exactly once: unknown task\(s\) \['nli'\]; missing task\(s\) \["):
        make_trainer(tmp_path, tokenizer, data, sampling="fixed", sampling_kwargs={"probabilities": {"nli": 1.0}})


@pytest.mark.parametrize("batching", ["per_task", "mixed"])
def test_group_by_length_pads_less_with_the_same_tasks_per_step(tmp_path, tokenizer, data, batching):
    """`train_sampling_strategy="group_by_length"`: the trainer's batches pad fewer tokens, each step trains the same
    tasks on the same number of rows, and a run with the refinement stage (Transformers' LengthGroupedSampler) trains."""
    runs = {}
    for strategy in ("random", "group_by_length"):
        trainer = make_trainer(tmp_path / strategy, tokenizer, data, batching=batching, eval_data=False,
                               train_sampling_strategy=strategy, per_device_train_batch_size=4)
        batches = list(trainer.get_train_dataloader())
        tasks = [batch["task"] if "task" in batch else sorted(batch["task_ids"].tolist()) for batch in batches]
        runs[strategy] = (sum(batch["input_ids"].numel() for batch in batches), tasks)
    assert runs["group_by_length"][1] == runs["random"][1]
    # Demo rows differ in length mostly between tasks, which a mixed step keeps together: a smaller saving there.
    assert runs["group_by_length"][0] < (0.9 if batching == "per_task" else 0.97) * runs["random"][0], runs
    trainer = make_trainer(tmp_path / "run", tokenizer, data, batching=batching, eval_data=False,
                           train_sampling_strategy="group_by_length", refine_steps=2)
    before = params(trainer.model)
    metrics = trainer.train().metrics
    assert "refine_runtime" in metrics
    assert any(not torch.equal(before[name], p) for name, p in trainer.model.named_parameters())


def test_row_lengths_reads_input_ids_a_length_column_or_the_longest_choice():
    from datasets import Dataset

    from hf_mtl.training.train_batches import row_lengths

    assert row_lengths(Dataset.from_dict({"input_ids": [[1, 2, 3], [1], [4, 5]]}).select([2, 0])) == [2, 3]
    assert row_lengths(Dataset.from_dict({"input_ids": [[1, 2], [1]], "length": [7, 9]})) == [7, 9]
    assert row_lengths(Dataset.from_dict({"input_ids": [[1, 2], [1]], "n": [7, 9]}), "n") == [7, 9]
    assert row_lengths(Dataset.from_dict({"input_ids": [[[1, 2], [3, 4, 5]], [[1], [2]]]})) == [3, 1]
