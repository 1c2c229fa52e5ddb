"""The package's import graph: data flows down (cli → engine → models → layers/metrics), no circles.

Every `import` in every module counts, also those inside functions and under TYPE_CHECKING: a
lazy import that points the wrong way is still a dependency the wrong way.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "defectscope"
# what models may import besides the standard library and third-party packages
MODEL_ALLOWED = ("defectscope.models.base", "defectscope.layers", "defectscope.metrics", "defectscope.checks",
                 "defectscope.errors")  # errors: a leaf (UserError), as layers may use it
# packages that sit at the bottom and import nothing above them
BOTTOM = {"metrics": (), "layers": ("metrics", "checks", "errors"),
          "data": ("checks", "geometry", "errors", "resampling"),
          "checks": (), "geometry": (), "errors": (), "heatmap": (), "resampling": ()}


def module_name(path: Path, root: Path = SRC) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, root: Path = SRC) -> set[str]:
    """Every defectscope module `path` imports (resolving relative imports)."""
    tree = ast.parse(path.read_text(), str(path))
    here = module_name(path, root)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith(PACKAGE)}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.startswith(PACKAGE):
                found.add(base)
                found |= {f"{base}.{a.name}" for a in node.names}
    return found


def build_graph(root: Path) -> dict[str, set[str]]:
    modules = {module_name(p, root): p for p in root.rglob("*.py")}
    edges = {}
    for name, path in modules.items():
        # an imported name that is not a module (a function, a class) counts as its module
        targets = {t if t in modules else t.rpartition(".")[0] for t in imports_of(path, root)} - {name}
        edges[name] = {t for t in targets if t in modules}
    return edges


def find_cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    return build_graph(SRC)


def test_models_import_only_the_contract_layers_and_metrics(graph):
    wrong = []
    for name, targets in graph.items():
        if not name.startswith("defectscope.models.") or name == "defectscope.models.base":
            continue
        own = ".".join(name.split(".")[:3])  # defectscope.models.<model>
        for target in targets:
            if target.startswith(own) or target.startswith(MODEL_ALLOWED) or target == "defectscope.models":
                continue
            if name == "defectscope.models" and target.startswith("defectscope.models."):
                continue  # the registry imports every model
            wrong.append(f"{name} -> {target}")
    assert not wrong, "models import upward:\n" + "\n".join(sorted(wrong))


def test_nothing_below_the_command_line_imports_it(graph):
    wrong = [f"{n} -> {t}" for n, ts in graph.items() for t in ts
             if t.startswith("defectscope.cli") and not n.startswith(("defectscope.cli", "defectscope.__main__"))]
    assert not wrong, "\n".join(sorted(wrong))


def test_the_bottom_packages_import_nothing_above_them(graph):
    wrong = []
    for name, targets in graph.items():
        package = name.split(".")[1] if "." in name else ""
        if package not in BOTTOM:
            continue
        allowed = (f"defectscope.{package}", *(f"defectscope.{p}" for p in BOTTOM[package]))
        wrong += [f"{name} -> {t}" for t in targets if not t.startswith(allowed)]
    assert not wrong, "\n".join(sorted(wrong))


def test_there_is_no_import_circle(graph):
    """Between modules, and between the package's folders (engine ↔ models would be one too)."""

    # a package's __init__ re-exports its own modules: that is not a circle of the design
    modules = {n: {t for t in ts if not (n == t.rpartition(".")[0] and n.count(".") < t.count("."))}
               for n, ts in graph.items()}
    found = find_cycle(modules)
    assert found is None, "import circle: " + " -> ".join(found)

    def folder(name: str) -> str:
        parts = name.split(".")
        return ".".join(parts[:2]) if len(parts) > 1 else name

    folders: dict[str, set[str]] = {}
    for name, targets in graph.items():
        folders.setdefault(folder(name), set()).update(folder(t) for t in targets if folder(t) != folder(name))
    # the top-level __init__ (its lazy re-export included) counts like any folder: it may import
    # down, and nothing may import it back (`defectscope.version` holds what every module may name)
    found = find_cycle(folders)
    assert found is None, "circle between folders: " + " -> ".join(found)


def test_nothing_imports_the_package_root(graph):
    """`from defectscope import X` from inside would close a circle with the root's lazy re-export."""
    wrong = sorted(f"{n} -> {PACKAGE}" for n, ts in graph.items() if PACKAGE in ts and n != PACKAGE)
    assert not wrong, "\n".join(wrong)


def test_the_walk_sees_a_circle_and_an_upward_import_when_there_are_some(tmp_path):
    """The graph tests can fail: a scratch package with a circle and a model importing the engine."""
    pkg = tmp_path / PACKAGE
    (pkg / "models" / "toy").mkdir(parents=True)
    (pkg / "engine").mkdir()
    for folder in (pkg, pkg / "models", pkg / "models" / "toy", pkg / "engine"):
        (folder / "__init__.py").write_text("")
    (pkg / "engine" / "run.py").write_text("from defectscope.models.toy import model\n")
    (pkg / "models" / "toy" / "model.py").write_text("from ...engine.run import run\n")  # relative, upward
    edges = build_graph(tmp_path)
    assert edges["defectscope.models.toy.model"] == {"defectscope.engine.run"}
    assert find_cycle(edges) == ["defectscope.engine.run", "defectscope.models.toy.model", "defectscope.engine.run"]
