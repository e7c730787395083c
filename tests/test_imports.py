"""The mlstm package's modules import one another without a cycle.

The graph is built from the source with ``ast``, so it covers whatever modules exist (a
``foreign/`` package split out of ``foreign.py`` included). Every ``import`` statement counts,
at module level and inside functions alike: a lazy import inside a function still ties the two
modules together, and a cycle hidden in a function is one refactor away from an ImportError.

An edge goes to the module an import names: ``from . import hdf5`` (a submodule) points at
``mlstm.io.hdf5``; ``from . import LazyArray`` (a name) points at the package ``mlstm.io``
itself; ``from . import _cpu_lstm`` (a compiled extension) is no edge. The implicit import of
a parent package when a submodule is imported is not an edge either (otherwise every package
façade would be a cycle with its own submodules). Nothing is exempt.
"""

from __future__ import annotations

import ast
import os

PACKAGE = "mlstm"
ROOT = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), PACKAGE)


def module_files() -> dict[str, str]:
    """Dotted module name -> source path, for every .py file of the package."""
    out = {}
    for directory, _, files in os.walk(ROOT):
        rel = os.path.relpath(directory, os.path.dirname(ROOT))
        parts = rel.split(os.sep)
        for name in files:
            if not name.endswith(".py"):
                continue
            dotted = parts if name == "__init__.py" else [*parts, name[:-3]]
            out[".".join(dotted)] = os.path.join(directory, name)
    return out


def _absolute(module: str, is_package: bool, level: int, target: str | None) -> str:
    """The absolute dotted name of a relative import ``from ...target``."""
    if level == 0:
        return target or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _compiled(files: dict[str, str], package: str, name: str) -> bool:
    """Whether ``package.name`` is a compiled extension (its .c source or built .so/.pyd beside it)."""
    if package not in files:
        return False
    directory = os.path.dirname(files[package])
    return any(f.startswith(name + ".") and not f.endswith(".py") for f in os.listdir(directory))


def import_graph() -> dict[str, set[str]]:
    files = module_files()
    graph: dict[str, set[str]] = {name: set() for name in files}
    for module, path in files.items():
        is_package = path.endswith("__init__.py")
        with open(path, encoding="utf-8") as fh:
            tree = ast.parse(fh.read(), path)
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _absolute(module, is_package, node.level, node.module)
                for alias in node.names:
                    sub = f"{base}.{alias.name}"
                    if sub in files:
                        targets.append(sub)
                    elif not _compiled(files, base, alias.name):  # a C extension is no mlstm source
                        targets.append(base)
            for target in targets:
                # "import mlstm.io.hdf5" names the deepest module of the package it reaches.
                while target and target not in files and "." in target:
                    target = target.rsplit(".", 1)[0]
                if target in files and target != module:
                    graph[module].add(target)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return path[path.index(nxt) :] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_sees_the_package():
    graph = import_graph()
    # The test would pass vacuously on an empty or misread graph.
    assert {"mlstm.cli", "mlstm.io", "mlstm.io.hdf5", "mlstm.io.mat73", "mlstm.formats"} <= set(graph)
    assert "mlstm.formats" in graph["mlstm.api"]
    assert "mlstm.io" in graph["mlstm.runfile"]  # a function-level import counts


# What the command line may import: click, the error type, and the library's public entry points
# (one per command family) plus the few helpers a command needs to print what the library returns.
CLI_MAY_IMPORT = {
    "mlstm",  # __version__
    "mlstm.errors",
    "mlstm.signals",
    "mlstm.inputs",  # split_tokens, ROLE_LOOKUP: reading a command line
    "mlstm.runfile",
    "mlstm.checkfiles",
    "mlstm.batch",
    "mlstm.convert",
    "mlstm.doctor",
    "mlstm.progress",
    "mlstm.compare",  # format_table
    "mlstm.io",  # CHAR_VALUE_LIMIT
}


def test_the_cli_holds_no_logic_of_its_own():
    graph = import_graph()
    for module, imported in graph.items():
        if module == "mlstm.cli" or module.startswith("mlstm.cli."):
            outside = {m for m in imported if not m.startswith("mlstm.cli")} - CLI_MAY_IMPORT
            assert not outside, f"{module} imports {sorted(outside)}"


def test_find_cycle_reports_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_among_mlstm_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)
