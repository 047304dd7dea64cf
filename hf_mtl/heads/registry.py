from ..utils.registry import Registry


HEADS = Registry("task type")
"""Task type -> head class. Each key is also a task-type descriptor in `hf_mtl.tasks.TASK_TYPES` (the label rules)."""
