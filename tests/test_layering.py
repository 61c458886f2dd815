"""The package layering of rewriter/, checked on the source with ast (every import, lazy ones included).

Each package imports only the packages below it:
``_errors/_files/_progress/_text/_untrusted/_version`` < ``analysis`` < ``models`` < ``engine`` < ``lab`` <
``optimize`` < ``render`` < ``cli``. The package face (``rewriter/__init__.py``) sits just below ``cli``: no module but
the CLI imports it. Nothing in ``rewriter`` imports ``strategies``; a strategy imports only package faces
(``rewriter``, ``rewriter.analysis``, ``rewriter.engine``, ...), never a module inside one.
"""

from __future__ import annotations

import ast
import pathlib

import networkx as nx
import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
RANKS = {
    "_errors": 0, "_files": 0, "_progress": 0, "_text": 0, "_untrusted": 0, "_version": 0,
    "analysis": 1, "models": 2, "engine": 3, "lab": 4, "optimize": 5, "render": 6, "cli": 8, "__main__": 8,
}  # fmt: skip
FACE_RANK = 7
PACKAGES = [name for name in RANKS if not name.startswith("_")]


def module_name(path: pathlib.Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: pathlib.Path) -> list[tuple[int, str]]:
    """(line, absolute module) of every import in the file, relative ones resolved, `from X import y` as
    X.y when X.y is a module of the project."""
    name = module_name(path)
    package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join([*base, node.module] if node.module else base)
            for alias in node.names:
                full = f"{target}.{alias.name}"
                found.append((node.lineno, full if _is_module(full) else target))
    return found


def _is_module(dotted: str) -> bool:
    path = ROOT.joinpath(*dotted.split("."))
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def rank(module: str) -> float | None:
    parts = module.split(".")
    if parts[0] != "rewriter":
        return None
    if len(parts) == 1:
        return FACE_RANK
    return RANKS.get(parts[1])


def project_files(folder: str) -> list[pathlib.Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_every_rewriter_module_has_a_rank():
    for path in project_files("rewriter"):
        assert rank(module_name(path)) is not None, f"{path} is in no layer of RANKS"


@pytest.mark.parametrize("path", project_files("rewriter"), ids=lambda p: str(p.relative_to(ROOT)))
def test_no_package_imports_one_above_it(path):
    here = module_name(path)
    mine = rank(here)
    upward = []
    for line, target in imports_of(path):
        theirs = rank(target)
        if target.split(".")[0] == "strategies":
            upward.append(f"line {line}: {target} (rewriter never imports strategies)")
        elif theirs is not None and theirs > mine and not here.startswith(target + "."):
            upward.append(f"line {line}: {target}")
    assert not upward, f"{here} imports from above its layer: " + "; ".join(upward)


@pytest.mark.parametrize("path", project_files("strategies"), ids=lambda p: str(p.relative_to(ROOT)))
def test_strategies_import_only_package_faces(path):
    deep = [
        f"line {line}: {target}"
        for line, target in imports_of(path)
        if (target.startswith("rewriter.") and target.count(".") > 1) or target.startswith("rewriter._")
    ]
    assert not deep, f"{path.name} imports rewriter internals: " + "; ".join(deep)


def test_no_import_circle():
    graph = nx.DiGraph()
    for path in project_files("rewriter"):
        here = module_name(path)
        for _, target in imports_of(path):
            if target.startswith("rewriter") and target != here and not here.startswith(target + "."):
                graph.add_edge(here, target)
    # a package face importing its own modules is not a circle; a module importing its face back is
    faces = {module_name(p) for p in project_files("rewriter") if p.name == "__init__.py"}
    cycles = [c for c in nx.simple_cycles(graph) if not (len(c) == 2 and set(c) & faces and _face_pair(c))]
    assert not cycles, "import circles: " + "; ".join(" -> ".join(c) for c in cycles[:5])


def _face_pair(cycle: list[str]) -> bool:
    a, b = cycle
    return a.startswith(b + ".") or b.startswith(a + ".")


@pytest.mark.parametrize("face", [p for p in project_files("rewriter") if p.name == "__init__.py"],
                         ids=lambda p: str(p.relative_to(ROOT)))  # fmt: skip
def test_no_package_face_hides_a_submodule_behind_a_name(face):
    """``from rewriter.analysis.rules import elementwise`` once gave the submodule ``elementwise``, not the
    rule function of that name (issue 10.3): a face must not export a name that is also a submodule."""
    import importlib

    package = importlib.import_module(module_name(face))
    for child in face.parent.iterdir():
        name = (
            child.stem if child.suffix == ".py" else child.name if (child / "__init__.py").is_file() else None
        )
        if name is None or name in ("__init__", "__main__"):
            continue
        submodule = importlib.import_module(f"{package.__name__}.{name}")
        assert getattr(package, name, submodule) is submodule, (
            f"{package.__name__}.{name} is both a submodule and another object exported by the face"
        )
