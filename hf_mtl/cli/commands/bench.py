"""`hf-mtl bench [--quick] [--only ...]`: the benchmarks of a source checkout (the same as `python -m benchmarks`).

The benchmarks measure the library against plain Transformers; they are not part of the installed package (like
transformers' own `benchmark/` folder), so this command finds the `benchmarks/` folder of the checkout hf_mtl is
installed from (`pip install -e .`) or of the current directory, and fails with the fix when there is none.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path


def find_checkout() -> Path | None:
    """The repository root holding `benchmarks/`: the editable install's checkout first, then the current directory."""
    for root in (Path(__file__).resolve().parents[3], Path.cwd()):
        if (root / "benchmarks" / "__main__.py").is_file() and (root / "benchmarks" / "options.py").is_file():
            return root
    return None


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "bench", help="Benchmark multi-task training and inference against plain Transformers (source checkout).",
        description=__doc__.split("\n\n", 1)[1],
    )
    root = find_checkout()
    if root is not None:
        # options.py is argparse only and has no package-relative imports: load it by path, without touching sys.path
        # (every `hf-mtl` command builds this parser).
        name = "_hf_mtl_benchmark_options"
        spec = importlib.util.spec_from_file_location(name, root / "benchmarks" / "options.py")
        options = importlib.util.module_from_spec(spec)
        sys.modules[name] = options  # dataclasses look their module up while the class is built
        try:
            spec.loader.exec_module(options)
            options.add_arguments(parser)
        except Exception as error:  # a broken checkout must not take the other commands down with it
            sys.modules.pop(name, None)
            parser.set_defaults(func=run, load_error=f"{root / 'benchmarks' / 'options.py'}: {type(error).__name__}: {error}")
            return
    parser.set_defaults(func=run)


def run(args) -> int:
    if getattr(args, "load_error", None):
        raise ValueError(f"the benchmark options could not be loaded ({args.load_error}).")
    root = find_checkout()
    if root is None:
        raise FileNotFoundError(
            "hf-mtl bench runs the benchmarks/ folder of a source checkout, and none was found (hf_mtl is not installed "
            "in editable mode and the current directory has no benchmarks/). Fix: `git clone` the hf_mtl repository, "
            "`pip install -e .` in it, then `hf-mtl bench` (or `python -m benchmarks` from its root)."
        )
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    from benchmarks.__main__ import run_from_args

    return run_from_args(args)
