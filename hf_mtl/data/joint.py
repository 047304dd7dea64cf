"""Joint heads on the same input (JointBERT, Chen et al. 2019): tasks that label the same rows (ATIS intent and slots)
share an `input_group`, and training reads each row once: one encoder pass, every head of the group scored on it.

In training, a group is one *stream* of rows for the task sampler: its leader's tokenised rows (the first token-level
member, whose word-aligned encoding every member can read) carry the other members' labels in extra columns
`joint_labels__<task>`, which the collator pads and the model scores (`MultiTaskModel.forward(joint_labels=...)`).
Evaluation and prediction stay per task.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from datasets import Dataset

from ..errors import TaskError
from ..tasks import input_group_leaders


JOINT_PREFIX = "joint_labels__"


def training_streams(specs: Sequence) -> list[list[str]]:
    """Task names per stream of training rows, in task order: a task alone, or an input group led by its first
    token-level member (else its first member)."""
    streams: list[list[str]] = []
    groups: dict[str, list[str]] = {}
    for spec in specs:
        group = getattr(spec, "input_group", None)
        if group is None:
            streams.append([spec.name])
        elif group in groups:
            groups[group].append(spec.name)
        else:
            groups[group] = [spec.name]
            streams.append(groups[group])
    types = {spec.name: spec.type for spec in specs}
    leaders = input_group_leaders(list(specs))
    for stream in streams:
        if len(stream) > 1:
            bad = [name for name in stream if types[name] == "multiple_choice"]
            if bad:
                raise TaskError(f"Task(s) {bad} (multiple choice) cannot share an input_group: their inputs have "
                                "another shape. Remove `input_group` from them.")
            leader = leaders[stream[0]]
            stream.remove(leader)
            stream.insert(0, leader)
    return streams


def merge_stream(prepared: Mapping[str, Dataset], stream: list[str], specs: Mapping) -> Dataset:
    """The leader's tokenised rows with every other member's labels as `joint_labels__<task>` columns."""
    leader = prepared[stream[0]]
    for name in stream[1:]:
        other = prepared[name]
        if len(other) != len(leader):
            raise TaskError(
                f"Tasks {stream[0]!r} and {name!r} share an input_group but their training data have {len(leader)} "
                f"and {len(other)} rows: tasks of one group label the same rows (give them the same data files)."
            )
        if specs[name].type == "token_classification" and other["input_ids"] != leader["input_ids"]:
            raise TaskError(
                f"Tasks {stream[0]!r} and {name!r} share an input_group but their rows tokenise differently: give "
                "them the same text column (the words)."
            )
        leader = leader.add_column(JOINT_PREFIX + name, other["labels"])
    return leader


def stream_rows(streams: list[list[str]], counts: Sequence[int]) -> dict[str, int]:
    """Rows of each task from rows drawn per stream: every member of a group sees all of its stream's rows."""
    return {name: int(count) for stream, count in zip(streams, counts) for name in stream}
