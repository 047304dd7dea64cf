"""`pipeline("multi-task", model=...)`: every task of a saved hf_mtl model on a text, through Transformers' pipeline API.

`import hf_mtl` registers the pipeline with `transformers.pipelines.PIPELINE_REGISTRY` under `"multi-task"`, so
the usual factory works (`device=`, `batch_size=`, a local folder or a Hub id) and returns, per text, one result per
task: `{"sentiment": {"label": ..., "score": ..., "scores": {...}}, "ner": [{"entity_group": "PER", ...}], ...}`.
The rows of all texts and tasks of a call are batched together through the model's mixed-task forward
(`MultiTaskPredictor`), `batch_size` rows per pass; under hard sharing each text is encoded once for all its tasks.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from transformers import Pipeline
from transformers.pipelines import PIPELINE_REGISTRY

from .inference import MultiTaskPredictor
from .modeling_multitask import MultiTaskModel


PIPELINE_TASK = "multi-task"
AGGREGATION_STRATEGIES = ("simple", "none")


class MultiTaskPipeline(Pipeline):
    r"""
    Predicts every task (or the chosen ones) of a [`MultiTaskModel`] on each input.

    Inputs: a text, a dict `{"text": ..., "text_pair": ...}` (sentence-pair tasks run only when a pair is given),
    a dict `{"context": ..., "choices": [...]}` for multiple-choice tasks, or a list of these.

    Call arguments:
        task / tasks (`str` / `list[str]`, *optional*): the task(s) to predict; default: every task the input fits
            (multiple-choice tasks only when named).
        aggregation_strategy (`str`, *optional*, defaults to `"simple"`): token-classification output. `"simple"`
            groups BIO tags into entities `{"entity_group", "score", "word", "start", "end"}` (character offsets),
            like the token-classification pipeline; `"none"` returns one `{"word", "tag", "score"}` per word.
        max_length (`int`, *optional*, defaults to 128): tokens per text.

    Example:

    ```python
    >>> import hf_mtl  # registers the pipeline
    >>> from transformers import pipeline
    >>> tagger = pipeline("multi-task", model="outputs/demo")
    >>> tagger("Alice flew to Paris and loved it")
    {'sentiment': {'label': 'positive', ...}, 'entities': [{'entity_group': 'PER', 'word': 'Alice', ...}, ...]}
    ```
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if not isinstance(self.model, MultiTaskModel):
            raise TypeError(f"The multi-task pipeline needs a hf_mtl MultiTaskModel, got {type(self.model).__name__}.")
        self.specs = {spec.name: spec for spec in self.model.config.task_specs}

    def _sanitize_parameters(self, task=None, tasks=None, aggregation_strategy=None, max_length=None, **kwargs):
        preprocess: dict[str, Any] = {}
        if task is not None and tasks is not None:
            raise ValueError("Give `task=` (one task) or `tasks=` (several), not both.")
        chosen = [task] if isinstance(task, str) else tasks
        if chosen is not None:
            chosen = [chosen] if isinstance(chosen, str) else list(chosen)
            for name in chosen:
                self.model.config.task_index(name)  # an unknown task names the model's tasks
            preprocess["tasks"] = chosen
        if max_length is not None:
            preprocess["max_length"] = int(max_length)
        postprocess: dict[str, Any] = {}
        if aggregation_strategy is not None:
            if aggregation_strategy not in AGGREGATION_STRATEGIES:
                raise ValueError(f"aggregation_strategy={aggregation_strategy!r}: choose one of {', '.join(AGGREGATION_STRATEGIES)}.")
            postprocess["aggregation_strategy"] = aggregation_strategy
        return preprocess, {}, postprocess

    def __call__(self, inputs, batch_size: int | None = None, **kwargs):
        """Every row of every input in `batch_size`-row mixed forwards; one `{task: result}` per input (a list for a
        list of inputs)."""
        kwargs.pop("num_workers", None)  # rows are tokenised in this process
        preprocess, _, postprocess = self._sanitize_parameters(**kwargs)
        single = isinstance(inputs, (str, Mapping))
        texts = [inputs] if single else list(inputs)
        rows_per_input = [self.preprocess(text, **preprocess) for text in texts]
        predictor = MultiTaskPredictor(self.model, self.tokenizer, batch_size=batch_size or self._batch_size or 32,
                                       max_length=preprocess.get("max_length", 128))
        flat = predictor.predict([row for rows in rows_per_input for row in rows])
        results, start = [], 0
        for text, rows in zip(texts, rows_per_input):
            results.append(self.postprocess(flat[start : start + len(rows)], text=text, **postprocess))
            start += len(rows)
        return results[0] if single else results

    def preprocess(self, inputs, tasks: list[str] | None = None, max_length: int = 128) -> list[dict[str, Any]]:
        """The predictor rows of one input: one per task it fits."""
        if not isinstance(inputs, (str, Mapping)):
            raise TypeError(f"A pipeline input is a text or a dict (text / text_pair, or context / choices), got {type(inputs).__name__}.")
        row = {"text": inputs} if isinstance(inputs, str) else dict(inputs)
        if tasks is None:
            tasks = [name for name, spec in self.specs.items() if _fits(spec, row)]
            if not tasks:
                raise ValueError(f"No task of this model reads this input {sorted(row)}; the tasks are {list(self.specs)}.")
        return [{**row, "task": name} for name in tasks]

    def _forward(self, model_inputs):
        """Pipeline's per-item path; `__call__` batches every row itself through `MultiTaskPredictor`."""
        return MultiTaskPredictor(self.model, self.tokenizer).predict(model_inputs)

    def postprocess(self, model_outputs, text=None, aggregation_strategy: str = "simple") -> dict[str, Any]:
        output = {}
        for result in model_outputs:
            result = dict(result)
            task = result.pop("task")
            if "tokens" in result and aggregation_strategy == "simple":
                source = text.get("text") if isinstance(text, Mapping) else text
                output[task] = group_entities(result["tokens"], source if isinstance(source, str) else None)
            else:
                output[task] = result
        return output


def _fits(spec, row: Mapping[str, Any]) -> bool:
    """Whether a task reads this input by default: pair tasks need a pair, multiple choice is only run when named."""
    if spec.type == "multiple_choice":
        return False
    is_pair = len(spec.text_columns or []) > 1
    has_pair = row.get("text_pair") is not None
    return is_pair == has_pair and row.get("text") is not None


def group_entities(tokens: list[dict[str, Any]], text: str | None = None) -> list[dict[str, Any]]:
    """Word tags -> entities, as the token-classification pipeline's `aggregation_strategy="simple"`: a `B-X` (or an
    `I-X` after another type) opens an entity of type X, `I-X` continues it, `O` closes it; tags without a BIO prefix
    group runs of the same tag. Scores are the mean of the words'; `start`/`end` are character offsets in `text`."""
    offsets, position = [], 0
    for token in tokens:
        found = text.find(token["word"], position) if text is not None else -1
        offsets.append((found, found + len(token["word"])) if found >= 0 else (None, None))
        position = found + len(token["word"]) if found >= 0 else position
    entities: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for token, (start, end) in zip(tokens, offsets):
        tag = token["tag"]
        if tag is None or tag == "O":
            current = None
            continue
        prefix, _, kind = tag.partition("-") if tag[:2] in ("B-", "I-") else ("", "", tag)
        if current is None or prefix == "B" or kind != current["entity_group"]:
            current = {"entity_group": kind, "scores": [], "words": [], "start": start, "end": end}
            entities.append(current)
        current["scores"].append(token["score"])
        current["words"].append(token["word"])
        current["end"] = end
    return [
        {"entity_group": e["entity_group"], "score": round(sum(e["scores"]) / len(e["scores"]), 4),
         "word": " ".join(e["words"]), "start": e["start"], "end": e["end"]}
        for e in entities
    ]


PIPELINE_REGISTRY.register_pipeline(PIPELINE_TASK, pipeline_class=MultiTaskPipeline, pt_model=MultiTaskModel)
