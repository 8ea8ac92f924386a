"""A finding: one claim about the capture, with the packets that prove it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

SEVERITIES = ("info", "warning", "error")
SEVERITY_RANK = {name: i for i, name in enumerate(SEVERITIES)}


@dataclass(slots=True)
class Finding:
    kind: str
    severity: str
    conn: Optional[int]
    stream: Optional[int]
    ts_ns: int
    summary: str
    packets: list[int]
    method: Optional[str] = None
    details: dict = field(default_factory=dict)

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
