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
from typing import Callable, Final, Optional, Protocol

from ..capture.link import TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN, Segment, format_addr

MASK: Final = 0xFFFFFFFF
HALF: Final = 0x80000000
DEFAULT_OOO_CAP: Final = 4 * 1024 * 1024  # bytes of out-of-order data buffered per direction
HISTORY_CAP: Final = 64 * 1024  # delivered bytes kept to check retransmissions for conflicts
MAX_GAP_RECORDS: Final = 100  # gaps listed per direction; more are only counted
CLOSED_KEEP: Final = 4096  # closed connections remembered to absorb their trailing ACKs
# Connections tracked at once. A port scan opens one per SYN (~7 KB each: a 14 MB capture of
# 200,000 SYNs took 2 GB); past this many, the least recently active are flushed as if the
# capture had ended for them, down to nine tenths of it.
MAX_OPEN = 10_000
# Out-of-order bytes buffered over all connections. DEFAULT_OOO_CAP bounds one direction;
# thousands of connections each holding back data could otherwise keep as much as the
# capture itself. Past this, the fullest buffers are delivered with their holes as gaps.
OOO_TOTAL_CAP = 64 * 1024 * 1024
NO_SEQ: Final = -1  # Direction.next_seq before any segment (sequence numbers are 0 to 2**32 - 1)
REORDER_WINDOW: Final = 64  # packets read after an ACK proves a hole before it is declared a gap

CLIENT: Final = 0
SERVER: Final = 1


class StreamSink(Protocol):
    """What reassembly feeds: one sink per TCP connection. `side` is CLIENT (client→server
    bytes) or SERVER (server→client bytes)."""

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None: ...

    def on_gap(self, side: int, size: int, packet: int, ts_ns: int) -> None: ...

    def on_close(self, side: int, how: str, packet: int, ts_ns: int) -> None: ...

    def on_end(self, ts_ns: int) -> None: ...


class NativeSink:
    """The base of the sinks compiled with the pipeline (H2Observer). A StreamSink is called
    as a Python object: the method looked up by name, every int boxed and unboxed again. A
    NativeSink's on_data is a direct call with native ints: W3-100MB's pipeline (bulk DATA,
    the most segments per call) 761 M -> 699 M instructions (-8%), W1-2MB 295 M -> 290 M
    (callgrind, `analyze --format json --jobs 1`)."""

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None:
        raise NotImplementedError


class _Unattached:
    """The sink of a connection before the tracker attaches its real one."""

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None:
        raise RuntimeError("no sink attached")

    def on_gap(self, side: int, size: int, packet: int, ts_ns: int) -> None:
        raise RuntimeError("no sink attached")

    def on_close(self, side: int, how: str, packet: int, ts_ns: int) -> None:
        raise RuntimeError("no sink attached")

    def on_end(self, ts_ns: int) -> None:
        raise RuntimeError("no sink attached")


_UNATTACHED: StreamSink = _Unattached()


class _Released:
    """The sink of a connection after it ended: the tracker lets go of the real one, which
    holds the connection in turn (H2Observer.tcp), so that the pair is freed by reference
    counting rather than left for the cycle collector (see cli._tune_gc). Nothing is fed to
    an ended connection; should anything be, it is dropped."""

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None:
        pass

    def on_gap(self, side: int, size: int, packet: int, ts_ns: int) -> None:
        pass

    def on_close(self, side: int, how: str, packet: int, ts_ns: int) -> None:
        pass

    def on_end(self, ts_ns: int) -> None:
        pass


_RELEASED: StreamSink = _Released()


class Direction:
    """One endpoint's byte stream towards the other."""

    __slots__ = (
        "next_seq", "offset", "ooo", "ooo_bytes", "history", "history_head", "history_bytes",
        "packets", "payload_bytes", "delivered", "retransmissions", "keepalives", "out_of_order",
        "conflicts", "conflict_packets", "gaps", "gap_count", "gap_bytes", "truncated",
        "fin_packet", "rst_packet", "zero_window", "acked_upto", "proof_pending", "pending_close",
        "fin_off", "closed",
    )

    def __init__(self) -> None:
        # The next sequence number expected, NO_SEQ before the first segment. An int, not
        # Optional[int]: compiled, an Optional attribute is a Python object, so every segment
        # boxed the new value into a fresh int and compared sequence numbers as objects.
        self.next_seq = NO_SEQ
        self.offset = 0  # absolute stream offset of next_seq
        # sorted, non-overlapping [abs_offset, payload, packet, ts_ns, tail_end]; tail_end is
        # the absolute end of a snaplen-truncated segment (0 when nothing was cut)
        self.ooo: list = []
        self.ooo_bytes = 0
        # (abs_offset, bytes) of recently delivered data, oldest first from history_head (the
        # slots before it are None, dropped in bulk by _remember). A list, not a deque: compiled,
        # deque.append and popleft are Python method calls, two per delivered segment (W3-100MB's
        # pipeline 699 M -> 675 M instructions, -3.5%; kept as it also made the fast path and
        # _deliver share one copy of this bookkeeping).
        self.history: list[Optional[tuple[int, bytes]]] = []
        self.history_head = 0
        self.history_bytes = 0
        self.acked_upto = 0  # highest absolute offset the peer acknowledged
        self.proof_pending = False  # an ACK-proven hole waits for the reorder window
        # FIN/RST that arrived ahead of data still missing: [(abs_offset, how, packet, ts_ns)]
        self.pending_close: Optional[list] = None
        self.fin_off: Optional[int] = None  # absolute offset of this direction's FIN
        self.closed = False  # the close event was handed to the sink
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


def _remember(d: Direction, offset: int, payload: bytes, n: int) -> None:
    """Keeps delivered bytes in d.history, the oldest let go past HISTORY_CAP (the newest
    segment always stays)."""
    history = d.history
    history.append((offset, payload))
    hb = d.history_bytes + n
    head = d.history_head
    last = len(history) - 1
    while hb > HISTORY_CAP and head < last:
        old = history[head]
        assert old is not None
        hb -= len(old[1])
        history[head] = None
        head += 1
    if head >= 64 and head * 2 >= len(history):  # amortized: the Nones go, a memmove of the rest
        del history[:head]
        head = 0
    d.history_head = head
    d.history_bytes = hb


class TcpConnection:
    """One TCP connection (Wireshark's tcp.stream); `dirs` are indexed by endpoint, fixed
    at first sight, and `client_ep` says which endpoint is the client."""

    __slots__ = (
        "id", "addrs", "ports", "dirs", "client_ep", "role_source", "sink", "first_packet",
        "last_packet", "start_ns", "end_ns", "close", "close_by", "close_packet", "syn_ns",
        "synack_ns", "rtt_ns", "closed", "syn_seq", "packets", "flushed", "native_sink",
    )

    def __init__(self, cid: int, src: bytes, sport: int, dst: bytes, dport: int) -> None:
        self.id = cid
        self.addrs = (src, dst)
        self.ports = (sport, dport)
        self.dirs = (Direction(), Direction())
        self.client_ep = 0
        self.role_source = "port-guess"
        self.sink: StreamSink = _UNATTACHED
        self.native_sink: Optional[NativeSink] = None  # the sink again, where it is a NativeSink
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
        self.flushed = False  # ended early by TcpTracker.sweep, still open on the wire

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
                 on_finished: Optional[Callable[[TcpConnection], None]] = None,
                 reorder_window: int = REORDER_WINDOW) -> None:
        self._sink_factory = sink_factory
        self._on_finished = on_finished
        self.ooo_cap = ooo_cap
        self.reorder_window = reorder_window
        # Both orientations of a 4-tuple map to (connection, endpoint index): one lookup per packet.
        self._open: dict[tuple, tuple[TcpConnection, int]] = {}
        # 4-tuples of released connections, to absorb their trailing ACKs. Only the key: a
        # closed connection and its sink held here cost ~7.7 KB each, which grew the peak
        # of a 1 GB capture of 800 connections by 11 MB.
        self._closed: OrderedDict[tuple, None] = OrderedDict()
        # The connection of the last packet, checked before the 4-tuple lookup: consecutive
        # packets are mostly one connection's, either way. Building the key (a tuple, two
        # ports boxed), hashing and comparing it cost about 700 instructions a packet.
        self._last: Optional[TcpConnection] = None
        # ACK-proven holes waiting out the reorder window: (packet, ts_ns, conn, ep, upto),
        # at most one per direction, in packet order.
        self._proofs: deque = deque()
        self.next_id = 0
        self.late_packets = 0  # packets of connections already closed and released
        self.max_open = MAX_OPEN
        self.flushed = 0  # connections ended early by sweep()
        self.ooo_total = 0  # out-of-order bytes buffered, all directions
        self.ooo_total_cap = OOO_TOTAL_CAP
        self.ooo_shed = 0  # buffers delivered early because of ooo_total_cap

    # ---- per packet -------------------------------------------------------------------

    def feed(self, number: int, ts_ns: int, seg: Segment) -> None:
        if self._proofs and number - self._proofs[0][0] > self.reorder_window:
            self._resolve_proofs(number - self.reorder_window)
        src, sport, dst, dport, seq, ack, flags, window, payload, missing = seg
        last = self._last
        ep = -1
        if last is not None and not flags & TCP_SYN:
            ports = last.ports
            addrs = last.addrs
            # The reverse orientation first: a connection to itself (both ends one address and
            # port) has one key in _open, whose entry, stored second, says endpoint 1.
            if sport == ports[1] and dport == ports[0] and src == addrs[1] and dst == addrs[0]:
                ep = 1
            elif sport == ports[0] and dport == ports[1] and src == addrs[0] and dst == addrs[1]:
                ep = 0
        conn: TcpConnection
        if ep >= 0 and last is not None:
            conn = last
        else:
            key = (src, sport, dst, dport)
            hit = self._open.get(key)
            if hit is None or (flags & TCP_SYN and not flags & TCP_ACK and hit[0].syn_seq is not None
                               and hit[0].syn_seq != seq):
                if not flags & TCP_SYN and key in self._closed:
                    self.late_packets += 1
                    return
                if hit is not None:  # a new SYN reusing the 4-tuple: the old connection ends here
                    self._finish(hit[0], ts_ns)
                hit = self._new_connection(number, ts_ns, src, sport, dst, dport, flags)
            conn, ep = hit
            self._last = conn
        conn.last_packet = number
        conn.end_ns = ts_ns
        conn.packets += 1
        d = conn.dirs[ep]
        d.packets += 1

        if flags & (TCP_SYN | TCP_RST | TCP_FIN):
            self._control(conn, ep, d, number, ts_ns, seq, ack, flags, window, payload, missing)
            return
        # Fast path: a segment without SYN/FIN/RST (nearly all of them).
        if window == 0:
            d.zero_window += 1
        if flags & TCP_ACK:
            if conn.rtt_ns is None and conn.syn_ns is not None and conn.synack_ns is not None \
                    and not payload and ep == conn.client_ep:
                # The client's ACK of the SYN/ACK: Wireshark's tcp.analysis.initial_rtt.
                conn.rtt_ns = ts_ns - conn.syn_ns
            peer = conn.dirs[1 - ep]
            nxt = peer.next_seq
            if nxt != NO_SEQ and ack != nxt:
                acked = (ack - nxt) & MASK
                if 0 < acked < HALF:
                    self._acked_unseen(conn, 1 - ep, peer, peer.offset + acked, number, ts_ns)
        if payload:
            if d.closed:
                return
            if seq == d.next_seq and not missing and not d.ooo:
                # In order, complete, nothing buffered: deliver inline, as _data/_deliver would
                # (measured: feeding W1-20MB's segments to a null sink 0.146 s -> 0.126 s).
                n = len(payload)
                d.payload_bytes += n
                offset = d.offset
                _remember(d, offset, payload, n)
                d.offset = offset + n
                d.delivered += n
                d.next_seq = (seq + n) & MASK
                native = conn.native_sink
                if native is not None:
                    native.on_data(ep ^ conn.client_ep, payload, number, ts_ns)
                else:
                    conn.sink.on_data(ep ^ conn.client_ep, payload, number, ts_ns)
                if d.pending_close is not None:
                    self._check_close(conn, ep, d)
            else:
                self._data(conn, ep, d, seq, payload, missing, number, ts_ns)
        elif missing:
            if not d.closed:
                self._data(conn, ep, d, seq, payload, missing, number, ts_ns)
        elif d.next_seq != NO_SEQ and (seq + 1) & MASK == d.next_seq:
            d.keepalives += 1  # an empty keep-alive: one below the next expected sequence number

    def _control(self, conn: TcpConnection, ep: int, d: Direction, number: int, ts_ns: int, seq: int,
                 ack: int, flags: int, window: int, payload: bytes, missing: int) -> None:
        """A segment with SYN, FIN or RST."""
        if flags & TCP_SYN:
            if flags & TCP_ACK:
                if conn.synack_ns is None:
                    conn.synack_ns = ts_ns
            else:
                conn.syn_seq = seq
                if conn.syn_ns is None:
                    conn.syn_ns = ts_ns
            if d.next_seq == NO_SEQ or not (d.delivered or d.ooo or d.gap_count):
                d.next_seq = (seq + 1) & MASK
            if conn.role_source == "port-guess" and not any(
                    x.delivered or x.gap_count or x.closed for x in conn.dirs):
                # The SYN came after other packets of the connection (records out of order),
                # and the sink has not been told anything that depends on the roles yet.
                conn.set_client(ep ^ 1 if flags & TCP_ACK else ep, "syn")
        elif flags & TCP_ACK and conn.rtt_ns is None and conn.syn_ns is not None \
                and conn.synack_ns is not None and not payload and ep == conn.client_ep:
            # The client's ACK of the SYN/ACK: Wireshark's tcp.analysis.initial_rtt.
            conn.rtt_ns = ts_ns - conn.syn_ns

        if flags & TCP_ACK:
            peer = conn.dirs[1 - ep]
            if peer.next_seq != NO_SEQ:
                acked = (ack - peer.next_seq) & MASK
                if 0 < acked < HALF:
                    self._acked_unseen(conn, 1 - ep, peer, peer.offset + acked, number, ts_ns)

        if payload or missing:
            if not d.closed:
                self._data(conn, ep, d, seq, payload, missing, number, ts_ns)

        if flags & TCP_RST:
            if d.rst_packet is None:
                d.rst_packet = number
                self._close_at(conn, ep, d, "rst", self._seq_offset(d, seq + len(payload) + missing),
                               number, ts_ns)
        elif flags & TCP_FIN and d.fin_packet is None:
            d.fin_packet = number
            off = self._seq_offset(d, seq + len(payload) + missing)
            d.fin_off = off
            self._close_at(conn, ep, d, "fin", off, number, ts_ns)

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
        sink = self._sink_factory(conn)
        conn.sink = sink
        if isinstance(sink, NativeSink):
            conn.native_sink = sink
        entry0 = (conn, 0)
        entry1 = (conn, 1)
        self._open[(src, sport, dst, dport)] = entry0
        self._open[(dst, dport, src, sport)] = entry1
        return entry0

    @staticmethod
    def _seq_offset(d: Direction, seq: int) -> int:
        """The absolute stream offset of sequence number `seq` in direction d."""
        seq &= MASK
        if d.next_seq == NO_SEQ:
            d.next_seq = seq
            return d.offset
        rel = (seq - d.next_seq) & MASK
        if rel >= HALF:
            rel -= 0x100000000
        return d.offset + rel

    # ---- reassembly ------------------------------------------------------------------

    def _data(self, conn: TcpConnection, ep: int, d: Direction, seq: int, payload: bytes,
              missing: int, number: int, ts_ns: int) -> None:
        n = len(payload)
        d.payload_bytes += n
        if missing:
            d.truncated += 1
        if d.next_seq == NO_SEQ:  # capture started mid-connection: the first byte seen is offset 0
            d.next_seq = seq
        rel = (seq - d.next_seq) & MASK
        if rel >= HALF:
            rel -= 0x100000000
        if rel == 0 and not d.ooo:
            # In order, nothing buffered: the common case.
            self._deliver(conn, ep, d, payload, number, ts_ns)
            if missing:
                self._gap(conn, ep, d, d.offset + missing, number, ts_ns)
            if d.pending_close is not None:
                self._check_close(conn, ep, d)
            return
        start = d.offset + rel
        tail_end = start + n + missing if missing else 0
        if rel < 0:
            end = rel + n + missing
            if end <= 0:
                if n <= 1 and rel == -1:
                    d.keepalives += 1
                else:
                    d.retransmissions += 1
                    self._check_overlap(d, start, payload, number)
                return
            d.retransmissions += 1
            old = min(-rel, n)
            self._check_overlap(d, start, payload[:old], number)
            payload = payload[old:]
            start += old
            if not d.ooo:
                self._deliver(conn, ep, d, payload, number, ts_ns)
                if tail_end:
                    self._gap(conn, ep, d, tail_end, number, ts_ns)
                if d.pending_close is not None:
                    self._check_close(conn, ep, d)
                return
        elif rel > 0:
            d.out_of_order += 1
            if d.acked_upto > d.offset and not d.proof_pending:
                # An earlier ACK already proved the hole before this segment.
                d.proof_pending = True
                self._proofs.append((number, ts_ns, conn, ep, d.acked_upto))
        # Out of order (or in order behind buffered data): buffer, then drain what is contiguous.
        self._buffer(d, start, payload, number, ts_ns, tail_end)
        while d.ooo_bytes > self.ooo_cap and d.ooo:
            self._gap(conn, ep, d, d.ooo[0][0], number, ts_ns)
            self._drain(conn, ep, d)
        self._drain(conn, ep, d)
        if self.ooo_total > self.ooo_total_cap:
            self._shed(number, ts_ns)

    def _shed(self, number: int, ts_ns: int) -> None:
        """Over the total out-of-order budget: deliver the fullest buffers, holes as gaps."""
        dirs = [(d.ooo_bytes, c.id, ep, c, d) for c, e in self._open.values() if e == 0
                for ep, d in enumerate(c.dirs) if d.ooo_bytes]
        dirs.sort(key=lambda x: (-x[0], x[1], x[2]))
        for _n, _id, ep, c, d in dirs:
            if self.ooo_total <= self.ooo_total_cap * 9 // 10:
                break
            self.ooo_shed += 1
            self._flush(c, ep, d, number, ts_ns)

    def _buffer(self, d: Direction, start: int, payload: bytes, number: int, ts_ns: int,
                tail_end: int) -> None:
        """Insert into the out-of-order buffer what no earlier arrival already holds."""
        ooo = d.ooo
        end = start + len(payload)
        i = bisect_left(ooo, [start])
        if i and ooo[i - 1][0] + len(ooo[i - 1][1]) > start:
            i -= 1
        pieces = []
        pos = start
        overlapped = False
        while i < len(ooo) and ooo[i][0] < end:
            bstart, bdata = ooo[i][0], ooo[i][1]
            bend = bstart + len(bdata)
            i += 1
            if bend <= pos:
                continue
            if bstart > pos:
                pieces.append((pos, payload[pos - start:bstart - start]))
            lo, hi = max(bstart, pos), min(bend, end)
            if lo < hi:
                overlapped = True
                if payload[lo - start:hi - start] != bdata[lo - bstart:hi - bstart]:
                    self._conflict(d, number)
            pos = max(pos, hi)
        if pos < end:
            pieces.append((pos, payload[pos - start:]))
        if overlapped and not pieces:
            d.retransmissions += 1
        for pstart, pdata in pieces:
            insort(ooo, [pstart, pdata, number, ts_ns, 0])
            d.ooo_bytes += len(pdata)
            self.ooo_total += len(pdata)
        if tail_end:
            # The cut-off tail: what the capture lost of this segment is a gap when reached.
            insort(ooo, [end, b"", number, ts_ns, tail_end])

    def _drain(self, conn: TcpConnection, ep: int, d: Direction) -> None:
        ooo = d.ooo
        while ooo and ooo[0][0] <= d.offset:
            start, payload, number, ts_ns, tail_end = ooo.pop(0)
            d.ooo_bytes -= len(payload)
            self.ooo_total -= len(payload)
            skip = d.offset - start
            if skip:
                # Overlaps bytes already delivered (or declared lost): first arrival wins.
                self._check_overlap(d, start, payload[:skip], number)
                payload = payload[skip:]
            if payload:
                self._deliver(conn, ep, d, payload, number, ts_ns)
            if tail_end:
                # Bytes the snaplen cut off; an earlier arrival still buffered wins over them.
                self._gap(conn, ep, d, min(tail_end, ooo[0][0]) if ooo else tail_end, number, ts_ns)
        if d.pending_close is not None:
            self._check_close(conn, ep, d)

    def _acked_unseen(self, conn: TcpConnection, ep: int, d: Direction, upto: int, number: int,
                      ts_ns: int) -> None:
        """The peer acknowledged bytes of d up to `upto` that were not delivered yet."""
        if d.fin_off is not None and upto > d.fin_off:
            upto = d.fin_off  # the FIN takes a sequence number but no byte
        if upto <= d.offset:
            return
        if upto > d.acked_upto:
            d.acked_upto = upto
        if not d.proof_pending:
            d.proof_pending = True
            self._proofs.append((number, ts_ns, conn, ep, upto))

    def _resolve_proofs(self, before: int) -> None:
        """Declare the ACK-proven holes recorded before packet `before` lost, and resynchronise."""
        proofs = self._proofs
        while proofs and proofs[0][0] < before:
            number, ts_ns, conn, ep, upto = proofs.popleft()
            if conn.closed:
                continue
            if ep < 0:  # the end of a reset connection's reorder window
                self._finish(conn, ts_ns)
                continue
            d = conn.dirs[ep]
            d.proof_pending = False
            self._skip_to(conn, ep, d, upto, number, ts_ns)

    def _skip_to(self, conn: TcpConnection, ep: int, d: Direction, upto: int, number: int,
                 ts_ns: int) -> None:
        """Holes before `upto` that have data (or a FIN/RST) waiting behind them become gaps."""
        while d.offset < upto and not d.closed:
            if d.ooo:
                nxt = d.ooo[0][0]
            elif d.pending_close is not None:
                nxt = d.pending_close[0][0]
            else:
                return  # nothing waits behind the hole: the stream just stops here
            target = min(upto, nxt)
            if target <= d.offset:
                self._drain(conn, ep, d)
                if conn.closed or d.ooo and d.ooo[0][0] <= d.offset:
                    return  # the second cannot happen; never loop forever
                if not d.ooo and d.pending_close is not None and d.pending_close[0][0] <= d.offset:
                    return
                continue
            self._gap(conn, ep, d, target, number, ts_ns)
            self._drain(conn, ep, d)
            if conn.closed:
                return

    def _deliver(self, conn: TcpConnection, ep: int, d: Direction, payload: bytes, number: int,
                 ts_ns: int) -> None:
        n = len(payload)
        if not n:
            return
        _remember(d, d.offset, payload, n)
        d.offset += n
        d.delivered += n
        assert d.next_seq != NO_SEQ  # set by the segment that brought this data
        d.next_seq = (d.next_seq + n) & MASK
        native = conn.native_sink
        if native is not None:
            native.on_data(ep ^ conn.client_ep, payload, number, ts_ns)
        else:
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
        assert d.next_seq != NO_SEQ  # a gap is only ever found after a first segment
        d.next_seq = (d.next_seq + size) & MASK
        conn.sink.on_gap(ep ^ conn.client_ep, size, number, ts_ns)

    def _conflict(self, d: Direction, number: int) -> None:
        d.conflicts += 1
        if len(d.conflict_packets) < MAX_GAP_RECORDS:
            d.conflict_packets.append(number)

    def _check_overlap(self, d: Direction, start: int, data: bytes, number: int) -> None:
        """First arrival wins; report when the later copy disagrees with what was delivered."""
        if not data:
            return
        end = start + len(data)
        history = d.history
        for k in range(d.history_head, len(history)):
            entry = history[k]
            assert entry is not None  # the slots from history_head on are live
            hstart, hdata = entry
            hend = hstart + len(hdata)
            if hend <= start or hstart >= end:
                continue
            lo = max(start, hstart)
            hi = min(end, hend)
            if data[lo - start:hi - start] != hdata[lo - hstart:hi - hstart]:
                self._conflict(d, number)
                return

    def _flush(self, conn: TcpConnection, ep: int, d: Direction, number: int, ts_ns: int) -> None:
        """Deliver everything buffered, declaring the holes before it as gaps."""
        while d.ooo:
            self._gap(conn, ep, d, d.ooo[0][0], number, ts_ns)
            self._drain(conn, ep, d)

    # ---- connection end ------------------------------------------------------------------

    def _close_at(self, conn: TcpConnection, ep: int, d: Direction, how: str, off: int, number: int,
                  ts_ns: int) -> None:
        """A FIN or RST whose sequence number puts it at stream offset `off`."""
        pending = d.pending_close
        if how == "rst":
            if d.fin_off is not None and off > d.fin_off:
                off = d.fin_off  # a RST after this side's FIN carries the FIN's sequence number + 1
        else:
            if d.closed:
                return
            if pending is not None:
                for i, p in enumerate(pending):  # a RST that came first, just beyond this FIN
                    if p[0] > off:
                        pending[i] = (off,) + p[1:]
        if d.closed or off <= d.offset or off - d.offset > self.ooo_cap:
            # Nothing missing before it (or an implausible sequence number): close now.
            self._emit_close(conn, ep, d, how, number, ts_ns)
            if d.pending_close is not None and not conn.closed:
                self._check_close(conn, ep, d)
            return
        # Bytes before the FIN/RST are still missing: close once they arrive or are declared lost.
        entry = (off, how, number, ts_ns)
        if pending is None:
            d.pending_close = [entry]
        else:
            pending.append(entry)
            pending.sort(key=lambda p: (p[0], p[1] == "rst"))
        if d.acked_upto > d.offset and not d.proof_pending:
            d.proof_pending = True
            self._proofs.append((number, ts_ns, conn, ep, d.acked_upto))

    def _check_close(self, conn: TcpConnection, ep: int, d: Direction) -> None:
        pending = d.pending_close
        while pending and pending[0][0] <= d.offset and not conn.closed:
            _off, how, number, ts_ns = pending.pop(0)
            self._emit_close(conn, ep, d, how, number, ts_ns)
        if not pending:
            d.pending_close = None

    def _emit_close(self, conn: TcpConnection, ep: int, d: Direction, how: str, number: int,
                    ts_ns: int) -> None:
        if conn.closed or d.closed and how == "fin":
            return
        if d.ooo:
            # Anything still buffered lies beyond the FIN/RST: junk, but shown before the close
            # (without letting the flush emit the closes still pending: that is our caller's job).
            saved, d.pending_close = d.pending_close, None
            self._flush(conn, ep, d, number, ts_ns)
            d.pending_close = saved
        d.closed = True
        self._closing(conn, ep, how, number, ts_ns)
        if conn.dirs[1 - ep].closed:
            self._finish(conn, ts_ns)
        elif how == "rst":
            # The connection is over, but the peer's segments sent before the reset may still
            # follow in the capture (records slightly out of order): keep reassembling the
            # other direction for the reorder window, then finish.
            self._proofs.append((number, ts_ns, conn, -1, 0))

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
        if self._last is conn:
            self._last = None
        for ep in (0, 1):
            d = conn.dirs[ep]
            if d.ooo and not d.closed:
                self._flush(conn, ep, d, d.ooo[-1][2], ts_ns)
            d.ooo.clear()
            self.ooo_total -= d.ooo_bytes
            d.ooo_bytes = 0
            if d.pending_close is not None:
                for off, how, number, close_ts in d.pending_close:
                    if not d.closed:
                        self._gap(conn, ep, d, off, number, close_ts)
                    elif how == "fin":
                        continue
                    d.closed = True
                    self._closing(conn, ep, how, number, close_ts)
                d.pending_close = None
            d.history.clear()
            d.history_head = 0
            d.history_bytes = 0
        conn.sink.on_end(ts_ns)
        a, ap = conn.addrs[0], conn.ports[0]
        b, bp = conn.addrs[1], conn.ports[1]
        for key in ((a, ap, b, bp), (b, bp, a, ap)):
            if self._open.get(key, (None,))[0] is conn:
                del self._open[key]
            self._closed[key] = None
            self._closed.move_to_end(key)
        while len(self._closed) > CLOSED_KEEP:
            self._closed.popitem(last=False)
        if self._on_finished is not None:
            self._on_finished(conn)
        conn.sink = _RELEASED
        conn.native_sink = None

    def finish(self) -> None:
        """End of capture: proven holes are declared, connections still open are flushed
        and reported as "open"."""
        self._resolve_proofs(1 << 62)
        for conn, ep in list(self._open.values()):
            if ep == 0:
                self._finish(conn, conn.end_ns)

    def sweep(self) -> None:
        """Keep at most `max_open` connections: flush the least recently active. Their later
        packets start new connections (so their ids then differ from Wireshark's tcp.stream;
        the capture's warnings say so)."""
        if len(self._open) <= 2 * self.max_open:
            return
        conns = [c for c, ep in self._open.values() if ep == 0]
        conns.sort(key=lambda c: (c.last_packet, c.id))
        for conn in conns[:len(conns) - self.max_open * 9 // 10]:
            conn.flushed = True
            self.flushed += 1
            self._finish(conn, conn.end_ns)
            a, ap, b, bp = conn.addrs[0], conn.ports[0], conn.addrs[1], conn.ports[1]
            self._closed.pop((a, ap, b, bp), None)
            self._closed.pop((b, bp, a, ap), None)

    @property
    def open_connections(self) -> int:
        return len(self._open) // 2
