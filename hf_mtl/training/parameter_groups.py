"""Optimizer parameter groups the trainer adds to Trainer's: the sharing scheme's own groups and the heads'
multiplied learning rate. Groups are tagged (`hf_mtl_sharing`, `hf_mtl_heads`) so a resumed optimizer is not split twice."""

from __future__ import annotations


def add_sharing_parameter_groups(optimizer, model, learning_rate: float) -> None:
    """Parameters the sharing scheme trains with their own learning rate (`lr`, or `lr_multiplier` times the trainer's)
    / without weight decay (AdaShare's policy logits, LoRA adapters) leave Trainer's default groups for a group of
    their own."""
    groups = model.sharing.optimizer_parameter_groups(model)
    if not groups or any(group.get("hf_mtl_sharing") for group in optimizer.param_groups):
        return
    moved = {id(p) for group in groups for p in group["params"]}
    for group in optimizer.param_groups:
        group["params"] = [p for p in group["params"] if id(p) not in moved]
    for group in groups:
        group = dict(group)
        multiplier = group.pop("lr_multiplier", 1.0)  # a rate relative to the trainer's (e.g. LoRA adapters' x10)
        lr = group.get("lr") if group.get("lr") is not None else learning_rate * multiplier
        optimizer.add_param_group({**group, "lr": lr, "hf_mtl_sharing": True})


def add_head_parameter_groups(optimizer, model, multiplier: float) -> None:
    """`head_lr_multiplier`: the heads' and task embeddings' parameters leave Trainer's groups for copies of them
    (same weight decay) whose learning rate is multiplied; the scheduler scales every group alike."""
    if multiplier == 1.0 or any(group.get("hf_mtl_heads") for group in optimizer.param_groups):
        return
    head_ids = {id(p) for name, p in model.named_parameters() if name.startswith(("heads.", "task_embedding."))}
    for group in list(optimizer.param_groups):
        if group.get("hf_mtl_weighting") or group.get("hf_mtl_sharing"):
            continue
        heads = [p for p in group["params"] if id(p) in head_ids]
        if heads:
            group["params"] = [p for p in group["params"] if id(p) not in head_ids]
            options = {key: value for key, value in group.items() if key != "params"}
            optimizer.add_param_group({**options, "params": heads, "lr": group["lr"] * multiplier, "hf_mtl_heads": True})
