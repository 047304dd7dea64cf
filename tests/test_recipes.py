import json

import pytest
import torch

from hf_mtl import MultiTaskConfig
from hf_mtl.recipes import RecipeError, load_recipe, load_recipe_data, train_recipe
from hf_mtl.recipes.arguments import config_fields

from .conftest import tiny_bert_config
from .recipe_helpers import (
    RECIPES,
    TINY,
    glue_substitutes,
    indexed_recipes,
    local_ner_intent_data,
    ner_intent_substitutes,
    sst_recipe,
    write_csv,
    write_jsonl,
    write_recipe,
)


def one_line_error(excinfo, *parts):
    message = str(excinfo.value)
    assert "\n" not in message, message
    for part in parts:
        assert part in message, message
    return message


# ---------------------------------------------------------------------------------------------- every indexed recipe


def test_index_lists_every_shipped_recipe():
    listed = indexed_recipes()
    assert {"demo.yaml", "glue.yaml", "ner_intent.yaml"} <= set(listed)
    assert sorted(listed) == sorted(p.name for p in RECIPES.glob("*.yaml"))


@pytest.mark.parametrize("name", indexed_recipes())
def test_every_indexed_recipe_runs_two_steps_on_a_tiny_encoder(name, tmp_path, monkeypatch):
    overrides = list(TINY) + [f"training.output_dir={tmp_path / 'out'}"]
    if name == "glue.yaml":
        overrides += glue_substitutes(tmp_path / "data")
    elif name == "ner_intent.yaml":
        overrides += ner_intent_substitutes(tmp_path / "data")
    elif name.endswith("_local.yaml"):
        monkeypatch.setenv("HF_MTL_DATA", str(local_ner_intent_data(tmp_path / "data")))
    recipe = load_recipe(RECIPES / name, overrides)
    result = train_recipe(recipe, log=lambda message: None)
    assert result.trainer.state.global_step == 2
    assert set(result.metrics) == set(recipe.task_names)  # every task evaluated
    report = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert report["global_step"] == 2 and set(report["tasks"]) == set(recipe.task_names)
    card = (tmp_path / "out" / "README.md").read_text()
    for task in recipe.task_names:
        assert f"`{task}`" in card
    assert (tmp_path / "out" / "model.safetensors").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()


@pytest.mark.parametrize("name, task", [("glue.yaml", "cola"), ("ner_intent.yaml", "intent")])
def test_hub_recipes_fail_offline_with_a_clear_message(name, task, tmp_path):
    recipe = load_recipe(RECIPES / name, [f"training.output_dir={tmp_path}"])  # parses fine
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(recipe)
    one_line_error(excinfo, str(RECIPES / name), f"tasks.{task}.data.hub", "needs the Hub, or local files")


def test_shipped_recipes_are_found_by_name():
    assert load_recipe("demo").source.endswith("demo.yaml")
    with pytest.raises(FileNotFoundError, match="shipped recipe .*demo"):
        load_recipe("no-such-recipe")


# ---------------------------------------------------------------------------------------------- what a recipe means


def test_sections_are_parsed_with_their_types(tmp_path):
    recipe = load_recipe(RECIPES / "demo.yaml", ["training.learning_rate=1e-4", "training.seed=3", "model.adversarial=true",
                                                 "model.classifier_dropout=0.2", "data.max_train_samples=10"])
    args = recipe.training_arguments()
    assert isinstance(args.learning_rate, float) and args.learning_rate == 1e-4  # YAML reads 1e-4 as text
    assert args.seed == 3 and recipe.data_args.max_train_samples == 10
    written = {key: value for key, value in recipe.config_kwargs.items() if key not in ("sharing", "sharing_kwargs")}
    assert written == {"pooling": "mean", "adversarial": True, "classifier_dropout": 0.2}
    assert recipe.config_kwargs["sharing"] == "lora"  # the recipes' default scheme
    assert {"pooling", "classifier_dropout", "adversarial"} <= set(config_fields())
    assert "# --override training.seed=3" in recipe.card_text()


def test_recipe_defaults_train_mixed_batches_with_rep_norm_unless_a_task_cannot_share_a_batch(tmp_path):
    args = load_recipe(sst_recipe(tmp_path)).training_arguments()
    assert (args.batching, args.weighting, args.refine_steps) == ("mixed", "rep_norm", 100)
    per_task = load_recipe(sst_recipe(tmp_path), ["training.batching=per_task"]).training_arguments()
    assert (per_task.batching, per_task.weighting) == ("per_task", "static"), "rep_norm only with mixed batches"
    chosen = load_recipe(sst_recipe(tmp_path), ["training.weighting=uncertainty"]).training_arguments()
    assert (chosen.batching, chosen.weighting) == ("mixed", "uncertainty")
    rows = [{"text": "q", "choices": ["a", "b"], "label": 0}] * 4
    path = write_recipe(tmp_path, {"model": {"backbone": "tiny"}, "tasks": [
        {"name": "mc", "type": "multiple_choice", "data": {"train": write_jsonl(tmp_path / "mc.jsonl", rows).name},
         "text_columns": ["text", "choices"]}], "training": {"output_dir": str(tmp_path / "out")}})
    multiple_choice = load_recipe(path).training_arguments()
    assert (multiple_choice.batching, multiple_choice.weighting) == ("per_task", "static")


def test_a_recipe_default_is_fingerprinted_as_if_the_recipe_wrote_it(tmp_path):
    from hf_mtl.recipes.run_cache import run_fingerprint

    path = sst_recipe(tmp_path)
    implicit = run_fingerprint(load_recipe(path), {"seed": 1})
    written = run_fingerprint(load_recipe(path, ["training.batching=mixed", "training.weighting=rep_norm"]), {"seed": 1})
    assert implicit == written, "writing today's default out reuses the runs of a recipe that leaves it out"
    before = run_fingerprint(load_recipe(path, ["training.batching=per_task"]), {"seed": 1})
    assert before != implicit, "a run made under the earlier default (one task per step) is never taken for today's"


def test_recipes_default_to_per_task_lora_on_the_top_layers_of_a_trained_encoder(tmp_path):
    from hf_mtl.recipes.loader import RECIPE_MODEL_DEFAULTS

    path = sst_recipe(tmp_path)
    default = load_recipe(path).config_kwargs
    assert default["sharing"] == "lora" and default["sharing_kwargs"] == RECIPE_MODEL_DEFAULTS["sharing_kwargs"]
    assert default["sharing_kwargs"]["freeze_backbone"] is False and default["sharing_kwargs"]["top_layers"] == 2
    assert "sharing_kwargs" not in load_recipe(path, ["model.sharing=hard"]).config_kwargs, "a named scheme is kept"
    tuned = load_recipe(path, ["model.sharing_kwargs.r=4"]).config_kwargs
    assert tuned["sharing"] == "lora" and tuned["sharing_kwargs"] == {**RECIPE_MODEL_DEFAULTS["sharing_kwargs"], "r": 4}
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(path, ["model.sharing_kwargs.top_layers=0"])
    one_line_error(excinfo, "top_layers")
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(path, ["model.sharing_kwargs=5"])
    one_line_error(excinfo, "sharing_kwargs", "got 5")
    recipe = load_recipe(path, ["training.max_steps=2", "training.refine_steps=0", "training.disable_tqdm=true"])
    model = train_recipe(recipe, log=lambda message: None).trainer.model
    assert model.config.sharing == "lora" and any(".lora_A.sst2" in name for name, _ in model.named_parameters())
    top = {name.split(".layer.")[1].split(".")[0] for name, _ in model.named_parameters() if "lora_A" in name}
    layers = model.encoder.config.num_hidden_layers
    assert top == {str(i) for i in range(layers - 2, layers)}


def test_a_backbone_the_default_lora_cannot_place_trains_hard_sharing_with_a_warning(tmp_path, caplog):
    import logging

    from transformers import GPT2Config, GPT2Model

    from hf_mtl.recipes.run import build_model

    GPT2Model(GPT2Config(n_embd=16, n_layer=2, n_head=2, vocab_size=100)).save_pretrained(tmp_path / "gpt2")
    recipe = load_recipe(sst_recipe(tmp_path), [f"model.backbone={tmp_path / 'gpt2'}"])
    specs = [task.placeholder_spec() for task in recipe.tasks]
    with caplog.at_level(logging.WARNING, logger="hf_mtl"):
        model, _ = build_model(recipe, specs)
    assert model.config.sharing == "hard", "a recipe that never asked for LoRA is not refused over it"
    assert "does not fit backbone" in caplog.text and "hard sharing instead" in caplog.text
    chosen = load_recipe(sst_recipe(tmp_path), [f"model.backbone={tmp_path / 'gpt2'}", "model.sharing=lora",
                                                 "model.sharing_kwargs.top_layers=2"])
    with pytest.raises(RecipeError) as excinfo:
        build_model(chosen, specs)
    one_line_error(excinfo, "transformer blocks")


def test_the_recipe_model_default_is_fingerprinted_as_if_written_and_baselines_keep_theirs(tmp_path):
    from hf_mtl.recipes.loader import RECIPE_MODEL_DEFAULTS
    from hf_mtl.recipes.run_cache import run_fingerprint
    from hf_mtl.recipes.transfer_report import single_task_recipe

    path = sst_recipe(tmp_path)
    kwargs = RECIPE_MODEL_DEFAULTS["sharing_kwargs"]
    implicit = load_recipe(path)
    written = load_recipe(path, ["model.sharing=lora", f"model.sharing_kwargs={json.dumps(kwargs)}"])
    hard = load_recipe(path, ["model.sharing=hard"])
    assert run_fingerprint(implicit, {"seed": 1}) == run_fingerprint(written, {"seed": 1})
    assert run_fingerprint(implicit, {"seed": 1}) != run_fingerprint(hard, {"seed": 1})
    baseline = single_task_recipe(implicit, "sst2")
    assert baseline.config_kwargs["sharing"] == "hard", "one adapter beside a trained encoder is plain fine-tuning"
    assert run_fingerprint(baseline, {"seed": 1}) == run_fingerprint(single_task_recipe(hard, "sst2"), {"seed": 1})


def test_config_fields_reach_the_model(tmp_path):
    recipe = load_recipe(sst_recipe(tmp_path), ["model.adversarial=true", "model.pooling=cls", "training.max_steps=1",
                                                "training.adversarial_weight=0.1", "training.disable_tqdm=true"])
    result = train_recipe(recipe, log=lambda message: None)
    config = result.trainer.model.config
    assert config.adversarial and config.pooling == "cls" and result.trainer.model.discriminator is not None


def test_labels_are_inferred_and_csv_text_is_normalised(tmp_path):
    rows = [{"text": "a b", "label": "zeta"}, {"text": "c d", "label": "alpha"}] * 3
    train = write_csv(tmp_path / "train.csv", rows)
    valid = write_csv(tmp_path / "valid.csv", rows + [{"text": "e f", "label": "mid"}])
    path = write_recipe(tmp_path, {"model": {"backbone": "tiny"}, "tasks": [
        {"name": "t", "type": "sequence_classification", "labels_from": "all_splits",
         "data": {"train": train.name, "validation": valid.name}},
        {"name": "tags", "type": "token_classification", "text_columns": ["text"], "label_column": "tags",
         "data": {"train": write_csv(tmp_path / "tags.csv", [{"text": "Bob ran", "tags": "B-PER O"}] * 3).name}},
    ]})
    data = load_recipe_data(load_recipe(path))
    assert data["t"].spec.labels == ["alpha", "mid", "zeta"]
    assert data["t"].splits["train"].features["text"].dtype == "string"  # csv gives large_string
    assert data["tags"].spec.labels == ["O", "B-PER"]  # "O" first
    assert data["tags"].splits["train"][0]["text"] == ["Bob", "ran"]  # whitespace-split words and tags
    assert data["t"].description.startswith("local files train.csv, valid.csv")


def test_a_hub_task_names_its_dataset_config_and_split_for_the_card(tmp_path, monkeypatch):
    from datasets import Dataset

    from hf_mtl.hub.model_card import build_model_card

    rows = [{"sentence": "good", "label": "positive"}, {"sentence": "bad", "label": "negative"}]
    monkeypatch.setattr("hf_mtl.recipes.data.load_dataset", lambda *args, **kwargs: Dataset.from_list(rows))
    entry = {"name": "sst2", "type": "sequence_classification", "text_columns": ["sentence"],
             "data": {"hub": "nyu-mll/glue", "config": "sst2", "validation": "validation_matched"}}
    recipe = load_recipe(write_recipe(tmp_path, {"model": {"backbone": "tiny"}, "tasks": [entry]}))
    data = load_recipe_data(recipe)["sst2"]
    assert data.card_dataset == {"hub": "nyu-mll/glue", "config": "sst2", "split": "validation_matched"}
    config = MultiTaskConfig(encoder=tiny_bert_config(), tasks=[data.spec])
    card = build_model_card(config, eval_results={"sst2": {"accuracy": 0.75}}, datasets={"sst2": data.card_dataset})
    (result,) = card.data.eval_results
    assert (result.dataset_type, result.dataset_config, result.dataset_split) == ("nyu-mll/glue", "sst2", "validation_matched")


def test_augmentation_applies_to_the_training_split_only(tmp_path):
    recipe = load_recipe(sst_recipe(tmp_path, augment={"ratio": 1.0, "methods": ["random_swap"]}))
    data = load_recipe_data(recipe)["sst2"]
    assert len(data.splits["train"]) == 16 and len(data.splits["validation"]) == 8


def test_environment_variables_and_relative_paths(tmp_path, monkeypatch):
    write_jsonl(tmp_path / "data" / "train.jsonl", [{"text": "x", "label": "a"}, {"text": "y", "label": "b"}])
    body = {"model": {"backbone": "tiny"}, "tasks": [{"name": "t", "type": "sequence_classification",
                                                       "data": {"train": "${MY_DATA}/train.jsonl"}}]}
    path = write_recipe(tmp_path, body)
    monkeypatch.setenv("MY_DATA", "data")  # relative to the recipe's folder
    monkeypatch.chdir(tmp_path.parent)
    assert len(load_recipe_data(load_recipe(path))["t"].splits["train"]) == 2
    monkeypatch.delenv("MY_DATA")
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(path)
    one_line_error(excinfo, str(path), "tasks.t.data.train", "environment variable MY_DATA is not set")
    body["tasks"][0]["data"]["train"] = "${MY_DATA:-data}/train.jsonl"
    assert load_recipe(write_recipe(tmp_path, body)).tasks[0].data["train"] == "data/train.jsonl"
    # Paths typed on the command line are relative to the current directory, also inside an overridden mapping.
    monkeypatch.chdir(tmp_path / "data")
    for override in ("tasks.t.data.train=train.jsonl", "tasks.t.data={train: train.jsonl}"):
        recipe = load_recipe(write_recipe(tmp_path, body), [override])
        assert len(load_recipe_data(recipe)["t"].splits["train"]) == 2, override


# ---------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["training.learning_rat=1e-4"], "training.learning_rat", "Did you mean 'learning_rate'"),
        (["model.poolin=cls"], "model.poolin", "Did you mean 'pooling'"),
        (["tasks.sentiment.lables=[a, b]"], "tasks.sentiment.lables", "Did you mean 'labels'"),
        (["tasks.entities.metric=pearson"], "tasks.entities.metric", "cannot use metric 'pearson'"),
        (["tasks.rating.type=regresion"], "tasks.rating.type", "Did you mean 'regression'"),
        (["tasks.nope.metric=f1"], "tasks.nope", "no task named 'nope'"),
        (["training.learning_rate=fast"], "training.learning_rate", "expected a number"),
        (["training.weighting=pcgrd"], "training", "Unknown weighting 'pcgrd'"),
        (["tasks.sentiment.data.generated=weather"], "tasks.sentiment.data.generated", "unknown generated task"),
        (["tasks.sentiment.augment={ratio: 2}"], "tasks.sentiment.augment", "ratio"),
        (["trainin.seed=1"], "trainin.seed", "Did you mean 'training'"),
        # Numbers checked with their key named, before any data is loaded.
        (["training.per_device_train_batch_size=0"], "training.per_device_train_batch_size", "must be at least 1"),
        (["training.gradient_accumulation_steps=0"], "training.gradient_accumulation_steps", "must be at least 1"),
        (["training.learning_rate=-1e-4"], "training.learning_rate", "finite number >= 0"),
        (["training.learning_rate=.nan"], "training.learning_rate", "finite number >= 0"),
        (["training.weighting_lr=-0.1"], "training.weighting_lr", "finite number > 0"),
        # Trainer features the multi-task batch plan replaces are refused, not silently ignored.
        (["training.train_sampling_strategy=sequential"], "training.train_sampling_strategy", "task sampler builds"),
        (["training.train_sampling_strategy=group_by_length", "training.sampling=learned"], "training", "changes its task probabilities"),
        (["training.dataloader_drop_last=true"], "training.dataloader_drop_last", "keeps every row"),
        # A run that trains nothing would save a random model as if trained.
        (["training.num_train_epochs=0", "training.max_steps=-1"], "training.num_train_epochs", "train nothing"),
        # A backbone path that does not exist is named as such, not as a malformed Hub id.
        (["model.backbone=./no/such/model"], "model.backbone", "no folder './no/such/model'"),
        (["model.backbone=/tmp"], "model.backbone", "folder without config.json"),
    ],
)
def test_bad_recipe_values_fail_in_one_line_naming_file_and_key(overrides, key, words):
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(RECIPES / "demo.yaml", overrides)
    one_line_error(excinfo, str(RECIPES / "demo.yaml"), f": {key}", words)


def test_unknown_section_and_invalid_yaml(tmp_path):
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(write_recipe(tmp_path, "modle: {}\ntasks: []\n"))
    one_line_error(excinfo, "recipe.yaml: modle:", "Did you mean 'model'")
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(write_recipe(tmp_path, "tasks: [\n"))
    one_line_error(excinfo, "recipe.yaml", "not valid YAML")


def test_missing_data_file(tmp_path):
    path = sst_recipe(tmp_path)
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(load_recipe(path, ["tasks.sst2.data.validation=missing.jsonl"]))
    one_line_error(excinfo, str(path), "tasks.sst2.data.validation", "'missing.jsonl' not found")


def test_missing_column(tmp_path):
    path = sst_recipe(tmp_path, text_columns=["sentence"])
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(load_recipe(path))
    one_line_error(excinfo, str(path), "tasks.sst2.text_columns", "column 'sentence' is not in train.jsonl", "text, label")
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(load_recipe(sst_recipe(tmp_path, label_column="sentiment")))
    one_line_error(excinfo, "tasks.sst2.label_column", "column 'sentiment'")


def test_label_outside_the_label_set(tmp_path):
    rows = [{"text": "good", "label": "positive"}, {"text": "meh", "label": "neutral"}]
    path = sst_recipe(tmp_path, rows=rows, labels=["negative", "positive"])
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(load_recipe(path))
    one_line_error(excinfo, str(path), "tasks.sst2.labels", "train.jsonl", "row 2", "'neutral' is not in the label set")


def _train_and_validation(folder, validation_rows, **task):
    """An SST-2-style task whose validation file differs from its training file."""
    path = sst_recipe(folder, **task)
    validation = write_jsonl(folder / "validation.jsonl", validation_rows)
    return load_recipe(path, [f"tasks.sst2.data.validation={validation}"]), path


def test_labels_are_read_off_the_training_split(tmp_path):
    good = [{"text": "fine", "label": "positive"}, {"text": "poor", "label": "negative"}]
    recipe, _ = _train_and_validation(tmp_path, good)
    assert load_recipe_data(recipe)["sst2"].spec.labels == ["negative", "positive"]
    # A label only validation shows is refused, naming the file, the 1-based row, the value and both fixes.
    recipe, path = _train_and_validation(tmp_path, good + [{"text": "so-so", "label": "neutral"}])
    with pytest.raises(RecipeError) as excinfo:
        load_recipe_data(recipe)
    one_line_error(excinfo, str(path), "tasks.sst2.labels", "validation.jsonl", "validation split), row 3",
                   "'neutral' is not in the label set ['negative', 'positive']", "labels_from: all_splits")
    # A trailing space is named as such.
    recipe, _ = _train_and_validation(tmp_path, [{"text": "fine", "label": "positive "}])
    with pytest.raises(RecipeError, match=r"row 1: label 'positive ' .* differs from 'positive' only by white space"):
        load_recipe_data(recipe)


def test_labels_from_all_splits_keeps_a_validation_only_label(tmp_path):
    recipe, _ = _train_and_validation(tmp_path, [{"text": "so-so", "label": "neutral"}], labels_from="all_splits")
    assert load_recipe_data(recipe)["sst2"].spec.labels == ["negative", "neutral", "positive"]
    with pytest.raises(RecipeError) as excinfo:
        load_recipe(sst_recipe(tmp_path, labels_from="validation"))
    one_line_error(excinfo, "tasks.sst2.labels_from", "unknown labels_from 'validation'", "train, all_splits")


def test_labels_from_is_not_part_of_a_run_fingerprint(tmp_path):
    """Whenever the training-split rule succeeds both rules give the same labels, so runs recorded under either
    (and before the key existed) stay reusable."""
    from hf_mtl.recipes.run_cache import run_fingerprint

    plain = run_fingerprint(load_recipe(sst_recipe(tmp_path)), {"seed": 1})
    assert run_fingerprint(load_recipe(sst_recipe(tmp_path, labels_from="all_splits")), {"seed": 1}) == plain
    assert run_fingerprint(load_recipe(sst_recipe(tmp_path, labels=["negative", "positive"])), {"seed": 1}) != plain


def test_errors_come_before_any_training(tmp_path):
    rows = [{"text": "good", "label": "positive"}, {"text": "meh", "label": "neutral"}]
    path = sst_recipe(tmp_path, rows=rows, labels=["negative", "positive"])
    with pytest.raises(RecipeError):
        train_recipe(load_recipe(path), log=lambda message: None)
    assert not (tmp_path / "out").exists()


def test_seeded_runs_are_reproducible(tmp_path):
    path = sst_recipe(tmp_path)
    first = train_recipe(load_recipe(path, ["training.max_steps=2", "training.disable_tqdm=true"]), log=lambda m: None)
    second = train_recipe(load_recipe(path, ["training.max_steps=2", "training.disable_tqdm=true"]), log=lambda m: None)
    for (name, a), b in zip(first.trainer.model.state_dict().items(), second.trainer.model.state_dict().values()):
        assert torch.equal(a, b), name


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_processes_with_torchrun(tmp_path):
    """recipes/train.py under torchrun: world size 2 really reached, one set of reports written by rank 0."""
    import os
    import subprocess
    import sys

    from .recipe_helpers import ROOT

    out = tmp_path / "out"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    overrides = [x for o in TINY + [f"training.output_dir={out}", "training.use_cpu=true"] for x in ("-o", o)]
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(RECIPES / "train.py"), str(RECIPES / "demo.yaml"), *overrides],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=280, check=False,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    report = json.loads((out / "metrics.json").read_text())
    assert report["world_size"] == 2 and report["global_step"] == 2
    assert done.stdout.count("hf-mtl: saved to") == 1  # rank 0 only
    assert (out / "README.md").is_file() and (out / "model.safetensors").is_file()


def test_processes_that_would_train_alone_are_refused(tmp_path, monkeypatch):
    # MultiTaskTrainingArguments already turns use_cpu on under a launcher without GPUs; this guard catches the
    # remaining cases (e.g. a launcher whose processes Trainer does not join). Building real arguments with
    # WORLD_SIZE=2 would start a process group, so the guard is called with the world size Trainer would report.
    from types import SimpleNamespace

    from hf_mtl.recipes.run import check_launch

    recipe = load_recipe(sst_recipe(tmp_path))
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets it
    with pytest.raises(RecipeError) as excinfo:
        check_launch(recipe, SimpleNamespace(world_size=1))
    one_line_error(excinfo, "training.use_cpu", "started 2 processes")
    check_launch(recipe, SimpleNamespace(world_size=2))  # joined: fine


def test_resume_from_checkpoint_true_means_the_newest_complete_checkpoint():
    assert load_recipe(RECIPES / "demo.yaml", ["training.resume_from_checkpoint=true"]).training_arguments().resume_from_checkpoint is True
    assert load_recipe(RECIPES / "demo.yaml", ["training.resume_from_checkpoint=false"]).training_arguments().resume_from_checkpoint is None


def test_evaluation_settings_are_checked_before_training(tmp_path):
    recipe = load_recipe(RECIPES / "demo.yaml", TINY + [f"training.output_dir={tmp_path}", "training.eval_strategy=steps",
                                                         "training.metric_for_best_model=eval_sentiment_acuracy"])
    with pytest.raises(RecipeError, match="training.metric_for_best_model: 'eval_sentiment_acuracy' names no metric.*"
                                          "eval_sentiment_accuracy"):
        train_recipe(recipe, log=lambda message: None)
    assert not (tmp_path / "trainer_state.json").exists() and not list(tmp_path.glob("checkpoint-*"))


def test_a_failure_after_training_keeps_the_trained_model(tmp_path, monkeypatch):
    from hf_mtl import MultiTaskTrainer

    def broken_evaluate(self, *args, **kwargs):
        raise RuntimeError("evaluation broke")

    monkeypatch.setattr(MultiTaskTrainer, "evaluate", broken_evaluate)
    recipe = load_recipe(RECIPES / "demo.yaml", TINY + [f"training.output_dir={tmp_path}"])
    with pytest.raises(RuntimeError, match="evaluation broke"):
        train_recipe(recipe, log=lambda message: None)
    assert (tmp_path / "model.safetensors").is_file()  # the weights were saved before the evaluation
    assert not (tmp_path / "metrics.json").exists()  # and no report pretends the run finished


def test_argument_choices_come_from_the_registries():
    from transformers import HfArgumentParser

    from hf_mtl import SAMPLERS, WEIGHTINGS, MultiTaskTrainingArguments

    fields = {f.name: f for f in MultiTaskTrainingArguments.__dataclass_fields__.values()}
    assert fields["weighting"].metadata["choices"] == WEIGHTINGS.choices()
    assert fields["sampling"].metadata["choices"] == SAMPLERS.choices()
    assert all(name in fields["sampling"].metadata["help"] for name in SAMPLERS.choices())  # no hand-kept list to drift
    parser = HfArgumentParser(MultiTaskTrainingArguments)
    with pytest.raises(SystemExit):  # argparse refuses an unknown weighting with the registry's choices
        parser.parse_args_into_dataclasses(["--output_dir", "x", "--weighting", "pcgrd"])
