"""The Cost tab: each billed interval, then seconds × devices × price = total (from the backend)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Group
from rich.text import Text

from ..widgets.safe_text import visible

if TYPE_CHECKING:
    from backend.facade import Backend, Run, RunEvent


def cost_table(backend: Backend, run: Run, events: list[RunEvent]) -> Group:
    """Called in a worker thread: the breakdown may need the engine."""
    lines: list[Text] = [Text("Billed intervals", style="bold")]
    try:
        result = backend.cost_breakdown(run.id)
    except Exception as exc:  # the tab says so; the screen goes on
        lines.append(Text(f"cost not available: {visible(str(exc))}", style="italic"))
    else:
        body = result.lines()
        for line in body[:-1]:
            lines.append(Text(f"  {visible(line)}"))
        if body:
            lines.append(Text(""))
            lines.append(Text(visible(body[-1]), style="bold"))
        if result.open:
            lines.append(Text("still running: the total grows until STORING ends", style="dim italic"))
        return Group(*lines)
    total = "unpriced" if run.cost_usd is None else f"${run.cost_usd:,.2f}"
    lines.append(Text(f"total {total}", style="bold"))
    return Group(*lines)
