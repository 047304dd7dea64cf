import io
import json

import pytest
from transformers import AutoModel, AutoTokenizer

from hf_mtl.cli import main
from hf_mtl.data.demo_data import demo_datasets
from hf_mtl.inference import MultiTaskPredictor

from .recipe_helpers import RECIPES, TINY, write_jsonl


DEMO = str(RECIPES / "demo.yaml")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """`hf-mtl train` of the demo recipe on the tiny encoder (2 steps): the model the other commands use."""
    out = tmp_path_factory.mktemp("cli") / "model"
    args = ["train", DEMO, "--output-dir", str(out)] + [item for override in TINY for item in ("-o", override)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def trained_hard(tmp_path_factory):
    """The same with one plain shared encoder (`model.sharing=hard`; the recipes' default is per-task LoRA)."""
    out = tmp_path_factory.mktemp("cli_hard") / "model"
    overrides = [*TINY, "model.sharing=hard"]
    assert main(["train", DEMO, "--output-dir", str(out)] + [item for override in overrides for item in ("-o", override)]) == 0
    return out


def run_cli(args, capsys, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(args)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_train_writes_model_card_metrics_and_curves(trained):
    for name in ("config.json", "model.safetensors", "tokenizer.json", "README.md", "metrics.json", "training_curves.png",
                 "recipe.yaml"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    card = (trained / "README.md").read_text()
    assert "Generated data." in card and "generated: hf_mtl.data.demo_data 'sentiment'" in card
    assert set(metrics["tasks"]) == {"sentiment", "rating", "entities", "topics", "paraphrase"}
    assert f"{metrics['tasks']['sentiment']['accuracy']:.4f}" in card  # per-task results in the card
    assert "AutoModel.from_pretrained" in card and "model.backbone=tiny" in card  # usage code, recipe + overrides
    assert metrics["world_size"] == 1 and metrics["global_step"] == 2


def test_user_errors_are_one_clean_line(capsys):
    code, out, err = run_cli(["train", DEMO, "-o", "training.learning_rat=1e-4"], capsys)
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"hf-mtl: error: {DEMO}: training.learning_rat: unknown training key")
    code, _, err = run_cli(["train", "missing.yaml"], capsys)
    assert code == 2 and err.startswith("hf-mtl: error: Recipe 'missing.yaml' not found")
    code, _, err = run_cli(["predict", "/nonexistent", "-t", "x", "hello"], capsys)
    assert code == 2 and "is not a saved model directory" in err


def test_transfer_refuses_an_evaluation_label_the_training_data_never_shows(trained, tmp_path, capsys):
    train = write_jsonl(tmp_path / "train.jsonl", [{"text": "good", "label": "pos"}, {"text": "bad", "label": "neg"}])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [{"text": "fine", "label": "pos"}, {"text": "so-so", "label": "meh"}])
    code, _, err = run_cli(["transfer", str(trained), "--new-task", "review", "--data", str(train), "--eval-data", str(evaluation),
                            "--output-dir", str(tmp_path / "out"), "--max-steps", "1"], capsys)
    last = err.strip().splitlines()[-1]  # above it: datasets' loading bars
    assert code == 2 and last.startswith("hf-mtl: error: --eval-data ") and "Traceback" not in err
    assert "eval.jsonl: Task 'review' (evaluation split), row 2: label 'meh' is not in the label set ['neg', 'pos']" in last
    assert "read off the training data" in last and "--labels" in last
    assert not (tmp_path / "out").exists()  # refused before any work


def test_predict_mixed_tasks_from_arguments(trained, capsys):
    code, out, _ = run_cli(["predict", str(trained), "-t", "sentiment", "-t", "entities", "-t", "topics", "-t", "rating",
                            "Bob flew to Oslo", "the film was not good"], capsys)
    rows = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and [(r["text"], r["task"]) for r in rows] == [
        (text, task) for text in ("Bob flew to Oslo", "the film was not good") for task in ("sentiment", "entities", "topics", "rating")
    ]
    sentiment, entities, topics, rating = rows[:4]
    assert sentiment["label"] in ("negative", "positive") and set(sentiment["scores"]) == {"negative", "positive"}
    assert [t["word"] for t in entities["tokens"]] == ["Bob", "flew", "to", "Oslo"]  # tags aligned back to words
    assert all(t["tag"] in {"O", "B-PER", "I-PER", "B-LOC", "I-LOC", "B-ORG", "I-ORG"} for t in entities["tokens"])
    assert set(topics["scores"]) == {"sports", "politics", "science", "arts"} and isinstance(rating["value"], float)


def test_predict_without_task_predicts_every_task(trained, capsys):
    code, out, err = run_cli(["predict", str(trained), "Bob flew to Oslo"], capsys)
    assert code == 0, err
    rows = [json.loads(line) for line in out.splitlines()]
    assert [r["task"] for r in rows] == ["sentiment", "rating", "entities", "topics"]  # a line without a tab is no pair
    code, out, err = run_cli(["predict", str(trained), "a film\tthe film"], capsys)
    assert code == 0 and [json.loads(line)["task"] for line in out.splitlines()] == ["paraphrase"]


def test_predict_json_lines_from_stdin_and_pairs(trained, capsys, monkeypatch):
    stdin = '{"task": "paraphrase", "text": "the film was good", "text_pair": "i thought the film was good"}\n' \
            '{"task": "sentiment", "text": "dull", "id": 7}\n'
    code, out, _ = run_cli(["predict", str(trained)], capsys, stdin=stdin, monkeypatch=monkeypatch)
    first, second = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and first["task"] == "paraphrase" and first["label"] in ("different", "same")
    assert second == {**second, "task": "sentiment", "id": 7}
    # plain lines of a pair task: the two texts are separated by a tab
    code, out, _ = run_cli(["predict", str(trained), "-t", "paraphrase"], capsys, stdin="a\tb\n", monkeypatch=monkeypatch)
    assert json.loads(out)["text_pair"] == "b"
    code, _, err = run_cli(["predict", str(trained), "-t", "weather", "x"], capsys)
    assert code == 2 and "Unknown task 'weather'" in err and "sentiment" in err


def test_predictor_runs_one_mixed_forward_per_batch(trained):
    model, tokenizer = AutoModel.from_pretrained(trained), AutoTokenizer.from_pretrained(trained)
    calls = []
    model.encoder.register_forward_hook(lambda module, args, output: calls.append(1))
    rows = [{"task": task, "text": "Bob liked the film"} for task in ("sentiment", "entities", "topics", "rating")]
    results = MultiTaskPredictor(model, tokenizer, batch_size=32).predict(rows)
    assert len(calls) == 1 and [r["task"] for r in results] == ["sentiment", "entities", "topics", "rating"]
    # the same rows one task at a time give the same answers: mixing changes nothing
    alone = [MultiTaskPredictor(model, tokenizer).predict([row])[0] for row in rows]
    assert alone[0]["scores"] == pytest.approx(results[0]["scores"], abs=1e-3)
    assert alone[3]["value"] == pytest.approx(results[3]["value"], abs=1e-3)


def test_predictor_encodes_a_text_once_for_all_its_tasks(trained_hard, trained, monkeypatch):
    """Hard sharing without a task embedding: a text asked for K tasks is one encoder row, not K; the answers are
    those of the routed forward (one row per text and task)."""
    tokenizer = AutoTokenizer.from_pretrained(trained)
    assert not MultiTaskPredictor(AutoModel.from_pretrained(trained), tokenizer).shares_encodings  # per-task LoRA
    model = AutoModel.from_pretrained(trained_hard)
    texts = ["Bob liked the film", "Ann flew to Oslo", "Bob liked the film"]
    rows = [{"task": task, "text": text} for text in texts for task in ("sentiment", "entities", "topics", "rating")]
    encoder_rows = []
    model.encoder.register_forward_hook(lambda module, args, kwargs, output: encoder_rows.append(output[0].shape[0]),
                                        with_kwargs=True)
    predictor = MultiTaskPredictor(model, tokenizer, batch_size=32)
    assert predictor.shares_encodings
    shared = predictor.predict(rows)
    assert encoder_rows == [2]  # two distinct texts
    monkeypatch.setattr(MultiTaskPredictor, "shares_encodings", property(lambda self: False))
    routed = predictor.predict(rows)
    assert encoder_rows == [2, 12]
    for first, second in zip(shared, routed):
        assert first.keys() == second.keys() and first["task"] == second["task"]
        for key in ("scores", "value"):
            if key in first:
                assert first[key] == pytest.approx(second[key], abs=1e-4)
        if "tokens" in first:
            assert [t["tag"] for t in first["tokens"]] == [t["tag"] for t in second["tokens"]]
    # A scheme whose encoder depends on the task (LoRA adapters, private encoders, ...) keeps one row per task.
    monkeypatch.setattr(type(model.sharing), "encodes_per_task", True)
    assert not MultiTaskPredictor(model, tokenizer).shares_encodings


def test_evaluate_with_the_recipe_or_files_matches_training(trained, tmp_path, capsys):
    overrides = [item for override in TINY for item in ("-o", override)]
    code, out, _ = run_cli(["evaluate", str(trained), "--data", DEMO, *overrides, "--output", str(tmp_path / "a.json")], capsys)
    assert code == 0 and "sentiment" in out
    from_recipe = json.loads((tmp_path / "a.json").read_text())
    trained_metrics = json.loads((trained / "metrics.json").read_text())["tasks"]
    for task, metrics in from_recipe["tasks"].items():
        assert metrics == pytest.approx(trained_metrics[task], abs=1e-6), task
    # the same validation rows as files: the same numbers
    data = {task: demo_datasets(24, 8, 0, tasks=[task], held_out_words=True)[task] for task in ("sentiment", "entities")}
    pairs = [f"{task}={write_jsonl(tmp_path / f'{task}.jsonl', list(split['validation']))}" for task, split in data.items()]
    code, _, _ = run_cli(["evaluate", str(trained), "--data", *pairs], capsys)
    from_files = json.loads((trained / "eval_results.json").read_text())
    assert code == 0 and from_files["tasks"]["sentiment"] == pytest.approx(trained_metrics["sentiment"], abs=1e-6)
    assert from_files["tasks"]["entities"] == pytest.approx(trained_metrics["entities"], abs=1e-6)


def test_evaluate_bad_data_is_one_line(trained, tmp_path, capsys):
    bad = write_jsonl(tmp_path / "bad.jsonl", [{"text": "x", "label": "neutral"}])
    code, _, err = run_cli(["evaluate", str(trained), "--data", f"sentiment={bad}"], capsys)
    last = err.strip().splitlines()[-1]  # above it, at most the weight-loading progress bar
    assert code == 2 and last.startswith("hf-mtl: error:") and "'neutral' is not in the label set" in last and "bad.jsonl" in last
    code, _, err = run_cli(["evaluate", str(trained), "--data", f"weather={bad}"], capsys)
    assert code == 2 and "the model has no task 'weather'" in err


def test_os_errors_are_one_line_naming_the_path(capsys, tmp_path, monkeypatch):
    import errno

    from hf_mtl.cli.commands import train as train_command

    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    code, _, err = run_cli(["train", DEMO, "-o", f"training.output_dir={blocker}"], capsys)
    assert code == 2 and "training.output_dir" in err and "is a file, not a folder" in err and "Traceback" not in err

    def full_disk(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "model.safetensors"))

    monkeypatch.setattr(train_command, "run", full_disk)
    parser_run = run_cli(["train", DEMO], capsys)
    assert parser_run[0] == 2 and parser_run[2].startswith(f"hf-mtl: error: {tmp_path / 'model.safetensors'}: no space left")


def test_multi_task_pipeline_from_the_factory_matches_the_predictor(trained):
    from transformers import pipeline

    from hf_mtl.pipelines import group_entities

    tagger = pipeline("multi-task", model=str(trained), device="cpu")
    result = tagger("Bob liked the film in Paris")
    # every task that reads one text (not the pair task, not one that needs choices), in one call
    assert {"sentiment", "entities", "topics", "rating"} <= set(result) and "paraphrase" not in result
    model, tokenizer = AutoModel.from_pretrained(trained), AutoTokenizer.from_pretrained(trained)
    expected = MultiTaskPredictor(model, tokenizer).predict([{"task": "sentiment", "text": "Bob liked the film in Paris"}])[0]
    assert result["sentiment"]["label"] == expected["label"]
    assert result["sentiment"]["scores"] == pytest.approx(expected["scores"], abs=1e-3)
    assert isinstance(result["entities"], list)  # entity groups (aggregation_strategy="simple")
    words = tagger("Bob liked it", task="entities", aggregation_strategy="none")
    assert list(words) == ["entities"] and [t["word"] for t in words["entities"]["tokens"]] == ["Bob", "liked", "it"]
    batch = tagger(["a good film", {"text": "a", "text_pair": "b"}], tasks=None, batch_size=2)
    assert "sentiment" in batch[0] and list(batch[1]) == ["paraphrase"]
    with pytest.raises(Exception, match="Unknown task 'weather'"):
        tagger("x", task="weather")
    # BIO grouping, with character offsets in the text
    tokens = [{"word": w, "tag": t, "score": s} for w, t, s in [
        ("Ann", "B-PER", 0.9), ("Lee", "I-PER", 0.7), ("met", "O", 0.99), ("Bo", "I-PER", 0.8), ("in", "O", 0.9),
        ("New", "B-LOC", 0.6), ("York", "I-LOC", 0.8), ("Rome", "B-LOC", 0.5)]]
    assert group_entities(tokens, "Ann Lee met Bo in New York Rome") == [
        {"entity_group": "PER", "score": 0.8, "word": "Ann Lee", "start": 0, "end": 7},
        {"entity_group": "PER", "score": 0.8, "word": "Bo", "start": 12, "end": 14},
        {"entity_group": "LOC", "score": 0.7, "word": "New York", "start": 18, "end": 26},
        {"entity_group": "LOC", "score": 0.5, "word": "Rome", "start": 27, "end": 31},
    ]
