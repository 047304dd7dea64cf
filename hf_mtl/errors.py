"""Exceptions with messages that name the bad value and the fix.

They subclass `ValueError` so code that already catches `ValueError` (as Transformers users do) keeps working.
"""


class HfMtlError(ValueError):
    """Base class of every user-facing error raised by hf_mtl."""


class TaskError(HfMtlError):
    """A task name, type or definition is wrong (unknown, duplicated, unsupported)."""


class LabelError(HfMtlError):
    """A label is outside its task's label set or has the wrong shape or dtype."""


class UnknownLabelError(LabelError):
    """A label name that is not in its task's label set (the one label error a caller may want to explain further,
    e.g. when the label set was read off the training split)."""


class CheckpointError(HfMtlError):
    """A checkpoint does not match its config (missing or unexpected heads, encoder weights, shapes)."""
