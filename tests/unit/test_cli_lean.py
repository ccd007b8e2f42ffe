"""The light paths of the CLI and the agent, held structurally (which modules load), not by timing.

`dlaas-tui runs` and `dlaas-tui submit` are called from scripts in loops: they build only their own
command's parser and read the config without pydantic; `runs` lists without the manifest models,
YAML, pynvml or the TUI. The command table that makes this possible must match what the command
modules register.
"""
from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from backend import clock
from backend.engines.local.nvml import NVIDIA_DEVICE_NODES
from dlaas_tui import cli

# pathlib imports urllib.parse (which imports ipaddress), fnmatch and ntpath: ~4 ms of every command.
PATHLIB_AND_WHAT_IT_IMPORTS = ("pathlib", "urllib", "urllib.parse", "ipaddress", "fnmatch", "ntpath")
HEAVY = ("pydantic", "pydantic_core", "yaml", "textual", "rich", "boto3", "botocore", "kubernetes", "pynvml")


def test_the_command_table_matches_what_each_module_registers():
    registered: dict[str, str] = {}
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers()
    for name in cli.COMMAND_MODULES:
        before = set(sub.choices)
        importlib.import_module(f"dlaas_tui.cli.{name}").register(sub)
        registered.update(dict.fromkeys(set(sub.choices) - before, name))
    assert registered == cli.COMMANDS


@pytest.mark.parametrize(("argv", "command"), [
    (["runs"], "runs"),
    (["submit", "m.yml"], "submit"),
    (["-p", "lab", "runs", "--json"], "runs"),
    (["--profile", "runs", "--read-only", "store", "ls"], "store"),  # a profile named like a command
    (["--profile=lab", "-plab", "agent", "status"], "agent"),
    (["--help"], None),
    (["--prof", "lab", "runs"], None),  # an abbreviation: the whole parser answers, as before
    (["-p"], None),
])
def test_the_command_is_found_past_plain_global_options(argv, command):
    assert cli._command(argv) == command


def _child_code(args: list[str], *, whole_names: bool = False) -> str:
    """A child program running `dlaas-tui ARGS` in-process, then printing `LOADED` with the modules
    it loaded (top-level packages, or `whole_names`) and the exit code. No agent is started (the
    engine would start one for a listing): nothing to stop after."""
    names = "sys.modules" if whole_names else "{m.split('.')[0] for m in sys.modules}"
    return (
        "import sys\nimport backend.agentlink.control as control\n"
        "control.ensure_agent = lambda *a, **k: 0\n"
        "from dlaas_tui.cli import main\n"
        f"rc = main({args!r})\n"
        "sys.stdout.flush()\n"
        f"print('\\nLOADED', ' '.join(sorted({names})), rc)\n"
    )


def _loaded(args: list[str], home) -> set[str]:
    """Top-level packages loaded by `dlaas-tui ARGS` (run in-process in a child, then listed)."""
    code = _child_code(args)
    env = {**os.environ, "DLAAS_HOME": str(home)}
    env.pop("DLAAS_FAKE_NVML", None)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    listing, _, line = out.stdout.rpartition("LOADED ")
    assert line.split()[-1] == "0", out.stdout + out.stderr
    assert args != ["runs"] or "lean-2" in listing, listing
    return set(line.split()[:-1])


def _seed(home) -> None:
    """A finished, a running and a queued run: the listing prices, places and estimates them."""
    from backend.ledger import db

    conn = db.connect(home / "state" / "state.db")
    now = clock.time()
    with db.write(conn):
        seq = db.next_seq(conn)
        for i, state in enumerate(("COMPLETED", "PROCESSING", "QUEUED")):
            db.insert_run(conn, {
                "id": f"training-lean000{i}", "name": f"lean-{i}", "profile": "local", "state": "QUEUED",
                "priority": "normal", "prio": 0, "submitted_at": now - 100 + i, "gpus": 0, "learners": 1,
                "spec": {"command": "true", "max_duration_s": 600}, "results_bucket": "b"}, seq)
            if state != "QUEUED":
                conn.execute("UPDATE runs SET state = ?, admitted_at = ?, started_at = ?, finished_at = ? "
                             "WHERE id = ?", (state, now - 90, now - 90, now - 10 if state == "COMPLETED" else None,
                                              f"training-lean000{i}"))
    conn.close()


def test_runs_lists_without_heavy_modules(tmp_path):
    (tmp_path / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n[prices]\ncpu = 0.5\n")
    os.chmod(tmp_path / "config.toml", 0o600)
    _seed(tmp_path)
    heavy = set(HEAVY)
    if any(map(os.path.exists, NVIDIA_DEVICE_NODES)):
        heavy.discard("pynvml")  # a GPU box: NVML counts its devices for the queue's estimates
    loaded = _loaded(["runs"], tmp_path)
    assert not loaded & heavy, loaded & heavy
    assert "sqlite3" in loaded  # it did read the ledger


def test_help_of_one_command_is_the_same_as_from_the_whole_parser(capsys):
    for argv in (["submit", "--help"], ["runs", "-h"], ["-p", "x", "store", "ls", "--help"],
                 ["runs", "--limit", "x"], ["halt"], ["experiments", "--bogus"]):
        outs = []
        for parser in (cli.build_parser(), cli.build_parser((cli.COMMANDS[cli._command(argv)],),
                                                             only=cli._command(argv))):
            with pytest.raises(SystemExit) as stop:
                parser.parse_args(argv)
            outs.append((stop.value.code, *capsys.readouterr()))
        assert outs[0] == outs[1] and "usage: dlaas-tui" in "".join(outs[0][1:])


def test_one_command_parses_as_the_whole_parser_does():
    for argv in (["submit", "a.yml", "b.yml", "--after", "@", "--hold", "--json"], ["-p", "lab", "runs", "--tree"],
                 ["halt", "r1", "--no-wait"], ["--read-only", "store", "ls", "bucket/x"]):
        command = cli._command(argv)
        whole = vars(cli.build_parser().parse_args(argv))
        one = vars(cli.build_parser((cli.COMMANDS[command],), only=command).parse_args(argv))
        assert whole == one


def _submittable(home: Path) -> Path:
    """A home with two cpu slots, a model folder `home/model` and a manifest to submit with it."""
    (home / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n")
    os.chmod(home / "config.toml", 0o600)
    (home / "model").mkdir()
    (home / "model" / "train.py").write_text("print('hi')\n")
    manifest = home / "m.yaml"
    manifest.write_text("name: lean\ngpus: 0\ndata_stores:\n  - id: d\n    type: local\n"
                        "    training_data: {container: lean-data}\n    training_results: {container: lean-results}\n"
                        "framework:\n  name: python\n  command: 'true'\n")
    return manifest


def test_submit_loads_neither_the_tui_nor_cloud_clients_nor_the_configs_pydantic_models(tmp_path):
    manifest = _submittable(tmp_path)
    code = (
        "import sys\nimport backend.agentlink.control as control\n"
        "control.ensure_agent = lambda *a, **k: 0\n"
        "from dlaas_tui.cli import main\n"
        f"rc = main(['submit', {str(manifest)!r}, '--model', {str(tmp_path / 'model')!r}])\n"
        "sys.stdout.flush()\n"
        "print('\\nLOADED', ' '.join(sorted(m for m in sys.modules if '.' not in m or m.startswith('backend.'))), rc)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DLAAS_HOME": str(tmp_path)})
    listing, _, line = out.stdout.rpartition("LOADED ")
    assert line.split()[-1] == "0" and "training-" in listing, out.stdout + out.stderr
    loaded = set(line.split()[:-1])
    # The manifest's own validation is pydantic's (it words the FILE:LINE:COL problems); the config's is not.
    assert "backend.manifest" in loaded and "backend.config_schema" not in loaded
    assert not loaded & {"textual", "rich", "boto3", "botocore", "kubernetes", "pynvml"}


def test_the_agents_modules_and_its_backend_load_nothing_heavy(tmp_path):
    """The agent stays resident: what it imports it keeps (RSS target 30 MB, bench_scheduler.py)."""
    (tmp_path / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n[notify]\ncommand = 'true'\n")
    os.chmod(tmp_path / "config.toml", 0o600)
    code = (
        "import sys\nimport backend.agent.agent, backend.engines.local.executor, backend.notify\n"
        "from backend.facade import open_backend\nb = open_backend()\nassert b.config.notify.argv() == ['true']\n"
        f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "DLAAS_HOME": str(tmp_path)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.slow  # it starts the agent (and the agent its submission worker)
def test_submit_through_a_running_agent_loads_neither_pydantic_nor_yaml_nor_sqlite(tmp_path):
    """With the agent up, `submit` hands the request to its submission worker (backend/agentlink/handoff.py):
    the CLI process itself reads no manifest and opens no database."""
    import signal
    import time

    manifest = _submittable(tmp_path)
    env = {**os.environ, "DLAAS_HOME": str(tmp_path)}
    started = subprocess.run([sys.executable, "-m", "dlaas_tui", "agent", "start"], capture_output=True,
                             text=True, env=env, timeout=300)
    assert started.returncode == 0, started.stderr
    agent = int(started.stdout.split()[-1])
    try:
        code = (
            "import sys\nfrom dlaas_tui.cli import main\n"
            f"rc = main(['submit', {str(manifest)!r}, '--model', {str(tmp_path / 'model')!r}])\n"
            "sys.stdout.flush()\n"
            "print('\\nLOADED', ' '.join(sorted({m.split('.')[0] for m in sys.modules})), rc)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
        listing, _, line = out.stdout.rpartition("LOADED ")
        assert line.split()[-1] == "0" and "training-" in listing, out.stdout + out.stderr
        rid = listing.split()[0]
        assert f"submitted {rid}" in (tmp_path / "state" / "agent.log").read_text()  # the worker took it
        loaded = set(line.split()[:-1])
        assert not loaded & (set(HEAVY) | {"sqlite3"}), loaded & (set(HEAVY) | {"sqlite3"})
    finally:
        os.kill(agent, signal.SIGTERM)
        deadline = time.monotonic() + 120
        log = tmp_path / "state" / "agent.log"
        while time.monotonic() < deadline and "the agent stopped, exiting" not in log.read_text():
            time.sleep(0.05)
    assert "the agent stopped, exiting" in log.read_text()  # its submission worker went with it


def test_runs_lists_finished_and_queued_runs_without_the_planner_costs_devices_or_dataclasses(tmp_path):
    """The bench's listing (finished and queued runs, nothing billed): the queue's positions and ETAs
    need neither admission's planner, the sweep policies, the price rules, the devices' records, the
    object store nor a socket; no module on the way builds a dataclass (~20 ms at import) or imports
    typing (~2.5 ms; `TYPE_CHECKING = False` stands in for it) or pathlib (~4 ms with urllib.parse,
    ipaddress, fnmatch and ntpath: the state's files are found as strs); and the config, read once
    before, comes from its kept reading, not tomllib. `runs --json` finds its files as `runs` does."""
    (tmp_path / "config.toml").write_text("[profiles.local]\ncpu_slots = 2\n")
    os.chmod(tmp_path / "config.toml", 0o600)
    from backend.ledger import db

    conn = db.connect(tmp_path / "state" / "state.db")
    now = clock.time()
    with db.write(conn):
        seq = db.next_seq(conn)
        for i in range(6):
            db.insert_run(conn, {
                "id": f"training-lean100{i}", "name": f"lean-{i}", "profile": "local",
                "state": "COMPLETED" if i % 3 == 0 else "QUEUED", "priority": "normal", "prio": 0,
                "submitted_at": now - 100 + i, "gpus": 64, "learners": 1, "cost_micro": 800,
                "spec": {"command": "true", "max_duration_s": 600}, "results_bucket": "b"}, seq)
    conn.close()
    code = _child_code(["runs"], whole_names=True)
    env = {**os.environ, "DLAAS_HOME": str(tmp_path)}
    env.pop("DLAAS_FAKE_NVML", None)
    for _ in range(2):  # the second time as every time after: the config's reading kept
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    listing, _, line = out.stdout.rpartition("LOADED ")
    assert line.split()[-1] == "0" and "behind 1 run" in listing, out.stdout + out.stderr
    loaded = set(line.split()[:-1])
    unwanted = {"dataclasses", "inspect", "socket", "shutil", "typing", "signal", "tomllib", "platformdirs", "locale",
                "gettext",
                "backend.engine_protocol", "backend.devices", "backend.cost", "backend.store.base",
                "backend.engines.local.scheduler", "backend.engines.local.sweeps", "backend.config_schema",
                *PATHLIB_AND_WHAT_IT_IMPORTS}
    gpu_box = any(map(os.path.exists, NVIDIA_DEVICE_NODES))
    if gpu_box:  # a GPU box: NVML's devices are read for the ETAs, with what pynvml itself imports
        unwanted -= {"dataclasses", "inspect", "typing", "backend.devices", "backend.cost", *_what_pynvml_loads()}
    assert not loaded & unwanted, loaded & unwanted
    out = subprocess.run([sys.executable, "-c", _child_code(["runs", "--json"], whole_names=True)],
                         capture_output=True, text=True, env=env, timeout=120)
    listing, _, line = out.stdout.rpartition("LOADED ")
    assert line.split()[-1] == "0" and '"training-lean1005"' in listing, out.stdout + out.stderr
    loaded = set(line.split()[:-1])
    unwanted = {*PATHLIB_AND_WHAT_IT_IMPORTS, "backend.engine_protocol", "typing"}  # finished runs pre-encoded
    if gpu_box:
        unwanted -= {"typing", *_what_pynvml_loads()}
    assert not loaded & unwanted, loaded & unwanted


def _what_pynvml_loads() -> set[str]:
    """The modules `import pynvml` loads in a bare interpreter (ctypes.util brings shutil, fnmatch,
    subprocess, signal...): on a GPU box the listing loads them to count the devices."""
    code = "import sys\nbefore = set(sys.modules)\nimport pynvml\nprint(' '.join(set(sys.modules) - before))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    return set(out.stdout.split())


@pytest.mark.parametrize("columns", [None, "50", "200", "0", "x"])
def test_help_is_as_wide_as_shutil_would_make_it(monkeypatch, columns):
    import shutil

    if columns is None:
        monkeypatch.delenv("COLUMNS", raising=False)
    else:
        monkeypatch.setenv("COLUMNS", columns)
    assert cli._terminal_columns() == shutil.get_terminal_size().columns


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the XDG folders are read by hand on Linux only")
def test_runs_in_the_users_own_folders_loads_neither_platformdirs_nor_tomllib_the_second_time(tmp_path):
    """No DLAAS_HOME: the folders come from HOME and the XDG rules (backend/paths.py), and an
    unchanged config is read from its kept reading."""
    config = tmp_path / ".config" / "dlaas-tui" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text("[profiles.local]\ncpu_slots = 2\n")
    code = _child_code(["runs"])
    env = {k: v for k, v in os.environ.items()
           if k not in ("DLAAS_HOME", "DLAAS_FAKE_NVML", "XDG_CONFIG_HOME", "XDG_DATA_HOME", "XDG_CACHE_HOME")}
    env["HOME"] = str(tmp_path)
    for first in (True, False):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
        _, _, line = out.stdout.rpartition("LOADED ")
        assert line.split()[-1] == "0", out.stdout + out.stderr
        loaded = set(line.split()[:-1])
        assert "platformdirs" not in loaded
        assert ("tomllib" in loaded) is first, loaded
    assert (tmp_path / ".local" / "share" / "dlaas-tui" / "state.db").is_file()
    assert (tmp_path / ".cache" / "dlaas-tui" / "config.read").is_file()


def test_argparse_comes_in_without_gettext_and_leaves_the_real_one_to_others():
    code = ("import sys\nimport dlaas_tui.cli, argparse\nloaded = 'gettext' in sys.modules\n"
            "import gettext\nprint(loaded, argparse._('x'), argparse.ngettext('a', 'b', 2), "
            "gettext.__file__.endswith('gettext.py'), hasattr(gettext, 'translation'))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["False", "x", "b", "True", "True"], out.stdout + out.stderr
