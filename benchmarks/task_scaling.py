"""How step time and peak memory of multi-task training grow with the number of tasks K (2, 4, 8, 16, 32).

Why: a multi-task step should cost the same whatever K is when the strategy needs one backward pass (loss
weightings, `rep_norm`'s small per-head backwards, mixed batches of a fixed size); only gradient surgery (one
backward through the encoder per task present in the step) should grow, up to the number of rows in a batch.

How: K generated tasks, cycling over the four head types that can share a mixed batch (sequence classification,
token classification, regression, multi-label), each a reshuffled copy of a `benchmarks.data` task under its own
name and head, 256 rows each (a mixed batch of 16 rows can hold 16 different tasks). Every (K, arm) runs in a FRESH
process (`--worker`): peak RSS only grows within a process. The worker builds a new `MultiTaskModel` and
`MultiTaskTrainer`, trains warm-up + timed steps, and prints one JSON line: the per-step times measured by
`arms.StepTimer` (end of one optimizer step to the end of the next: data, forward, backward, optimizer), the
backward passes through the encoder it counted, and its peak RSS (`VmHWM`, see `common.peak_rss_mb`; `ru_maxrss`
is recorded beside it). Arms run in alternating order from one K to the next. Flatness goal: step time at the
largest K / at the smallest K <= 1.2 for per-task batching and for mixed batching with `static` and `rep_norm`.

    python -m benchmarks.task_scaling [--model minilm|tiny] [--ks 2,4,8,16,32] [--steps 8] [--warmup 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import ROOT, interleaved, load_average, log


ARMS = {  # name -> (batching, weighting)
    "per_task_static": ("per_task", "static"),
    "mixed_static": ("mixed", "static"),
    "mixed_rep_norm": ("mixed", "rep_norm"),
    "mixed_pcgrad": ("mixed", "pcgrad"),
}
FLAT_ARMS = ["per_task_static", "mixed_static", "mixed_rep_norm"]
FLAT_LIMIT = 1.2
DEFAULT_OUTPUT = str(Path(__file__).resolve().parent / "results" / "task_scaling")
TIMEOUT = 3600


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.task_scaling", description=__doc__.split("\n")[0])
    parser.add_argument("--model", default="minilm", help="minilm (default), tiny (random 2-layer BERT), or a path.")
    parser.add_argument("--ks", default="2,4,8,16,32", help="Numbers of tasks, comma-separated.")
    parser.add_argument("--steps", type=int, default=8, help="Timed optimizer steps per run.")
    parser.add_argument("--warmup", type=int, default=2, help="Warm-up steps per run (not timed).")
    parser.add_argument("--pcgrad-steps", type=int, default=3, help="Timed steps of mixed_pcgrad for K >= 16.")
    for name, default in (("--batch-size", 16), ("--seq-len", 32), ("--seed", 0)):
        parser.add_argument(name, type=int, default=default)
    parser.add_argument("--threads", type=int, help="torch intra-op threads in each worker (default: torch's).")
    parser.add_argument("--output-dir", default=DEFAULT_OUTPUT)
    parser.add_argument("--worker", choices=list(ARMS), help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    return parser


def timed_steps(args, arm: str, k: int) -> int:
    return min(args.steps, args.pcgrad_steps) if arm == "mixed_pcgrad" and k >= 16 else args.steps


# ---------------------------------------------------------------------------------------------- worker


def k_tasks(k: int, tokenizer, seq_len: int, seed: int) -> tuple[list[dict], dict]:
    """K specs and tokenised datasets: task i is a reshuffled copy of generated task i mod 4, named `<base>_<i>`."""
    from hf_mtl import TaskSpec
    from hf_mtl.data import preprocess_task

    from .data import GENERATED_TASKS, generated_tasks

    bases, raw = generated_tasks(len(GENERATED_TASKS), seq_len, seed)
    encoded = {s["name"]: preprocess_task(raw[s["name"]], TaskSpec.from_any(s), tokenizer, seq_len) for s in bases}
    specs, datasets = [], {}
    for i in range(k):
        base = bases[i % len(bases)]
        spec = {**base, "name": f"{base['name']}_{i:02d}"}
        specs.append(spec)
        datasets[spec["name"]] = encoded[base["name"]].shuffle(seed=seed + i)
    return specs, datasets


def worker(args) -> dict:
    import torch
    from transformers import AutoTokenizer, PrinterCallback, set_seed

    from hf_mtl import MultiTaskCollator, MultiTaskModel, MultiTaskTrainer, MultiTaskTrainingArguments, TaskSpec

    from .arms import StepTimer, common_arguments, summarize
    from .common import current_rss_mb, device_and_dtype, environment, peak_rss_mb, quiet

    quiet()
    if args.threads:
        torch.set_num_threads(args.threads)
    device, bf16 = device_and_dtype()
    settings = argparse.Namespace(batch_size=args.batch_size, seed=args.seed, device=device, bf16=bf16)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    specs, datasets = k_tasks(args.k, tokenizer, args.seq_len, args.seed)
    set_seed(args.seed)
    model = MultiTaskModel.from_backbone(args.model, specs)
    rss_before = current_rss_mb()
    batching, weighting = ARMS[args.worker]
    steps = timed_steps(args, args.worker, args.k)
    arguments = common_arguments(settings, Path(args.workdir) / "trainer", args.warmup + steps)
    training_args = MultiTaskTrainingArguments(**arguments, max_seq_length=args.seq_len, batching=batching,
                                               weighting=weighting)
    collator = MultiTaskCollator(tokenizer, [TaskSpec.from_any(s) for s in specs], pad_to_multiple_of=args.seq_len)
    trainer = MultiTaskTrainer(model=model, args=training_args, processing_class=tokenizer, train_dataset=datasets,
                               data_collator=collator)
    trainer.remove_callback(PrinterCallback)
    timer = StepTimer(trainer)
    trainer.train()
    record = summarize(timer.records, args.warmup, args.batch_size)
    return {"k": args.k, "arm": args.worker, "pid": os.getpid(), "batching": batching, "weighting": weighting,
            "threads": torch.get_num_threads(), "peak_rss_mb": peak_rss_mb(),
            "ru_maxrss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "rss_before_training_mb": rss_before, **record, "environment": environment(settings)}


# ---------------------------------------------------------------------------------------------- parent


def launch(args, backbone: str, arm: str, k: int, workdir: Path) -> dict:
    """Run one (K, arm) in a fresh interpreter; its result is the last JSON line it prints on stdout."""
    command = [sys.executable, "-m", "benchmarks.task_scaling", "--worker", arm, "--k", str(k), "--model", backbone,
               "--steps", str(args.steps), "--warmup", str(args.warmup), "--pcgrad-steps", str(args.pcgrad_steps),
               "--batch-size", str(args.batch_size), "--seq-len", str(args.seq_len), "--seed", str(args.seed),
               "--workdir", str(workdir / f"{arm}-{k}")]
    if args.threads:
        command += ["--threads", str(args.threads)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise RuntimeError(f"worker {arm} K={k} failed (rc={result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(lines[-1])


def flatness(results: dict, ks: list[int]) -> dict:
    """Step time at the largest K / at the smallest K, per arm (goal <= FLAT_LIMIT for the FLAT_ARMS); CPU time (which
    hardly moves when other jobs compete for the cores) and peak RSS ratios beside it."""
    low, high = str(min(ks)), str(max(ks))
    rows = {}
    for arm in ARMS:
        a, b = results.get(high, {}).get(arm, {}), results.get(low, {}).get(arm, {})
        ratio, cpu, rss = (round(a[key] / b[key], 4) if a.get(key) and b.get(key) else None
                           for key in ("step_time", "cpu_time", "peak_rss_mb"))
        status = "reported" if arm not in FLAT_ARMS else "not measured" if ratio is None else (
            "met" if ratio <= FLAT_LIMIT else "MISSED")
        rows[arm] = {"ratio": ratio, "cpu_time_ratio": cpu, "peak_rss_ratio": rss, "from_k": int(low),
                     "to_k": int(high), "limit": FLAT_LIMIT if arm in FLAT_ARMS else None, "status": status}
    return rows


def markdown(report: dict) -> str:
    s, env, ks = report["settings"], report["environment"], report["settings"]["ks"]
    lines = ["# Multi-task step time and peak memory against the number of tasks K", "",
             f"- Backbone `{s['model']}`, batch {s['batch_size']} x {s['seq_len']} tokens, generated tasks, seed "
             f"{s['seed']}; median of {s['steps']} timed steps after {s['warmup']} warm-up (mixed_pcgrad: "
             f"{s['pcgrad_steps']} timed steps for K >= 16, marked *); each cell a fresh process",
             f"- {env.get('cpu_count')} CPU cores, torch threads {env.get('torch_threads')}; load average "
             f"{env.get('load_average_start')} at start, {env.get('load_average_end')} at end; "
             f"{report['duration_seconds']} s; `{env['command']}`",
             f"- torch {env.get('torch')}, transformers {env.get('transformers')}, hf_mtl {env.get('hf_mtl')} (commit "
             f"{env.get('git_commit')}), {env.get('date')}", "",
             "| K | " + " | ".join(ARMS) + " |", "|---:|" + "---|" * len(ARMS)]
    for k in ks:
        cells = []
        for arm in ARMS:
            run = report["results"].get(str(k), {}).get(arm)
            if not run or "error" in run:
                cells.append("failed" if run else "-")
                continue
            mark = "*" if arm == "mixed_pcgrad" and run["steps"] < s["steps"] else ""
            cells.append(f"{run['step_time']:.3f} s{mark}, {run['peak_rss_mb']:.0f} MiB "
                         f"({run['backward_passes']:g} bw)")
        lines.append(f"| {k} | " + " | ".join(cells) + " |")
    lines += ["", "Cells: median s/step, peak RSS, backward passes through the encoder per step.", "",
              f"Flatness, step time at K={max(ks)} / K={min(ks)} (goal <= {FLAT_LIMIT} for one-backward arms):", ""]
    for arm, row in report["flatness"].items():
        value = "n/a" if row["ratio"] is None else f"{row['ratio']:.3f}x"
        lines.append(f"- {arm}: {value}: {row['status']} (CPU time {row['cpu_time_ratio']}x, peak RSS "
                     f"{row['peak_rss_ratio']}x)")
    if report["errors"]:
        errors = report["errors"]
        lines += ["", "Errors: " + "; ".join(f"{key}: {text.strip().splitlines()[-1]}" for key, text in errors.items())]
    return "\n".join(lines) + "\n"


def plot(report: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s, ks = report["settings"], report["settings"]["ks"]
    figure, axes = plt.subplots(1, 2, figsize=(10.4, 3.8))
    for axis, key, ylabel in ((axes[0], "step_time", "s / optimizer step"), (axes[1], "peak_rss_mb", "peak RSS (MiB)")):
        for arm in ARMS:
            points = [(k, report["results"].get(str(k), {}).get(arm, {}).get(key)) for k in ks]
            points = [(k, v) for k, v in points if v is not None]
            if points:
                axis.plot([p[0] for p in points], [p[1] for p in points], marker="o", ms=4, label=arm)
        axis.set_xscale("log", base=2)
        axis.set_xticks(ks, [str(k) for k in ks])
        if key == "step_time":
            axis.set_yscale("log")
        axis.set_xlabel("number of tasks K")
        axis.set_ylabel(ylabel)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    axes[0].set_title("Step time vs K")
    axes[1].set_title("Peak memory vs K")
    figure.suptitle(f"{s['model']}, batch {s['batch_size']} x {s['seq_len']} tokens (each point a fresh process)")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return 0
    ks = sorted({int(k) for k in args.ks.split(",")})
    if min(ks) < 1 or args.steps < 1 or args.warmup < 0 or args.pcgrad_steps < 1:
        raise SystemExit("--ks must be >= 1, --steps and --pcgrad-steps >= 1, --warmup >= 0.")
    from .common import resolve_backbone

    start, out = time.time(), Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    load_start, results, errors = load_average(), {}, {}
    with tempfile.TemporaryDirectory(prefix="hf_mtl_task_scaling-") as tmp:
        backbone = resolve_backbone(args.model, Path(tmp))
        for index, k in enumerate(ks):
            for arm in interleaved(list(ARMS), index):
                try:
                    run = launch(args, backbone, arm, k, Path(tmp))
                except Exception as error:  # one failed run must not lose the others
                    errors[f"{arm} K={k}"] = str(error)
                    run = {"error": str(error)}
                else:
                    log(f"K={k} {arm}: {run['step_time']:.3f} s/step, {run['peak_rss_mb']:.0f} MiB, "
                        f"{run['backward_passes']:g} backward/step")
                results.setdefault(str(k), {})[arm] = run
    # Versions and threads as the workers saw them (the parent only starts them); the load as the parent saw it.
    environments = [run.pop("environment", None) for runs in results.values() for run in runs.values()]
    env = next((found for found in environments if found), {})
    env.update(load_average_start=load_start, load_average_end=load_average(),
               command=" ".join(["python", "-m", "benchmarks.task_scaling", *(sys.argv[1:] if argv is None else argv)]))
    settings = {key: value for key, value in vars(args).items() if key not in ("worker", "k", "workdir")}
    report = {"settings": {**settings, "ks": ks}, "environment": env, "results": results, "errors": errors,
              "duration_seconds": round(time.time() - start, 1)}
    report["flatness"] = flatness(results, ks)
    (out / "task_scaling.json").write_text(json.dumps(report, indent=2))
    (out / "task_scaling.md").write_text(markdown(report))
    plot(report, out / "task_scaling.png")
    log(f"wrote {out}/task_scaling.json, .md, .png in {report['duration_seconds']} s")
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
