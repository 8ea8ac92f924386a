"""One connection: its streams on a time axis, GOAWAYs, how it closed, and all its frames."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from .connections_pane import describe_row
from .evidence_screen import EvidenceScreen
from .export import connection_payload
from .gantt import Gantt
from .stream_screen import frame_detail
from .tables import FramesTable
from .styles import tone
from .view import View, dur, rel, size


def connection_summary(view: View, c, finding=None) -> Text:
    text = Text()
    text.append(view.conn_title(c), style="bold")
    text.append(f"\n{c.streams} streams · {rel(c.start_ns, view.t0)} for {dur(c.end_ns - c.start_ns)} · "
                f"rtt {dur(c.rtt_ns)} · {c.packets[0]}/{c.packets[1]} packets · "
                f"{size(c.bytes[0])}/{size(c.bytes[1])} · closed: {view.close_text(c)}")
    shown = finding or next((f for f in view.findings_by_conn.get(c.id, []) if f.stream is None), None)
    if shown is not None:
        text.append(f"\n{shown.kind}: ", style=tone(shown.severity))
        text.append(shown.summary)
    for g in c.goaways:
        text.append(f"\n{view.goaway_text(g)} at {rel(g.ts_ns, c.start_ns)}", style=tone("goaway"))
    for note in c.notes[:2]:
        text.append(f"\n{note}", style="dim")
    return text


class ConnectionScreen(EvidenceScreen):
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("tab", "switch_focus", "Chart/frames"),
        Binding("n", "next_evidence", "Next evidence"),
        Binding("e", "export", "Export"),
    ]

    what = "connection"

    def __init__(self, view: View, cid: int, *, evidence: frozenset[int] = frozenset(), finding=None) -> None:
        super().__init__(view, evidence=evidence, finding=finding)
        self.cid = cid
        self.conn = view.connections[cid]
        self.sub_title = f"connection {cid}"

    def compose(self) -> ComposeResult:
        c = self.conn
        yield Header()
        yield Static(connection_summary(self.view, c, self.finding), id="conn-summary")
        gantt = Gantt(self.view, [c.id], start_ns=c.start_ns, id="conn-gantt")
        gantt.styles.height = min(len(gantt.rows) + 2, 10)  # axis, rows, border
        yield gantt
        yield FramesTable(self.view.conn_timeline(c.id), base_ns=c.start_ns, evidence=self.evidence,
                          show_stream=True, id="frames")
        yield Static("", id="frame-detail")
        yield Footer()

    def on_gantt_highlighted(self, event: Gantt.Highlighted) -> None:
        event.stop()
        if self.focused is event.gantt:
            self.query_one("#frame-detail", Static).update(describe_row(self.view, event.row))

    def on_gantt_selected(self, event: Gantt.Selected) -> None:
        event.stop()
        row = event.row
        if row.kind == "stream":
            self.app.open_stream((row.conn, row.stream), self.evidence, self.finding)
        else:
            self.table.focus()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        row = self.table.timeline_row()
        self.query_one("#frame-detail", Static).update(frame_detail(self.view, row, self.conn.start_ns, None))
        if row is not None and row.frame is not None and row.frame["stream"]:
            self.query_one(Gantt).select_row(self.cid, row.frame["stream"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        row = self.table.timeline_row()
        if row is not None and row.frame is not None and row.frame["stream"]:
            self.app.open_stream((self.cid, row.frame["stream"]), self.evidence, self.finding)

    def action_switch_focus(self) -> None:
        if self.focused is self.table:
            self.query_one(Gantt).focus()
        else:
            self.table.focus()

    def action_export(self) -> None:
        self.app.export(f"connection-{self.cid}", connection_payload(self.view, self.cid, self.evidence))
