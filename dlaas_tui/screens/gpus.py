"""The GPUs screen: every device with nvitop's fields and the run holding it, every 2 s.

`engine.inventory()` runs in a thread worker; a field the device does not report (None) shows as
N/A, and a missing NVML is said once, in a banner, with the engine's own message.
"""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.screen import Screen
from textual.widgets import DataTable, Static

from ..error_text import describe_error
from ..widgets.footer import KeysFooter
from ..widgets.header import StatusHeader
from ..widgets.safe_text import visible

REFRESH_S = 2.0
NA = "N/A"


class InventoryLoaded(Message):
    def __init__(self, inventory=None, error: str = "") -> None:
        super().__init__()
        self.inventory, self.error = inventory, error


def bar(fraction: float | None, width: int) -> Text:
    """A text bar: green under 50 %, yellow under 80 %, red above.

    Only the filled part carries the colour (the Text has no style of its own), so the figures put
    after it keep the row's colours, and the table keeps the bar's colour on the cursor row."""
    if fraction is None:
        return Text(NA.ljust(width), style="dim")
    fraction = max(0.0, min(1.0, fraction))
    filled = round(fraction * width)
    colour = "green" if fraction < 0.5 else "yellow" if fraction < 0.8 else "red"
    return Text.assemble(("█" * filled, colour), ("░" * (width - filled), "dim"))


def util_cell(util: int | None, width: int = 6) -> Text:
    if util is None:
        return Text(NA, style="dim")
    return Text.assemble(bar(util / 100, width), f"{util:>4}%")


def mem_cell(used: int | None, total: int | None, width: int = 4) -> Text:
    if used is None or not total:
        if total:
            return Text(f"{NA}/{_gib(total)}", style="dim")
        return Text(NA, style="dim")
    return Text.assemble(bar(used / total, width), f" {_gib(used, unit=False)}/{_gib(total)}")


def _gib(n: int, unit: bool = True) -> str:
    return f"{n / 1024**3:.1f}" + ("G" if unit else "")


def _run_cell(d, *, selected: bool) -> Text:
    """Who holds the device. On the cursor row, whose colours win (for the bars), the yellow of
    "other process" would be hard to read: it is drawn plain there (the detail below says it)."""
    if d.held_by:
        return Text(visible(d.held_by), style="bold")
    if d.busy_foreign:
        return Text("other process", style="" if selected else "yellow")
    return Text("idle", style="dim")


def _na(value, fmt: str) -> Text:
    return Text(NA, style="dim") if value is None else Text(fmt.format(value))


class GpusScreen(Screen):
    DEFAULT_CSS = """
    GpusScreen { layout: vertical; }
    #gpus-header { height: 1; padding: 0 1; background: $panel; }
    #nvml-banner { height: auto; padding: 0 1; background: $warning 30%; color: $text;
                   border-left: thick $warning; display: none; }
    #nvml-banner.-shown { display: block; }
    #devices { height: auto; max-height: 70%; }
    #device-detail { height: auto; max-height: 9; padding: 0 1; border-top: solid $panel-lighten-2; }
    """
    BINDINGS = [
        Binding("r", "refresh", "Refresh", id="gpus.refresh"),
        Binding("escape", "back", "Back", show=False, id="gpus.back"),  # `q Back` is in the footer
    ]

    def __init__(self) -> None:
        super().__init__()
        self.inventory = None

    def compose(self) -> ComposeResult:
        yield StatusHeader(id="header", where="gpus")
        yield Static("GPUs", id="gpus-header")
        yield Static("", id="nvml-banner", markup=False)
        # The bars' colours win over the cursor's foreground: with the cursor's, the selected row's
        # bars would draw filled and empty alike, in one colour. (What else is coloured, `_run_cell`
        # draws plain on the cursor row.)
        yield DataTable(id="devices", cursor_type="row", zebra_stripes=True, cursor_foreground_priority="renderable")
        yield Static("", id="device-detail")
        yield KeysFooter()

    # Fixed widths that fit 80 columns; the device name takes what is left.
    COLUMNS = [("#", "idx", 2), ("UTIL", "util", 11), ("MEMORY", "mem", 15), ("TEMP", "temp", 4),
               ("POWER", "power", 5), ("RUN", "run", 17)]

    NAME_MAX = 28
    _extra = 0  # spare columns on a wide terminal, given to the bars

    def _name_width(self) -> int:
        width = self.query_one(DataTable).size.width or self.app.size.width
        fixed = sum(w for _, _, w in self.COLUMNS) + 2 * (len(self.COLUMNS) + 1) + 1
        return max(10, min(self.NAME_MAX, width - fixed))

    def _add_columns(self) -> None:
        table = self.query_one(DataTable)
        width = table.size.width or self.app.size.width
        fixed = sum(w for _, _, w in self.COLUMNS) + 2 * (len(self.COLUMNS) + 1) + 1
        self._extra = min(16, max(0, width - fixed - self.NAME_MAX) // 2)
        for i, (label, key, col_width) in enumerate(self.COLUMNS):
            if key in ("util", "mem"):
                col_width += self._extra
            table.add_column(label, key=key, width=col_width)
            if i == 0:
                table.add_column("NAME", key="name", width=self._name_width())

    def on_mount(self) -> None:
        self._add_columns()
        self.query_one(DataTable).focus()
        self.action_refresh()
        self.set_interval(REFRESH_S, self.action_refresh)

    def on_resize(self) -> None:
        table = self.query_one(DataTable)
        width = table.size.width or self.app.size.width
        fixed = sum(w for _, _, w in self.COLUMNS) + 2 * (len(self.COLUMNS) + 1) + 1
        extra = min(16, max(0, width - fixed - self.NAME_MAX) // 2)
        if table.columns and (table.columns["name"].width != self._name_width() or extra != self._extra):
            table.clear(columns=True)
            self._add_columns()
            if self.inventory is not None:
                self._fill(self.inventory.devices)

    def action_refresh(self) -> None:
        self._load()

    @work(thread=True, exclusive=True, group="inventory")
    def _load(self) -> None:
        try:
            inventory = self.app.backend.engine.inventory()
        except Exception as exc:
            self.post_message(InventoryLoaded(error=describe_error(exc)))
            return
        self.post_message(InventoryLoaded(inventory))

    def on_inventory_loaded(self, message: InventoryLoaded) -> None:
        if message.error:
            self.notify(visible(message.error), title="GPUs", severity="error", markup=False)
            return
        self.inventory = inv = message.inventory
        banner = self.query_one("#nvml-banner", Static)
        if not inv.nvml_available:
            banner.update(visible(inv.message or "NVML is not available: no GPU details can be read here."))
            banner.add_class("-shown")
        else:
            banner.remove_class("-shown")
        gpus = [d for d in inv.devices if not d.is_cpu_slot]
        header = Text()
        slots_only = bool(inv.devices) and not gpus
        header.append("CPU slots" if slots_only else "GPUs", style="bold")  # as the status header says
        if inv.node:
            header.append("  on ")
            header.append(visible(inv.node))
        header.append(f"   {inv.in_use}/{inv.gpu_count} in use")
        if inv.tier_gpus:
            header.append(f" · tier allows {inv.tier_gpus}")
        header.append(f"   refresh {REFRESH_S:g}s", style="dim")
        self.query_one("#gpus-header", Static).update(header)
        self._fill(inv.devices)

    def _fill(self, devices) -> None:
        table = self.query_one(DataTable)
        row, scroll = table.cursor_row, table.scroll_y
        table.clear()
        target = min(row, len(devices) - 1)
        self._highlighted = target
        for i, d in enumerate(devices):
            name = Text(visible(d.name.removeprefix("NVIDIA ")), no_wrap=True, overflow="ellipsis")
            if d.is_mig:
                name.append(" MIG", style="dim")
            table.add_row(
                Text(str(d.index)),
                name,
                util_cell(d.utilization, 6 + self._extra),
                mem_cell(d.memory_used, d.memory_total, 4 + self._extra),
                _na(d.temperature, "{}C"),
                _na(None if d.power_watts is None else round(d.power_watts), "{}W"),
                _run_cell(d, selected=i == target),
                key=d.uuid,
            )
        if devices:
            table.move_cursor(row=target, animate=False, scroll=False)
            table.scroll_y = scroll
        self._show_detail()

    _highlighted = -1  # the row whose run cell is drawn for the cursor

    def on_data_table_row_highlighted(self, event) -> None:
        table = self.query_one(DataTable)
        devices = self.inventory.devices if self.inventory is not None else ()
        if event.cursor_row != self._highlighted:
            for i, selected in ((self._highlighted, False), (event.cursor_row, True)):
                if 0 <= i < min(len(devices), table.row_count):
                    table.update_cell_at((i, len(self.COLUMNS)), _run_cell(devices[i], selected=selected))
            self._highlighted = event.cursor_row
        self._show_detail()

    def _show_detail(self) -> None:
        detail = self.query_one("#device-detail", Static)
        inv = self.inventory
        table = self.query_one(DataTable)
        if inv is not None and not inv.devices:
            detail.update(Text("no devices found", style="dim"))
            return
        if inv is None or not 0 <= table.cursor_row < len(inv.devices):
            detail.update("")
            return
        d = inv.devices[table.cursor_row]
        grid = Table.grid(padding=(0, 2))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column(overflow="fold")
        grid.add_row("device", Text(visible(d.label)))
        if d.is_mig and d.parent_uuid:
            grid.add_row("MIG of", Text(visible(d.parent_uuid)))
        grid.add_row("run", Text(visible(d.held_by)) if d.held_by else Text("none", style="dim"))
        pids = ", ".join(str(p) for p in d.processes[:12]) + (" …" if len(d.processes) > 12 else "")
        grid.add_row("process ids", Text(pids or "none", style="" if pids else "dim"))
        if d.busy_foreign:
            grid.add_row("note", Text("in use by a process this agent did not start", style="yellow"))
        detail.update(grid)

    def action_back(self) -> None:
        if len(self.app.screen_stack) > 1:
            self.app.pop_screen()
