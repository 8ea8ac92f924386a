"""Where the finished model goes: rules run on each piece as it becomes final, then a sink
keeps or writes it.

    H2Observer ──stream_done / stream_reset / connection_done──► Collector ──► RuleEngine
                                                                     │              │ findings
                                                                     └──────► sink ◄┘

A sink is either `MemorySink` (every record kept: the TUI, `check`, tests) or a report
writer that keeps only what it prints (report/json_report.py, report/text.py), so that
`analyze` holds the open streams and connections, not the capture.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional, Protocol

from .findings import SEVERITY_RANK, Finding
from .model import ConnectionRecord, StreamRecord, Violation
from .rules import KIND_INDEX, RuleEngine


class Sink(Protocol):
    def stream(self, rec: StreamRecord, conn: ConnectionRecord, findings: list[Finding]) -> None: ...

    def connection(self, conn: ConnectionRecord, violations: list[Violation]) -> None: ...

    def finding(self, f: Finding) -> None: ...


class Collector:
    """The ResultConsumer that H2Observer feeds: runs the rules, forwards to the sink."""

    def __init__(self, options, sink: Sink, rules: bool = True) -> None:
        self.sink = sink
        self.engine = RuleEngine(options, sink.finding) if rules else None

    def stream_done(self, rec: StreamRecord, conn: ConnectionRecord) -> None:
        found = self.engine.stream(rec, conn) if self.engine is not None else []
        self.sink.stream(rec, conn, found)

    def stream_reset(self, rec: StreamRecord, conn: ConnectionRecord) -> None:
        if self.engine is not None:
            self.engine.reset(rec, conn)

    def connection_done(self, conn: ConnectionRecord, violations: list[Violation], methods: dict) -> None:
        if self.engine is not None:
            self.engine.connection(conn, violations, methods)
        self.sink.connection(conn, violations)

    def finish(self) -> None:
        if self.engine is not None:
            self.engine.finish()


class MemorySink:
    """Everything, in memory, sorted as people browse it."""

    def __init__(self) -> None:
        self.streams: list[StreamRecord] = []
        self.connections: list[ConnectionRecord] = []
        self.violations: list[Violation] = []
        self.findings: list[Finding] = []

    def stream(self, rec: StreamRecord, conn: ConnectionRecord, findings: list[Finding]) -> None:
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


@dataclass
class Selection:
    """What a report shows: `--conn`, `--method` and `--min-severity`."""

    conn: Optional[int] = None
    method: Optional[re.Pattern] = None
    min_rank: int = 0

    @classmethod
    def from_args(cls, conn: Optional[int], method: Optional[re.Pattern], min_severity: str) -> "Selection":
        return cls(conn=conn, method=method, min_rank=SEVERITY_RANK[min_severity])

    def stream(self, rec: StreamRecord) -> bool:
        if self.conn is not None and rec.conn != self.conn:
            return False
        if self.method is not None and not (rec.method and self.method.search(rec.method)):
            return False
        return True

    def connection(self, conn: ConnectionRecord) -> bool:
        return self.conn is None or conn.id == self.conn

    def finding(self, f: Finding) -> bool:
        if f.rank < self.min_rank:
            return False
        if self.conn is not None and f.conn != self.conn:
            return False
        if self.method is not None and not (f.method and self.method.search(f.method)):
            return False
        return True
