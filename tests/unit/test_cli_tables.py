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
