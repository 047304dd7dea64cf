import json
import os
import re

import pytest
import torch
from datasets import Dataset

from hf_mtl import MultiTaskConfig, MultiTaskModel, TaskError
from hf_mtl.adaptation.few_shot import FewShotConfig, FewShotResult, few_shot_evaluate
from hf_mtl.cli import main
from hf_mtl.data import DataError
from hf_mtl.data.demo_data import demo_datasets, demo_tasks

from .conftest import tiny_bert_config


NEW = {"name": "sentiment", "type": "sequence_classification", "labels": ["negative", "positive"]}


@pytest.fixture(scope="module")
def data():
    return demo_datasets(num_train=40, num_eval=24, seed=4, tasks=["sentiment"])["sentiment"]


def make_model(seed, tasks=("topics",)):
    torch.manual_seed(seed)
    encoder = tiny_bert_config(vocab_size=30522)  # dropout on: the seed must fix it too
    return MultiTaskModel(MultiTaskConfig(encoder=encoder, tasks=demo_tasks(list(tasks))))


CONFIG = dict(shots=[2, 4], seeds=[0, 1], steps=2, max_seq_length=24, eval_batch_size=16)


def test_few_shot_is_reproducible_and_fair(tokenizer, data):
    models = {"a": make_model(0), "b": make_model(1)}
    first = few_shot_evaluate(models, NEW, data["train"], data["validation"], tokenizer, FewShotConfig(**CONFIG), disable_tqdm=True)
    second = few_shot_evaluate(models, NEW, data["train"], data["validation"], tokenizer, FewShotConfig(**CONFIG), disable_tqdm=True)
    assert [run["metrics"] for run in first.runs] == [run["metrics"] for run in second.runs]
    assert len(first.runs) == 2 * 2 * 2
    by_key = {(r["model"], r["shots"], r["seed"]): r for r in first.runs}
    for k in (2, 4):
        for seed in (0, 1):  # every model sees the same k examples for a seed
            assert by_key[("a", k, seed)]["support_rows"] == by_key[("b", k, seed)]["support_rows"]
            assert len(by_key[("a", k, seed)]["support_rows"]) == k
    assert by_key[("a", 2, 0)]["support_rows"] == by_key[("a", 4, 0)]["support_rows"][:2]  # nested
    assert by_key[("a", 4, 0)]["support_rows"] != by_key[("a", 4, 1)]["support_rows"]
    labels = data["train"]["label"]
    assert sorted(labels[i] for i in by_key[("a", 4, 0)]["support_rows"]) == ["negative", "negative", "positive", "positive"]
    assert "sentiment" not in models["a"].config.task_names  # the originals are untouched


def test_adaptation_moves_the_model_and_the_summary_aggregates(tokenizer, data):
    config = FewShotConfig(shots=[8], seeds=[0, 1, 2], steps=3, max_seq_length=24)
    result = few_shot_evaluate({"m": make_model(0)}, NEW, data["train"], data["validation"], tokenizer, config, disable_tqdm=True)
    values = [run["metrics"]["accuracy"] for run in result.runs]
    summary = result.summary()["m"][8]
    assert summary["mean"] == pytest.approx(sum(values) / 3)
    assert summary["n"] == 3 and summary["min"] == min(values) and summary["max"] == max(values)
    assert result.metric == "accuracy"


def test_outputs_markdown_json_and_png(tmp_path, tokenizer, data):
    result = few_shot_evaluate({"x": make_model(0)}, NEW, data["train"], data["validation"], tokenizer, FewShotConfig(**CONFIG), disable_tqdm=True)
    paths = result.save(str(tmp_path))
    markdown = open(paths["md"]).read()
    assert "| model | 2 shots | 4 shots |" in markdown and "| x | " in markdown
    saved = json.load(open(paths["json"]))
    assert saved["summary"]["x"]["4"]["n"] == 2 and len(saved["runs"]) == 4
    with open(paths["png"], "rb") as handle:
        assert handle.read(8) == b"\x89PNG\r\n\x1a\n"
    for path in (str(tmp_path), paths["json"]):  # the folder or the file
        loaded = FewShotResult.load(path)
        assert loaded.runs == saved["runs"] and loaded.config == result.config and loaded.summary() == result.summary()


def test_warm_up_linear_decay_and_clipping_follow_the_config(tokenizer, data, monkeypatch):
    seen = []
    original = torch.optim.SGD.step

    def recording_step(self, *args, **kwargs):
        grads = [p.grad for group in self.param_groups for p in group["params"] if p.grad is not None]
        seen.append(([group["lr"] for group in self.param_groups], float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads])))))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.SGD, "step", recording_step)
    config = FewShotConfig(shots=[4], seeds=[0], steps=4, lr=1e-3, head_lr=1e-1, lr_scheduler_type="linear",
                           warmup_ratio=0.25, max_grad_norm=1e-3, max_seq_length=24)
    result = few_shot_evaluate({"x": make_model(0)}, NEW, data["train"], data["validation"], tokenizer, config, disable_tqdm=True)
    assert [lrs for lrs, _ in seen] == [[0.0, 0.0], [1e-3, 1e-1], pytest.approx([2e-3 / 3, 2e-1 / 3]), pytest.approx([1e-3 / 3, 1e-1 / 3])]
    assert all(norm <= 1e-3 * 1.0001 for _, norm in seen)
    assert "linear schedule, 25% warm-up, clipped at 0.001" in result.to_markdown()

    seen.clear()  # the defaults: the MetaTrainer inner loop, constant and unclipped
    result = few_shot_evaluate({"x": make_model(0)}, NEW, data["train"], data["validation"], tokenizer,
                               FewShotConfig(shots=[4], seeds=[0], steps=2, max_seq_length=24), disable_tqdm=True)
    assert [lrs for lrs, _ in seen] == [[1e-3, 1e-1], [1e-3, 1e-1]] and seen[0][1] > 1e-3
    assert "schedule" not in result.to_markdown()


def test_bad_input_fails_before_any_training(tokenizer, data):
    with pytest.raises(DataError, match="shots=64 is larger than the 40 training examples"):
        few_shot_evaluate({"x": make_model(0)}, NEW, data["train"], data["validation"], tokenizer, FewShotConfig(shots=[8, 64]))
    with pytest.raises(TaskError, match="already a task of model 'x'"):
        few_shot_evaluate({"x": make_model(0, tasks=("sentiment",))}, NEW, data["train"], data["validation"], tokenizer)
    with pytest.raises(TaskError, match="Unknown task type 'sequence_clasification'"):
        few_shot_evaluate({"x": make_model(0)}, {**NEW, "type": "sequence_clasification"}, data["train"], data["validation"], tokenizer)
    with pytest.raises(ValueError, match="Unknown optimizer 'adam'"):
        FewShotConfig(optimizer="adam")
    with pytest.raises(ValueError, match="`shots` must be positive"):
        FewShotConfig(shots=[0, 8])
    with pytest.raises(ValueError, match="Unknown lr_scheduler_type 'cosine'. Choose one of: constant, linear"):
        FewShotConfig(lr_scheduler_type="cosine")
    with pytest.raises(ValueError, match=r"`warmup_ratio` must be in \[0, 1\), got 1.5"):
        FewShotConfig(warmup_ratio=1.5)
    with pytest.raises(ValueError, match="`max_grad_norm` must be > 0"):
        FewShotConfig(max_grad_norm=0)


# ------------------------------------------------------------------ command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, tokenizer):
    directory = tmp_path_factory.mktemp("ckpt")
    make_model(0).save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return str(directory)


@pytest.fixture(scope="module")
def files(tmp_path_factory, data):
    directory = tmp_path_factory.mktemp("data")
    data["train"].to_json(str(directory / "train.jsonl"))
    data["validation"].to_json(str(directory / "validation.jsonl"))
    topics = demo_datasets(num_train=24, num_eval=12, seed=5, tasks=["topics"])["topics"]
    topics["train"].to_json(str(directory / "topics.jsonl"))
    topics["validation"].to_json(str(directory / "topics_eval.jsonl"))
    return directory


def test_cli_few_shot_writes_the_report(tmp_path, checkpoint, files, capsys):
    code = main([
        "few-shot", checkpoint, "--names", "mtl", "--task", "sentiment", "--data", str(files / "train.jsonl"),
        "--eval-data", str(files / "validation.jsonl"), "--shots", "2,4", "--seeds", "0", "--steps", "1",
        "--max-seq-length", "24", "--output-dir", str(tmp_path / "out"), "--no-progress",
        "--lr-scheduler-type", "linear", "--warmup-ratio", "0.1", "--max-grad-norm", "1",
    ])
    assert code == 0
    out = capsys.readouterr().out
    assert "| mtl |" in out and "linear schedule, 10% warm-up, clipped at 1.0" in out
    saved = json.load(open(tmp_path / "out" / "few_shot.json"))
    assert saved["task"] == "sentiment" and saved["config"]["shots"] == [2, 4]
    assert (saved["config"]["lr_scheduler_type"], saved["config"]["warmup_ratio"], saved["config"]["max_grad_norm"]) == ("linear", 0.1, 1.0)
    assert (tmp_path / "out" / "few_shot.png").stat().st_size > 1000


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--shots", "8,500"], "shots=500 is larger than the 28 training examples"),
        (["--task-type", "sentence_classification"], "Unknown task type 'sentence_classification'"),
        (["--shots", "eight"], "--shots takes comma-separated integers"),
    ],
)
def test_cli_few_shot_bad_input_is_one_clean_line(tmp_path, checkpoint, files, capsys, extra, message):
    code = main([
        "few-shot", checkpoint, "--task", "sentiment", "--data", str(files / "train.jsonl"), "--output-dir", str(tmp_path), *extra,
    ])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("hf-mtl: error:")
    assert re.search(message, err[0]), err[0]


def test_cli_transfer_adds_a_task_with_freezing_and_rehearsal(tmp_path, checkpoint, files, capsys):
    code = main([
        "transfer", checkpoint, "--new-task", "sentiment", "--data", str(files / "train.jsonl"),
        "--eval-data", str(files / "validation.jsonl"), "--freeze", "top-k:1", "--rehearsal", "0.25",
        "--old-data", f"topics={files / 'topics.jsonl'}", "--old-eval-data", f"topics={files / 'topics_eval.jsonl'}",
        "--output-dir", str(tmp_path / "new"), "--max-steps", "3", "--max-seq-length", "24", "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    out = capsys.readouterr().out
    assert "trainable params:" in out and "| `topics` | micro_f1 |" in out
    model = MultiTaskModel.from_pretrained(str(tmp_path / "new"))
    assert model.config.task_names == ["topics", "sentiment"]
    assert model.config.task_spec("sentiment").labels == ["negative", "positive"]  # read off the data
    report = json.load(open(tmp_path / "new" / "transfer_report.json"))
    assert report["rehearsed_tasks"] == ["topics"] and report["freeze"]["rules"] == ["top-k:1"]
    assert set(report["before"]) == {"topics", "sentiment"}


def test_cli_transfer_bad_freeze_pattern(tmp_path, checkpoint, files, capsys):
    code = main([
        "transfer", checkpoint, "--new-task", "sentiment", "--data", str(files / "train.jsonl"),
        "--freeze", "pattern:no_such_weight", "--output-dir", str(tmp_path), "--max-steps", "1",
    ])
    assert code == 2
    assert "Freeze pattern 'no_such_weight' matches no parameter" in capsys.readouterr().err


def test_task_spec_file_and_labels_from_integer_ids(tmp_path, checkpoint, capsys):
    rows = [{"sentence": f"word{i % 3} example", "y": i % 3} for i in range(30)]
    Dataset.from_list(rows).to_json(str(tmp_path / "ints.jsonl"))
    (tmp_path / "spec.yaml").write_text("type: sequence_classification\ntext_columns: [sentence]\nlabel_column: y\n")
    code = main([
        "few-shot", checkpoint, "--task", "three", "--task-spec", str(tmp_path / "spec.yaml"), "--data", str(tmp_path / "ints.jsonl"),
        "--shots", "3", "--seeds", "0", "--steps", "1", "--output-dir", str(tmp_path / "o"), "--no-progress",
    ])
    assert code == 0, capsys.readouterr().err
    saved = json.load(open(tmp_path / "o" / "few_shot.json"))
    assert saved["models"] == [os.path.basename(checkpoint)] and len(saved["runs"]) == 1
    assert saved["task_spec"]["labels"] == ["0", "1", "2"] and saved["task_spec"]["label_column"] == "y"
