"""protocol-violation: what the frame checks, the HPACK decoder and the stream state
tables recorded. Identical violations on one stream are reported once, with a count."""

from __future__ import annotations

from ..findings import Finding
from ..model import SIDE_NAMES
from .common import MAX_EVIDENCE, where

KIND = "protocol-violation"


def check_connection(conn, violations: list, methods: dict) -> list[Finding]:
    """`violations` are one connection's; `methods` maps its stream ids to :path."""
    groups: dict[tuple, list] = {}
    for v in violations:
        groups.setdefault((v.conn, v.stream, v.side, v.what), []).append(v)
    out = []
    for (cid, sid, side, what), vs in groups.items():
        who = f"sent by the {SIDE_NAMES[side]}" if side is not None else ""
        times = f"{len(vs)} times" if len(vs) > 1 else ""
        tail = ", ".join(t for t in (who, times) if t)
        out.append(Finding(
            kind=KIND, severity="error", conn=cid, stream=sid, ts_ns=vs[0].ts_ns,
            summary=f"{where(conn, sid)}: {what}" + (f"; {tail}." if tail else "."),
            packets=sorted({v.packet for v in vs})[:MAX_EVIDENCE], method=methods.get(sid),
            details={"violation": what, "count": len(vs), "by": SIDE_NAMES[side] if side is not None else None},
        ))
    return out
