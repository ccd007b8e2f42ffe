"""The house's rules, read from the imports (all of them: inside functions and under `if TYPE_CHECKING:`
too, since a type is a dependency as well), so that a layering fix stays fixed:

- the UI (`dlaas_tui/`) reaches the backend only through `backend.facade`, and never imports the heavy
  or storage libraries itself;
- the backend never imports the UI;
- no module below the facade imports it (an engine that needs a backend takes one as an argument, or
  an opener: the agent's entry point, a program of its own like the UI, passes the facade's in);
- no engine imports another: what both stand on (how to start and wake the agent, the SQLite ledger)
  is in backend/agentlink/ and backend/ledger/, and only the agent (above both) imports both engines;
- no backend module imports one above its layer (BACKEND_LAYERS, the order docs/architecture.md draws);
- no new import circle: KNOWN_CIRCLES lists the ones still to be taken apart, and must only shrink.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("backend", "dlaas_tui")
HEAVY = {"boto3", "botocore", "kubernetes", "sqlite3", "pynvml", "awscrt"}

# Circles that exist today, each as its sorted files. Remove an entry when its circle is broken; the
# test fails if a listed circle no longer exists (so the list cannot go stale) or a new one appears.
KNOWN_CIRCLES: set[tuple[str, ...]] = set()
# Programs of their own that open a backend through the facade, as the UI does: above it, not below.
# The agent's submission worker is one too: the agent starts it as `python -m backend.agent.submit_worker`.
PROGRAMS = {"backend/agent/__main__.py", "backend/agent/submit_worker.py"}
ENGINES = "backend.engines"
# The backend's order, top down, as docs/architecture.md draws it: a module imports only modules of
# its own layer or of a layer below it. A module belongs to the layer of the longest name it starts with.
BACKEND_LAYERS = (
    ("backend.agent.__main__", "backend.agent.submit_worker"),
    ("backend.facade",),
    ("backend.agent",),
    ("backend.engines",),
    ("backend.notify",),
    ("backend.agentlink",),
    ("backend.ledger",),
    ("backend.budget", "backend.experiments", "backend.eta", "backend.cost", "backend.metrics",
     "backend.packaging", "backend.preflight", "backend.datacache", "backend.samples_seed", "backend.store",
     "backend.manifest", "backend.engine_protocol", "backend.runs", "backend.config"),
    ("backend", "backend.clock", "backend.errors", "backend.paths", "backend.text"),
)


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


@functools.cache
def _modules() -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            out[_module_name(path)] = path
    return out


def _imports(path: Path, module: str) -> set[str]:
    """Every module name this file imports (absolute), whether at the top or inside a function."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom):
                if child.level:
                    base = module.split(".") if is_package else module.split(".")[:-1]
                    base = base[: len(base) - (child.level - 1)]
                    target = ".".join([*base, child.module] if child.module else base)
                else:
                    target = child.module or ""
                found.add(target)
                found.update(f"{target}.{alias.name}" for alias in child.names)
            visit(child)

    visit(ast.parse(path.read_text()))
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges = set()
        for target in _imports(path, name):
            # `from pkg import mod` names a module; `from mod import func` names the module itself
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name:
                edges.add(target)
        graph[name] = edges
    return graph


def _rel(module: str) -> str:
    return _modules()[module].relative_to(REPO).as_posix()


def _circles(graph: dict[str, set[str]]) -> set[tuple[str, ...]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: set[tuple[str, ...]] = set()
    counter = [0]

    def strong(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(tuple(sorted(_rel(m) for m in comp)))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_the_ui_reaches_the_backend_only_through_the_facade():
    graph = _graph()
    offenders = []
    for module, path in _modules().items():
        if not module.startswith("dlaas_tui"):
            continue
        for target in _imports(path, module):
            top = target.split(".")[0]
            if top in HEAVY:
                offenders.append(f"{_rel(module)} imports {target}")
            if top == "backend" and target not in {"backend", "backend.facade"} and not target.startswith(
                    "backend.facade."):
                offenders.append(f"{_rel(module)} imports {target}")
        assert all(not t.startswith("backend") or t == "backend.facade" for t in graph[module]), module
    assert offenders == []


def test_the_ui_loads_no_backend_module_by_name():
    """`importlib.import_module("backend.x")` would pass the import check above: no string in the UI
    may name a backend module other than the facade."""
    backend_modules = {m for m in _modules() if m.startswith("backend.") and m != "backend.facade"}
    offenders = []
    for module, path in _modules().items():
        if not module.startswith("dlaas_tui"):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                name = node.value.partition(":")[0]
                if name in backend_modules:
                    offenders.append(f"{_rel(module)} names {node.value!r}")
    assert offenders == []


def test_inside_the_ui_arrows_point_down():
    """app (and the CLI) -> screens -> widgets: no widget imports a screen or the app, no screen the app."""
    graph = _graph()
    above = {"dlaas_tui.widgets": ("dlaas_tui.screens", "dlaas_tui.app", "dlaas_tui.cli"),
             "dlaas_tui.screens": ("dlaas_tui.app", "dlaas_tui.cli")}
    offenders = [f"{_rel(m)} -> {_rel(t)}" for m, ts in graph.items() for layer, higher in above.items()
                 if m.startswith(layer + ".") for t in ts if t.startswith(higher)]
    assert offenders == []


def test_the_backend_never_imports_the_ui():
    graph = _graph()
    offenders = [f"{_rel(m)} -> {t}" for m, ts in graph.items() if m.startswith("backend") for t in ts
                 if t.startswith("dlaas_tui")]
    assert offenders == []


def test_nothing_below_the_facade_imports_it():
    graph = _graph()
    users = {_rel(m) for m, ts in graph.items() if m.startswith("backend") and m != "backend.facade"
             and "backend.facade" in ts}
    assert users - PROGRAMS == set(), f"upward imports of backend.facade: {sorted(users - PROGRAMS)}"
    assert not any(t in {_module_name(REPO / p) for p in PROGRAMS} for ts in graph.values() for t in ts), \
        "a program's entry point is imported by a module"


def test_engines_and_stores_never_import_the_facade():
    graph = _graph()
    offenders = [f"{_rel(m)} -> backend.facade" for m, ts in graph.items()
                 if m.startswith(("backend.engines.", "backend.store.")) and "backend.facade" in ts]
    assert offenders == []


def _engine_of(module: str) -> str | None:
    """`local` for backend.engines.local.x; None outside an engine package."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and module.startswith(ENGINES + ".") else None


def _cross_engine_imports(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} -> {t}" for m, ts in graph.items() for t in ts
                  if _engine_of(m) and _engine_of(t) and _engine_of(m) != _engine_of(t))


def test_no_engine_imports_another():
    assert _cross_engine_imports(_graph()) == []


def test_the_cross_engine_check_sees_one_engine_importing_another():
    graph = {"backend.engines.kubernetes.sqlite_ledger": {"backend.engines.local.db", "backend.runs"},
             "backend.engines.local.engine": {"backend.engines.local.rows", "backend.ledger.db"},
             "backend.agent.agent": {"backend.engines.local.engine", "backend.engines.kubernetes.keeper"}}
    assert _cross_engine_imports(graph) == [
        "backend.engines.kubernetes.sqlite_ledger -> backend.engines.local.db"]


def test_the_platform_sits_between_the_engines_and_the_agent():
    """backend/ledger and backend/agentlink are below the engines (they import neither engine nor the
    agent); engines reach the agent only through backend/agentlink (start, wake), never backend/agent."""
    graph = _graph()
    offenders = []
    for module, targets in graph.items():
        below = module.startswith(("backend.ledger", "backend.agentlink"))
        for t in targets:
            if below and (t == "backend.agent" or t.startswith((ENGINES, "backend.agent.", "backend.facade"))):
                offenders.append(f"{_rel(module)} -> {t}")
            if _engine_of(module) and (t == "backend.agent" or t.startswith("backend.agent.")):
                offenders.append(f"{_rel(module)} -> {t}")
    assert offenders == []


def _layer(module: str, layers=BACKEND_LAYERS) -> int | None:
    """The index of `module`'s layer (0 = top), by the longest listed name it is or starts with."""
    best, found = -1, None
    for i, names in enumerate(layers):
        for name in names:
            if (module == name or module.startswith(name + ".")) and len(name) > best:
                best, found = len(name), i
    return found


def _upward_imports(graph: dict[str, set[str]], layers=BACKEND_LAYERS) -> list[str]:
    out = []
    for module, targets in graph.items():
        if not module.startswith("backend"):
            continue
        for t in targets:
            if t.startswith("backend") and _layer(t, layers) < _layer(module, layers):
                out.append(f"{module} -> {t}")
    return sorted(out)


def test_every_backend_module_has_a_layer():
    assert [m for m in _modules() if m.startswith("backend") and _layer(m) is None] == []


def test_no_backend_module_imports_one_above_its_layer():
    assert _upward_imports(_graph()) == []


def test_the_layer_check_sees_an_upward_import():
    graph = {"backend.ledger.db": {"backend.runs", "backend.engines.local.rows"},
             "backend.agentlink.control": {"backend.paths"},
             "backend.engines.local.engine": {"backend.agentlink.control", "backend.ledger.db"},
             "backend.engines.kubernetes.keeper": {"backend.agent.agent"}}
    assert _upward_imports(graph) == ["backend.engines.kubernetes.keeper -> backend.agent.agent",
                                      "backend.ledger.db -> backend.engines.local.rows"]


def test_no_new_import_circles():
    circles = _circles(_graph())
    new = circles - KNOWN_CIRCLES
    gone = KNOWN_CIRCLES - circles
    assert not new, f"new import circles: {sorted(new)}"
    assert not gone, f"circles taken apart (well done): remove them from KNOWN_CIRCLES: {sorted(gone)}"


def test_the_circle_finder_finds_a_circle():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    index = {"a": "a.py", "b": "b.py", "c": "c.py", "d": "d.py"}
    global _rel
    saved = _rel
    try:
        _rel = index.__getitem__  # noqa: F811
        assert _circles(graph) == {("a.py", "b.py", "c.py")}
    finally:
        _rel = saved
