"""The options against negative transfer: task embedding, per-task / attention pooling, head learning rate, MUPPET
loss scaling. Each test checks the mechanism (saved and reloaded, routed, scaled), not a score."""

import math

import pytest
import torch
from transformers import AutoModel

from hf_mtl import MultiTaskConfig, MultiTaskModel, MultiTaskTrainingArguments, TaskError
from hf_mtl.heads import pool
from hf_mtl.training.trainer import task_loss_scales

from .conftest import tiny_bert_config
from .test_trainer import data, make_model, make_trainer  # noqa: F401  (fixture)


TASKS = [
    {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
    {"name": "stsb", "type": "regression"},
]


def build(**config):
    torch.manual_seed(0)
    return MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS, **config)).eval()


def batch(rows=4, length=7):
    ids = torch.randint(5, 99, (rows, length), generator=torch.Generator().manual_seed(1))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_task_embedding_starts_at_zero_conditions_rows_by_task_and_round_trips(tmp_path):
    plain, conditioned = build(), build(task_embedding="cls")
    conditioned.load_state_dict(plain.state_dict(), strict=False)
    assert conditioned.task_embedding.weight.shape == (3, 32) and not conditioned.task_embedding.weight.any()
    inputs = batch()
    # zero vectors: the same computation as without task conditioning
    torch.testing.assert_close(conditioned(**inputs, task="sst2").logits, plain(**inputs, task="sst2").logits)
    with torch.no_grad():
        conditioned.task_embedding.weight[0].normal_()
    changed = conditioned(**inputs, task="sst2").logits
    assert not torch.allclose(changed, plain(**inputs, task="sst2").logits)
    # only rows of task 0 move; the per-row task id picks the vector in a mixed batch
    mixed = conditioned(**inputs, task_ids=torch.tensor([0, 2, 0, 2]))
    torch.testing.assert_close(mixed.task_logits["stsb"], plain(**inputs, task_ids=torch.tensor([0, 2, 0, 2])).task_logits["stsb"])
    conditioned.save_pretrained(tmp_path / "model")
    reloaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    assert reloaded.config.task_embedding == "cls"
    torch.testing.assert_close(reloaded.task_embedding.weight, conditioned.task_embedding.weight)
    torch.testing.assert_close(reloaded(**inputs, task="sst2").logits, changed)


def test_task_embedding_follows_add_and_remove_task():
    model = build(task_embedding="cls")
    with torch.no_grad():
        model.task_embedding.weight.copy_(torch.arange(3).float()[:, None].expand(3, 32))
    model.add_task({"name": "intent", "type": "sequence_classification", "labels": ["a", "b", "c"]})
    assert model.task_embedding.weight[:, 0].tolist() == [0.0, 1.0, 2.0, 0.0]
    model.remove_task("ner")
    assert model.task_embedding.weight[:, 0].tolist() == [0.0, 2.0, 0.0]


def test_task_prefix_is_inserted_after_cls_and_removed_before_the_heads(tmp_path):
    plain, prefixed = build(task_embedding="none"), build(task_embedding="prefix", task_prefix_length=2)
    prefixed.load_state_dict(plain.state_dict(), strict=False)
    assert prefixed.task_embedding.weight.shape == (3, 2, 32) and not prefixed.task_embedding.weight.any()
    inputs = batch()
    inputs["attention_mask"][0, 5:] = 0
    # the encoder sees [CLS] + 2 prefix vectors + the text; heads see the text's positions only
    conditioned = prefixed.task_embedding.condition(prefixed.encoder.get_input_embeddings(), dict(inputs), torch.tensor([1] * 4))
    assert conditioned["inputs_embeds"].shape == (4, 9, 32)
    assert conditioned["position_ids"][0].tolist() == [0, 0, 0, 1, 2, 3, 4, 5, 6]
    assert conditioned["attention_mask"][0].tolist() == [1, 1, 1, 1, 1, 1, 1, 0, 0]
    out = prefixed(**inputs, task_ids=torch.tensor([0, 1, 0, 1]), output_hidden_states=True)
    assert out.task_logits["ner"].shape == (2, 7, 3) and out.hidden_states[-1].shape == (4, 7, 32)
    # even at zero the prefix changes the computation (copies of [CLS] are attended to): not the plain model
    assert not torch.allclose(prefixed(**inputs, task="ner").logits, plain(**inputs, task="ner").logits)
    before, sst2_before = prefixed(**inputs, task="ner").logits, prefixed(**inputs, task="sst2").logits
    with torch.no_grad():
        prefixed.task_embedding.weight[1].normal_()
    after = prefixed(**inputs, task="ner").logits
    assert not torch.allclose(after, before)  # task 1's vectors condition task 1's rows, and only them
    torch.testing.assert_close(prefixed(**inputs, task="sst2").logits, sst2_before)
    prefixed.save_pretrained(tmp_path / "model")
    reloaded = AutoModel.from_pretrained(tmp_path / "model").eval()
    assert (reloaded.config.task_embedding, reloaded.config.task_prefix_length) == ("prefix", 2)
    torch.testing.assert_close(reloaded(**inputs, task="ner").logits, after)
    reloaded.add_task({"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]})
    assert reloaded.task_embedding.weight.shape == (4, 2, 32) and not reloaded.task_embedding.weight[3].any()
    with pytest.raises(ValueError, match="task_prefix_length must be an integer >= 1.*got 0"):
        build(task_embedding="prefix", task_prefix_length=0)


def test_training_moves_the_task_prefix(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(list(data), task_embedding="prefix", task_prefix_length=2)
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, batching="mixed")
    trainer.train()
    assert model.task_embedding.weight.abs().sum(dim=(1, 2)).gt(0).all()


def test_unknown_task_embedding_and_pooling_name_the_choices():
    with pytest.raises(ValueError, match="Unknown task_embedding 'token'.*none, cls, prefix"):
        build(task_embedding="token")
    with pytest.raises(TaskError, match="unknown pooling 'max'.*cls, mean, attention"):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=[{**TASKS[0], "pooling": "max"}])


def test_attention_pooling_weights_only_real_tokens_and_per_task_pooling_overrides_the_model():
    hidden = torch.randn(2, 5, 8)
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]])
    scorer = torch.nn.Linear(8, 1)
    pooled = pool(hidden, mask, "attention", scorer)
    weights = torch.softmax(scorer(hidden[0, :3]).squeeze(-1), dim=-1)
    torch.testing.assert_close(pooled[0], (weights[:, None] * hidden[0, :3]).sum(0))
    hidden_padding_changed = hidden.clone()
    hidden_padding_changed[0, 3:] = 100.0
    torch.testing.assert_close(pool(hidden_padding_changed, mask, "attention", scorer)[0], pooled[0])
    # without a scorer of its own (discriminator, gates) attention pools as mean
    torch.testing.assert_close(pool(hidden, mask, "attention"), pool(hidden, mask, "mean"))

    tasks = [{**TASKS[0], "pooling": "attention"}, TASKS[1], TASKS[2]]
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=tasks, pooling="cls"))
    assert model.heads["sst2"].pooling == "attention" and model.heads["sst2"].attention_scorer is not None
    assert model.heads["stsb"].pooling == "cls" and model.heads["stsb"].attention_scorer is None


def test_muppet_loss_scales_divide_classification_losses_by_log_labels():
    specs = MultiTaskConfig(encoder=tiny_bert_config(), tasks=TASKS).task_specs
    scales = task_loss_scales(specs, "log_num_labels")
    assert scales == pytest.approx({"sst2": 1 / math.log(2), "ner": 1 / math.log(3), "stsb": 1.0})
    assert task_loss_scales(specs, "none") == {}
    with pytest.raises(ValueError, match="Unknown loss_scaling 'muppet'"):
        MultiTaskTrainingArguments(output_dir="x", loss_scaling="muppet")


def test_head_lr_multiplier_puts_heads_and_task_embeddings_in_their_own_groups(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(list(data), task_embedding="cls")
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, head_lr_multiplier=10.0, learning_rate=1e-3)
    optimizer = trainer.create_optimizer()
    names = {id(p): n for n, p in model.named_parameters()}
    head_groups = [g for g in optimizer.param_groups if g.get("hf_mtl_heads")]
    assert head_groups and all(g["lr"] == pytest.approx(1e-2) for g in head_groups)
    in_heads = {names[id(p)] for g in head_groups for p in g["params"]}
    assert in_heads == {n for n in names.values() if n.startswith(("heads.", "task_embedding."))}
    assert all(g["lr"] == pytest.approx(1e-3) for g in optimizer.param_groups if not g.get("hf_mtl_heads"))
    # weight decay kept per parameter kind: biases stay undecayed in the head groups too
    assert {g["weight_decay"] for g in head_groups} == {g["weight_decay"] for g in optimizer.param_groups if not g.get("hf_mtl_heads")}
    with pytest.raises(ValueError, match="head_lr_multiplier"):
        MultiTaskTrainingArguments(output_dir="x", head_lr_multiplier=0)


def test_training_moves_the_task_embedding(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(list(data), task_embedding="cls")
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, batching="mixed", loss_scaling="log_num_labels")
    trainer.train()
    assert model.task_embedding.weight.abs().sum(dim=1).gt(0).all()  # every task's vector learned something


def test_refinement_stage_trains_only_the_heads_and_restores_trainability(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(list(data))
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, refine_steps=3)
    encoder_before = {}
    original_train = type(trainer).__mro__[1].train

    def train_then_snapshot(self, *args, **kwargs):
        output = original_train(self, *args, **kwargs)
        encoder_before.update({n: p.detach().clone() for n, p in model.named_parameters()})
        return output

    type(trainer).__mro__[1].train = train_then_snapshot
    try:
        output = trainer.train()
    finally:
        type(trainer).__mro__[1].train = original_train
    after = dict(model.named_parameters())
    assert all(torch.equal(after[n], v) for n, v in encoder_before.items() if not n.startswith("heads."))
    assert all(not torch.equal(after[n], v) for n, v in encoder_before.items() if n.startswith("heads.") and n.endswith(("out_proj.weight", "classifier.weight")))
    assert {f"refine_{task}_loss" for task in data} <= set(output.metrics) and output.metrics["refine_runtime"] >= 0
    assert all(p.requires_grad for p in model.parameters())
    with pytest.raises(ValueError, match="refine_steps"):
        MultiTaskTrainingArguments(output_dir="x", refine_steps=-1)


@pytest.mark.parametrize("sharing", ["hard", "lora"])
def test_refinement_stage_runs_the_frozen_encoder_packed_with_the_losses_of_padded_calls(tmp_path, tokenizer, data, sharing):  # noqa: F811
    """The frozen encoder runs in eval mode during refinement, yet packed like a training call: fewer positions
    than the padded batches, and the same refinement losses as a model that runs every batch padded."""
    from hf_mtl.training.refinement import refine_heads

    kwargs = {"sharing": "lora", "sharing_kwargs": {"top_layers": 1, "freeze_backbone": False}} if sharing == "lora" else {}
    results = {}
    for packing in (True, False):
        model = make_model(list(data), encoder_packing=packing, encoder_length_buckets=2 if packing else 1, **kwargs)
        trainer = make_trainer(tmp_path / str(packing), tokenizer, data, model=model)
        positions, was_training = [], model.training
        handle = model.encoder.register_forward_pre_hook(
            lambda module, args, kw: positions.append(kw["input_ids"].numel()), with_kwargs=True)
        metrics = refine_heads(trainer, 3)
        handle.remove()
        results[packing] = (sum(positions), {k: v for k, v in metrics.items() if k.endswith("_loss")})
        assert model.training == was_training and all(p.requires_grad for p in model.parameters())
    (packed_positions, packed_losses), (padded_positions, padded_losses) = results[True], results[False]
    assert packed_positions < padded_positions
    assert packed_losses.keys() == padded_losses.keys() == {f"refine_{task}_loss" for task in data}
    for key, value in packed_losses.items():
        assert value == pytest.approx(padded_losses[key], rel=1e-4, abs=1e-5), key


def test_a_checkpoint_from_before_task_embeddings_loads_without_one(tmp_path):
    import json

    build().save_pretrained(tmp_path / "old")
    path = tmp_path / "old" / "config.json"
    config = json.loads(path.read_text())
    config.pop("task_embedding")
    path.write_text(json.dumps(config))
    assert MultiTaskConfig.from_pretrained(tmp_path / "old").task_embedding == "none"
    assert AutoModel.from_pretrained(tmp_path / "old").task_embedding is None


def test_label_smoothing_factor_smooths_the_cross_entropy_heads_in_training_only(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(list(data))
    make_trainer(tmp_path, tokenizer, data, model=model, label_smoothing_factor=0.2)
    smoothed = {name: head.label_smoothing for name, head in model.heads.items()}
    assert all(value == (0.2 if model.heads[name].smoothable else 0.0) for name, value in smoothed.items())
    assert any(smoothed.values())
    head = next(head for head in model.heads.values() if head.task_type == "sequence_classification")
    logits, labels = torch.tensor([[4.0, -4.0], [3.0, -2.0]]), torch.tensor([0, 0])
    plain = torch.nn.functional.cross_entropy(logits, labels)
    head.train()
    assert head.compute_loss(logits, labels) > plain + 0.1  # a confident right answer costs more when smoothed
    head.eval()
    torch.testing.assert_close(head.compute_loss(logits, labels), plain)  # evaluation losses stay comparable
    make_trainer(tmp_path, tokenizer, data, model=model)  # a new trainer without smoothing resets the heads
    assert not any(head.label_smoothing for head in model.heads.values())


def test_label_smoothing_without_a_classification_head_is_refused(tmp_path, tokenizer):  # noqa: F811
    from hf_mtl.data.demo_data import demo_datasets

    regression = demo_datasets(num_train=8, num_eval=4, seed=1, tasks=["rating"])
    with pytest.raises(ValueError, match="label_smoothing_factor=0.1 smooths cross-entropy losses.*rating: regression"):
        make_trainer(tmp_path, tokenizer, regression, model=make_model(["rating"]), label_smoothing_factor=0.1)
