"""The things being compared ("arms"): models and trainers built the same way for every measurement, and the
callback that times their steps.

Training arms (same rows, batch size, sequence length and optimizer everywhere):

- `hf_model`: plain `transformers.Trainer` + `AutoModelForSequenceClassification` on the backbone, with
  `DataCollatorWithPadding`: what a Transformers user runs for one task.
- `hf_trainer`: plain `Trainer` + the one-task `MultiTaskModel` (a standard collator that adds `task=`): the same
  model as `mtl_trainer`, so `mtl_trainer / hf_trainer` isolates the cost of `MultiTaskTrainer`'s machinery.
- `mtl_trainer`: `MultiTaskTrainer` + the same one-task `MultiTaskModel`, static weighting.
- `mtl_<weighting>`: `MultiTaskTrainer` on K tasks, mixed batches (every step sees every task, as gradient
  surgery needs), with that weighting strategy.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoModelForTokenClassification,
    AutoTokenizer,
    DataCollatorWithPadding,
    PrinterCallback,
    Trainer,
    TrainerCallback,
    TrainingArguments,
    set_seed,
)

from hf_mtl import MultiTaskCollator, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, TaskSpec
from hf_mtl.data import preprocess_task

from .common import median
from .data import benchmark_tasks


@dataclass
class BenchContext:
    """What the measurements share within one run: settings, backbone, tokenizer, tokenised data, built models."""

    settings: object
    backbone: str
    workdir: Path
    tokenizer: object = None
    specs: list[dict] = field(default_factory=list)
    datasets: dict = field(default_factory=dict)
    models: dict = field(default_factory=dict)
    runs: dict = field(default_factory=dict)  # arm name -> list of run records, reused by later measurements

    @classmethod
    def create(cls, settings, backbone: str, workdir: Path, one_task: bool = False) -> BenchContext:
        """Tokenise the benchmark tasks (only the first with `one_task`, for a worker that trains one task)."""
        context = cls(settings=settings, backbone=backbone, workdir=workdir)
        context.tokenizer = AutoTokenizer.from_pretrained(backbone)
        context.specs, raw = benchmark_tasks(settings)
        context.specs = context.specs[:1] if one_task else context.specs
        context.datasets = {
            spec["name"]: preprocess_task(raw[spec["name"]], TaskSpec.from_any(spec), context.tokenizer, settings.seq_len)
            for spec in context.specs
        }
        return context

    @property
    def first_task(self) -> str:
        return self.specs[0]["name"]

    def model(self, kind: str):
        """Build once, reuse across repeats (the weights keep training; step costs do not depend on them)."""
        if kind not in self.models:
            set_seed(self.settings.seed)
            if kind == "hf_model":
                self.models[kind] = hf_model(self.backbone, self.specs[0])
            elif kind == "mtl_1":
                self.models[kind] = MultiTaskModel.from_backbone(self.backbone, self.specs[:1])
            elif kind == "mtl_k":
                self.models[kind] = MultiTaskModel.from_backbone(self.backbone, self.specs)
            else:
                raise KeyError(kind)
        return self.models[kind]


def hf_model(backbone: str, spec: dict):
    """The plain Transformers model for one task spec (what a single-task user would fine-tune)."""
    labels = spec.get("labels") or []
    if spec["type"] == "token_classification":
        return AutoModelForTokenClassification.from_pretrained(backbone, num_labels=len(labels))
    if spec["type"] == "regression":
        return AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=1, problem_type="regression")
    problem = "multi_label_classification" if spec["type"] == "multi_label_classification" else "single_label_classification"
    return AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=len(labels), problem_type=problem)


def common_arguments(settings, output_dir: Path, max_steps: int) -> dict:
    return dict(
        output_dir=str(output_dir),
        per_device_train_batch_size=settings.batch_size,
        max_steps=max_steps,
        learning_rate=2e-5,
        logging_steps=500,  # Trainer's default: no log inside the timed window of either arm
        save_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=settings.seed,
        data_seed=settings.seed,
        use_cpu=settings.device == "cpu",
        bf16=settings.bf16,
        dataloader_num_workers=0,
    )


class _TaskCollator:
    """`DataCollatorWithPadding` plus the `task=` argument a `MultiTaskModel` needs."""

    def __init__(self, tokenizer, task: str, seq_len: int):
        self.pad = DataCollatorWithPadding(tokenizer, pad_to_multiple_of=seq_len)
        self.task = task

    def __call__(self, features):
        return {**self.pad(features), "task": self.task}


# Arms `mtl_<variant>` of a weighting with other options than its defaults.
WEIGHTING_VARIANTS = {"famo_next_step": ("famo", {"update": "next_step"})}


def build_trainer(context: BenchContext, arm: str, max_steps: int, **overrides) -> Trainer:
    """A fresh trainer of `arm` (see the module docstring) that trains `max_steps` optimizer steps."""
    settings, tokenizer = context.settings, context.tokenizer
    output_dir = context.workdir / "trainer"
    arguments = {**common_arguments(settings, output_dir, max_steps), **overrides}
    first = context.first_task
    if arm == "hf_model":
        return Trainer(model=context.model("hf_model"), args=TrainingArguments(**arguments),
                       train_dataset=context.datasets[first], processing_class=tokenizer,
                       data_collator=DataCollatorWithPadding(tokenizer, pad_to_multiple_of=settings.seq_len))
    if arm == "hf_trainer":
        return Trainer(model=context.model("mtl_1"), args=TrainingArguments(**arguments),
                       train_dataset=context.datasets[first], processing_class=tokenizer,
                       data_collator=_TaskCollator(tokenizer, first, settings.seq_len))
    if arm == "mtl_trainer":
        specs, model, batching, weighting = context.specs[:1], context.model("mtl_1"), "per_task", "static"
    elif arm.startswith("mtl_"):
        specs, model, batching, weighting = context.specs, context.model("mtl_k"), "mixed", arm[len("mtl_"):]
    else:
        raise KeyError(f"Unknown arm {arm!r}.")
    weighting, weighting_kwargs = WEIGHTING_VARIANTS.get(weighting, (weighting, {}))
    args = MultiTaskTrainingArguments(**arguments, max_seq_length=settings.seq_len, batching=batching, weighting=weighting,
                                      weighting_kwargs=weighting_kwargs)
    return MultiTaskTrainer(
        model=model, args=args, processing_class=tokenizer,
        train_dataset={spec["name"]: context.datasets[spec["name"]] for spec in specs},
        data_collator=MultiTaskCollator(tokenizer, [TaskSpec.from_any(s) for s in specs], pad_to_multiple_of=settings.seq_len),
    )


# ---------------------------------------------------------------------------------------------- timing


def _synchronize() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class StepTimer(TrainerCallback):
    """Per optimizer step: `interval` (end of the previous step to end of this one: everything the user waits for),
    `compute` (`on_step_begin` -> `on_step_end`: forward, backward, optimizer), `data` (fetching the step's batches:
    sampling, reading rows, collation), `collate` (the collator alone) and `backward` (backward passes through the
    encoder, counted by a gradient hook on the input embeddings). `cpu` is the process's CPU time over `interval`:
    on a machine shared with other jobs it varies far less than wall time (time spent waiting for a core is not in
    it), so its ratios cross-check the wall-time ones."""

    def __init__(self, trainer: Trainer):
        self.records: list[dict] = []
        self._data = self._collate = 0.0
        self._backward = 0
        self._last_end = self._begin = self._last_cpu = None
        get_batch_samples, collator = trainer.get_batch_samples, trainer.data_collator

        def timed_batch_samples(*args, **kwargs):
            start = time.perf_counter()
            result = get_batch_samples(*args, **kwargs)
            self._data += time.perf_counter() - start
            return result

        def timed_collate(features):
            start = time.perf_counter()
            result = collator(features)
            self._collate += time.perf_counter() - start
            return result

        trainer.get_batch_samples = timed_batch_samples
        trainer.data_collator = timed_collate
        embeddings = trainer.model.get_input_embeddings().weight
        self._hook = embeddings.register_hook(self._count_backward)
        trainer.add_callback(self)

    def _count_backward(self, grad):
        self._backward += 1
        return grad

    def on_train_begin(self, args, state, control, **kwargs):
        self._last_end, self._last_cpu = time.perf_counter(), time.process_time()

    def on_step_begin(self, args, state, control, **kwargs):
        _synchronize()
        self._begin = time.perf_counter()

    def on_step_end(self, args, state, control, **kwargs):
        _synchronize()
        now, cpu = time.perf_counter(), time.process_time()
        self.records.append({
            "interval": now - self._last_end, "compute": now - self._begin, "cpu": cpu - self._last_cpu,
            "data": self._data, "collate": self._collate, "backward": self._backward,
        })
        self._last_end, self._last_cpu = now, cpu
        self._data = self._collate = 0.0
        self._backward = 0

    def on_train_end(self, args, state, control, **kwargs):
        self._hook.remove()


def summarize(records: list[dict], warmup: int, samples_per_step: int) -> dict:
    """Medians over the timed steps (the first `warmup` steps are dropped: lazy set-up, first-touch allocations)."""
    timed = records[warmup:] or records[-1:]
    total = sum(r["interval"] for r in timed)
    return {
        "steps": len(timed),
        "step_time": median(r["interval"] for r in timed),
        "compute_time": median(r["compute"] for r in timed),
        "cpu_time": median(r["cpu"] for r in timed),
        "data_share": sum(r["data"] for r in timed) / total if total else None,
        "collate_share": sum(r["collate"] for r in timed) / total if total else None,
        "backward_passes": median(r["backward"] for r in timed),
        "samples_per_second": samples_per_step * len(timed) / total if total else None,
        "step_times": [round(r["interval"], 5) for r in timed],
    }


def run_training(context: BenchContext, arm: str, steps: int, warmup: int | None = None, **overrides) -> dict:
    """Train `warmup + steps` steps of a fresh `arm` trainer; the timing summary of the `steps` timed ones."""
    warmup = context.settings.warmup_steps if warmup is None else warmup
    trainer = build_trainer(context, arm, warmup + steps, **overrides)
    trainer.remove_callback(PrinterCallback)  # `disable_tqdm` prints every log dict instead; the benchmark logs its own
    timer = StepTimer(trainer)
    trainer.train()
    record = summarize(timer.records, warmup, context.settings.batch_size * trainer.args.world_size)
    context.runs.setdefault(arm, []).append(record)
    return record
