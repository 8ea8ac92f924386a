"""Where the finished model goes: rules run on each piece as it becomes final, then a sink
keeps or writes it.

    H2Observer ─► Emitter ──events in capture order──► Assembler ─► RuleEngine ─► sink
                 (stream rules,                        (global connection ids,
                  the sink's stream encoding)           cross-connection rules)

The Emitter runs where streams are decoded; the Assembler where results meet. In one
process the Emitter calls the Assembler directly; with --jobs each worker process has an
Emitter and the parent merges their events by packet number (parallel.py), so both paths
feed the Assembler the same events in the same order.

A sink is `MemorySink` (every record kept: the TUI, `check`, tests) or a report writer that
keeps only what it prints (report/json_report.py, report/text.py): `analyze` holds the open
streams and connections, not the capture.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Final, NamedTuple, Optional, Protocol

from .findings import SEVERITY_RANK, Finding
from .model import ConnectionRecord, StreamRecord, Violation
from .rules import KIND_INDEX, RuleEngine
from .rules.stream import deadline_fact, reset_fact, stream_findings


class Sink(Protocol):
    def encode_stream(self, rec: StreamRecord, findings: list[Finding]) -> Any:
        """Where the stream was decoded: what add_stream needs, small and picklable (None: skip)."""

    def add_stream(self, item: Any, conn: int) -> None:
        """Where results meet, with the stream's connection id."""

    def connection(self, conn: ConnectionRecord, violations: list[Violation]) -> None: ...

    def finding(self, f: Finding) -> None: ...


class ConnName(NamedTuple):
    """What the cross-connection rules print of a connection."""

    id: int
    client: str
    server: str


# Events, each (kind, at, local connection id, ...). `at` is the packet being processed
# when it happened, or None once the capture has ended and open connections are flushed.
NEW, STREAM, RESET, CONN = "n", "s", "r", "c"


class Emitter:
    """The ResultConsumer H2Observer feeds, in the process that decodes."""

    def __init__(self, options, sink: Sink, out: Callable[[tuple], None], rules: bool = True) -> None:
        self.options = options
        self.encode = sink.encode_stream
        # A sink that encodes streams as compact JSON says so, and is called directly.
        compact = getattr(sink, "compact", None)
        self.compact: Optional[CompactStreams] = compact if isinstance(compact, CompactStreams) else None
        self.out = out
        self.rules = rules
        self._at = 0

    def _clock(self, at: Optional[int]) -> Optional[int]:
        # Events must leave in capture order for the merge; a replay of held-back bytes
        # reports older packet numbers.
        if at is None:
            return None
        if at < self._at:
            return self._at
        self._at = at
        return at

    def advance(self, at: int) -> None:
        """A promise (to a parallel merge) that no later event comes before packet `at`."""
        if at > self._at:
            self._at = at

    def connection_new(self, conn_id: int, at: int) -> None:
        self.out((NEW, self._clock(at), conn_id))

    def stream_done(self, rec: StreamRecord, conn: ConnectionRecord, at: Optional[int]) -> None:
        found = stream_findings(rec, conn, self.options) if self.rules else []
        compact = self.compact
        item = compact.encode(rec) if compact is not None else self.encode(rec, found)
        self.out((STREAM, self._clock(at), rec.conn, item, found, deadline_fact(rec) if self.rules else None))

    def stream_reset(self, rec: StreamRecord, conn: ConnectionRecord, at: Optional[int]) -> None:
        if self.rules:
            self.out((RESET, self._clock(at), rec.conn, reset_fact(rec), conn.client, conn.server))

    def connection_done(self, conn: ConnectionRecord, violations: list[Violation], methods: dict,
                        at: Optional[int]) -> None:
        self.out((CONN, self._clock(at), conn.id, conn, violations, methods))


STREAM_BATCH: Final = 256  # stream lines handed to the report per call


class CompactStreams:
    """The compact JSON of each stream, for report/json_report.JsonReport (its `compact`),
    encoded where the stream was decoded (encode) and collected where the results meet
    (add), both called straight from compiled code: through the report's interpreted
    methods a stream cost about 9,000 instructions more to encode (W1-2MB: 33 M of 372 M)
    and the --jobs parent about 1 us more to collect. The report takes the lines a batch
    at a time (`write`)."""

    def __init__(self, selection: "Selection", headers: bool) -> None:
        self.selection = selection
        self.headers = headers
        self.count = 0  # streams the report lists
        self.grpc_calls = 0
        self.pending: list[str] = []
        self.write: Optional[Callable[[list[str]], None]] = None

    def encode(self, rec: StreamRecord) -> Optional[tuple[str, bool]]:
        """(the stream's JSON after its "conn" key, whether it is a gRPC call), or None when
        --method leaves it out."""
        if not self.selection.method_ok(rec.method):
            return None
        return (rec.compact_json_after_conn(self.headers), rec.grpc)

    def add(self, item: tuple[str, bool], conn: int) -> None:
        if not self.selection.conn_ok(conn):
            return
        body, grpc = item
        self.count += 1
        if grpc:
            self.grpc_calls += 1
        pending = self.pending
        pending.append(f'{{"conn":{conn},{body}')
        if len(pending) >= STREAM_BATCH:
            self.flush()

    def flush(self) -> None:
        if self.pending and self.write is not None:
            self.write(self.pending)
            self.pending = []


class Assembler:
    """Gives connections their capture-wide ids (Wireshark's tcp.stream: order of first
    packet), runs the cross-connection rules and feeds the sink, one event at a time."""

    def __init__(self, options, sink: Sink, rules: bool = True) -> None:
        self.sink = sink
        compact = getattr(sink, "compact", None)
        self.compact: Optional[CompactStreams] = compact if isinstance(compact, CompactStreams) else None
        self.engine = RuleEngine(options, sink.finding) if rules else None
        self.ids: dict[tuple[int, int], int] = {}
        self.names: dict[int, ConnName] = {}  # open connections that had a reset
        self.next_id = 0

    def gid(self, worker: int, local: int) -> int:
        return self.ids[(worker, local)]

    def handle(self, worker: int, ev: tuple) -> None:
        kind = ev[0]
        if kind == STREAM:
            _k, _at, local, item, found, missing = ev
            cid = self.ids[(worker, local)]
            if found:
                for f in found:
                    f.conn = cid
                    self.sink.finding(f)
            if missing is not None and self.engine is not None:
                self.engine.missing.add(missing, cid)
            if item is not None:
                compact = self.compact
                if compact is not None:
                    compact.add(item, cid)
                else:
                    self.sink.add_stream(item, cid)
        elif kind == RESET:
            if self.engine is None:
                return
            _k, _at, local, fact, client, server = ev
            cid = self.ids[(worker, local)]
            name = self.names.get(cid)
            if name is None or name.client != client:
                name = self.names[cid] = ConnName(cid, client, server)
            self.engine.storms.reset(fact, name)
        elif kind == NEW:
            self.ids[(worker, ev[2])] = self.next_id
            self.next_id += 1
        else:
            _k, _at, local, conn, violations, methods = ev
            cid = self.ids.pop((worker, local))
            conn.id = cid
            for v in violations:
                v.conn = cid
            if self.engine is not None:
                self.engine.connection(conn, violations, methods)
            self.names.pop(cid, None)
            self.sink.connection(conn, violations)

    def finish(self) -> None:
        if self.engine is not None:
            self.engine.finish()


class NullSink:
    """Keeps nothing (`h2scope frames`, which prints frames as they are decoded)."""

    def encode_stream(self, rec: StreamRecord, findings: list[Finding]) -> None:
        return None

    def add_stream(self, item: Any, conn: int) -> None:
        pass

    def connection(self, conn: ConnectionRecord, violations: list[Violation]) -> None:
        pass

    def finding(self, f: Finding) -> None:
        pass


class MemorySink:
    """Everything, in memory, sorted as people browse it."""

    def __init__(self) -> None:
        self.streams: list[StreamRecord] = []
        self.connections: list[ConnectionRecord] = []
        self.violations: list[Violation] = []
        self.findings: list[Finding] = []

    def encode_stream(self, rec: StreamRecord, findings: list[Finding]) -> StreamRecord:
        return rec

    def add_stream(self, rec: StreamRecord, conn: int) -> None:
        rec.conn = conn
        self.streams.append(rec)

    def connection(self, conn: ConnectionRecord, violations: list[Violation]) -> None:
        self.connections.append(conn)
        self.violations.extend(violations)

    def finding(self, f: Finding) -> None:
        self.findings.append(f)

    def sorted(self) -> "MemorySink":
        self.streams.sort(key=lambda s: (s.conn, s.stream))
        self.connections.sort(key=lambda c: c.id)
        self.violations.sort(key=lambda v: v.packet)
        self.findings.sort(key=lambda f: (-f.rank, KIND_INDEX[f.kind]))  # stable: concluded order within
        return self


class Selection:
    """What a report shows: `--conn`, `--method` and `--min-severity`."""

    def __init__(self, conn: Optional[int] = None, method: Optional[re.Pattern] = None, min_rank: int = 0) -> None:
        self.conn = conn
        self.method = method
        self.min_rank = min_rank

    @classmethod
    def from_args(cls, conn: Optional[int], method: Optional[re.Pattern], min_severity: str) -> "Selection":
        return cls(conn=conn, method=method, min_rank=SEVERITY_RANK[min_severity])

    def method_ok(self, method: Optional[str]) -> bool:
        return self.method is None or bool(method and self.method.search(method))

    def conn_ok(self, conn: Optional[int]) -> bool:
        return self.conn is None or conn == self.conn

    def connection(self, conn: ConnectionRecord) -> bool:
        return self.conn_ok(conn.id)

    def finding(self, f: Finding) -> bool:
        return f.rank >= self.min_rank and self.conn_ok(f.conn) and self.method_ok(f.method)
