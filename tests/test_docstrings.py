"""Docstring examples run. Those that need nothing but hf_mtl run here as doctests; those that need a trained model
folder or the Hub (which no test machine reaches) name the test that runs the same code, so none is left unchecked."""

import doctest
import importlib
from pathlib import Path

import pytest


PACKAGE = Path(__file__).resolve().parents[1] / "hf_mtl"
RUNNABLE = ["hf_mtl.configuration_multitask", "hf_mtl.utils.registry"]
RUN_ELSEWHERE = {
    "hf_mtl.pipelines": "test_cli.py::test_multi_task_pipeline_from_the_factory_matches_the_predictor",
    "hf_mtl.inference": "test_cli.py::test_predictor_runs_one_mixed_forward_per_batch",
    "hf_mtl.modeling_multitask": "test_modeling_multitask.py::test_minilm_round_trip_with_auto_classes",
    "hf_mtl.adaptation.freezing": "test_transfer.py::test_freeze_rules_select_what_trains",
    "hf_mtl.adaptation.meta.trainer": "test_meta.py::test_meta_step_of_the_trainer_matches_the_textbook_loop",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@pytest.mark.parametrize("name", RUNNABLE)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0, result


def test_every_docstring_example_is_run_somewhere():
    with_examples = {module_name(path) for path in PACKAGE.rglob("*.py") if ">>> " in path.read_text(encoding="utf-8")}
    assert with_examples == set(RUNNABLE) | set(RUN_ELSEWHERE), "a new docstring example: run it here or name its test"
    tests = Path(__file__).parent
    for module, test in RUN_ELSEWHERE.items():
        file, name = test.split("::")
        assert f"def {name}(" in (tests / file).read_text(encoding="utf-8"), (module, test)
