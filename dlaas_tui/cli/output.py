"""Printing for the CLI: JSON, text tables that fit 80 columns, and transfer progress bars."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (~2.5 ms) on the CLI's path
if TYPE_CHECKING:
    from typing import Any
    from backend.facade import Transfer


def print_json(obj: Any) -> None:
    # Indented JSON goes through the pure-Python encoder; a long list (10,000 runs) is written one
    # compact item per line instead, which is still valid, greppable JSON and ~10x faster.
    if isinstance(obj, list) and len(obj) > 200:
        write = sys.stdout.write
        write("[\n")
        last = len(obj) - 1
        for i, item in enumerate(obj):
            write(json.dumps(item, default=str))
            write(",\n" if i < last else "\n")
        write("]\n")
        return
    json.dump(obj, sys.stdout, indent=2, default=str)
    sys.stdout.write("\n")


def print_json_encoded(items: Sequence[str]) -> None:
    """A JSON list from items that are already encoded JSON values (one per line)."""
    write = sys.stdout.write
    write("[\n" if items else "[")
    write(",\n".join(items))
    write("\n]\n" if items else "]\n")


def safe_text(text: str) -> str:
    """Make control characters (and bidi controls) visible so data never drives the terminal: the
    TUI's escaping (backend/text.py), in its ASCII rendering (`\\x1b`, `\\u202e`) for pipes."""
    if text.isprintable():  # nothing to escape: C0, DEL, C1, bidi controls and separators never are
        return text
    from backend.facade import visible

    return visible(text, pictures=False)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = 80,
                 keep: Sequence[int] = ()) -> str:
    """Left-aligned columns; the widest columns are cut with '…' until the table fits `width`.

    `width=None` cuts nothing (piped output: `runs | head` must show ids whole); the columns in
    `keep` (e.g. an ID another command needs) are never cut.
    """
    n = len(headers)
    cells = [_row_text(row) for row in rows]
    cells = [row if len(row) == n else (row + [""] * (n - len(row)))[:n] for row in cells]  # short rows: blanks
    widths = [max(len(h), *map(len, column)) for h, column in zip(headers, zip(*cells))] if cells else \
        [len(h) for h in headers]
    whole = widths[:]
    gap = 2
    cuttable = [i for i in range(len(widths)) if i not in keep]
    while width is not None and cuttable and sum(widths) + gap * (len(widths) - 1) > width:
        i = max(cuttable, key=lambda j: widths[j])
        if widths[i] <= max(4, len(headers[i])):
            break
        widths[i] -= 1

    def fit(text: str, w: int) -> str:
        return text if len(text) <= w else text[: max(0, w - 1)] + "…"

    # One format for every row (600 rows x 9 cells: a third of `runs` was padding cell by cell), a
    # %-format (str.format parses its fields' specs again at every call); only a column cut
    # narrower than its widest cell has its cells fitted first.
    line = "  ".join(f"%-{w}s" for w in widths)
    cut = [i for i, w in enumerate(widths) if w < whole[i]]  # a column's widest cell no longer fits
    lines = [(line % tuple(fit(h, w) for h, w in zip(headers, widths))).rstrip()]
    if cut:
        for row in cells:
            for i in cut:
                row[i] = fit(row[i], widths[i])
    lines += [(line % tuple(row)).rstrip() for row in cells]
    return "\n".join(lines)


def _row_text(row: Sequence[Any]) -> list[str]:
    """A row's cells as text, control characters made visible (one check for the whole row)."""
    cells = ["" if c is None else str(c) for c in row]
    return cells if "".join(cells).isprintable() else [safe_text(c) for c in cells]


def table_width() -> int | None:
    """The terminal's width when stdout is one; None (nothing cut) when it is piped or redirected."""
    if not sys.stdout.isatty():
        return None
    import shutil

    return shutil.get_terminal_size((80, 24)).columns


def print_table(headers: Sequence[str], rows: Sequence[Sequence[Any]], width: int | None = None,
                keep: Sequence[int] = (0,)) -> None:
    """A table cut to the terminal's width, or whole when piped; the first column is never cut."""
    print(format_table(headers, rows, table_width() if width is None else width, keep))


@contextmanager
def transfer_progress(description: str, *, enabled: bool | None = None) -> Iterator[Transfer]:
    """A Transfer wired to a rich progress bar on stderr (plain, no bar, when not a terminal)."""
    from backend.facade import Transfer

    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        yield Transfer()
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    progress = Progress(
        TextColumn("{task.description}", markup=False),  # keys are data, not markup
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=False,
    )
    task = progress.add_task(safe_text(description), total=None)

    def update(t: Transfer) -> None:
        progress.update(task, total=t.total or None, completed=t.done)

    with progress:
        yield Transfer(on_update=update)
