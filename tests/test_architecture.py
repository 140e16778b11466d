"""The house rules that keep the package readable: imports point down the layers only, no module-level import
cycles, and the front door exposes what the README and the docs use."""

from __future__ import annotations

import ast
import itertools
from collections import defaultdict
from pathlib import Path

import pytest

import quest_lightning

PACKAGE = Path(quest_lightning.__file__).parent

# Lower numbers sit lower; a package may import from its own package and from any package with a lower number.
# Packages on one level are independent rooms and must not import each other (docs/architecture.md).
LEVELS = {
    "functional": 0,
    "summary": 0,
    "nn": 1,
    "devices": 2,
    "energy": 3,
    "convert": 4,
    "hardware": 4,
    "metrics": 4,
    "lightning": 5,
    "deploy": 6,
    "report": 6,
    "cli": 7,
}


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, *, top_level_only: bool) -> set[str]:
    """``quest_lightning`` modules imported by ``tree`` (``TYPE_CHECKING`` blocks left out)."""
    found: set[str] = set()

    def visit(node: ast.AST, depth: int) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child, depth)
            return
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("quest_lightning"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").startswith("quest_lightning"):
            found.add(node.module)
            found.update(f"{node.module}.{a.name}" for a in node.names)  # a submodule imported by name
        inner = depth + isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        if top_level_only and inner:
            return
        for child in ast.iter_child_nodes(node):
            visit(child, inner)

    visit(tree, 0)
    return found


def _graph(*, top_level_only: bool) -> dict[str, set[str]]:
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, path in modules.items():
        for target in _imports(ast.parse(path.read_text()), top_level_only=top_level_only):
            while target not in modules and "." in target:
                target = target.rsplit(".", 1)[0]  # `from pkg import name`: the package, unless name is a module
            if target in modules and target != name:
                graph[name].add(target)
    return graph


def test_every_room_has_a_level():
    rooms = {p.name for p in PACKAGE.iterdir() if p.is_dir() and (p / "__init__.py").exists()}
    rooms |= {p.stem for p in PACKAGE.glob("*.py") if p.stem != "__init__"}
    assert rooms <= set(LEVELS), "add the new package to LEVELS and to docs/architecture.md"


def test_imports_point_down_the_layers():
    upward = []
    for source, targets in _graph(top_level_only=False).items():
        room = _room(source)
        if room == "__init__":
            continue  # the front door re-exports from every room
        for target in targets:
            if target == "quest_lightning":
                continue  # the package root holds only the lazy front door and __version__
            other = _room(target)
            if other != room and (other == "__init__" or LEVELS[other] >= LEVELS[room]):
                upward.append(f"{source} -> {target}")
    assert not upward, "imports that point up or sideways:\n" + "\n".join(sorted(upward))


def test_no_module_level_import_cycles():
    graph = _graph(top_level_only=True)
    state: dict[str, int] = {}
    cycles: list[list[str]] = []

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])

    # a package __init__ that re-exports its own submodules is not a cycle of logic
    def nested(a: str, b: str) -> bool:
        return a.startswith(b + ".") or b.startswith(a + ".")

    real = [c for c in cycles if not any(nested(a, b) for a, b in itertools.pairwise(c))]
    assert not real, "import cycles:\n" + "\n".join(" -> ".join(c) for c in real)


@pytest.mark.parametrize("name", quest_lightning.__all__)
def test_the_front_door_opens(name):
    assert getattr(quest_lightning, name) is not None
    assert name in dir(quest_lightning)


def test_the_front_door_stays_light():
    import subprocess
    import sys

    code = "import sys, quest_lightning; print(int(any(m.startswith(('torch', 'lightning')) for m in sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "0"


def test_modules_stay_readable():
    """One job per module: none much over 400 lines (the closing note names any exception and why)."""
    long = {
        str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > 450
    }
    assert not long, long


def test_every_module_imports_without_the_optional_extras():
    """Doctest collection (``--doctest-modules``) imports every module: none may need an extra (``nir``,
    ``neurobench``, ``sklearn``) to be imported, nor act on import (``cli/__main__`` runs only as ``__main__``)."""
    import subprocess
    import sys

    code = (
        "import sys, pkgutil, importlib\n"
        "for m in ('nir', 'nirtorch', 'neurobench', 'sklearn'): sys.modules[m] = None  # as if not installed\n"
        "import quest_lightning\n"
        "names = [m.name for m in pkgutil.walk_packages(quest_lightning.__path__, 'quest_lightning.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(len(names))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert int(done.stdout.strip().splitlines()[-1]) == len(list(PACKAGE.rglob("*.py"))) - 1  # all but the root
