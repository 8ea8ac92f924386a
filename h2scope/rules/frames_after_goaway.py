"""frames-after-goaway: streams above a GOAWAY's last-stream-id that still carried frames,
and new streams an endpoint opened after it received GOAWAY.

The GOAWAY's sender said it would not process those streams, so frames it sends on them
itself need no grace; the receiver's frames count once the GOAWAY had time to arrive.
A graceful two-step shutdown (2^31-1, then the real last id) produces no finding.
"""

from __future__ import annotations

from ..findings import Finding
from ..http2.constants import error_name, type_name
from ..model import SIDE_NAMES
from .common import MAX_EVIDENCE, grace_ns, plural, where

KIND = "frames-after-goaway"


def check_connection(conn, options) -> list[Finding]:
    out: list[Finding] = []
    if not conn.after_goaway:
        return out
    grace = grace_ns(conn, options.grace_s)
    by_goaway: dict[int, list[dict]] = {}
    for e in conn.after_goaway:
        receiver_sent = e["side"] != _goaway_sender(conn, e["goaway_packet"])
        if receiver_sent and e["ts_ns"] <= e["goaway_ns"] + grace:
            continue  # in flight when the GOAWAY was sent
        by_goaway.setdefault(e["goaway_packet"], []).append(e)
    for gpkt, events in by_goaway.items():
        g = next(g for g in conn.goaways if g.packet == gpkt)
        new_streams = sorted({e["stream"] for e in events if e["new_stream"]})
        streams = sorted({e["stream"] for e in events})
        receiver = SIDE_NAMES[1 - g.by]
        sender_frames = [e for e in events if e["side"] == g.by]
        receiver_frames = [e for e in events if e["side"] != g.by]
        parts = []
        if new_streams:
            parts.append(f"the {receiver} opened {plural(len(new_streams), 'new stream')} "
                         f"({_ids(new_streams)}) after the GOAWAY arrived")
        old_receiver = {e["stream"] for e in receiver_frames} - set(new_streams)
        if old_receiver:
            parts.append(f"the {receiver} kept sending on {plural(len(old_receiver), 'stream')} above "
                         f"last-stream-id ({_ids(sorted(old_receiver))})")
        if sender_frames:
            answered = sorted({e["stream"] for e in sender_frames})
            types = sorted({type_name(e["type"]) for e in sender_frames})
            parts.append(f"the {SIDE_NAMES[g.by]} itself sent {plural(len(sender_frames), 'frame')} "
                         f"({', '.join(types)}) on {plural(len(answered), 'stream')} above its own "
                         f"last-stream-id ({_ids(answered)})")
        advice = ("requests sent after a GOAWAY may be dropped unless the client retries them elsewhere"
                  if receiver_frames else
                  "work on streams it declared unprocessed contradicts its GOAWAY, so clients may retry them twice")
        summary = (f"{where(conn)}: after the {SIDE_NAMES[g.by]}'s GOAWAY({error_name(g.error_code)}, "
                   f"last-stream-id {g.last_stream_id}) at packet {g.packet}, " + "; ".join(parts)
                   + f": {advice}.")
        out.append(Finding(
            kind=KIND, severity="warning", conn=conn.id, stream=streams[0] if len(streams) == 1 else None,
            ts_ns=events[0]["ts_ns"], summary=summary,
            packets=sorted({gpkt} | {e["packet"] for e in events[:MAX_EVIDENCE]}),
            details={"goaway_packet": gpkt, "last_stream_id": g.last_stream_id, "streams": streams,
                     "new_streams": new_streams, "frames": len(events)},
        ))
    return out


def _ids(ids: list[int]) -> str:
    return ", ".join(map(str, ids[:10])) + ("…" if len(ids) > 10 else "")


def _goaway_sender(conn, packet: int) -> int:
    for g in conn.goaways:
        if g.packet == packet:
            return g.by
    return -1
