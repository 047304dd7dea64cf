"""`python -m benchmarks.import_cost [--repeats N] [--json]`: what `import hf_mtl` costs.

Each repeat is a fresh interpreter (nothing cached in `sys.modules`) that times `import hf_mtl` and counts the
modules it left loaded: hf_mtl's own, all of them, and whether some heavy optional ones came along. The package
imported is the one in the checkout this file belongs to (its root goes first on `PYTHONPATH`), so two checkouts can
be compared. Reports the median time and its range, and the median time left when transformers' model-loading classes were
imported first (hf_mtl's own share); module counts do not vary between repeats.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]
WATCHED = ("hf_mtl.trainer", "hf_mtl.training.trainer", "transformers.trainer", "sklearn", "accelerate",
           "datasets", "matplotlib", "peft", "scipy")  # the first is the trainer's path before the layout change

_PROBE = """
import json, sys, time
if WARM:  # what transformers needs to load a model, imported first: the time left is hf_mtl's own
    from transformers import AutoConfig, AutoModel, PreTrainedModel
before = set(sys.modules)
start = time.perf_counter()
import hf_mtl
elapsed = time.perf_counter() - start
loaded = set(sys.modules) - before
print(json.dumps({
    "seconds": elapsed,
    "file": hf_mtl.__file__,
    "hf_mtl_modules": sorted(m for m in loaded if m == "hf_mtl" or m.startswith("hf_mtl.")),
    "modules": len(loaded),
    "watched": {name: name in sys.modules for name in WATCHED},
}))
"""


def probe(warm: bool = False) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    code = f"WATCHED = {WATCHED!r}\nWARM = {warm!r}\n" + _PROBE
    output = subprocess.run([sys.executable, "-c", code], env=env, check=True, capture_output=True, text=True)
    return json.loads(output.stdout.strip().splitlines()[-1])


def measure(repeats: int) -> dict:
    runs = [probe() for _ in range(repeats)]
    seconds = [run["seconds"] for run in runs]
    own = [probe(warm=True)["seconds"] for _ in range(repeats)]
    last = runs[-1]
    return {
        "file": last["file"],
        "repeats": repeats,
        "seconds_median": statistics.median(seconds),
        "seconds_min": min(seconds),
        "seconds_max": max(seconds),
        "own_seconds_median": statistics.median(own),
        "hf_mtl_modules": len(last["hf_mtl_modules"]),
        "hf_mtl_module_names": last["hf_mtl_modules"],
        "modules": last["modules"],
        "watched": last["watched"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5, help="fresh interpreters to time (default 5)")
    parser.add_argument("--json", action="store_true", help="print every number as JSON")
    args = parser.parse_args(argv)
    result = measure(args.repeats)
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"import hf_mtl ({result['file']}), {result['repeats']} fresh interpreters")
    print(f"  time: {result['seconds_median']:.2f} s median ({result['seconds_min']:.2f}-{result['seconds_max']:.2f})")
    print(f"  of which hf_mtl's own (transformers' AutoModel/PreTrainedModel imported first): "
          f"{result['own_seconds_median']:.2f} s median")
    print(f"  hf_mtl modules loaded: {result['hf_mtl_modules']}; all modules loaded: {result['modules']}")
    print("  also loaded: " + (", ".join(name for name, hit in result["watched"].items() if hit) or "none of")
          + f" (watched: {', '.join(WATCHED)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
