"""cancel-storm: many streams reset within a short window, on one connection or from one
client host across its connections. Thresholds: Options.storm_count resets within
Options.storm_window_s (defaults 10 in 1 s; --storm-count, --storm-window)."""

from __future__ import annotations

from collections import Counter, defaultdict

from ..findings import Finding
from ..http2.constants import error_name
from ..model import SIDE_NAMES
from .common import MAX_EVIDENCE, ms, where

KIND = "cancel-storm"


def _windows(resets: list, count: int, window_ns: int) -> list[list]:
    """Maximal runs in which at least `count` resets fall within `window_ns` of each other."""
    resets.sort(key=lambda r: r[0])
    runs = []
    i = 0
    n = len(resets)
    while i < n:
        j = i
        while j + 1 < n and resets[j + 1][0] - resets[i][0] <= window_ns:
            j += 1
        if j - i + 1 >= count:
            # extend the run while the next reset is still within a window of the last one
            while j + 1 < n and resets[j + 1][0] - resets[j][0] <= window_ns:
                j += 1
            runs.append(resets[i:j + 1])
            i = j + 1
        else:
            i += 1
    return runs


def _describe(run: list) -> tuple[str, str]:
    by = Counter(SIDE_NAMES[r[3]] for r in run)
    codes = Counter(error_name(r[4]) for r in run)
    return (", ".join(f"{n} by the {who}" for who, n in by.most_common()),
            ", ".join(f"{code} {n}" for code, n in codes.most_common()))


def check(analysis) -> list[Finding]:
    opts = analysis.options
    window_ns = int(opts.storm_window_s * 1e9)
    conns = {c.id: c for c in analysis.connections}
    per_conn: dict[int, list] = defaultdict(list)
    for rec in analysis.streams:
        if rec.rst_by is not None and rec.rst_ns is not None and rec.end_reason == "reset":
            per_conn[rec.conn].append((rec.rst_ns, rec.rst_packet, rec.stream, rec.rst_by, rec.rst_code, rec.conn))
    out = []
    for cid, resets in sorted(per_conn.items()):
        for run in _windows(resets, opts.storm_count, window_ns):
            span = run[-1][0] - run[0][0]
            who, codes = _describe(run)
            conn = conns.get(cid)
            out.append(Finding(
                kind=KIND, severity="warning", conn=cid, stream=None, ts_ns=run[0][0],
                summary=(f"{where(conn)}: {len(run)} streams reset within {ms(span)} ({who}; {codes}): "
                         "look for a client-side timeout, a retry loop or a load balancer dropping calls."),
                packets=[r[1] for r in run[:MAX_EVIDENCE]],
                details={"resets": len(run), "window": span / 1e9, "streams": [r[2] for r in run][:100],
                         "scope": "connection"},
            ))
    # The same over each client host, when its storm spans several connections.
    per_host: dict[str, list] = defaultdict(list)
    for cid, resets in per_conn.items():
        conn = conns.get(cid)
        if conn is not None:
            per_host[conn.client.rsplit(":", 1)[0]].extend(resets)
    for host, resets in sorted(per_host.items()):
        for run in _windows(list(resets), opts.storm_count, window_ns):
            if len({r[5] for r in run}) < 2:
                continue
            span = run[-1][0] - run[0][0]
            who, codes = _describe(run)
            out.append(Finding(
                kind=KIND, severity="warning", conn=None, stream=None, ts_ns=run[0][0],
                summary=(f"client {host}: {len(run)} streams reset within {ms(span)} across "
                         f"{len({r[5] for r in run})} connections ({who}; {codes})."),
                packets=[r[1] for r in run[:MAX_EVIDENCE]],
                details={"resets": len(run), "window": span / 1e9, "client_host": host,
                         "connections": sorted({r[5] for r in run}), "scope": "host"},
            ))
    return out
