"""The rules of the code: the layers (core < ml < session < gui < bench < cli; core, ml and
session without Qt; core without torch), no import circle inside a package, lint (ruff) and
types (mypy), as pyproject.toml configures them."""
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_import_linter_contracts_hold():
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    assert lint, "import-linter is a test dependency"
    result = subprocess.run([lint], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_importing_every_core_module_loads_no_qt_or_torch():
    code = (
        "import importlib, pkgutil, sys, segview.core as core\n"
        "for m in pkgutil.walk_packages(core.__path__, 'segview.core.'):\n"
        "    importlib.import_module(m.name)\n"
        "bad = [n for n in sys.modules if n.split('.')[0] in ('PySide6', 'pyqtgraph', 'torch')"
        " or n.startswith('segview.gui') or n.startswith('segview.ml')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_ruff_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "segview", "tests"], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_finds_nothing():
    result = subprocess.run([sys.executable, "-m", "mypy"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def import_circles(graph, package: str) -> list[frozenset[str]]:
    """The strongly connected components of more than one module among the modules of
    ``package`` (imports under TYPE_CHECKING and inside functions count: grimp sees them)."""
    modules = sorted(m for m in graph.modules if m.startswith(package + "."))
    edges = {m: sorted(i for i in graph.find_modules_directly_imported_by(m) if i.startswith(package + "."))
             for m in modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[frozenset[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in edges[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            component = set()
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.add(top)
                if top == module:
                    break
            if len(component) > 1:
                circles.append(frozenset(component))

    for module in modules:
        if module not in index:
            visit(module)
    return circles


def test_import_circles_finds_a_circle():
    class Graph:
        modules = {"p.a", "p.b", "p.c", "p.d"}

        @staticmethod
        def find_modules_directly_imported_by(module):
            return {"p.a": {"p.b"}, "p.b": {"p.c"}, "p.c": {"p.a"}, "p.d": {"p.a"}}[module]

    assert import_circles(Graph, "p") == [frozenset({"p.a", "p.b", "p.c"})]


def test_no_package_imports_itself_in_a_circle():
    import grimp

    graph = grimp.build_graph("segview")
    found = {c for package in ("segview.core", "segview.ml", "segview.session", "segview.gui", "segview.bench",
                               "segview.cli") for c in import_circles(graph, package)}
    assert not found, f"modules of one package import each other in a circle: {sorted(map(sorted, found))}"
