"""One stream: what it was, a drawing of its life, and its frames with the evidence marked."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from h2scope.http2.constants import error_name
from h2scope.model import SIDE_NAMES

from .evidence_screen import EvidenceScreen
from .export import stream_payload
from .lanes import LaneChart
from .tables import FramesTable
from .styles import tone
from .view import View, dur, frame_info, header_lines, rel, size


def stream_summary(view: View, s, finding=None) -> Text:
    r = view.rows_by_key[(s.conn, s.stream)]
    text = Text()
    text.append(f"stream {s.stream}", style="bold")
    text.append(f" on conn {s.conn} · ")
    text.append(s.method or "(no :path)", style="bold")
    if s.authority:
        text.append(f" · {s.authority}", style="dim")
    line2 = [r.status, f"{rel(s.start_ns, view.t0)} for {dur(s.duration_ns)}"]
    if s.grpc_timeout:
        line2.append(f"timeout {s.grpc_timeout}")
    elif s.grpc:
        line2.append("no deadline")
    if s.rst_by is not None:
        line2.append(f"RST {error_name(s.rst_code or 0)} by {SIDE_NAMES[s.rst_by]} @{s.rst_packet}")
    elif s.end_reason and s.end_reason != r.status:
        line2.append(f"ended: {s.end_reason}")
    line2.append(f"DATA {size(s.data_bytes[0])} ↑ {size(s.data_bytes[1])} ↓")
    text.append("\n" + " · ".join(line2))
    fs = view.findings_by_stream.get((s.conn, s.stream), [])
    shown = finding or (fs[0] if fs else None)
    if shown is not None:
        text.append(f"\n{shown.kind}: ", style=tone(shown.severity))
        text.append(shown.summary)
        others = [f.kind for f in fs if f is not shown]
        if others:
            text.append("  (also: " + ", ".join(dict.fromkeys(others)) + ")", style="dim")
    return text


def frame_detail(view: View, row, base_ns: int, deadline_ns: Optional[int]) -> Text:
    text = Text()
    if row is None:
        return text
    fr = row.frame
    if fr is None:
        text.append(row.marker or "", style=tone("deadline"))
        text.append(f"  {rel(row.ns, base_ns)} from the start")
        if row.packet is not None:
            text.append(f" · packet {row.packet}")
        return text
    direction = "client → server" if fr["dir"] == "c2s" else "server → client"
    text.append(f"packet {fr['packet']} · {fr['type']}", style="bold")
    if fr.get("flag_names"):
        text.append(" " + "|".join(fr["flag_names"]))
    text.append(f" · {direction} · stream {fr['stream']} · {fr['length']} B · {rel(row.ns, base_ns)} from the start")
    if deadline_ns is not None:
        text.append(f" · {rel(row.ns, deadline_ns)} vs the deadline")
    if row.late:
        text.append(" · after the reset", style=tone("late"))
    if fr.get("headers"):
        text.append("\n" + "   ".join(header_lines(fr["headers"])), style=tone("headers"))
    else:
        info = frame_info(fr)
        if info:
            text.append(" · " + info)
    return text


class StreamScreen(EvidenceScreen):
    what = "stream"

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        Binding("n", "next_evidence", "Next evidence"),
        Binding("h", "headers", "Headers"),
        Binding("c", "connection", "Connection"),
        Binding("e", "export", "Export"),
    ]

    def __init__(self, view: View, key: tuple[int, int], *, evidence: frozenset[int] = frozenset(),
                 finding=None) -> None:
        super().__init__(view, evidence=evidence, finding=finding)
        self.key = key
        self.stream = view.streams[key]
        self.sub_title = f"stream {key[1]} · conn {key[0]}"

    def compose(self) -> ComposeResult:
        s = self.stream
        yield Header()
        yield Static(stream_summary(self.view, s, self.finding), id="stream-summary")
        yield LaneChart(self.view, self.key, self.evidence, id="lanes")
        yield FramesTable(self.view.stream_timeline(self.key), base_ns=s.start_ns, deadline_ns=s.deadline_ns,
                          evidence=self.evidence, id="frames")
        yield Static("", id="frame-detail")
        yield Footer()

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        table = self.table
        self.query_one("#frame-detail", Static).update(
            frame_detail(self.view, table.timeline_row(), self.stream.start_ns, self.stream.deadline_ns))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.action_headers()

    def action_headers(self) -> None:
        from .headers_screen import HeadersScreen

        self.app.push_screen(HeadersScreen(self.view, self.stream))

    def action_connection(self) -> None:
        self.app.open_connection(self.stream.conn, self.evidence, self.finding)

    def action_export(self) -> None:
        s = self.stream
        self.app.export(f"stream-{s.conn}-{s.stream}", stream_payload(self.view, self.key, self.evidence))
