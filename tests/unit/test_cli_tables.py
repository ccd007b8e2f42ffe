"""CLI tables: cut to a terminal's width, never cut when piped (`dlaas-tui runs | head`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlaas_tui.cli.output import format_table, print_table

LONG_ID = "training-umatp8zz"
LONG_NAME = "digits-long-run-with-a-very-long-name-that-goes-on-3"
ROW = [LONG_ID, LONG_NAME, "COMPLETED", "", 1, "$0.0008", "0.1234 loss"]
HEADERS = ["ID", "NAME", "STATE", "Q", "GPUS", "COST", "METRIC"]
MANIFEST = {"name": "digits", "gpus": 1, "framework": {"name": "pytorch", "command": "python train.py"},
            "data_stores": [{"id": "s", "type": "local", "training_data": {"container": "d"},
                             "training_results": {"container": "r"}}]}


def test_piped_output_is_never_cut(capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")  # what a terminal would say; a pipe is no terminal
    print_table(HEADERS, [ROW])
    out = capsys.readouterr().out
    assert LONG_ID in out and LONG_NAME in out and "…" not in out


def test_a_terminal_width_cuts_names_but_never_the_id():
    text = format_table(HEADERS, [ROW], 60, keep=(0,))
    line = text.splitlines()[1]
    assert len(line) <= 60
    assert line.startswith(LONG_ID + " ")
    assert "…" in line and LONG_NAME not in line


@pytest.mark.slow  # runs the CLI in a subprocess
def test_runs_command_piped_shows_whole_ids_and_names(tmp_path: Path):
    home = tmp_path / "home"
    home.mkdir()
    (home / "config.toml").write_text('default_profile = "fake"\n[profiles.fake]\nscheduler = "fake"\n')
    env = {**os.environ, "DLAAS_HOME": str(home), "DLAAS_FAKE_SEED": "30", "COLUMNS": "30"}
    out = subprocess.run([sys.executable, "-m", "dlaas_tui", "runs"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    ids = subprocess.run([sys.executable, "-m", "dlaas_tui", "runs", "--json"], env=env, capture_output=True,
                         text=True, timeout=60, check=True).stdout
    import json

    runs = json.loads(ids)
    assert runs
    lines = out.splitlines()[1:]
    assert len(lines) == len(runs)
    for line, run in zip(lines, runs):
        assert line.split()[0] == run["id"]
        assert run["name"] in line
    assert "…" not in out


def test_runs_table_time_says_queued_for_or_ran_for(capsys, monkeypatch):
    """`dlaas-tui runs` (in process, on the fake engine): TIME reads `queued …` for a run never
    admitted and `ran …` since admission, as the TUI's column does."""
    import argparse
    from types import SimpleNamespace

    from backend import clock
    from backend.engines.fake import FakeClock, FakeEngine
    from dlaas_tui.cli.runs_cmd import cmd_runs

    fake = FakeClock()
    engine = FakeEngine(fake, devices=1, gpu_type="H100")
    running = engine.submit_manifest(MANIFEST, name="first", duration=3600)
    fake.advance(5)
    waiting = engine.submit_manifest(MANIFEST, name="second", duration=3600)
    fake.advance(125)
    monkeypatch.setenv("COLUMNS", "200")
    with clock.use(clock.FrozenClock(fake.now())):
        args = argparse.Namespace(limit=None, state=None, json=False, tree=False)
        assert cmd_runs(args, SimpleNamespace(backend=SimpleNamespace(engine=engine))) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:7] == ["ID", "NAME", "STATE", "Q", "GPUS", "TIME", "COST"]
    row = {line.split()[0]: line for line in lines[1:]}
    assert engine.get_run(waiting.id).admitted_at is None
    assert "queued 2m05s" in row[waiting.id]
    admitted = engine.get_run(running.id).admitted_at
    ran = int((fake.now() - admitted).total_seconds())
    assert f"ran {ran // 60}m{ran % 60:02d}s" in row[running.id]


def _cell_by_cell(headers, rows, width=80, keep=()):
    """The table as it was formatted before (cell by cell), to hold the faster one to it."""
    from dlaas_tui.cli.output import safe_text

    cells = [[safe_text("" if c is None else str(c)) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    cuttable = [i for i in range(len(widths)) if i not in keep]
    while width is not None and cuttable and sum(widths) + 2 * (len(widths) - 1) > width:
        i = max(cuttable, key=lambda j: widths[j])
        if widths[i] <= max(4, len(headers[i])):
            break
        widths[i] -= 1

    def fit(text, w):
        return text if len(text) <= w else text[: max(0, w - 1)] + "…"

    lines = ["  ".join(fit(h, w).ljust(w) for h, w in zip(headers, widths)).rstrip()]
    for row in cells:
        lines.append("  ".join(fit(c, w).ljust(w) for c, w in zip(row, widths)).rstrip())
    return "\n".join(lines)


def test_tables_read_as_they_did_cell_by_cell_whatever_the_cells_and_width():
    import random

    rng = random.Random(7)
    words = ["", "a", "run", "training-umatp8zz", LONG_NAME, "é日本", "tab\there", "esc\x1b[31m", "\u202eevil",
             None, 0, 12.5, "$0.0008", "behind 3 runs", "%s", "50%", "%(x)s"]
    for trial in range(300):
        ncols = rng.randint(1, 7)
        headers = [rng.choice(["ID", "NAME", "STATE", "Q", "A-LONG-HEADER", "X"]) for _ in range(ncols)]
        rows = [[rng.choice(words) for _ in range(rng.randint(0, ncols) if trial % 5 == 0 else ncols)]
                for _ in range(rng.randint(0, 6))]
        width = rng.choice([None, 20, 40, 60, 80, 200])
        keep = rng.choice([(), (0,), (0, 1)])
        assert format_table(headers, rows, width, keep) == _cell_by_cell(headers, rows, width, keep), (headers, rows)


def test_show_prints_each_event_message_whole(capsys):
    """`dlaas-tui show RUN`: an event's message is never cut (a script, or a person, needs all of it)."""
    import argparse
    from types import SimpleNamespace

    from backend.engines.fake import FakeClock, FakeEngine
    from backend.facade import RunEvent
    from dlaas_tui.cli.runs_cmd import cmd_show

    fake = FakeClock()
    engine = FakeEngine(fake, devices=1, gpu_type="H100")
    run = engine.submit_manifest(MANIFEST, name="first", duration=3600)
    long = "training data dlaas-samples/pytorch-digits/ is mounted read-only at DATA_DIR \x1b[31m"
    seen = SimpleNamespace(get_run=engine.get_run,
                           events=lambda rid: [*engine.events(rid), RunEvent(rid, fake.now(), None, long)])
    args = argparse.Namespace(run=run.id, json=False)
    assert cmd_show(args, SimpleNamespace(backend=SimpleNamespace(engine=seen))) == 0
    out = capsys.readouterr().out
    assert "training data dlaas-samples/pytorch-digits/ is mounted read-only at DATA_DIR" in out
    assert "\x1b" not in out  # still made safe
