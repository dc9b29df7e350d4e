"""The layering, read from the source: no import cycles, no upward imports, no private names across modules.

The import graph is built with :mod:`ast` from ``src/releasecache`` (no import
is executed, so a cycle hidden inside a function is seen too). Layers, top to
bottom::

    cli > audit > vbn > cache > transfer > store, remote > manifest > errors, config, utils

A module may import from its own layer or below. Imports under
``if TYPE_CHECKING:`` are annotations only: they count for the layer rule but
not as cycle edges.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src" / "releasecache"

RANKS = {"cli": 8, "audit": 7, "vbn": 6, "cache": 5, "transfer": 4, "store": 3, "remote": 3, "manifest": 2,
         "errors": 1, "config": 1, "utils": 1}


@dataclass
class Graph:
    """What :func:`analyse` found."""

    modules: set[str] = field(default_factory=set)
    runtime: dict[str, set[str]] = field(default_factory=dict)   # module -> modules it imports when run
    edges: list[tuple[str, str, int, bool]] = field(default_factory=list)  # (source, target, line, typing only)
    private: list[str] = field(default_factory=list)
    undocumented_local_imports: list[str] = field(default_factory=list)

    def cycles(self) -> list[list[str]]:
        """Every strongly connected component with more than one module (or a self-loop)."""
        index: dict[str, int] = {}
        low: dict[str, int] = {}
        stack: list[str] = []
        on: set[str] = set()
        out: list[list[str]] = []

        def visit(v: str) -> None:  # Tarjan; the graph has ~60 nodes, recursion is fine
            index[v] = low[v] = len(index)
            stack.append(v)
            on.add(v)
            for w in sorted(self.runtime.get(v, ())):
                if w not in index:
                    visit(w)
                    low[v] = min(low[v], low[w])
                elif w in on:
                    low[v] = min(low[v], index[w])
            if low[v] == index[v]:
                comp = []
                while True:
                    w = stack.pop()
                    on.discard(w)
                    comp.append(w)
                    if w == v:
                        break
                if len(comp) > 1 or v in self.runtime.get(v, ()):
                    out.append(sorted(comp))

        for v in sorted(self.modules):
            if v not in index:
                visit(v)
        return out

    def upward(self) -> list[str]:
        """Edges from a lower layer to a higher one."""
        bad = []
        for source, target, line, _typing in self.edges:
            a, b = rank(source), rank(target)
            if a is not None and b is not None and b > a:
                bad.append(f"{source}:{line} imports {target} (layer {b} > {a})")
        return bad


def rank(module: str) -> int | None:
    """The layer of a module name (``releasecache.store.ingest`` -> 3); None for the package root."""
    parts = module.split(".")
    return RANKS[parts[1]] if len(parts) > 1 else None


def _module_name(root: Path, path: Path) -> str:
    rel = path.relative_to(root.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _resolve(current: str, is_package: bool, level: int, module: str | None) -> str:
    base = current.split(".")
    if level:
        base = base if is_package else base[:-1]
        base = base[: len(base) - (level - 1)]
        return ".".join(base + ([module] if module else []))
    return module or ""


def _typing_only_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for sub in node.body:
                lines.update(range(sub.lineno, (sub.end_lineno or sub.lineno) + 1))
    return lines


def _function_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            lines.update(range(node.lineno, (node.end_lineno or node.lineno) + 1))
    return lines


def analyse(root: Path = SRC) -> Graph:
    """Build the import graph of the package at ``root`` and collect private-name uses across modules."""
    graph = Graph()
    package = root.name
    files = sorted(root.rglob("*.py"))
    graph.modules = {_module_name(root, f) for f in files}
    for path in files:
        current = _module_name(root, path)
        is_package = path.name == "__init__.py"
        text = path.read_text()
        source_lines = text.splitlines()
        tree = ast.parse(text)
        typing_only = _typing_only_lines(tree)
        in_function = _function_lines(tree)
        aliases: dict[str, str] = {}  # local name -> package module it stands for
        graph.runtime.setdefault(current, set())

        def add(target: str, node: ast.stmt) -> None:
            while target not in graph.modules and "." in target:
                target = target.rsplit(".", 1)[0]
            if target not in graph.modules or target == current:
                return
            typing = node.lineno in typing_only
            graph.edges.append((current, target, node.lineno, typing))
            if not typing:
                graph.runtime[current].add(target)
            if node.lineno in in_function and not typing:
                here = source_lines[node.lineno - 1]
                above = source_lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if "#" not in here and not above.startswith("#"):
                    graph.undocumented_local_imports.append(f"{current}:{node.lineno} imports {target}")
            private_module = [p for p in target.split(".")[1:] if p.startswith("_") and not p.startswith("__")]
            if private_module and target.rsplit(".", 1)[0] != current.rsplit(".", 1)[0] and \
                    target.rsplit(".", 1)[0] != current:
                graph.private.append(f"{current}:{node.lineno} imports private module {target}")

        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    if alias.name.split(".")[0] == package:
                        add(alias.name, node)
                        aliases[alias.asname or alias.name] = alias.name
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(current, is_package, node.level, node.module)
                if target.split(".")[0] != package:
                    continue
                for alias in node.names:
                    full = f"{target}.{alias.name}"
                    if full in graph.modules:
                        add(full, node)
                        aliases[alias.asname or alias.name] = full
                    else:
                        add(target, node)
                        if alias.name.startswith("_") and not alias.name.startswith("__"):
                            graph.private.append(f"{current}:{node.lineno} imports {alias.name} from {target}")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases
                    and node.attr.startswith("_") and not node.attr.startswith("__")):
                graph.private.append(f"{current}:{node.lineno} uses {aliases[node.value.id]}.{node.attr}")
    return graph


@pytest.fixture(scope="module")
def graph() -> Graph:
    return analyse()


def test_every_module_is_in_a_layer(graph):
    unplaced = [m for m in graph.modules if m != "releasecache" and m.split(".")[1] not in RANKS]
    assert not unplaced, f"modules outside the layer packages: {unplaced}"
    assert len(graph.modules) > 40 and len(graph.edges) > 100  # the graph really was read


def test_no_import_cycles(graph):
    assert graph.cycles() == []


def test_no_upward_imports(graph):
    assert graph.upward() == []


def test_no_private_names_across_modules(graph):
    assert graph.private == []


def test_function_level_imports_say_why(graph):
    """An import inside a function must defer something expensive and say so, never dodge a cycle."""
    assert graph.undocumented_local_imports == []


def test_checker_finds_planted_violations(tmp_path):
    """The checks above can fail: a small package with one of each violation."""
    pkg = tmp_path / "releasecache"
    for sub in ("store", "cache", "utils"):
        (pkg / sub).mkdir(parents=True)
        (pkg / sub / "__init__.py").write_text("")
    (pkg / "__init__.py").write_text("")
    (pkg / "store" / "a.py").write_text("from ..cache.b import thing\n")        # upward, and half a cycle
    (pkg / "cache" / "b.py").write_text("from ..store import a\nthing = a\n"
                                        "def f():\n    from ..utils.c import _hidden\n    return _hidden\n")
    (pkg / "utils" / "c.py").write_text("_hidden = 1\n")
    (pkg / "utils" / "d.py").write_text("from . import c\nx = c._hidden\n")
    found = analyse(pkg)
    assert found.cycles() == [["releasecache.cache.b", "releasecache.store.a"]]
    assert found.upward() == ["releasecache.store.a:1 imports releasecache.cache.b (layer 5 > 3)"]
    assert sorted(found.private) == ["releasecache.cache.b:4 imports _hidden from releasecache.utils.c",
                                     "releasecache.utils.d:2 uses releasecache.utils.c._hidden"]
    assert found.undocumented_local_imports == ["releasecache.cache.b:4 imports releasecache.utils.c"]


#: Calls that belong to exactly one module: the one implementation of each idea.
OWNERS = {
    "os.symlink": "releasecache.store.links",        # the link fallback
    "os.link": "releasecache.store.links",
    "hashlib.blake2b": "releasecache.utils._hashing",  # hashing
    "random.uniform": "releasecache.transfer.retry",   # backoff jitter: the retry policy
    "S3Remote": "releasecache.remote.factory",         # building a remote
    "HttpRemote": "releasecache.remote.factory",
    "LocalRemote": "releasecache.remote.factory",
}


def _calls(root: Path = SRC) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for path in sorted(root.rglob("*.py")):
        module = _module_name(root, path)
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = ast.unparse(node.func)
                found.setdefault(name, set()).add(module)
    return found


def test_each_idea_has_one_implementation():
    calls = _calls()
    where = {name: calls.get(name, set()) for name in OWNERS}
    assert {name: sorted(mods) for name, mods in where.items() if mods - {OWNERS[name]}} == {}
    assert all(where[name] for name in ("os.symlink", "hashlib.blake2b", "random.uniform", "S3Remote"))


def test_only_ingest_names_files_under_partial():
    """``<...>.partial_dir / name`` is written in store/ingest.py alone; everyone else asks it."""
    naming = set()
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div) \
                    and ast.unparse(node.left).split(".")[-1] == "partial_dir":
                naming.add(_module_name(SRC, path))
    assert naming == {"releasecache.store.ingest"}


def test_environment_variables_are_named_in_config_only():
    """Every ``RELEASECACHE_*`` string used as a value (not in prose) is defined in config.py."""
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        module = _module_name(SRC, path)
        tree = ast.parse(path.read_text())
        docstrings = {id(n.body[0].value) for n in ast.walk(tree)
                      if isinstance(n, (ast.Module, ast.FunctionDef, ast.ClassDef, ast.AsyncFunctionDef))
                      and n.body and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings
                    and node.value.startswith("RELEASECACHE_") and " " not in node.value
                    and module != "releasecache.config"):
                offenders.append(f"{module}:{node.lineno} {node.value}")
    assert offenders == []
