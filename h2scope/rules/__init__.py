"""Findings: one small module per kind, run incrementally as the model is built.

A stream's rules run once its record is final (after the late frames a reset may draw
have had their chance), a connection's when it ends, and the capture-wide ones at the end.
Nothing here holds every stream: memory follows the open streams, not the capture.
Stream rules need only the stream and its connection, so they run in whichever process
decoded it; RuleEngine's rules look across connections and run where results meet.
"""

from __future__ import annotations

from typing import Callable

from ..findings import Finding
from . import cancel_storm, deadlines, frames_after_goaway, protocol_violation

# The order kinds are reported in (after severity).
KINDS = (
    "data-after-rst",
    "frames-after-goaway",
    "deadline-exceeded",
    "work-after-deadline",
    "deadline-missing",
    "invalid-grpc-timeout",
    "stream-lost",
    "cancel-storm",
    "protocol-violation",
)
KIND_INDEX = {k: i for i, k in enumerate(KINDS)}


def finding_order(f: Finding) -> tuple[int, int]:
    """Worst first, then by kind; within a kind, in the order the findings were concluded."""
    return (-f.rank, KIND_INDEX[f.kind])


class RuleEngine:
    """The rules that look across streams: fed facts in capture order, findings to `emit`."""

    def __init__(self, options, emit: Callable[[Finding], None]) -> None:
        self.options = options
        self.emit = emit
        self.missing = deadlines.DeadlineMissing()
        self.storms = cancel_storm.CancelStorm(options, emit)

    def connection(self, conn, violations: list, methods: dict) -> None:
        for f in frames_after_goaway.check_connection(conn, self.options):
            self.emit(f)
        for f in protocol_violation.check_connection(conn, violations, methods):
            self.emit(f)
        self.storms.connection_done(conn.id)

    def finish(self) -> None:
        self.storms.finish()
        for f in self.missing.findings():
            self.emit(f)
