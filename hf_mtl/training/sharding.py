"""Sharded training (FSDP2) through Trainer and accelerate's own FSDP support, on GPUs and on CPU processes.

Two gaps sit between accelerate and a `MultiTaskModel`, and this module closes both when the trainer builds its
`Accelerator`:

- accelerate turns FSDP on for GPU (and other accelerator) processes only; on CPU processes it silently trains plain
  DDP. PyTorch's FSDP2 (`fully_shard`) runs on CPU with gloo, so `enable_fsdp_on_cpu` sets the state accelerate sets
  on a GPU (distributed type FSDP, the plugin); accelerate's own preparation, gradient reduce-scatter and full-state
  saving then run unchanged.
- accelerate wraps every module class in the model's `_no_split_modules` (for BERT: the layers AND `BertEmbeddings`)
  and then shards the input embedding as a unit of its own, which fails when its parent was already wrapped
  (`fully_shard` sees a sharded parameter). `fsdp_wrap_classes` leaves out the classes that hold the input embedding.

Two more for multi-task training: in mixed batches every process must reduce-scatter the same heads
(`unused_head_term`), and learned task weights (uncertainty's log-variances) are optimizer parameters outside the
model, which accelerate's FSDP preparation and FSDP's optimizer checkpoint do not cover: they join the optimizer after
the preparation (`MultiTaskTrainer.create_scheduler`) and their state is saved beside FSDP's
(`without_weighting_group`, `WEIGHTING_OPTIMIZER_FILE`).
"""

from __future__ import annotations

import contextlib
import os

import torch
import torch.distributed as dist
from accelerate.state import AcceleratorState, PartialState
from accelerate.utils import DistributedType, FullyShardedDataParallelPlugin


def sharded_training(args) -> str | None:
    """"fsdp" or "deepspeed" when the arguments or the accelerate launcher ask for sharded training, else None."""
    if args.fsdp or os.environ.get("ACCELERATE_USE_FSDP", "false").lower() == "true":
        return "fsdp"
    if args.deepspeed or os.environ.get("ACCELERATE_USE_DEEPSPEED", "false").lower() == "true":
        return "deepspeed"
    return None


def fsdp_version(args) -> int:
    """The FSDP version the arguments (`fsdp_config={"version": ...}`) or the accelerate launcher ask for."""
    if args.fsdp and args.fsdp_plugin_args is not None:
        return int(args.fsdp_plugin_args.get("fsdp_version", 2))
    return int(os.environ.get("FSDP_VERSION", "1" if os.environ.get("ACCELERATE_USE_FSDP") else "2"))


def fsdp_wrap_classes(model) -> list[str]:
    """The model's no-split module classes without those that contain its input embedding (accelerate shards that
    embedding as its own unit, so a wrapped parent would shard it twice)."""
    embedding = model.get_input_embeddings()
    names = []
    for name in sorted(model._no_split_modules or []):
        modules = [m for m in model.modules() if type(m).__name__ == name]
        if modules and not any(embedding is c for m in modules for c in m.modules()):  # modules() starts with m
            names.append(name)
    return names


def prepare_fsdp_plugin(plugin: FullyShardedDataParallelPlugin, model) -> None:
    """Wrap the encoder's layers (not the embeddings' parent) unless the user named the classes to wrap."""
    if plugin.transformer_cls_names_to_wrap is None and plugin.min_num_params in (None, 0):
        plugin.transformer_cls_names_to_wrap = fsdp_wrap_classes(model) or None


def configure_fsdp(trainer) -> None:
    """Called right after the trainer built its `Accelerator`: FSDP on CPU processes, and the wrap classes."""
    if sharded_training(trainer.args) != "fsdp":
        return
    if trainer.args.device.type == "cpu":
        enable_fsdp_on_cpu(trainer.accelerator, trainer.args)
        trainer.is_fsdp_enabled = True
    plugin = getattr(trainer.accelerator.state, "fsdp_plugin", None)
    if plugin is not None:
        prepare_fsdp_plugin(plugin, trainer.model)


def unused_head_term(model, trained_tasks) -> torch.Tensor | None:
    """0 x the parameters of every head that another process trains in this micro-batch and this one does not.

    FSDP2 reduce-scatters only the parameters that received a gradient, so in mixed batches a head one process
    used and another did not would make their collectives differ. With this term in the loss, the heads trained on
    some process get a gradient (zero here) on every process, which is what DDP's all-reduce sums; heads that no
    process trained keep no gradient, so the optimizer leaves them alone, as under DDP. One small all-reduce."""
    names = model.config.task_names
    device = next(model.parameters()).device
    trained = torch.tensor([float(name in trained_tasks) for name in names], device=device)
    dist.all_reduce(trained, op=dist.ReduceOp.MAX)
    missing = [name for name, flag in zip(names, trained.tolist()) if flag and name not in trained_tasks]
    terms = [p.sum() for name in missing for p in model.heads[name].parameters() if p.requires_grad]
    return 0.0 * sum(terms) if terms else None


WEIGHTING_OPTIMIZER_FILE = "weighting_optimizer.safetensors"


def weighting_group(optimizer) -> tuple[torch.optim.Optimizer, dict | None]:
    """The torch optimizer (accelerate's AcceleratedOptimizer wraps it) and its task-weight group, if any."""
    inner = getattr(optimizer, "optimizer", optimizer)
    return inner, next((g for g in inner.param_groups if g.get("hf_mtl_weighting")), None)


@contextlib.contextmanager
def without_weighting_group(optimizer):
    """The optimizer without its task-weight group (e.g. uncertainty's log-variances) for the duration: FSDP's
    optimizer checkpoint maps every parameter to a model parameter, which these are not. Yields the group's state
    ({"<i>.<key>": tensor}, i = the parameter's position in the group, and "group.lr" / "group.initial_lr") and puts
    group and state back afterwards."""
    inner, group = weighting_group(optimizer)
    if group is None:
        yield None
        return
    position = inner.param_groups.index(group)
    inner.param_groups.remove(group)
    state = {p: inner.state.pop(p) for p in group["params"] if p in inner.state}
    flat = {f"{i}.{key}": value for i, p in enumerate(group["params"]) for key, value in state.get(p, {}).items()
            if isinstance(value, torch.Tensor)}
    # The group's scheduled learning rate too: a resumed run's first step must use it, not the initial one.
    flat.update({f"group.{key}": torch.tensor(float(group[key])) for key in ("lr", "initial_lr") if key in group})
    try:
        yield flat
    finally:
        inner.param_groups.insert(position, group)
        inner.state.update(state)


def save_weighting_optimizer_state(flat: dict[str, torch.Tensor], output_dir: str) -> None:
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in flat.items()}, os.path.join(output_dir, WEIGHTING_OPTIMIZER_FILE))


def load_weighting_optimizer_state(optimizer, checkpoint: str) -> None:
    """Restore the task-weight group's optimizer state and learning rate saved by `save_weighting_optimizer_state`."""
    from safetensors.torch import load_file

    path = os.path.join(checkpoint, WEIGHTING_OPTIMIZER_FILE)
    inner, group = weighting_group(optimizer)
    if group is None or not os.path.isfile(path):
        return
    for key, value in load_file(path).items():
        index, name = key.split(".", 1)
        if index == "group":
            group[name] = float(value)
            continue
        parameter = group["params"][int(index)]
        inner.state.setdefault(parameter, {})[name] = value.to(parameter.device)


def enable_fsdp_on_cpu(accelerator, args) -> FullyShardedDataParallelPlugin:
    """Put accelerate in the FSDP state on CPU processes, as its own `AcceleratorState` does for GPU processes
    (`distributed_type = FSDP`, the plugin, and the same type in `PartialState`, which every new `AcceleratorState`
    copies). The plugin comes from the arguments (`fsdp`, `fsdp_config`) or the launcher's environment."""
    plugin = (FullyShardedDataParallelPlugin(**args.fsdp_plugin_args) if args.fsdp and args.fsdp_plugin_args
              else FullyShardedDataParallelPlugin())
    state = accelerator.state
    if state.distributed_type not in (DistributedType.MULTI_CPU, DistributedType.FSDP):
        raise RuntimeError(f"FSDP on CPU needs several CPU processes; accelerate runs {state.distributed_type}.")
    if state.mixed_precision != "no":
        plugin.set_mixed_precision(state.mixed_precision)
    state.distributed_type = DistributedType.FSDP
    state.fsdp_plugin = plugin
    PartialState._shared_state["distributed_type"] = DistributedType.FSDP
    if not (accelerator.is_fsdp2 and AcceleratorState().distributed_type == DistributedType.FSDP):
        raise RuntimeError("This accelerate version keeps its state elsewhere: FSDP on CPU could not be enabled; "
                           "train with DDP (drop `fsdp`).")
    return plugin
