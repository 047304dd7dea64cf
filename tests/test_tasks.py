import pytest

from hf_mtl import HEADS, MultiTaskConfig, Registry, TaskError, TaskSpec


def test_every_transformers_task_type_is_registered():
    assert HEADS.choices() == [
        "multi_label_classification",
        "multiple_choice",
        "regression",
        "sequence_classification",
        "token_classification",
    ]


def test_task_spec_from_dict_and_label_maps():
    spec = TaskSpec.from_any({"name": "nli", "type": "sequence_classification", "labels": ["yes", "no", "maybe"]})
    assert spec.num_labels == 3
    assert spec.id2label == {0: "yes", 1: "no", 2: "maybe"}
    assert spec.label2id["maybe"] == 2
    assert TaskSpec.from_any({"name": "sts", "type": "regression"}).num_labels == 1


def test_unknown_task_type_names_the_choices_and_suggests():
    with pytest.raises(TaskError, match=r"Unknown task type 'sequence_clasification'.*Choose one of: .*Did you mean 'sequence_classification'"):
        TaskSpec(name="x", type="sequence_clasification", labels=["a", "b"])


@pytest.mark.parametrize(
    "task, message",
    [
        ({"name": "x", "type": "sequence_classification"}, "needs `labels` with at least 2"),
        ({"name": "x", "type": "sequence_classification", "labels": ["only"]}, "at least 2"),
        ({"name": "x", "type": "token_classification", "labels": []}, "at least 1"),
        ({"name": "x", "type": "regression", "labels": ["a", "b"]}, "predicts one value"),
        ({"name": "x", "type": "sequence_classification", "labels": ["a", "a", "b"]}, r"duplicate label names \['a'\]"),
        ({"name": "x", "type": "sequence_classification", "labels": "ab"}, "must be a list of label names"),
        ({"name": "bad.name", "type": "regression"}, "Invalid task name 'bad.name'"),
        ({"name": "", "type": "regression"}, "Invalid task name ''"),
        ({"type": "regression"}, r"missing \['name'\]"),
        ({"name": "x", "type": "regression", "colour": "red"}, r"unknown keys \['colour'\]"),
    ],
)
def test_bad_task_definitions(task, message):
    with pytest.raises(TaskError, match=message):
        TaskSpec.from_any(task)


def test_duplicate_task_names_in_config(tiny_encoder_config):
    tasks = [{"name": "a", "type": "regression"}, {"name": "a", "type": "regression"}]
    with pytest.raises(TaskError, match=r"Duplicate task names \['a'\]"):
        MultiTaskConfig(encoder=tiny_encoder_config, tasks=tasks)


def test_config_round_trip_keeps_task_order_and_labels(tmp_path, tiny_encoder_config, all_tasks):
    config = MultiTaskConfig(encoder=tiny_encoder_config, tasks=list(reversed(all_tasks)), pooling="cls")
    config.save_pretrained(tmp_path)
    loaded = MultiTaskConfig.from_pretrained(tmp_path)
    assert loaded.task_names == [task["name"] for task in reversed(all_tasks)]
    assert loaded.task_spec("ner").labels == all_tasks[4]["labels"]
    assert loaded.task_spec("nli").text_columns == ["premise", "hypothesis"]
    assert loaded.pooling == "cls"
    assert loaded.encoder.hidden_size == 32


def test_unknown_pooling(tiny_encoder_config):
    with pytest.raises(ValueError, match="Unknown pooling 'max'. Choose one of: cls, mean, attention"):
        MultiTaskConfig(encoder=tiny_encoder_config, tasks=[], pooling="max")


def test_registry_rejects_duplicates_and_lists_choices():
    registry = Registry("widget")
    registry.register("a")(int)
    with pytest.raises(ValueError, match="already registered"):
        registry.register("a")(float)
    with pytest.raises(ValueError, match="Unknown widget 'b'. Choose one of: a."):
        registry.get("b")
    with pytest.raises(ValueError, match="lowercase"):
        registry.register("Upper")


def test_every_head_has_a_task_type_descriptor_and_back():
    from hf_mtl.heads import HEADS
    from hf_mtl.tasks import TASK_TYPES

    assert sorted(TASK_TYPES) == sorted(HEADS)
    for key in HEADS:
        assert HEADS.get(key).task_type == key == TASK_TYPES.get(key).name
