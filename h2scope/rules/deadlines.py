"""The deadline findings: deadline-exceeded, work-after-deadline, deadline-missing,
invalid-grpc-timeout. All read the grpc-timeout a client sent: the deadline is the time
the capture saw the request's HEADERS plus that timeout."""

from __future__ import annotations

from typing import Optional

from ..findings import Finding
from ..grpc.status import DEADLINE_EXCEEDED, status_name
from ..http2.constants import HEADERS, error_name
from .common import MAX_EVIDENCE, call, grace_ns, ms, plural, size


def _ender(rec, conn) -> tuple[str, str, list[int]]:
    """(code word, phrase, evidence packets) for who ended a call that ran past its deadline."""
    client_cancel = rec.rst_by == 0
    server_de = rec.grpc_status == DEADLINE_EXCEEDED
    trailer_pkt = rec.end_stream_packet[1]
    if trailer_pkt is None:  # trailers that crossed a reset arrive after the stream closed
        trailer_pkt = next((lf.packet for lf in rec.late if lf.side == 1 and lf.type == HEADERS), None)
    if client_cancel and server_de:
        if rec.end_stream_ns[1] is not None and rec.end_stream_ns[1] <= rec.rst_ns:
            return ("server-deadline-exceeded",
                    f"the server returned DEADLINE_EXCEEDED at packet {trailer_pkt}, crossing the client's "
                    f"RST_STREAM({error_name(rec.rst_code)}) at packet {rec.rst_packet}", [trailer_pkt, rec.rst_packet])
        return ("client-cancel",
                f"the client sent RST_STREAM({error_name(rec.rst_code)}) at packet {rec.rst_packet}; the server's "
                f"DEADLINE_EXCEEDED trailers crossed it", [rec.rst_packet] + ([trailer_pkt] if trailer_pkt else []))
    if client_cancel:
        return ("client-cancel", f"the client sent RST_STREAM({error_name(rec.rst_code)}) at packet {rec.rst_packet}",
                [rec.rst_packet])
    if server_de:
        return ("server-deadline-exceeded", f"the server returned DEADLINE_EXCEEDED at packet {trailer_pkt}",
                [trailer_pkt] if trailer_pkt else [])
    if rec.rst_by == 1:
        return ("server-reset", f"the server sent RST_STREAM({error_name(rec.rst_code)}) at packet {rec.rst_packet}",
                [rec.rst_packet])
    if rec.end_reason in ("connection-closed", "goaway"):
        how = f"{conn.close.upper()} from the {conn.close_by}" if conn and conn.close_by else "connection close"
        return ("connection-close", f"the TCP connection closed ({how} at packet {rec.end_packet})",
                [rec.end_packet])
    if rec.end_reason == "capture-ended":
        return ("nobody", "nobody ended it within the capture", [])
    status = status_name(rec.grpc_status) if rec.grpc_status is not None else "no status"
    return ("completed-late", f"it completed anyway ({status}) at packet {rec.end_packet}: nobody enforced the deadline",
            [rec.end_packet])


def deadline_exceeded(rec, conn, options) -> list[Finding]:
    if rec.deadline_ns is None or rec.end_ns is None:
        return []
    grace = grace_ns(conn, options.grace_s)
    overrun = rec.end_ns - rec.deadline_ns
    at_deadline_cancel = rec.rst_by == 0 and abs(rec.rst_ns - rec.deadline_ns) <= grace
    if not (overrun > 0 or rec.grpc_status == DEADLINE_EXCEEDED or at_deadline_cancel):
        return []
    who, phrase, evidence = _ender(rec, conn)
    if rec.end_reason == "capture-ended":
        overrun = (conn.end_ns if conn else rec.end_ns) - rec.deadline_ns
    budget = f"{ms(rec.timeout_ns)} deadline (grpc-timeout {rec.grpc_timeout})"
    timing = f"ran {ms(overrun)} past its {budget}" if overrun > 0 else f"hit its {budget}"
    summary = f"{call(conn, rec)} {timing}; {phrase}."
    stalled = sum(((st.end_ns or rec.end_ns) - st.start_ns) for st in rec.stalls)
    if stalled:
        sides = sorted({("client", "server")[st.side] for st in rec.stalls})
        summary += (f" The {' and '.join(sides)} waited {ms(stalled)} on an exhausted flow-control window "
                    f"(from packet {rec.stalls[0].start_packet}).")
    return [Finding(
        kind="deadline-exceeded", severity="error", conn=rec.conn, stream=rec.stream, ts_ns=rec.deadline_ns,
        summary=summary, packets=sorted({rec.start_packet, *[p for p in evidence if p]}), method=rec.method,
        details={"timeout": rec.timeout_ns / 1e9, "deadline": rec.deadline_ns / 1e9,
                 "overrun": overrun / 1e9, "ended_by": who,
                 "grpc_status": rec.grpc_status},
    )]


def work_after_deadline(rec, conn, options) -> list[Finding]:
    if not rec.after_deadline:
        return []
    # The same grace as for resets: the server's view of the deadline starts when the request
    # reached it, so DATA seen just past the deadline was often sent in time (the well-behaved
    # twin in captures/grpcio_vs_h2 shows one such frame 1.4 ms late).
    grace = grace_ns(conn, options.grace_s)
    frames = [f for f in rec.after_deadline if f[0] > rec.deadline_ns + grace]
    if not frames:
        return []
    nbytes = sum(f[2] for f in frames)
    span = frames[-1][0] - rec.deadline_ns
    summary = (f"{call(conn, rec)}: the server sent {plural(len(frames), 'DATA frame')} "
               f"({size(nbytes)}) up to {ms(span)} after its {ms(rec.timeout_ns)} deadline had passed: work the "
               "client could no longer use.")
    return [Finding(
        kind="work-after-deadline", severity="warning", conn=rec.conn, stream=rec.stream, ts_ns=frames[0][0],
        summary=summary, packets=[rec.start_packet] + [f[1] for f in frames[:MAX_EVIDENCE]], method=rec.method,
        details={"frames": len(frames), "frames_not_listed": rec.after_deadline_dropped, "bytes": nbytes,
                 "duration": span / 1e9, "deadline": rec.deadline_ns / 1e9, "grace": grace / 1e9},
    )]


MAX_METHODS = 10_000  # distinct :paths tracked by name; a hostile capture's others are pooled
OTHER_METHODS = "(other methods)"


class DeadlineMissing:
    """deadline-missing, one finding per method, accumulated as calls finish: a count, the
    first calls' packets and streams, and whether they all shared one connection."""

    def __init__(self) -> None:
        self.by_method: dict[str, list] = {}  # method → [calls, first rec facts, conn or None, packets, streams]

    def add(self, fact: tuple, conn: int) -> None:
        """A call without a grpc-timeout: rules/stream.deadline_fact(rec), where it was decoded."""
        method, start_ns, start_packet, stream = fact
        agg = self.by_method.get(method)
        if agg is None:
            if len(self.by_method) >= MAX_METHODS:
                method = OTHER_METHODS
                agg = self.by_method.get(method)
            if agg is None:
                agg = self.by_method[method] = [0, start_ns, conn, [], []]
        agg[0] += 1
        if agg[2] is not None and agg[2] != conn:
            agg[2] = None
        if len(agg[3]) < MAX_EVIDENCE:
            agg[3].append(start_packet)
        if len(agg[4]) < 100:
            agg[4].append([conn, stream])

    def findings(self) -> list[Finding]:
        out = []
        for method, (calls, start_ns, conn, packets, streams) in sorted(self.by_method.items()):
            summary = (f"{plural(calls, 'call')} to {method} carried no grpc-timeout: a stuck server holds them "
                       "forever. Set a deadline on the client.")
            out.append(Finding(
                kind="deadline-missing", severity="info", conn=conn, stream=None, ts_ns=start_ns,
                summary=summary, packets=packets, method=method,
                details={"calls": calls, "streams": streams},
            ))
        return out


def invalid_timeout(rec, conn, options) -> list[Finding]:
    if rec.grpc_timeout is None or rec.timeout_ns is not None:
        return []
    summary = (f"{call(conn, rec)}: grpc-timeout {rec.grpc_timeout!r} is "
               "not 1-8 digits followed by H, M, S, m, u or n; servers ignore it or fail the call.")
    return [Finding(
        kind="invalid-grpc-timeout", severity="warning", conn=rec.conn, stream=rec.stream, ts_ns=rec.start_ns,
        summary=summary, packets=[rec.start_packet], method=rec.method, details={"value": rec.grpc_timeout},
    )]
