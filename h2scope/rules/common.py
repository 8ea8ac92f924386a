"""Shared pieces of the rules: the grace window and how numbers read in summaries."""

from __future__ import annotations

from typing import Optional

from ..model import ConnectionRecord

# A frame the capture saw after a RST_STREAM (or GOAWAY) may have left its sender before
# the reset arrived. With an RTT estimate the grace is GRACE_RTT_FACTOR round trips but
# at least GRACE_FLOOR_S: grpc-go drains up to ~1.3 ms of queued DATA after a cancel on
# loopback, which is many RTTs there, yet not a peer ignoring the reset (PROTOCOL-NOTES).
# Without an RTT the grace is DEFAULT_GRACE_S. `--grace` overrides all of it.
GRACE_RTT_FACTOR = 4
GRACE_FLOOR_S = 0.010
DEFAULT_GRACE_S = 0.050
MAX_EVIDENCE = 20  # packet numbers listed per finding


def grace_ns(conn: Optional[ConnectionRecord], override_s: Optional[float]) -> int:
    if override_s is not None:
        return int(override_s * 1e9)
    if conn is None or conn.rtt_ns is None:
        return int(DEFAULT_GRACE_S * 1e9)
    return max(int(GRACE_FLOOR_S * 1e9), GRACE_RTT_FACTOR * conn.rtt_ns)


def ms(ns: int) -> str:
    """A duration as people read it: 412 ms, 1.3 ms, 2.51 s."""
    v = ns / 1e6
    if abs(v) >= 10_000:
        return f"{v / 1000:.1f} s"
    if abs(v) >= 1000:
        return f"{v / 1000:.2f} s"
    if abs(v) >= 10:
        return f"{v:.0f} ms"
    if abs(v) >= 0.1:
        return f"{v:.1f} ms"
    return f"{ns / 1e3:.0f} µs"


def size(n: int) -> str:
    if n >= 1024 * 1024:
        return f"{n / 1048576:.1f} MB"
    if n >= 1024:
        return f"{n / 1024:.1f} KB"
    return f"{n} B"


def where(conn: Optional[ConnectionRecord], stream: Optional[int] = None) -> str:
    """'stream 5 on 127.0.0.1:37234→127.0.0.1:50051' — how a person finds it again."""
    if conn is None:
        return f"stream {stream}" if stream is not None else "the capture"
    path = f"{conn.client}→{conn.server}"
    return f"stream {stream} on {path}" if stream is not None else f"connection {conn.id} ({path})"


def call(conn: Optional[ConnectionRecord], rec) -> str:
    """'stream 5 on a→b /pkg.Svc/Method': where a call is, and what it was."""
    return where(conn, rec.stream) + (f" {rec.method}" if rec.method else "")


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"
