"""The package is built in layers: a module imports only modules of its own layer or of lower ones, and no two hf_mtl
modules import each other, directly or around a loop.

Every import counts: module level, inside functions, and under `if TYPE_CHECKING:` (a type-only import still ties a
lower layer to a higher one). Importing `a.b.c` also runs `a/__init__.py` and `a/b/__init__.py`, so those packages
count as imported too. `hf_mtl/__init__.py` is the public facade, the top layer: nothing inside the package imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest


PACKAGE_DIR = Path(__file__).resolve().parents[1] / "hf_mtl"

# Lowest first. A module's layer is that of the longest prefix listed here; every module must match one.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("errors/utils", ("hf_mtl.errors", "hf_mtl.utils")),
    ("tasks", ("hf_mtl.tasks",)),
    ("heads", ("hf_mtl.heads",)),
    # The config validates `sharing` / `sharing_kwargs` with the scheme classes, so it sits above sharing (which
    # knows the config only through its `SharedConfig` protocol).
    ("sharing", ("hf_mtl.sharing",)),
    ("configuration", ("hf_mtl.configuration_multitask",)),
    # The card is built from the config alone, so `MultiTaskModel.push_to_hub` can write it.
    ("hub", ("hf_mtl.hub",)),
    (
        "modeling",
        (
            "hf_mtl.modeling_outputs",
            "hf_mtl.modeling_utils",
            "hf_mtl.modeling_routing",
            "hf_mtl.modeling_multitask",
            "hf_mtl.inference",
            "hf_mtl.pipelines",
            "hf_mtl.export",
        ),
    ),
    ("data, weighting, sampling", ("hf_mtl.data", "hf_mtl.weighting", "hf_mtl.sampling")),
    ("evaluation", ("hf_mtl.evaluation",)),
    ("training", ("hf_mtl.training",)),
    ("adaptation", ("hf_mtl.adaptation",)),
    ("recipes", ("hf_mtl.recipes",)),
    ("cli", ("hf_mtl.cli",)),
    ("public API", ("hf_mtl",)),
]

# Imports that still break the rule, each with the reason it is still there. Each one removed shrinks this list;
# the aim is an empty list. An entry that no longer matches an import fails the test, so the list cannot go stale.
ALLOWED: dict[tuple[str, str], str] = {}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in sorted(PACKAGE_DIR.rglob("*.py"))}


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported_modules(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """hf_mtl modules that `name` imports anywhere in its source (the packages on the way included)."""
    is_package = path.name == "__init__.py"
    targets: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            targets.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(name, is_package, node)
            for alias in node.names:
                candidate = f"{base}.{alias.name}"
                targets.add(candidate if candidate in modules else base)
    edges = set()
    own_ancestors = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
    for target in targets:
        if target != "hf_mtl" and not target.startswith("hf_mtl."):
            continue
        parts = target.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            if prefix in modules and (prefix not in own_ancestors or prefix == target):
                edges.add(prefix)
    edges.discard(name)
    return edges


def import_graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imported_modules(name, path, modules) for name, path in modules.items()}


def layer_of(module: str) -> int:
    best, best_len = None, -1
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best_len:
                best, best_len = index, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS in {__file__}")
    return best


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, found = {}, {}, set(), [], []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    full = import_graph()
    return {module: {t for t in targets if (module, t) not in ALLOWED} for module, targets in full.items()}


def test_every_module_has_a_layer():
    for module in all_modules():
        layer_of(module)


def test_no_import_from_a_higher_layer(graph):
    upward = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in sorted(graph.items())
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_no_import_cycles(graph):
    cycles = _cycles(graph)
    assert not cycles, "import cycles between hf_mtl modules:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_allow_list_has_no_stale_entries():
    full = import_graph()
    stale = [edge for edge in ALLOWED if edge[1] not in full.get(edge[0], set())]
    assert not stale, f"allowed edges that no longer exist (remove them from ALLOWED): {stale}"


def test_the_walker_sees_function_level_and_type_checking_imports(tmp_path):
    modules = {"hf_mtl": tmp_path, "hf_mtl.a": tmp_path, "hf_mtl.b": tmp_path, "hf_mtl.c": tmp_path, "hf_mtl.d": tmp_path}
    source = tmp_path / "a.py"
    source.write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from .b import B\n"
        "def f():\n    from hf_mtl import c\n    import hf_mtl.d\n"
    )
    assert imported_modules("hf_mtl.a", source, modules) == {"hf_mtl.b", "hf_mtl.c", "hf_mtl.d"}
