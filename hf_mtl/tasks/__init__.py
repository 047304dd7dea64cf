"""Tasks as data: `TaskSpec` (one task: name, type, labels, columns) and the task-type descriptors (`TASK_TYPES`)."""

from .spec import TaskSpec, check_unique_names, input_group_leaders
from .types import POOLING_CHOICES, TASK_TYPES, TaskType


__all__ = ["POOLING_CHOICES", "TASK_TYPES", "TaskSpec", "TaskType", "check_unique_names", "input_group_leaders"]
