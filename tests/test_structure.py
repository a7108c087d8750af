"""The package's shape: docs/architecture.md lists every module, no import cycles, no
private names across modules, the embedding path free of evaluation and training code."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "rdconfvae"
ARCHITECTURE = ROOT / "docs" / "architecture.md"
# Folders with their own docs (benchmarks, data build, training): listed as folders only.
OWN_DOCS = {"bench", "data", "train"}
# The embedding path: what one embed() call can import.
EMBEDDING_PATH = ("model", "embedding", "geometry", "forcefield")
NOT_ON_EMBEDDING_PATH = ("evaluation", "bench", "train", "data", "integrations", "batch")


def _modules() -> dict[str, Path]:
    mods = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        mods[name] = path
    return mods


def _folder(module: str) -> str:
    """The package folder of a dotted module name: ``rdconfvae.geometry.solver`` -> ``geometry``
    (``""`` for the top level)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else ""


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(path: Path, mods: dict[str, Path]) -> list[tuple[str, str]]:
    """(imported module, imported name) for every import that runs (not under
    ``if TYPE_CHECKING``), at module level or inside functions."""
    found: list[tuple[str, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] == "rdconfvae":
                for alias in node.names:
                    sub = f"{node.module}.{alias.name}"
                    found.append((sub, "") if sub in mods else (node.module, alias.name))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "rdconfvae":
                    found.append((alias.name, ""))
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    mods = _modules()
    return {name: {m for m, _ in _imports(path, mods) if m in mods} for name, path in mods.items()}


def test_architecture_doc_lists_every_module_and_no_other() -> None:
    text = ARCHITECTURE.read_text()
    listed: set[str] = set()
    section = ""
    for line in text.splitlines():
        heading = re.match(r"\*\*`(\w+)/`\*\*", line)
        if heading:
            section = heading.group(1)
        elif line.startswith(("**Top level**", "#")):
            section = ""
        for name in re.findall(r"`(\w+\.py)`", line):
            listed.add(f"{section}/{name}" if section else name)
    actual = set()
    for path in PACKAGE.rglob("*.py"):
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in OWN_DOCS or (len(rel.parts) == 2 and rel.name == "__init__.py"):
            continue
        actual.add(str(rel.as_posix()))
    assert actual - listed == set(), "modules missing from docs/architecture.md"
    assert listed - actual == set(), "docs/architecture.md lists modules that do not exist"
    for folder in OWN_DOCS:
        assert f"`{folder}/`" in text


def test_no_import_cycles() -> None:
    graph = _graph()
    graph["rdconfvae"] = set()  # the package's lazy names import on first use, not on import
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt) :] + [nxt]
                raise AssertionError("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_no_private_names_across_modules() -> None:
    mods = _modules()
    crossing = [
        f"{name} imports {module}.{imported}"
        for name, path in mods.items()
        for module, imported in _imports(path, mods)
        if imported.startswith("_") and not imported.startswith("__")
    ]
    assert crossing == []


def test_embedding_path_imports_no_evaluation_training_or_batch_code() -> None:
    graph = _graph()
    start = ["rdconfvae.api", "rdconfvae.constrained", "rdconfvae.params"]
    start += [m for m in graph if _folder(m) in EMBEDDING_PATH]
    seen: set[str] = set()
    todo = list(start)
    while todo:
        mod = todo.pop()
        if mod not in seen:
            seen.add(mod)
            todo.extend(graph[mod])
    bad = sorted(m for m in seen if _folder(m) in NOT_ON_EMBEDDING_PATH)
    assert bad == [], f"reachable from embed(): {bad}"


def test_stages_upstream_do_not_import_the_orchestration() -> None:
    graph = _graph()
    for mod, deps in graph.items():
        if _folder(mod) in ("model", "geometry", "forcefield"):
            assert not [d for d in deps if d.startswith("rdconfvae.embedding")], mod
