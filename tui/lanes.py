"""A drawing of one stream's life: request and response lanes on a time axis.

              0           +100 ms          +200 ms          +300 ms
    request   H▌────────────────────────────┊
              ✕
    response   H ▌ ▌ ▌✕▒ ▒ ▒ ▒ ▒ ▒ ▒ ▒ ▒ ▒ ▒T
               ✕ RST CANCEL by client +63 ms  ┊ deadline +200 ms

H headers, T trailers, ▌ one DATA frame in a column, █ several (a burst), ✕ RST_STREAM, ▒ a
frame after the reset, ┊ the deadline, ▼ GOAWAY, ─ the side's half of the stream open.
"""

from __future__ import annotations

from typing import Optional

from rich.cells import cell_len
from rich.style import Style
from rich.text import Text
from textual.widget import Widget

from h2scope.http2.constants import error_name
from h2scope.model import SIDE_NAMES

from .styles import tone
from .view import View, frame_ns, rel

LABEL_WIDTH = 9
LEGEND = "H headers T trailers ▌█ DATA ▒ after reset ✕ RST ┊ deadline ▼ GOAWAY"
PRIORITY = {"RST_STREAM": 5, "HEADERS": 4, "CONTINUATION": 3, "DATA": 2}

S_EVIDENCE = Style(underline=True)


class LaneChart(Widget):
    """Draws itself at whatever width it gets; the time axis is the stream's life."""

    DEFAULT_CSS = """
    LaneChart { height: 6; border: round $primary 50%; padding: 0 1; }
    """

    def __init__(self, view: View, key: tuple[int, int], evidence: frozenset[int] = frozenset(), **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.key = key
        self.evidence = evidence
        self.border_title = "life of the stream"
        self.border_subtitle = LEGEND
        s = view.streams[key]
        if s.deadline_ns is not None and self._span()[2]:
            self.border_title += f" (deadline {rel(s.deadline_ns, s.start_ns)} is off the chart →)"

    def _span(self) -> tuple[int, int, bool]:
        """(t0, t1, deadline_off_chart): the deadline is drawn when it is not far beyond the last frame."""
        s = self.view.streams[self.key]
        t0 = s.start_ns
        times = [frame_ns(fr) for fr in self.view.stream_frames(self.key)]
        last = max(times + [t for t in (s.end_ns, s.rst_ns) if t is not None] + [t0])
        off = False
        if s.deadline_ns is not None:
            if s.deadline_ns <= t0 + 2 * max(1, last - t0):
                last = max(last, s.deadline_ns)
            else:
                off = True
        return t0, max(last, t0 + 1), off

    def render(self) -> Text:
        S_OPEN, S_HEADERS, S_DATA, S_LATE = tone("dim"), tone("headers"), tone("data"), tone("late")
        S_RST, S_DEADLINE, S_GOAWAY, S_OTHER = tone("rst_mark"), tone("deadline"), tone("goaway"), tone("dim")
        width = self.content_region.width or self.size.width
        s = self.view.streams[self.key]
        t0, t1, deadline_off = self._span()
        bw = max(8, width - LABEL_WIDTH)

        def col(t: int) -> int:
            return min(bw - 1, max(0, int((t - t0) * (bw - 1) / (t1 - t0) + 0.5)))

        lanes = [[" "] * bw, [" "] * bw]
        lane_styles: list[list[Optional[Style]]] = [[None] * bw, [None] * bw]
        prio = [[0] * bw, [0] * bw]
        data_count = [[0] * bw, [0] * bw]
        frames = self.view.stream_frames(self.key)
        # each side's half of the stream: from its first frame to END_STREAM / RST / last frame
        for side in (0, 1):
            mine = [fr for fr in frames if (fr["dir"] == "c2s") == (side == 0)]
            if not mine:
                continue
            start = col(frame_ns(mine[0]))
            end_t = s.end_stream_ns[side]
            if end_t is None:
                end_t = next(t for t in (s.rst_ns, s.end_ns, frame_ns(mine[-1])) if t is not None)
            for c in range(start, col(end_t) + 1):
                lanes[side][c] = "─"
                lane_styles[side][c] = S_OPEN
        seen_headers = [False, False]
        rst_seen = False
        for fr in frames:
            side = 0 if fr["dir"] == "c2s" else 1
            c = col(frame_ns(fr))
            t = fr["type"]
            p = PRIORITY.get(t, 1)
            late = rst_seen
            if t == "RST_STREAM":
                ch, st = "✕", S_RST
                rst_seen = True
            elif t in ("HEADERS", "CONTINUATION"):
                ch = "T" if seen_headers[side] and t == "HEADERS" else "H"
                seen_headers[side] = seen_headers[side] or t == "HEADERS"
                st = S_LATE if late else S_HEADERS
            elif t == "DATA":
                data_count[side][c] += 1
                ch = "▒" if late else ("█" if data_count[side][c] > 1 else "▌")
                st = S_LATE if late else S_DATA
            else:
                ch, st = "·", S_OTHER
            if fr["packet"] in self.evidence:
                st = st + S_EVIDENCE
            if p >= prio[side][c]:
                lanes[side][c] = ch
                lane_styles[side][c] = st
                prio[side][c] = p
        # vertical lines: the deadline and GOAWAYs cross both lanes
        markers: list[tuple[int, str, Style]] = []
        if s.deadline_ns is not None and not deadline_off:
            dc = col(s.deadline_ns)
            for side in (0, 1):
                if prio[side][dc] < 2:
                    lanes[side][dc] = "┊"
                    lane_styles[side][dc] = S_DEADLINE
            markers.append((dc, f"┊ deadline {rel(s.deadline_ns, t0)}", S_DEADLINE))
        for fr in self.view.goaway_frames(s.conn):
            gt = frame_ns(fr)
            if t0 <= gt <= t1:
                gc = col(gt)
                for side in (0, 1):
                    if prio[side][gc] < 2:
                        lanes[side][gc] = "│"
                        lane_styles[side][gc] = S_GOAWAY
                markers.append((gc, f"▼ GOAWAY {fr.get('error_code', '')} last {fr.get('last_stream_id')}",
                                S_GOAWAY))
        if s.rst_ns is not None:
            who = SIDE_NAMES[s.rst_by] if s.rst_by is not None else "?"
            markers.append((col(s.rst_ns), f"✕ RST {error_name(s.rst_code or 0)} by {who} {rel(s.rst_ns, t0)}",
                            tone("rst")))
        c = self.view.connections.get(s.conn)
        if c is not None and s.end_ns is not None and s.end_reason == "connection-closed":
            markers.append((col(s.end_ns), f"╳ TCP {self.view.close_text(c)}", tone("close")))
        markers.sort(key=lambda m: m[0])

        out = Text(no_wrap=True, overflow="crop")
        out.append(self._axis(bw, t0, t1, deadline_off))
        out.append("\n")
        for side, name in ((0, "request"), (1, "response")):
            out.append(name.ljust(LABEL_WIDTH), Style(bold=True))
            self._append_lane(out, lanes[side], lane_styles[side])
            out.append("\n")
        out.append(" " * LABEL_WIDTH)
        out.append(self._marker_line(bw, markers))
        return out

    @staticmethod
    def _append_lane(out: Text, chars: list[str], styles: list[Optional[Style]]) -> None:
        start = 0
        for c in range(1, len(chars) + 1):
            if c == len(chars) or styles[c] != styles[start]:
                out.append("".join(chars[start:c]), styles[start])
                start = c

    @staticmethod
    def _axis(bw: int, t0: int, t1: int, deadline_off: bool) -> Text:
        line = [" "] * bw
        ticks = 4 if bw >= 50 else 2
        for i in range(ticks + 1):
            c = round(i * (bw - 1) / ticks)
            label = "0" if i == 0 else rel(t0 + (t1 - t0) * c // max(1, bw - 1), t0)
            if i == ticks:
                start = max(0, bw - cell_len(label))
            elif i == 0:
                start = 0
            else:
                start = max(0, c - cell_len(label) // 2)
            if all(ch == " " for ch in line[max(0, start - 1):start + cell_len(label) + 1]):
                line[start:start + len(label)] = list(label)
        return Text("time".ljust(LABEL_WIDTH) + "".join(line[:bw]), style=Style(dim=True))

    @staticmethod
    def _marker_line(bw: int, markers: list[tuple[int, str, Style]]) -> Text:
        """Each label starts at its column when it can; crowded labels are pushed right, then left."""
        starts = []
        pos = -1
        for c, label, _ in markers:
            start = max(c, pos + 1)
            starts.append(start)
            pos = start + cell_len(label) + 1
        limit = bw
        for i in range(len(markers) - 1, -1, -1):  # pull back whatever runs off the right edge
            width = cell_len(markers[i][1])
            if starts[i] + width > limit:
                starts[i] = max(0, limit - width)
            limit = starts[i] - 1
        text = Text()
        pos = 0
        for (c, label, style), start in zip(markers, starts):
            if start < pos:  # no room left at all: this label is dropped (the lanes still show it)
                continue
            text.append(" " * (start - pos))
            text.append(label, style)
            pos = start + cell_len(label)
        text.truncate(bw)
        return text
