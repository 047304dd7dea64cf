"""Results as JSON (everything measured) and Markdown (the table the README shows)."""

from __future__ import annotations

import json
import re
from pathlib import Path


SCHEMA_VERSION = 1
README_START, README_END = "<!-- benchmark-results:start -->", "<!-- benchmark-results:end -->"


def _value(row: dict) -> str:
    value = row["value"]
    if value is None:
        return "—"
    return f"{100 * value:.2f}%" if row["unit"] == "share" else f"{value:.3f}x"


def _goal(row: dict) -> str:
    if row["op"] == "report":
        return "report"
    limit = f"{100 * row['limit']:.0f}%" if row["unit"] == "share" else f"{row['limit']:g}x"
    return f"{row['op'].replace('<=', '≤').replace('>=', '≥')} {limit}"


def table(results: dict) -> str:
    lines = ["| # | Measurement | Result | Goal | Status | Details |", "|---|---|---|---|---|---|"]
    for row in results["targets"]:
        status = {"met": "met", "MISSED": "**MISSED**"}.get(row["status"], row["status"])
        detail = row["detail"].replace("|", "/")
        lines.append(f"| {row['id']} | {row['name']} | {_value(row)} | {_goal(row)} | {status} | {detail} |")
    return "\n".join(lines)


def header(results: dict) -> str:
    env, settings = results["environment"], results["settings"]
    load = f"{env.get('load_average_start')} at start, {env.get('load_average_end')} at the end (1/5/15-min averages)"
    data = f"real corpora from {settings['data_dir']}" if settings.get("data_dir") else "generated text (hf_mtl.data.demo_data)"
    return "\n".join([
        f"- Device: **{env['device']}** ({env['precision']}{', ' + env['gpu'] if env.get('gpu') else ''}), "
        f"{env['cpu_count']} CPU cores, {env['torch_threads']} torch threads; load average {load}",
        f"- Backbone: `{settings['model']}`, batch {settings['batch_size']} x {settings['seq_len']} tokens, "
        f"K = {settings['num_tasks']} tasks, {data}, seed {settings['seed']}",
        f"- Preset `{settings['preset']}`: {settings['repeats']} interleaved repeats of {settings['steps']} timed steps "
        f"after {settings['warmup_steps']} warm-up step(s); weighting {settings['weighting_repeats']} repeats "
        f"({settings['gradient_steps']} steps for gradient methods); duration {results['duration_seconds'] / 60:.1f} min",
        f"- torch {env['torch']}, transformers {env['transformers']}, accelerate {env['accelerate']}, peft {env['peft']}, "
        f"hf_mtl {env['hf_mtl']} (commit {env.get('git_commit')}), Python {env['python']}, {env['date']}",
        f"- Command: `{env['command']}`",
    ])


def markdown(results: dict) -> str:
    parts = ["# hf_mtl benchmark results", "", header(results), "", table(results)]
    notes = list(results.get("notes") or [])
    if results.get("errors"):
        notes += [f"`{name}` failed: {message}" for name, message in results["errors"].items()]
    if notes:
        parts += ["", "Notes:", ""] + [f"- {note}" for note in notes]
    return "\n".join(parts) + "\n"


def write(results: dict, output_dir: str | Path) -> tuple[Path, Path]:
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    json_path, md_path = output_dir / "latest.json", output_dir / "latest.md"
    json_path.write_text(json.dumps(results, indent=2, sort_keys=False, default=str) + "\n", encoding="utf-8")
    md_path.write_text(markdown(results), encoding="utf-8")
    return json_path, md_path


def update_readme(readme: str | Path, results: dict) -> None:
    """Replace the block between the benchmark markers of `readme` with the latest header and table."""
    path = Path(readme)
    text = path.read_text(encoding="utf-8")
    if README_START not in text or README_END not in text:
        raise ValueError(f"{path} has no '{README_START}' ... '{README_END}' markers; add them where the table goes.")
    block = f"{README_START}\n{header(results)}\n\n{table(results)}\n{README_END}"
    text = re.sub(re.escape(README_START) + ".*?" + re.escape(README_END), lambda _: block, text, flags=re.S)
    path.write_text(text, encoding="utf-8")
