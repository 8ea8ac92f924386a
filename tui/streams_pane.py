"""Every stream in a sortable table, with a filter bar that filters as you type."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.widgets import DataTable, Input, Static

from .export import streams_payload
from .tables import Table
from .styles import tone
from .view import STREAM_COLUMNS, Filter, StreamRow, View, dur, rel, size

MAX_ROWS = 2000  # more are counted, not shown; filter or sort to bring others up
DEBOUNCE_ROWS = 3000  # above this many streams, wait for a pause in typing before filtering
FILTER_HINT = "method:  status:  kind:  conn:  stream:  or any text"


class FilterInput(Input):
    BINDINGS = [Binding("escape", "leave", "Back to table", show=True),
                Binding("down", "leave", show=False),
                Binding("enter", "leave", show=False)]

    def action_leave(self) -> None:
        self.parent.query_one(Table).focus()


class StreamsPane(Vertical):
    BINDINGS = [
        Binding("s", "sort_next", "Sort"),
        Binding("r", "reverse", "Reverse"),
    ]

    def __init__(self, view: View, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.sort_key = "start"
        self.reverse = False
        self.rows: list[StreamRow] = []
        self.filter = Filter()
        self._timer = None
        self._populated = False

    def compose(self) -> ComposeResult:
        yield FilterInput(placeholder=f"/ filter  ({FILTER_HINT})", id="streams-filter")
        yield Static("", id="streams-status")
        yield Table(id="streams-table")

    def on_mount(self) -> None:
        table = self.table
        for key, label, _ in STREAM_COLUMNS:
            table.add_column(label, key=key)

    def on_show(self) -> None:
        # filled when first shown: a big capture's table costs time the Findings tab need not wait for
        if not self._populated:
            self.refresh_rows()

    @property
    def table(self) -> Table:
        return self.query_one("#streams-table", Table)

    @property
    def query_text(self) -> str:
        return self.query_one("#streams-filter", Input).value

    # -- filtering and sorting -----------------------------------------------------------

    def set_filter(self, text: str) -> None:
        inp = self.query_one("#streams-filter", Input)
        inp.value = text
        inp.cursor_position = len(text)
        self._apply(text)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id != "streams-filter":
            return
        event.stop()
        if len(self.view.rows) > DEBOUNCE_ROWS:
            if self._timer is not None:
                self._timer.stop()
            self._timer = self.set_timer(0.25, lambda: self._apply(event.value))
        else:
            self._apply(event.value)

    def _apply(self, text: str) -> None:
        self.filter = Filter.parse(text)
        self.refresh_rows()

    def action_sort_next(self) -> None:
        keys = [k for k, _, _ in STREAM_COLUMNS]
        self.sort_key = keys[(keys.index(self.sort_key) + 1) % len(keys)]
        self.reverse = self.sort_key in ("duration", "overrun", "zombie")
        self.refresh_rows()

    def action_reverse(self) -> None:
        self.reverse = not self.reverse
        self.refresh_rows()

    def sort_by(self, key: str, reverse: Optional[bool] = None) -> None:
        if reverse is None:
            reverse = (not self.reverse) if key == self.sort_key else False
        self.sort_key, self.reverse = key, reverse
        self.refresh_rows()

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        if event.data_table.id == "streams-table":
            event.stop()
            self.sort_by(str(event.column_key.value))

    def refresh_rows(self) -> None:
        self._populated = True
        table = self.table
        current = self.current()
        rows = self.view.filtered_rows(self.filter, self.sort_key, self.reverse)
        self.rows = rows[:MAX_ROWS]
        table.clear()
        t0 = self.view.t0
        for r in self.rows:
            status = Text(r.status, style=tone("ok") if r.status == "OK" else tone("bad") if r.status != "-" else "")
            badges = Text(r.badges, style=tone(r.worst) if r.worst else "")
            table.add_row(f"{r.conn}/{r.stream}", rel(r.start_ns, t0), dur(r.duration_ns), r.method, status, r.timeout,
                          Text(dur(r.overrun_ns) if r.overrun_ns else "-", style=tone("warn") if r.overrun_ns else ""),
                          Text(size(r.zombie_bytes) if r.zombie_bytes else "-", style=tone("bad") if r.zombie_bytes else ""),
                          badges, key=f"{r.conn}/{r.stream}")
        if current is not None:
            for i, r in enumerate(self.rows):
                if r.key == current.key:
                    table.move_cursor(row=i)
                    break
        arrow = "↓" if self.reverse else "↑"
        label = dict((k, lbl) for k, lbl, _ in STREAM_COLUMNS)[self.sort_key]
        shown = f"{len(rows)} of {len(self.view.rows)} streams"
        if len(rows) > MAX_ROWS:
            shown += f" (first {MAX_ROWS} shown: filter or sort)"
        status = Text(f"{shown} · sorted by {label} {arrow}")
        if self.filter.errors:
            status.append("  " + "; ".join(self.filter.errors), style=tone("bad"))
        self.query_one("#streams-status", Static).update(status)

    # -- selection -----------------------------------------------------------------------

    def current(self) -> Optional[StreamRow]:
        table = self.table
        if not table.row_count or not self.rows:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "streams-table":
            event.stop()
            row = self.rows[event.cursor_row]
            f = self.view.findings_by_stream.get(row.key)
            evidence = frozenset(p for x in f for p in x.packets) if f else frozenset()
            self.app.open_stream(row.key, evidence, f[0] if f else None)

    def focus_filter(self) -> None:
        self.query_one("#streams-filter", Input).focus()

    def export(self):
        return "streams", streams_payload(self.view, self.view.filtered_rows(self.filter, self.sort_key, self.reverse),
                                          self.query_text)
