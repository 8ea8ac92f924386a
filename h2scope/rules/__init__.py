"""Findings: one small module per kind, run incrementally as the model is built.

A stream's rules run once its record is final (after the late frames a reset may draw
have had their chance), a connection's when it ends, and the capture-wide ones at the end.
Nothing here holds every stream: memory follows the open streams, not the capture.
"""

from __future__ import annotations

from typing import Callable

from ..findings import Finding
from . import cancel_storm, data_after_rst, deadlines, frames_after_goaway, protocol_violation, stream_lost

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

STREAM_RULES = (
    data_after_rst.check_stream,
    deadlines.deadline_exceeded,
    deadlines.work_after_deadline,
    deadlines.invalid_timeout,
    stream_lost.check_stream,
)


def finding_order(f: Finding) -> tuple[int, int]:
    """Worst first, then by kind; within a kind, in the order the findings were concluded."""
    return (-f.rank, KIND_INDEX[f.kind])


class RuleEngine:
    """Feeds the rules; every finding goes to `emit` as soon as it is concluded."""

    def __init__(self, options, emit: Callable[[Finding], None]) -> None:
        self.options = options
        self.emit = emit
        self.missing = deadlines.DeadlineMissing()
        self.storms = cancel_storm.CancelStorm(options, emit)

    def stream(self, rec, conn) -> list[Finding]:
        """A final stream record; returns (and emits) its findings."""
        out: list[Finding] = []
        opts = self.options
        for rule in STREAM_RULES:
            found = rule(rec, conn, opts)
            if found:
                out.extend(found)
        for f in out:
            self.emit(f)
        self.missing.add(rec)
        return out

    def reset(self, rec, conn) -> None:
        """A stream ended by RST_STREAM, when it closed (packet order)."""
        self.storms.reset(rec, conn)

    def connection(self, conn, violations: list, methods: dict) -> None:
        for f in frames_after_goaway.check_connection(conn, self.options):
            self.emit(f)
        for f in protocol_violation.check_connection(conn, violations, methods):
            self.emit(f)
        self.storms.connection_done(conn)

    def finish(self) -> None:
        self.storms.finish()
        for f in self.missing.findings():
            self.emit(f)
