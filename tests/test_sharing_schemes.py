"""The registry matrix: every sharing scheme must pass these. A new scheme adds one row to `SCHEMES`."""

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file
from transformers import AutoModel, BertModel

from hf_mtl import CheckpointError, MultiTaskConfig, MultiTaskModel, TaskError
from hf_mtl.sharing import SHARING

from .conftest import ALL_TASKS, tiny_bert_config
from .test_modeling_multitask import make_batch


# One row per registered scheme: the options that make it non-trivial on the 2-layer tiny encoder.
SCHEMES = {
    "hard": {},
    "lora": {"r": 4, "lora_alpha": 8},
    "shared_private": {"private_hidden_size": 16, "private_heads": 2},
    "hierarchical": {"num_shared_layers": 1, "groups": {"pair": ["sst2", "nli"]}},
    "mmoe": {"num_experts": 2, "expert_type": "layer", "num_expert_layers": 1},
    "ple": {"num_experts": 2, "num_task_experts": 1, "num_expert_layers": 2},
    "adashare": {"initial_temperature": 2.0},
}
MIXABLE = [task for task in ALL_TASKS if task["type"] != "multiple_choice"]


def test_every_registered_scheme_has_a_row():
    assert set(SHARING.choices()) == set(SCHEMES)


def build(scheme, tasks=ALL_TASKS, dropout=0.1, **overrides):
    options = {**SCHEMES[scheme], **overrides}
    encoder = tiny_bert_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=tasks, sharing=scheme, sharing_kwargs=options))
    with torch.no_grad():  # LoRA starts as the identity: move every adapter so routing mistakes show
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
            if "policy_logits" in name:  # AdaShare starts executing every layer: make tasks skip different ones
                p.normal_(0, 2.0)
    return model.eval()


def mixed_batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(1, 99, (8, 9), generator=g)
    attention_mask = torch.ones_like(input_ids)
    attention_mask[1, 6:] = 0
    attention_mask[4, 3:] = 0
    task_ids = torch.tensor([0, 1, 2, 3, 4, 0, 2, 1])
    return input_ids, attention_mask, task_ids


def mixed_labels(task_ids, width):
    """One label row per example in its task's format, right-padded with -100 (as the mixed collator does)."""
    per_type = {
        "sequence_classification": [1.0],
        "multi_label_classification": [1.0, 0.0, 1.0, 0.0],
        "regression": [0.5],
        "token_classification": [1.0] * width,
    }
    labels = torch.full((len(task_ids), width), -100.0)
    for row, task_id in enumerate(task_ids.tolist()):
        values = per_type[MIXABLE[task_id]["type"]]
        labels[row, : len(values)] = torch.tensor(values)
    return labels


@pytest.mark.parametrize("scheme", SCHEMES)
def test_mixed_batch_equals_per_task_calls(scheme):
    model = build(scheme, MIXABLE)
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
        for name, rows in mixed.task_indices.items():
            alone = model(input_ids=input_ids[rows], attention_mask=mask[rows], task=name).logits
            torch.testing.assert_close(mixed.task_logits[name], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_outputs_equal_across_save_and_load(tmp_path, scheme):
    model = build(scheme)
    model.save_pretrained(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "model.safetensors"]
    assert json.loads((tmp_path / "config.json").read_text()).get("sharing", "hard") == scheme
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert loaded.config.sharing_kwargs == model.config.sharing_kwargs
    saved_state = model.state_dict()
    assert loaded.state_dict().keys() == saved_state.keys()
    for name, value in loaded.state_dict().items():
        assert torch.equal(value, saved_state[name]), name
    input_ids, mask, task_ids = mixed_batch(1)
    with torch.no_grad():
        expected = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids).task_logits
        actual = loaded(input_ids=input_ids, attention_mask=mask, task_ids=task_ids).task_logits
        for name in expected:
            torch.testing.assert_close(actual[name], expected[name])
        swag = make_batch(ALL_TASKS[-1])
        torch.testing.assert_close(loaded(**swag, task="swag").logits, model(**swag, task="swag").logits)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_a_training_step_moves_trainable_parameters_only(scheme):
    model = build(scheme, MIXABLE).train()
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    input_ids, mask, task_ids = mixed_batch()
    labels = mixed_labels(task_ids, width=9)
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=labels)
    assert torch.isfinite(out.loss)
    out.loss.backward()
    optimizer.step()
    for name, p in model.named_parameters():
        if not p.requires_grad:
            assert torch.equal(p, before[name]), f"frozen {name} changed"
    moved = {name.split(".")[0] for name, p in model.named_parameters() if not torch.equal(p, before[name])}
    assert "heads" in moved and "encoder" in moved


@pytest.mark.parametrize("scheme", SCHEMES)
def test_shared_parameters_are_trainable_and_owned_by_no_task(scheme):
    model = build(scheme)
    shared = dict(model.shared_parameters())
    for name, p in shared.items():
        assert p.requires_grad and not name.startswith(("heads.", "discriminator."))
        assert model.sharing.parameter_owner(name) is None
    owned = {name for task in model.config.task_names for name, _ in model.task_parameters(task)}
    assert not owned & set(shared)
    everything = {name for name, p in model.named_parameters() if p.requires_grad}
    assert everything == owned | set(shared)  # every trainable parameter is shared or some task's own


@pytest.mark.parametrize("scheme", SCHEMES)
def test_add_and_remove_task_survive_save_and_load(tmp_path, scheme):
    model = build(scheme)
    new = {"name": "intent", "type": "sequence_classification", "labels": ["flight", "fare", "meal"]}
    model.add_task(new)
    model.remove_task("nli")
    assert model.config.task_names[-1] == "intent" and "nli" not in model.config.task_names
    model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    batch = make_batch(new)
    del batch["labels"]
    with torch.no_grad():
        for task in ("intent", "sst2", "ner"):
            torch.testing.assert_close(loaded(**batch, task=task).logits, model(**batch, task=task).logits)
    weights = load_file(tmp_path / "model.safetensors")
    assert not any(".nli." in key for key in weights), "the removed task left weights behind"
    if scheme != "hard":  # the new task got its own adapter / private encoder / upper-layer copy
        units = model.sharing.task_units("intent")
        assert any((model.sharing.parameter_owner(k) or (None, None))[1] in units for k in weights)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "hard"])
def test_checkpoint_missing_a_task_unit_fails_clearly(tmp_path, scheme):
    model = build(scheme, MIXABLE)
    model.save_pretrained(tmp_path / "ok")
    edited = tmp_path / "edited"
    shutil.copytree(tmp_path / "ok", edited)
    config = json.loads((edited / "config.json").read_text())
    config["tasks"].append({"name": "extra", "type": "regression"})
    (edited / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match=rf"{model.sharing.unit_label}\(s\) in the config but not in the weights: \['extra'\]"):
        AutoModel.from_pretrained(edited)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_from_backbone_initialises_every_part_from_the_backbone(tmp_path, scheme):
    torch.manual_seed(1)
    backbone = BertModel(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    backbone.save_pretrained(tmp_path)
    model, info = MultiTaskModel.from_backbone(
        str(tmp_path), MIXABLE, output_loading_info=True, config_kwargs={"sharing": scheme, "sharing_kwargs": SCHEMES[scheme]}
    )
    assert info["missing_keys"] == []
    assert info["unexpected_keys"] == ["pooler.dense.bias", "pooler.dense.weight"]
    assert all(model.sharing.parameter_owner(key) for key in info["new_sharing_keys"])
    state = backbone.state_dict()
    for key, value in model.encoder.state_dict().items():
        source = model.sharing.backbone_key(key)
        if source is not None:
            assert torch.equal(value, state[source]), key
    model.eval()
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        expected = backbone.eval()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        encoded = model.encode(task_ids, {"input_ids": input_ids, "attention_mask": mask})
    # Adapters are the identity and copies equal the backbone's layers: the shared features are the backbone's.
    torch.testing.assert_close(encoded.hidden_states[..., : expected.shape[-1]], expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("scheme", [s for s in SCHEMES if s != "hard"])
def test_a_plain_backbone_through_from_pretrained_points_to_from_backbone(tmp_path, scheme):
    BertModel(tiny_bert_config(), add_pooling_layer=False).save_pretrained(tmp_path)
    config = MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing=scheme, sharing_kwargs=SCHEMES[scheme])
    with pytest.raises(CheckpointError, match="from_backbone"):
        MultiTaskModel.from_pretrained(tmp_path, config=config)


@pytest.mark.parametrize(
    "kwargs, error, message",
    [
        ({"sharing": "lroa"}, ValueError, r"Unknown sharing scheme 'lroa'.*Did you mean 'lora'"),
        ({"sharing": "lora", "sharing_kwargs": {"rank": 4}}, ValueError, r"Unknown sharing_kwargs \['rank'\].*Valid keys"),
        ({"sharing": "lora", "sharing_kwargs": {"adapters": {"ghost": {"r": 2}}}}, TaskError, r"task\(s\) \['ghost'\] that do not exist"),
        ({"sharing": "lora", "sharing_kwargs": {"r": 0}}, ValueError, r"positive integer, got 0"),
        ({"sharing": "lora", "sharing_kwargs": {"learning_rate": 0}}, ValueError, r"`learning_rate` must be > 0 or None.*got 0"),
        ({"sharing": "hierarchical", "sharing_kwargs": {"num_shared_layers": 2}}, ValueError, r"backbone has 2 layers, so use 0..1"),
        ({"sharing": "hierarchical", "sharing_kwargs": {"num_shared_layers": 5}}, ValueError, r"num_shared_layers=5"),
        ({"sharing": "hierarchical", "sharing_kwargs": {}}, ValueError, r"needs sharing_kwargs\['num_shared_layers'\]"),
        ({"sharing": "hierarchical", "sharing_kwargs": {"num_shared_layers": 1, "groups": [["sst2", "ghost"]]}}, TaskError, "ghost"),
        ({"sharing": "hierarchical", "sharing_kwargs": {"num_shared_layers": 1, "groups": {"a": ["sst2"], "b": ["sst2"]}}}, TaskError, "one group"),
        ({"sharing": "shared_private", "sharing_kwargs": {"private_hidden_size": 10, "private_heads": 4}}, ValueError, "divisible"),
        ({"sharing": "hard", "sharing_kwargs": {"r": 4}}, ValueError, "takes no options"),
    ],
    ids=["unknown-scheme", "unknown-option", "adapter-for-missing-task", "bad-rank", "bad-adapter-lr", "n-equals-layers", "n-too-large",
         "n-missing", "group-missing-task", "task-in-two-groups", "private-heads", "hard-options"],
)
def test_bad_sharing_config_fails_when_built(kwargs, error, message):
    with pytest.raises(error, match=message):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, **kwargs)


def test_target_modules_that_match_nothing():
    with pytest.raises(ValueError, match=r"target_modules \['qkv'\] match no usable module.*query, value"):
        build("lora", MIXABLE, target_modules=["qkv"])


def test_group_argument_is_for_hierarchical_only():
    with pytest.raises(TaskError, match="only applies to sharing='hierarchical'"):
        build("lora", MIXABLE).add_task({"name": "x", "type": "regression"}, group="pair")
    with pytest.raises(TaskError, match="Unknown task 'ghost'"):
        build("lora", MIXABLE).add_task({"name": "x", "type": "regression"}, init_from="ghost")


MINILM_OPTIONS = {
    **SCHEMES,
    "hierarchical": {"num_shared_layers": 4, "groups": [["sst2", "nli"]]},
    "adashare": {"initial_execute_probability": 0.95},
}


@pytest.mark.slow
@pytest.mark.parametrize("scheme", SCHEMES)
def test_real_minilm_weights_train_save_and_reload(tmp_path, minilm_path, scheme):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model, info = MultiTaskModel.from_backbone(
        minilm_path, MIXABLE, output_loading_info=True, config_kwargs={"sharing": scheme, "sharing_kwargs": MINILM_OPTIONS[scheme]}
    )
    assert info["missing_keys"] == []
    texts = ["a gripping film", "the plot was dull", "Ada Lovelace wrote the first program", "flights to Paris"]
    batch = tokenizer(texts, padding=True, return_tensors="pt")
    task_ids = torch.tensor([0, 0, 4, 3])
    labels = mixed_labels(task_ids, width=batch["input_ids"].shape[1])
    labels[1, 0] = 0.0
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    model.train()
    losses = []
    for _ in range(4):
        loss = model(**batch, task_ids=task_ids, labels=labels).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    assert losses[-1] < losses[0], losses
    for name, p in model.named_parameters():
        assert p.requires_grad or torch.equal(p, before[name]), name
    model.eval().save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    with torch.no_grad():
        mixed = model(**batch, task_ids=task_ids)
        reloaded = loaded(**batch, task_ids=task_ids)
        for name, rows in mixed.task_indices.items():
            torch.testing.assert_close(reloaded.task_logits[name], mixed.task_logits[name])
            alone = model(**{key: value[rows] for key, value in batch.items()}, task=name).logits
            torch.testing.assert_close(mixed.task_logits[name], alone, rtol=1e-4, atol=1e-5)
