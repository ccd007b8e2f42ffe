"""A log file indexed lazily from its end, so a 1 GB file opens at its tail at once.

The file is memory-mapped and cut into blocks that start just after a newline. Opening indexes only
the last block; `step()` then indexes a bounded amount more per call, backwards towards the start of
the file (so scroll-back fills in) and forwards over whatever a writer appended (so a followed log
keeps up). Every block remembers only its byte range and line count; the lines of a block are split
out when a line in it is shown, and a few recent blocks are kept. Nothing here reads the whole file.

Lines are numbered from the first indexed line, so numbers shift when scroll-back indexes more:
`step()` reports how many lines were added above so the view can keep its place. All calls are made
from one thread (the UI's); `search()` works on a snapshot and may run in a worker thread.

The first lines of the file need no index of the rest: `index_head()` indexes forwards from byte 0,
as far as it is asked (a screenful for `g`), and `head_raw_line(n)` reads line `n` counted from the
very top. The head and the scroll-back meet in the middle; `step()` then joins them (the lines it
adds above are reported as usual) and the file is fully indexed.
"""
from __future__ import annotations

import bisect
import mmap
import os
import re
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

BLOCK = 256 * 1024
CACHED_BLOCKS = 48


@dataclass(frozen=True)
class Block:
    start: int
    end: int  # just after a newline
    lines: int


@dataclass(frozen=True)
class StepResult:
    added_top: int = 0
    added_bottom: int = 0
    reset: bool = False  # the file shrank (truncated or replaced): everything was re-read

    @property
    def changed(self) -> bool:
        return bool(self.added_top or self.added_bottom or self.reset)


class LogFile:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._fd = os.open(self.path, os.O_RDONLY)
        self._mm: mmap.mmap | None = None
        self._cache: OrderedDict[int, list[bytes]] = OrderedDict()
        self._open_at_tail()

    # ---------------------------------------------------------------- state
    def _open_at_tail(self) -> None:
        self._cache.clear()
        self.size = 0
        self._map()
        # Blocks before the open point, newest first; blocks appended since, oldest first.
        self._back: list[Block] = []
        self._back_cum: list[int] = []
        self._fwd: list[Block] = []
        self._fwd_cum: list[int] = []
        mm = self._mm
        self._edge = 0 if mm is None else mm.rfind(b"\n", 0, self.size) + 1  # end of complete lines
        self._back_pos = self._edge  # indexing backwards has reached here
        # Blocks from byte 0 forwards, in file order, never past `_back_pos`.
        self._head: list[Block] = []
        self._head_cum: list[int] = []
        self._head_pos = 0
        if self._back_pos:
            self._index_back_one()

    def _map(self) -> None:
        size = os.fstat(self._fd).st_size
        if size != self.size or self._mm is None:
            old = self._mm
            self._mm = mmap.mmap(self._fd, 0, access=mmap.ACCESS_READ) if size else None
            self.size = size
            if old is not None:
                old.close()

    def close(self) -> None:
        if self._mm is not None:
            self._mm.close()
            self._mm = None
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    @property
    def fully_indexed(self) -> bool:
        return self._back_pos == 0

    @property
    def back_lines(self) -> int:
        return self._back_cum[-1] if self._back_cum else 0

    @property
    def fwd_lines(self) -> int:
        return self._fwd_cum[-1] if self._fwd_cum else 0

    @property
    def has_partial(self) -> bool:
        """The file ends without a newline: the unfinished last line is shown too."""
        return self.size > self._edge

    @property
    def line_count(self) -> int:
        return self.back_lines + self.fwd_lines + (1 if self.has_partial else 0)

    @property
    def indexed_bytes(self) -> int:
        return self.size - self._back_pos

    @property
    def head_lines(self) -> int:
        """Lines indexed from the top of the file, while the index has not reached it."""
        return self._head_cum[-1] if self._head_cum else 0

    @property
    def head_complete(self) -> bool:
        """The head has met the scroll-back: the next `step()` joins them."""
        return self._head_pos >= self._back_pos

    # ---------------------------------------------------------------- indexing
    def _index_back_one(self) -> int:
        mm, end = self._mm, self._back_pos
        assert mm is not None and end > 0
        lo = max(0, end - BLOCK)
        if self._head_pos and lo <= self._head_pos:
            return self._join_head()
        if lo == 0:
            start = 0
        else:
            first_nl = mm.find(b"\n", lo, end - 1)
            if first_nl == -1:  # one line longer than a block: find where it begins
                first_nl = mm.rfind(b"\n", 0, lo)
            start = first_nl + 1
        lines = mm[start:end].count(b"\n")
        self._back.append(Block(start, end, lines))
        self._back_cum.append(self.back_lines + lines)
        self._back_pos = start
        return lines

    def _join_head(self) -> int:
        """Index what lies between the head and the scroll-back, then make the head scroll-back."""
        mm, end = self._mm, self._back_pos
        assert mm is not None
        added = 0
        if self._head_pos < end:
            lines = mm[self._head_pos : end].count(b"\n")
            self._back.append(Block(self._head_pos, end, lines))
            self._back_cum.append(self.back_lines + lines)
            added += lines
        for block in reversed(self._head):
            self._back.append(block)
            self._back_cum.append(self.back_lines + block.lines)
            added += block.lines
        self._head, self._head_cum, self._head_pos = [], [], 0
        self._back_pos = 0
        return added

    def index_head(self, lines: int, budget_s: float = 0.05) -> None:
        """Index from the top of the file until `lines` lines are known there (or the head meets
        the scroll-back); at least one block, then within `budget_s`."""
        mm = self._mm
        if mm is None or self.fully_indexed:
            return
        deadline = time.perf_counter() + budget_s
        first = True
        while self.head_lines < lines and self._head_pos < self._back_pos and (
            first or time.perf_counter() < deadline
        ):
            first = False
            start, limit = self._head_pos, self._back_pos
            end = min(limit, start + BLOCK)
            if end < limit:
                nl = mm.rfind(b"\n", start, end)
                end = nl + 1 if nl >= 0 else mm.find(b"\n", end, limit) + 1
            count = mm[start:end].count(b"\n")
            self._head.append(Block(start, end, count))
            self._head_cum.append(self.head_lines + count)
            self._head_pos = end

    def head_raw_line(self, n: int, limit: int | None = None) -> bytes:
        """Line `n` counted from the top of the file, from the head index (see `index_head`)."""
        if n < 0 or n >= self.head_lines:
            raise IndexError(n)
        i = bisect.bisect_right(self._head_cum, n)
        before = self._head_cum[i - 1] if i else 0
        return self._read(self._head[i], n - before, limit)

    def head_raw_line_length(self, n: int) -> int:
        i = bisect.bisect_right(self._head_cum, n)
        before = self._head_cum[i - 1] if i else 0
        block = self._head[i]
        if block.lines == 1:
            return block.end - block.start - 1
        return len(self._block_lines(block)[n - before])

    def _index_forward(self, deadline: float) -> int:
        added = 0
        mm = self._mm
        if mm is None:
            return 0
        last_nl = mm.rfind(b"\n", self._edge, self.size)
        while last_nl >= self._edge and time.perf_counter() < deadline:
            start, limit = self._edge, last_nl + 1
            end = min(limit, start + BLOCK)
            if end < limit:
                nl = mm.rfind(b"\n", start, end)
                end = nl + 1 if nl >= 0 else mm.find(b"\n", end) + 1
            lines = mm[start:end].count(b"\n")
            self._fwd.append(Block(start, end, lines))
            self._fwd_cum.append(self.fwd_lines + lines)
            self._edge = end
            added += lines
            if end >= limit:
                break
        return added

    def step(self, budget_s: float = 0.008) -> StepResult:
        """Index what a writer appended, then scroll-back, within `budget_s` of work."""
        deadline = time.perf_counter() + budget_s
        before = self.line_count - self.back_lines
        try:
            size = os.fstat(self._fd).st_size
        except OSError:
            return StepResult()
        if size < self.size:
            self._open_at_tail()
            return StepResult(reset=True)
        if size > self.size:
            self._map()
        self._index_forward(deadline)
        # An unfinished line already shown that just got its newline is not a new line.
        added_bottom = self.line_count - self.back_lines - before
        added_top = 0
        while self._back_pos > 0 and time.perf_counter() < deadline:
            added_top += self._index_back_one()
        return StepResult(added_top, added_bottom)

    # ---------------------------------------------------------------- reading
    def _block_at(self, n: int) -> tuple[Block, int]:
        """The block holding line `n` and the index of the line within it."""
        back_total = self.back_lines
        if n < back_total:
            r = back_total - 1 - n  # counted from the open point backwards
            i = bisect.bisect_right(self._back_cum, r)
            before = self._back_cum[i - 1] if i else 0
            block = self._back[i]
            return block, block.lines - 1 - (r - before)
        f = n - back_total
        i = bisect.bisect_right(self._fwd_cum, f)
        before = self._fwd_cum[i - 1] if i else 0
        return self._fwd[i], f - before

    def _block_lines(self, block: Block) -> list[bytes]:
        lines = self._cache.get(block.start)
        if lines is not None and len(lines) == block.lines:
            self._cache.move_to_end(block.start)
            return lines
        assert self._mm is not None
        lines = self._mm[block.start : block.end].split(b"\n")
        lines.pop()  # the block ends with a newline
        self._cache[block.start] = lines
        if len(self._cache) > CACHED_BLOCKS:
            self._cache.popitem(last=False)
        return lines

    def raw_line(self, n: int, limit: int | None = None) -> bytes:
        """Line `n` (0 = first indexed line) without its newline; `limit` caps the bytes read."""
        if n < 0 or n >= self.line_count:
            raise IndexError(n)
        if n == self.line_count - 1 and self.has_partial:
            assert self._mm is not None
            end = self.size if limit is None else min(self.size, self._edge + limit)
            return self._mm[self._edge : end]
        block, i = self._block_at(n)
        return self._read(block, i, limit)

    def _read(self, block: Block, i: int, limit: int | None) -> bytes:
        if limit is not None and block.lines == 1 and block.end - block.start > limit:
            assert self._mm is not None  # a huge single line: never split or copy all of it
            return self._mm[block.start : block.start + limit]
        line = self._block_lines(block)[i]
        return line if limit is None else line[:limit]

    def raw_line_length(self, n: int) -> int:
        if n == self.line_count - 1 and self.has_partial:
            return self.size - self._edge
        block, i = self._block_at(n)
        if block.lines == 1:
            return block.end - block.start - 1
        return len(self._block_lines(block)[i])

    # ---------------------------------------------------------------- search
    def blocks_in_order(self) -> list[tuple[Block, int]]:
        """Every indexed block in file order with the number of its first line (a snapshot)."""
        out: list[tuple[Block, int]] = []
        n = 0
        for block in (*reversed(self._back), *self._fwd):
            out.append((block, n))
            n += block.lines
        if self.has_partial:
            out.append((Block(self._edge, self.size, 1), n))
        return out

    def search(
        self, pattern: re.Pattern[bytes], from_line: int, backwards: bool, snapshot: list[tuple[Block, int]]
    ) -> int | None:
        """The number of the next line after (or before) `from_line` that matches. Thread-safe."""
        with open(self.path, "rb") as fh:
            order = reversed(snapshot) if backwards else snapshot
            for block, first in order:
                last = first + block.lines - 1
                if (not backwards and last <= from_line) or (backwards and first >= from_line):
                    continue
                fh.seek(block.start)
                data = fh.read(block.end - block.start)
                best, line, pos = None, first, 0
                for m in pattern.finditer(data):
                    line += data.count(b"\n", pos, m.start())
                    pos = m.start()
                    if not backwards and line > from_line:
                        return line
                    if backwards:
                        if line >= from_line:
                            break
                        best = line
                if best is not None:
                    return best
        return None
