"""Softmax-gated experts (sharing='mmoe' / 'ple'): gates, routing, what is logged and drawn, bad options.
The registry matrix (tests/test_sharing_schemes.py) covers save/load, mixed batches, from_backbone and tasks."""

import json

import pytest
import torch
from transformers import AutoModel, BertModel

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.data.demo_data import demo_datasets

from .conftest import tiny_bert_config
from .test_sharing_schemes import MIXABLE, mixed_batch, mixed_labels
from .test_trainer import make_model, make_trainer


def build(scheme="mmoe", dropout=0.0, **options):
    torch.manual_seed(0)
    encoder = tiny_bert_config(hidden_dropout_prob=dropout, attention_probs_dropout_prob=dropout)
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=MIXABLE, sharing=scheme, sharing_kwargs=options))


def train_steps(model, steps, lr=0.5):
    model.train()
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=lr)
    input_ids, mask, task_ids = mixed_batch()
    labels = mixed_labels(task_ids, width=input_ids.shape[1])
    for _ in range(steps):
        model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, labels=labels).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


@pytest.mark.parametrize(
    "scheme, options, width",
    [("mmoe", {"num_experts": 3}, 3), ("ple", {"num_experts": 2, "num_task_experts": 2}, 4),
     ("mmoe", {"num_experts": 2, "expert_type": "ffn", "ffn_hidden_size": 8}, 2)],
    ids=["mmoe-layer", "ple-layer", "mmoe-ffn"],
)
def test_gate_weights_are_a_distribution_per_task_and_move_during_training(scheme, options, width):
    model = build(scheme, **options)
    train_steps(model, 1)
    first = model.sharing.gate_weights(reset=True)
    assert set(first) == {task["name"] for task in MIXABLE}  # every task of the batch has its gate recorded
    for weights in first.values():
        assert len(weights) == width and min(weights) >= 0 and sum(weights) == pytest.approx(1.0, abs=1e-6)
    train_steps(model, 15)
    last = model.sharing.gate_weights()
    moved = max(abs(a - b) for task in first for a, b in zip(first[task], last[task]))
    assert moved > 1e-3, (first, last)
    assert model.sharing.expert_names == [f"shared_{i}" for i in range(options["num_experts"])] + [
        f"task_{j}" for j in range(options.get("num_task_experts", 0))
    ]
    model.eval()  # evaluation does not count towards the training statistics
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    assert model.sharing.gate_weights() == last


def test_layer_experts_replace_the_top_layers_and_each_task_expert_sees_only_its_rows():
    model = build("ple", num_experts=2, num_task_experts=1, num_expert_layers=1).eval()
    layers = model.encoder.encoder.layer
    assert len(layers) == 2 and type(layers[1]).__name__ == "ExpertMixtureLayer"  # 1 shared layer + the experts
    rows_seen = {}
    for task, stacks in layers[1].task_experts.items():
        stacks[0][0].register_forward_hook(lambda m, args, out, task=task: rows_seen.setdefault(task, []).append(args[0].shape[0]))
    shared_rows = []
    layers[1].shared_experts[0][0].register_forward_hook(lambda m, args, out: shared_rows.append(args[0].shape[0]))
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids)
    expected = {MIXABLE[i]["name"]: [int((task_ids == i).sum())] for i in torch.unique(task_ids).tolist()}
    assert rows_seen == expected and shared_rows == [len(task_ids)]


def test_hidden_states_have_one_entry_per_layer_and_attentions_fail_clearly():
    model = build("mmoe", num_experts=2, num_expert_layers=1).eval()
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        out = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, output_hidden_states=True)
        encoded = model.encode(task_ids, {"input_ids": input_ids, "attention_mask": mask})
    assert len(out.hidden_states) == 3  # embeddings + 2 layers
    torch.testing.assert_close(out.hidden_states[-1], encoded.hidden_states)
    torch.testing.assert_close(out.hidden_states[1], encoded.shared_hidden_states)
    with pytest.raises(ValueError, match="output_attentions is not available.*expert_type='ffn'"):
        model(input_ids=input_ids, task="sst2", output_attentions=True)
    with pytest.raises(RuntimeError, match="call the MultiTaskModel"):
        model.encoder(input_ids=input_ids)


def test_ffn_experts_start_as_the_identity_on_a_backbone(tmp_path):
    torch.manual_seed(1)
    backbone = BertModel(tiny_bert_config(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0))
    backbone.save_pretrained(tmp_path)
    options = {"num_experts": 2, "num_task_experts": 1, "expert_type": "ffn"}
    model, info = MultiTaskModel.from_backbone(
        str(tmp_path), MIXABLE, output_loading_info=True, config_kwargs={"sharing": "ple", "sharing_kwargs": options}
    )
    assert info["missing_keys"] == []
    assert any(key.startswith("sharing.experts.") for key in info["new_sharing_keys"])
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        expected = backbone.eval()(input_ids=input_ids, attention_mask=mask).last_hidden_state
        out = model.eval()(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, output_hidden_states=True)
        encoded = model.encode(task_ids, {"input_ids": input_ids, "attention_mask": mask})
    torch.testing.assert_close(encoded.hidden_states, expected)
    assert len(out.hidden_states) == 3  # the encoder's own: embeddings + 2 layers
    torch.testing.assert_close(out.hidden_states[-1], expected)
    shared = [name for name, _ in model.shared_parameters()]
    assert any(name.startswith("sharing.experts.") for name in shared)
    assert not any(name.startswith(("sharing.gates.", "sharing.task_experts.")) for name in shared)


def test_trainer_logs_gate_weights_and_draws_the_heat_map(tmp_path, tokenizer):  # noqa: F811
    tasks = ["sentiment", "rating"]
    data = demo_datasets(num_train=32, num_eval=8, seed=1, tasks=tasks)
    model = make_model(tasks, dropout=0.0, sharing="ple", sharing_kwargs={"num_experts": 2, "num_task_experts": 1})
    trainer = make_trainer(tmp_path, tokenizer, data, model=model, eval_data=False, max_steps=4, logging_steps=2, batching="mixed")
    trainer.train()
    logged = [entry for entry in trainer.state.log_history if "gates/sentiment/expert_0" in entry]
    assert len(logged) == 2
    for entry in logged:
        for task in tasks:
            assert sum(entry[f"gates/{task}/expert_{i}"] for i in range(3)) == pytest.approx(1.0, abs=1e-4)
    out = tmp_path / "out"
    result = json.loads((out / "expert_gates.json").read_text())
    assert result["tasks"] == tasks and result["experts"] == ["shared_0", "shared_1", "task_0"]
    assert result["gate_weights"][0] == pytest.approx([logged[-1][f"gates/sentiment/expert_{i}"] for i in range(3)], abs=1e-5)
    assert (out / "expert_gates.png").stat().st_size > 1000
    trainer.save_model(str(out))
    loaded = AutoModel.from_pretrained(out)
    assert loaded.config.sharing == "ple" and loaded.config.sharing_kwargs["num_task_experts"] == 1


@pytest.mark.parametrize(
    "scheme, options, message",
    [
        ("mmoe", {"expert_type": "lyer"}, r"Unknown expert_type 'lyer'.*did you mean 'layer'.*'layer'.*'ffn'"),
        ("mmoe", {"expert_type": "moe"}, r"Unknown expert_type 'moe'.*Choose one of: 'layer'.*'ffn'"),
        ("mmoe", {"num_experts": 0}, r"`num_experts` .* must be an integer >= 1, got 0"),
        ("ple", {"num_task_experts": 0}, r"`num_task_experts` .*0 is sharing='mmoe'.* got 0"),
        ("mmoe", {"num_expert_layers": 3}, r"num_expert_layers=3 but the backbone has 2 layers: use 1..2"),
        ("mmoe", {"ffn_hidden_size": -4}, r"`ffn_hidden_size`.*got -4"),
        ("mmoe", {"num_task_experts": 1}, r"Unknown sharing_kwargs \['num_task_experts'\] for sharing='mmoe'"),
    ],
    ids=["typo-kind", "unknown-kind", "zero-experts", "zero-task-experts", "too-many-layers", "ffn-width", "mmoe-task-experts"],
)
def test_bad_expert_options_fail_when_the_config_is_built(scheme, options, message):
    with pytest.raises(ValueError, match=message):
        MultiTaskConfig(encoder=tiny_bert_config(), tasks=MIXABLE, sharing=scheme, sharing_kwargs=options)
