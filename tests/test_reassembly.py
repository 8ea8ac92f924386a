"""TCP reassembly on real captures, checked against tshark's stream follower, and on
captures deliberately damaged by tests/pcapgen.py: reordered, duplicated and dropped
records, sequence numbers near 2^32, conflicting overlaps, snaplen truncation, and an
out-of-order buffer with a small cap.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import pcapgen as g
from conftest import CAPTURES_DIR, capture_files
from h2scope.capture.link import TCP_ACK, TCP_FIN, TCP_PSH, TCP_RST, TCP_SYN
from h2scope.pipeline import run_capture
from h2scope.tcp.reassembly import CLIENT, SERVER, TcpTracker

CAPTURES = capture_files()
IDS = [str(p.relative_to(CAPTURES_DIR)) for p in CAPTURES]


# ---------------------------------------------------------------------------------------
# a recording sink


@dataclass
class Stream:
    """What one connection's sink received, with the event-order rules checked on the way."""

    conn: object
    data: list = field(default_factory=lambda: [bytearray(), bytearray()])
    gaps: list = field(default_factory=lambda: [[], []])  # per side: (offset, size, packet)
    closes: list = field(default_factory=list)  # (side, how, packet)
    chunks: list = field(default_factory=lambda: [[], []])  # per side: (offset, len, packet)
    ended: int = 0

    def offset(self, side: int) -> int:
        return len(self.data[side]) + sum(s for _, s, _ in self.gaps[side])

    # StreamSink
    def on_data(self, side, data, packet, ts_ns):
        assert not self.ended, "data after on_end"
        assert side not in [s for s, _, _ in self.closes], f"side {side} got data after its close"
        assert data, "empty chunk"
        self.chunks[side].append((self.offset(side), len(data), packet))
        self.data[side] += data

    def on_gap(self, side, size, packet, ts_ns):
        assert not self.ended, "gap after on_end"
        assert side not in [s for s, _, _ in self.closes], f"side {side} got a gap after its close"
        assert size > 0
        self.gaps[side].append((self.offset(side), size, packet))

    def on_close(self, side, how, packet, ts_ns):
        assert not self.ended
        assert how in ("fin", "rst")
        self.closes.append((side, how, packet))

    def on_end(self, ts_ns):
        assert not self.ended, "on_end twice"
        self.ended += 1


@dataclass
class Result:
    streams: dict  # conn id → Stream
    info: object

    def bytes(self) -> dict:
        """(conn id, side) → reassembled bytes."""
        return {(cid, side): bytes(s.data[side]) for cid, s in self.streams.items() for side in (0, 1)}

    def gaps(self) -> dict:
        return {(cid, side): [(o, n) for o, n, _ in s.gaps[side]]
                for cid, s in self.streams.items() for side in (0, 1)}


def reassemble(path, **kw) -> Result:
    streams: dict = {}

    def factory(conn):
        s = streams[conn.id] = Stream(conn)
        return s

    info = run_capture(str(path), factory, **kw)
    for s in streams.values():
        assert s.ended == 1, f"connection {s.conn.id} never ended"
        # the sink's view of gaps equals the tracker's own record
        for side in (0, 1):
            d = s.conn.direction(side)
            assert [(o, n) for o, n, _ in d.gaps] == [(o, n) for o, n, _ in s.gaps[side]]
            assert d.delivered == len(s.data[side])
    return Result(streams, info)


def client_key(conn) -> tuple:
    return g.endpoint_key(conn.client)


# ---------------------------------------------------------------------------------------
# 1. every stored capture against tshark


@pytest.mark.parametrize("path", CAPTURES, ids=IDS)
def test_reassembly_matches_tshark_follow(path: Path, tshark_of) -> None:
    view = tshark_of(path)
    ours = reassemble(path)
    assert sorted(ours.streams) == sorted(view.streams), "TCP connections (tcp.stream ids) differ from tshark's"
    for cid, s in ours.streams.items():
        f = view.streams[cid]
        nodes = [g.endpoint_key(n) for n in f.nodes]
        assert client_key(s.conn) in nodes and g.endpoint_key(s.conn.server) in nodes, (s.conn.client, f.nodes)
        client_node = nodes.index(client_key(s.conn))
        assert bytes(s.data[CLIENT]) == f.data[client_node], f"conn {cid} client→server bytes differ from tshark"
        assert bytes(s.data[SERVER]) == f.data[1 - client_node], f"conn {cid} server→client bytes differ from tshark"
        assert [(o, n) for o, n, _ in s.gaps[CLIENT]] == f.gaps[client_node]
        assert [(o, n) for o, n, _ in s.gaps[SERVER]] == f.gaps[1 - client_node]


@pytest.mark.parametrize("path", CAPTURES, ids=IDS)
def test_roles_and_closes_match_tshark(path: Path, tshark_of) -> None:
    """Client = SYN sender (role_source "syn"), else a marked port guess; the close kind and
    who closed first follow the FIN/RST flags tshark shows."""
    view = tshark_of(path)
    ours = reassemble(path)
    for cid, s in ours.streams.items():
        conn = s.conn
        pkts = [p for p in view.packets if p["stream"] == cid]
        syns = [p for p in pkts if p["flags"] & TCP_SYN and not p["flags"] & TCP_ACK]
        synacks = [p for p in pkts if p["flags"] & TCP_SYN and p["flags"] & TCP_ACK]
        if syns:
            assert conn.role_source == "syn"
            assert client_key(conn) == g.endpoint_key(f"{syns[0]['src']}:{syns[0]['sport']}")
        elif synacks:
            assert conn.role_source == "syn"
            assert g.endpoint_key(conn.server) == g.endpoint_key(f"{synacks[0]['src']}:{synacks[0]['sport']}")
        else:
            assert conn.role_source in ("port-guess", "preface")
        rsts = [p for p in pkts if p["flags"] & TCP_RST]
        fins = [p for p in pkts if p["flags"] & TCP_FIN]
        first = rsts[0] if rsts else fins[0] if fins else None
        assert conn.close == ("rst" if rsts else "fin" if fins else "open")
        if first is not None:
            by = "client" if g.endpoint_key(f"{first['src']}:{first['sport']}") == client_key(conn) else "server"
            assert (conn.close_by, conn.close_packet) == (by, first["number"])
            sides = {("client" if g.endpoint_key(f"{p['src']}:{p['sport']}") == client_key(conn) else "server",
                      "rst" if p["flags"] & TCP_RST else "fin") for p in rsts + fins}
            got = {("client" if side == CLIENT else "server", how) for side, how, _ in s.closes}
            assert got <= sides and got, (got, sides)


# ---------------------------------------------------------------------------------------
# 2. reordering and duplication change nothing; drops are gaps at the right offsets

MIXED = ["grpcio/streaming_ok.pcap", "grpcio/large_message.pcap", "grpcio/graceful_stop.pcap",
         "grpcgo/cancel_stream.pcap", "grpcgo/graceful_stop.pcap", "grpcjs/bidi_ok.pcap",
         "h2peers/cancel_storm.pcap", "h2peers/conn_lost.pcap", "grpcio/hard_stop.pcap"]


@pytest.fixture(scope="module")
def original():
    cache: dict = {}

    def get(name: str) -> tuple[g.Capture, Result]:
        if name not in cache:
            path = CAPTURES_DIR / name
            cache[name] = (g.read_pcap(path), reassemble(path))
        return cache[name]

    return get


def handshake_indices(cap: g.Capture) -> list[int]:
    """Records that open a connection (SYN, SYN/ACK, the handshake's ACK): a capture that
    reorders data before its connection's SYN is another problem."""
    keep = []
    seen_synack: set = set()
    for i, r in enumerate(cap.records):
        v = g.tcp_view(r.data, cap.linktype)
        if v is None:
            continue
        if v.flags & TCP_SYN:
            keep.append(i)
            if v.flags & TCP_ACK:
                seen_synack.add((v.dst, v.dport, v.src, v.sport))
        elif v.key in seen_synack and v.payload_len == 0:
            keep.append(i)
            seen_synack.discard(v.key)
    return keep


@pytest.mark.parametrize("window,seed", [(2, 1), (4, 2), (8, 3), (16, 4)])
@pytest.mark.parametrize("name", MIXED)
def test_reordering_changes_nothing(name: str, window: int, seed: int, original, tmp_path: Path) -> None:
    cap, base = original(name)
    shuffled = g.permute(cap.records, window, seed, keep=handshake_indices(cap))
    assert shuffled != cap.records
    path = g.write_pcap(tmp_path / "shuffled.pcap", cap.linktype, shuffled, nano=True)
    got = reassemble(path)
    assert got.bytes() == base.bytes()
    assert got.gaps() == base.gaps() == {k: [] for k in base.gaps()}
    assert sum(s.conn.direction(d).conflicts for s in got.streams.values() for d in (0, 1)) == 0
    for cid, s in got.streams.items():
        assert s.conn.close == base.streams[cid].conn.close


@pytest.mark.parametrize("name", MIXED)
def test_duplication_changes_nothing(name: str, original, tmp_path: Path) -> None:
    cap, base = original(name)
    every = g.duplicate(cap.records, range(len(cap.records)))
    some = g.duplicate(cap.records, range(1, len(cap.records), 3))
    for label, records in (("every", every), ("some", some)):
        path = g.write_pcap(tmp_path / f"dup_{label}.pcap", cap.linktype, records, nano=True)
        got = reassemble(path)
        assert got.bytes() == base.bytes(), label
        assert got.gaps() == base.gaps(), label
        assert [s.conn.close for s in got.streams.values()] == [s.conn.close for s in base.streams.values()]
        data_dups = sum(1 for i, r in enumerate(cap.records)
                        if (i in range(1, len(cap.records), 3) or label == "every")
                        and (v := g.tcp_view(r.data)) is not None and v.payload_len)
        retrans = sum(s.conn.direction(d).retransmissions for s in got.streams.values() for d in (0, 1))
        base_retrans = sum(s.conn.direction(d).retransmissions for s in base.streams.values() for d in (0, 1))
        assert retrans - base_retrans == data_dups, label
        assert sum(s.conn.direction(d).conflicts for s in got.streams.values() for d in (0, 1)) == 0


def data_records(cap: g.Capture) -> list[int]:
    return [i for i, r in enumerate(cap.records)
            if (v := g.tcp_view(r.data, cap.linktype)) is not None and v.payload_len > 0]


def locate(cap: g.Capture, base: Result, index: int) -> tuple[int, int, int, int]:
    """(conn id, side, stream offset, size) of data record `index` in the original capture."""
    v = g.tcp_view(cap.records[index].data, cap.linktype)
    # Find the record's bytes in its direction's reassembled stream by replaying sequence
    # numbers: offset = seq - (seq of the direction's first byte).
    first_seq: dict = {}
    for r in cap.records:
        w = g.tcp_view(r.data, cap.linktype)
        if w is None:
            continue
        if w.flags & TCP_SYN:
            first_seq[w.key] = (w.seq + 1) & 0xFFFFFFFF
        elif w.payload_len and w.key not in first_seq:
            first_seq[w.key] = w.seq
    off = (v.seq - first_seq[v.key]) & 0xFFFFFFFF
    for cid, s in base.streams.items():
        conn = s.conn
        if {g.endpoint_key(conn.client), g.endpoint_key(conn.server)} != {
                g.endpoint_key(f"{_ip(v.src)}:{v.sport}"), g.endpoint_key(f"{_ip(v.dst)}:{v.dport}")}:
            continue
        side = CLIENT if g.endpoint_key(conn.client) == g.endpoint_key(f"{_ip(v.src)}:{v.sport}") else SERVER
        return cid, side, off, v.payload_len
    raise AssertionError("record not found")


def _ip(b: bytes) -> str:
    import ipaddress

    return str(ipaddress.ip_address(b))


DROP_CASES = ["grpcio/streaming_ok.pcap", "grpcio/large_message.pcap", "grpcgo/cancel_stream.pcap",
              "grpcjs/bidi_ok.pcap", "h2peers/cancel_storm.pcap"]


@pytest.mark.parametrize("name", DROP_CASES)
def test_dropped_record_is_a_gap_at_its_offset(name: str, original, tmp_path: Path) -> None:
    """Drop each data-carrying record in turn (and a shuffled variant of the rest): exactly
    one gap of that segment's size at that segment's offset, every other byte unchanged."""
    cap, base = original(name)
    keep = handshake_indices(cap)
    for n, index in enumerate(data_records(cap)):
        cid, side, off, size = locate(cap, base, index)
        records = g.drop(cap.records, [index])
        if n % 2:  # every other case also reorders what is left
            records = g.permute(records, 4, n, keep=keep)
        path = g.write_pcap(tmp_path / f"drop{index}.pcap", cap.linktype, records)
        got = reassemble(path)
        want = bytearray(base.streams[cid].data[side])
        s = got.streams[cid]
        if off + size == len(want) and not _evidence_after(cap, index):
            # The last bytes of a direction, and nothing after them proves they were sent.
            assert s.gaps[side] == []
            assert bytes(s.data[side]) == bytes(want[:off])
        else:
            assert [(o, n_) for o, n_, _ in s.gaps[side]] == [(off, size)], f"record {index + 1}"
            assert bytes(s.data[side]) == bytes(want[:off] + want[off + size:]), f"record {index + 1}"
            d = s.conn.direction(side)
            assert (d.gap_count, d.gap_bytes) == (1, size)
        # the other direction and the other connections are untouched
        assert bytes(s.data[1 - side]) == bytes(base.streams[cid].data[1 - side])
        assert s.gaps[1 - side] == []
        for other, bs in base.streams.items():
            if other != cid:
                assert got.streams[other].data == bs.data


def _evidence_after(cap: g.Capture, index: int) -> bool:
    """Does anything after record `index` show its bytes were sent (more data or a FIN/RST
    from the same sender)?"""
    v = g.tcp_view(cap.records[index].data, cap.linktype)
    for r in cap.records[index + 1:]:
        w = g.tcp_view(r.data, cap.linktype)
        if w is not None and w.key == v.key and (w.payload_len or w.flags & (TCP_FIN | TCP_RST)):
            return True
    return False


def test_dropped_records_gaps_match_tshark(original, tshark, tmp_path: Path) -> None:
    """tshark's follower marks "[N bytes missing in capture file]" where we declare gaps."""
    cap, base = original("grpcio/large_message.pcap")
    data = data_records(cap)
    dropped = [data[2], data[5], data[len(data) // 2], data[-3]]
    path = g.write_pcap(tmp_path / "dropped.pcap", cap.linktype, g.drop(cap.records, dropped))
    view = g.tshark_view(tshark, path)
    got = reassemble(path)
    total_gaps = 0
    for cid, s in got.streams.items():
        f = view.streams[cid]
        cn = [g.endpoint_key(n) for n in f.nodes].index(client_key(s.conn))
        for side, node in ((CLIENT, cn), (SERVER, 1 - cn)):
            assert bytes(s.data[side]) == f.data[node]
            assert [(o, n) for o, n, _ in s.gaps[side]] == f.gaps[node]
            total_gaps += len(s.gaps[side])
    assert total_gaps == len(dropped)


def test_decoding_continues_after_a_gap(original, tmp_path: Path) -> None:
    """A lost segment in the middle of a gRPC connection: HTTP/2 decoding resynchronises and
    the later calls are still found."""
    from h2scope.analysis import decode

    cap, base = original("grpcio/streaming_ok.pcap")
    full = decode(str(CAPTURES_DIR / "grpcio/streaming_ok.pcap"))
    index = data_records(cap)[len(data_records(cap)) // 2]
    path = g.write_pcap(tmp_path / "lost.pcap", cap.linktype, g.drop(cap.records, [index]))
    lost = decode(str(path))
    (conn,) = lost.connections
    assert sum(conn.gap_bytes) == g.tcp_view(cap.records[index].data).payload_len
    assert lost.frames > full.frames // 2
    last = max(s.stream for s in full.streams)
    assert last in {s.stream for s in lost.streams}, "the last call, after the gap, was not decoded"


# ---------------------------------------------------------------------------------------
# 3. sequence numbers across 2^32


WRAP = ["grpcio/large_message.pcap", "grpcio/streaming_ok.pcap", "grpcio/midstream.pcap",
        "grpcgo/cancel_stream.pcap", "links/ipv6.pcap"]


@pytest.mark.parametrize("name", WRAP)
def test_sequence_wraparound(name: str, original, tshark, tmp_path: Path) -> None:
    cap, base = original(name)
    isn: dict = {}
    for r in cap.records:
        v = g.tcp_view(r.data, cap.linktype)
        if v is not None and v.key not in isn:
            isn[v.key] = v
    targets = {}
    for k, v in isn.items():
        # the client's stream crosses 2^32 after a few dozen bytes; the server's SYN sits on
        # 0xffffffff so its first data byte has sequence number 0
        targets[k] = (1 << 32) - 40 if v.flags & TCP_SYN and not v.flags & TCP_ACK or not v.flags & TCP_SYN \
            else (1 << 32) - 1
    shifted = g.shift_sequence_numbers(cap, targets)
    path = g.write_pcap(tmp_path / "wrapped.pcap", cap.linktype, shifted.records, nano=cap.nano)
    crossed = any((g.tcp_view(r.data).seq < 1000) for r in shifted.records if g.tcp_view(r.data))
    assert crossed, "the rewrite did not move the sequence numbers across 2^32"
    got = reassemble(path)
    assert got.bytes() == base.bytes()
    assert got.gaps() == base.gaps()
    # the rewritten file is a valid capture to tshark too, with the same streams
    view = g.tshark_view(tshark, path)
    for cid, s in got.streams.items():
        f = view.streams[cid]
        assert sorted([bytes(s.data[0]), bytes(s.data[1])]) == sorted(f.data)


# ---------------------------------------------------------------------------------------
# 4. overlaps: first arrival wins, conflicts are counted (on a real capture and synthetic)


def test_conflicting_retransmission_on_real_capture(original, tmp_path: Path) -> None:
    cap, base = original("grpcio/large_message.pcap")
    index = next(i for i in data_records(cap) if g.tcp_view(cap.records[i].data).payload_len > 1000)
    rec = cap.records[index]
    v = g.tcp_view(rec.data)
    payload = rec.data[v.payload_off:v.payload_off + v.payload_len]
    cid, side, off, size = locate(cap, base, index)
    # a partial overlap: bytes 100..600 of the segment, 50 of them changed
    forged_payload = bytes(payload[100:300]) + bytes(b ^ 0xFF for b in payload[300:350]) + bytes(payload[350:600])
    forged = g.make_segment(rec, v, seq_delta=100, payload=forged_payload)

    after = cap.records[:index + 1] + [forged] + cap.records[index + 1:]
    got = reassemble(g.write_pcap(tmp_path / "after.pcap", cap.linktype, after))
    assert got.bytes() == base.bytes(), "the first copy must win"
    d = got.streams[cid].conn.direction(side)
    assert d.conflicts == 1 and d.conflict_packets == [index + 2]

    before = cap.records[:index] + [forged] + cap.records[index:]
    got = reassemble(g.write_pcap(tmp_path / "before.pcap", cap.linktype, before))
    want = bytearray(base.streams[cid].data[side])
    want[off + 100:off + 600] = forged_payload
    assert bytes(got.streams[cid].data[side]) == bytes(want), "the forged copy came first and must win"
    d = got.streams[cid].conn.direction(side)
    assert d.conflicts == 1 and d.conflict_packets == [index + 2]
    assert got.streams[cid].gaps[side] == []

    # an identical partial copy is a retransmission, not a conflict
    same = g.make_segment(rec, v, seq_delta=100, payload=bytes(payload[100:600]))
    got = reassemble(g.write_pcap(tmp_path / "same.pcap", cap.linktype,
                                  cap.records[:index + 1] + [same] + cap.records[index + 1:]))
    assert got.bytes() == base.bytes()
    assert got.streams[cid].conn.direction(side).conflicts == 0


A = b"\x0a\x00\x00\x01"
B = b"\x0a\x00\x00\x02"


class Feeder:
    """Drive TcpTracker directly with hand-made segments of one connection A:40000 → B:443."""

    def __init__(self, **kw) -> None:
        self.streams: dict = {}
        self.tracker = TcpTracker(self._factory, **kw)
        self.n = 0

    def _factory(self, conn):
        s = self.streams[conn.id] = Stream(conn)
        return s

    def seg(self, seq: int, payload: bytes = b"", flags: int = TCP_ACK | TCP_PSH, ack: int = 0,
            reverse: bool = False, missing: int = 0, window: int = 65535):
        self.n += 1
        src, sport, dst, dport = (B, 443, A, 40000) if reverse else (A, 40000, B, 443)
        if not payload and not missing:
            flags &= ~TCP_PSH
        self.tracker.feed(self.n, self.n * 1000, (src, sport, dst, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF,
                                                  flags, window, payload, missing))
        return self.n

    def handshake(self, isn: int = 1000, peer_isn: int = 5000) -> None:
        self.seg(isn, flags=TCP_SYN)
        self.seg(peer_isn, flags=TCP_SYN | TCP_ACK, ack=isn + 1, reverse=True)
        self.seg(isn + 1, flags=TCP_ACK, ack=peer_isn + 1)

    @property
    def only(self) -> Stream:
        (s,) = self.streams.values()
        return s


def test_overlap_with_delivered_data_first_arrival_wins() -> None:
    f = Feeder()
    f.handshake()
    f.seg(1001, b"a" * 100)
    f.seg(1051, b"B" * 50 + b"c" * 50)  # 50 bytes overlap delivered data, and they differ
    f.tracker.finish()
    s = f.only
    assert bytes(s.data[CLIENT]) == b"a" * 100 + b"c" * 50
    d = s.conn.direction(CLIENT)
    assert (d.conflicts, d.conflict_packets, d.retransmissions) == (1, [5], 1)


def test_overlap_inside_out_of_order_buffer_first_arrival_wins() -> None:
    f = Feeder()
    f.handshake()
    f.seg(1101, b"x" * 100)  # out of order: bytes 100..200 first
    f.seg(1051, b"Y" * 50 + b"Z" * 100)  # bytes 50..200: the second half disagrees with what is buffered
    f.seg(1001, b"w" * 60)  # bytes 0..60, overlapping the buffered 50..60 with different bytes
    f.tracker.finish()
    s = f.only
    assert bytes(s.data[CLIENT]) == b"w" * 50 + b"Y" * 50 + b"x" * 100
    assert s.gaps[CLIENT] == []
    d = s.conn.direction(CLIENT)
    assert d.conflicts == 2 and d.conflict_packets == [5, 6]


def test_identical_overlaps_are_not_conflicts() -> None:
    f = Feeder()
    f.handshake()
    data = bytes(range(256)) * 4
    f.seg(1001 + 500, data[500:800])
    f.seg(1001 + 300, data[300:700])
    f.seg(1001, data[:400])
    f.seg(1001 + 700, data[700:])
    f.seg(1001 + 100, data[100:200])  # old
    f.tracker.finish()
    s = f.only
    assert bytes(s.data[CLIENT]) == data
    assert s.conn.direction(CLIENT).conflicts == 0


def test_keepalives_and_zero_window_probes() -> None:
    f = Feeder()
    f.handshake()
    f.seg(1001, b"hello")
    f.seg(1005, b"")  # keep-alive: seq = next - 1, no data
    f.seg(1005, b"o")  # keep-alive with the one old byte
    f.seg(5001, flags=TCP_ACK, ack=1006, reverse=True, window=0)  # receiver's window is closed
    f.seg(1006, b" ")  # zero-window probe: one new byte, not accepted
    f.seg(1006, b" world")  # later: the same byte again plus more
    f.tracker.finish()
    s = f.only
    assert bytes(s.data[CLIENT]) == b"hello world"
    d = s.conn.direction(CLIENT)
    assert d.keepalives == 2 and d.conflicts == 0 and s.gaps[CLIENT] == []
    assert s.conn.direction(SERVER).zero_window == 1


def test_wraparound_synthetic() -> None:
    f = Feeder()
    f.handshake(isn=0xFFFFFFF0)
    chunks = [bytes([i]) * 7 for i in range(10)]
    seq = 0xFFFFFFF1
    order = [1, 0, 3, 2, 4, 6, 5, 9, 8, 7]
    for i in order:
        f.seg(seq + 7 * i, chunks[i])
    f.tracker.finish()
    assert bytes(f.only.data[CLIENT]) == b"".join(chunks)
    assert f.only.gaps[CLIENT] == []


def test_fin_ahead_of_its_data_waits_for_it() -> None:
    """Records out of order at the end of a connection: the FIN (and the peer's FIN) come
    before the last data segment. Nothing is lost and no data follows a close."""
    f = Feeder()
    f.handshake()
    f.seg(1001, b"a" * 10)
    f.seg(1021, flags=TCP_FIN | TCP_ACK, ack=5001)  # FIN after byte 20: bytes 10..20 not seen yet
    f.seg(5001, flags=TCP_FIN | TCP_ACK, ack=1022, reverse=True)  # peer ACKs them and closes
    f.seg(1011, b"b" * 10)  # the late data
    s = f.only
    assert s.ended == 1, "both FINs done: the connection is finished and released"
    assert bytes(s.data[CLIENT]) == b"a" * 10 + b"b" * 10
    assert s.gaps[CLIENT] == []
    assert [(side, how) for side, how, _ in s.closes] == [(SERVER, "fin"), (CLIENT, "fin")]
    assert s.conn.close == "fin" and f.tracker.open_connections == 0


def test_lost_last_segment_before_fin_is_a_gap() -> None:
    f = Feeder()
    f.handshake()
    f.seg(1001, b"a" * 10)
    f.seg(1021, flags=TCP_FIN | TCP_ACK, ack=5001)  # bytes 10..20 never captured
    f.seg(5001, flags=TCP_ACK, ack=1022, reverse=True)  # ... but the peer acknowledged them
    for _ in range(70):  # more traffic of other connections
        f.n += 1
        f.tracker.feed(f.n, f.n * 1000, (A, 1, B, 2, 0, 0, TCP_ACK, 100, b"", 0))
    s = f.streams[0]
    assert s.gaps[CLIENT] == [(10, 10, 6)]  # declared on the ACK's evidence
    assert s.closes == [(CLIENT, "fin", 5)]  # the close keeps the FIN's packet number
    assert s.conn.close_packet == 5


def test_out_of_order_buffer_respects_its_cap() -> None:
    """Segments arriving in reverse order with a 1000-byte cap: the buffer never holds more,
    gaps are declared, every byte delivered is the right byte at the right offset."""
    cap = 1000
    f = Feeder(ooo_cap=cap)
    f.handshake()
    data = bytes((i * 7 + 3) % 251 for i in range(100 * 200))
    d = None
    for i in reversed(range(1, 200)):  # segment 0 is lost; the rest come last-first
        f.seg(1001 + 100 * i, data[100 * i:100 * i + 100])
        d = f.only.conn.direction(CLIENT)
        assert d.ooo_bytes <= cap
        assert sum(len(e[1]) for e in d.ooo) == d.ooo_bytes
    assert d.gap_count > 0
    f.tracker.finish()
    s = f.only
    pieces = sorted([(o, n, "data") for o, n, _ in s.chunks[CLIENT]] + [(o, n, "gap") for o, n, _ in s.gaps[CLIENT]])
    pos = 0
    out = bytes(s.data[CLIENT])
    k = 0
    for o, n, kind in pieces:
        assert o == pos, "chunks and gaps must tile the stream"
        if kind == "data":
            assert out[k:k + n] == data[o:o + n]
            k += n
        pos += n
    assert pos == len(data)


def test_a_hole_never_acknowledged_is_resolved_by_the_cap() -> None:
    """A lost segment and no ACKs at all (one-way capture): reassembly never stalls beyond
    the cap and never buffers more than it."""
    f = Feeder(ooo_cap=4096)
    f.handshake()
    data = bytes(i % 256 for i in range(100_000))
    for i in range(1, 100):  # the first 1000 bytes are lost
        f.seg(1001 + 1000 * i, data[1000 * i:1000 * (i + 1)])
        assert f.only.conn.direction(CLIENT).ooo_bytes <= 4096
    s = f.only
    assert s.gaps[CLIENT][0][:2] == (0, 1000)
    assert len(s.data[CLIENT]) >= 90_000, "data after the hole must flow before the end of the capture"


def test_finished_connections_are_released() -> None:
    f = Feeder()
    for c in range(300):
        port = 10000 + c
        f.n += 1
        feed = f.tracker.feed
        n = f.n * 10
        feed(n, n, (A, port, B, 443, 100, 0, TCP_SYN, 65535, b"", 0))
        feed(n + 1, n, (B, 443, A, port, 900, 101, TCP_SYN | TCP_ACK, 65535, b"", 0))
        feed(n + 2, n, (A, port, B, 443, 101, 901, TCP_ACK | TCP_PSH, 65535, b"ping", 0))
        feed(n + 3, n, (B, 443, A, port, 901, 105, TCP_ACK | TCP_PSH, 65535, b"pong", 0))
        feed(n + 4, n, (A, port, B, 443, 105, 905, TCP_ACK | TCP_FIN, 65535, b"", 0))
        feed(n + 5, n, (B, 443, A, port, 905, 106, TCP_ACK | TCP_FIN, 65535, b"", 0))
        assert f.tracker.open_connections == 0
        assert f.streams[c].ended == 1
    assert all(bytes(s.data[0]) == b"ping" and bytes(s.data[1]) == b"pong" for s in f.streams.values())


# ---------------------------------------------------------------------------------------
# 5. snaplen truncation: gaps, not garbage


@pytest.mark.parametrize("snaplen", [70, 80, 200])
def test_snaplen_truncation_is_gaps_not_garbage(snaplen: int, original, tmp_path: Path) -> None:
    cap, base = original("grpcio/large_message.pcap")
    editcap = _which("editcap")
    path = tmp_path / f"s{snaplen}.pcap"
    subprocess.run([editcap, "-s", str(snaplen), str(CAPTURES_DIR / "grpcio/large_message.pcap"), str(path)],
                   check=True, capture_output=True)
    ours = g.write_pcap(tmp_path / f"w{snaplen}.pcap", cap.linktype, g.truncate(cap.records, snaplen),
                        snaplen=snaplen)
    for p in (path, ours):
        got = reassemble(p)
        truncated = 0
        for cid, s in got.streams.items():
            for side in (CLIENT, SERVER):
                want = bytes(base.streams[cid].data[side])
                assert s.offset(side) == len(want), "delivered + gaps must cover the whole stream"
                out = bytes(s.data[side])
                k = 0
                for o, n, _ in s.chunks[side]:
                    assert out[k:k + n] == want[o:o + n], "delivered bytes must be the real bytes"
                    k += n
                d = s.conn.direction(side)
                truncated += d.truncated
                assert d.gap_bytes == len(want) - len(out)
        assert truncated > 0
        assert sum(len(s.gaps[d]) for s in got.streams.values() for d in (0, 1)) > 0


def _which(tool: str) -> str:
    import shutil

    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is required (apt-get install -y tshark)", pytrace=False)
    return path


# ---------------------------------------------------------------------------------------
# The tracker checks the last packet's connection before its 4-tuple table: packets must
# still go to exactly the connection they belong to.


def test_interleaved_connections_differing_in_one_field_stay_apart() -> None:
    """Connections that share three of the four 4-tuple fields (another client host, another
    client port, another server port), their packets interleaved one by one, both ways."""
    C = b"\x0a\x00\x00\x03"
    flows = [(A, 40000, B, 443), (C, 40000, B, 443), (A, 40001, B, 443), (A, 40000, B, 8443)]
    streams: dict = {}
    tracker = TcpTracker(lambda conn: streams.setdefault(conn.id, Stream(conn)))
    n = 0

    def send(i: int, reverse: bool, seq: int, payload: bytes) -> None:
        nonlocal n
        n += 1
        src, sport, dst, dport = flows[i]
        if reverse:
            src, sport, dst, dport = dst, dport, src, sport
        tracker.feed(n, n * 1000, (src, sport, dst, dport, seq, 0, TCP_ACK | TCP_PSH, 65535, payload, 0))

    for k in range(20):
        for i in range(len(flows)):
            send(i, False, 1000 + k, bytes([65 + i]))
            send(i, True, 5000 + k, bytes([97 + i]))
    tracker.finish()
    assert len(streams) == 4
    for s in streams.values():
        i = flows.index((s.conn.addrs[0], s.conn.ports[0], s.conn.addrs[1], s.conn.ports[1]))
        assert bytes(s.data[CLIENT] + s.data[SERVER]) in (bytes([65 + i]) * 20 + bytes([97 + i]) * 20,
                                                           bytes([97 + i]) * 20 + bytes([65 + i]) * 20)
        assert s.conn.packets == 40


def test_packets_after_a_connection_ended_are_late_not_its_own() -> None:
    """A connection closed both ways is released at once; its trailing packets, even right
    after the one that ended it, are counted as late and change nothing of it."""
    f = Feeder()
    f.handshake()
    f.seg(1001, b"x" * 10)
    f.seg(1011, flags=TCP_FIN | TCP_ACK, ack=5001)
    f.seg(5001, flags=TCP_FIN | TCP_ACK, ack=1012, reverse=True)  # both ways closed: released
    f.seg(1012, flags=TCP_ACK, ack=5002)  # the client's last ACK
    f.seg(1012, b"y" * 10)
    f.tracker.finish()
    s = f.only
    assert bytes(s.data[CLIENT]) == b"x" * 10
    assert s.conn.packets == 6 and f.tracker.late_packets == 2


def test_a_connection_to_itself_is_read_the_same_whatever_comes_between_its_packets() -> None:
    """Both ends one address and port (a loopback self-connect, or a hostile capture): its
    packets go to the same sides whether or not another connection's packets come between
    them, so one process and two workers agree."""
    def run(interleave: bool) -> list:
        log: list = []

        class Sink:
            def __init__(self, conn) -> None:
                self.cid = conn.id

            def on_data(self, side, data, packet, ts_ns):
                log.append((self.cid, side, bytes(data)))

            def on_gap(self, side, size, packet, ts_ns):
                log.append((self.cid, "gap", side, size))

            def on_close(self, side, how, packet, ts_ns):
                pass

            def on_end(self, ts_ns):
                pass

        tracker = TcpTracker(Sink)
        n = 0
        for seq, ack, payload in ((1000, 5000, b"hello"), (5000, 1005, b"world"), (1005, 5005, b"again")):
            for seg in ([(B, 1234, B, 80, seq, 1, TCP_ACK | TCP_PSH, 65535, b"x", 0)] if interleave else []) + \
                    [(A, 40000, A, 40000, seq, ack, TCP_ACK | TCP_PSH, 65535, payload, 0)]:
                n += 1
                tracker.feed(n, n * 1000, seg)
        tracker.finish()
        return [e for e in log if e[0] == (1 if interleave else 0)]

    alone, between = run(False), run(True)
    assert [e[1:] for e in alone] == [e[1:] for e in between]
    assert [e[2] for e in alone if e[1] != "gap"] == [b"hello", b"world"]
