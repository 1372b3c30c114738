"""The dependency rules of DESIGN.md, checked on the source: every `import` of every module under tinyq/,
at module level or inside a function, is parsed with `ast`, and

- no module imports one from a higher layer (not even lazily, inside a function);
- the tinyq modules import each other without a circle;
- formats/ and kernels/ import only NumPy, numba and the standard library;
- the autograd core knows nothing of number formats or quantization (imports neither formats nor quant).

Layers, lowest first (a module may import its own layer and the ones below):
    0  formats, kernels, random, autograd_state, atomic, run_folder, allocator
    1  the autograd core: tensor, function, shape_ops, activations, ops, convolution, normalization,
       functional, nn, init, optim, gradcheck, serialize, data, models, records
    2  built on the core: lowp, amp, quant, prune, sharing, distill, train, and the `tinyq` package
       itself (its __init__ gathers the core and lowp)
    3  on top: experiments, interop, grading, parallel, commands, cli, __main__
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "tinyq"

LAYERS = {
    0: ["formats", "kernels", "random", "autograd_state", "atomic", "run_folder", "allocator"],
    1: ["tensor", "function", "shape_ops", "activations", "ops", "convolution", "normalization", "functional",
        "nn", "init", "optim", "gradcheck", "serialize", "data", "models", "records"],
    2: ["", "lowp", "amp", "quant", "prune", "sharing", "distill", "train"],
    3: ["experiments", "interop", "grading", "parallel", "commands", "cli", "__main__"],
}
CORE_LAYER = 1


def module_name(path: Path) -> str:
    parts = ("tinyq",) + path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> int:
    """The layer of the longest matching entry of LAYERS ("tinyq.quant.qat" -> "quant")."""
    relative = module[len("tinyq."):] if module != "tinyq" else ""
    first = relative.split(".")[0]
    for layer, names in LAYERS.items():
        if first in names:
            return layer
    raise AssertionError(f"module {module} has no layer: add it to LAYERS in tests/test_layering.py "
                         f"(and to the architecture map in README.md)")


def imports_of(path: Path) -> list[tuple[str, int]]:
    """(imported module, line) for every import in the file, including those inside functions."""
    this = module_name(path)
    return imports_in(path.read_text(encoding="utf-8"), this if path.name == "__init__.py" else this.rpartition(".")[0])


def imports_in(source: str, package: str) -> list[tuple[str, int]]:
    tree = ast.parse(source)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:                              # relative import: resolve against this package
                base = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                source = f"{base}.{node.module}" if node.module else base
            else:
                source = node.module
            for alias in node.names:                    # `from tinyq import ops` imports the module tinyq.ops
                candidate = f"{source}.{alias.name}"
                found.append((candidate if candidate in MODULES else source, node.lineno))
    return found


def tinyq_edges() -> dict[str, set]:
    edges = {name: set() for name in MODULES}
    for name, path in MODULES.items():
        for target, _ in imports_of(path):
            if target == "tinyq" or target.startswith("tinyq."):
                while target not in MODULES and "." in target:
                    target = target.rpartition(".")[0]  # an attribute of a package: the package
                if target != name:
                    edges[name].add(target)
    return edges


def test_every_module_has_a_layer():
    for name in MODULES:
        layer_of(name)


def test_no_module_imports_a_higher_layer_even_lazily():
    upward = []
    for name, path in MODULES.items():
        for target, line in imports_of(path):
            if target == "tinyq" or target.startswith("tinyq."):
                if layer_of(target) > layer_of(name):
                    upward.append(f"{path.relative_to(ROOT.parent)}:{line} ({name}, layer {layer_of(name)}) "
                                  f"imports {target} (layer {layer_of(target)})")
    assert not upward, "imports from a higher layer:\n" + "\n".join(upward)


def test_the_core_knows_nothing_of_formats_or_quantization():
    found = []
    for name, path in MODULES.items():
        if name != "tinyq" and layer_of(name) == CORE_LAYER:
            for target, line in imports_of(path):
                if target.startswith(("tinyq.formats", "tinyq.quant", "tinyq.lowp", "tinyq.amp")):
                    found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not found, "the autograd core imports number formats or quantization:\n" + "\n".join(found)


def test_formats_and_kernels_import_only_numpy_numba_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy", "numba", "__future__"}
    found = []
    for name, path in MODULES.items():
        if name.startswith(("tinyq.formats", "tinyq.kernels")):
            for target, line in imports_of(path):
                top = target.split(".")[0]
                if top == "tinyq":
                    if not target.startswith(("tinyq.formats", "tinyq.kernels")):
                        found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
                    elif name.startswith("tinyq.formats") and target.startswith("tinyq.kernels"):
                        found.append(f"{path.relative_to(ROOT.parent)}:{line}: formats may not import kernels")
                elif top not in allowed:
                    found.append(f"{path.relative_to(ROOT.parent)}:{line} imports {target}")
    assert not found, "\n".join(found)


def strongly_connected_components(edges: dict[str, set]) -> list[list[str]]:
    """Tarjan's algorithm, iterative; components with more than one module are import circles."""
    index, low, on_stack, stack, order, components = {}, {}, set(), [], [0], []

    def visit(start):
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = order[0]
        order[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = order[0]
                    order[0] += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
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
                components.append(sorted(component))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return components


def test_no_import_circles():
    circles = [c for c in strongly_connected_components(tinyq_edges()) if len(c) > 1]
    assert not circles, "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_checker_sees_lazy_and_relative_imports_and_circles():
    source = "def f():\n    from tinyq import cli\n    import tinyq.lowp as lowp\n    from ..quant import qat\n"
    assert [t for t, _ in imports_in(source, "tinyq.nn")] == ["tinyq.cli", "tinyq.lowp", "tinyq.quant.qat"]
    components = strongly_connected_components({"a": {"b"}, "b": {"a"}, "c": {"a"}})
    assert sorted(components) == [["a", "b"], ["c"]]
    assert layer_of("tinyq.cli") > layer_of("tinyq.lowp") > layer_of("tinyq.ops") > layer_of("tinyq.formats.floats")


@pytest.mark.parametrize("module", ["tinyq.function", "tinyq.tensor", "tinyq.ops"])
def test_core_modules_import_nothing_lazily(module):
    """In the core, every import sits at the top of the module: nothing is hidden inside a function."""
    tree = ast.parse(MODULES[module].read_text(encoding="utf-8"))
    top_level = {id(n) for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))}
    hidden = [n.lineno for n in ast.walk(tree) if isinstance(n, (ast.Import, ast.ImportFrom)) and id(n) not in top_level]
    assert not hidden, f"{module} imports inside functions at lines {hidden}"
