"""A finding: one claim about the capture, with the packets that prove it."""

from __future__ import annotations

from typing import Optional

SEVERITIES = ("info", "warning", "error")
SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}


class Finding:
    # A plain class, not a dataclass, like every class a run builds: importing dataclasses
    # (with inspect) and generating the classes' methods was 13 ms of a 67 ms start-up.
    __slots__ = ("kind", "severity", "conn", "stream", "ts_ns", "summary", "packets", "method", "details")

    def __init__(self, kind: str, severity: str, conn: Optional[int], stream: Optional[int], ts_ns: int,
                 summary: str, packets: list[int], method: Optional[str] = None,
                 details: Optional[dict] = None) -> None:
        self.kind = kind
        self.severity = severity
        self.conn = conn
        self.stream = stream
        self.ts_ns = ts_ns
        self.summary = summary
        self.packets = packets
        self.method = method
        self.details: dict = {} if details is None else details

    def __repr__(self) -> str:
        return (f"Finding({self.kind!r}, {self.severity!r}, conn={self.conn}, stream={self.stream}, "
                f"packets={self.packets!r}, summary={self.summary!r})")

    @property
    def rank(self) -> int:
        return SEVERITY_RANK[self.severity]

    def to_json(self) -> dict:
        out = {
            "kind": self.kind,
            "severity": self.severity,
            "conn": self.conn,
            "stream": self.stream,
            "time": self.ts_ns / 1e9,
            "summary": self.summary,
            "packets": self.packets,
            "method": self.method,
        }
        out.update(self.details)
        return out
