"""Checkpoints that never look complete before they are.

Trainer writes `checkpoint-N/` file by file (weights, optimizer, scheduler, RNG states, trainer state); a process
killed in the middle leaves a folder that `transformers.trainer_utils.get_last_checkpoint` happily returns and that
may even load (e.g. new weights with the previous step's optimizer). `MultiTaskTrainer` therefore writes a
completion marker, `hf_mtl_checkpoint_complete.json`, as the very last file of every checkpoint (after an `fsync`
of the others, atomically via a rename), removes it first when it re-saves into an existing folder, and resumes only
from folders whose marker is present and whose files still match it:

- `trainer.train(resume_from_checkpoint=True)` picks the newest *complete* checkpoint (a warning names the
  incomplete ones it skips);
- `trainer.train(resume_from_checkpoint="out/checkpoint-8")` refuses an incomplete folder with a
  [`CheckpointError`] that says what is missing.

The marker lists every file of the checkpoint with its size, so a file deleted or truncated afterwards is caught
too, and every `*.safetensors` file must have a readable header. (Sizes and headers cannot catch a flipped bit
inside the tensor data; safetensors has no checksum.)

On pickles: the weights and hf_mtl's own state are safetensors. Trainer's `optimizer.pt`, `scheduler.pt` and
`rng_state*.pth` are torch pickles; Transformers 5 reads them with `torch.load(weights_only=True)` (no arbitrary code
runs), and only when resuming from a checkpoint folder the user names (normally their own `output_dir`).
`training_args.bin` is written for reference and never loaded.

The trainer's checkpoint hooks (`_save`, `_save_checkpoint`, `_load_from_checkpoint`) delegate here too: what is
saved beside Trainer's files (the strategy state, `TRAINER_STATE_FILE`; the model card; the arguments without the
Hub token), in which order, and what a resume checks before it loads.
"""

from __future__ import annotations

import copy
import json
import os
import re
from collections.abc import Callable

import torch
from safetensors import safe_open
from transformers.utils import logging

from ..errors import CheckpointError


logger = logging.get_logger(__name__)

COMPLETE_MARKER = "hf_mtl_checkpoint_complete.json"
TRAINER_STATE_FILE = "hf_mtl_trainer_state.safetensors"
_CHECKPOINT_DIR = re.compile(r"^checkpoint-(\d+)$")
_FORMAT = 1


def _fsync(path: str, directory: bool = False) -> None:
    """Flush a file (or a directory entry) to disk, so the marker never reaches the disk before the data it vouches
    for (after a power loss, not just a killed process). Best effort on filesystems that refuse it."""
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _checkpoint_files(path: str) -> dict[str, int]:
    files = {}
    for root, _, names in os.walk(path):
        for name in names:
            if name.startswith(COMPLETE_MARKER):
                continue
            full = os.path.join(root, name)
            files[os.path.relpath(full, path)] = os.path.getsize(full)
    return dict(sorted(files.items()))


def clear_checkpoint_marker(path: str | os.PathLike) -> None:
    """Mark `path` incomplete (before writing into it again)."""
    marker = os.path.join(path, COMPLETE_MARKER)
    if os.path.exists(marker):
        os.remove(marker)
        _fsync(str(path), directory=True)


def mark_checkpoint_complete(path: str | os.PathLike, global_step: int | None = None) -> None:
    """Write the completion marker of a fully written checkpoint folder (the trainer calls this last).

    Also the explicit way to vouch for a folder written by other means (e.g. a plain `Trainer` checkpoint you know
    is complete) before resuming from it with `MultiTaskTrainer`.
    """
    path = str(path)
    files = _checkpoint_files(path)
    for name in files:
        _fsync(os.path.join(path, name))
    _fsync(path, directory=True)
    marker = os.path.join(path, COMPLETE_MARKER)
    temporary = marker + ".tmp"
    with open(temporary, "w", encoding="utf-8") as handle:
        json.dump({"format": _FORMAT, "global_step": global_step, "files": files}, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, marker)  # atomic: the marker is either absent or whole
    _fsync(path, directory=True)


def checkpoint_problems(path: str | os.PathLike) -> list[str]:
    """Why `path` is not a complete checkpoint (an empty list when it is)."""
    path = str(path)
    if not os.path.isdir(path):
        return [f"{path} is not a directory"]
    marker = os.path.join(path, COMPLETE_MARKER)
    if not os.path.isfile(marker):
        return [
            f"it has no {COMPLETE_MARKER}: it was interrupted while being written (the marker is its last file), "
            "or it was not written by MultiTaskTrainer"
        ]
    try:
        with open(marker, encoding="utf-8") as handle:
            recorded = json.load(handle)["files"]
    except (OSError, ValueError, KeyError, TypeError) as error:
        return [f"its {COMPLETE_MARKER} is unreadable ({error})"]
    problems = []
    for name, size in recorded.items():
        full = os.path.join(path, name)
        if not os.path.isfile(full):
            problems.append(f"{name} is missing")
        elif os.path.getsize(full) != size:
            problems.append(f"{name} has {os.path.getsize(full)} bytes, {size} when the checkpoint was completed")
        elif name.endswith(".safetensors"):
            try:
                with safe_open(full, framework="pt"):
                    pass
            except Exception as error:  # SafetensorError and OSError: either way the file is unusable
                problems.append(f"{name} is not a readable safetensors file ({error})")
    return problems


def is_complete_checkpoint(path: str | os.PathLike) -> bool:
    return not checkpoint_problems(path)


def verify_checkpoint(path: str | os.PathLike) -> None:
    """Raise [`CheckpointError`] unless `path` is a complete checkpoint."""
    problems = checkpoint_problems(path)
    if problems:
        raise CheckpointError(
            f"Cannot resume from {str(path)!r}: " + "; ".join(problems) + ". Resume from an earlier checkpoint "
            "(`resume_from_checkpoint=True` picks the newest complete one). If you know this folder is complete "
            "(e.g. written by a plain Trainer), vouch for it with `hf_mtl.training.checkpointing.mark_checkpoint_complete(path)`."
        )


def _checkpoints_newest_first(folder: str) -> list[str]:
    if not os.path.isdir(folder):
        return []
    found = []
    for name in os.listdir(folder):
        match = _CHECKPOINT_DIR.match(name)
        if match and os.path.isdir(os.path.join(folder, name)):
            found.append((int(match.group(1)), os.path.join(folder, name)))
    return [path for _, path in sorted(found, reverse=True)]


def get_last_complete_checkpoint(folder: str | os.PathLike) -> str | None:
    """The newest `checkpoint-N` folder of `folder` that is complete (`None` if there is none): the safe
    counterpart of `transformers.trainer_utils.get_last_checkpoint`. Newer incomplete folders are skipped with a
    warning that says why."""
    for path in _checkpoints_newest_first(str(folder)):
        problems = checkpoint_problems(path)
        if not problems:
            return path
        logger.warning(f"Skipping incomplete checkpoint {path}: {'; '.join(problems)}.")
    return None


def resolve_resume_checkpoint(output_dir: str | os.PathLike) -> str:
    """What `resume_from_checkpoint=True` means for a `MultiTaskTrainer`: the newest complete checkpoint."""
    path = get_last_complete_checkpoint(output_dir)
    if path is None:
        others = _checkpoints_newest_first(str(output_dir))
        detail = f" (incomplete: {', '.join(os.path.basename(p) for p in others)})" if others else ""
        raise CheckpointError(
            f"No complete checkpoint to resume from in {str(output_dir)!r}{detail}. Train from the start "
            "(`resume_from_checkpoint=None`), or pass the path of a checkpoint."
        )
    return path


def verify_checkpoint_tasks(path: str | os.PathLike, config) -> None:
    """Raise [`CheckpointError`] when the checkpoint's model config has other tasks than `config` (a resume would
    otherwise load the shared encoder and silently leave mismatched heads as they are)."""
    config_file = os.path.join(path, "config.json")
    if not os.path.isfile(config_file):
        return
    with open(config_file, encoding="utf-8") as handle:
        saved = json.load(handle).get("tasks")
    if saved is None:
        return

    def signature(tasks):
        return [(t["name"], t["type"], tuple(t.get("labels") or ())) for t in tasks]

    if signature(saved) != signature(config.tasks):
        raise CheckpointError(
            f"Cannot resume from {str(path)!r}: it was trained on tasks {signature(saved)}, but this model has "
            f"{signature(config.tasks)}. Resume with the model the checkpoint belongs to, or start a new run from "
            "its weights (`MultiTaskModel.from_pretrained(path)`, then `add_task`/`remove_task`)."
        )


def load_multitask_state_file(path: str | os.PathLike, expected: dict[str, str]) -> dict:
    """The tensors of a trainer-state file, after checking that it was written for the same weighting, sampling and
    tasks (`expected`, as written in its safetensors metadata)."""
    from safetensors.torch import load_file

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        state = load_file(str(path))
    except Exception as error:
        raise CheckpointError(f"{str(path)!r} is not a readable safetensors file ({error}).") from error
    different = {key: (metadata[key], value) for key, value in expected.items() if key in metadata and metadata[key] != value}
    if different:
        detail = ", ".join(f"{key}: checkpoint {old!r}, now {new!r}" for key, (old, new) in different.items())
        raise CheckpointError(
            f"Cannot resume from {os.path.dirname(str(path))!r}: its multi-task training state belongs to another "
            f"setup ({detail}). Resume with the same settings, or start a new run."
        )
    return state


# ---------------------------------------------------------------------------- the trainer's checkpoint hooks


def strategy_state_dict(weighting, sampler) -> dict[str, torch.Tensor]:
    """Weighting and sampler state (tensors only, saved with safetensors in every checkpoint)."""
    state = {f"weighting.{k}": v.detach().cpu().contiguous() for k, v in weighting.state_dict().items()}
    if sampler is not None:
        state.update({f"sampler.{k}": v.detach().cpu().contiguous() for k, v in sampler.state_dict().items()})
    return state


def load_strategy_state_dict(state: dict[str, torch.Tensor], weighting, sampler) -> None:
    """Restore what `strategy_state_dict` saved."""
    weighting_state = {k[len("weighting.") :]: v for k, v in state.items() if k.startswith("weighting.")}
    sampler_state = {k[len("sampler.") :]: v for k, v in state.items() if k.startswith("sampler.")}
    weighting.load_state_dict(weighting_state)
    if sampler is not None:
        sampler.load_state_dict(sampler_state)


def save_beside_weights(trainer, output_dir: str | None) -> None:
    """After Trainer's `_save` (weights, config, tokenizer; for `save_model` and every checkpoint alike), on the
    process that saves: `training_args.bin` again without the Hub token (the folder may be pushed), and the card."""
    if not trainer.args.should_save:
        return
    output_dir = output_dir if output_dir is not None else trainer.args.output_dir
    if trainer.args.hub_token is not None:
        safe_args = copy.copy(trainer.args)
        safe_args.hub_token = None
        torch.save(safe_args, os.path.join(output_dir, "training_args.bin"))
    trainer.write_model_card(output_dir)


def save_complete_checkpoint(trainer, trial, save: Callable[[], None]) -> None:
    """`trainer._save_checkpoint`: `save` (Trainer's own) writes the checkpoint's files, then the strategy state and,
    once every process is done, the completion marker. Pushing it and rotating older checkpoints out happen only once
    it is complete: a crash never leaves no complete checkpoint, and a pushed checkpoint carries the strategy state
    and the marker."""
    from safetensors.torch import save_file
    from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints  # loads peft: not at import

    args = trainer.args
    run_dir = trainer._get_output_dir(trial=trial)
    output_dir = os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}")
    if args.should_save:
        clear_checkpoint_marker(output_dir)  # re-saving into an existing folder: incomplete until the end
    limit, push = args.save_total_limit, args.push_to_hub
    args.save_total_limit, args.push_to_hub = None, False
    try:
        save()
    finally:
        args.save_total_limit, args.push_to_hub = limit, push
    if args.should_save and os.path.isdir(output_dir):
        state_file = os.path.join(output_dir, TRAINER_STATE_FILE)
        save_file(trainer.multitask_state_dict(), state_file, trainer._state_metadata())
    trainer.accelerator.wait_for_everyone()  # every process's rng_state_<rank>.pth is written
    if args.should_save and os.path.isdir(output_dir):
        mark_checkpoint_complete(output_dir, trainer.state.global_step)
    if push:
        trainer._push_from_checkpoint(output_dir)
    if args.should_save:
        rotate_checkpoints(run_dir, limit, trainer.state.best_model_checkpoint, use_mtime=True)


def load_checkpoint(trainer, resume_from_checkpoint: str, load: Callable[[], None]) -> None:
    """`trainer._load_from_checkpoint`: refuse an incomplete checkpoint or one of other tasks, `load` (Trainer's own),
    then restore the strategy state (required when the weighting has state, so the resumed run continues exactly)."""
    verify_checkpoint(resume_from_checkpoint)
    verify_checkpoint_tasks(resume_from_checkpoint, trainer.model.config)
    load()
    path = os.path.join(resume_from_checkpoint, TRAINER_STATE_FILE)
    if os.path.isfile(path):
        trainer.load_multitask_state_dict(load_multitask_state_file(path, trainer._state_metadata()))
    elif len(trainer.weighting.state_dict()):
        raise FileNotFoundError(
            f"{resume_from_checkpoint} has no {TRAINER_STATE_FILE}: the {trainer.args.weighting!r} weighting state "
            "cannot be restored, so the resumed run would not continue exactly. Resume from a checkpoint written "
            "by MultiTaskTrainer."
        )
