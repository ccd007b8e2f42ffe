"""Search in the log view: every match highlighted, `n`/`N` to the next/previous matching line.

A query is a regex when it is one, else the literal text (lower-case queries ignore case), and is
kept exactly as typed. A search pauses follow at once and jumps: from a followed tail to the latest
match, else to the next one below the top of the view; like vi it carries on from the other end,
which the status line says quietly. The file is read in a worker thread, on a snapshot of the index.
"""
from __future__ import annotations

import re

from textual import work


def compile_search(query: str) -> tuple[re.Pattern[str], re.Pattern[bytes]] | None:
    """A regex when `query` is one, else the literal text; lower-case queries ignore case."""
    if not query:
        return None
    flags = 0 if any(c.isupper() for c in query) else re.IGNORECASE
    try:
        text = re.compile(query, flags)
        raw = re.compile(query.encode("utf-8"), flags)
    except (re.error, ValueError):
        text = re.compile(re.escape(query), flags)
        raw = re.compile(re.escape(query.encode("utf-8")), flags)
    if text.search("") is not None:  # `.*` and friends match everywhere: show nothing, jump nowhere
        return None
    return text, raw


class LogSearch:
    """Mixed into LogView (it provides the file, the index numbering, moving and the status)."""

    def set_search(self, query: str, *, jump: bool = True) -> None:
        """Highlight every match of `query` (regex or text, taken verbatim); `jump` pauses follow
        and moves to a match: the latest one when the view was following the tail, else the next
        one below the top of the view."""
        self._search = compile_search(query)
        self.search_query = query if self._search is not None else ""
        self.current_match = None
        self._search_note = ""
        self._cache.clear()
        self._frame = None
        self.refresh()
        if self._search is not None and jump:
            from_tail = self.follow or self.scroll_y >= self.max_scroll_y
            self._jump(backwards=from_tail, from_end=from_tail)
        self._post_status()

    def action_next_match(self) -> None:
        self._jump(backwards=False)

    def action_previous_match(self) -> None:
        self._jump(backwards=True)

    def _jump(self, backwards: bool, from_end: bool = False) -> None:
        if self._search is None or self.log_file is None:
            self.notify("No search: press / to search", severity="warning", markup=False)
            return
        self.follow = False  # at once: new lines must not carry the view away while the search runs
        start = self.current_match
        if self._head_mode:  # the search reads the index; its numbers are not the head's
            start, backwards = -1, False
        if from_end:
            start = self.line_count
        elif start is None:
            start = int(self.scroll_y) - 1 if not backwards else int(self.scroll_y) + 1
        self._search_note = "searching…"
        self._post_status()
        self._find(self._search[1], start, backwards, self.log_file.blocks_in_order(), self._shift)

    @work(thread=True, exclusive=True, group="log-search", exit_on_error=False)
    def _find(self, pattern: re.Pattern[bytes], start: int, backwards: bool, snapshot, shift: int) -> None:
        lf = self.log_file
        if lf is None:
            return
        found = lf.search(pattern, start, backwards, snapshot)
        wrapped = False
        if found is None:  # like vi: carry on from the other end
            total = sum(block.lines for block, _ in snapshot)
            found = lf.search(pattern, total if backwards else -1, backwards, snapshot)
            wrapped = found is not None
        self.app.call_from_thread(self._found, found, shift, wrapped)

    def _found(self, line: int | None, shift: int, wrapped: bool = False) -> None:
        if line is None:
            self._search_note = "no match"
            self._post_status()
            self.notify("No match", severity="warning", timeout=2, markup=False)
            return
        # Like vi, a search carries on from the other end; the status line says so, quietly.
        self._search_note = "wrapped" if wrapped else ""
        line += self._shift - shift  # scroll-back indexed while searching shifts every number
        if self._head_mode:
            self._leave_head()
        self.current_match = line
        height = self.scrollable_content_region.height
        self._cache.clear()
        self._move(max(0, line - height // 2))
        self._post_status()
