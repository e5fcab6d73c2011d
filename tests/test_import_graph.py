"""No import cycle among csdseg's modules, and the package's top level holds only its parts.

The graph is read from the source with ``ast``: an edge M -> N for every import in M of a
csdseg module N (and of N's enclosing packages, whose ``__init__`` runs first), at module level,
including imports under a top-level ``if``/``try``. Two kinds of import are left out, each for a
reason:

- under ``if TYPE_CHECKING:``: never executed;
- inside a function or method: it runs when the function is called, after every module-level
  import has finished, so it cannot meet a half-initialised module. csdseg uses such imports to
  keep torch (and the stages a command does not run) out of start-up, never to hide a cycle:
  the second test below checks that no lazy import reaches back into a module that imports its
  caller at module level, which is what a hidden cycle would look like.
"""
from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "csdseg"


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module, lazy: bool) -> list[tuple[int, ast.Import | ast.ImportFrom]]:
    """(depth, node) of the module-level imports, or (``lazy``) of those inside functions."""
    found = []

    def walk(node: ast.AST, in_function: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                for orelse in child.orelse:
                    walk(ast.Module(body=[orelse], type_ignores=[]), in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)) and in_function == lazy:
                found.append(child)
            walk(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                                                            ast.Lambda)))

    walk(tree, False)
    return found


def _targets(importer: str, node: ast.Import | ast.ImportFrom) -> set[str]:
    """The csdseg modules an import statement runs: the named module, its packages, and for
    ``from P import x`` the submodule P.x when x is one."""
    is_package = MODULES[importer].name == "__init__.py"
    if isinstance(node, ast.Import):
        names = [alias.name for alias in node.names]
    else:
        base = node.module or ""
        if node.level:
            anchor = importer.split(".")
            anchor = anchor if is_package else anchor[:-1]
            anchor = anchor[:len(anchor) - node.level + 1]
            base = ".".join([*anchor, base] if base else anchor)
        names = [base] + [f"{base}.{alias.name}" for alias in node.names]
    out = set()
    ancestors = {".".join(importer.split(".")[:i]) for i in range(1, importer.count(".") + 1)}
    if isinstance(node, ast.ImportFrom) and base in MODULES and base != importer and any(
            f"{base}.{alias.name}" not in MODULES for alias in node.names):
        # ``from P import x`` with x a name P's __init__ defines: it needs P initialised, even
        # when P is the importer's own package (its __init__ may be the one importing it)
        out.add(base)
    for name in names:
        parts = name.split(".")
        for i in range(1, len(parts) + 1):
            prefix = ".".join(parts[:i])
            # a module's own packages are already being imported when it runs: no edge
            if prefix in MODULES and prefix not in ancestors and prefix != importer:
                out.add(prefix)
    return out


def import_graph(lazy: bool = False) -> dict[str, set[str]]:
    graph = {}
    for name, path in MODULES.items():
        tree = ast.parse(path.read_text(), str(path))
        graph[name] = set().union(*(_targets(name, n) for n in _imports(tree, lazy)))
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None; depth-first search with the path on a stack."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def reachable(graph: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        for nxt in graph.get(todo.pop(), ()):
            if nxt not in seen:
                seen.add(nxt)
                todo.append(nxt)
    return seen


def raw_names(path: Path) -> set[str]:
    """Every dotted name a file's imports spell (module level or not), as written."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_the_graph_sees_imports():
    graph = import_graph()
    assert "csdseg.config.sections" in graph["csdseg.config.loading"]
    metrics = "csdseg.evaluation.metrics"
    own_name = ast.parse("from csdseg.evaluation import evaluate_labels").body[0]
    own_module = ast.parse("from csdseg.evaluation import groups").body[0]
    assert _targets(metrics, own_name) == {"csdseg.evaluation"}  # its own package's __init__
    assert _targets(metrics, own_module) == {"csdseg.evaluation.groups"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]


def test_no_import_cycle_among_csdseg_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_lazy_import_closes_a_cycle():
    """A function's import of N from M is a hidden cycle when N imports M at module level
    (directly or through others): then M could not import N at the top instead."""
    graph, lazy = import_graph(), import_graph(lazy=True)
    hidden = [f"{m} -> {n} (in a function), while {n} reaches {m} at module level"
              for m, targets in sorted(lazy.items()) for n in sorted(targets)
              if m in reachable(graph, n)]
    assert not hidden, "\n".join(hidden)



def test_the_top_level_holds_parts_of_the_pipeline():
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "cli.py", "device.py", "errors.py"], loose


def test_the_shared_modules_are_leaves():
    """errors.py and device.py may be imported by any module, so they import nothing back."""
    graph = import_graph()
    lazy = import_graph(lazy=True)
    assert graph["csdseg.errors"] | lazy["csdseg.errors"] == set()
    assert graph["csdseg.device"] | lazy["csdseg.device"] <= {"csdseg.errors"}
    assert graph["csdseg.compat"] | lazy["csdseg.compat"] == set()  # csdseg/__init__ imports it


def test_no_code_of_the_project_imports_an_old_path():
    """The paths before the layout answer users for one release (csdseg/compat); the project's
    own code, tests and scripts use the new ones."""
    from csdseg.compat import MOVED

    files = [p for folder in ("csdseg", "tests", "bench", "experiments")
             for p in sorted((REPO / folder).rglob("*.py"))]
    files = [p for p in files if p.name != "test_old_import_paths.py"]
    found = [f"{p.relative_to(REPO)}: {n}" for p in files for n in sorted(raw_names(p) & set(MOVED))]
    assert not found, "\n".join(found)
