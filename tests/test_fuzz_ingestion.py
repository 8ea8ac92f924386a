"""Property tests: mutated real captures through the whole pipeline.

Whatever the bytes — flipped, cut, spliced, records reordered, sequence numbers and flags
scrambled, payloads garbled — `h2scope.analysis.analyze` either succeeds or raises
CaptureError (the documented "cannot read this" error), and it finishes quickly. The TCP
layer is also checked for its own invariants on every example: chunks and gaps tile each
direction's stream, nothing is delivered after a close, the out-of-order buffer stays
within its cap.

Examples are derandomized (the same ones every run, so CI is stable); to hunt for new
crashes locally run with a larger max_examples and derandomize=False.
"""

from __future__ import annotations

import atexit
import gzip
import shutil
import signal
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pcapgen as g
from conftest import CAPTURES_DIR
from h2scope.analysis import Options, analyze
from h2scope.errors import CaptureError
from h2scope.capture.link import LinkDecoder
from h2scope.capture.reader import CaptureReader
from h2scope.tcp.reassembly import TcpTracker
from test_reassembly import Stream

SEEDS = [
    "grpcio/unary_ok.pcap", "grpcio/midstream.pcap", "grpcio/large_message.pcap",
    "grpcgo/cancel_stream.pcap", "grpcjs/bidi_ok.pcap", "h2peers/continuation.pcap",
    "h2peers/cancel_storm.pcap", "upgrade/h2c_upgrade.pcap", "links/sll2_any.pcap",
    "links/ipv6.pcap", "links/nano.pcap",
]
RAW_SEEDS = SEEDS + ["links/dumpcap.pcapng", "links/plain_name.cap", "links/unary_gz.pcap.gz"]

_BYTES = {name: (CAPTURES_DIR / name).read_bytes() for name in RAW_SEEDS}
_CAPS = {name: g.read_pcap(CAPTURES_DIR / name) for name in SEEDS}
_TMP = Path(tempfile.mkdtemp(prefix="h2scope-fuzz-"))
atexit.register(shutil.rmtree, _TMP, True)

INTERESTING = [0x00, 0x01, 0x04, 0x05, 0x08, 0x09, 0x0A, 0x3F, 0x40, 0x7F, 0x80, 0x81, 0xBE, 0xFF]

SETTINGS = settings(max_examples=100, deadline=5000, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
HANG_SECONDS = 20


@contextmanager
def no_hang(seconds: int = HANG_SECONDS):
    """Fail (instead of hanging the suite) if one example runs away."""

    def alarm(_sig, _frame):
        raise TimeoutError(f"an example ran for more than {seconds} s: a hang")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def check_pipeline(data: bytes, name: str = "fuzz.pcap") -> None:
    """The full pipeline on `data`: only CaptureError may escape."""
    path = _TMP / name
    path.write_bytes(data)
    with no_hang():
        try:
            analyze(str(path), Options(ooo_cap=64 * 1024))
        except CaptureError as e:
            assert str(e).strip() and "\n" not in str(e)


def check_tcp_invariants(data: bytes, cap_bytes: int = 8192) -> None:
    """The capture and TCP layers alone, with a small out-of-order cap: after every segment
    no direction buffers more than the cap; at the end chunks and gaps tile each stream,
    nothing came after a close, every connection ended once."""
    path = _TMP / "tcp.pcap"
    path.write_bytes(data)
    streams: list[Stream] = []

    def factory(conn):
        s = Stream(conn)
        streams.append(s)
        return s

    tracker = TcpTracker(factory, ooo_cap=cap_bytes)
    decoder = LinkDecoder()
    with no_hang():
        try:
            with CaptureReader(str(path)) as reader:
                for number, ts_ns, linktype, frame, _orig in reader:
                    seg = decoder.decode(linktype, frame)
                    if seg is None:
                        continue
                    tracker.feed(number, ts_ns, seg)
                    for conn, _ep in tracker._open.values():
                        for d in conn.dirs:
                            assert d.ooo_bytes <= cap_bytes
                            assert sum(len(e[1]) for e in d.ooo) == d.ooo_bytes
        except CaptureError:
            pass
        tracker.finish()
    assert tracker.open_connections == 0
    for s in streams:
        assert s.ended == 1
        for side in (0, 1):
            pos = 0
            for o, n, _p in sorted([(o, n, "d") for o, n, _ in s.chunks[side]]
                                   + [(o, n, "g") for o, n, _ in s.gaps[side]]):
                assert o == pos and n > 0, "chunks and gaps must tile the stream"
                pos += n
            d = s.conn.direction(side)
            assert d.delivered == len(s.data[side])
            assert d.gap_bytes == sum(n for _, n, _ in s.gaps[side])


# ---------------------------------------------------------------------------------------
# byte-level mutations of whole files


@st.composite
def mutated_file(draw) -> bytes:
    name = draw(st.sampled_from(RAW_SEEDS))
    data = bytearray(_BYTES[name])
    if draw(st.booleans()) and data[:2] == b"\x1f\x8b":
        data = bytearray(gzip.decompress(bytes(data)))  # mutate the capture inside, sometimes re-zip
        rezip = draw(st.booleans())
    else:
        rezip = False
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "flip", "byte", "truncate", "splice", "delete", "dup", "zero"]))
        n = len(data)
        if n == 0:
            break
        pos = draw(st.integers(0, n - 1))
        if op == "flip":
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "byte":
            data[pos] = draw(st.sampled_from([0x00, 0xFF, 0x7F, 0x80, 0x01]))
        elif op == "truncate":
            del data[pos:]
        elif op == "splice":
            other = _BYTES[draw(st.sampled_from(RAW_SEEDS))]
            a = draw(st.integers(0, len(other) - 1))
            b = a + draw(st.integers(1, 400))
            data[pos:pos] = other[a:b]
        elif op == "delete":
            del data[pos:pos + draw(st.integers(1, 64))]
        elif op == "dup":
            data[pos:pos] = data[pos:pos + draw(st.integers(1, 200))]
        elif op == "zero":
            data[pos:pos + 4] = b"\0\0\0\0"
    out = bytes(data)
    return gzip.compress(out, compresslevel=1) if rezip else out


@SETTINGS
@given(mutated_file())
def test_mutated_files_never_crash(data: bytes) -> None:
    check_pipeline(data)


@SETTINGS
@given(st.binary(max_size=300), st.sampled_from([b"", b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1",
                                                  b"\x0a\x0d\x0d\x0a", b"\x1f\x8b\x08\x00"]))
def test_random_bytes_never_crash(data: bytes, prefix: bytes) -> None:
    check_pipeline(prefix + data)


# ---------------------------------------------------------------------------------------
# structured mutations: valid files whose packets are scrambled, to reach TCP and HTTP/2


@st.composite
def scrambled_capture(draw) -> bytes:
    name = draw(st.sampled_from(SEEDS))
    cap = _CAPS[name]
    records = list(cap.records)
    for _ in range(draw(st.integers(1, 8))):
        op = draw(st.sampled_from(["payload", "payload", "graft", "graft", "seq", "ack", "flags", "swap",
                                   "drop", "dup", "cut", "permute"]))
        i = draw(st.integers(0, len(records) - 1))
        r = records[i]
        v = g.tcp_view(r.data, cap.linktype)
        if op in ("payload", "graft", "seq", "ack", "flags") and v is None:
            continue
        frame = bytearray(r.data)
        have = min(v.payload_len, len(frame) - v.payload_off) if v is not None else 0
        if op == "payload" and have > 0:
            for _ in range(draw(st.integers(1, 8))):
                k = v.payload_off + draw(st.integers(0, have - 1))
                frame[k] = draw(st.one_of(st.integers(0, 255), st.sampled_from(INTERESTING)))
        elif op == "graft":
            # another packet's TCP payload (HTTP/2 frames out of place) in this segment,
            # sequence numbers kept: frames repeated, moved, or cut in odd places
            donor = records[draw(st.integers(0, len(records) - 1))]
            w = g.tcp_view(donor.data, cap.linktype)
            if w is None or not w.payload_len or len(r.data) < v.payload_off:
                continue
            body = donor.data[w.payload_off:w.payload_off + w.payload_len]
            a = draw(st.integers(0, len(body)))
            b = draw(st.integers(a, len(body)))
            records[i] = g.make_segment(r, v, seq_delta=0, payload=bytes(body[a:b]), linktype=cap.linktype)
            continue
        elif op == "seq":
            delta = draw(st.sampled_from([1, -1, 9, -9, 1 << 31, (1 << 31) - 1, 65536, 1 << 30]))
            frame[v.l4 + 4:v.l4 + 8] = ((v.seq + delta) & 0xFFFFFFFF).to_bytes(4, "big")
        elif op == "ack":
            delta = draw(st.sampled_from([1, -1, 100, 1 << 31, 10_000_000]))
            frame[v.l4 + 8:v.l4 + 12] = ((v.ack + delta) & 0xFFFFFFFF).to_bytes(4, "big")
        elif op == "flags":
            frame[v.l4 + 13] = draw(st.sampled_from([0x02, 0x12, 0x11, 0x04, 0x14, 0x01, 0x00, 0x3F]))
        elif op == "swap" and len(records) > 1:
            j = draw(st.integers(0, len(records) - 1))
            records[i], records[j] = records[j], records[i]
            continue
        elif op == "drop" and len(records) > 1:
            del records[i]
            continue
        elif op == "dup":
            records.insert(i, r)
            continue
        elif op == "cut":
            frame = frame[:draw(st.integers(0, len(frame)))]
        elif op == "permute":
            records = g.permute(records, draw(st.integers(2, 12)), draw(st.integers(0, 1000)))
            continue
        records[i] = replace(r, data=bytes(frame))
    return g.pcap_bytes(cap.linktype, records, nano=True)


@SETTINGS
@given(scrambled_capture())
def test_scrambled_captures_never_crash_and_tcp_invariants_hold(data: bytes) -> None:
    check_tcp_invariants(data)
    check_pipeline(data)
