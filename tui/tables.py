"""Tables: a DataTable that shows Enter in the footer, and the frame timeline table."""

from __future__ import annotations

from typing import Optional

from rich.cells import cell_len
from rich.text import Text
from textual.binding import Binding
from textual.widgets import DataTable

from .view import TimelineRow, frame_info, rel

FLAG_SHORT = {"END_STREAM": "ES", "END_HEADERS": "EH", "PADDED": "PAD", "PRIORITY": "PRIO", "ACK": "ACK"}
MAX_TIMELINE_ROWS = 2000
INFO_WIDTH = 160


class Table(DataTable):
    """A row-cursor DataTable whose Enter is shown in the footer."""

    BINDINGS = [Binding("enter", "select_cursor", "Open", show=True)]

    def __init__(self, **kwargs) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("cursor_background_priority", "css")
        super().__init__(**kwargs)

    def row_index(self) -> Optional[int]:
        return self.cursor_row if self.row_count else None


class FramesTable(Table):
    """A stream's (or a connection's) frames; evidence rows marked ● and highlighted.

    Times are relative to `base_ns` (the stream's or connection's start) and to the deadline.
    """

    COMPONENT_CLASSES = DataTable.COMPONENT_CLASSES | {
        "frames--evidence", "frames--late", "frames--reset", "frames--goaway", "frames--marker", "frames--close"}
    DEFAULT_CSS = """
    FramesTable > .frames--evidence { background: $error 35%; text-style: bold; }
    FramesTable > .frames--late { color: $error; }
    FramesTable > .frames--reset { color: $error; text-style: bold; }
    FramesTable > .frames--goaway { color: $warning; text-style: bold; }
    FramesTable > .frames--marker { color: magenta; text-style: italic; }
    FramesTable > .frames--close { color: $warning; text-style: italic; }
    /* NO_COLOR: greys by luminance would make red text unreadable; say it with weight instead */
    FramesTable:nocolor > .frames--late { color: $text; text-style: italic; }
    FramesTable:nocolor > .frames--reset { color: $text; text-style: bold underline; }
    FramesTable:nocolor > .frames--goaway { color: $text; text-style: bold; }
    FramesTable:nocolor > .frames--marker { color: $text; text-style: italic; }
    FramesTable:nocolor > .frames--close { color: $text; text-style: italic; }
    """

    def __init__(self, timeline: list[TimelineRow], *, base_ns: int, deadline_ns: Optional[int] = None,
                 evidence: frozenset[int] = frozenset(), show_stream: bool = False, **kwargs) -> None:
        kwargs.setdefault("cell_padding", 0)
        super().__init__(**kwargs)
        self.evidence = frozenset(evidence)
        self.base_ns = base_ns
        self.deadline_ns = deadline_ns
        self.show_stream = show_stream
        self.note = ""
        self.timeline = self._window(timeline)
        self.marked: list[int] = []  # row indexes marked as evidence

    def _window(self, timeline: list[TimelineRow]) -> list[TimelineRow]:
        """Very long connections: keep MAX_TIMELINE_ROWS around the first evidence frame."""
        if len(timeline) <= MAX_TIMELINE_ROWS:
            return timeline
        first = next((i for i, r in enumerate(timeline) if r.packet in self.evidence), 0)
        lo = max(0, min(first - MAX_TIMELINE_ROWS // 10, len(timeline) - MAX_TIMELINE_ROWS))
        self.note = f"showing frames {lo + 1}–{lo + MAX_TIMELINE_ROWS} of {len(timeline)}"
        return timeline[lo:lo + MAX_TIMELINE_ROWS]

    def on_mount(self) -> None:
        self.populate()

    def _cells(self, row: TimelineRow) -> tuple[str, list[str]]:
        fr = row.frame
        vs_deadline = rel(row.ns, self.deadline_ns) if self.deadline_ns is not None else ""
        if fr is None:
            glyph = "┊" if row.marker and row.marker.startswith("deadline") else "╳"
            kind = "marker" if glyph == "┊" else "close"
            cells = [glyph, str(row.packet) if row.packet is not None else "", rel(row.ns, self.base_ns), vs_deadline,
                     "", "┄" * 10 if kind == "marker" else "TCP", "", "", row.marker or ""]
            if self.show_stream:
                cells.insert(4, "")
            return kind, cells
        flags = " ".join(FLAG_SHORT.get(n, n) for n in fr.get("flag_names", ())) or "-"
        direction = "c→s" if fr["dir"] == "c2s" else "s→c"
        info = frame_info(fr)
        if cell_len(info) > INFO_WIDTH:
            info = info[:INFO_WIDTH - 1] + "…"
        cells = ["", str(fr["packet"]), rel(row.ns, self.base_ns), vs_deadline, direction, fr["type"], flags,
                 str(fr["length"]), info]
        if self.show_stream:
            cells.insert(4, str(fr["stream"]))
        if fr["packet"] in self.evidence:
            cells[0] = "●"
            kind = "evidence"
        elif fr["type"] == "RST_STREAM":
            kind = "reset"
        elif fr["type"] == "GOAWAY":
            kind = "goaway"
        elif row.late:
            kind = "late"
        else:
            kind = ""
        if row.late and not cells[0]:
            cells[0] = "·"
        return kind, cells

    def populate(self) -> None:
        self.clear(columns=True)
        labels = ["", "pkt", "+start", "vs deadline", "dir", "type", "flags", "len", "info"]
        if self.show_stream:
            labels.insert(4, "stream")
        if self.deadline_ns is None:
            labels[3] = ""
        built = [self._cells(r) for r in self.timeline]
        # a marker row can itself be evidence (the TCP FIN of a lost stream)
        for i, r in enumerate(self.timeline):
            if r.frame is None and r.packet is not None and r.packet in self.evidence:
                built[i][1][0] = "●"
                built[i] = ("evidence", built[i][1])
        widths = [cell_len(label) for label in labels]
        for _, cells in built:
            for i, c in enumerate(cells):
                widths[i] = max(widths[i], cell_len(c))
        right = {1, 2, 3, len(labels) - 2}
        # a zero-width column trips Textual's NO_COLOR filter (a segment without a style): leave it out
        keep = [i for i in range(len(labels)) if widths[i] > 0]
        widths[0] = max(widths[0], 1)
        keep = [0] + [i for i in keep if i != 0]
        for i in keep:
            self.add_column(self._pad(labels[i], widths[i], i in right), key=f"c{i}")
        styles = {k: self.get_component_rich_style(f"frames--{k}") for k in
                  ("evidence", "late", "reset", "goaway", "marker", "close")}
        self.marked = []
        rows = []
        for n, (kind, cells) in enumerate(built):
            style = styles.get(kind) if kind else None
            rows.append([self._pad(cells[i], widths[i], i in right, style) for i in keep])
            if kind == "evidence":
                self.marked.append(n)
        self.add_rows(rows)

    @staticmethod
    def _pad(value: str, width: int, right: bool = False, style=None) -> Text:
        pad = width - cell_len(value)
        body = (" " * pad + value) if right else (value + " " * pad)
        return Text(" " + body + " ", style=style or "")

    def marked_packets(self) -> list[int]:
        """Packet numbers of the rows shown as evidence (●), in table order."""
        out = []
        for n in self.marked:
            p = self.timeline[n].packet
            if p is not None:
                out.append(p)
        return out

    def focus_evidence(self) -> None:
        """Put the cursor on the first evidence row and scroll so what follows is in view."""
        if not self.marked:
            return
        first = self.marked[0]
        self.move_cursor(row=first, scroll=False)
        self.scroll_to(y=max(0, first - 2), animate=False)

    def timeline_row(self) -> Optional[TimelineRow]:
        if not self.row_count:
            return None
        return self.timeline[self.cursor_row]
