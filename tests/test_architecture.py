"""The house rules of ../shared/DESIGN.md (docs/architecture.md), checked on the source: no import cycle between
modules, the walls between the core, the capabilities and the face, no private name imported across modules, and
third-party libraries behind the one module that owns them."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "tamer"
CORE = {"artifact", "tasks", "report", "loop", "config", "errors", "progress", "version", "device", "cost", "gates"}
CAPABILITIES = {"training", "compression", "protection", "explanation", "robustness", "maintenance", "serving"}
FACE = {"api", "api_base", "api_training", "api_maintenance", "api_update", "pipeline", "stages", "cli", "cli_robustness", "cli_maintenance", "cli_protection", "cli_drift", "cli_device", "cli_serving", "api_serving", "__main__", ""}  # "" is tamer/__init__.py
# a name ending in "." owns every module under it (the registry's migrations, one file per schema revision)
OWNERS = {"captum": {"tamer.explanation.attribute"}, "opacus": {"tamer.protection.privacy"},
          "sqlalchemy": {"tamer.maintenance.database", "tamer.maintenance.schema", "tamer.maintenance.registry",
                         "tamer.maintenance.migrations."},
          "alembic": {"tamer.maintenance.database", "tamer.maintenance.migrations."},
          "jieba": {"tamer.protection.names_zh"}, "probablepeople": {"tamer.protection.names_en"},
          "usaddress": {"tamer.protection.names_en"}}
# torch documents Inductor's settings at this path (torch.compile's `options` did not reach freezing in torch 2.13)
DOCUMENTED_PRIVATE = {"torch._inductor.config"}
MAX_LINES = 420  # "split when a file needs a table of contents (about 400 lines)"


def _name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(SRC.rglob("*.py"))}


def _imports(module: str) -> list[tuple[str, str | None, int]]:
    """(imported module, imported name or None, line) for every import, at module level or in a function;
    imports only a type checker sees (`if TYPE_CHECKING:`) are left out."""
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    hidden = {id(node) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
              for stmt in block.body for node in ast.walk(stmt)}
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    out = []
    for node in ast.walk(tree):
        if id(node) in hidden:
            continue
        if isinstance(node, ast.Import):
            out += [(alias.name, None, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else node.module
            out += [(base, alias.name, node.lineno) for alias in node.names]
    return out


def _target(base: str, name: str | None) -> str:
    """The tamer module an import reaches (a submodule imported by name counts as that submodule)."""
    dep = f"{base}.{name}" if name and f"{base}.{name}" in MODULES else base
    while dep not in MODULES:
        dep = dep.rsplit(".", 1)[0]
    return dep


def _graph() -> dict[str, set[str]]:
    graph = {}
    for module in MODULES:
        deps = {_target(base, name) for base, name, _ in _imports(module) if base.split(".")[0] == "tamer"}
        # a module importing its own package's __init__ is how Python loads it, not a dependency of the package
        graph[module] = {d for d in deps if d != module and not module.startswith(d + ".")}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def _kind(module: str) -> tuple[str, str]:
    top = module.split(".")[1] if "." in module else ""
    if top in CORE:
        return "core", top
    if top in CAPABILITIES:
        return "capability", top
    assert top in FACE, f"{module} is in no part of the layout; add it to DESIGN.md's house and to this test"
    return "face", top


def test_the_checker_finds_a_cycle_and_the_walls_hold_on_a_known_graph():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []
    assert _kind("tamer.loop") == ("core", "loop") and _kind("tamer.compression.verb") == ("capability", "compression")


def test_no_import_cycle_between_modules():
    assert _cycles(_graph()) == []


def test_the_walls():
    broken = []
    for module, deps in _graph().items():
        kind, top = _kind(module)
        for dep in deps:
            dep_kind, dep_top = _kind(dep)
            if kind == "core" and dep_kind != "core":
                broken.append(f"core {module} imports {dep}")
            if kind == "capability" and (dep_kind == "face" or (dep_kind == "capability" and dep_top != top)):
                broken.append(f"capability {module} imports {dep}")
            if module == "tamer.api" and dep in ("tamer.pipeline", "tamer.stages", "tamer.cli"):
                broken.append(f"api imports {dep}")
            if dep == "tamer" and module not in ("tamer.__main__",):
                broken.append(f"{module} imports the package face")
    assert broken == []


def test_no_private_name_is_imported_from_another_module():
    private = []
    for module in MODULES:
        for base, name, line in _imports(module):
            parts = base.split(".") + ([name] if name else [])
            if base in DOCUMENTED_PRIVATE:
                continue
            if any(p.startswith("_") and not p.startswith("__") for p in parts):
                private.append(f"{MODULES[module].relative_to(SRC.parent)}:{line} imports {'.'.join(parts)}")
    assert private == []


@pytest.mark.parametrize("library", sorted(OWNERS))
def test_third_party_libraries_stay_behind_their_owner(library):
    users = {module for module in MODULES for base, _, _ in _imports(module) if base.split(".")[0] == library}
    prefixes = tuple(o for o in OWNERS[library] if o.endswith("."))
    assert {u for u in users if not u.startswith(prefixes)} <= OWNERS[library]


def test_files_are_short_enough_to_read_at_once():
    long = {str(p.relative_to(SRC.parent)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}
