"""data-after-rst: DATA/HEADERS an endpoint sent on a stream after the reset.

Two cases (RFC 9113 §5.4.2, §6.4): after the endpoint's *own* RST_STREAM nothing but
PRIORITY may follow, so no grace applies; after the *peer's* RST_STREAM, frames within
the grace window were already in flight and are normal (grpcio's trailers cross the
client's cancel on every deadline), while frames after it are a zombie stream.
"""

from __future__ import annotations

from typing import Optional

from ..findings import Finding
from ..http2.constants import CONTINUATION, DATA, HEADERS, RST_STREAM, error_name
from ..model import SIDE_NAMES
from .common import MAX_EVIDENCE, grace_ns, ms, plural, size, where

KIND = "data-after-rst"
_PAYLOAD_TYPES = (DATA, HEADERS, CONTINUATION)


def check_stream(rec, conn, options) -> list[Finding]:
    out: list[Finding] = []
    if rec.rst_by is None or not rec.late:
        return out
    grace = grace_ns(conn, options.grace_s)
    # When did each side send its first RST_STREAM on this stream?
    rst_at: list[Optional[int]] = [None, None]
    rst_pkt: list[Optional[int]] = [None, None]
    rst_code: list[Optional[int]] = [None, None]
    rst_at[rec.rst_by], rst_pkt[rec.rst_by], rst_code[rec.rst_by] = rec.rst_ns, rec.rst_packet, rec.rst_code
    for lf in rec.late:
        if lf.type == RST_STREAM and rst_at[lf.side] is None:
            rst_at[lf.side], rst_pkt[lf.side] = lf.ts_ns, lf.packet
    for side in (0, 1):
        peer = 1 - side
        own = rst_at[side]
        peer_at = rst_at[peer]
        frames = []
        for lf in rec.late:
            if lf.side != side or lf.type not in _PAYLOAD_TYPES:
                continue
            if own is not None and lf.ts_ns > own:
                frames.append((lf, "own"))
            elif peer_at is not None and lf.ts_ns > peer_at + grace:
                frames.append((lf, "peer"))
        if not frames:
            continue
        after_own = frames[0][1] == "own"
        ref_ns = own if after_own else peer_at
        assert ref_ns is not None  # a frame counted only after a reset
        ref_pkt = rst_pkt[side] if after_own else rst_pkt[peer]
        reset_by = side if after_own else peer
        reset_code = rst_code[reset_by]
        code = error_name(reset_code) if reset_code is not None else "?"
        nbytes = sum(lf.length for lf, _ in frames if lf.type == DATA)
        ndata = sum(1 for lf, _ in frames if lf.type == DATA)
        window = frames[-1][0].ts_ns - ref_ns
        sender = SIDE_NAMES[side]
        kinds = f"{plural(ndata, 'DATA frame')} ({size(nbytes)})" if ndata == len(frames) else \
            f"{plural(len(frames), 'frame')} ({ndata} DATA, {size(nbytes)})"
        if after_own:
            summary = (f"{where(conn, rec.stream)}: the {sender} sent {kinds} for "
                       f"{ms(window)} after its own RST_STREAM({code}) at packet {ref_pkt}: an endpoint "
                       f"must not send on a stream it reset.")
        else:
            summary = (f"{where(conn, rec.stream)}: the {sender} sent {kinds} for "
                       f"{ms(window)} after the {SIDE_NAMES[peer]}'s RST_STREAM({code}) at packet {ref_pkt}"
                       f" (beyond the {ms(grace)} grace): it kept working on a cancelled call.")
        evidence = [ref_pkt] + [lf.packet for lf, _ in frames][:MAX_EVIDENCE]
        in_grace = 0 if peer_at is None else sum(
            1 for lf in rec.late if lf.side == side and lf.type in _PAYLOAD_TYPES
            and peer_at < lf.ts_ns <= peer_at + grace)
        out.append(Finding(
            kind=KIND, severity="error", conn=rec.conn, stream=rec.stream, ts_ns=frames[0][0].ts_ns,
            summary=summary, packets=sorted(set(p for p in evidence if p is not None)), method=rec.method,
            details={"by": sender, "after": "own-rst" if after_own else "peer-rst", "rst_packet": ref_pkt,
                     "rst_code": code, "frames": len(frames), "data_frames": ndata, "bytes": nbytes,
                     "zombie_window": window / 1e9, "grace": grace / 1e9, "frames_in_grace": in_grace,
                     "frames_not_listed": rec.late_dropped},
        ))
    return out
