"""AdaShare (Sun, Panda, Feris & Saenko, NeurIPS 2020, "AdaShare: Learning What To Share For Efficient Deep
Multi-Task Learning", arXiv:1911.12423): every task learns, for every transformer layer, whether to execute it or
skip it (the residual path alone). Tasks that execute the same layer share it; a task that skips layers runs faster.

Search phase (training, no fixed policy): each task has logits `[num_layers, 2]` (execute, skip); every forward pass
draws a hard decision per task and layer with straight-through Gumbel-softmax (`torch.nn.functional.gumbel_softmax
(hard=True)`), so the forward pass is discrete while the logits get gradients. Each row uses its task's decisions:

    h_out = h + d * (layer(h) - h),   d in {0, 1} (its gradient flows to the logits)

The temperature anneals exponentially from `initial_temperature` to `final_temperature` over the search (the paper
decays it every epoch; a smooth schedule per optimizer step is the same idea without an epoch dependency). The
paper's two regularisers are returned as auxiliary losses the trainer adds with their weights (`sparsity_weight`,
`sharing_weight`), where p[k, l] is task k's probability of executing layer l (L layers, K tasks):

    adashare_sparsity = mean over k, l of log p[k, l]                             (pushes towards skipping)
    adashare_sharing  = mean over pairs k1 < k2 and layers l of (L - l) / L * |p[k1, l] - p[k2, l]|
                                                      (lower layers agree most: they hold general features)

(means instead of the paper's sums, so the weights do not depend on the number of tasks and layers). The logits
train with their own learning rate (`policy_lr`, the paper's 0.01) and no weight decay. Deviations: weights and
policy are trained jointly on the same batches (the paper alternates them on two halves of the training data) and
there is no curriculum over the skippable layers.

Start: every layer is executed with probability `initial_execute_probability` (default 0.9: the search starts near
the pretrained network and skips what it learns to do without; with 0.5 and a short search, random skips plus the
sparsity term leave tasks skipping almost everything, which `fix_policy` warns about).

Fixed policy: at `search_steps` (or at the end of training when it is `None`) the policy becomes the argmax,
`execute = p >= 0.5`, and is written to `config.sharing_kwargs["policy"]` (`{task: [1, 0, ...]}`), so it saves and
loads with `save_pretrained` / `from_pretrained`; training after the search fine-tunes under it. Whenever the model
is not searching (evaluation, inference, a fixed policy) the decisions are deterministic and a layer runs only on the
rows whose task executes it: a one-task batch never calls the layers its task skips. The learned policy is drawn as
`adashare_policy.png` (task x layer) with `adashare_policy.json` in `output_dir`.

Implementation: each layer of the backbone's layer list is wrapped in a `SkippableLayer`
(`encoder.<layers>.<i>.block.*`, mapped to the backbone's `<layers>.<i>.*`); the policy logits are
`sharing.policy_logits.<task>`. `output_hidden_states` reports each layer's per-row output (the input itself where a
row skips the layer); `output_attentions` is not available.

Modules: `options` (the options and their checks), `policy` (the Gumbel-softmax policy's maths), `layers` (the
`SkippableLayer` wrapper), `scheme` (the registered `adashare` scheme); importing this package registers it.
"""

from __future__ import annotations

from .layers import SkippableLayer
from .options import AdaShareOptions
from .scheme import AdaShareSharing


__all__ = ["AdaShareOptions", "AdaShareSharing", "SkippableLayer"]
