"""Hierarchical sharing: shared lower layers, per-group upper copies, groups from the affinity analysis."""

import pytest
import torch

from hf_mtl import MultiTaskConfig, MultiTaskModel, TaskError
from hf_mtl.evaluation.affinity import suggest_groups
from hf_mtl.sharing import GroupRoutedLayer

from .conftest import tiny_bert_config
from .test_sharing_schemes import MIXABLE, mixed_batch


def hierarchical(groups=None, num_shared_layers=1, layers=3):
    encoder = tiny_bert_config(num_hidden_layers=layers)
    options = {"num_shared_layers": num_shared_layers, "groups": groups}
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=MIXABLE, sharing="hierarchical", sharing_kwargs=options))


def test_lower_layers_are_shared_and_upper_layers_copied_per_group():
    model = hierarchical({"sentence": ["sst2", "nli", "topics"]}, num_shared_layers=1)
    layers = model.encoder.encoder.layer
    assert not isinstance(layers[0], GroupRoutedLayer)
    assert all(isinstance(layer, GroupRoutedLayer) for layer in layers[1:])
    assert set(layers[1].groups) == {"sentence", "sts", "ner"}
    shared = [name for name, _ in model.shared_parameters()]
    assert shared and all(name.startswith(("encoder.embeddings.", "encoder.encoder.layer.0.")) for name in shared)
    assert any(name.startswith("encoder.embeddings.") for name in shared)
    assert {name for name, _ in model.task_parameters("sst2") if name.startswith("encoder.")} == {
        name for name, _ in model.task_parameters("nli") if name.startswith("encoder.")
    }
    assert model.config.sharing_kwargs["groups"] == {"sentence": ["sst2", "nli", "topics"], "sts": ["sts"], "ner": ["ner"]}


def test_zero_shared_layers_shares_only_the_embeddings():
    model = hierarchical(num_shared_layers=0, layers=2)
    assert {name.split(".")[1] for name, _ in model.shared_parameters()} == {"embeddings"}


def test_rows_of_one_group_are_independent_of_other_groups():
    model = hierarchical({"pair": ["sst2", "nli"]}).eval()
    input_ids, mask, task_ids = mixed_batch()
    inputs = {"input_ids": input_ids, "attention_mask": mask}
    with torch.no_grad():
        before = model.encode(task_ids, inputs)
        for p in model.encoder.encoder.layer[2].groups["ner"].parameters():
            p.add_(1.0)  # change only ner's copy
        after = model.encode(task_ids, inputs)
    ner_rows = task_ids == MIXABLE.index(next(t for t in MIXABLE if t["name"] == "ner"))
    assert not torch.allclose(after.hidden_states[ner_rows], before.hidden_states[ner_rows])
    torch.testing.assert_close(after.hidden_states[~ner_rows], before.hidden_states[~ner_rows])
    torch.testing.assert_close(after.shared_hidden_states, before.shared_hidden_states)


def test_hidden_states_of_a_batch_mixing_groups_equal_per_group_calls():
    model = hierarchical().eval()
    input_ids, mask, task_ids = mixed_batch()
    with torch.no_grad():
        mixed = model(input_ids=input_ids, attention_mask=mask, task_ids=task_ids, output_hidden_states=True)
        assert len(mixed.hidden_states) == 4
        for name, rows in mixed.task_indices.items():
            alone = model(input_ids=input_ids[rows], attention_mask=mask[rows], task=name, output_hidden_states=True)
            for layer, states in enumerate(alone.hidden_states):
                torch.testing.assert_close(mixed.hidden_states[layer][rows], states, rtol=1e-5, atol=1e-5)


def test_add_task_joins_a_group_or_gets_its_own_copy():
    model = hierarchical({"pair": ["sst2", "nli"]}).eval()
    model.add_task({"name": "intent", "type": "sequence_classification", "labels": ["a", "b"]}, group="pair")
    assert model.config.sharing_kwargs["groups"]["pair"] == ["sst2", "nli", "intent"]
    model.add_task({"name": "slots", "type": "token_classification", "labels": ["O", "B"]}, init_from="ner")
    layer = model.encoder.encoder.layer[2]
    assert "slots" in layer.groups
    for a, b in zip(layer.groups["slots"].parameters(), layer.groups["ner"].parameters()):
        assert torch.equal(a, b) and a is not b
    with pytest.raises(TaskError, match="A group named 'pair' exists already|joins group"):
        model.add_task({"name": "pair", "type": "regression"})
    model.remove_task("slots")
    assert "slots" not in layer.groups and "slots" not in model.config.sharing_kwargs["groups"]
    model.remove_task("intent")
    assert "pair" in layer.groups  # the group still has tasks


def test_suggested_groups_configure_hierarchical_sharing():
    names = [task["name"] for task in MIXABLE]
    matrix = -0.1 * torch.ones(5, 5)
    matrix[0, 1] = matrix[1, 0] = 0.5  # sst2 <-> nli help each other
    matrix[3, 4] = matrix[4, 3] = 0.3  # sts <-> ner
    groups = suggest_groups(matrix.numpy(), task_names=names)
    assert groups == [["sst2", "nli"], ["topics"], ["sts", "ner"]]
    model = hierarchical(groups)
    assert set(model.encoder.encoder.layer[1].groups) == {"group_0", "group_1", "group_2"}
    assert model.config.sharing_kwargs["groups"]["group_0"] == ["sst2", "nli"]
