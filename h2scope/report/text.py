"""The terminal report: capture facts, connections, findings worst first, per-method table."""

from __future__ import annotations

import datetime as dt
import textwrap
from collections import Counter

from rich.console import Console
from rich.table import Table
from rich.text import Text

from ..grpc.status import status_name
from ..rules import KINDS
from ..rules.common import ms, plural, size
from .tables import method_table

SEVERITY_STYLE = {"error": "bold red", "warning": "yellow", "info": "cyan"}


def _when(ns) -> str:
    if ns is None:
        return "-"
    return dt.datetime.fromtimestamp(ns / 1e9, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")


def render(console: Console, analysis, findings: list, streams: list, connections: list) -> None:
    cap = analysis.capture
    console.print(Text(f"h2scope · {cap.path}", style="bold"))
    span = (cap.last_ns - cap.first_ns) if cap.first_ns is not None and cap.last_ns is not None else 0
    fmt = cap.format + (" (gzip)" if cap.compressed else "")
    console.print(f"  {fmt}, {', '.join(cap.link_types) or 'no link type'} · {plural(cap.packets, 'packet')} · "
                  f"{_when(cap.first_ns)} + {ms(span)}")
    grpc_calls = sum(1 for s in streams if s.grpc)
    h2 = [c for c in connections if c.protocol.startswith("h2c")]
    console.print(f"  {plural(len(connections), 'TCP connection')} ({len(h2)} HTTP/2) · "
                  f"{plural(len(streams), 'stream')} · {plural(grpc_calls, 'gRPC call')} · "
                  f"{plural(analysis.frames, 'HTTP/2 frame')}")
    _not_decoded(console, analysis, connections)

    console.print()
    console.print(Text("Connections", style="bold underline"))
    for c in connections:
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
        stalls = [st for s in streams if s.conn == c.id for st in s.stalls] + list(c.stalls)
        if stalls:
            longest = max(stalls, key=lambda st: (st.end_ns or c.end_ns) - st.start_ns)
            where = f"stream {longest.stream}" if longest.stream is not None else "the connection window"
            facts.append(f"flow-control stalls {len(stalls)} (longest {ms((longest.end_ns or c.end_ns) - longest.start_ns)}"
                         f" on {where}, @{longest.start_packet})")
        for g in c.goaways:
            facts.append(f"GOAWAY by {('client', 'server')[g.by]} last={g.last_stream_id} @{g.packet}")
        facts.append(closed)
        _wrapped(console, " · ".join(facts), "     ", "     ", style="dim")

    console.print()
    counts = Counter(f.severity for f in findings)
    head = ", ".join(f"{counts[s]} {s}" for s in ("error", "warning", "info") if counts[s]) or "none"
    console.print(Text(f"Findings: {head}", style="bold underline"))
    by_kind: dict[str, list] = {}
    for f in findings:
        by_kind.setdefault(f.kind, []).append(f)
    order = sorted(by_kind, key=lambda k: (-max(f.rank for f in by_kind[k]), KINDS.index(k)))
    for kind in order:
        group = by_kind[kind]
        sev = max(group, key=lambda f: f.rank).severity
        console.print(Text.assemble(("  " + sev.upper().ljust(8), SEVERITY_STYLE[sev]), (f"{kind} ({len(group)})", "bold")))
        for f in group:
            pk = ", ".join(map(str, f.packets[:8])) + ("…" if len(f.packets) > 8 else "")
            _wrapped(console, f"{f.summary} [packets {pk}]", "    • ", "      ")
    if not findings:
        console.print("  No findings: every call ended within its deadline and no peer misbehaved.")

    df = method_table(findings, streams)
    if df.height:
        console.print()
        console.print(Text("Methods", style="bold underline"))
        t = Table(box=None, pad_edge=False, show_edge=False, padding=(0, 1))
        widest = max(len(m) for m in df["method"])
        # Short headings so the table fits 80 columns; the legend below says what they mean.
        for col in ("method", "calls", "status", "dl%", "p50", "p99", "late", "zombie"):
            left = col in ("method", "status")
            t.add_column(col, justify="left" if left else "right", no_wrap=not left,
                         overflow="fold" if left else "ellipsis",
                         min_width=min(widest, 28) if col == "method" else None)
        for row in df.iter_rows(named=True):
            t.add_row(row["method"], str(row["calls"]), row["statuses"] or "-", f"{row['with_deadline_pct']:.0f}",
                      _dur(row["p50_ms"]), _dur(row["p99_ms"]), str(row["deadline_exceeded"]),
                      size(row["zombie_bytes"]) if row["zombie_bytes"] else "-")
        console.print(t)
        _wrapped(console, "dl% = calls with a grpc-timeout; p50/p99 = call duration; late = calls past their "
                 "deadline; zombie = bytes sent after a reset", "  ", "  ", style="dim")
    console.print()
    _wrapped(console, f"Open a packet in Wireshark: wireshark -r {cap.path} -g PACKET", "", "  ", style="dim")
    _wrapped(console, "What a finding means and how to fix it: h2scope explain KIND", "", "  ", style="dim")


def _wrapped(console: Console, text: str, first: str, rest: str, style: str | None = None) -> None:
    """Print text wrapped to the console with a hanging indent and no trailing spaces."""
    width = max(40, console.width)
    for line in textwrap.wrap(text, width=width, initial_indent=first, subsequent_indent=rest,
                              break_on_hyphens=False) or [first]:
        console.print(Text(line, style=style or ""), soft_wrap=True)


def _dur(v) -> str:
    return "-" if v is None else ms(int(v * 1e6))


def _not_decoded(console: Console, analysis, connections: list) -> None:
    cap = analysis.capture
    lines = list(cap.warnings)
    for reason, n in sorted(cap.skipped.items()):
        if reason != "after connection close":
            lines.append(f"{plural(n, 'packet')} skipped: {reason}")
    others = Counter(c.protocol for c in connections if not c.protocol.startswith("h2c"))
    for proto, n in others.items():
        lines.append(f"{plural(n, 'connection')} not decoded as HTTP/2: {proto}")
    for c in connections:
        for note in c.notes:
            lines.append(f"connection {c.id}: {note}")
    if cap.secrets:
        lines.append(f"{plural(cap.secrets, 'decryption secrets block')} present (TLS decryption is not supported yet)")
    if lines:
        console.print(Text("  What could not be decoded:", style="yellow"))
        for line in lines[:30]:
            _wrapped(console, line, "    - ", "      ")
        if len(lines) > 30:
            console.print(f"    - … and {len(lines) - 30} more")


__all__ = ["render", "status_name"]
