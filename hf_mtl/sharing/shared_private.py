"""Shared-private sharing (Liu, Qiu & Huang, ACL 2017, "Adversarial Multi-task Learning for Text Classification",
arXiv:1704.05742): beside the shared encoder, each task has a small private encoder; its head reads both.

The paper's two extra losses work with it: the task discriminator (config `adversarial=True`, trainer
`adversarial_weight`) reads only the shared features, pushing them to be task-invariant, and the orthogonality
("difference") loss, returned as `auxiliary_losses["orthogonality"]` in training mode and weighted by the trainer's
`orthogonality_weight`, pushes the private features away from the shared ones:

    L_diff = mean over tasks k present of || S_k^T P_k ||_F^2

where the rows of S_k and P_k are the pooled shared and private features of task k's rows. Deviation from the
paper: each row is L2-normalised first (as Bousmalis et al. 2016 do for domain separation), so the penalty does not
grow with the feature scale and stays comparable across backbones.

The private encoder is small by design (defaults: width 64, one layer, about 0.1M parameters next to
all-MiniLM-L6-v2's 22.7M): the shared word embeddings are projected to `private_hidden_size`, learned positions are
added, and `private_layers` pre-norm Transformer layers (`nn.TransformerEncoderLayer`, GELU, 4x feed-forward)
contextualise them. The paper used one BiLSTM per task over shared word embeddings; a Transformer layer masks
padding exactly on either padding side. Initialisation: linear layers and positions ~ N(0, initializer_range),
attention in-projections Xavier-uniform (PyTorch's default), LayerNorm identity.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..heads import pool
from ..utils.encoder_settings import hidden_dropout, max_positions
from .base import SHARING, EncodedBatch, SharedModel, SharingScheme, merge_rows
from .padding_free import run_encoder_padding_free


@dataclass
class SharedPrivateOptions:
    private_hidden_size: int = field(default=64, metadata={"help": "Width of each task's private encoder."})
    private_layers: int = field(default=1, metadata={"help": "Transformer layers in each private encoder."})
    private_heads: int = field(default=4, metadata={"help": "Attention heads of the private layers (divides the width)."})


class PrivateEncoder(nn.Module):
    """Projection of the shared word embeddings + learned positions + pre-norm Transformer layers."""

    def __init__(self, input_size: int, hidden_size: int, num_layers: int, num_heads: int, max_positions: int, dropout: float):
        super().__init__()
        self.projection = nn.Linear(input_size, hidden_size)
        self.position_embeddings = nn.Embedding(max_positions, hidden_size)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            hidden_size, num_heads, 4 * hidden_size, dropout, activation="gelu", batch_first=True, norm_first=True
        )
        self.layers = nn.TransformerEncoder(layer, num_layers, enable_nested_tensor=False)
        self.layer_norm = nn.LayerNorm(hidden_size)

    def forward(self, embeddings: torch.Tensor, attention_mask: torch.Tensor | None) -> torch.Tensor:
        seq_len = embeddings.shape[1]
        if seq_len > self.position_embeddings.num_embeddings:
            raise ValueError(
                f"Sequence length {seq_len} exceeds the private encoder's {self.position_embeddings.num_embeddings} "
                "positions (the backbone's max_position_embeddings)."
            )
        positions = torch.arange(seq_len, device=embeddings.device)
        x = self.dropout(self.projection(embeddings) + self.position_embeddings(positions))
        padding = (attention_mask == 0) if attention_mask is not None else None
        return self.layer_norm(self.layers(x, src_key_padding_mask=padding))


@SHARING.register("shared_private")
class SharedPrivateSharing(SharingScheme):
    """Shared encoder + one small private encoder per task; heads read `[shared ; private]` token states."""

    name = "shared_private"
    Options = SharedPrivateOptions
    unit_label = "private encoder"

    @classmethod
    def check_options(cls, options: SharedPrivateOptions, config):
        for key in ("private_hidden_size", "private_layers", "private_heads"):
            value = getattr(options, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"shared_private `{key}` must be a positive integer, got {value!r}.")
        if options.private_hidden_size % options.private_heads:
            raise ValueError(
                f"shared_private `private_hidden_size` ({options.private_hidden_size}) must be divisible by "
                f"`private_heads` ({options.private_heads})."
            )
        return options

    def __init__(self, config):
        super().__init__(config)
        self.private = nn.ModuleDict()

    def _build_private(self, config) -> PrivateEncoder:
        encoder = config.encoder
        return PrivateEncoder(
            encoder.hidden_size,
            self.options.private_hidden_size,
            self.options.private_layers,
            self.options.private_heads,
            max_positions(encoder) or 512,
            hidden_dropout(encoder),
        )

    def setup(self, model: SharedModel) -> None:
        for task in model.config.task_names:
            self.private[task] = self._build_private(model.config)

    def head_hidden_size(self, config) -> int:
        return config.encoder.hidden_size + self.options.private_hidden_size

    def parameter_owner(self, name: str) -> tuple[str, str] | None:
        if name.startswith("sharing.private."):
            return ("private", name.split(".")[2])
        return None

    def task_units(self, task: str) -> set[str]:
        return {task}

    def add_task(self, model: SharedModel, spec, init_from: str | None, group: str | None) -> None:
        super().add_task(model, spec, init_from, group)
        private = self._build_private(model.config)
        if init_from is not None:
            model.config.task_index(init_from)
            private.load_state_dict(self.private[init_from].state_dict())
        else:
            private.apply(model._init_weights)
        reference = next(model.encoder.parameters())
        self.private[spec.name] = private.to(device=reference.device, dtype=reference.dtype).train(model.training)

    def remove_task(self, model: SharedModel, name: str) -> None:
        del self.private[name]

    def encode(self, model: SharedModel, task_ids, encoder_inputs) -> EncodedBatch:
        outputs = run_encoder_padding_free(
            model.encoder, encoder_inputs, model.config.encoder_packing, model.config.encoder_length_buckets
        )
        shared = outputs.last_hidden_state
        embeddings = encoder_inputs.get("inputs_embeds")
        if embeddings is None:
            embeddings = model.encoder.get_input_embeddings()(encoder_inputs["input_ids"])
        mask = encoder_inputs.get("attention_mask")
        names = model.config.task_names
        pieces, losses = [], []
        for index in torch.unique(task_ids).tolist():
            rows = (task_ids == index).nonzero(as_tuple=True)[0]
            row_mask = mask[rows] if mask is not None else None
            private = self.private[names[index]](embeddings[rows], row_mask)
            pieces.append((rows, private))
            if model.training:
                losses.append(orthogonality_loss(shared[rows], private, row_mask, model.config.pooling))
        private = merge_rows(pieces, shared.shape[0]).to(shared.dtype)
        auxiliary = {"orthogonality": torch.stack(losses).mean()} if losses else None
        return EncodedBatch(
            hidden_states=torch.cat([shared, private], dim=-1),
            shared_hidden_states=shared,
            encoder_outputs=outputs,
            auxiliary_losses=auxiliary,
        )


def orthogonality_loss(shared: torch.Tensor, private: torch.Tensor, attention_mask, pooling: str) -> torch.Tensor:
    """|| S^T P ||_F^2 over the pooled, L2-normalised shared (S) and private (P) features of one task's rows."""
    s = nn.functional.normalize(pool(shared, attention_mask, pooling).float(), dim=-1)
    p = nn.functional.normalize(pool(private, attention_mask, pooling).float(), dim=-1)
    return (s.transpose(0, 1) @ p).pow(2).sum()
