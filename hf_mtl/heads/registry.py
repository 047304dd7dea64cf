from ..utils.registry import Registry


HEADS = Registry("task type")
"""Task type -> head class. Registering a new head (one file, one decorator) makes its type valid in `TaskSpec`."""
