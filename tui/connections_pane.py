"""Every connection and its streams on one time axis; Enter opens a stream or a connection."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static

from .export import connection_payload, stream_payload
from .gantt import Gantt, GanttRow
from .styles import no_color, tone
from .view import View, dur, rel

LEGEND = ("━ call: green ok, red reset/error, yellow late, magenta open · ✕ reset · ┄ after reset · "
          "┊ deadline · ▼│ GOAWAY · F/R closed by FIN/RST")
LEGEND_NO_COLOR = ("━ call: bold reset/error, italic late or open · ✕ reset · ┄ after reset · "
                   "┊ deadline · ▼│ GOAWAY · F/R closed by FIN/RST")


def describe_row(view: View, row: Optional[GanttRow]) -> Text:
    text = Text()
    if row is None:
        return text
    if row.kind == "conn":
        c = view.connections[row.conn]
        text.append(view.conn_title(c), style="bold")
        text.append(f"\n{c.streams} streams · rtt {dur(c.rtt_ns)} · closed: {view.close_text(c)}")
        for g in c.goaways:
            text.append(f" · {view.goaway_text(g)} ({rel(g.ts_ns, c.start_ns)})", style=tone("goaway"))
        for note in c.notes[:2]:
            text.append(f"\n{note}", style="dim")
    else:
        s = view.streams[(row.conn, row.stream)]
        r = view.rows_by_key[(row.conn, row.stream)]
        text.append(view.stream_title(s), style="bold")
        text.append(f"\n{r.status} · {rel(s.start_ns, view.t0)} for {dur(s.duration_ns)} · timeout {r.timeout}")
        if r.kinds:
            text.append(" · " + ", ".join(r.kinds), style=tone("bad"))
    return text


class ConnectionsPane(Vertical):
    def __init__(self, view: View, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view

    def compose(self) -> ComposeResult:
        yield Gantt(self.view, id="connections-gantt")
        yield Static("", id="gantt-info")
        yield Static(LEGEND_NO_COLOR if no_color() else LEGEND, id="gantt-legend")

    def on_gantt_highlighted(self, event: Gantt.Highlighted) -> None:
        event.stop()
        self.query_one("#gantt-info", Static).update(describe_row(self.view, event.row))

    def on_gantt_selected(self, event: Gantt.Selected) -> None:
        event.stop()
        row = event.row
        if row.kind == "conn":
            self.app.open_connection(row.conn)
        else:
            key = (row.conn, row.stream)
            fs = self.view.findings_by_stream.get(key)
            evidence = frozenset(p for f in fs for p in f.packets) if fs else frozenset()
            self.app.open_stream(key, evidence, fs[0] if fs else None)

    def export(self):
        row = self.query_one(Gantt).current_row
        if row is None:
            return None
        if row.kind == "conn":
            return f"connection-{row.conn}", connection_payload(self.view, row.conn)
        return f"stream-{row.conn}-{row.stream}", stream_payload(self.view, (row.conn, row.stream))
