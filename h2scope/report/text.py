"""The terminal report: capture facts, connections, findings worst first, per-method table.

`TextReport` is a sink: it keeps what it will print (the lowest 200 connection ids, 50
findings per kind, per-method counters) and counts the rest, so a 2 GB capture prints
the same kind of page in the same memory as a small one.
"""

from __future__ import annotations

import datetime as dt
import heapq
import textwrap
from collections import Counter
from typing import Optional

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..findings import SEVERITIES
from ..grpc.status import status_name
from ..results import Selection
from ..rules import KINDS
from ..rules.common import ms, plural, size
from .tables import MethodStats, stream_flags

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _when(ns) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


MAX_CONNECTIONS_SHOWN = 200  # the lowest ids; JSON lists them all
MAX_PER_KIND = 50  # findings printed per kind; JSON lists them all
MAX_NOTES = 30


class TextReport:
    """The sink behind the terminal report: what it prints, and counts for the rest."""

    def __init__(self, selection: Selection) -> None:
        self.selection = selection
        self.shown: list = []  # heap of (-id, conn, stall fact) for the lowest ids
        self.connections = 0
        self.h2_connections = 0
        self.other_protocols: Counter = Counter()
        self.notes: list[str] = []
        self.notes_more = 0
        self.stalls: dict[int, list] = {}  # conn id → [count, longest ns, stall] from its streams
        self.streams = 0
        self.grpc_calls = 0
        self.by_kind: dict[str, list] = {}  # kind → [count, max rank, first findings]
        self.severity_counts: Counter = Counter()
        self.max_rank = -1
        self.methods = MethodStats()

    # ---- Sink ----------------------------------------------------------------------------

    def encode_stream(self, rec, findings: list) -> Optional[tuple]:
        if not self.selection.method_ok(rec.method):
            return None
        sel = self.selection
        exceeded, zombie = stream_flags(f for f in findings if f.rank >= sel.min_rank and sel.method_ok(f.method))
        row = self.methods.row(rec, exceeded, zombie)
        stalls = [((st.end_ns or rec.end_ns or st.start_ns) - st.start_ns, st) for st in rec.stalls]
        return (rec.grpc, row, stalls)

    def add_stream(self, item: tuple, conn: int) -> None:
        if not self.selection.conn_ok(conn):
            return
        grpc, row, stalls = item
        self.streams += 1
        if grpc:
            self.grpc_calls += 1
        for dur, st in stalls:
            self._stall(conn, dur, st)
        if row is not None:
            self.methods.add_row(row)

    def connection(self, conn, violations: list) -> None:
        if not self.selection.connection(conn):
            return
        self.connections += 1
        if conn.protocol.startswith("h2c"):
            self.h2_connections += 1
        else:
            self.other_protocols[conn.protocol] += 1
        for note in conn.notes:
            if len(self.notes) < MAX_NOTES + 1:
                self.notes.append(f"connection {conn.id}: {note}")
            else:
                self.notes_more += 1
        for st in conn.stalls:
            self._stall(conn.id, (st.end_ns or conn.end_ns or st.start_ns) - st.start_ns, st)
        stall = self.stalls.pop(conn.id, None)
        item = (-conn.id, id(conn), conn, stall)
        if len(self.shown) < MAX_CONNECTIONS_SHOWN:
            heapq.heappush(self.shown, item)
        elif -conn.id > self.shown[0][0]:
            heapq.heapreplace(self.shown, item)

    def finding(self, f) -> None:
        if not self.selection.finding(f):
            return
        self.severity_counts[f.severity] += 1
        self.max_rank = max(self.max_rank, f.rank)
        group = self.by_kind.get(f.kind)
        if group is None:
            group = self.by_kind[f.kind] = [0, f.rank, []]
        group[0] += 1
        group[1] = max(group[1], f.rank)
        if len(group[2]) < MAX_PER_KIND:
            group[2].append(f)

    def _stall(self, cid: int, dur: int, st) -> None:
        agg = self.stalls.get(cid)
        if agg is None:
            self.stalls[cid] = [1, dur, st]
            return
        agg[0] += 1
        if dur > agg[1]:
            agg[1], agg[2] = dur, st

    # ---- output ----------------------------------------------------------------------------

    def render(self, console: Console, cap, frames: int) -> None:
        console.print(Text(f"h2scope · {cap.path}", style="bold"))
        span = (cap.last_ns - cap.first_ns) if cap.first_ns is not None and cap.last_ns is not None else 0
        fmt = cap.format + (" (gzip)" if cap.compressed else "")
        console.print(f"  {fmt}, {', '.join(cap.link_types) or 'no link type'} · {plural(cap.packets, 'packet')} · "
                      f"{_when(cap.first_ns)} + {ms(span)}")
        console.print(f"  {plural(self.connections, 'TCP connection')} ({self.h2_connections} HTTP/2) · "
                      f"{plural(self.streams, 'stream')} · {plural(self.grpc_calls, 'gRPC call')} · "
                      f"{plural(frames, 'HTTP/2 frame')}")
        self._not_decoded(console, cap)

        console.print()
        console.print(Text("Connections", style="bold underline"))
        for _neg, _id, c, stall in sorted(self.shown, reverse=True):
            self._connection(console, c, stall)
        if self.connections > len(self.shown):
            console.print(Text(f"  … and {self.connections - len(self.shown)} more connections "
                               "(--format json lists them all)", style="dim"))

        console.print()
        counts = self.severity_counts
        head = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]) or "none"
        console.print(Text(f"Findings: {head}", style="bold underline"))
        order = sorted(self.by_kind, key=lambda k: (-self.by_kind[k][1], KINDS.index(k)))
        for kind in order:
            count, rank, group = self.by_kind[kind]
            sev = SEVERITIES[rank]
            console.print(Text.assemble(("  " + sev.upper().ljust(8), SEVERITY_STYLE[sev]),
                                        (f"{kind} ({count})", "bold")))
            for f in sorted(group, key=lambda f: -f.rank):
                pk = ", ".join(map(str, f.packets[:8])) + ("…" if len(f.packets) > 8 else "")
                _wrapped(console, f"{f.summary} [packets {pk}]", "    • ", "      ")
            if count > len(group):
                _wrapped(console, f"… and {count - len(group)} more {kind} findings "
                         "(--format json lists them all)", "    ", "      ", style="dim")
        if not self.by_kind:
            console.print("  No findings: every call ended within its deadline and no peer misbehaved.")

        rows = self.methods.rows()
        if rows:
            console.print()
            console.print(Text("Methods", style="bold underline"))
            t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
            widest = max(len(row["method"]) for row in rows)
            # Short headings so the table fits 80 columns; the legend below says what they mean.
            for col in ("method", "calls", "status", "dl%", "p50", "p99", "late", "zombie"):
                left = col in ("method", "status")
                t.add_column(col, justify="left" if left else "right", no_wrap=not left,
                             overflow="fold" if left else "ellipsis",
                             min_width=min(widest, 28) if col == "method" else None)
            for row in rows:
                t.add_row(row["method"], str(row["calls"]), row["statuses"] or "-", f"{row['with_deadline_pct']:.0f}",
                          _dur(row["p50_ms"]), _dur(row["p99_ms"]), str(row["deadline_exceeded"]),
                          size(row["zombie_bytes"]) if row["zombie_bytes"] else "-")
            console.print(t)
            _wrapped(console, "dl% = calls with a grpc-timeout; p50/p99 = call duration; late = calls past their "
                     "deadline; zombie = bytes sent after a reset", "  ", "  ", style="dim")
        console.print()
        _wrapped(console, f"Open a packet in Wireshark: wireshark -r {cap.path} -g PACKET", "", "  ", style="dim")
        _wrapped(console, "What a finding means and how to fix it: h2scope explain KIND", "", "  ", style="dim")

    @staticmethod
    def _connection(console: Console, c, stall) -> None:
        roles = "" if c.role_source in ("syn", "preface", "http2-headers") else " (roles guessed)"
        closed = "still open at capture end" if c.close == "open" else \
            f"closed by {c.close_by} {c.close.upper()} @{c.close_packet}"
        head = Text.assemble((f"  #{c.id} ", "bold"), f"{c.client} → {c.server}{roles}  ", (c.protocol, "cyan"))
        console.print(head)
        facts = [f"{plural(c.streams, 'stream')}", f"packets {c.packets[0]}/{c.packets[1]}",
                 f"bytes {size(c.bytes[0])}/{size(c.bytes[1])}"]
        if c.rtt_ns is not None:
            facts.append(f"rtt {ms(c.rtt_ns)}")
        if c.gaps[0] or c.gaps[1]:
            facts.append(f"gaps {c.gaps[0]}/{c.gaps[1]} ({size(c.gap_bytes[0] + c.gap_bytes[1])} missing)")
        if c.retransmissions[0] or c.retransmissions[1]:
            facts.append(f"retransmissions {c.retransmissions[0]}/{c.retransmissions[1]}")
        if stall is not None:
            count, longest, st = stall
            where = f"stream {st.stream}" if st.stream is not None else "the connection window"
            facts.append(f"flow-control stalls {count} (longest {ms(longest)} on {where}, @{st.start_packet})")
        for g in c.goaways:
            facts.append(f"GOAWAY by {('client', 'server')[g.by]} last={g.last_stream_id} @{g.packet}")
        facts.append(closed)
        _wrapped(console, " · ".join(facts), "     ", "     ", style="dim")

    def _not_decoded(self, console: Console, cap) -> None:
        lines = list(cap.warnings)
        for reason, n in sorted(cap.skipped.items()):
            if reason != "after connection close":
                lines.append(f"{plural(n, 'packet')} skipped: {reason}")
        for proto, n in self.other_protocols.items():
            lines.append(f"{plural(n, 'connection')} not decoded as HTTP/2: {proto}")
        lines.extend(self.notes)
        if cap.secrets:
            lines.append(f"{plural(cap.secrets, 'decryption secrets block')} present (TLS decryption is not supported yet)")
        if lines:
            console.print(Text("  What could not be decoded:", style="yellow"))
            for line in lines[:MAX_NOTES]:
                _wrapped(console, line, "    - ", "      ")
            more = len(lines) - MAX_NOTES + self.notes_more
            if more > 0:
                console.print(f"    - … and {more} more")


def _wrapped(console: Console, text: str, first: str, rest: str, style: str | None = None) -> None:
    """Print text wrapped to the console with a hanging indent and no trailing spaces."""
    width = max(40, console.width)
    for line in textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest,
                              break_on_hyphens=False) or [first]:
        console.print(Text(line, style=style or ""), soft_wrap=True)


def _dur(v) -> str:
    return "-" if v is None else ms(int(v * 1e6))


__all__ = ["TextReport", "status_name"]
