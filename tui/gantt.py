"""A gantt chart of connections and their streams on one time axis (Line API, scrolls, has a cursor).

    conn 0 h2c FIN   ─────────────▼────────────────────────F
      1 ServerStream   ━━━━━━━━✕┄┄┄┄┄┄┄┄┄┄┄│┄┄┄┄┄┊
      3 Unary                 ━            │

Bars: ━ the call (green ok, red reset or error status, yellow past its deadline, magenta never
ended), ✕ reset, ┄ frames after the reset (zombie), ┊ deadline, ▼ and │ GOAWAY, F/R how the
connection closed (FIN/RST), » still open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.reactive import reactive
from textual.scroll_view import ScrollView
from textual.strip import Strip

from .styles import tone
from .view import BADGES, View, rel

GLYPH_BAR = "━"
GLYPH_OPEN = "┅"
GLYPH_TAIL = "┄"
GLYPH_RST = "✕"
GLYPH_DEADLINE = "┊"
GLYPH_GOAWAY = "▼"
GLYPH_GOAWAY_LINE = "│"
GLYPH_CONN = "─"



@dataclass
class GanttRow:
    kind: str  # "conn" | "stream"
    conn: int
    stream: Optional[int]
    label: str
    badges: str = ""
    start_ns: int = 0
    end_ns: Optional[int] = None  # None: never ended
    tail_end_ns: Optional[int] = None  # last frame after end (zombie tail)
    rst_ns: Optional[int] = None
    deadline_ns: Optional[int] = None
    style: str = "ok"  # a name in styles.PALETTE
    goaways: list = field(default_factory=list)  # ns of the connection's GOAWAYs
    close: str = ""  # conn rows: "fin" | "rst" | "open"


def build_rows(view: View, conn_ids: Optional[list[int]] = None) -> list[GanttRow]:
    rows: list[GanttRow] = []
    by_conn: dict[int, list] = {}
    for s in view.analysis.streams:
        by_conn.setdefault(s.conn, []).append(s)
    for c in view.analysis.connections:
        if conn_ids is not None and c.id not in conn_ids:
            continue
        goaways = [g.ts_ns for g in c.goaways]
        close = {"fin": "FIN", "rst": "RST"}.get(c.close, "open")
        rows.append(GanttRow("conn", c.id, None, f"conn {c.id} {c.protocol} {close}", start_ns=c.start_ns,
                             end_ns=c.end_ns if c.close != "open" else None, goaways=goaways, close=c.close,
                             badges="".join(dict.fromkeys(BADGES.get(f.kind, "?")
                                                          for f in view.findings_by_conn.get(c.id, [])
                                                          if f.stream is None))))
        for s in sorted(by_conn.get(c.id, []), key=lambda s: s.stream):
            key = (s.conn, s.stream)
            row = view.rows_by_key[key]
            if s.end_ns is None:
                style = "open"
            elif key in view.overrun_ns or (row.overrun_ns or 0) > 0:
                style = "warn"
            elif s.rst_by is not None or (s.grpc_status not in (None, 0)) or (
                    s.http_status is not None and s.http_status >= 400):
                style = "bad"
            else:
                style = "ok"
            last = view.stream_end_ns(s)
            name = s.rpc or s.method or "-"
            rows.append(GanttRow("stream", s.conn, s.stream, f"{s.stream:>3} {name}", badges=row.badges,
                                 start_ns=s.start_ns, end_ns=s.end_ns,
                                 tail_end_ns=last if s.end_ns is not None and last and last > s.end_ns else None,
                                 rst_ns=s.rst_ns, deadline_ns=s.deadline_ns, style=style, goaways=goaways,
                                 close=c.close))
    return rows


class Gantt(ScrollView, can_focus=True):
    """Rows of bars over a shared time axis; the first line is the axis and stays put."""

    COMPONENT_CLASSES = {"gantt--cursor", "gantt--axis", "gantt--conn"}
    DEFAULT_CSS = """
    Gantt { height: 1fr; overflow-x: hidden; }
    Gantt > .gantt--cursor { background: $accent 40%; text-style: bold; }
    Gantt > .gantt--axis { color: $text-muted; }
    Gantt > .gantt--conn { text-style: bold; }
    """
    BINDINGS = [
        Binding("up,k", "cursor(-1)", "Up", show=False),
        Binding("down,j", "cursor(1)", "Down", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "first", show=False),
        Binding("end", "last", show=False),
        Binding("enter", "select", "Open"),
    ]

    cursor = reactive(0, always_update=True)

    class Highlighted(Message):
        def __init__(self, gantt: "Gantt", row: Optional[GanttRow]) -> None:
            super().__init__()
            self.gantt = gantt
            self.row = row

    class Selected(Message):
        def __init__(self, gantt: "Gantt", row: GanttRow) -> None:
            super().__init__()
            self.gantt = gantt
            self.row = row

    def __init__(self, view: View, conn_ids: Optional[list[int]] = None, *, start_ns: Optional[int] = None,
                 end_ns: Optional[int] = None, name=None, id=None, classes=None) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self.view = view
        self.rows = build_rows(view, conn_ids)
        starts = [r.start_ns for r in self.rows]
        ends = [t for r in self.rows for t in (r.end_ns, r.tail_end_ns, *r.goaways) if t is not None]
        self.t0 = start_ns if start_ns is not None else min(starts + [view.t0])
        self.t1 = end_ns if end_ns is not None else max(ends + [view.t1, self.t0 + 1])

    def on_mount(self) -> None:
        self.virtual_size = Size(0, len(self.rows) + 1)
        self.post_message(self.Highlighted(self, self.current_row))

    @property
    def current_row(self) -> Optional[GanttRow]:
        return self.rows[self.cursor] if 0 <= self.cursor < len(self.rows) else None

    def select_row(self, conn: int, stream: Optional[int]) -> None:
        for i, r in enumerate(self.rows):
            if r.conn == conn and r.stream == stream:
                self.cursor = i
                return

    # -- geometry -----------------------------------------------------------------------

    def _label_width(self, width: int) -> int:
        return max(12, min(30, width // 4))

    def _col(self, t: int, bar_width: int) -> int:
        span = max(1, self.t1 - self.t0)
        c = int((t - self.t0) * (bar_width - 1) / span + 0.5)
        return min(bar_width - 1, max(0, c))

    # -- cursor -------------------------------------------------------------------------

    def validate_cursor(self, value: int) -> int:
        return max(0, min(value, len(self.rows) - 1)) if self.rows else 0

    def watch_cursor(self, old: int, new: int) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)
        top = int(self.scroll_y)
        if new < top:
            self.scroll_to(y=new, animate=False)
        elif new >= top + visible:
            self.scroll_to(y=new - visible + 1, animate=False)
        self.refresh()
        self.post_message(self.Highlighted(self, self.current_row))

    def action_cursor(self, delta: int) -> None:
        self.cursor += delta

    def action_page(self, direction: int) -> None:
        self.cursor += direction * max(1, self.scrollable_content_region.height - 2)

    def action_first(self) -> None:
        self.cursor = 0

    def action_last(self) -> None:
        self.cursor = len(self.rows) - 1

    def action_select(self) -> None:
        row = self.current_row
        if row is not None:
            self.post_message(self.Selected(self, row))

    def on_click(self, event) -> None:
        if event.y <= 0:
            return
        index = int(self.scroll_y) + event.y - 1
        if 0 <= index < len(self.rows):
            if index == self.cursor or event.chain >= 2:
                self.cursor = index
                self.action_select()
            else:
                self.cursor = index

    # -- drawing ------------------------------------------------------------------------

    def render_line(self, y: int) -> Strip:
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:
            text = self._axis(width)
        else:
            index = int(self.scroll_y) + y - 1
            if index >= len(self.rows):
                return Strip.blank(width, base)
            text = self._row(self.rows[index], width)
            if index == self.cursor:
                text.stylize(self.get_component_rich_style("gantt--cursor"))
        segments = list(text.render(self.app.console))
        return Strip(segments).apply_style(base).adjust_cell_length(width, base)

    def _axis(self, width: int) -> Text:
        lw = self._label_width(width)
        bw = max(4, width - lw - 1)
        line = [" "] * bw
        ticks = 4 if bw >= 48 else 2
        for i in range(ticks + 1):
            col = round(i * (bw - 1) / ticks)
            t = self.t0 + (self.t1 - self.t0) * col // max(1, bw - 1)
            label = "0" if i == 0 else rel(t, self.t0)
            start = col if i < ticks else max(0, col - cell_len(label) + 1)
            if i and 0 < i < ticks:
                start = max(0, col - len(label) // 2)
            if all(c == " " for c in line[max(0, start - 1):start + len(label) + 1]):
                line[start:start + len(label)] = list(label)
        style = self.get_component_rich_style("gantt--axis")
        head = "time since start".ljust(lw)[:lw] if self.t0 == self.view.t0 else "time since conn start".ljust(lw)[:lw]
        return Text(head + " " + "".join(line)[:bw], style=style)

    def _row(self, row: GanttRow, width: int) -> Text:
        lw = self._label_width(width)
        bw = max(4, width - lw - 1)
        chars = [" "] * bw
        styles: list[Optional[Style]] = [None] * bw

        def put(col: int, ch: str, st: Style, over: bool = True) -> None:
            if over or chars[col] == " ":
                chars[col] = ch
                styles[col] = st

        start = self._col(row.start_ns, bw)
        if row.kind == "conn":
            end = self._col(row.end_ns, bw) if row.end_ns is not None else bw - 1
            for c in range(start, end + 1):
                put(c, GLYPH_CONN, tone("dim"))
            if row.close == "fin":
                put(end, "F", Style(bold=True))
            elif row.close == "rst":
                put(end, "R", tone("rst"))
            else:
                put(end, "»", tone("open"))
            for g in row.goaways:
                put(self._col(g, bw), GLYPH_GOAWAY, tone("goaway"))
        else:
            end = self._col(row.end_ns, bw) if row.end_ns is not None else bw - 1
            glyph = GLYPH_BAR if row.end_ns is not None else GLYPH_OPEN
            for c in range(start, end + 1):
                put(c, glyph, tone(row.style))
            if row.tail_end_ns is not None:
                for c in range(end + 1, self._col(row.tail_end_ns, bw) + 1):
                    put(c, GLYPH_TAIL, tone("rst"))
            for g in row.goaways:
                put(self._col(g, bw), GLYPH_GOAWAY_LINE, tone("goaway"), over=False)
            if row.deadline_ns is not None and self.t0 <= row.deadline_ns <= self.t1:
                put(self._col(row.deadline_ns, bw), GLYPH_DEADLINE, tone("deadline"))
            if row.rst_ns is not None:
                put(self._col(row.rst_ns, bw), GLYPH_RST, tone("rst"))
        label = row.label
        badges = row.badges
        room = lw - (cell_len(badges) + 1 if badges else 0)
        if cell_len(label) > room:
            label = label[:max(1, room - 1)] + "…"
        text = Text()
        text.append(label.ljust(room), self.get_component_rich_style("gantt--conn") if row.kind == "conn" else None)
        if badges:
            text.append(" " + badges, tone("rst"))
        text.append(" ")
        run_start = 0
        for c in range(1, bw + 1):
            if c == bw or styles[c] != styles[run_start]:
                text.append("".join(chars[run_start:c]), styles[run_start])
                run_start = c
        return text
