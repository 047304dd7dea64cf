"""`import hf_mtl` loads what model loading needs (config, model, Auto registration) and nothing else; every other
public name resolves on first use."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import hf_mtl


ROOT = Path(__file__).resolve().parents[1]

# Not loaded by `import hf_mtl`. accelerate and scipy are absent from this list on purpose: transformers'
# PreTrainedModel itself imports them, so hf_mtl cannot keep them out.
NOT_LOADED = ("hf_mtl.training", "hf_mtl.recipes", "hf_mtl.cli", "transformers.trainer", "sklearn",
              "datasets", "matplotlib", "seqeval", "peft")


def test_import_loads_only_what_model_loading_needs():
    code = (
        "import json, sys\nimport hf_mtl\n"
        "from transformers import AutoConfig, AutoModel\n"
        "registered = AutoConfig.for_model(hf_mtl.MultiTaskConfig.model_type).__class__ is hf_mtl.MultiTaskConfig\n"
        "print(json.dumps({'modules': sorted(sys.modules), 'registered': registered,"
        " 'version': hf_mtl.__version__}))"
    )
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True, cwd=ROOT, env=env)
    result = json.loads(output.stdout.strip().splitlines()[-1])
    loaded = [name for name in result["modules"] if any(name == m or name.startswith(m + ".") for m in NOT_LOADED)]
    assert not loaded, f"`import hf_mtl` loaded {loaded}"
    assert result["registered"]
    assert result["version"]


def test_every_public_name_resolves():
    assert "__version__" in hf_mtl.__all__
    for name in hf_mtl.__all__:
        assert getattr(hf_mtl, name) is not None, name
        assert name in dir(hf_mtl)


def test_unknown_name_raises_attribute_error():
    try:
        hf_mtl.NoSuchThing  # noqa: B018
    except AttributeError as error:
        assert "NoSuchThing" in str(error)
    else:
        raise AssertionError("hf_mtl.NoSuchThing resolved")


def test_samplers_register_without_the_package_init():
    from hf_mtl.sampling import SAMPLERS

    assert {"proportional", "uniform", "temperature", "annealed", "learned", "fixed", "rehearsal"} <= set(SAMPLERS)


def test_all_lists_the_eager_and_the_lazy_names():
    assert sorted(hf_mtl.__all__) == sorted({"__version__", "MultiTaskConfig", "MultiTaskModel", *hf_mtl._LAZY})
