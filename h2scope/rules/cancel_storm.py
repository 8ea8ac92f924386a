"""cancel-storm: many streams reset within a short window, on one connection or from one
client host across its connections. Thresholds: Options.storm_count resets within
Options.storm_window_s (defaults 10 in 1 s; --storm-count, --storm-window).

Compiled with the pipeline (h2scope/native.py): it runs for every reset stream, in the
--jobs parent, where it was most of the parent's work on W4 (a third of the calls cancelled).

Resets are fed as the streams they end close, in packet order, and a run is reported when
it ends, so memory holds at most `count` pending resets per open connection and per
active client host, whatever the capture's size.
"""

from __future__ import annotations

from collections import Counter, deque
from functools import partial
from typing import Any, Callable, Optional

from ..findings import Finding
from ..http2.constants import error_name
from ..model import SIDE_NAMES
from .common import MAX_EVIDENCE, ms, where

KIND = "cancel-storm"
MAX_STREAMS_LISTED = 100


# A reset as the detectors see it: rules/stream.reset_fact(rec) and the connection's id,
# (ts_ns, packet, stream, by, code, conn).
Reset = tuple[int, int, int, int, int, int]


class Run:
    """A storm in progress: counts and the first few pieces of evidence, never every reset."""

    __slots__ = ("first_ns", "last_ns", "n", "packets", "streams", "by", "codes", "conns")

    def __init__(self) -> None:
        self.first_ns = 0
        self.last_ns = 0
        self.n = 0
        self.packets: list[int] = []
        self.streams: list[int] = []
        self.by: Counter[str] = Counter()
        self.codes: Counter[str] = Counter()
        self.conns: set[int] = set()

    def add(self, r: Reset) -> None:
        ts, packet, stream, by, code, conn = r
        if not self.n:
            self.first_ns = ts
        self.last_ns = ts
        self.n += 1
        if len(self.packets) < MAX_EVIDENCE:
            self.packets.append(packet)
        if len(self.streams) < MAX_STREAMS_LISTED:
            self.streams.append(stream)
        self.by[SIDE_NAMES[by]] += 1
        self.codes[error_name(code)] += 1
        self.conns.add(conn)

    def describe(self) -> tuple[str, str]:
        return (", ".join(f"{n} by the {who}" for who, n in self.by.most_common()),
                ", ".join(f"{code} {n}" for code, n in self.codes.most_common()))


class StormDetector:
    """Maximal runs in which at least `count` resets fall within `window_ns` of the first,
    extended while each next reset is within a window of the one before: the batch rule
    (start at the oldest reset; if its window holds `count`, take the window and extend it;
    else move on by one), computed one reset at a time."""

    def __init__(self, count: int, window_ns: int, emit: Callable[[Run], None]) -> None:
        self.count = max(1, count)
        self.window_ns = window_ns
        self.emit = emit
        self.pending: deque[Reset] = deque()  # resets whose window is still open; fewer than `count`
        self.run: Optional[Run] = None
        self.last_ns: Optional[int] = None

    def add(self, r: Reset) -> None:
        ts = r[0]
        self.last_ns = ts
        run = self.run
        if run is not None:
            if ts - run.last_ns <= self.window_ns:
                run.add(r)
                return
            self.emit(run)
            self.run = None
        pending = self.pending
        pending.append(r)
        while ts - pending[0][0] > self.window_ns:
            pending.popleft()  # its window closed with fewer than `count` resets
        if len(pending) >= self.count:
            run = self.run = Run()
            for p in pending:
                run.add(p)
            pending.clear()

    def flush(self) -> None:
        if self.run is not None:
            self.emit(self.run)
            self.run = None
        self.pending.clear()


class CancelStorm:
    """The rule: one detector per open connection and one per client host."""

    def __init__(self, options, emit: Callable[[Finding], None]) -> None:
        self.count = options.storm_count
        self.window_ns = int(options.storm_window_s * 1e9)
        self.emit = emit
        self.per_conn: dict[int, StormDetector] = {}
        self.per_host: dict[str, StormDetector] = {}
        self._fed = 0

    def reset(self, fact: tuple[int, int, int, int, int], conn: Any) -> None:
        """A stream that a RST_STREAM ended, at the moment it closed: rules/stream.reset_fact(rec),
        where it was decoded. `conn` has the connection's id, client and server."""
        r: Reset = fact + (conn.id,)
        det = self.per_conn.get(conn.id)
        if det is None:
            det = self.per_conn[conn.id] = StormDetector(
                self.count, self.window_ns, partial(self._conn_storm, conn))
        det.add(r)
        host = conn.client.rsplit(":", 1)[0]
        hdet = self.per_host.get(host)
        if hdet is None:
            hdet = self.per_host[host] = StormDetector(
                self.count, self.window_ns, partial(self._host_storm, host))
        hdet.add(r)
        self._fed += 1
        if not self._fed & 0x3FF:
            self._sweep_hosts(r[0])

    def connection_done(self, conn_id: int) -> None:
        det = self.per_conn.pop(conn_id, None)
        if det is not None:
            det.flush()

    def finish(self) -> None:
        for det in self.per_conn.values():
            det.flush()
        self.per_conn.clear()
        for host in sorted(self.per_host):
            self.per_host[host].flush()
        self.per_host.clear()

    def _sweep_hosts(self, now_ns: int) -> None:
        """Hosts quiet for longer than a window can extend nothing: report and forget them."""
        for host in [h for h, d in self.per_host.items()
                     if d.last_ns is not None and now_ns - d.last_ns > self.window_ns]:
            self.per_host.pop(host).flush()

    def _conn_storm(self, conn, run: Run) -> None:
        who, codes = run.describe()
        span = run.last_ns - run.first_ns
        self.emit(Finding(
            kind=KIND, severity="warning", conn=conn.id, stream=None, ts_ns=run.first_ns,
            summary=(f"{where(conn)}: {run.n} streams reset within {ms(span)} ({who}; {codes}): "
                     "look for a client-side timeout, a retry loop or a load balancer dropping calls."),
            packets=run.packets,
            details={"resets": run.n, "window": span / 1e9, "streams": run.streams, "scope": "connection"},
        ))

    def _host_storm(self, host: str, run: Run) -> None:
        if len(run.conns) < 2:
            return  # one connection's storm, reported as such
        who, codes = run.describe()
        span = run.last_ns - run.first_ns
        self.emit(Finding(
            kind=KIND, severity="warning", conn=None, stream=None, ts_ns=run.first_ns,
            summary=(f"client {host}: {run.n} streams reset within {ms(span)} across "
                     f"{len(run.conns)} connections ({who}; {codes})."),
            packets=run.packets,
            details={"resets": run.n, "window": span / 1e9, "client_host": host,
                     "connections": sorted(run.conns), "scope": "host"},
        ))
