"""Hostile and careless input through the real CLI: clear errors and exit 2, never an internal error.

Each test injects one fault a user can cause (a file where a folder belongs, a damaged database, a
negative count, a reader that hangs up, a model folder linking to /etc/passwd, bidi controls in a
name) and checks the promise: one clear line, the documented exit code, nothing lost or leaked.
"""
from __future__ import annotations

import json
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from .local_helpers import engine, manifest, runs_json, seed_home, stop_everything, wait_for

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def home(dlaas_home: Path):
    seed_home(dlaas_home, "[profiles.local]\ncpu_slots = 1\n")
    yield dlaas_home
    stop_everything(dlaas_home)


def submit(cli, path: Path, *args: str) -> str:
    res = cli("submit", str(path), *args)
    assert res.returncode == 0, res.stderr
    return res.stdout.strip()


def one_error(res, code: int) -> str:
    assert res.returncode == code, (res.returncode, res.stderr)
    assert "internal error" not in res.stderr and "Traceback" not in res.stderr
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def test_results_into_a_file_is_refused_and_leaves_the_file(home, tmp_path, cli):
    rid = submit(cli, manifest(tmp_path, command="true"))
    target = tmp_path / "hostname"
    target.write_text("box\n")
    msg = one_error(cli("results", rid, str(target)), 2)
    assert str(target) in msg and "not a folder" in msg
    assert target.read_text() == "box\n"
    msg = one_error(cli("results", rid, str(target / "sub")), 2)
    assert "is a file" in msg


def test_a_damaged_state_database_is_named_with_the_way_out(home, tmp_path, cli):
    db = home / "state" / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.write_bytes(os.urandom(8192))
    for args in (("runs",), ("show", "training-aaaaaaaa"), ("submit", str(manifest(tmp_path)))):
        msg = one_error(cli(*args), 1)
        assert str(db) in msg and "damaged" in msg and "mv " in msg and "agent stop" in msg


def test_a_database_damaged_past_its_header_is_named_too(home, tmp_path, cli):
    for _ in range(3):
        submit(cli, manifest(tmp_path, command="sleep 60"))
    stop_everything(home)
    db = home / "state" / "state.db"
    with sqlite3.connect(db) as conn:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    assert pages > 2
    with open(db, "r+b") as fh:  # keep the header page, scribble over every page after it
        fh.seek(size)
        fh.write(b"\xff" * size * (pages - 1))
    msg = one_error(cli("runs"), 1)
    assert str(db) in msg and "damaged" in msg


@pytest.mark.parametrize("args, words", [
    (("runs", "--limit", "-5"), "--limit -5"),
    (("runs", "--limit", "0"), "--limit 0"),
    (("logs", "training-aaaaaaaa", "--tail", "-1"), "--tail -1"),
    (("wait", "training-aaaaaaaa", "--timeout", "-3"), "--timeout -3"),
])
def test_negative_counts_are_refused(home, cli, args, words):
    assert words in one_error(cli(*args), 2)


def test_a_reader_that_hangs_up_gets_no_broken_pipe_message(home):
    bucket = home / "store" / "many"
    bucket.mkdir(parents=True)
    for i in range(4000):  # well past a pipe's buffer
        (bucket / f"object-{i:05d}.txt").write_bytes(b"")
    for extra in ((), ("--json",)):
        proc = subprocess.Popen([sys.executable, "-m", "dlaas_tui", "store", "ls", "many", "--limit", "0",
                                 *extra], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        assert proc.stdout.readline()  # `| head -1`
        proc.stdout.close()
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=120) == 0, err
        assert err == "", err


def test_a_zip_slip_model_exits_2_like_any_refused_input(home, tmp_path, cli):
    import zipfile

    bad = tmp_path / "bad.zip"
    with zipfile.ZipFile(bad, "w") as zf:
        zf.writestr("train.py", "print('hi')\n")
        zf.writestr("../evil.py", "print('escaped')\n")
    msg = one_error(cli("submit", str(manifest(tmp_path)), "--model", str(bad)), 2)
    assert "C102" in msg and "../evil.py" in msg


def test_a_run_halted_while_queued_costs_nothing_even_of_an_unpriced_type(home, tmp_path, cli):
    holder = submit(cli, manifest(tmp_path, "holder", command="sleep 60"))
    wait_for(lambda: engine().get_run(holder).state.value in ("PROCESSING", "DOWNLOADING"), timeout=120)
    # L4 has no default price: a run of it that ran would show "unpriced"; one that never ran is $0.
    queued = submit(cli, manifest(tmp_path, "waiting", command="true", gpu_type="L4"))
    assert engine().get_run(queued).state.value == "QUEUED"
    assert cli("halt", queued).returncode == 0
    run = engine().get_run(queued)
    assert run.state.value == "HALTED" and run.cost_micro_usd == 0
    row = next(r for r in runs_json(cli) if r["id"] == queued)
    assert row["cost_usd"] == 0
    listing = cli("runs").stdout
    line = next(ln for ln in listing.splitlines() if ln.startswith(queued))
    assert "$0.0000" in line and "unpriced" not in line
    assert "$0.0000" in cli("show", queued).stdout


def test_a_model_folder_linking_outside_itself_is_refused_naming_the_link(home, tmp_path, cli):
    folder = tmp_path / "leaky"
    (folder / "model").mkdir(parents=True)
    (folder / "model" / "train.py").write_text("print('hi')\n")
    (folder / "model" / "leak.txt").symlink_to("/etc/passwd")
    (folder / "manifest.yaml").write_text(manifest(tmp_path, command="true").read_text())
    msg = one_error(cli("submit", str(folder / "manifest.yaml")), 2)
    assert "C102" in msg and "'leak.txt'" in msg and "/etc/passwd" in msg
    assert runs_json(cli) == []
    assert not list((home / "store").glob("tiny-results/*/_submitted_code/model.zip"))


def test_a_home_the_app_creates_is_private(tmp_path, cli):
    fresh = tmp_path / "not-yet" / "home"
    res = cli("runs", env={"DLAAS_HOME": str(fresh)})
    try:
        assert res.returncode == 0, res.stderr
        for d in (fresh.parent, fresh, fresh / "state"):
            assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    finally:
        stop_everything(fresh)


def test_bidi_controls_are_escaped_in_runs_and_manifest_validate(home, tmp_path, cli):
    name = "safe\u202eexe.txt"
    path = manifest(tmp_path, command="true", name="ok")
    path.write_text(path.read_text().replace("name: ok", f"name: '{name}'"))
    rid = submit(cli, path)
    for res in (cli("runs"), cli("show", rid), cli("manifest", "validate", str(path))):
        assert res.returncode == 0, res.stderr
        assert "\u202e" not in res.stdout + res.stderr
        assert "safe\\u202eexe.txt" in res.stdout
    assert json.loads(cli("runs", "--json").stdout)[0]["name"] == name  # JSON keeps the data as it is


def test_a_database_locked_past_the_busy_timeout_is_a_clear_error(home):
    """Fault injection in-process: the error the CLI would get, through the same translation."""
    from backend.ledger import db as state
    from backend.facade import explain_failure, get_paths

    locked = sqlite3.OperationalError("database is locked")
    known = explain_failure(locked)
    assert known is not None and known.exit_code == 1
    assert str(get_paths().db_file) in str(known) and "run it again" in str(known)
    assert explain_failure(ValueError("a bug")) is None
    assert state.damaged(sqlite3.DatabaseError("file is not a database"))
    assert not state.damaged(locked) and not state.busy(sqlite3.DatabaseError("file is not a database"))


def test_a_home_that_cannot_hold_config_or_state_is_a_clear_error(tmp_path, cli):
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    msg = one_error(cli("runs", env={"DLAAS_HOME": str(a_file / "home")}), 2)
    assert str(a_file / "home" / "config.toml") in msg and "cannot read the config" in msg
    home = tmp_path / "home"
    home.mkdir()
    (home / "state").write_text("a file where the state folder belongs")
    msg = one_error(cli("runs", env={"DLAAS_HOME": str(home)}), 1)
    assert str(home / "state") in msg and "DLAAS_HOME" in msg
