"""Property-based tests (hypothesis) of the two pieces every batch goes through: `MultiTaskCollator` (padding, label
alignment, per-task vs mixed batches, shapes and dtypes, and the round trip through the heads' label unpacking) and
`MultiTaskBatchSampler` (one task per step, rank slices, gradient accumulation, determinism, lengths)."""

from __future__ import annotations

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hf_mtl import HEADS, MultiTaskCollator, TaskSpec
from hf_mtl.sampling import SAMPLERS, MultiTaskBatchSampler, build_task_sampler


SPECS = [
    TaskSpec(name="cls", type="sequence_classification", labels=["neg", "pos", "mixed"]),
    TaskSpec(name="ner", type="token_classification", labels=["O", "B-PER", "I-PER"]),
    TaskSpec(name="reg", type="regression"),
    TaskSpec(name="topics", type="multi_label_classification", labels=["a", "b", "c", "d"]),
    TaskSpec(name="swag", type="multiple_choice"),
]
MIXABLE = [0, 1, 2, 3]
HEAD_OBJECTS = [HEADS.get(spec.type)(spec, hidden_size=8, dropout=0.0, pooling="mean") for spec in SPECS]


@st.composite
def token_ids(draw, min_words=0, max_words=10):
    words = draw(st.lists(st.integers(1000, 29000), min_size=min_words, max_size=max_words))
    return [101, *words, 102]


@st.composite
def feature(draw, task_id: int, choices: int = 4):
    spec = SPECS[task_id]
    if spec.type == "multiple_choice":
        ids = [draw(token_ids()) for _ in range(choices)]
        return {"input_ids": ids, "labels": draw(st.integers(0, choices - 1)), "task_id": task_id}
    ids = draw(token_ids())
    if spec.type == "sequence_classification":
        labels = draw(st.integers(0, len(spec.labels) - 1))
    elif spec.type == "token_classification":
        inner = draw(st.lists(st.sampled_from([-100, 0, 1, 2]), min_size=len(ids) - 2, max_size=len(ids) - 2))
        labels = [-100, *inner, -100]
    elif spec.type == "regression":
        labels = draw(st.floats(-5, 5, allow_nan=False, width=32))
    else:
        labels = [float(v) for v in draw(st.lists(st.integers(0, 1), min_size=4, max_size=4))]
    return {"input_ids": ids, "attention_mask": [1] * len(ids), "labels": labels, "task_id": task_id}


@st.composite
def batches(draw, mixed: bool):
    if mixed:
        present = draw(st.lists(st.sampled_from(MIXABLE), min_size=2, max_size=4, unique=True))
        rows = [draw(feature(task)) for task in present]  # every chosen task at least once
        rows += [draw(feature(draw(st.sampled_from(present)))) for _ in range(draw(st.integers(0, 6)))]
        return draw(st.permutations(rows))
    task, choices = draw(st.sampled_from(range(len(SPECS)))), draw(st.integers(2, 4))
    return [draw(feature(task, choices)) for _ in range(draw(st.integers(1, 6)))]


def _check_padding(batch_ids: torch.Tensor, mask: torch.Tensor, rows: list[list[int]], multiple: int | None):
    longest = max(len(row) for row in rows)
    width = batch_ids.shape[-1]
    assert width == (longest if multiple is None else -(-longest // multiple) * multiple)
    for i, row in enumerate(rows):
        assert batch_ids[i, : len(row)].tolist() == row and (batch_ids[i, len(row) :] == 0).all()
        assert mask[i].tolist() == [1] * len(row) + [0] * (width - len(row))


def _expected_labels(feature: dict, spec: TaskSpec, width: int) -> torch.Tensor:
    if spec.type == "token_classification":
        return torch.tensor(feature["labels"] + [-100] * (width - len(feature["labels"])))
    return torch.tensor(feature["labels"])


@given(features=batches(mixed=False), multiple=st.sampled_from([None, 8]))
@settings(max_examples=60)
def test_collator_one_task_batches(tokenizer, features, multiple):
    collator = MultiTaskCollator(tokenizer, SPECS, pad_to_multiple_of=multiple)
    batch = collator(features)
    spec = SPECS[features[0]["task_id"]]
    assert batch["task"] == spec.name and "task_ids" not in batch
    n = len(features)
    if spec.type == "multiple_choice":
        choices = len(features[0]["input_ids"])
        assert batch["input_ids"].shape[:2] == (n, choices) and batch["labels"].dtype == torch.long
        flat = [ids for f in features for ids in f["input_ids"]]
        _check_padding(batch["input_ids"].flatten(0, 1), batch["attention_mask"].flatten(0, 1), flat, multiple)
        return
    _check_padding(batch["input_ids"], batch["attention_mask"], [f["input_ids"] for f in features], multiple)
    expected_dtype = torch.float if spec.type in ("regression", "multi_label_classification") else torch.long
    assert batch["labels"].dtype == expected_dtype
    width = batch["input_ids"].shape[1]
    for i, f in enumerate(features):
        torch.testing.assert_close(batch["labels"][i], _expected_labels(f, spec, width).to(expected_dtype))
    head = HEAD_OBJECTS[features[0]["task_id"]]
    head.check_labels(batch["labels"], batch["input_ids"].shape)  # what the model accepts


@given(features=batches(mixed=True), multiple=st.sampled_from([None, 8]))
@settings(max_examples=60)
def test_collator_mixed_batches_round_trip_through_the_heads(tokenizer, features, multiple):
    collator = MultiTaskCollator(tokenizer, SPECS, pad_to_multiple_of=multiple)
    batch = collator(features)
    assert "task" not in batch
    assert batch["task_ids"].tolist() == [f["task_id"] for f in features] and batch["task_ids"].dtype == torch.long
    _check_padding(batch["input_ids"], batch["attention_mask"], [f["input_ids"] for f in features], multiple)
    width = batch["input_ids"].shape[1]
    assert batch["labels"].dtype == torch.float and batch["labels"].shape[0] == len(features)
    # What the model does with a mixed batch: each head takes its rows and unpacks its labels from the padded rows.
    for task_id in set(batch["task_ids"].tolist()):
        rows = (batch["task_ids"] == task_id).nonzero(as_tuple=True)[0]
        head = HEAD_OBJECTS[task_id]
        row_shape = torch.Size((rows.numel(), width))
        labels = head.labels_from_padded(batch["labels"][rows], row_shape)
        head.check_labels(labels, row_shape)
        expected = torch.stack([_expected_labels(features[i], SPECS[task_id], width) for i in rows.tolist()])
        torch.testing.assert_close(labels.to(expected.dtype), expected, check_dtype=False)
        if SPECS[task_id].type in ("sequence_classification", "token_classification"):
            assert labels.dtype == torch.long  # class ids come back as integers


# ---------------------------------------------------------------------------------------------- batch sampler


@st.composite
def layouts(draw):
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=5))
    return dict(
        task_sizes=sizes,
        sampler=draw(st.sampled_from(SAMPLERS.choices())),
        batch_size=draw(st.integers(1, 6)),
        gradient_accumulation_steps=draw(st.integers(1, 3)),
        num_replicas=draw(st.integers(1, 3)),
        batching=draw(st.sampled_from(["per_task", "mixed"])),
        seed=draw(st.integers(0, 2**16)),
        epoch=draw(st.integers(0, 3)),
        num_epochs=draw(st.integers(1, 4)),
    )


def _sampler_kwargs(layout) -> dict:
    """Samplers that need arguments get valid ones (a rehearsal needs an old task beside the new one)."""
    k = len(layout["task_sizes"])
    if layout["sampler"] == "fixed":
        return {"probabilities": [1.0] * k}
    if layout["sampler"] == "rehearsal":
        return {"ratio": 0.2 if k > 1 else 0.0, "new_tasks": [k - 1]} if k > 1 else {"ratio": 0.0}
    if layout["sampler"] == "learned":
        return {"floor": 0.0}
    return {}


def _samplers(layout, **overrides) -> list[MultiTaskBatchSampler]:
    layout = {**layout, **overrides}
    samplers = []
    for rank in range(layout["num_replicas"]):
        sampler = MultiTaskBatchSampler(
            layout["task_sizes"],
            build_task_sampler(layout["sampler"], layout["task_sizes"], **_sampler_kwargs(layout)),
            batch_size=layout["batch_size"],
            batching=layout["batching"],
            gradient_accumulation_steps=layout["gradient_accumulation_steps"],
            num_replicas=layout["num_replicas"],
            rank=rank,
            seed=layout["seed"],
            num_epochs=layout["num_epochs"],
        )
        sampler.set_epoch(layout["epoch"])
        samplers.append(sampler)
    return samplers


def _task_of(sizes: list[int], index: int) -> int:
    offset = 0
    for task, size in enumerate(sizes):
        if index < offset + size:
            return task
        offset += size
    raise AssertionError(f"index {index} is past the {sum(sizes)} rows")


@given(layout=layouts())
@settings(max_examples=120)
def test_sampler_rank_slices_partition_each_step_and_lengths_hold(layout):
    samplers = _samplers(layout)
    per_rank = [list(sampler) for sampler in samplers]
    plan = list(samplers[0].step_plan(layout["epoch"]))
    b, accumulation = layout["batch_size"], layout["gradient_accumulation_steps"]
    total = sum(layout["task_sizes"])
    assert len(plan) == samplers[0].steps_per_epoch == max(1, -(-total // samplers[0].rows_per_step))
    for batches_of_rank, sampler in zip(per_rank, samplers):
        assert len(batches_of_rank) == len(sampler) == len(plan) * accumulation
        assert all(len(batch) == b and all(0 <= i < total for i in batch) for batch in batches_of_rank)
    for step, rows in enumerate(plan):
        assert len(rows) == samplers[0].rows_per_step
        # Rank r's micro-batch m of this step is slice (r * accumulation + m) of the step's rows: together the
        # processes' micro-batches are exactly the step's rows, each row once.
        pieces = [per_rank[r][step * accumulation + m] for r in range(len(samplers)) for m in range(accumulation)]
        assert [i for piece in pieces for i in piece] == rows
        tasks = {_task_of(layout["task_sizes"], i) for i in rows}
        if layout["batching"] == "per_task":
            assert len(tasks) == 1  # one task per step, on every process
        elif samplers[0].rows_per_step >= len(layout["task_sizes"]):
            assert tasks == set(range(len(layout["task_sizes"])))  # stratified: every task at least once


@given(layout=layouts())
@settings(max_examples=80)
def test_sampler_accumulated_micro_batches_equal_one_large_batch(layout):
    """4 micro-batches of 2 rows on 1 process == 1 batch of 8 rows: what makes gradient accumulation exact."""
    rows_per_step = layout["batch_size"] * layout["gradient_accumulation_steps"] * layout["num_replicas"]
    small = _samplers(layout)
    large = _samplers(layout, batch_size=rows_per_step, gradient_accumulation_steps=1, num_replicas=1)[0]
    small_batches = [list(sampler) for sampler in small]
    accumulation = layout["gradient_accumulation_steps"]
    for step, big in enumerate(large):
        pieces = [small_batches[r][step * accumulation + m] for r in range(len(small)) for m in range(accumulation)]
        assert [i for piece in pieces for i in piece] == big


@given(layout=layouts())
@settings(max_examples=60)
def test_sampler_is_a_pure_function_of_seed_and_epoch(layout):
    first, second = _samplers(layout)[0], _samplers(layout)[0]
    assert list(first) == list(second)
    # A sampler that has already iterated other epochs gives the same batches when sent back to this one (resume).
    second.set_epoch(layout["epoch"] + 1)
    list(second)
    second.set_epoch(layout["epoch"])
    assert list(second) == list(first)
