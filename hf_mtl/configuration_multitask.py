"""`MultiTaskConfig`: the backbone's config plus the task list, saved as one `config.json`."""

from __future__ import annotations

from dataclasses import field
from typing import Any, ClassVar

from transformers import AutoConfig, PreTrainedConfig
from transformers.configuration_utils import SubConfigSpec

from .errors import TaskError
from .heads import POOLING_CHOICES
from .heads.task_embedding import TASK_EMBEDDING_CHOICES
from .sharing import SHARING
from .tasks import TaskSpec, check_unique_names
from .utils import encoder_settings


class MultiTaskConfig(PreTrainedConfig):
    r"""
    Configuration of a [`MultiTaskModel`]: one shared encoder (any `AutoModel` backbone, BERT-family by default)
    and one head per task.

    Args:
        encoder (`PreTrainedConfig` or `dict`, *optional*):
            Config of the shared encoder, e.g. `AutoConfig.from_pretrained("bert-base-uncased")`. Defaults to a
            `BertConfig()`.
        tasks (`list[TaskSpec | dict]`):
            The tasks, in order: the index of a task in this list is its id in `task_ids`. Each entry has a
            `name`, a `type` and, for classification types, its `labels` (see [`TaskSpec`]).
        pooling (`str`, *optional*, defaults to `"cls"`):
            How sentence-level heads pool token states: `"cls"` (the first token), `"mean"` (over non-padding
            tokens) or `"attention"` (a learned softmax over tokens, one scorer per head). A task's own `pooling`
            (see [`TaskSpec`]) overrides it.
        task_embedding (`str`, *optional*, defaults to `"none"`):
            Task conditioning of the shared encoder, off by default (on the dev suite, 3 seeds, `"cls"` did not beat
            no conditioning under per-task batches; see the README). `"cls"` adds a learned vector per task (zero
            at the start) to the input embedding of the first token, so the encoder knows each row's task (as
            tasknet does);
            `"prefix"` inserts `task_prefix_length` learned vectors per task after the first token (a task token /
            prompt prefix, removed again before the heads); `"none"` leaves the encoder unconditioned.
        task_prefix_length (`int`, *optional*, defaults to 4):
            Vectors per task of `task_embedding="prefix"`.
        classifier_dropout (`float`, *optional*):
            Dropout in the heads; defaults to the one Transformers' own head for the backbone uses (its classifier
            dropout where the backbone's config sets one, else its hidden-state dropout, else 0.1; see
            `utils.encoder_settings`).
        adversarial (`bool`, *optional*, defaults to `False`):
            Add a task discriminator behind gradient reversal on the pooled shared features (Liu, Qiu & Huang
            2017). In training mode the model then returns `auxiliary_losses["adversarial"]`; the trainer weighs
            it with `adversarial_weight`.
        sharing (`str`, *optional*, defaults to `"hard"`):
            How the tasks share parameters (registry keys, one file each in `hf_mtl/sharing/`). Recipes that name
            no scheme use `"lora"` with a trained backbone on its top two layers (`RECIPE_MODEL_DEFAULTS`):

            - `"hard"`: one encoder for every task.
            - `"lora"`: one peft LoRA adapter per task on the shared backbone (frozen by default).
            - `"shared_private"`: a small private encoder per task beside the shared one; heads read both
              (Liu, Qiu & Huang 2017); enables the trainer's `orthogonality_weight`.
            - `"hierarchical"`: embeddings and the lowest `num_shared_layers` layers shared, the layers above
              copied per task group.
            - `"mmoe"` / `"ple"`: softmax-gated experts above the shared lower layers, one gate per task (Ma et al.
              2018; PLE/CGC, Tang et al. 2020, adds experts per task); gate weights are logged and drawn.
            - `"adashare"`: each task learns which layers to execute or skip (Gumbel-softmax, Sun et al. 2020);
              the fixed policy is stored in `sharing_kwargs["policy"]`.
        sharing_kwargs (`dict`, *optional*):
            Options of the scheme, validated when the config is built and saved with every default filled in:

            - `lora`: `r` (8), `lora_alpha` (16), `lora_dropout` (0.1), `target_modules` (None = peft's default
              for the backbone, BERT: query/value), `top_layers` (None = all layers; N = the top N blocks, every
              linear layer there unless `target_modules` names some), `freeze_backbone` (True), `learning_rate` or
              `learning_rate_multiplier` (None: the trainer's rate), `adapters` (per-task overrides of
              r / lora_alpha / lora_dropout, e.g. `{"ner": {"r": 16}}`).
            - `shared_private`: `private_hidden_size` (64), `private_layers` (1), `private_heads` (4).
            - `hierarchical`: `num_shared_layers` (required, 0..num_hidden_layers-1), `groups`
              (`{name: [tasks]}` or `[[tasks], ...]`, e.g. from `hf_mtl.evaluation.affinity.suggest_groups`; tasks in no
              group get their own copy).
            - `mmoe`: `num_experts` (3), `expert_type` (`"layer"`: copies of the top `num_expert_layers` (1)
              layers; `"ffn"`: feed-forward experts of width `ffn_hidden_size` on the encoder output); `ple`: the
              same plus `num_task_experts` (1).
            - `adashare`: `initial_temperature` (5.0), `final_temperature` (0.5), `search_steps` (None = the
              whole run), `sparsity_weight` (0.05), `sharing_weight` (0.05), `policy_lr` (0.01),
              `initial_execute_probability` (0.9), `policy` (written when the search ends).
        encoder_packing (`bool`, *optional*, defaults to `True`):
            In training, run a batch's rows packed end to end into a few lines, each row attending only to itself,
            instead of padded to the longest row: one encoder call over about the batch's real tokens, the same loss
            and gradients up to float rounding (see `hf_mtl.sharing.row_packing`; a dev-suite step's encoder pass
            0.70x of two length-sorted calls). For encoders with absolute positions and eager or SDPA attention
            (BERT, RoBERTa, XLM-R, ELECTRA); others use `encoder_length_buckets`. Applies to `hard`, `shared_private`,
            `hierarchical` and `lora` sharing; not in eval mode (except the heads' refinement stage), while tracing,
            or when per-layer outputs are requested.
        encoder_length_buckets (`int`, *optional*, defaults to 2):
            Where rows are not packed (`encoder_packing=False`, or an encoder that cannot take packed rows), in
            training, up to this many encoder calls per batch, on rows sorted by length, each cut to its own
            longest row: less padding for the same loss and gradients (up to float rounding), used where the
            positions saved outweigh the extra calls (see `hf_mtl.sharing.length_buckets`; about 10% of a step on
            the dev suite). `1` runs every batch whole. Not under FSDP / ZeRO-3 or gradient checkpointing either.

    Example:

    ```python
    >>> from transformers import AutoConfig
    >>> from hf_mtl import MultiTaskConfig
    >>> config = MultiTaskConfig(
    ...     encoder=AutoConfig.for_model("bert", hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=37),
    ...     tasks=[{"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]}],
    ... )
    >>> config.task_names
    ['sst2']

    ```
    """

    model_type = "hf_mtl"
    # Trainer's prediction loop keeps only `logits`; the per-task dicts are for multi-task trainers and callers.
    keys_to_ignore_at_inference: ClassVar[list[str]] = [
        "task_logits", "task_indices", "task_losses", "auxiliary_losses", "hidden_states", "attentions"
    ]
    sub_configs_defaults = {"encoder": SubConfigSpec(config_class=AutoConfig, model_type="bert")}

    encoder: dict | PreTrainedConfig | None = None
    tasks: list = field(default_factory=list)
    pooling: str = "cls"
    task_embedding: str = "none"
    task_prefix_length: int = 4
    classifier_dropout: float | None = None
    adversarial: bool = False
    sharing: str = "hard"
    sharing_kwargs: dict = field(default_factory=dict)
    encoder_packing: bool = True
    encoder_length_buckets: int = 2

    def __post_init__(self, **kwargs):
        super().__post_init__(**kwargs)
        if not isinstance(self.tasks, (list, tuple)):
            raise TaskError(f"`tasks` must be a list of TaskSpec or dicts, got {type(self.tasks).__name__}.")
        specs = [TaskSpec.from_any(task) for task in self.tasks]
        check_unique_names(specs)
        self.tasks = [spec.to_dict() for spec in specs]
        if self.pooling not in POOLING_CHOICES:
            raise ValueError(f"Unknown pooling {self.pooling!r}. Choose one of: {', '.join(POOLING_CHOICES)}.")
        if self.task_embedding not in TASK_EMBEDDING_CHOICES:
            raise ValueError(
                f"Unknown task_embedding {self.task_embedding!r}. Choose one of: {', '.join(TASK_EMBEDDING_CHOICES)}."
            )
        if isinstance(self.task_prefix_length, bool) or not isinstance(self.task_prefix_length, int) or self.task_prefix_length < 1:
            raise ValueError(f"task_prefix_length must be an integer >= 1 (vectors per task), got {self.task_prefix_length!r}.")
        if self.sharing not in SHARING:
            raise ValueError(SHARING.unknown_message(self.sharing))
        if self.sharing_kwargs is not None and not isinstance(self.sharing_kwargs, dict):
            raise ValueError(f"`sharing_kwargs` must be a dict of the scheme's options, got {self.sharing_kwargs!r}.")
        self.sharing_kwargs = SHARING.get(self.sharing).validate_options(self.sharing_kwargs, self)
        if not isinstance(self.encoder_packing, bool):
            raise ValueError(f"encoder_packing must be True or False, got {self.encoder_packing!r}.")
        buckets = self.encoder_length_buckets
        if isinstance(buckets, bool) or not isinstance(buckets, int) or buckets < 1:
            raise ValueError(
                f"encoder_length_buckets must be an integer >= 1 (encoder calls per batch; 1 = whole batches), got {buckets!r}."
            )

    @classmethod
    def from_dict(cls, config_dict: dict[str, Any], **kwargs):
        # A checkpoint saved before task conditioning existed has no `task_embedding` key: it had none, whatever
        # today's default is.
        if config_dict.get("model_type") == cls.model_type and "task_embedding" not in config_dict:
            config_dict = {**config_dict, "task_embedding": "none"}
        return super().from_dict(config_dict, **kwargs)

    @property
    def task_specs(self) -> list[TaskSpec]:
        return [TaskSpec.from_any(task) for task in self.tasks]

    @property
    def task_names(self) -> list[str]:
        return [task["name"] for task in self.tasks]

    def task_index(self, name: str) -> int:
        """Index of task `name` (its id in `task_ids`); a clear error for an unknown name."""
        names = self.task_names
        if name not in names:
            raise TaskError(f"Unknown task {name!r}. This model's tasks are: {', '.join(names) or '(none)'}.")
        return names.index(name)

    def task_spec(self, name: str) -> TaskSpec:
        return TaskSpec.from_any(self.tasks[self.task_index(name)])

    def get_head_dropout(self) -> float:
        if self.classifier_dropout is not None:
            return self.classifier_dropout
        return encoder_settings.classifier_dropout(self.encoder)

    def to_diff_dict(self) -> dict[str, Any]:
        # Always write the task list, even when it equals the (empty) default, so a checkpoint is self-describing.
        output = super().to_diff_dict()
        output["tasks"] = self.tasks
        return output
