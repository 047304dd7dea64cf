"""Finished runs that a report can reuse: a run is identified by a fingerprint of what decides its result.

The fingerprint hashes the run's effective recipe (tasks, data sources, model and training settings after
overrides), the seed and budget, the content of its local data files, and the code that trains (`code_fingerprint`:
every module of hf_mtl except reporting, plotting, cards and the CLI). A finished run leaves `run.json` beside its
`metrics.json`; a report that plans a run with the same fingerprint reads the record instead of training again, so an
interrupted or extended comparison continues where it stopped.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from .loader import RECIPE_MODEL_DEFAULTS, RECIPE_TRAINING_DEFAULTS


RUN_RECORD = "run.json"
# Modules that only present results: editing them does not change what a run computes.
_PRESENTATION = ("cli/", "utils/plotting.py", "hub/model_card.py", "evaluation/comparison.py",
                 "recipes/transfer_report.py", "recipes/run_cache.py", "recipes/augmentation_report.py",
                 "adaptation/few_shot.py")


@lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """Hash of the hf_mtl sources that decide a training result (the package version included)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package_version = version("hf_mtl")
    except PackageNotFoundError:  # a source tree on the path, not installed
        package_version = "source"
    root = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256(package_version.encode())
    for path in sorted(root.rglob("*.py")):
        relative = path.relative_to(root).as_posix()
        if relative.startswith(_PRESENTATION) or relative in _PRESENTATION:
            continue
        digest.update(relative.encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def _file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:16]


def data_fingerprint(recipe) -> dict[str, str]:
    """Content hashes of the recipe's local data files (Hub and generated data are named by the recipe itself)."""
    files = {}
    for task in recipe.tasks:
        if task.source_kind != "files":
            continue
        for split, value in task.data.items():
            if split in ("format",) or value is None:
                continue
            for item in value if isinstance(value, list) else [value]:
                for path in sorted(Path().glob(str(item))) if any(c in str(item) for c in "*?[") else [Path(str(item))]:
                    resolved = recipe.resolve_path(f"tasks.{task.name}.data.{split}", str(path))
                    if resolved.is_file():
                        files[f"{task.name}/{split}/{resolved.name}"] = _file_digest(resolved)
    return files


# The recipe defaults of the first recorded runs. A recipe's fingerprint hashes it as written; a default of today
# that differs from these (e.g. `batching: mixed`, `weighting: rep_norm` since 2026-12-06) is hashed as if the recipe
# wrote it. So a run made under other defaults is never reused for a recipe that leaves the key out, a recipe that
# writes the default out reuses the runs of one that leaves it out, and runs recorded before a default changed keep
# their fingerprints. The recipe's model defaults (`RECIPE_MODEL_DEFAULTS`, since 2026-12-07) are hashed the same way
# whenever they apply. (`MultiTaskConfig` defaults are not hashed: the code fingerprint covers them, so only
# `--reuse-any-code` can take a run made under another model default, e.g. `task_embedding` "cls" before 2026-12-06.)
_FIRST_RECORDED_DEFAULTS = {"refine_steps": 100, "batching": "per_task", "weighting": "static"}

# Training keys that say where and how loudly a run reports, not what it computes.
_NOT_RESULTS = {"output_dir", "report_to", "run_name", "logging_steps", "logging_first_step", "logging_strategy",
                "disable_tqdm", "hub_model_id", "hub_token", "push_to_hub"}


def run_fingerprint(recipe, changes: dict[str, Any], *, include_code: bool = True) -> str:
    """Fingerprint of one run: recipe (after overrides), `changes` (seed, budget), data, code; not where it writes."""
    resolved = dict(recipe.resolved_dict())
    resolved.pop("description", None)
    written = dict(resolved.get("training") or {})
    for key, value in recipe.training.items():
        if key in RECIPE_TRAINING_DEFAULTS and key not in written and value != _FIRST_RECORDED_DEFAULTS.get(key):
            written[key] = value  # a recipe default of today that changes the run: hashed as if written
    resolved["training"] = {k: v for k, v in written.items() if k not in _NOT_RESULTS}
    if recipe.default_sharing:  # the recipe's default scheme (none before 2026-12-07): hashed as if written
        resolved["model"] = {**(resolved.get("model") or {}),
                             **{key: recipe.config_kwargs[key] for key in RECIPE_MODEL_DEFAULTS if key in recipe.config_kwargs}}
    # `labels_from` is not hashed: whenever reading labels off the training split succeeds, every split's labels are
    # in it, so both rules give the same label list (and the runs recorded before the key existed read all splits).
    resolved["tasks"] = [{k: v for k, v in task.items() if k != "labels_from"} if isinstance(task, dict) else task
                         for task in resolved.get("tasks") or []]
    settings = {key: value for key, value in changes.items() if key not in _NOT_RESULTS}
    payload = {
        "recipe": resolved,
        "changes": settings,
        "data": data_fingerprint(recipe),
        "code": code_fingerprint() if include_code else None,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


@dataclass
class RunRecord:
    """What a finished run of a report leaves in `run.json`."""

    label: str
    seed: int
    fingerprint: str
    fingerprint_without_code: str
    code: str
    scores: dict[str, dict[str, float]]
    steps: int
    seconds: float
    task_rows: dict[str, int] = field(default_factory=dict)
    model_saved: bool = False
    parameters: int | None = None
    finished: str | None = None  # UTC time the run ended (ISO 8601); records written before 2026-12-06 have none

    def save(self, run_dir: Path) -> Path:
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RUN_RECORD
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")
        return path

    @classmethod
    def load(cls, run_dir: Path) -> RunRecord | None:
        path = run_dir / RUN_RECORD
        if not path.is_file():
            return None
        try:
            return cls(**json.loads(path.read_text(encoding="utf-8")))
        except (json.JSONDecodeError, TypeError):
            return None  # a record from another version or cut short: train again


def run_dir_name(label: str, fingerprint_without_code: str, code: str) -> str:
    """A run's folder: its label, its recipe fingerprint and its code, so that a rerun under other code (without
    `--reuse-any-code`) trains beside the earlier run instead of over it, and reports keep pointing at their runs."""
    return f"{label}-{fingerprint_without_code[:8]}-{code[:8]}"


def find_reusable(seed_dir: Path, label: str, fingerprint: str, fingerprint_without_code: str,
                  any_code: bool) -> tuple[Path, RunRecord] | None:
    """The finished run of `label` in `seed_dir` that can stand in for this one, with its folder: the same run (same
    code too) first; with `any_code` else the newest one of the same recipe under other code. Folders of either name
    count: `<label>-<recipe>-<code>` and the code-less `<label>-<recipe>` of runs recorded before 2026-12-06."""
    prefix = f"{label}-{fingerprint_without_code[:8]}"
    candidates = sorted(path for path in seed_dir.glob(f"{prefix}*") if path.name == prefix or path.name.startswith(f"{prefix}-"))
    found = [(path, record) for path in candidates if (record := RunRecord.load(path)) is not None]
    same = [(path, record) for path, record in found if record.fingerprint == fingerprint]
    if same:  # several after a retrain (`retrained_run_dir`)
        return _newest(same)
    if any_code:
        others = [(path, record) for path, record in found if record.fingerprint_without_code == fingerprint_without_code]
        if others:
            return _newest(others)
    return None


def _newest(runs: list[tuple[Path, RunRecord]]) -> tuple[Path, RunRecord]:
    return max(runs, key=lambda item: item[1].finished or "")  # records without a time are the oldest


def retrained_run_dir(run_dir: Path) -> Path:
    """Where a run asked to train again goes: `run_dir`, or where that already holds a finished run (same recipe and
    code), the first free `<name>-retrain<N>` beside it, so the earlier run stays as it was until the new one is done
    (`find_reusable` then prefers the newer)."""
    if RunRecord.load(run_dir) is None:
        return run_dir
    number = 2
    while (candidate := run_dir.with_name(f"{run_dir.name}-retrain{number}")).exists():
        number += 1
    return candidate
