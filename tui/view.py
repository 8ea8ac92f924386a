"""What the screens show, derived once from the model: rows, badges, filters, timelines.

Nothing here touches Textual, so it is cheap to test; the screens only lay it out.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from h2scope.findings import SEVERITY_RANK
from h2scope.grpc.status import status_name
from h2scope.http2.constants import error_name
from h2scope.model import SIDE_NAMES
from h2scope.rules.common import ms, size

# One letter per finding kind, for the badge column (legend in the help screen).
BADGES = {
    "data-after-rst": "Z",
    "frames-after-goaway": "G",
    "deadline-exceeded": "D",
    "work-after-deadline": "W",
    "deadline-missing": "m",
    "invalid-grpc-timeout": "T",
    "stream-lost": "L",
    "cancel-storm": "S",
    "protocol-violation": "P",
}
SEVERITY_LABEL = {"error": "ERROR", "warning": "WARN", "info": "info"}

StreamKey = tuple[int, int]


def utc(ns: Optional[int]) -> str:
    if ns is None:
        return "-"
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f") + " UTC"


def rel(ns: Optional[int], base: Optional[int]) -> str:
    """A time relative to `base`, signed: +12 ms, -3.1 ms."""
    if ns is None or base is None:
        return "-"
    d = ns - base
    if abs(d) < 1000:  # frame times are float seconds: below a microsecond is rounding
        return "0"
    return ("+" if d >= 0 else "-") + ms(abs(d))


def dur(ns: Optional[int]) -> str:
    return "-" if ns is None else ms(ns)


def frame_ns(frame: dict) -> int:
    return int(round(frame["time"] * 1e9))


@dataclass
class StreamRow:
    key: StreamKey
    conn: int
    stream: int
    start_ns: int
    duration_ns: Optional[int]
    method: str
    status: str
    timeout: str
    timeout_ns: Optional[int]
    overrun_ns: Optional[int]
    zombie_bytes: int
    kinds: list[str]
    worst: Optional[str]  # worst severity among its findings
    text: str = ""  # everything, lower-cased, for free-text filtering

    @property
    def badges(self) -> str:
        return "".join(BADGES.get(k, "?") for k in self.kinds)


# Columns of the streams table: (key, label, sort key on a StreamRow).
STREAM_COLUMNS: list[tuple[str, str, Callable[[StreamRow], object]]] = [
    ("id", "conn/stream", lambda r: r.key),
    ("start", "start", lambda r: r.start_ns),
    ("duration", "duration", lambda r: (r.duration_ns is None, r.duration_ns or 0)),
    ("method", "method", lambda r: r.method),
    ("status", "status", lambda r: r.status),
    ("timeout", "timeout", lambda r: (r.timeout_ns is None, r.timeout_ns or 0)),
    ("overrun", "overrun", lambda r: (r.overrun_ns is None, r.overrun_ns or 0)),
    ("zombie", "zombie", lambda r: r.zombie_bytes),
    ("findings", "findings", lambda r: (-len(r.kinds), r.badges)),
]
STREAM_SORT_KEYS = {k: f for k, _, f in STREAM_COLUMNS}


def stream_status(s) -> str:
    if s.grpc_status is not None:
        return status_name(s.grpc_status)
    if s.rst_by is not None:
        return f"RST {error_name(s.rst_code or 0)}"
    if s.http_status is not None:
        return str(s.http_status)
    if s.end_ns is None:
        return "open"
    return s.end_reason or "-"


@dataclass
class Filter:
    """`method:Unary status:cancel kind:zombie conn:0 stream:5 free text` — all must match."""

    method: list[str] = field(default_factory=list)
    status: list[str] = field(default_factory=list)
    kind: list[str] = field(default_factory=list)
    conn: list[int] = field(default_factory=list)
    stream: list[int] = field(default_factory=list)
    text: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    ALIASES = {"m": "method", "method": "method", "path": "method", "s": "status", "status": "status",
               "k": "kind", "kind": "kind", "finding": "kind", "c": "conn", "conn": "conn",
               "connection": "conn", "stream": "stream", "id": "stream"}

    @classmethod
    def parse(cls, query: str) -> "Filter":
        f = cls()
        try:
            tokens = shlex.split(query)
        except ValueError:  # an unclosed quote while typing
            tokens = query.replace('"', " ").replace("'", " ").split()
        for tok in tokens:
            name, sep, value = tok.partition(":")
            field_name = cls.ALIASES.get(name.lower()) if sep else None
            if field_name is None:
                f.text.append(tok.lower())
                continue
            if not value:
                continue
            if field_name in ("conn", "stream"):
                try:
                    getattr(f, field_name).append(int(value))
                except ValueError:
                    f.errors.append(f"{name}: wants a number")
            else:
                getattr(f, field_name).append(value.lower())
        return f

    @property
    def empty(self) -> bool:
        return not (self.method or self.status or self.kind or self.conn or self.stream or self.text)

    def match(self, r: StreamRow) -> bool:
        m = r.method.lower()
        if any(v not in m for v in self.method):
            return False
        st = r.status.lower()
        if any(v not in st for v in self.status):
            return False
        for v in self.kind:  # one letter: a badge; more: part of a kind's name
            if len(v) == 1:
                if not any(v == BADGES.get(k, "").lower() for k in r.kinds):
                    return False
            elif not any(v in k for k in r.kinds):
                return False
        if self.conn and r.conn not in self.conn:
            return False
        if self.stream and r.stream not in self.stream:
            return False
        return all(v in r.text for v in self.text)


@dataclass
class TimelineRow:
    """One row of a frame timeline: a frame, or a marker (deadline) with no packet."""

    ns: int
    frame: Optional[dict]
    marker: Optional[str] = None
    late: bool = False  # after this stream's first RST_STREAM
    marker_packet: Optional[int] = None  # a marker that is a packet, e.g. the TCP FIN

    @property
    def packet(self) -> Optional[int]:
        return self.marker_packet if self.frame is None else self.frame["packet"]


class View:
    """The analysis, indexed the ways the screens look things up."""

    def __init__(self, analysis) -> None:
        self.analysis = analysis
        cap = analysis.capture
        starts = [c.start_ns for c in analysis.connections] + [s.start_ns for s in analysis.streams]
        self.t0: int = cap.first_ns if cap.first_ns is not None else (min(starts) if starts else 0)
        self.t1: int = cap.last_ns if cap.last_ns is not None else self.t0
        self.findings = list(analysis.findings)  # the rules sort them worst first
        self.streams = {(s.conn, s.stream): s for s in analysis.streams}
        self.connections = {c.id: c for c in analysis.connections}
        self.findings_by_stream: dict[StreamKey, list] = {}
        self.findings_by_conn: dict[int, list] = {}
        self.zombie_bytes: dict[StreamKey, int] = {}
        self.overrun_ns: dict[StreamKey, int] = {}
        for f in self.findings:
            if f.conn is not None:
                self.findings_by_conn.setdefault(f.conn, []).append(f)
            for key in self.finding_streams(f):
                lst = self.findings_by_stream.setdefault(key, [])
                if f not in lst:
                    lst.append(f)
            if f.kind == "data-after-rst" and f.stream is not None:
                key = (f.conn, f.stream)
                self.zombie_bytes[key] = self.zombie_bytes.get(key, 0) + int(f.details.get("bytes", 0) or 0)
            if f.kind == "deadline-exceeded" and f.stream is not None and f.details.get("overrun") is not None:
                self.overrun_ns[(f.conn, f.stream)] = int(f.details["overrun"] * 1e9)
        self.rows = [self._row(s) for s in analysis.streams]
        self.rows_by_key = {r.key: r for r in self.rows}
        self._conn_timeline: dict[int, list[dict]] = {}

    # -- lookups -------------------------------------------------------------------------

    def finding_streams(self, f) -> list[StreamKey]:
        """The streams a finding is about: its own, or those it lists (storms, GOAWAY, summaries)."""
        keys: list[StreamKey] = []
        if f.stream is not None and f.conn is not None:
            keys.append((f.conn, f.stream))
        for item in f.details.get("streams", ()) or ():
            if isinstance(item, int) and f.conn is not None:
                key = (f.conn, item)
            elif isinstance(item, (list, tuple)) and len(item) == 2:
                key = (int(item[0]), int(item[1]))
            else:
                continue
            if key in self.streams and key not in keys:
                keys.append(key)
        return keys

    def stream_frames(self, key: StreamKey) -> list[dict]:
        return self.analysis.frames_by_stream.get(key, [])

    def conn_frames(self, cid: int) -> list[dict]:
        """Every frame on a connection in capture order (connection-level and all streams)."""
        if cid not in self._conn_timeline:
            frames = list(self.analysis.conn_frames.get(cid, []))
            for (c, _), lst in self.analysis.frames_by_stream.items():
                if c == cid:
                    frames.extend(lst)
            frames.sort(key=lambda fr: (fr["packet"], fr["time"]))
            self._conn_timeline[cid] = frames
        return self._conn_timeline[cid]

    def goaway_frames(self, cid: int) -> list[dict]:
        return [fr for fr in self.analysis.conn_frames.get(cid, []) if fr["type"] == "GOAWAY"]

    def stream_end_ns(self, s) -> Optional[int]:
        """When the stream's last frame was seen (later than end_ns for a zombie)."""
        ends = [t for t in (s.end_ns, *s.last_frame_ns) if t is not None]
        return max(ends) if ends else None

    # -- rows ----------------------------------------------------------------------------

    def _row(self, s) -> StreamRow:
        key = (s.conn, s.stream)
        kinds = []
        worst = None
        for f in self.findings_by_stream.get(key, []):
            if f.kind not in kinds:
                kinds.append(f.kind)
            if worst is None or f.rank > SEVERITY_RANK[worst]:
                worst = f.severity
        overrun = self.overrun_ns.get(key)
        if overrun is None and s.deadline_ns is not None and s.end_ns is not None and s.end_ns > s.deadline_ns:
            overrun = s.end_ns - s.deadline_ns
        status = stream_status(s)
        method = s.method or "-"
        row = StreamRow(key=key, conn=s.conn, stream=s.stream, start_ns=s.start_ns, duration_ns=s.duration_ns,
                        method=method, status=status, timeout=s.grpc_timeout or "-", timeout_ns=s.timeout_ns,
                        overrun_ns=overrun, zombie_bytes=self.zombie_bytes.get(key, 0), kinds=kinds, worst=worst)
        row.text = " ".join([f"{s.conn}/{s.stream}", method, status, s.end_reason or "", s.authority or "",
                             " ".join(kinds), row.badges, s.grpc_message or ""]).lower()
        return row

    def filtered_rows(self, flt: Filter, sort_key: str = "start", reverse: bool = False) -> list[StreamRow]:
        rows = [r for r in self.rows if flt.match(r)] if not flt.empty else list(self.rows)
        rows.sort(key=STREAM_SORT_KEYS[sort_key], reverse=reverse)
        return rows

    def stream_timeline(self, key: StreamKey) -> list[TimelineRow]:
        """The stream's frames, the connection's GOAWAYs during its life, and the deadline line."""
        s = self.streams[key]
        rows = []
        rst_seen = False
        for fr in self.stream_frames(key):
            row = TimelineRow(frame_ns(fr), fr, late=rst_seen)
            rows.append(row)
            if fr["type"] == "RST_STREAM":
                rst_seen = True
        last = self.stream_end_ns(s) or s.start_ns
        for fr in self.goaway_frames(s.conn):
            t = frame_ns(fr)
            if s.start_ns <= t <= last or fr["packet"] == s.goaway_packet:
                rows.append(TimelineRow(t, fr))
        if s.deadline_ns is not None:
            rows.append(TimelineRow(s.deadline_ns, None, marker=f"deadline ({s.grpc_timeout})"))
        c = self.connections.get(s.conn)
        if c is not None and c.close != "open" and (s.end_ns is None or s.end_reason == "connection-closed"):
            t = s.end_ns if s.end_ns is not None else c.end_ns
            rows.append(TimelineRow(t, None, marker=f"TCP {self.close_text(c)}", marker_packet=c.close_packet))
        rows.sort(key=lambda r: (r.ns, r.frame is None and r.marker_packet is None, r.packet or 0))
        return rows

    def conn_timeline(self, cid: int) -> list[TimelineRow]:
        """All frames of a connection in packet order, with how the TCP connection closed."""
        rows = []
        rst_streams: set[int] = set()
        for fr in self.conn_frames(cid):
            rows.append(TimelineRow(frame_ns(fr), fr, late=fr["stream"] in rst_streams))
            if fr["type"] == "RST_STREAM":
                rst_streams.add(fr["stream"])
        c = self.connections.get(cid)
        if c is not None and c.close != "open":
            rows.append(TimelineRow(c.end_ns, None, marker=f"TCP {self.close_text(c)}", marker_packet=c.close_packet))
        rows.sort(key=lambda r: (r.packet if r.packet is not None else 1 << 62, r.ns))
        return rows

    # -- text ----------------------------------------------------------------------------

    def stream_title(self, s) -> str:
        return f"stream {s.stream} · conn {s.conn} · {s.method or '(no :path)'}"

    def conn_title(self, c) -> str:
        return f"connection {c.id} · {c.client} → {c.server} · {c.protocol}"

    def close_text(self, c) -> str:
        if c.close == "open":
            return "still open at the end of the capture"
        how = "FIN" if c.close == "fin" else "RST"
        by = f" by {c.close_by}" if c.close_by else ""
        at = f" @{c.close_packet}" if c.close_packet else ""
        return f"{how}{by}{at}"

    def goaway_text(self, g) -> str:
        return (f"GOAWAY by {SIDE_NAMES[g.by]} @{g.packet} {error_name(g.error_code)} "
                f"last-stream {g.last_stream_id}" + (f" cut {len(g.affected)}" if g.affected else ""))



def frame_info(fr: dict, headers: bool = True) -> str:
    """What a frame says, in one line: error codes, GOAWAY's last stream, headers."""
    parts = []
    if "error_code" in fr:
        parts.append(str(fr["error_code"]))
    if "last_stream_id" in fr:
        parts.append(f"last-stream {fr['last_stream_id']}")
    if "settings" in fr and fr["settings"]:
        parts.append(" ".join(f"{k}={v}" for k, v in fr["settings"].items()))
    if headers and fr.get("headers"):
        parts.append("  ".join(f"{n}: {v}" for n, v in fr["headers"]))
    if fr.get("damaged"):
        parts.append("(bytes missing from capture)")
    return "  ".join(parts)


def header_lines(headers) -> list[str]:
    out = []
    for name, value in headers or ():
        extra = ""
        if name == "grpc-status":
            try:
                extra = f" ({status_name(int(value))})"
            except ValueError:
                pass
        out.append(f"{name}: {value}{extra}")
    return out


__all__ = ["BADGES", "Filter", "StreamRow", "TimelineRow", "View", "STREAM_COLUMNS", "dur", "frame_info",
           "header_lines", "ms", "rel", "size", "stream_status", "utc"]
