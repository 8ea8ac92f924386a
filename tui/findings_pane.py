"""Findings, worst first; Enter opens the evidence (the stream, or the connection)."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from .export import finding_payload
from .tables import Table
from .styles import tone
from .view import SEVERITY_LABEL, View, rel

SUMMARY_WIDTH = 200


class FindingsPane(Vertical):
    def __init__(self, view: View, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view

    def compose(self) -> ComposeResult:
        if not self.view.findings:
            yield Static("No findings: every call ended within its deadline and no peer misbehaved.",
                         id="findings-empty")
        yield Table(id="findings-table")
        yield Static("", id="finding-detail")

    def on_mount(self) -> None:
        table = self.query_one("#findings-table", Table)
        table.add_column("severity", key="severity")
        table.add_column("kind", key="kind")
        table.add_column("where", key="where")
        table.add_column("time", key="time")
        table.add_column("summary", key="summary")
        for i, f in enumerate(self.view.findings):
            where = f"{f.conn}/{f.stream}" if f.stream is not None else (f"conn {f.conn}" if f.conn is not None else "-")
            summary = f.summary if len(f.summary) <= SUMMARY_WIDTH else f.summary[:SUMMARY_WIDTH - 1] + "…"
            table.add_row(Text(SEVERITY_LABEL[f.severity], style=tone(f.severity)), f.kind, where,
                          rel(f.ts_ns, self.view.t0), summary, key=str(i))
        self._show(0)

    @property
    def table(self) -> Table:
        return self.query_one("#findings-table", Table)

    def current(self):
        table = self.table
        if not table.row_count:
            return None
        return self.view.findings[table.cursor_row]

    def _show(self, index: int) -> None:
        detail = self.query_one("#finding-detail", Static)
        if not self.view.findings:
            detail.update("")
            return
        f = self.view.findings[index]
        target = (f"stream {f.stream} on connection {f.conn}" if f.stream is not None
                  else f"connection {f.conn}" if f.conn is not None else "the capture")
        packets = ", ".join(map(str, f.packets))
        text = Text()
        text.append(f"{SEVERITY_LABEL[f.severity]} {f.kind}", style=tone(f.severity))
        text.append(f"  ·  Enter opens {target}\n", style="dim")
        text.append(f.summary)
        text.append(f"\nevidence packets: {packets}", style="dim")
        detail.update(text)

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.data_table.id == "findings-table":
            self._show(event.cursor_row)

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if event.data_table.id == "findings-table":
            event.stop()
            self.app.open_finding(self.view.findings[event.cursor_row])

    def export(self):
        f = self.current()
        if f is None:
            return None
        what = f"finding-{f.kind}-{f.conn}" + (f"-{f.stream}" if f.stream is not None else "")
        return what, finding_payload(self.view, f)
