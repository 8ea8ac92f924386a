"""stream-lost: streams still open when the TCP connection closed, or cut off by GOAWAY."""

from __future__ import annotations

from ..findings import Finding
from .common import call

KIND = "stream-lost"


def check_stream(rec, conn, options) -> list[Finding]:
    out: list[Finding] = []
    if rec.end_reason not in ("connection-closed", "goaway"):
        return out
    packets = [rec.start_packet]
    if rec.end_reason == "goaway":
        g = next((g for g in conn.goaways if g.packet == rec.goaway_packet), None) if conn else None
        cause = (f"the {('client', 'server')[g.by]}'s GOAWAY (last-stream-id {g.last_stream_id}) at packet "
                 f"{g.packet} excluded it and the connection closed before it finished") if g else "a GOAWAY cut it"
        packets.append(rec.goaway_packet)
    else:
        how = conn.close.upper() if conn else "close"
        by = f" from the {conn.close_by}" if conn and conn.close_by else ""
        cause = f"the TCP connection closed ({how}{by} at packet {rec.end_packet}) while it was still open"
    if rec.end_packet:
        packets.append(rec.end_packet)
    sent = "request complete" if rec.end_stream_ns[0] is not None else "request still being sent"
    got = "no response" if rec.response_headers is None else "response incomplete"
    summary = f"{call(conn, rec)} was lost: {cause} ({sent}, {got})."
    out.append(Finding(
        kind=KIND, severity="warning" if rec.end_reason == "goaway" else "error", conn=rec.conn,
        stream=rec.stream, ts_ns=rec.end_ns or rec.start_ns, summary=summary,
        packets=sorted(set(p for p in packets if p)), method=rec.method,
        details={"cause": rec.end_reason, "close": conn.close if conn else None},
    ))
    return out
