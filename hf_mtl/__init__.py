"""hf_mtl: multi-task learning as a first-class Transformers citizen.

Importing the package registers `MultiTaskConfig` / `MultiTaskModel` with `AutoConfig` / `AutoModel`, so a
saved multi-task checkpoint loads with `AutoModel.from_pretrained` and no `trust_remote_code`. That registration is
the only eager work: every other public name is imported on first use (module `__getattr__`, as transformers and trl
do), so `import hf_mtl` costs what loading a model needs and not the trainer, the metrics or the recipes.
"""

from .utils.version import package_version


__version__ = package_version()

from typing import TYPE_CHECKING  # noqa: E402

from transformers import AutoConfig, AutoModel  # noqa: E402

from .configuration_multitask import MultiTaskConfig  # noqa: E402
from .modeling_multitask import MultiTaskModel  # noqa: E402


AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)
from . import pipelines  # noqa: E402,F401  (registers `pipeline("multi-task", ...)`)


# Public name -> (module that defines it, name there). Submodule paths are relative to this package.
# `TransferReport` is the old name of `NewTaskReport` ("transfer" now means only multi- vs single-task transfer).
_LAZY: dict[str, tuple[str, str]] = {
    "CheckpointError": (".errors", "CheckpointError"),
    "HfMtlError": (".errors", "HfMtlError"),
    "LabelError": (".errors", "LabelError"),
    "TaskError": (".errors", "TaskError"),
    "Registry": (".utils.registry", "Registry"),
    "TaskSpec": (".tasks", "TaskSpec"),
    "HEADS": (".heads", "HEADS"),
    "SHARING": (".sharing", "SHARING"),
    "MultiTaskModelOutput": (".modeling_multitask", "MultiTaskModelOutput"),
    "MultiTaskPredictor": (".inference", "MultiTaskPredictor"),
    "MultiTaskPipeline": (".pipelines", "MultiTaskPipeline"),
    "MultiTaskPreTrainedModel": (".modeling_multitask", "MultiTaskPreTrainedModel"),
    "InputError": (".utils.input_checks", "InputError"),
    "UnsafeCheckpointError": (".utils.safe_loading", "UnsafeCheckpointError"),
    "DataError": (".data", "DataError"),
    "MultiTaskCollator": (".data", "MultiTaskCollator"),
    "MultiTaskDataset": (".data", "MultiTaskDataset"),
    "preprocess_task": (".data", "preprocess_task"),
    "SAMPLERS": (".sampling", "SAMPLERS"),
    "MultiTaskBatchSampler": (".sampling", "MultiTaskBatchSampler"),
    "TaskSampler": (".sampling", "TaskSampler"),
    "WEIGHTINGS": (".weighting", "WEIGHTINGS"),
    "MultiTaskTrainingArguments": (".training.arguments", "MultiTaskTrainingArguments"),
    "MultiTaskTrainer": (".training.trainer", "MultiTaskTrainer"),
    "NonFiniteLossError": (".training.non_finite", "NonFiniteLossError"),
    "get_last_complete_checkpoint": (".training.checkpointing", "get_last_complete_checkpoint"),
    "FreezeReport": (".adaptation", "FreezeReport"),
    "NewTaskReport": (".adaptation", "NewTaskReport"),
    "TransferReport": (".adaptation", "NewTaskReport"),
    "apply_freeze": (".adaptation", "apply_freeze"),
    "learn_new_task": (".adaptation", "learn_new_task"),
    "MetaLearningArguments": (".adaptation.meta", "MetaLearningArguments"),
    "MetaTrainer": (".adaptation.meta", "MetaTrainer"),
    "FewShotConfig": (".adaptation.few_shot", "FewShotConfig"),
    "FewShotResult": (".adaptation.few_shot", "FewShotResult"),
    "few_shot_evaluate": (".adaptation.few_shot", "few_shot_evaluate"),
}

__all__ = [
    "CheckpointError",
    "DataError",
    "FewShotConfig",
    "FewShotResult",
    "FreezeReport",
    "HEADS",
    "HfMtlError",
    "InputError",
    "LabelError",
    "MetaLearningArguments",
    "MetaTrainer",
    "MultiTaskBatchSampler",
    "MultiTaskCollator",
    "MultiTaskConfig",
    "MultiTaskDataset",
    "MultiTaskModel",
    "MultiTaskModelOutput",
    "MultiTaskPipeline",
    "MultiTaskPreTrainedModel",
    "MultiTaskPredictor",
    "MultiTaskTrainer",
    "MultiTaskTrainingArguments",
    "NewTaskReport",
    "NonFiniteLossError",
    "Registry",
    "SAMPLERS",
    "SHARING",
    "TaskError",
    "TaskSampler",
    "TaskSpec",
    "TransferReport",
    "UnsafeCheckpointError",
    "WEIGHTINGS",
    "__version__",
    "apply_freeze",
    "few_shot_evaluate",
    "get_last_complete_checkpoint",
    "learn_new_task",
    "preprocess_task",
]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    import importlib

    module_name, attribute = _LAZY[name]
    value = getattr(importlib.import_module(module_name, __name__), attribute)
    globals()[name] = value  # later lookups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


if TYPE_CHECKING:  # static analysers and IDEs see the lazy names
    from .adaptation import FreezeReport, NewTaskReport, apply_freeze, learn_new_task
    from .adaptation import NewTaskReport as TransferReport
    from .adaptation.few_shot import FewShotConfig, FewShotResult, few_shot_evaluate
    from .adaptation.meta import MetaLearningArguments, MetaTrainer
    from .data import DataError, MultiTaskCollator, MultiTaskDataset, preprocess_task
    from .errors import CheckpointError, HfMtlError, LabelError, TaskError
    from .heads import HEADS
    from .inference import MultiTaskPredictor
    from .modeling_multitask import MultiTaskModelOutput, MultiTaskPreTrainedModel
    from .pipelines import MultiTaskPipeline
    from .sampling import SAMPLERS, MultiTaskBatchSampler, TaskSampler
    from .sharing import SHARING
    from .tasks import TaskSpec
    from .training.arguments import MultiTaskTrainingArguments
    from .training.checkpointing import get_last_complete_checkpoint
    from .training.non_finite import NonFiniteLossError
    from .training.trainer import MultiTaskTrainer
    from .utils.input_checks import InputError
    from .utils.registry import Registry
    from .utils.safe_loading import UnsafeCheckpointError
    from .weighting import WEIGHTINGS
