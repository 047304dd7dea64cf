import re

import pytest
import torch
from huggingface_hub import ModelCard
from transformers import AutoConfig, BertTokenizer

from hf_mtl import MultiTaskConfig, MultiTaskModel
from hf_mtl.hub.model_card import build_model_card, load_template, read_eval_results, save_model_card

from .conftest import ALL_TASKS, tiny_bert_config


FAKE_TOKEN = "hf_" + "Zq4Xw9Lk2Pm7Rt5Vb8Nc3Hd6Jf1Gs0Ya"  # the shape of a real token, 30+ characters after hf_
WORDS = ["a", "an", "and", "the", "first", "second", "one", "example", "sky", "is", "blue", "made", "of", "cheese", "film", "good", "bad"]


def save_tiny_checkpoint(directory, tasks, encoder=None):
    """A tiny random model and a matching word-level BERT tokenizer, saved together as a user would push them."""
    model = MultiTaskModel(MultiTaskConfig(encoder=encoder or tiny_bert_config(), tasks=tasks)).eval()
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS
    tokenizer = BertTokenizer(vocab={word: i for i, word in enumerate(vocab)})
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return model, tokenizer


@pytest.fixture
def config(all_tasks):
    return MultiTaskConfig(encoder=tiny_bert_config(), tasks=all_tasks)


def code_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


def test_card_states_tasks_labels_backbone_and_metadata(config):
    card = build_model_card(config, model_id="me/mtl-tiny")
    text = card.content
    for task in ALL_TASKS:
        assert re.search(rf"\| `{task['name']}` \| {task['type']} \|", text), task["name"]
        for label in task.get("labels") or []:
            assert label in text
    assert "(index of the right choice)" in text and "(a real value)" in text
    assert "bert, 2 layers, hidden size 32" in text
    assert "none recorded" in text  # a random encoder: no base model is claimed
    data = card.data
    assert data.library_name == "hf_mtl"  # the Hub's Transformers snippet would fail without `import hf_mtl`
    assert {"hf_mtl", "multi-task"} <= set(data.tags)
    assert "pip install hf_mtl" in text and 'pipeline("multi-task", model="me/mtl-tiny")' in text
    assert "one shared encoder and one head per task" in text
    assert data.pipeline_tag is None  # a pipeline cannot pass `task=`
    assert data.base_model is None and data.eval_results is None
    assert "Training data\n\nNot stated." in text


def test_card_metadata_license_language_tags_split_and_sharing(all_tasks, tmp_path):
    config = MultiTaskConfig(encoder=tiny_bert_config(), tasks=all_tasks, sharing="lora")
    card = build_model_card(config, license="apache-2.0", language="en", tags=["nlu"], eval_results={"sst2": {"accuracy": 0.5}},
                            datasets={"sst2": {"hub": "nyu-mll/glue", "config": "sst2", "split": "validation"}})
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert (loaded.data.license, loaded.data.language) == ("apache-2.0", "en") and "nlu" in loaded.data.tags
    assert loaded.data.eval_results[0].dataset_split == "validation"
    assert "a frozen backbone with one LoRA adapter (rank 8) per task and one head per task" in loaded.text
    assert "one shared encoder" not in loaded.text
    top = MultiTaskConfig(encoder=tiny_bert_config(), tasks=all_tasks, sharing="lora",
                          sharing_kwargs={"freeze_backbone": False, "top_layers": 2, "r": 16})
    assert ("a shared encoder trained on every task with one LoRA adapter (rank 16) per task on its top 2 layers"
            in build_model_card(top).text)


def test_model_index_names_hub_datasets_and_every_result_round_trips(config, tmp_path):
    results = {"sst2": {"accuracy": 0.875, "f1": 0.8612}, "nli": {"accuracy": 0.61}, "ner": {"seqeval_f1": 0.5}}
    long_description = "local files " + ", ".join(f"part-{i:03d}.jsonl" for i in range(30))
    datasets = {"sst2": {"hub": "nyu-mll/glue", "config": "sst2"}, "nli": {"hub": "nyu-mll/glue", "config": "rte",
                "split": "validation", "revision": "bcdcba79"}, "ner": long_description}
    card = build_model_card(config, model_id="me/mtl-tiny", eval_results=results, datasets=datasets)
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert read_eval_results(loaded) == results  # every task, also the one on local files
    # model-index: a Hub dataset's id and configuration, never a task name; local data claims no Hub dataset.
    entries = loaded.data.to_dict()["model-index"][0]
    assert entries["name"] == "me/mtl-tiny"
    datasets_seen = sorted((r["dataset"]["type"], r["dataset"].get("config"), r["dataset"].get("revision"))
                           for r in entries["results"])
    assert datasets_seen == [("nyu-mll/glue", "rte", "bcdcba79"), ("nyu-mll/glue", "sst2", None)]
    flat = {(r.dataset_config, r.metric_name): r.metric_value for r in loaded.data.eval_results}
    assert flat == {("sst2", "sst2 accuracy"): 0.875, ("sst2", "sst2 f1"): 0.8612, ("rte", "nli accuracy"): 0.61}
    assert all(r.task_type == "text-classification" and r.dataset_split == "validation" for r in loaded.data.eval_results)
    assert loaded.data.datasets == ["nyu-mll/glue"] and sorted(loaded.data.metrics) == ["accuracy", "f1", "seqeval_f1"]
    assert "| `sst2` | f1 | 0.8612 |" in loaded.text
    assert "part-029.jsonl" in loaded.text and "nyu-mll/glue (rte)" in loaded.text  # descriptions are never cut
    # numpy / torch scalars are accepted and stored as plain floats
    card = build_model_card(config, eval_results={"sts": {"pearson": torch.tensor(0.25)}})
    assert read_eval_results(card) == {"sts": {"pearson": 0.25}} and card.data.eval_results is None
    with pytest.raises(TypeError, match=r"`datasets\['sst2'\]` has unknown key\(s\) \['subset'\]"):
        build_model_card(config, datasets={"sst2": {"hub": "nyu-mll/glue", "subset": "sst2"}})


def test_cards_of_earlier_versions_still_read_back(config, tmp_path):
    """Before `hf_mtl.eval_results`, the results lived in model-index alone, the task in `dataset.config`."""
    from huggingface_hub import EvalResult, ModelCardData

    data = ModelCardData(model_name="m", eval_results=[EvalResult(
        task_type="text-classification", dataset_type="sst2", dataset_name="sst2", dataset_config="sst2",
        metric_type="accuracy", metric_value=0.9)])
    assert read_eval_results(ModelCard(f"---\n{data.to_yaml()}\n---\n")) == {"sst2": {"accuracy": 0.9}}


def test_no_secret_lands_in_the_card(config):
    training = {
        "learning_rate": 3e-5,
        "weighting": {"strategy": "uncertainty", "api_key": "sk-abc123", "nested": [{"Password": "hunter2"}]},
        "hub_token": FAKE_TOKEN,
        "HF_TOKEN": "x",
        "wandb_secret": "wandb-secret-value",
        "push_to_hub_model_key": "keyvalue",
        "run_name": f"run-with-{FAKE_TOKEN}",
    }
    recipe = f"model:\n  backbone: minilm\nhub_token: {FAKE_TOKEN}\napi-key: 'plain-secret-42'\nlr: 3e-5  # peak\n"
    card = build_model_card(
        config,
        model_id="me/mtl-tiny",
        training=training,
        recipe=recipe,
        datasets={"sst2": f"local files, fetched with {FAKE_TOKEN}"},
        notes=f"Pushed with {FAKE_TOKEN}.",
    )
    text = card.content
    for secret in (FAKE_TOKEN, "sk-abc123", "hunter2", "wandb-secret-value", "keyvalue", "plain-secret-42"):
        assert secret not in text, secret
    for dropped in ("api_key", "Password", "HF_TOKEN", "wandb_secret", "push_to_hub_model_key"):
        assert f"| {dropped}" not in text and f".{dropped}" not in text
    assert "| learning_rate | 3e-05 |" in text and "| weighting.strategy | uncertainty |" in text
    assert "run-with-<redacted>" in text
    assert "hub_token: <redacted>" in text and "lr: 3e-5  # peak" in text  # the recipe keeps its layout
    dict_recipe = build_model_card(config, recipe={"lr": 1e-4, "hub": {"token": FAKE_TOKEN, "repo": "me/x"}}).content
    assert FAKE_TOKEN not in dict_recipe and "repo: me/x" in dict_recipe


def test_generated_data_is_stated_and_hub_datasets_are_linked(config):
    datasets = {
        "sst2": "nyu-mll/glue",
        "nli": "local files: data/nli/train.jsonl",
        "sts": "generated by hf_mtl: synthetic sentence pairs scored by word overlap",
    }
    card = build_model_card(config, datasets=datasets, eval_results={"sts": {"pearson": 0.9}})
    text = card.content
    assert "> **Generated data.** Task `sts` uses data generated by a program" in text
    assert "| `sts` | generated by hf_mtl: synthetic sentence pairs scored by word overlap | **generated**" in text
    assert "[Hub dataset](https://huggingface.co/datasets/nyu-mll/glue)" in text
    assert "| `nli` | local files: data/nli/train.jsonl | as described |" in text
    assert "| `ner` | not stated |" in text
    assert card.data.datasets == ["nyu-mll/glue"]  # local files and generated data are no Hub ids
    assert card.data.eval_results is None  # generated data claims no Hub dataset in model-index
    assert card.data.hf_mtl["eval_results"] == {"sts": {"pearson": 0.9}}
    real = build_model_card(config, datasets={"sst2": "nyu-mll/glue"}).content
    assert "Generated data" not in real


def test_base_model_defaults(config, minilm_path):
    minilm = MultiTaskConfig(encoder=AutoConfig.from_pretrained(minilm_path), tasks=ALL_TASKS[:1])
    assert minilm.encoder.name_or_path == minilm_path
    card = build_model_card(minilm)  # the packaged copy of all-MiniLM-L6-v2 is named by its Hub id
    assert card.data.base_model == "sentence-transformers/all-MiniLM-L6-v2"
    assert minilm_path not in card.content
    local = tiny_bert_config()
    local._name_or_path = "/home/someone/checkpoints/my-bert"
    card = build_model_card(MultiTaskConfig(encoder=local, tasks=ALL_TASKS[:1]))
    assert card.data.base_model is None and "/home/someone" not in card.content
    assert "a local checkpoint (`my-bert`)" in card.content
    assert (
        build_model_card(config, base_model="google-bert/bert-base-uncased").data.base_model
        == "google-bert/bert-base-uncased"
    )
    config._name_or_path = "me/mtl-v1"  # fine-tuned from another hf_mtl model on the Hub
    assert build_model_card(config, model_id="me/mtl-v2").data.base_model == "me/mtl-v1"


def test_training_table_transfer_table_and_recipe(config):
    training = {
        "weighting": "gradnorm",
        "sampling": {"strategy": "temperature", "temperature": 2.0},
        "batching": "homogeneous",
        "max_steps": 300,
        "learning_rate": 5e-5,
        "seed": 13,
    }
    transfer = [
        {"task": "sst2", "metric": "accuracy", "single": 0.81, "multi": 0.835, "single_std": 0.012, "multi_std": 0.004},
        {"task": "sts", "metric": "pearson", "single": 0.7, "multi": 0.65, "delta": -0.05},
    ]
    recipe = "tasks:\n  - name: sst2\nnotes: |\n  ```not a fence```\n"
    text = build_model_card(config, training=training, transfer_table=transfer, recipe=recipe).content
    assert "| sampling.temperature | 2.0 |" in text and "| max_steps | 300 |" in text and "| seed | 13 |" in text
    assert "| `sst2` | accuracy | 0.8100 ± 0.0120 | 0.8350 ± 0.0040 | +0.0250 |" in text
    assert "| `sts` | pearson | 0.7000 | 0.6500 | -0.0500 |" in text
    assert "<details>\n<summary>Training recipe (YAML)</summary>\n\n~~~~yaml\ntasks:\n  - name: sst2" in text
    with pytest.raises(ValueError, match=r"missing \['multi'\]"):
        build_model_card(config, transfer_table=[{"task": "sst2", "metric": "accuracy", "single": 0.8}])
    with pytest.raises(ValueError, match="unknown task"):
        build_model_card(config, transfer_table=[{"task": "qqp", "metric": "f1", "single": 0.8, "multi": 0.9}])


def test_bad_arguments_name_the_value_and_the_fix(config):
    with pytest.raises(ValueError, match=r"names task\(s\) \['sst3'\].*its tasks are: sst2, nli"):
        build_model_card(config, eval_results={"sst3": {"accuracy": 0.9}})
    with pytest.raises(TypeError, match=r"eval_results\['sst2'\]\['accuracy'\]` must be a finite number, got 'high'"):
        build_model_card(config, eval_results={"sst2": {"accuracy": "high"}})
    with pytest.raises(TypeError, match="finite number"):
        build_model_card(config, eval_results={"sst2": {"accuracy": float("nan")}})
    with pytest.raises(TypeError, match="must be a non-empty description"):
        build_model_card(config, datasets={"sst2": None})
    with pytest.raises(TypeError, match="must be a MultiTaskConfig"):
        build_model_card(tiny_bert_config())


def test_save_model_card_writes_readme_from_the_saved_config(tmp_path):
    save_tiny_checkpoint(tmp_path, ALL_TASKS[:2])
    path = save_model_card(tmp_path, model_id="me/mtl-tiny", eval_results={"nli": {"accuracy": 0.5}})
    assert path == tmp_path / "README.md"
    loaded = ModelCard.load(path)
    assert read_eval_results(loaded) == {"nli": {"accuracy": 0.5}}
    assert "`sst2`" in loaded.text and str(tmp_path) not in loaded.content
    with pytest.raises(FileNotFoundError, match="save the model first"):
        save_model_card(tmp_path / "missing")


@pytest.mark.parametrize("tasks", [ALL_TASKS, [ALL_TASKS[-1]], [ALL_TASKS[4]]], ids=["all", "choice-only", "ner-only"])
def test_usage_code_in_the_card_runs(tmp_path, tasks):
    save_tiny_checkpoint(tmp_path, tasks)
    blocks = code_blocks(build_model_card(MultiTaskConfig.from_pretrained(tmp_path), model_id=str(tmp_path)).content)
    assert len(blocks) == (1 if tasks[0]["type"] == "multiple_choice" else 2)  # + the pipeline, when a task reads one text
    for block in blocks:
        namespace = {}
        exec(compile(block, "model_card_usage", "exec"), namespace)  # the card's own examples, against the saved model
    code = blocks[-1]
    if tasks is ALL_TASKS:
        assert 'task="sst2"' in code and set(namespace["mixed"].task_logits) == {"sst2", "topics"}
    else:
        assert f'task="{tasks[0]["name"]}"' in code and "task_ids" not in code


def test_template_is_found():
    assert "{{ card_data }}" in load_template()
