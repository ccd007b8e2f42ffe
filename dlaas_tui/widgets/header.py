"""The one-line status header: where you are and what is in flight.

    dlaas-tui │ READ-ONLY │ profile local (local) │ tier unlimited │ GPUs 3/8 │ queued 14 │ today $12.34

Devices in use are GPUs, or `CPU slots 1/2` where cpu slots stand in for them; spend under a cent
keeps four decimals, as the COST column does. At 80 columns the labels shorten and the spaces
narrow, but every figure keeps a label (`today $12.34`); a tier that limits nothing is left out:

    dlaas-tui RO local GPU 3/8 run 2 queued 14 today $12.34 committed $3.10

Built from plain values as a rich Text (never markup), so a profile name cannot style the line.
"""
from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.widget import Widget

from .safe_text import visible


SHORT = {"profile": "", "tier": "tier", "GPUs": "GPU", "CPU slots": "CPU", "running": "run", "queued": "queued",
         "today": "today", "committed": "committed"}
# Where even the short labels do not fit, the tier's label gives way (its name stays), and the title.
TIGHT = {**SHORT, "tier": ""}


def format_usd(amount: float) -> str:
    """Dollars as the COST column shows them: under a cent with four decimals, never a false $0.00."""
    if 0 < amount < 0.01:
        return f"${amount:.4f}"
    return f"${amount:,.2f}"


@dataclass(frozen=True)
class HeaderStats:
    profile: str = ""
    engine: str = ""
    tier: str = ""
    gpus_in_use: int | None = None
    gpus_total: int | None = None
    devices_label: str = "GPUs"  # "CPU slots" when the devices are cpu slots standing in for GPUs
    queued: int = 0
    running: int = 0
    spend_today_usd: float | None = None
    read_only: bool = False
    budget_daily_usd: float | None = None
    budget_warning: str | None = None  # said at 80 % of the daily or monthly budget
    committed_usd: float | None = None  # what queued and running runs are estimated to cost still
    tier_gpus: int | None = None  # the tier's GPU limit, 0 for none (None: not known)


class StatusHeader(Widget):
    DEFAULT_CSS = """
    StatusHeader { dock: top; height: 1; background: $panel; color: $foreground; padding: 0 1; }
    """

    def __init__(self, title: str = "dlaas-tui", *, where: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self.title_text = title
        self.stats = HeaderStats()
        self.where = where

    def on_mount(self) -> None:
        # A screen opened later starts with the latest figures the runs feed worked out.
        stats = getattr(self.app, "header_stats", None)
        if isinstance(stats, HeaderStats):
            self.stats = stats

    def update_stats(self, stats: HeaderStats) -> None:
        if stats != self.stats:
            self.stats = stats
            self.refresh()

    def set_where(self, where: str) -> None:
        self.where = where
        self.refresh()

    def render(self) -> Text:
        room = self.size.width - 2
        # Whole labels: first a tier that limits nothing goes, then the separators draw closer,
        # before the labels get short.
        for sep, free_tier in ((" │ ", True), (" │ ", False), ("  ", False), (" ", False)):
            text = self._build(compact=False, sep=sep, free_tier=free_tier)
            if text.cell_len <= room:
                return text
        text = self._build(compact=True)  # 80 columns: short labels, same facts
        if text.cell_len <= room:
            return text
        # Tighter still: no title, no tier label, the budget as `$12.34/$50`; what does not fit even
        # so is cut at the end (RO, first, never is).
        return self._build(compact=True, labels=TIGHT, tight=True)

    def _build(self, compact: bool, sep: str = " │ ", labels: dict[str, str] = SHORT, tight: bool = False,
               free_tier: bool = False) -> Text:
        s = self.stats
        theme = self.app.current_theme
        sep = (" " if compact else sep, "dim")
        label = "dim"
        text = Text(no_wrap=True, overflow="ellipsis", end="")
        if not tight:
            text.append(self.title_text, style=f"bold {theme.primary}")
        if self.where and not compact:
            text.append(f"  {visible(self.where)}", style="bold")

        def field(name: str, value: str, style: str = "bold") -> None:
            if text:
                text.append(*sep)
            shown = labels.get(name, name) if compact else name
            if shown:
                text.append(f"{shown} ", style=label)
            text.append(value, style=style)

        if s.read_only:  # first: a narrow terminal cuts the end of the line, never this
            field("", "RO" if compact else "READ-ONLY", f"bold {theme.error}")
        if s.profile:
            # At 80 columns the engine gives way to the figures after it (`committed` was cut).
            engine = f" ({visible(s.engine)})" if s.engine and s.engine != s.profile and not compact else ""
            field("profile", f"{visible(s.profile)}{engine}")
        # a tier that limits nothing (`unlimited`) is said only where there is room for it
        if s.tier and (free_tier or s.tier_gpus != 0):
            field("tier", visible(s.tier))
        if s.gpus_total is not None:
            field(s.devices_label, f"{s.gpus_in_use or 0}/{s.gpus_total}")
        field("running", str(s.running), f"bold {theme.accent}" if s.running else "bold")
        field("queued", str(s.queued), f"bold {theme.warning}" if s.queued else "bold")
        if s.spend_today_usd is not None:
            over = s.budget_daily_usd is not None and s.spend_today_usd >= s.budget_daily_usd
            budget = ""
            if s.budget_daily_usd is not None:
                daily = s.budget_daily_usd
                budget = (f"/${daily:,.0f}" if daily == int(daily) else f"/${daily:,.2f}") if tight else f" of ${daily:,.2f}"
            field("today", f"{format_usd(s.spend_today_usd)}{budget}", f"bold {theme.error}" if over else "bold")
        if s.committed_usd:  # only when queued or running runs hold money
            field("committed", format_usd(s.committed_usd))
        if s.budget_warning:
            field("", f"⚠ {visible(s.budget_warning)}", f"bold {theme.warning}")
        return text
