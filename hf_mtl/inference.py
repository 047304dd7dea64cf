"""`MultiTaskPredictor`: text in, labels out, for any mix of a model's tasks, batched through ONE mixed forward
(the model's `task_ids` routing) wherever the tasks allow it.

Each input row names its task. Rows are tokenised one by one the way their task was trained (token-classification
rows as whitespace-split words, so the predicted tags map back to words; pair tasks as text pairs), then padded
together and run through the encoder once per batch; multiple-choice rows, whose inputs have another shape, run in
batches of their own. When a row's encoding does not depend on its task (hard sharing, no task embedding), rows whose
tokens are the same (one text asked for several tasks) are encoded once and every task's head reads that encoding.
When only the top blocks depend on it (per-task LoRA on the top layers, the recipes' default), such a text runs the
blocks below once and the top ones once per task, in one call (`hf_mtl.sharing.fan_out`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import torch

from .errors import TaskError
from .heads import HEADS
from .modeling_multitask import MultiTaskModel
from .tasks import input_group_leaders


class MultiTaskPredictor:
    """Predicts labels for rows `{"task": name, "text": ..., ["text_pair": ...]}` (multiple choice: `"context"` and
    `"choices"`); a row may also use the task's own column names (`text_columns`).

    Args:
        model: a `MultiTaskModel` (e.g. `AutoModel.from_pretrained(dir)`).
        tokenizer: its tokenizer (a fast tokenizer for token classification: words are aligned with `word_ids`).
        batch_size: rows per forward pass.
        max_length: texts are truncated to this many tokens.

    Example:

    ```python
    >>> predictor = MultiTaskPredictor(AutoModel.from_pretrained("out"), AutoTokenizer.from_pretrained("out"))
    >>> predictor.predict([{"task": "sentiment", "text": "a great film"}, {"task": "entities", "text": "Bob flew to Oslo"}])
    [{'task': 'sentiment', 'label': 'positive', 'score': 0.97, ...}, {'task': 'entities', 'tokens': [...]}]
    ```
    """

    def __init__(self, model: MultiTaskModel, tokenizer, batch_size: int = 32, max_length: int = 128):
        if not isinstance(model, MultiTaskModel):
            raise TypeError(f"MultiTaskPredictor needs a hf_mtl MultiTaskModel, got {type(model).__name__}.")
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.batch_size = batch_size
        self.max_length = max_length
        self.specs = {spec.name: spec for spec in model.config.task_specs}
        self.leaders = input_group_leaders(model.config.task_specs)  # the encoder path of each task

    def predict(self, rows: Iterable[Mapping[str, Any]], progress: bool = False) -> list[dict[str, Any]]:
        """One result per row, in order. `progress=True` shows a progress bar (on a terminal)."""
        from tqdm.auto import tqdm

        rows = list(rows)
        encoded = [self._encode(i, row) for i, row in enumerate(rows)]
        results: list[dict[str, Any] | None] = [None] * len(rows)
        mixable = [i for i, item in enumerate(encoded) if HEADS.get(self.specs[item["task"]].type).mixable]
        choices = [i for i in range(len(rows)) if i not in set(mixable)]
        bar = tqdm(total=len(rows), desc="Predicting", unit="row", disable=None if progress else True)
        for group, run in ((mixable, self._run_mixed), (choices, self._run_choices)):
            for start in range(0, len(group), self.batch_size):
                indices = group[start : start + self.batch_size]
                for index, result in zip(indices, run([encoded[i] for i in indices])):
                    results[index] = result
                bar.update(len(indices))
        bar.close()
        return results  # type: ignore[return-value]

    # ------------------------------------------------------------------ encoding

    def _encode(self, index: int, row: Mapping[str, Any]) -> dict[str, Any]:
        task = row.get("task")
        if task not in self.specs:
            raise TaskError(f"Row {index}: unknown task {task!r}. This model's tasks are: {', '.join(self.specs)}.")
        spec = self.specs[task]
        columns = list(spec.text_columns or [])
        if spec.type == "multiple_choice":
            context = row.get("context", row.get(columns[0]) if columns else None)
            options = row.get("choices", row.get(columns[1]) if len(columns) > 1 else None)
            if not isinstance(context, str) or not isinstance(options, list) or not options:
                raise ValueError(f"Row {index} ({task}, multiple choice): give \"context\" (text) and \"choices\" (a list of texts).")
            encoding = self.tokenizer([context] * len(options), options, truncation=True, max_length=self.max_length)
            return {"task": task, "encoding": encoding, "choices": options}
        text = _text(row, "text", columns[0] if columns else None, index, task)
        if spec.type == "token_classification":
            words = text.split() if isinstance(text, str) else list(text)
            encoding = self.tokenizer(words, is_split_into_words=True, truncation=True, max_length=self.max_length)
            return {"task": task, "encoding": encoding, "words": words, "word_ids": encoding.word_ids()}
        pair = None
        if len(columns) > 1:
            pair = _text(row, "text_pair", columns[1], index, task)
        encoding = self.tokenizer(text, pair, truncation=True, max_length=self.max_length)
        return {"task": task, "encoding": encoding, "text": text, "text_pair": pair}

    # ------------------------------------------------------------------ forward passes

    @property
    def shares_encodings(self) -> bool:
        """One encoder pass serves every task of a text: the encoder ignores the task (see `encodes_per_task`)."""
        return not self.model.sharing.encodes_per_task and self.model.task_embedding is None

    @torch.no_grad()
    def _run_mixed(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if self.shares_encodings:
            return self._run_shared(items)
        if self._fan_out_pays(items):
            results = self._run_shared(items, per_task=True)
            if results is not None:
                return results
        batch = self.tokenizer.pad([dict(item["encoding"]) for item in items], padding=True, return_tensors="pt")
        task_ids = torch.tensor([self.model.config.task_index(item["task"]) for item in items])
        device = next(self.model.parameters()).device
        outputs = self.model(**{k: v.to(device) for k, v in batch.items()}, task_ids=task_ids.to(device))
        results: list[dict[str, Any]] = [{} for _ in items]
        for task, logits in outputs.task_logits.items():
            for position, row in enumerate(outputs.task_indices[task].tolist()):
                results[row] = self._decode(items[row], logits[position].float().cpu())
        return results

    def _fan_out_pays(self, items: list[dict[str, Any]]) -> bool:
        """Whether encoding each distinct text once for every task of the batch (`SharingScheme.encode_tasks`: the
        task-independent blocks once) costs less than one pass per row: when texts are asked for several tasks."""
        if self.model.task_embedding is not None:
            return False
        tasks = list(dict.fromkeys(self.leaders[item["task"]] for item in items))
        cost = self.model.sharing.fan_out_cost(self.model, tasks)
        distinct = len({_tokens_key(item["encoding"]) for item in items})
        return cost is not None and distinct * cost < len(items)

    @torch.no_grad()
    def _run_shared(self, items: list[dict[str, Any]], per_task: bool = False) -> list[dict[str, Any]] | None:
        """Each distinct token sequence encoded once; each task's head on the encodings of its rows. `per_task`: the
        encoder's states depend on the task, so each distinct sequence is encoded for every task of the batch in one
        call (None if the scheme cannot)."""
        unique: dict[tuple, int] = {}  # token sequence -> its row in the encoder batch
        positions, encodings = [], []
        for item in items:
            key = _tokens_key(item["encoding"])
            if key not in unique:
                unique[key] = len(encodings)
                encodings.append(dict(item["encoding"]))
            positions.append(unique[key])
        batch = self.tokenizer.pad(encodings, padding=True, return_tensors="pt")
        device = next(self.model.parameters()).device
        inputs = {key: value.to(device) for key, value in batch.items()}
        tasks = list(dict.fromkeys(item["task"] for item in items))
        if per_task:  # a joint head reads its group leader's encoding, as in training
            encoded = self.model.sharing.encode_tasks(self.model, inputs, list(dict.fromkeys(self.leaders[t] for t in tasks)))
            if encoded is None:
                return None
            hidden_by_task = {task: encoded[self.leaders[task]] for task in tasks}
        else:
            hidden = self.model.encode(torch.zeros(len(encodings), dtype=torch.long, device=device), inputs).hidden_states
            hidden_by_task = dict.fromkeys(tasks, hidden)
        mask = inputs.get("attention_mask")
        results: list[dict[str, Any]] = [{} for _ in items]
        for task in tasks:
            rows = [row for row, item in enumerate(items) if item["task"] == task]
            gather = torch.tensor([positions[row] for row in rows], device=device)
            logits = self.model.heads[task](hidden_by_task[task][gather], mask[gather] if mask is not None else None, len(rows))
            for offset, row in enumerate(rows):
                results[row] = self._decode(items[row], logits[offset].float().cpu())
        return results

    @torch.no_grad()
    def _run_choices(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        results = []
        device = next(self.model.parameters()).device
        for item in items:  # the number of choices may differ between rows: one forward each
            flat = self.tokenizer.pad([dict(zip(item["encoding"], values)) for values in zip(*item["encoding"].values())],
                                      padding=True, return_tensors="pt")
            inputs = {k: v.unsqueeze(0).to(device) for k, v in flat.items()}
            logits = self.model(**inputs, task=item["task"]).logits[0].float().cpu()
            probabilities = logits.softmax(-1)
            best = int(probabilities.argmax())
            results.append({"task": item["task"], "choice": best, "answer": item["choices"][best],
                            "scores": [round(float(p), 4) for p in probabilities]})
        return results

    def _decode(self, item: dict[str, Any], logits: torch.Tensor) -> dict[str, Any]:
        spec = self.specs[item["task"]]
        result: dict[str, Any] = {"task": spec.name}
        if spec.type == "sequence_classification":
            probabilities = logits.softmax(-1)
            best = int(probabilities.argmax())
            result.update(label=spec.labels[best], score=round(float(probabilities[best]), 4),
                          scores={label: round(float(p), 4) for label, p in zip(spec.labels, probabilities)})
        elif spec.type == "multi_label_classification":
            probabilities = logits.sigmoid()
            result.update(labels=[label for label, p in zip(spec.labels, probabilities) if p > 0.5],
                          scores={label: round(float(p), 4) for label, p in zip(spec.labels, probabilities)})
        elif spec.type == "regression":
            result["value"] = round(float(logits.reshape(-1)[0]), 4)
        elif spec.type == "token_classification":
            probabilities = logits.softmax(-1)
            tags: dict[int, tuple[str, float]] = {}
            for position, word in enumerate(item["word_ids"]):
                if word is not None and word not in tags and position < probabilities.shape[0]:
                    best = int(probabilities[position].argmax())
                    tags[word] = (spec.labels[best], round(float(probabilities[position, best]), 4))
            # Words cut off by truncation get no tag: say so instead of inventing one.
            result["tokens"] = [
                {"word": word, "tag": tags[i][0], "score": tags[i][1]} if i in tags else {"word": word, "tag": None, "score": None}
                for i, word in enumerate(item["words"])
            ]
        return result


def _tokens_key(encoding) -> tuple:
    """What the encoder sees of a row: equal keys, equal encodings (under a task-independent encoder)."""
    return tuple(tuple(encoding[key]) for key in ("input_ids", "token_type_ids", "attention_mask") if key in encoding)


def _text(row: Mapping[str, Any], generic: str, column: str | None, index: int, task: str):
    value = row.get(generic, row.get(column) if column else None)
    if value is None or not (isinstance(value, str) or (isinstance(value, list) and all(isinstance(w, str) for w in value))):
        names = " or ".join(repr(name) for name in dict.fromkeys([generic, column]) if name)
        raise ValueError(f"Row {index} ({task}): give the input text as {names}.")
    return value
