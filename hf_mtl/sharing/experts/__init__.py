"""Softmax-gated experts: MMoE (Ma et al., KDD 2018, "Modeling Task Relationships in Multi-task Learning with
Multi-gate Mixture-of-Experts") and PLE's Customized Gate Control (Tang et al., RecSys 2020, "Progressive Layered
Extraction", CGC = one PLE level).

Above the shared lower encoder sit `num_experts` experts every task can use; each task has its own softmax gate
that mixes the experts' outputs for its rows. PLE (`sharing="ple"`) adds `num_task_experts` experts per task that
only that task's gate sees, so task-specific knowledge does not have to squeeze through the shared experts (the
"seesaw" effect the paper describes). Which experts each task leans on is learned, and shown: the mean gate weights
are logged during training (`gates/<task>/expert_<i>`, i < num_experts the shared experts, then the task's own) and
drawn at the end as a task x expert heat-map, `expert_gates.png` (+ `expert_gates.json`) in `output_dir`. Under
several processes each process counts its own rows; the main process logs and draws its own (the gates' weights
themselves are synchronised like every parameter).

Experts (`expert_type`):

- `"layer"` (default): each expert is a copy of the top `num_expert_layers` transformer layers; the layers below
  are shared. Built from a backbone checkpoint, every copy starts from the backbone's own top layers (like
  hierarchical sharing), so at step 0 the model computes exactly what the backbone does. Copies that start equal
  only drift apart through dropout and the gates' different weights, so the gates move slowly at first.
- `"ffn"`: the whole encoder is shared; each expert is a residual feed-forward block on its output,
  `h + W2 gelu(W1 h)` with `W2 = 0` at the start (every expert is the identity, the backbone's features pass
  unchanged) and width `ffn_hidden_size` (default: the encoder's hidden size).

Gates: one `Linear(hidden, experts)` + softmax per task, reading the experts' *input* pooled per row as the heads
pool (`config.pooling`): one distribution per row (not per token), so a row's mixture is the same for all of its
tokens and the logged weights are per-row means. Rows of a mixed batch use their own task's gate; a mixed batch
gives the same outputs as one call per task.

With `expert_type="layer"` the experts replace the top layers in the backbone's layer list (one module holding
every copy, at `encoder.<layers>.<first expert layer>`): `output_hidden_states` reports the gate-weighted mixture
of the experts' states at each expert depth; `output_attentions` is not available (each expert attends
differently).

Modules: `options` (the options and their checks), `layers` (the experts as `nn.Module`s), `scheme` (the registered
`mmoe` / `ple` schemes: gates, forward pass, reports); importing this package registers both schemes.
"""

from __future__ import annotations

from .layers import ExpertMixtureLayer, FeedForwardExpert
from .options import EXPERT_TYPES, MMoEOptions, PLEOptions
from .scheme import MMoESharing, PLESharing


__all__ = [
    "EXPERT_TYPES",
    "ExpertMixtureLayer",
    "FeedForwardExpert",
    "MMoEOptions",
    "MMoESharing",
    "PLEOptions",
    "PLESharing",
]
