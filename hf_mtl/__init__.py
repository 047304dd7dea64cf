"""hf_mtl: multi-task learning as a first-class Transformers citizen.

Importing the package registers `MultiTaskConfig` / `MultiTaskModel` with `AutoConfig` / `AutoModel`, so a
saved multi-task checkpoint loads with `AutoModel.from_pretrained` and no `trust_remote_code`.
"""

from transformers import AutoConfig, AutoModel

from .configuration_multitask import MultiTaskConfig
from .errors import CheckpointError, HfMtlError, LabelError, TaskError
from .heads import HEADS
from .modeling_multitask import MultiTaskModel, MultiTaskModelOutput, MultiTaskPreTrainedModel
from .registry import Registry
from .tasks import TaskSpec
from .data import DataError, MultiTaskCollator, MultiTaskDataset, preprocess_task
from .sampling import SAMPLERS, MultiTaskBatchSampler, TaskSampler
from .sharing import SHARING
from .training_args import MultiTaskTrainingArguments
from .trainer import MultiTaskTrainer, NonFiniteLossError
from .checkpointing import get_last_complete_checkpoint
from .input_checks import InputError
from .safe_loading import UnsafeCheckpointError
from .weighting import WEIGHTINGS
from .transfer import FreezeReport, TransferReport, apply_freeze, learn_new_task
from .meta import MetaLearningArguments, MetaTrainer
from .few_shot import FewShotConfig, FewShotResult, few_shot_evaluate


__version__ = "0.1.0"

AutoConfig.register(MultiTaskConfig.model_type, MultiTaskConfig, exist_ok=True)
AutoModel.register(MultiTaskConfig, MultiTaskModel, exist_ok=True)

__all__ = [
    "HEADS",
    "SAMPLERS",
    "SHARING",
    "WEIGHTINGS",
    "DataError",
    "MultiTaskBatchSampler",
    "MultiTaskCollator",
    "MultiTaskDataset",
    "MultiTaskTrainer",
    "MultiTaskTrainingArguments",
    "NonFiniteLossError",
    "InputError",
    "UnsafeCheckpointError",
    "get_last_complete_checkpoint",
    "TaskSampler",
    "preprocess_task",
    "CheckpointError",
    "HfMtlError",
    "LabelError",
    "MultiTaskConfig",
    "MultiTaskModel",
    "MultiTaskModelOutput",
    "MultiTaskPreTrainedModel",
    "Registry",
    "TaskError",
    "TaskSpec",
    "FreezeReport",
    "TransferReport",
    "apply_freeze",
    "learn_new_task",
    "MetaLearningArguments",
    "MetaTrainer",
    "FewShotConfig",
    "FewShotResult",
    "few_shot_evaluate",
]
