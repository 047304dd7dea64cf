"""One Markdown table from several transfer reports (`transfer.json`), one row per report: the multi-task score of
each task, its delta against the single-task runs of the same report, the mean delta, and the parameter ratio.

    python benchmarks/ablation_table.py results/dev_suite/screen_* --peer results/peer_tasknet/peer.json

Each report's folder name is its row label; `transfer.json` records the settings and seeds that made it.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path


def load(folder: Path) -> dict:
    return json.loads((folder / "transfer.json").read_text(encoding="utf-8"))


def _seeds(seeds: list[int]) -> str:
    """The seeds themselves: a one-seed screen on seed 2 and one on seed 42 compare against different baselines."""
    return ", ".join(str(seed) for seed in seeds)


def table(reports: dict[str, dict], peer: dict | None = None) -> str:
    tasks = [row["task"] for row in next(iter(reports.values()))["tasks"]]
    header = "| Setting | Seeds | " + " | ".join(f"`{t}`" for t in tasks) + " | Mean Δ | Params |"
    lines = [header, "|" + "---|" * (len(tasks) + 4)]
    for label, report in reports.items():
        rows = {row["task"]: row for row in report["tasks"]}
        cells = []
        for task in tasks:
            row = rows.get(task)
            if row is None:
                cells.append("–")
                continue
            spread = f" ± {row['delta_std']:.3f}" if row.get("delta_std") is not None else ""
            cells.append(f"{row['multi']:.3f} ({row['delta']:+.3f}{spread})")
        mean = statistics.fmean(rows[t]["delta"] for t in tasks if t in rows)
        ratio = (report.get("parameters") or {}).get("ratio_to_one_single_task_model")
        lines.append(f"| {label} | {_seeds(report['seeds'])} | " + " | ".join(cells) + f" | {mean:+.4f} | "
                     + (f"{ratio:.2f}x" if ratio else "–") + " |")
    if peer:
        cells = [f"{peer['tasks'][t]['mean']:.3f}" if t in peer["tasks"] else "–" for t in tasks]
        lines.append(f"| peer: {peer['peer']} {peer['peer_version']} | {_seeds(peer['seeds'])} | " + " | ".join(cells)
                     + " | – | – |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", help="Folders holding transfer.json.")
    parser.add_argument("--peer", default=None, help="peer.json of benchmarks/peer_tasknet.py.")
    args = parser.parse_args(argv)
    reports = {Path(folder).name: load(Path(folder)) for folder in args.reports}
    peer = json.loads(Path(args.peer).read_text(encoding="utf-8")) if args.peer else None
    print(table(reports, peer))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
