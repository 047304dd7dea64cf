"""Per-task LoRA adapters: routing, peft traps, the trainer with a frozen backbone, PEFT-format export."""

import json

import pytest
import torch
from transformers import AutoModel, BertModel

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.sharing.lora_routing import dense_update as _DENSE_UPDATE
from hf_mtl.sharing.lora_routing import grouped_update as _GROUPED_UPDATE

from .conftest import tiny_bert_config
from .test_sharing_schemes import MIXABLE, mixed_batch, mixed_labels
from .test_trainer import data, make_model, make_trainer  # noqa: F401  (fixture)


def lora_model(dropout=0.0, **options):
    encoder = tiny_bert_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    config = MultiTaskConfig(encoder=encoder, tasks=MIXABLE, sharing="lora", sharing_kwargs={"r": 4, **options},
                             task_embedding="cls")  # its rows count as task parameters
    model = MultiTaskModel(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.2)
    return model


def test_adapters_start_as_the_identity_and_are_separate_per_task():
    model = MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="lora"))
    lora_b = [p for name, p in model.named_parameters() if "lora_B" in name]
    assert lora_b and all(torch.count_nonzero(p) == 0 for p in lora_b)  # post_init's BERT init is undone (trap 17)
    adapters = {model.sharing.parameter_owner(name)[1] for name, _ in model.named_parameters() if "lora_A" in name}
    assert adapters == set(model.config.task_names)
    assert model.shared_parameters() == []  # frozen backbone: nothing shared is trainable
    assert all(not p.requires_grad for name, p in model.encoder.named_parameters() if "lora_" not in name)


def test_mixed_batch_in_training_mode_runs_each_task_through_its_adapter():
    model = lora_model(lora_dropout=0.0).train()  # no dropout anywhere: train and eval must agree
    input_ids, mask, task_ids = mixed_batch()
    trained = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    with torch.no_grad():
        evaluated = model.eval()(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    for name in evaluated.task_logits:
        trained_logits, evaluated_logits = trained.task_logits[name], evaluated.task_logits[name]
        if trained_logits.dim() == 3:  # token logits: training packs rows and leaves padded positions at zero
            rows = task_ids == model.config.task_index(name)
            attended = mask[rows].bool()
            trained_logits, evaluated_logits = trained_logits[attended], evaluated_logits[attended]
        torch.testing.assert_close(trained_logits, evaluated_logits, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ranks, form", [("equal", "grouped"), ("equal", "dense"), ("ner_r8", "peft")])
@pytest.mark.parametrize("packing", [True, False])
def test_mixed_batch_gradients_equal_one_task_at_a_time(packing, ranks, form, monkeypatch):
    """One encoder pass over a mixed batch gives every row the states and every adapter and backbone weight the
    gradient of running each task's rows alone through its adapter: with adapters of one rank routed per position
    (grouped by adapter, or dense with a mask), with another rank for one task through peft's mixed-adapter forward."""
    adapters = {"ner": {"r": 8}} if ranks == "ner_r8" else {}
    model = lora_model(lora_dropout=0.0, freeze_backbone=False, adapters=adapters).train()
    model.config.encoder_packing = packing
    input_ids, mask, task_ids = mixed_batch()
    weights = torch.randn(*input_ids.shape, 32, generator=torch.Generator().manual_seed(3))

    def run(rows):
        states = model.sharing.encode(model, task_ids[rows], {"input_ids": input_ids[rows], "attention_mask": mask[rows]})
        states = states.hidden_states * mask[rows, :, None]
        (states * weights[rows]).sum().backward()
        return states.detach()

    from hf_mtl.sharing import lora_routing

    calls = []
    monkeypatch.setattr(lora_routing, "DENSE_MAX_SHARE", 1e9 if form == "dense" else 0.0)
    monkeypatch.setattr(lora_routing, "grouped_update", lambda *args: calls.append("grouped") or _GROUPED_UPDATE(*args))
    monkeypatch.setattr(lora_routing, "dense_update", lambda *args: calls.append("dense") or _DENSE_UPDATE(*args))
    mixed = run(torch.arange(len(task_ids)))
    # Rank 8 for ner in every layer: no layer can stack its adapters, so peft's forward runs everywhere.
    assert set(calls) == ({form} if form != "peft" else set())
    mixed_grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.grad is not None}
    model.zero_grad()
    for task_id in task_ids.unique():
        rows = (task_ids == task_id).nonzero().flatten()
        torch.testing.assert_close(mixed[rows], run(rows), rtol=1e-4, atol=1e-5)
    alone = {name: p.grad for name, p in model.named_parameters() if p.grad is not None}
    assert alone.keys() == mixed_grads.keys() and any("lora_A" in name for name in alone)
    for name, grad in alone.items():
        torch.testing.assert_close(mixed_grads[name], grad, rtol=1e-3, atol=1e-5, msg=lambda m, name=name: f"{name}: {m}")


@pytest.mark.parametrize("ranks", ["equal", "ner_r8"])
def test_adapters_of_one_rank_let_packed_lines_mix_tasks_as_hard_sharing_does(ranks):
    """Adapters that stack route each position, so rows pack as under hard sharing (fewer lines than one task's rows
    per line); a task with another rank needs peft's per-row forward, so lines hold one task's rows."""
    adapters = {"ner": {"r": 8}} if ranks == "ner_r8" else {}
    input_ids, mask, task_ids = mixed_batch()
    lines = {}
    for sharing in ("hard", "lora"):
        config = MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing=sharing,
                                 sharing_kwargs={"r": 4, "adapters": adapters} if sharing == "lora" else {})
        model = MultiTaskModel(config).train()
        calls = []
        model.encoder.register_forward_pre_hook(lambda module, args, kwargs: calls.append(kwargs["attention_mask"].shape[0]),
                                                with_kwargs=True)
        model.sharing.encode(model, task_ids, {"input_ids": input_ids, "attention_mask": mask})
        lines[sharing] = calls
    from hf_mtl.sharing.row_packing import pack_rows

    tasks = [str(t) for t in task_ids.tolist()]
    keyed = len(pack_rows(mask.sum(dim=1).tolist(), tasks))
    assert lines["hard"] == [len(pack_rows(mask.sum(dim=1).tolist()))]
    assert lines["lora"] == (lines["hard"] if ranks == "equal" else [keyed])
    assert keyed > lines["hard"][0], "the batch must be one where keyed lines cost more"


def test_every_adapter_stays_trainable_after_switching(tmp_path):
    model = lora_model().train()
    input_ids, mask, task_ids = mixed_batch()
    for task in model.config.task_names:  # each call activates one adapter (peft's set_adapter flips requires_grad)
        model(input_ids=input_ids, attention_mask=mask, task=task)
    adapters = [p for name, p in model.named_parameters() if "lora_" in name]
    assert adapters and all(p.requires_grad for p in adapters)
    labels = mixed_labels(task_ids, width=input_ids.shape[1])
    model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=labels).loss.backward()
    for name, p in model.named_parameters():
        if "lora_" in name:
            assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_frozen_backbone_does_not_change_in_training(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(sharing="lora", sharing_kwargs={"r": 4})
    before = {name: p.detach().clone() for name, p in model.named_parameters()}
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, eval_data=False, batching="mixed")
    trainer.train()
    frozen = [name for name, p in model.named_parameters() if not p.requires_grad]
    assert any("base_layer" in name for name in frozen) and any("embeddings" in name for name in frozen)
    for name in frozen:
        assert torch.equal(model.state_dict()[name], before[name]), f"frozen {name} changed"
    moved = [name for name, p in model.named_parameters() if "lora_" in name and not torch.equal(p, before[name])]
    assert {model.sharing.parameter_owner(name)[1] for name in moved} == set(model.config.task_names)


def test_gradient_surgery_needs_shared_parameters(tmp_path, tokenizer, data):  # noqa: F811
    frozen = make_model(sharing="lora", sharing_kwargs={"r": 4})
    with pytest.raises(ValueError, match=r"Weighting 'pcgrad'.*shares no trainable parameter.*freeze_backbone"):
        make_trainer(tmp_path, tokenizer, data, model=frozen, weighting="pcgrad", batching="mixed")
    trainable = make_model(sharing="lora", sharing_kwargs={"r": 4, "freeze_backbone": False})
    before = {name: p.detach().clone() for name, p in trainable.named_parameters()}
    make_trainer(tmp_path, tokenizer, data, model=trainable, eval_data=False, weighting="pcgrad", batching="mixed", max_steps=2).train()
    shared = [name for name, _ in trainable.shared_parameters()]
    assert shared and all("lora_" not in name for name in shared)
    assert any(not torch.equal(trainable.state_dict()[name], before[name]) for name in shared)


def test_adapters_train_at_their_own_learning_rate_beside_a_trainable_backbone(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(sharing="lora", sharing_kwargs={"r": 4, "freeze_backbone": False, "learning_rate": 1e-3})
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, eval_data=False, batching="mixed", max_steps=2)
    trainer.train()
    groups = [g for g in trainer.optimizer.param_groups if g.get("hf_mtl_sharing")]
    adapters = {id(p) for name, p in model.named_parameters() if "lora_" in name}
    assert len(groups) == 1 and {id(p) for p in groups[0]["params"]} == adapters
    assert groups[0]["initial_lr"] == 1e-3 and groups[0]["weight_decay"] == 0.0
    others = [id(p) for g in trainer.optimizer.param_groups if not g.get("hf_mtl_sharing") for p in g["params"]]
    assert not adapters & set(others) and others  # the backbone and heads stay in Trainer's groups


def test_adapters_learning_rate_can_follow_the_trainers(tmp_path, tokenizer, data):  # noqa: F811
    model = make_model(sharing="lora", sharing_kwargs={"r": 4, "freeze_backbone": False, "learning_rate_multiplier": 10})
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, eval_data=False, batching="mixed", max_steps=2,
                           learning_rate=3e-5)
    trainer.train()
    (group,) = [g for g in trainer.optimizer.param_groups if g.get("hf_mtl_sharing")]
    assert group["initial_lr"] == pytest.approx(3e-4) and group["weight_decay"] == 0.0
    assert "lr_multiplier" not in group
    assert {id(p) for p in group["params"]} == {id(p) for name, p in model.named_parameters() if "lora_" in name}


@pytest.mark.parametrize("options, message", [
    ({"learning_rate_multiplier": 0}, "learning_rate_multiplier` must be > 0"),
    ({"learning_rate_multiplier": "10"}, "learning_rate_multiplier` must be > 0"),
    ({"learning_rate_multiplier": 10, "learning_rate": 1e-3}, "not both"),
])
def test_bad_adapter_learning_rate_multiplier_is_refused(options, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="lora", sharing_kwargs=options)


@pytest.mark.parametrize("encoder", ["bert", "distilbert"])
def test_top_layers_put_adapters_on_every_linear_layer_of_the_top_blocks_only(encoder, tmp_path):
    from transformers import DistilBertConfig

    encoder_config = tiny_bert_config(num_hidden_layers=3) if encoder == "bert" else DistilBertConfig(
        dim=32, n_layers=3, n_heads=2, hidden_dim=37, vocab_size=100)
    config = MultiTaskConfig(encoder=encoder_config, tasks=MIXABLE, sharing="lora",
                             sharing_kwargs={"top_layers": 2, "freeze_backbone": False, "r": 4})
    model = MultiTaskModel(config)
    wrapped = {name.split(".lora_A.")[0] for name, _ in model.named_parameters() if ".lora_A.sst2" in name}
    linear = {"encoder." + name for name, module in model.encoder.named_modules()
              if isinstance(module, torch.nn.Linear) and "lora_" not in name}
    top = {name.removesuffix(".base_layer") for name in linear if ".layer.1." in name or ".layer.2." in name}
    assert wrapped == top and len(wrapped) == 12  # 6 linear layers a block: attention q, k, v, out; FFN in, out
    assert not any(name.endswith(".base_layer") for name in linear - {n + ".base_layer" for n in top})
    assert all(p.requires_grad for name, p in model.named_parameters() if "layer.0." in name)  # shared, trainable
    model.save_pretrained(tmp_path)
    reloaded = MultiTaskModel.from_pretrained(tmp_path)
    assert {n for n, _ in reloaded.named_parameters()} == {n for n, _ in model.named_parameters()}


@pytest.mark.parametrize("options, message", [
    ({"top_layers": 0}, r"`top_layers` must be an integer from 1 to the backbone's 2 layers.*got 0"),
    ({"top_layers": 3}, r"got 3"),
    ({"top_layers": 1, "target_modules": "query"}, r"takes target_modules as a list of module names, not the regex 'query'"),
])
def test_bad_top_layers_fail_when_built(options, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing="lora", sharing_kwargs=options)


def test_per_task_rank_override_and_parameter_counts():
    model = lora_model(adapters={"ner": {"r": 8}})
    counts = model.task_parameter_counts()
    ranks = {name: p.shape[0] for name, p in model.named_parameters() if "lora_A" in name and "layer.0.attention.self.query" in name}
    assert ranks[next(n for n in ranks if ".ner." in n)] == 8 and ranks[next(n for n in ranks if ".sst2." in n)] == 4
    head = sum(p.numel() for p in model.heads["ner"].parameters())
    adapter = 2 * 2 * (32 * 8 + 8 * 32)  # 2 layers x (query, value) x (A + B) at rank 8, hidden 32
    own = head + adapter + model.task_embedding.weight.numel()  # the task embedding table: one row per task
    assert counts["ner"] == {"task_specific": own, "trainable_task_specific": own, "shared_trainable": 0, "trainable": own}


def test_add_task_from_another_adapter_and_remove_it():
    model = lora_model().eval()
    model.add_task({"name": "sst2_copy", "type": "sequence_classification", "labels": ["a", "b"]}, init_from="sst2")
    model.heads["sst2_copy"].load_state_dict(model.heads["sst2"].state_dict())
    input_ids, mask, _ = mixed_batch()
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=input_ids, attention_mask=mask, task="sst2_copy").logits,
            model(input_ids=input_ids, attention_mask=mask, task="sst2").logits,
        )
    assert all(p.requires_grad for name, p in model.named_parameters() if "lora_" in name)
    model.remove_task("sst2_copy")
    assert not any("sst2_copy" in name for name, _ in model.named_parameters())
    assert "sst2_copy" not in model.encoder.peft_config


def test_exported_adapter_loads_in_peft_with_equal_outputs(tmp_path):
    from peft import PeftModel

    torch.manual_seed(0)
    BertModel(tiny_bert_config()).save_pretrained(tmp_path / "backbone")
    model = MultiTaskModel.from_backbone(str(tmp_path / "backbone"), MIXABLE, config_kwargs={"sharing": "lora"})
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B.ner" in name:
                p.normal_(0, 0.2)
    model.eval().save_adapter("ner", str(tmp_path / "ner"))
    assert {p.name for p in (tmp_path / "ner").iterdir()} >= {"adapter_model.safetensors", "adapter_config.json"}
    peft_model = PeftModel.from_pretrained(AutoModel.from_pretrained(tmp_path / "backbone"), str(tmp_path / "ner")).eval()
    input_ids, mask, _ = mixed_batch()
    with torch.no_grad():
        expected = model.encode(torch.full((8,), model.config.task_index("ner")), {"input_ids": input_ids, "attention_mask": mask})
        actual = peft_model(input_ids=input_ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(actual, expected.hidden_states)
    with pytest.raises(ValueError, match="Unknown task 'ghost'"):
        model.save_adapter("ghost", str(tmp_path / "ghost"))
    # After a save/reload of the hf_mtl model the adapter still names the backbone: AutoPeftModel rebuilds it alone.
    from peft import AutoPeftModel

    model.save_pretrained(tmp_path / "mtl")
    MultiTaskModel.from_pretrained(tmp_path / "mtl").save_adapter("ner", str(tmp_path / "ner-again"))
    config = json.loads((tmp_path / "ner-again" / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(tmp_path / "backbone") and config["auto_mapping"]["base_model_class"] == "BertModel"
    auto = AutoPeftModel.from_pretrained(str(tmp_path / "ner-again")).eval()
    with torch.no_grad():
        torch.testing.assert_close(auto(input_ids=input_ids, attention_mask=mask).last_hidden_state, expected.hidden_states)


@pytest.mark.parametrize("attention", ["eager", "sdpa"])
def test_predictor_runs_the_blocks_below_the_adapters_once_for_all_tasks_of_a_text(tokenizer, attention, monkeypatch):
    """LoRA on the top block only: a text asked for three tasks runs the two blocks below once and the top block once
    per task, in one encoder call, with the answers of one routed row per text and task."""
    from hf_mtl.inference import MultiTaskPredictor
    from hf_mtl.sharing.lora import LoraSharing

    encoder = tiny_bert_config(vocab_size=len(tokenizer), num_hidden_layers=3, hidden_dropout_prob=0.0,
                               attention_probs_dropout_prob=0.0, attn_implementation=attention)
    tasks = [task for task in MIXABLE if task["name"] in ("sst2", "ner", "sts")]
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=tasks, sharing="lora",
                                           sharing_kwargs={"r": 4, "freeze_backbone": False, "top_layers": 1}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # adapters that differ, so a row through the wrong one shows
    rows_out = {}
    for index, block in enumerate(model.encoder.encoder.layer):
        block.register_forward_hook(lambda module, args, output, index=index: rows_out.setdefault(index, []).append(
            output.shape[0]))
    texts = ["Bob liked the film", "Ann flew to Oslo on a rainy Monday", "Bob liked the film"]
    rows = [{"task": task["name"], "text": text} for text in texts for task in tasks]
    predictor = MultiTaskPredictor(model, tokenizer, batch_size=32)
    fanned = predictor.predict(rows)
    assert rows_out == {0: [2], 1: [2], 2: [6]}, "two distinct texts below the adapters, once per task above"
    rows_out.clear()
    monkeypatch.setattr(LoraSharing, "fan_out_cost", lambda self, model, tasks: None)
    routed = predictor.predict(rows)
    assert rows_out == {0: [9], 1: [9], 2: [9]}
    for first, second in zip(fanned, routed):
        assert first["task"] == second["task"]
        for key in ("scores", "value"):
            if key in first:
                assert first[key] == pytest.approx(second[key], abs=1e-4)
        if "tokens" in first:
            assert [t["tag"] for t in first["tokens"]] == [t["tag"] for t in second["tokens"]]


def test_deberta_relative_positions_run_each_task_in_a_call_of_its_own(tokenizer):
    """DeBERTa projects its relative-position table through the blocks' own linear layers, once for every row: with
    adapters on them no adapter can be chosen per row. A mixed batch then runs one call per task (the same logits as
    each task alone), and the predictor does the same instead of fanning a text out over its tasks."""
    from transformers import DebertaV2Config

    from hf_mtl.inference import MultiTaskPredictor

    encoder = DebertaV2Config(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=3, num_attention_heads=2,
                              intermediate_size=37, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                              relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=16)
    tasks = [task for task in MIXABLE if task["name"] in ("sst2", "sts")]
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=tasks, sharing="lora",
                                           sharing_kwargs={"r": 4, "freeze_backbone": False, "top_layers": 1,
                                                           "lora_dropout": 0.0}))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    input_ids = torch.randint(1000, 2000, (4, 7))
    mask, task_ids = torch.ones_like(input_ids), torch.tensor([0, 1, 1, 0])
    mixed = model.train()(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    assert model.sharing._calls_per_task
    for index, name in enumerate(model.config.task_names):
        rows = task_ids == index
        alone = model(input_ids=input_ids[rows], attention_mask=mask[rows], task=name).logits
        torch.testing.assert_close(mixed.task_logits[name], alone, rtol=1e-5, atol=1e-5)
    model.sharing._calls_per_task = False  # as a freshly loaded model: the predictor finds out by itself
    rows = [{"task": task["name"], "text": text} for text in ("Bob liked the film", "Ann flew") for task in tasks]
    predictor = MultiTaskPredictor(model, tokenizer)
    items = [predictor._encode(i, row) for i, row in enumerate(rows)]
    assert predictor._fan_out_pays(items), "two texts for two tasks: worth fanning out, if the blocks allowed it"
    results = predictor.predict(rows)
    assert model.sharing._fan_out_unsupported and predictor._run_shared(items, per_task=True) is None
    alone = [MultiTaskPredictor(model, tokenizer).predict([row])[0] for row in rows]
    for first, second in zip(results, alone):
        for key in ("scores", "value"):
            if key in first:
                assert first[key] == pytest.approx(second[key], abs=1e-4)


ENCODER_FAMILIES = {  # tiny random configs: (model type, extra config values)
    "bert": {}, "roberta": {}, "xlm-roberta": {}, "camembert": {}, "electra": {"embedding_size": 16},
    "distilbert": {"dim": 32, "n_layers": 3, "n_heads": 2, "hidden_dim": 37},
    "deberta-v2": {"relative_attention": True, "pos_att_type": ["p2c", "c2p"], "position_buckets": 16},
    "mpnet": {}, "modernbert": {"global_attn_every_n_layers": 1}, "xlnet": {"d_model": 32, "n_layer": 3, "n_head": 2,
                                                                            "d_inner": 37},
}


@pytest.mark.parametrize("family", sorted(ENCODER_FAMILIES))
def test_the_recipe_default_trains_a_mixed_batch_on_every_encoder_family(family):
    """The recipes' default scheme (per-task LoRA on the top two blocks of a trained encoder) on each encoder family:
    a mixed training batch of a sentence and a token task gives each task the logits of its rows run alone."""
    from transformers import AutoConfig

    from hf_mtl.recipes.loader import RECIPE_MODEL_DEFAULTS

    sizes = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 2, "intermediate_size": 37}
    extra = ENCODER_FAMILIES[family]
    values = {**({} if family in ("distilbert", "xlnet") else sizes), **extra, "vocab_size": 50368}
    encoder = AutoConfig.for_model(family, **values)
    for name in ("hidden_dropout_prob", "attention_probs_dropout_prob", "dropout", "attention_dropout",
                 "embedding_dropout", "mlp_dropout"):
        if hasattr(encoder, name):
            setattr(encoder, name, 0.0)
    tasks = [task for task in MIXABLE if task["name"] in ("sst2", "ner")]
    options = {**RECIPE_MODEL_DEFAULTS["sharing_kwargs"], "lora_dropout": 0.0}
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=tasks, sharing="lora", sharing_kwargs=options,
                                           classifier_dropout=0.0))
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    model.train()  # packed rows, as in training; every dropout is 0
    # First a batch as long as its rows, where XLNet's sequence-first states have the rows' shape (after a routing
    # that fails on shapes, a model runs calls per task for good), then a longer one.
    for width in (4, 7):
        input_ids = torch.randint(1000, 2000, (4, width))
        mask, task_ids = torch.ones_like(input_ids), torch.tensor([0, 1, 1, 0])
        mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
        for index, name in enumerate(model.config.task_names):
            rows = task_ids == index
            alone = model(input_ids=input_ids[rows], attention_mask=mask[rows], task=name).logits
            torch.testing.assert_close(mixed.task_logits[name], alone, rtol=1e-4, atol=1e-4)
