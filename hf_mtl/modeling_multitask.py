"""`MultiTaskModel`: one shared encoder, one head per task, routed by task name or per-row task ids.

The model's own job lives here: building heads, adding and removing tasks, encoding and the forward pass. Its output
type is in `modeling_outputs`, the helpers that are not the model's job (encoder building, backbone loading, checkpoint
checks) in `modeling_utils`, and the row / task bookkeeping of the forward pass in `modeling_routing`.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from transformers import AutoModel, PreTrainedModel

from .configuration_multitask import MultiTaskConfig
from .heads import HEADS, TaskHead, pool
from .heads.discriminator import TaskDiscriminator
from .heads.task_embedding import TaskEmbedding, TaskPrefix, build_task_embedding
from .hub.push import push_model_to_hub
from .modeling_outputs import MultiTaskModelOutput  # also importable from here, as before the split (hf_mtl's lazy map)
from .modeling_routing import (
    encoder_rows,
    resolve_tasks,
    score_joint_head,
    score_task_heads,
    strip_task_prefix,
    to_group_leaders,
)
from .modeling_utils import (
    build_encoder,
    check_checkpoint_matches,
    describe_trainable_parameters,
    load_backbone_weights,
)
from .sharing import SHARING, EncodedBatch, SharingScheme
from .tasks import TaskSpec, check_unique_names
from .utils.input_checks import check_model_inputs
from .utils.safe_loading import safe_weights_loading


class MultiTaskPreTrainedModel(PreTrainedModel):
    config_class = MultiTaskConfig
    config: MultiTaskConfig
    # Plain backbone checkpoints (keys without a prefix) load into `encoder.*`.
    base_model_prefix = "encoder"
    supports_gradient_checkpointing = True
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    # The loss is a mean over the rows of the batch: the Trainer must not rescale it by `num_items_in_batch`.
    accepts_loss_kwargs = False

    @torch.no_grad()
    def _init_weights(self, module):
        # Heads follow the encoder's initialisation scale; the encoder initialises itself.
        std = getattr(self.config.encoder, "initializer_range", 0.02)
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):  # e.g. a private encoder's positions (sharing="shared_private")
            nn.init.normal_(module.weight, mean=0.0, std=std)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, TaskEmbedding):  # zero: the untrained model computes what the backbone computes
            nn.init.zeros_(module.weight)


class MultiTaskModel(MultiTaskPreTrainedModel):
    r"""
    A shared encoder (any `AutoModel` backbone; BERT-family by default) with one head per task.

    Call it with `task="name"` for a one-task batch, or with `task_ids` (one task index per row, indices into
    `config.task_names`) for a batch that mixes tasks: the encoder runs once on the whole batch and each row goes
    to its task's head.

    How the tasks share the encoder is `config.sharing` (see [`MultiTaskConfig`]): the scheme, `model.sharing`,
    runs the batch through the shared and task-specific parts and names the shared parameters.

    Example:

    ```python
    >>> from hf_mtl import MultiTaskModel
    >>> model = MultiTaskModel.from_backbone(
    ...     "sentence-transformers/all-MiniLM-L6-v2",
    ...     tasks=[
    ...         {"name": "sst2", "type": "sequence_classification", "labels": ["negative", "positive"]},
    ...         {"name": "ner", "type": "token_classification", "labels": ["O", "B-PER", "I-PER"]},
    ...     ],
    ... )
    >>> outputs = model(**tokenizer("a gripping film", return_tensors="pt"), task="sst2")
    ```
    """

    def __init__(self, config: MultiTaskConfig):
        super().__init__(config)
        self.sharing: SharingScheme = SHARING.get(config.sharing)(config)
        self.encoder = build_encoder(config.encoder)
        self.sharing.setup(self)
        self.heads = nn.ModuleDict({spec.name: self._build_head(spec) for spec in config.task_specs})
        self.discriminator = TaskDiscriminator(
            config.encoder.hidden_size, max(len(config.tasks), 1), config.get_head_dropout()
        ) if config.adversarial else None
        self.task_embedding = build_task_embedding(
            config.task_embedding, len(config.tasks), config.encoder.hidden_size, config.task_prefix_length
        )
        self.post_init()
        self.sharing.after_init(self)

    # ------------------------------------------------------------------ building

    def fresh_head(self, spec: TaskSpec) -> TaskHead:
        """A newly initialised head for `spec`, on the encoder's device and dtype and in the model's train/eval mode:
        what a head added after construction needs (`add_task`, few-shot and meta-learning episodes)."""
        head = self._build_head(spec)
        head.apply(self._init_weights)
        reference = next(self.encoder.parameters())
        head.to(device=reference.device, dtype=reference.dtype)
        head.train(self.training)
        return head

    def _build_head(self, spec: TaskSpec) -> TaskHead:
        head_class = HEADS.get(spec.type)
        return head_class(
            spec,
            hidden_size=self.sharing.head_hidden_size(self.config),
            dropout=self.config.get_head_dropout(),
            pooling=spec.pooling or self.config.pooling,
        )

    def _resize_task_rows(self, keep_rows: list[int | None]) -> None:
        """Per-task rows (discriminator outputs, task embeddings) of the surviving tasks, in their new order; new
        tasks (`None`) start fresh."""
        if self.task_embedding is not None:
            self.task_embedding.resize(keep_rows)
        if self.discriminator is not None:
            self.discriminator.resize(keep_rows, self._init_weights)

    def shared_parameters(self) -> list[tuple[str, nn.Parameter]]:
        """Trainable parameters every task shares (gradient-surgery strategies and task affinity operate on these).

        Hard sharing: the whole encoder. LoRA: the backbone when it is not frozen (nothing otherwise). Hierarchical:
        embeddings and the shared lower layers. Shared-private: the shared encoder.
        """
        return self.sharing.shared_parameters(self)

    def task_parameters(self, task: str) -> list[tuple[str, nn.Parameter]]:
        """Parameters only `task` uses (or only its group, for hierarchical sharing): its head and its adapter,
        private encoder or upper-layer copy. Frozen ones included."""
        return self.sharing.task_parameters(self, task)

    def task_parameter_counts(self) -> dict[str, dict[str, int]]:
        """Per task: `task_specific` (its head + its own encoder parts), `trainable_task_specific`, `shared_trainable`
        (trainable parameters it shares with every task) and `trainable` (what training the task updates)."""
        return self.sharing.task_parameter_counts(self)

    def print_trainable_parameters(self) -> None:
        """Print trainable parameters per task and in total, as peft's `PeftModel.print_trainable_parameters`."""
        print(describe_trainable_parameters(self))

    def save_adapter(self, task: str, save_directory: str) -> None:
        """Export one task's LoRA adapter in PEFT format (`sharing="lora"` only); see `LoraSharing.save_adapter`."""
        if not hasattr(self.sharing, "save_adapter"):
            raise ValueError(f"save_adapter exports a LoRA adapter; this model uses sharing={self.config.sharing!r}.")
        self.sharing.save_adapter(self, task, save_directory)

    def push_to_hub(self, repo_id: str, **kwargs):
        """`PreTrainedModel.push_to_hub` (same arguments), uploading hf_mtl's model card instead of the generic one;
        card arguments (`eval_results`, `datasets`, `license`, `language`, ...) go to it (`hf_mtl.hub.push`)."""
        return push_model_to_hub(self, repo_id, **kwargs)

    @classmethod
    def from_backbone(
        cls,
        pretrained_model_name_or_path: str,
        tasks: list[TaskSpec | dict[str, Any]],
        *,
        strict: bool = False,
        output_loading_info: bool = False,
        config_kwargs: dict[str, Any] | None = None,
        **from_pretrained_kwargs,
    ):
        r"""
        Build a multi-task model on the weights of a plain backbone checkpoint (e.g. `bert-base-uncased` or the
        local all-MiniLM-L6-v2 directory). The heads are new; every encoder weight the checkpoint lacks is
        reported in a warning (or raises with `strict=True`).

        Args:
            pretrained_model_name_or_path (`str`): Hub id or local directory of the backbone.
            tasks (`list[TaskSpec | dict]`): The tasks (see [`TaskSpec`]).
            strict (`bool`, *optional*, defaults to `False`):
                Raise `CheckpointError` instead of warning when an encoder weight is not in the checkpoint.
            output_loading_info (`bool`, *optional*, defaults to `False`):
                Also return a dict with `missing_keys` (encoder weights left random), `unexpected_keys`
                (checkpoint weights not used) and `new_head_keys`.
            config_kwargs (`dict`, *optional*): Extra [`MultiTaskConfig`] arguments (`pooling`, ...).
            from_pretrained_kwargs: Passed to `AutoModel.from_pretrained` (`revision`, `token`, `dtype`, ...). Weights
                load from safetensors only unless you pass `use_safetensors=False` (a pickle-only backbone you trust).
        """
        with safe_weights_loading(pretrained_model_name_or_path, from_pretrained_kwargs):
            backbone, info = AutoModel.from_pretrained(
                pretrained_model_name_or_path, output_loading_info=True, **from_pretrained_kwargs
            )
        config = cls.config_class(encoder=backbone.config, tasks=tasks, **(config_kwargs or {}))
        model = cls(config)
        loading_info = load_backbone_weights(model, backbone, info, pretrained_model_name_or_path, strict)
        model.to(dtype=backbone.dtype)
        model.config.name_or_path = str(pretrained_model_name_or_path)
        return (model, loading_info) if output_loading_info else model

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, *model_args, **kwargs):
        """`PreTrainedModel.from_pretrained`, refusing an hf_mtl checkpoint whose weights do not match its config.

        Weights load from safetensors only unless you opt in to pickles with `use_safetensors=False` (see
        `hf_mtl.utils.safe_loading`); a corrupted `*.safetensors` file fails with a `CheckpointError` naming it.
        """
        want_info = kwargs.pop("output_loading_info", False)
        # `pipeline()` passes `code_revision` (remote code only, which hf_mtl never needs); transformers 5.22 would
        # hand it on to `__init__`.
        kwargs.pop("code_revision", None)
        # Size mismatches are collected and reported below with the task they belong to, unless the caller opts in.
        allow_resize = kwargs.pop("ignore_mismatched_sizes", False)
        with safe_weights_loading(pretrained_model_name_or_path, kwargs):
            model, info = super().from_pretrained(
                pretrained_model_name_or_path, *model_args, output_loading_info=True, ignore_mismatched_sizes=True, **kwargs
            )
        check_checkpoint_matches(model, info, pretrained_model_name_or_path, allow_resize)
        return (model, info) if want_info else model

    def add_task(
        self, task: TaskSpec | dict[str, Any], *, init_from: str | None = None, group: str | None = None
    ) -> TaskHead:
        """Add a task and its (newly initialised) head to a built model. Returns the head.

        The sharing scheme builds the task's own encoder parts: a new LoRA adapter (identity at first), a new private
        encoder, or, for hierarchical sharing, a place in a group.

        Args:
            init_from (`str`, *optional*): an existing task whose adapter / private encoder / upper layers the new
                task starts from (hierarchical default: the first group's layers; others: fresh).
            group (`str`, *optional*, hierarchical sharing only): an existing group to join (sharing its layers), or
                the name of a new group (default: a new group named after the task).
        """
        spec = TaskSpec.from_any(task)
        check_unique_names(self.config.task_specs + [spec])
        if init_from is not None:
            self.config.task_index(init_from)
        self.sharing.add_task(self, spec, init_from, group)
        head = self.heads[spec.name] = self.fresh_head(spec)
        self.config.tasks = self.config.tasks + [spec.to_dict()]
        self._resize_task_rows(list(range(len(self.config.tasks) - 1)) + [None])
        return head

    def remove_task(self, name: str) -> None:
        """Remove a task and its head. The ids of the tasks after it in `config.task_names` shift down by one."""
        index = self.config.task_index(name)
        del self.heads[name]
        self.config.tasks = self.config.tasks[:index] + self.config.tasks[index + 1 :]
        self.sharing.remove_task(self, name)
        self._resize_task_rows([i for i in range(len(self.config.tasks) + 1) if i != index])

    # ------------------------------------------------------------------ forward

    def encode(self, task_ids: torch.LongTensor, encoder_inputs: dict[str, Any]) -> EncodedBatch:
        """Run the batch through the encoder as the sharing scheme routes it (hard sharing: once, whole batch).

        `task_ids` (one per encoder row) lets the scheme route rows through task-specific parts.
        """
        return self.sharing.encode(self, task_ids, encoder_inputs)

    def forward(
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.LongTensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.FloatTensor | None = None,
        labels: torch.Tensor | None = None,
        task: str | None = None,
        task_ids: torch.LongTensor | None = None,
        joint_labels: dict[str, torch.Tensor] | None = None,
        output_hidden_states: bool | None = None,
        output_attentions: bool | None = None,
    ) -> MultiTaskModelOutput:
        r"""
        Args:
            labels (`torch.Tensor`, *optional*):
                For a `task=` call, the head's labels: class ids `[batch]`, floats `[batch]` (regression), multi-hot
                `[batch, num_labels]`, token labels `[batch, seq_len]` (-100 ignored) or choice indices `[batch]`.
                For a mixed `task_ids` batch, one row per example in its task's format, right-padded with -100 to
                a common width (`[batch]` when every task present has scalar labels).
            task (`str`, *optional*):
                Name of the task of every row. Exactly one of `task` and `task_ids` is required.
            task_ids (`torch.LongTensor` of shape `[batch]`, *optional*):
                Per-row task index into `config.task_names`, for a batch that mixes tasks (multiple-choice tasks
                cannot be mixed: their inputs have another shape).
            joint_labels (`dict[str, torch.Tensor]`, *optional*):
                Labels of other heads for the same rows (tasks sharing an `input_group`, e.g. ATIS slots for the
                rows of ATIS intent), in the padded mixed-batch format: each named head is also scored on every row
                of its group, from the same encoder pass (see `hf_mtl.data.joint`).
        """
        reference = input_ids if input_ids is not None else inputs_embeds
        if reference is None:
            raise ValueError("Pass `input_ids` or `inputs_embeds`.")
        check_model_inputs(self, input_ids, attention_mask, inputs_embeds, labels)
        labels_are_padded = task is None  # mixed-task collators pad every row's labels to a common width
        task_ids, single_task = resolve_tasks(self.config, self.heads, task, task_ids, reference)
        input_shape = reference.shape[:-1] if inputs_embeds is not None else reference.shape
        encoder_inputs = dict(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                              position_ids=position_ids, inputs_embeds=inputs_embeds)
        encoder_inputs, encoder_task_ids = encoder_rows(self.heads, single_task, input_shape, encoder_inputs, task_ids)
        encoder_task_ids = to_group_leaders(self.config, encoder_task_ids)  # joint heads: the path they trained on
        mask = encoder_inputs.get("attention_mask")  # the heads' mask: the input's positions
        if self.task_embedding is not None:
            encoder_inputs = self.task_embedding.condition(self.encoder.get_input_embeddings(), encoder_inputs, encoder_task_ids)
        flags = {"output_hidden_states": output_hidden_states, "output_attentions": output_attentions}
        encoder_inputs.update({flag: True for flag, wanted in flags.items() if wanted})

        encoded = self.encode(encoder_task_ids, encoder_inputs)
        if isinstance(self.task_embedding, TaskPrefix):  # inserted positions: back to the input's
            encoded = strip_task_prefix(self.task_embedding, encoded)
        hidden, encoder_outputs = encoded.hidden_states, encoded.encoder_outputs
        auxiliary_losses = dict(encoded.auxiliary_losses or {})
        if self.discriminator is not None and self.training:
            pooled = pool(encoded.shared_hidden_states, mask, self.config.pooling)  # attention pools as mean here
            auxiliary_losses["adversarial"] = self.discriminator.loss(pooled, encoder_task_ids)

        batch_size = input_shape[0]
        task_logits, task_indices, task_losses = score_task_heads(
            self.config, self.heads, hidden, mask, task_ids, single_task, input_shape, labels, labels_are_padded
        )

        for name, padded in (joint_labels or {}).items():
            score_joint_head(
                self.config, self.heads, name, padded, task_ids, hidden, mask, input_shape, task_logits, task_indices,
                task_losses,
            )

        loss = None
        if task_losses:
            loss = sum(task_losses[name] * (task_indices[name].numel() / batch_size) for name in task_losses)
        return MultiTaskModelOutput(
            loss=loss,
            logits=task_logits[single_task] if single_task is not None else None,
            task_logits=task_logits,
            task_indices=task_indices,
            task_losses=task_losses or None,
            auxiliary_losses=auxiliary_losses or None,
            hidden_states=getattr(encoder_outputs, "hidden_states", None),
            attentions=getattr(encoder_outputs, "attentions", None),
            head_inputs=hidden if self.training and task_losses else None,
        )

