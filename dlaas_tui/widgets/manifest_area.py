"""A YAML TextArea that marks the lines holding manifest problems (gutter and background)."""
from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.strip import Strip
from textual.widgets import TextArea

ERROR_GUTTER = Style(color="white", bgcolor="red", bold=True)
ERROR_LINE = Style(bgcolor="#3a1010")
WARNING_GUTTER = Style(color="black", bgcolor="yellow", bold=True)


class ManifestArea(TextArea):
    def __init__(self, text: str = "", **kwargs) -> None:
        try:
            super().__init__(text, language="yaml", **kwargs)
        except Exception:
            # Without the tree-sitter extra there is no highlighting; editing still works.
            super().__init__(text, **kwargs)
        self._marks: dict[int, str] = {}  # 0-based line -> "error" | "warning"

    def _on_key(self, event) -> None:
        if event.key == "escape":
            # TextArea would move the focus on; leave esc to the screen's binding (back).
            event.prevent_default()
            return

    def set_marks(self, marks: dict[int, str]) -> None:
        if marks != self._marks:
            self._marks = dict(marks)
            self._line_cache.clear()  # the cache key knows nothing of our marks
            self.refresh()

    @property
    def marks(self) -> dict[int, str]:
        return dict(self._marks)

    def _render_line(self, y: int) -> Strip:
        strip = super()._render_line(y)
        if not self._marks:
            return strip
        try:
            line_index, section = self.wrapped_document._offset_to_line_info[y + self.scroll_offset.y]
        except (IndexError, TypeError):
            return strip
        kind = self._marks.get(line_index)
        if kind is None:
            return strip
        gutter_width = self.gutter_width
        if not gutter_width:
            return self._tint(strip) if kind == "error" else strip
        gutter, text = strip.divide([gutter_width, strip.cell_length])[:2]
        label = gutter.text
        marker = "●" if section == 0 else " "
        gutter_style = ERROR_GUTTER if kind == "error" else WARNING_GUTTER
        new_gutter = Strip([Segment(label[:-2] + marker + " ", gutter_style)], gutter_width)
        if kind == "error":
            text = self._tint(text)
        return Strip.join([new_gutter, text])

    def _tint(self, strip: Strip) -> Strip:
        """Tint the plain background only, so the cursor and the selection stay visible."""
        theme = self._theme
        base = theme.base_style if theme and theme.base_style is not None else self.rich_style
        plain_bg = base.bgcolor if base else None
        segments = [
            Segment(seg.text, (seg.style or Style()) + ERROR_LINE, seg.control)
            if seg.style is None or seg.style.bgcolor in (None, plain_bg)
            else seg
            for seg in strip
        ]
        return Strip(segments, strip.cell_length)
