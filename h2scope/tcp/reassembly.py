"""TCP reassembly: segments in capture order → each direction's bytes in sequence order.

A sans-IO core: `TcpTracker.feed()` takes one decoded segment, and the per-connection
sink receives ordered byte chunks, gaps and close events, each tagged with the packet
number that completed it. The rules follow Wireshark's defaults:

- first arrival wins for overlapping bytes, whether the earlier copy was already delivered
  or is still waiting in the out-of-order buffer; a later copy whose bytes differ is counted
  as a conflicting overlap (checked against a bounded history);
- bytes the capture never saw become a gap when the peer's ACK proves they were sent
  (Wireshark's "ACKed unseen segment") and later data or a FIN/RST is waiting behind them,
  when the out-of-order buffer passes its cap, or at the end of the connection;
  reassembly then resynchronises instead of stalling. An ACK-proven hole is only declared
  once REORDER_WINDOW more packets have been read, so a capture whose records are slightly
  out of order (multi-queue or `-i any` timestamps) reassembles exactly as if they were not;
- a FIN or RST is delivered to the sink in sequence order: when it arrives ahead of data
  still missing before it, its close event waits for that data (or for the hole to be
  declared a gap), so no byte is ever delivered after its direction's close;
- snaplen-truncated payloads deliver what was captured and a gap for the rest.

Sequence numbers are compared as signed 32-bit differences and turned into absolute
stream offsets, so wrap-around is invisible above this layer.
"""

from __future__ import annotations

from bisect import bisect_left, insort
from collections import OrderedDict, deque
from typing import Callable, Optional, Protocol

from ..capture.link import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, format_addr

MASK = 0xFFFFFFFF
HALF = 0x80000000
DEFAULT_OOO_CAP = 4 * 1024 * 1024  # bytes of out-of-order data buffered per direction
HISTORY_CAP = 64 * 1024  # delivered bytes kept to check retransmissions for conflicts
MAX_GAP_RECORDS = 100  # gaps listed per direction; more are only counted
CLOSED_KEEP = 4096  # closed connections remembered to absorb their trailing ACKs

CLIENT = 0
SERVER = 1


class StreamSink(Protocol):
    """What reassembly feeds: one sink per TCP connection. `side` is CLIENT (client→server
    bytes) or SERVER (server→client bytes)."""

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None: ...

    def on_gap(self, side: int, size: int, packet: int, ts_ns: int) -> None: ...

    def on_close(self, side: int, how: str, packet: int, ts_ns: int) -> None: ...

    def on_end(self, ts_ns: int) -> None: ...


class Direction:
    """One endpoint's byte stream towards the other."""

    __slots__ = (
        "next_seq", "offset", "ooo", "ooo_bytes", "history", "history_bytes", "peer_ack",
        "packets", "payload_bytes", "delivered", "retransmissions", "keepalives", "out_of_order",
        "conflicts", "conflict_packets", "gaps", "gap_count", "gap_bytes", "truncated",
        "fin_packet", "rst_packet", "zero_window",
    )

    def __init__(self) -> None:
        self.next_seq: Optional[int] = None
        self.offset = 0  # absolute stream offset of next_seq
        self.ooo: list = []  # sorted [abs_offset, payload, packet, ts_ns, missing]
        self.ooo_bytes = 0
        self.history: deque = deque()  # (abs_offset, bytes) of recently delivered data
        self.history_bytes = 0
        self.peer_ack: Optional[int] = None  # highest ACK the other side sent for these bytes
        self.packets = 0
        self.payload_bytes = 0  # payload bytes seen in segments, retransmissions included
        self.delivered = 0  # bytes handed to the sink
        self.retransmissions = 0
        self.keepalives = 0
        self.out_of_order = 0
        self.conflicts = 0
        self.conflict_packets: list[int] = []
        self.gaps: list[tuple[int, int, int]] = []  # (offset, size, packet)
        self.gap_count = 0
        self.gap_bytes = 0
        self.truncated = 0  # segments cut by snaplen
        self.fin_packet: Optional[int] = None
        self.rst_packet: Optional[int] = None
        self.zero_window = 0


class TcpConnection:
    """One TCP connection (Wireshark's tcp.stream); `dirs` are indexed by endpoint, fixed
    at first sight, and `client_ep` says which endpoint is the client."""

    __slots__ = (
        "id", "addrs", "ports", "dirs", "client_ep", "role_source", "sink", "first_packet",
        "last_packet", "start_ns", "end_ns", "close", "close_by", "close_packet", "syn_ns",
        "synack_ns", "rtt_ns", "closed", "syn_seq", "packets",
    )

    def __init__(self, cid: int, src: bytes, sport: int, dst: bytes, dport: int) -> None:
        self.id = cid
        self.addrs = (src, dst)
        self.ports = (sport, dport)
        self.dirs = (Direction(), Direction())
        self.client_ep = 0
        self.role_source = "port-guess"
        self.sink: Optional[StreamSink] = None
        self.first_packet = 0
        self.last_packet = 0
        self.start_ns = 0
        self.end_ns = 0
        self.close = "open"  # "fin" | "rst" | "open"
        self.close_by: Optional[str] = None  # "client" | "server"
        self.close_packet: Optional[int] = None
        self.syn_ns: Optional[int] = None
        self.synack_ns: Optional[int] = None
        self.rtt_ns: Optional[int] = None
        self.closed = False
        self.syn_seq: Optional[int] = None
        self.packets = 0

    def endpoint(self, ep: int) -> str:
        return format_addr(self.addrs[ep], self.ports[ep])

    @property
    def client(self) -> str:
        return self.endpoint(self.client_ep)

    @property
    def server(self) -> str:
        return self.endpoint(1 - self.client_ep)

    @property
    def server_port(self) -> int:
        return self.ports[1 - self.client_ep]

    def direction(self, side: int) -> Direction:
        """The Direction carrying `side`'s bytes (CLIENT: client→server)."""
        return self.dirs[side ^ self.client_ep]

    def set_client(self, ep: int, source: str) -> None:
        self.client_ep = ep
        self.role_source = source

    def swap_roles(self, source: str) -> None:
        """A layer above learned the roles (e.g. the HTTP/2 preface came from the other side)."""
        self.client_ep ^= 1
        self.role_source = source


SinkFactory = Callable[[TcpConnection], StreamSink]


class TcpTracker:
    """Demultiplexes segments into connections and reassembles each direction."""

    def __init__(self, sink_factory: SinkFactory, ooo_cap: int = DEFAULT_OOO_CAP,
                 on_finished: Optional[Callable[[TcpConnection], None]] = None) -> None:
        self._sink_factory = sink_factory
        self._on_finished = on_finished
        self.ooo_cap = ooo_cap
        # Both orientations of a 4-tuple map to (connection, endpoint index): one lookup per packet.
        self._open: dict[tuple, tuple[TcpConnection, int]] = {}
        self._closed: OrderedDict[tuple, tuple[TcpConnection, int]] = OrderedDict()
        self.next_id = 0
        self.late_packets = 0  # packets of connections already closed and released

    # ---- per packet -------------------------------------------------------------------

    def feed(self, number: int, ts_ns: int, seg: tuple) -> None:
        src, sport, dst, dport, seq, ack, flags, window, payload, missing = seg
        key = (src, sport, dst, dport)
        hit = self._open.get(key)
        if hit is None or (flags & TCP_SYN and not flags & TCP_ACK and hit[0].syn_seq is not None
                           and hit[0].syn_seq != seq):
            closed = self._closed.get(key)
            if closed is not None and not flags & TCP_SYN:
                closed[0].last_packet = number
                self.late_packets += 1
                return
            if hit is not None:  # a new SYN reusing the 4-tuple: the old connection ends here
                self._finish(hit[0], ts_ns)
            hit = self._new_connection(number, ts_ns, src, sport, dst, dport, flags)
        conn, ep = hit
        conn.last_packet = number
        conn.end_ns = ts_ns
        conn.packets += 1
        d = conn.dirs[ep]
        d.packets += 1
        if window == 0 and not flags & (TCP_SYN | TCP_RST | TCP_FIN):
            d.zero_window += 1

        if flags & TCP_SYN:
            if flags & TCP_ACK:
                if conn.synack_ns is None:
                    conn.synack_ns = ts_ns
            else:
                conn.syn_seq = seq
                if conn.syn_ns is None:
                    conn.syn_ns = ts_ns
            d.next_seq = (seq + 1) & MASK
        elif flags & TCP_ACK and conn.rtt_ns is None and conn.syn_ns is not None \
                and conn.synack_ns is not None and not payload and ep == conn.client_ep:
            # The client's ACK of the SYN/ACK: Wireshark's tcp.analysis.initial_rtt.
            conn.rtt_ns = ts_ns - conn.syn_ns

        if flags & TCP_ACK:
            peer = conn.dirs[1 - ep]
            peer.peer_ack = ack
            if peer.ooo:
                self._ack_gap(conn, 1 - ep, peer, ack, number, ts_ns)

        if payload or missing:
            self._data(conn, ep, d, seq, payload, missing, number, ts_ns)

        if flags & TCP_RST:
            if d.rst_packet is None:
                d.rst_packet = number
                self._closing(conn, ep, "rst", number, ts_ns)
            self._finish(conn, ts_ns)
        elif flags & TCP_FIN and d.fin_packet is None:
            d.fin_packet = number
            self._flush(conn, ep, d, number, ts_ns)
            self._closing(conn, ep, "fin", number, ts_ns)
            if conn.dirs[1 - ep].fin_packet is not None:
                self._finish(conn, ts_ns)

    def _new_connection(self, number: int, ts_ns: int, src: bytes, sport: int, dst: bytes,
                        dport: int, flags: int) -> tuple[TcpConnection, int]:
        conn = TcpConnection(self.next_id, src, sport, dst, dport)
        self.next_id += 1
        conn.first_packet = number
        conn.start_ns = ts_ns
        if flags & TCP_SYN:
            conn.set_client(1 if flags & TCP_ACK else 0, "syn")
        elif sport > dport:  # the ephemeral (higher) port is most likely the client
            conn.set_client(0, "port-guess")
        elif sport < dport:
            conn.set_client(1, "port-guess")
        else:
            conn.set_client(0, "port-guess")
        conn.sink = self._sink_factory(conn)
        entry0 = (conn, 0)
        entry1 = (conn, 1)
        self._open[(src, sport, dst, dport)] = entry0
        self._open[(dst, dport, src, sport)] = entry1
        return entry0

    # ---- reassembly ------------------------------------------------------------------

    def _data(self, conn: TcpConnection, ep: int, d: Direction, seq: int, payload: bytes,
              missing: int, number: int, ts_ns: int) -> None:
        n = len(payload)
        d.payload_bytes += n
        if missing:
            d.truncated += 1
        if d.next_seq is None:  # capture started mid-connection: the first byte seen is offset 0
            d.next_seq = seq
        rel = (seq - d.next_seq) & MASK
        if rel >= HALF:
            rel -= 0x100000000
        if rel == 0 and not d.ooo:
            # In order, nothing buffered: the common case.
            self._deliver(conn, ep, d, payload, number, ts_ns)
            if missing:
                self._gap(conn, ep, d, d.offset + missing, number, ts_ns)
            return
        if rel < 0:
            end = rel + n + missing
            if end <= 0:
                if n <= 1 and rel == -1:
                    d.keepalives += 1
                else:
                    d.retransmissions += 1
                    self._check_overlap(d, d.offset + rel, payload, number)
                return
            d.retransmissions += 1
            self._check_overlap(d, d.offset + rel, payload[:-rel], number)
            payload = payload[-rel:]
            rel = 0
            if not d.ooo:
                self._deliver(conn, ep, d, payload, number, ts_ns)
                if missing:
                    self._gap(conn, ep, d, d.offset + missing, number, ts_ns)
                return
        # Out of order (or in order behind buffered data): buffer, then drain what is contiguous.
        d.out_of_order += rel > 0
        start = d.offset + rel
        insort(d.ooo, [start, payload, number, ts_ns, missing])
        d.ooo_bytes += len(payload)
        if rel > 0 and d.peer_ack is not None:
            acked = (d.peer_ack - d.next_seq) & MASK
            if 0 < acked < HALF:
                # The peer acknowledged bytes this capture never saw: they are lost to us.
                self._gap(conn, ep, d, d.offset + min(acked, rel), number, ts_ns)
        while d.ooo_bytes > self.ooo_cap and d.ooo:
            self._gap(conn, ep, d, d.ooo[0][0], number, ts_ns)
            self._drain(conn, ep, d)
        self._drain(conn, ep, d)

    def _drain(self, conn: TcpConnection, ep: int, d: Direction) -> None:
        ooo = d.ooo
        while ooo and ooo[0][0] <= d.offset:
            start, payload, number, ts_ns, missing = ooo.pop(0)
            d.ooo_bytes -= len(payload)
            skip = d.offset - start
            if skip:
                # Overlaps bytes already delivered: first arrival wins.
                self._check_overlap(d, start, payload[:skip], number)
                payload = payload[skip:]
                if not payload:
                    continue
            self._deliver(conn, ep, d, payload, number, ts_ns)
            if missing:
                self._gap(conn, ep, d, d.offset + missing, number, ts_ns)

    def _ack_gap(self, conn: TcpConnection, ep: int, d: Direction, ack: int, number: int,
                 ts_ns: int) -> None:
        if d.next_seq is None:
            return
        acked = (ack - d.next_seq) & MASK
        if 0 < acked < HALF and d.ooo[0][0] <= d.offset + acked:
            self._gap(conn, ep, d, d.ooo[0][0], number, ts_ns)
            self._drain(conn, ep, d)

    def _deliver(self, conn: TcpConnection, ep: int, d: Direction, payload: bytes, number: int,
                 ts_ns: int) -> None:
        n = len(payload)
        if not n:
            return
        d.history.append((d.offset, payload))
        d.history_bytes += n
        while d.history_bytes > HISTORY_CAP and len(d.history) > 1:
            d.history_bytes -= len(d.history.popleft()[1])
        d.offset += n
        d.delivered += n
        d.next_seq = (d.next_seq + n) & MASK
        conn.sink.on_data(ep ^ conn.client_ep, payload, number, ts_ns)

    def _gap(self, conn: TcpConnection, ep: int, d: Direction, upto: int, number: int,
             ts_ns: int) -> None:
        size = upto - d.offset
        if size <= 0:
            return
        if len(d.gaps) < MAX_GAP_RECORDS:
            d.gaps.append((d.offset, size, number))
        d.gap_count += 1
        d.gap_bytes += size
        d.offset = upto
        d.next_seq = (d.next_seq + size) & MASK
        conn.sink.on_gap(ep ^ conn.client_ep, size, number, ts_ns)

    def _check_overlap(self, d: Direction, start: int, data: bytes, number: int) -> None:
        """First arrival wins; report when the later copy disagrees with what was delivered."""
        if not data:
            return
        end = start + len(data)
        for hstart, hdata in d.history:
            hend = hstart + len(hdata)
            if hend <= start or hstart >= end:
                continue
            lo = max(start, hstart)
            hi = min(end, hend)
            if data[lo - start:hi - start] != hdata[lo - hstart:hi - hstart]:
                d.conflicts += 1
                if len(d.conflict_packets) < MAX_GAP_RECORDS:
                    d.conflict_packets.append(number)
                return

    def _flush(self, conn: TcpConnection, ep: int, d: Direction, number: int, ts_ns: int) -> None:
        """Deliver everything buffered, declaring the holes before it as gaps."""
        while d.ooo:
            self._gap(conn, ep, d, d.ooo[0][0], number, ts_ns)
            self._drain(conn, ep, d)

    # ---- connection end ------------------------------------------------------------------

    def _closing(self, conn: TcpConnection, ep: int, how: str, number: int, ts_ns: int) -> None:
        side = ep ^ conn.client_ep
        if conn.close == "open" or how == "rst":
            if conn.close != "rst":
                conn.close = how
                conn.close_by = "client" if side == 0 else "server"
                conn.close_packet = number
        conn.sink.on_close(side, how, number, ts_ns)

    def _finish(self, conn: TcpConnection, ts_ns: int) -> None:
        if conn.closed:
            return
        conn.closed = True
        for ep in (0, 1):
            d = conn.dirs[ep]
            if d.ooo:
                self._flush(conn, ep, d, d.ooo[-1][2], ts_ns)
            d.history.clear()
            d.history_bytes = 0
        conn.sink.on_end(ts_ns)
        a, ap = conn.addrs[0], conn.ports[0]
        b, bp = conn.addrs[1], conn.ports[1]
        for key, ep in (((a, ap, b, bp), 0), ((b, bp, a, ap), 1)):
            if self._open.get(key, (None,))[0] is conn:
                del self._open[key]
            self._closed[key] = (conn, ep)
            self._closed.move_to_end(key)
        while len(self._closed) > CLOSED_KEEP:
            self._closed.popitem(last=False)
        if self._on_finished is not None:
            self._on_finished(conn)

    def finish(self) -> None:
        """End of capture: connections still open are flushed and reported as "open"."""
        for conn, ep in list(self._open.values()):
            if ep == 0:
                self._finish(conn, conn.end_ns)

    @property
    def open_connections(self) -> int:
        return len(self._open) // 2
