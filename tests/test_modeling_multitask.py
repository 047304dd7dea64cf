import json
import logging
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import AutoConfig, AutoModel, AutoTokenizer, BertModel

from hf_mtl import CheckpointError, LabelError, MultiTaskConfig, MultiTaskModel, TaskError

from .conftest import ALL_TASKS, tiny_bert_config


def make_batch(task: dict, batch_size: int = 4, seq_len: int = 9, num_choices: int = 3, vocab: int = 99, generator=None):
    """Random inputs and labels in the task's own label format."""
    g = generator or torch.Generator().manual_seed(0)
    shape = (batch_size, num_choices, seq_len) if task["type"] == "multiple_choice" else (batch_size, seq_len)
    input_ids = torch.randint(1, vocab, shape, generator=g)
    attention_mask = torch.ones(shape, dtype=torch.long)
    attention_mask[..., seq_len - 2 :] = 0  # some padding
    attention_mask[0, ...] = 1
    n = len(task.get("labels") or [])
    if task["type"] == "sequence_classification":
        labels = torch.randint(0, n, (batch_size,), generator=g)
    elif task["type"] == "multi_label_classification":
        labels = torch.randint(0, 2, (batch_size, n), generator=g).float()
    elif task["type"] == "regression":
        labels = torch.rand(batch_size, generator=g) * 5
    elif task["type"] == "token_classification":
        labels = torch.randint(0, n, (batch_size, seq_len), generator=g)
        labels[:, 0] = -100
        labels[attention_mask == 0] = -100
    else:
        labels = torch.randint(0, num_choices, (batch_size,), generator=g)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.fixture
def tiny_model(tiny_encoder_config, all_tasks):
    return MultiTaskModel(MultiTaskConfig(encoder=tiny_encoder_config, tasks=all_tasks)).eval()


# ---------------------------------------------------------------- shapes and training


@pytest.mark.parametrize("task", ALL_TASKS, ids=[t["name"] for t in ALL_TASKS])
def test_every_head_type_trains_and_its_loss_falls(tiny_encoder_config, task):
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_encoder_config, tasks=[task]))
    model.train()
    batch = make_batch(task, batch_size=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        out = model(**batch, task=task["name"])
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(out.loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert sum(losses[-3:]) / 3 < 0.6 * sum(losses[:3]) / 3, losses


@pytest.mark.parametrize("task", ALL_TASKS, ids=[t["name"] for t in ALL_TASKS])
def test_logit_shapes(tiny_model, task):
    batch = make_batch(task, batch_size=3, seq_len=7)
    out = tiny_model(**batch, task=task["name"])
    expected = {
        "sequence_classification": (3, len(task.get("labels") or [])),
        "multi_label_classification": (3, 4),
        "regression": (3,),
        "token_classification": (3, 7, 5),
        "multiple_choice": (3, 3),
    }[task["type"]]
    assert tuple(out.logits.shape) == expected
    assert out.loss.dim() == 0 and torch.isfinite(out.loss)
    assert set(out.task_losses) == {task["name"]}


# ---------------------------------------------------------------- mixed-task batches


def _pad_labels(rows: list[torch.Tensor], width: int) -> torch.Tensor:
    padded = torch.full((len(rows), width), -100.0)
    for i, row in enumerate(rows):
        row = row.reshape(-1).float()
        padded[i, : row.numel()] = row
    return padded


def test_mixed_batch_equals_per_task_calls_row_by_row(tiny_model):
    names = ["sst2", "nli", "topics", "sts", "ner"]
    per_task = {name: make_batch(next(t for t in ALL_TASKS if t["name"] == name), batch_size=3, seq_len=8,
                                 generator=torch.Generator().manual_seed(i)) for i, name in enumerate(names)}
    # Interleave rows: row r of the mixed batch is row (r // 5) of task names[r % 5].
    order = [(name, i) for i in range(3) for name in names]
    input_ids = torch.stack([per_task[n]["input_ids"][i] for n, i in order])
    attention_mask = torch.stack([per_task[n]["attention_mask"][i] for n, i in order])
    labels = _pad_labels([per_task[n]["labels"][i] for n, i in order], width=8)
    task_ids = torch.tensor([tiny_model.config.task_index(n) for n, _ in order])

    mixed = tiny_model(input_ids=input_ids, attention_mask=attention_mask, labels=labels, task_ids=task_ids)
    assert mixed.logits is None
    total_rows = len(order)
    expected_loss = 0.0
    for name in names:
        single = tiny_model(**per_task[name], task=name)
        torch.testing.assert_close(mixed.task_logits[name], single.logits, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(mixed.task_losses[name], single.loss, rtol=1e-5, atol=1e-5)
        rows = [r for r, (n, _) in enumerate(order) if n == name]
        assert mixed.task_indices[name].tolist() == rows
        expected_loss = expected_loss + single.loss * len(rows) / total_rows
    torch.testing.assert_close(mixed.loss, expected_loss, rtol=1e-5, atol=1e-5)


def test_mixed_batch_runs_the_encoder_once(tiny_model):
    calls = []
    handle = tiny_model.encoder.register_forward_hook(lambda *args: calls.append(1))
    batch = make_batch(ALL_TASKS[0], batch_size=4)
    tiny_model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], task_ids=torch.tensor([0, 3, 0, 3]))
    handle.remove()
    assert calls == [1]


def test_task_ids_with_one_task_returns_logits(tiny_model):
    batch = make_batch(ALL_TASKS[0], batch_size=4)
    out = tiny_model(**batch, task_ids=torch.zeros(4, dtype=torch.long))
    torch.testing.assert_close(out.logits, tiny_model(**batch, task="sst2").logits)


# ---------------------------------------------------------------- bad input


def test_task_and_task_ids_both_or_neither(tiny_model):
    batch = make_batch(ALL_TASKS[0])
    with pytest.raises(TaskError, match="exactly one of `task`.*got neither"):
        tiny_model(input_ids=batch["input_ids"])
    with pytest.raises(TaskError, match="exactly one of `task`.*got both"):
        tiny_model(input_ids=batch["input_ids"], task="sst2", task_ids=torch.zeros(4, dtype=torch.long))


def test_unknown_task_name(tiny_model):
    with pytest.raises(TaskError, match="Unknown task 'sst3'. This model's tasks are: sst2, nli, topics, sts, ner, swag"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), task="sst3")


def test_task_id_out_of_range(tiny_model):
    with pytest.raises(TaskError, match="Task id 6 is out of range: this model has 6 task"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), task_ids=torch.tensor([0, 6]))
    with pytest.raises(TaskError, match="integer task indices"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), task_ids=torch.tensor([0.0, 1.0]))


def test_multiple_choice_cannot_be_mixed(tiny_model):
    with pytest.raises(TaskError, match=r"\['swag'\] cannot share a mixed-task batch"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), task_ids=torch.tensor([0, 5]))


@pytest.mark.parametrize(
    "task_name, labels, message",
    [
        ("sst2", torch.tensor([0, 2, 1, 0]), r"label 2 is out of range; valid ids are 0..1"),
        ("sst2", torch.tensor([0, -3, 1, 0]), r"label -3 is out of range"),
        ("sst2", torch.tensor([0.0, 1.0, 1.0, 0.0]), "integer class ids"),
        ("sst2", torch.tensor([[0], [1], [1], [0]]), r"expected labels of shape \(4,\)"),
        ("ner", torch.full((4, 9), 7), r"label 7 is out of range; valid ids are 0..4"),
        ("ner", torch.zeros(4, 5, dtype=torch.long), r"expected token labels of shape \(4, 9\)"),
        ("topics", torch.zeros(4, 3), r"expected multi-hot labels of shape \(4, 4\)"),
        ("topics", torch.full((4, 4), 2.0), r"must lie in \[0, 1\]"),
        ("sts", torch.tensor([1.0, float("nan"), 0.0, 2.0]), "must be finite"),
    ],
)
def test_bad_labels(tiny_model, task_name, labels, message):
    batch = make_batch(next(t for t in ALL_TASKS if t["name"] == task_name), batch_size=4, seq_len=9)
    batch["labels"] = labels
    with pytest.raises(LabelError, match=message):
        tiny_model(**batch, task=task_name)


def test_bad_multiple_choice_label_and_shape(tiny_model):
    batch = make_batch(ALL_TASKS[5], batch_size=2, num_choices=3)
    batch["labels"] = torch.tensor([0, 3])
    with pytest.raises(LabelError, match=r"choice index 3 is out of range for 3 choices"):
        tiny_model(**batch, task="swag")
    with pytest.raises(ValueError, match=r"inputs must be \[batch, num_choices, seq_len\]"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), task="swag")


def test_label_out_of_range_in_a_mixed_batch_names_the_task(tiny_model):
    labels = torch.tensor([[1.0], [9.0]])
    with pytest.raises(LabelError, match="Task 'nli': label 9 is out of range; valid ids are 0..2"):
        tiny_model(input_ids=torch.ones(2, 5, dtype=torch.long), labels=labels, task_ids=torch.tensor([0, 1]))


# ---------------------------------------------------------------- save / load


def test_save_and_auto_load_round_trip_tiny(tmp_path, tiny_model):
    tiny_model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").exists()
    assert AutoConfig.from_pretrained(tmp_path).task_names == tiny_model.config.task_names
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    assert type(loaded) is MultiTaskModel
    for name, tensor in tiny_model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    for task in ALL_TASKS:
        batch = make_batch(task)
        expected = tiny_model(**batch, task=task["name"]).logits
        torch.testing.assert_close(loaded(**batch, task=task["name"]).logits, expected, rtol=1e-5, atol=1e-6)
        assert loaded.config.task_spec(task["name"]).id2label == tiny_model.config.task_spec(task["name"]).id2label


@pytest.fixture
def saved_tiny(tmp_path, tiny_encoder_config):
    tasks = [{"name": "a", "type": "sequence_classification", "labels": ["x", "y"]}, {"name": "b", "type": "regression"}]
    MultiTaskModel(MultiTaskConfig(encoder=tiny_encoder_config, tasks=tasks)).save_pretrained(tmp_path / "ok")
    return tmp_path


def _edit_config(root, edit):
    target = root / "edited"
    shutil.copytree(root / "ok", target)
    config = json.loads((target / "config.json").read_text())
    edit(config)
    (target / "config.json").write_text(json.dumps(config))
    return target


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda c: c.__setitem__("tasks", c["tasks"][:1]), r"heads in the weights but not in the config: \['b'\]"),
        (lambda c: c["tasks"].append({"name": "c", "type": "regression"}), r"heads in the config but not in the weights: \['c'\]"),
        (lambda c: c["tasks"][0].__setitem__("labels", ["x", "y", "z"]), r"shapes differ from the config.*heads\.a\.out_proj"),
    ],
    ids=["extra-head-in-weights", "head-missing-from-weights", "resized-head"],
)
def test_checkpoint_whose_heads_do_not_match_its_config(saved_tiny, edit, message):
    with pytest.raises(CheckpointError, match=message):
        AutoModel.from_pretrained(_edit_config(saved_tiny, edit))


def test_resized_head_loads_when_asked(saved_tiny):
    path = _edit_config(saved_tiny, lambda c: c["tasks"][0].__setitem__("labels", ["x", "y", "z"]))
    model = AutoModel.from_pretrained(path, ignore_mismatched_sizes=True)
    assert model.heads["a"].out_proj.out_features == 3


def test_add_and_remove_task_survive_save_and_load(tmp_path, tiny_model):
    head = tiny_model.add_task({"name": "intent", "type": "sequence_classification", "labels": ["flight", "fare", "meal"]})
    assert head.out_proj.out_features == 3
    assert tiny_model.config.task_names[-1] == "intent"
    tiny_model.remove_task("nli")
    assert "nli" not in tiny_model.heads and "nli" not in tiny_model.config.task_names
    with pytest.raises(TaskError, match="Unknown task 'nli'"):
        tiny_model.remove_task("nli")
    with pytest.raises(TaskError, match=r"Duplicate task names \['sst2'\]"):
        tiny_model.add_task({"name": "sst2", "type": "regression"})
    tiny_model.save_pretrained(tmp_path)
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    batch = make_batch({"name": "intent", "type": "sequence_classification", "labels": ["a", "b", "c"]})
    torch.testing.assert_close(loaded(**batch, task="intent").logits, tiny_model(**batch, task="intent").logits)
    assert loaded.config.task_spec("intent").id2label == {0: "flight", 1: "fare", 2: "meal"}


def test_from_backbone_reports_missing_encoder_weights(tmp_path, caplog):
    config = tiny_bert_config()
    BertModel(config).save_pretrained(tmp_path)
    weights = load_file(tmp_path / "model.safetensors")
    removed = "encoder.layer.1.output.dense.weight"
    del weights[removed]
    save_file(weights, tmp_path / "model.safetensors", metadata={"format": "pt"})
    tasks = [{"name": "a", "type": "regression"}]
    with caplog.at_level(logging.WARNING, logger="hf_mtl"):
        model, info = MultiTaskModel.from_backbone(str(tmp_path), tasks, output_loading_info=True)
    assert info["missing_keys"] == [removed]
    assert f"encoder.{removed}" in caplog.text and "randomly initialised" in caplog.text
    assert info["new_head_keys"] and all(key.startswith("heads.a.") for key in info["new_head_keys"])
    with pytest.raises(CheckpointError, match=f"encoder.{removed}"):
        MultiTaskModel.from_backbone(str(tmp_path), tasks, strict=True)


def test_backbones_beyond_bert_share_an_encoder_and_encoder_decoders_are_refused():
    from transformers import T5Config, XLNetConfig

    tasks = [{"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
             {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]}]
    # XLNet's relative positions report max_position_embeddings=-1: no limit, not a limit of -1 tokens.
    xlnet = XLNetConfig(d_model=32, n_layer=2, n_head=2, d_inner=37, vocab_size=99)
    model = MultiTaskModel(MultiTaskConfig(encoder=xlnet, tasks=tasks))
    ids = torch.randint(3, 99, (2, 7))
    assert model(input_ids=ids, attention_mask=torch.ones_like(ids), task="sst2").logits.shape == (2, 2)
    t5 = T5Config(d_model=32, num_layers=2, num_heads=2, d_ff=37, d_kv=16, vocab_size=99)
    with pytest.raises(ValueError, match="'t5' is an encoder-decoder model.*encoder-only"):
        MultiTaskModel(MultiTaskConfig(encoder=t5, tasks=tasks))


# ---------------------------------------------------------------- real MiniLM weights


@pytest.mark.slow
def test_minilm_round_trip_with_auto_classes(tmp_path, minilm_path):
    tasks = [dict(task) for task in ALL_TASKS]
    model, info = MultiTaskModel.from_backbone(minilm_path, tasks, output_loading_info=True)
    assert info["missing_keys"] == []
    reference = AutoModel.from_pretrained(minilm_path)
    for name, tensor in reference.state_dict().items():
        if not name.startswith("pooler."):
            torch.testing.assert_close(model.encoder.state_dict()[name], tensor, rtol=0, atol=0)
    assert sum(p.numel() for p in model.encoder.parameters()) == pytest.approx(22.6e6, rel=0.01)

    tokenizer = AutoTokenizer.from_pretrained(minilm_path)
    model.eval()
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    config = AutoConfig.from_pretrained(tmp_path)
    assert type(config) is MultiTaskConfig and config.task_names == [t["name"] for t in ALL_TASKS]
    loaded = AutoModel.from_pretrained(tmp_path).eval()
    for name, tensor in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], tensor), name
    texts = ["A gripping, beautifully shot film.", "Dull and far too long.", "Paris is lovely in May."]
    single = tokenizer(texts, padding=True, return_tensors="pt")
    for task in ALL_TASKS:
        if task["type"] == "multiple_choice":
            pairs = tokenizer([texts[0]] * 2 + [texts[1]] * 2, ["yes", "no", "maybe", "never"], padding=True, return_tensors="pt")
            inputs = {k: v.view(2, 2, -1) for k, v in pairs.items()}
        else:
            inputs = single
        with torch.no_grad():
            expected = model(**inputs, task=task["name"]).logits
            got = loaded(**inputs, task=task["name"]).logits
        # Weights are bitwise equal (checked above for the encoder); safetensors tensors loaded at unaligned
        # addresses take another SIMD path in the head's matmul, which moves results by ~1e-9.
        torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)
        assert loaded.config.task_spec(task["name"]).id2label == model.config.task_spec(task["name"]).id2label


@pytest.mark.parametrize(
    ("family", "expected"),
    [("bert", 0.25), ("bert_classifier", 0.4), ("distilbert", 0.2), ("modernbert", 0.0), ("albert", 0.3), ("own", 0.05)],
)
def test_heads_take_the_dropout_transformers_own_head_would_use_for_the_backbone(family, expected):
    """BERT's hidden dropout, else the family's classifier dropout where its config sets one (DistilBERT's
    `seq_classif_dropout`, ALBERT's `classifier_dropout_prob`, ModernBERT's 0.0), never a silent 0.1 because the
    attribute is not called `hidden_dropout_prob`; `classifier_dropout` on the multi-task config wins."""
    from transformers import AlbertConfig, DistilBertConfig, ModernBertConfig

    encoders = {
        "bert": tiny_bert_config(hidden_dropout_prob=0.25),
        "bert_classifier": tiny_bert_config(hidden_dropout_prob=0.25, classifier_dropout=0.4),
        "distilbert": DistilBertConfig(dim=32, n_layers=2, n_heads=2, hidden_dim=37, vocab_size=100, dropout=0.15),
        "modernbert": ModernBertConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37,
                                       vocab_size=100, pad_token_id=0, mlp_dropout=0.15),
        "albert": AlbertConfig(hidden_size=32, embedding_size=16, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=37, vocab_size=100, classifier_dropout_prob=0.3),
        "own": tiny_bert_config(),
    }
    extra = {"classifier_dropout": 0.05} if family == "own" else {}
    model = MultiTaskModel(MultiTaskConfig(encoder=encoders[family], tasks=ALL_TASKS[:1] + ALL_TASKS[4:5], **extra))
    rates = {module.p for module in model.heads.modules() if isinstance(module, torch.nn.Dropout)}
    assert rates == {expected}
