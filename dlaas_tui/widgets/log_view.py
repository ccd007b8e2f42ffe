"""A log viewer that renders only the lines on screen, for logs of any size and any speed.

It views a file (`LogFile`: mmap, indexed from the end), so it opens at the tail at once and
follows a writer by indexing what was appended, a bounded amount of work per tick on the UI thread.
Keys follow k9s: `s` follow, `w` wrap, `t` timestamps; a search (`set_search`) highlights every
match on screen and `n`/`N` jump to the next/previous matching line (it never filters). Lines are
data: decoded leniently, control characters made visible, never parsed as markup.

`g`/Home on a log whose scroll-back is still being indexed shows the top of the file at once: the
view reads the head of the file (`LogFile.index_head`), numbered from the first line, until the
index reaches it and the two numberings agree; `G`/End/`s` go back to the tail.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

from rich.segment import Segment
from rich.style import Style
from textual import events, work
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .log_file import LogFile
from .log_search import LogSearch, compile_search  # noqa: F401  (compile_search: part of this module's API)
from .safe_text import visible

MAX_LINE_BYTES = 64 * 1024  # longer lines are shown cut, with the count of what was left out
TICK_S = 1 / 20
_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)? ?")


class LogView(LogSearch, ScrollView, can_focus=True):
    DEFAULT_CSS = """
    LogView { background: $surface; color: $foreground; }
    LogView:focus { background-tint: $foreground 3%; }
    """
    BINDINGS = [
        Binding("s", "toggle_follow", "Follow", id="log.follow"),
        Binding("w", "toggle_wrap", "Wrap", id="log.wrap"),
        Binding("t", "toggle_timestamps", "Timestamps", show=False, id="log.timestamps"),
        Binding("n", "next_match", "Next match", show=False, id="log.next_match"),
        Binding("N", "previous_match", "Previous match", show=False, id="log.previous_match"),
        Binding("j,down", "line_down", "Down", show=False, id="log.down"),
        Binding("k,up", "line_up", "Up", show=False, id="log.up"),
        Binding("g,home", "top", "Top", show=False, id="log.top"),
        Binding("G,end", "bottom", "Bottom", show=False, id="log.bottom"),
        Binding("pagedown,space", "page_down", "Page down", show=False, id="log.page_down"),
        Binding("pageup,b", "page_up", "Page up", show=False, id="log.page_up"),
        Binding("left,h", "scroll_left", "Left", show=False, id="log.left"),
        Binding("right,l", "scroll_right", "Right", show=False, id="log.right"),
        Binding("ctrl+s", "save", "Save", id="log.save"),
    ]

    follow: reactive[bool] = reactive(True)
    wrap: reactive[bool] = reactive(False)
    timestamps: reactive[bool] = reactive(False)

    class StatusChanged(Message):
        def __init__(self, view: LogView, status: str) -> None:
            super().__init__()
            self.view = view
            self.status = status

    def __init__(self, path: str | Path | None = None, *, save_name: str = "log.txt", **kwargs) -> None:
        super().__init__(**kwargs)
        self.log_file: LogFile | None = None
        self.save_name = save_name
        self._pending_path = Path(path) if path else None
        self._cache: dict[int, tuple[str, int, int]] = {}  # stable line id -> (text, ts length, cut)
        self._shift = 0  # lines indexed above the open point since open (stable id = n - shift)
        self._max_width = 0
        self._search: tuple[re.Pattern[str], re.Pattern[bytes]] | None = None
        self.search_query = ""  # as typed
        self._search_note = ""  # "searching…", "wrapped", "no match"
        self.current_match: int | None = None
        self._status = ""
        self._frame: tuple[tuple, list[Strip]] | None = None
        self._head_mode = False  # showing the file's head, numbered from its first line
        self.empty_note = "empty log"  # the status while the file has no line (set_empty_note)

    # ------------------------------------------------------------ lifecycle
    def on_mount(self) -> None:
        self.set_interval(TICK_S, self._tick, name="log-tick")
        if self._pending_path is not None:
            self.open(self._pending_path)

    def on_unmount(self) -> None:
        if self.log_file is not None:
            self.log_file.close()
            self.log_file = None

    def open(self, path: str | Path, *, keep_follow: bool = True) -> None:
        """Show `path` from its tail. Replaces any file shown before."""
        if self.log_file is not None:
            self.log_file.close()
        self.log_file = LogFile(path)
        self._head_mode = False
        self._cache.clear()
        self._shift = 0
        self._max_width = 0
        self.current_match = None
        if keep_follow:
            self.follow = True
        self._update_size()
        self.scroll_end(animate=False, immediate=True)
        self.refresh()

    @property
    def line_count(self) -> int:
        """Lines the view can show: the indexed ones, or at the head, those known from the top."""
        if self.log_file is None:
            return 0
        if self._head_mode:
            return self.log_file.head_lines
        return self.log_file.line_count

    def set_empty_note(self, note: str) -> None:
        """What the status says while the log has no line at all, e.g. why there is none yet (the
        owner knows: a queued run has not started). Default: "empty log"."""
        if note != self.empty_note:
            self.empty_note = note
            if self.is_mounted:
                self._post_status()

    @property
    def at_head(self) -> bool:
        """The view shows the head of a file whose index has not reached the top yet."""
        return self._head_mode

    # ------------------------------------------------------------ ticking
    def _tick(self) -> None:
        lf = self.log_file
        if lf is None:
            return
        result = lf.step()
        if result.reset:
            self._cache.clear()
            self._shift = 0
            if self._head_mode:
                self._leave_head()
        if self._head_mode:
            self._tick_head(result)
            self._post_status()
            return
        if self.follow and self.scroll_y < self.max_scroll_y:
            # The viewport shrank (a horizontal scrollbar appeared): stay on the last line.
            self.scroll_end(animate=False, immediate=True)
        if result.changed:
            if result.added_top:
                self._shift += result.added_top
                if self.current_match is not None:
                    self.current_match += result.added_top
            old_y = self.scroll_y
            self._update_size()
            if self.follow:
                self.scroll_end(animate=False, immediate=True)
            elif result.added_top:
                self.scroll_to(y=old_y + result.added_top, animate=False, immediate=True)
            self._frame = None
            self.refresh()
        self._post_status()

    def _tick_head(self, result) -> None:
        lf = self.log_file
        assert lf is not None
        if result.added_top:
            self._shift += result.added_top
        if lf.fully_indexed:
            # The index reached the top: its numbers are now the file's own, as the head's are.
            self._head_mode = False
            self._cache.clear()
            self._update_size()
            self.refresh()
            return
        height = self.scrollable_content_region.height
        if not lf.head_complete and self.scroll_y + 3 * height > lf.head_lines:
            lf.index_head(int(self.scroll_y) + 4 * height, budget_s=0.01)  # scrolled down: read on
            self._update_size()
            self._frame = None
            self.refresh()

    def _leave_head(self) -> None:
        self._head_mode = False
        self._cache.clear()
        self._frame = None
        self._update_size()

    def _update_size(self) -> None:
        width = self.scrollable_content_region.width
        wide = width if self.wrap else max(width, self._max_width + 1)
        self.virtual_size = Size(wide, self.line_count)

    def _post_status(self) -> None:
        lf = self.log_file
        if lf is None:
            status = "no log"
        else:
            known = lf.line_count + (lf.head_lines if self._head_mode else 0)  # a gap may lie between
            flags = [
                f"follow {'on' if self.follow else 'off'}",
                f"wrap {'on' if self.wrap else 'off'}",
                f"timestamps {'on' if self.timestamps else 'off'}",
            ]
            if self._search:
                where = "" if self.current_match is None else f" at line {self.current_match + 1:,}"
                note = f" ({self._search_note})" if self._search_note else ""
                # Between slashes, so a trailing space shows; before the toggles, so 80 columns show it.
                flags.insert(0, f"search /{visible(self.search_query)}/{where}{note}")
            if known == 0 and lf.fully_indexed:  # not "line 1 of 0": say why there is no line
                place = self.empty_note
            else:
                total = f"{known:,}" + ("" if lf.fully_indexed else "+")
                place = f"line {min(int(self.scroll_y) + 1, max(known, 1)):,} of {total}"
            status = f"{place}  ·  " + "  ·  ".join(flags)
        if status != self._status:
            self._status = status
            self.post_message(self.StatusChanged(self, status))

    # ------------------------------------------------------------ lines
    def _line(self, n: int) -> tuple[str, int, int]:
        head = self._head_mode
        key: object = ("head", n) if head else n - self._shift
        hit = self._cache.get(key)
        if hit is not None:
            return hit
        lf = self.log_file
        assert lf is not None
        raw = lf.head_raw_line(n, limit=MAX_LINE_BYTES) if head else lf.raw_line(n, limit=MAX_LINE_BYTES)
        cut = 0
        if len(raw) >= MAX_LINE_BYTES:
            cut = (lf.head_raw_line_length(n) if head else lf.raw_line_length(n)) - len(raw)
        text = raw.decode("utf-8", "replace")
        ts_len = 0
        match = _TIMESTAMP.match(text)
        if match:
            ts_len = match.end()
        text = visible(text)
        if not head and n == lf.line_count - 1 and lf.has_partial:
            return text, ts_len, cut  # still being written: read it again next time
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[key] = (text, ts_len, cut)
        return text, ts_len, cut

    def _segments(self, n: int) -> list[Segment]:
        text, ts_len, cut = self._line(n)
        base = self.rich_style
        theme = self.app.current_theme
        dim = base + Style(dim=True)
        segments: list[Segment] = []
        if ts_len:
            if self.timestamps:
                segments.append(Segment(text[:ts_len], dim))
            text = text[ts_len:]
        spans: list[tuple[int, int]] = []
        if self._search:
            spans = [(m.start(), m.end()) for m in self._search[0].finditer(text) if m.end() > m.start()]
        if spans:
            mark = base + Style(
                bgcolor=theme.accent or theme.primary,
                color="black",
                bold=True,
                underline=n == self.current_match,
            )
            pos = 0
            for start, end in spans:
                if start > pos:
                    segments.append(Segment(text[pos:start], base))
                segments.append(Segment(text[start:end], mark))
                pos = end
            if pos < len(text):
                segments.append(Segment(text[pos:], base))
        else:
            segments.append(Segment(text, base))
        if cut:
            segments.append(Segment(f" … [{cut:,} more bytes]", dim))
        return segments

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        if self.log_file is None or width <= 0:
            return Strip.blank(width, self.rich_style)
        if self.wrap:
            rows = self._wrapped_frame(width, self.scrollable_content_region.height)
            return rows[y] if y < len(rows) else Strip.blank(width, self.rich_style)
        n = int(self.scroll_y) + y
        if n >= self.line_count:
            return Strip.blank(width, self.rich_style)
        strip = Strip(self._segments(n))
        if strip.cell_length > self._max_width:
            self._max_width = strip.cell_length
            self.call_later(self._update_size)
        x = int(self.scroll_x)
        return strip.crop_extend(x, x + width, self.rich_style)

    def _wrapped_frame(self, width: int, height: int) -> list[Strip]:
        at_end = not self._head_mode and (self.follow or self.scroll_y >= self.max_scroll_y)
        key = (int(self.scroll_y), width, height, at_end, self.line_count, self._shift, self.current_match,
               self._head_mode)
        if self._frame is not None and self._frame[0] == key:
            return self._frame[1]

        def rows_of(n: int) -> list[Strip]:
            strip = Strip(self._segments(n))
            cuts = list(range(width, min(strip.cell_length, width * height * 2), width))
            pieces = strip.divide([*cuts, strip.cell_length]) if cuts else [strip]
            return [p.crop_extend(0, width, self.rich_style) for p in pieces[: height * 2]]

        rows: list[Strip] = []
        if at_end:
            n = self.line_count - 1
            while n >= 0 and len(rows) < height:
                rows[:0] = rows_of(n)
                n -= 1
            rows = rows[-height:]
        else:
            n = int(self.scroll_y)
            while n < self.line_count and len(rows) < height:
                rows.extend(rows_of(n))
                n += 1
        self._frame = (key, rows)
        return rows

    # ------------------------------------------------------------ toggles
    def watch_follow(self, follow: bool) -> None:
        if follow and self._head_mode:
            self._leave_head()
        if follow and self.is_mounted:
            self.scroll_end(animate=False, immediate=True)
        self._frame = None
        self.refresh()

    def watch_wrap(self) -> None:
        self._frame = None
        self.scroll_to(x=0, animate=False, immediate=True)
        self._update_size()
        self.refresh()

    def watch_timestamps(self) -> None:
        self._max_width = 0
        self._frame = None
        self._update_size()
        self.refresh()

    def on_resize(self, event: events.Resize) -> None:
        self._frame = None
        self._update_size()

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow

    def action_toggle_wrap(self) -> None:
        self.wrap = not self.wrap

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps

    # ------------------------------------------------------------ moving
    def _move(self, y: float) -> None:
        self.follow = False
        self._frame = None
        self.scroll_to(y=y, animate=False, immediate=True)

    def action_line_down(self) -> None:
        self._read_on(1)
        self._move(self.scroll_y + 1)
        if self.scroll_y >= self.max_scroll_y and not self._head_mode:
            self.follow = True

    def action_line_up(self) -> None:
        self._move(self.scroll_y - 1)

    def action_page_down(self) -> None:
        self._read_on(self.scrollable_content_region.height)
        self._move(self.scroll_y + self.scrollable_content_region.height)

    def _read_on(self, lines: int) -> None:
        """At the head, index the lines a move down is about to show."""
        lf = self.log_file
        if self._head_mode and lf is not None and not lf.head_complete:
            lf.index_head(int(self.scroll_y) + lines + 2 * self.scrollable_content_region.height)
            self._update_size()

    def action_page_up(self) -> None:
        self._move(self.scroll_y - self.scrollable_content_region.height)

    def action_top(self) -> None:
        lf = self.log_file
        if lf is not None and not lf.fully_indexed and not self._head_mode:
            # The index is still on its way up: read the first lines directly, a screenful now.
            self.follow = False
            lf.index_head(2 * max(self.scrollable_content_region.height, 1) + 1)
            self._head_mode = True
            self.current_match = None  # a match's number counts from the index's first line
            self._cache.clear()
            self._update_size()
        self._move(0)
        self._post_status()

    def action_bottom(self) -> None:
        if self._head_mode:
            self._leave_head()
        self.follow = True
        self._post_status()

    def on_mouse_scroll_up(self, event: events.MouseScrollUp) -> None:
        self.follow = False

    # ------------------------------------------------------------ saving
    def action_save(self) -> None:
        if self.log_file is None:
            return
        target = Path.cwd() / self.save_name
        n = 1
        while target.exists():
            target = Path.cwd() / f"{Path(self.save_name).stem}-{n}{Path(self.save_name).suffix}"
            n += 1
        self._save(self.log_file.path, target)

    @work(thread=True, group="log-save", exit_on_error=False)
    def _save(self, source: Path, target: Path) -> None:
        try:
            tmp = target.with_name(f".{target.name}.part")
            shutil.copyfile(source, tmp)
            tmp.replace(target)
        except OSError as exc:
            self.app.call_from_thread(self.notify, f"Could not save the log: {exc}", severity="error", markup=False)
            return
        self.app.call_from_thread(self.notify, f"Saved the log to {target}", markup=False)
