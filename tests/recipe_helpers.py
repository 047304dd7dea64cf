"""Shared helpers for the recipe / CLI / transfer tests: small local stand-ins for the data recipes read, and the
overrides that make a recipe run on the tiny random encoder in a few steps."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import yaml


ROOT = Path(__file__).resolve().parents[1]
RECIPES = ROOT / "recipes"
# Two optimizer steps of a tiny random BERT (MiniLM's tokenizer), evaluation on a handful of rows.
TINY = [
    "model.backbone=tiny",
    "training.max_steps=2",
    "training.per_device_train_batch_size=4",
    "training.per_device_eval_batch_size=8",
    "training.logging_steps=1",
    "training.eval_strategy=no",
    "training.save_strategy=no",
    "training.disable_tqdm=true",
    "training.max_seq_length=32",
    "data.max_train_samples=16",
    "data.max_eval_samples=8",
    "data.generated_train_size=24",
    "data.generated_eval_size=8",
]


def indexed_recipes() -> list[str]:
    """The recipes listed in the index table of recipes/README.md."""
    text = (RECIPES / "README.md").read_text(encoding="utf-8")
    return re.findall(r"^\| \[([\w-]+\.yaml)\]\(", text, flags=re.MULTILINE)


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


SENTENCES = ["the film was good", "a dull and boring plot", "what a lovely ending", "the acting was awful",
             "a truly brilliant script", "the story was not fun"]


def glue_substitutes(folder: Path) -> list[str]:
    """Local files with the columns of each GLUE config in glue.yaml, as overrides of each task's data."""
    shapes = {
        "cola": lambda i, s: {"sentence": s, "label": i % 2},
        "sst2": lambda i, s: {"sentence": s, "label": i % 2},
        "mrpc": lambda i, s: {"sentence1": s, "sentence2": SENTENCES[-1 - i % len(SENTENCES)], "label": i % 2},
        "stsb": lambda i, s: {"sentence1": s, "sentence2": SENTENCES[-1 - i % len(SENTENCES)], "label": float(i % 5)},
        "qnli": lambda i, s: {"question": f"is {s}?", "sentence": s, "label": i % 2},
        "rte": lambda i, s: {"sentence1": s, "sentence2": SENTENCES[-1 - i % len(SENTENCES)], "label": i % 2},
    }
    overrides = []
    for task, shape in shapes.items():
        rows = [shape(i, SENTENCES[i % len(SENTENCES)]) for i in range(12)]
        train = write_jsonl(folder / task / "train.jsonl", rows)
        valid = write_jsonl(folder / task / "validation.jsonl", rows[:6])
        overrides.append(f"tasks.{task}.data={{train: {train}, validation: {valid}}}")
    return overrides


ATIS_ROWS = [
    ("flight", "show flights from boston to denver", "O O O B-fromloc O B-toloc"),
    ("airfare", "cheapest fare to dallas", "B-cost O O B-toloc"),
    ("flight", "flights from denver", "O O B-fromloc"),
    ("ground_service", "ground transport in boston", "O O O B-city"),
]


def ner_intent_substitutes(folder: Path) -> list[str]:
    """ATIS as tuetschek/atis ships it (csv, space-separated text and slots) and CoNLL with `tokens` / `ner_tags`."""
    atis = [{"id": i, "intent": intent, "text": text, "slots": slots} for i, (intent, text, slots) in enumerate(ATIS_ROWS * 3)]
    train, test = write_csv(folder / "atis_train.csv", atis), write_csv(folder / "atis_test.csv", atis[:4])
    conll = [{"tokens": ["Bob", "lives", "in", "Oslo"], "ner_tags": ["B-PER", "O", "O", "B-LOC"]},
             {"tokens": ["Acme", "hired", "Maria"], "ner_tags": ["B-ORG", "O", "B-PER"]}] * 5
    conll_train, conll_valid = write_jsonl(folder / "conll_train.jsonl", conll), write_jsonl(folder / "conll_valid.jsonl", conll[:4])
    return [
        f"tasks.intent.data={{train: {train}, validation: {test}}}",
        f"tasks.slots.data={{train: {train}, validation: {test}}}",
        f"tasks.ner.data={{train: {conll_train}, validation: {conll_valid}}}",
    ]


def local_ner_intent_data(folder: Path) -> Path:
    """The $HF_MTL_DATA layout the *_local.yaml recipes read (ATIS-, CoNLL-, SST-2- and STS-B-shaped JSON lines)."""
    atis = [{"tokens": text.split(), "tags": slots.split(), "intent": intent} for intent, text, slots in ATIS_ROWS * 3]
    conll = [{"tokens": ["Bob", "lives", "in", "Oslo"], "tags": ["B-PER", "O", "O", "B-LOC"]}] * 8
    sst2 = [{"text": "a gripping film", "label": "positive"}, {"text": "a dull mess", "label": "negative"}] * 4
    stsb = [{"text": "a man plays a guitar", "text_pair": "a man plays music", "label": 3.8},
            {"text": "a cat sleeps", "text_pair": "stock prices fell", "label": 0.2}] * 4
    for name, rows in (("atis", atis), ("conll2003", conll), ("sst2", sst2), ("stsb", stsb)):
        write_jsonl(folder / name / "train.jsonl", rows)
        write_jsonl(folder / name / "validation.jsonl", rows[:4])
    return folder


def write_recipe(folder, body):
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False) if isinstance(body, dict) else body, encoding="utf-8")
    return path


def sst_recipe(folder, rows=None, **task):
    rows = rows or [{"text": "a good film", "label": "positive"}, {"text": "a bad film", "label": "negative"}] * 4
    train = write_jsonl(folder / "train.jsonl", rows)
    entry = {"name": "sst2", "type": "sequence_classification", "data": {"train": train.name, "validation": train.name}}
    entry.update(task)
    return write_recipe(folder, {"model": {"backbone": "tiny"}, "tasks": [entry], "training": {"output_dir": str(folder / "out")}})
