"""Recipes: YAML files that say what to train (backbone, tasks and their data, training arguments), read with
`HfArgumentParser` and run by `hf-mtl train` / `recipes/train.py`. See `recipes/README.md` for the format."""

from .arguments import DataArguments, ModelArguments, TaskEntry
from .data import TaskData, load_recipe_data, load_task_data
from .errors import RecipeError
from .loader import Recipe, find_recipe, load_recipe
from .run import RunResult, build_model, train_recipe


__all__ = [
    "DataArguments",
    "ModelArguments",
    "Recipe",
    "RecipeError",
    "RunResult",
    "TaskData",
    "TaskEntry",
    "build_model",
    "find_recipe",
    "load_recipe",
    "load_recipe_data",
    "load_task_data",
    "train_recipe",
]
