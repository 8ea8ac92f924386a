"""Which stream rules to run on one final stream record, where the stream was decoded, and
what the cross-connection rules need of it.

This dispatch is compiled with the pipeline (h2scope/native.py); the rules themselves stay
interpreted. Run interpreted on every stream, the rules were 7% of `analyze --format json`
on W1 in callgrind instructions (41 M of 580 M after start-up on W1-2MB), nearly all of it
calls and attribute reads for streams with nothing to report.
"""

from __future__ import annotations

from typing import Any, Optional

from ..findings import Finding
from ..grpc.status import DEADLINE_EXCEEDED
from ..model import ConnectionRecord, StreamRecord
from . import data_after_rst, deadlines, stream_lost


def stream_findings(rec: StreamRecord, conn: Optional[ConnectionRecord], options: Any) -> list[Finding]:
    """Every stream rule's findings about `rec`, in STREAM_RULES order.

    Each rule is called only when its own first tests would not return [] at once (the same
    conditions, or looser ones, on a typed record: most streams have nothing to report, and
    this is what they cost); tests/test_rules_stream.py holds this to calling every rule."""
    out: list[Finding] = []
    if rec.rst_by is not None and rec.late:
        out.extend(data_after_rst.check_stream(rec, conn, options))
    if rec.deadline_ns is not None and rec.end_ns is not None and (
            rec.end_ns > rec.deadline_ns or rec.grpc_status == DEADLINE_EXCEEDED or rec.rst_by == 0):
        # Its second test, loosened: no overrun, no DEADLINE_EXCEEDED and no client reset
        # (at the deadline or not) is a call that met its deadline.
        out.extend(deadlines.deadline_exceeded(rec, conn, options))
    if rec.after_deadline:
        out.extend(deadlines.work_after_deadline(rec, conn, options))
    if rec.grpc_timeout is not None and rec.timeout_ns is None:
        out.extend(deadlines.invalid_timeout(rec, conn, options))
    if rec.end_reason == "connection-closed" or rec.end_reason == "goaway":
        out.extend(stream_lost.check_stream(rec, conn, options))
    return out


# The same rules as data, in the order stream_findings runs them.
STREAM_RULES = (
    data_after_rst.check_stream,
    deadlines.deadline_exceeded,
    deadlines.work_after_deadline,
    deadlines.invalid_timeout,
    stream_lost.check_stream,
)


def deadline_fact(rec: StreamRecord) -> Optional[tuple]:
    """What deadline-missing (rules/deadlines.DeadlineMissing.add) needs of a call without a
    grpc-timeout; None for other calls. Here rather than in the rule, compiled: called
    interpreted on every stream it cost about 2,000 instructions a stream."""
    if not (rec.grpc and rec.grpc_timeout is None and not rec.headers_unknown
            and rec.request_headers is not None):
        return None
    return (rec.method or "(no :path)", rec.start_ns, rec.start_packet, rec.stream)


def reset_fact(rec: StreamRecord) -> tuple[int, int, int, int, int]:
    """What cancel-storm (rules/cancel_storm.CancelStorm.reset) needs of a stream a
    RST_STREAM ended: (ts_ns, packet, stream, by, code)."""
    # The connection sets the four together, at the stream's first RST_STREAM.
    assert rec.rst_ns is not None and rec.rst_packet is not None and rec.rst_by is not None \
        and rec.rst_code is not None
    return (rec.rst_ns, rec.rst_packet, rec.stream, rec.rst_by, rec.rst_code)
