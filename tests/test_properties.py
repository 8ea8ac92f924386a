"""Property tests for the byte-level HTTP/2 and gRPC layers (hypothesis)."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from hyperframe.frame import Frame

from h2scope.grpc.messages import MessageSplitter
from h2scope.grpc.timeout import parse_timeout, parse_timeout_ns
from h2scope.http2.splitter import FrameSplitter

ROOT = Path(__file__).resolve().parent.parent
UNITS = {"H": 3600e9, "M": 60e9, "S": 1e9, "m": 1e6, "u": 1e3, "n": 1}


@given(st.integers(0, 99_999_999), st.sampled_from(sorted(UNITS)))
def test_valid_timeouts_parse_exactly(value, unit):
    text = f"{value}{unit}"
    assert parse_timeout_ns(text) == value * int(UNITS[unit])
    assert abs(parse_timeout(text) - value * UNITS[unit] / 1e9) <= 1e-9 * max(1, value * UNITS[unit] / 1e9)


@given(st.text(max_size=12))
def test_anything_outside_the_grammar_is_rejected(text):
    valid = re.fullmatch(r"[0-9]{1,8}[HMSmun]", text) is not None
    assert (parse_timeout_ns(text) is not None) == valid


def test_grammar_edges():
    for bad in ("", "S", "100", "1.5S", "123456789m", "10x", " 1S", "1S ", "-1S", "1s", "１S"):
        assert parse_timeout_ns(bad) is None, bad
    assert parse_timeout_ns("99999999H") == 99999999 * 3600 * 10**9
    assert parse_timeout_ns("0n") == 0


def _real_stream() -> bytes:
    """The client→server bytes of a real grpcio capture, after the preface: a frame stream."""
    from h2scope.analysis import decode

    chunks = []
    decode(str(ROOT / "captures/grpcio/streaming_ok.pcap"),
           on_frame=lambda r: None)  # warm import paths
    from h2scope.capture.reader import CaptureReader
    from h2scope.capture.link import LinkDecoder

    dec = LinkDecoder()
    with CaptureReader(str(ROOT / "captures/grpcio/streaming_ok.pcap")) as reader:
        for _n, _ts, lt, data, _o in reader:
            seg = dec.decode(lt, data)
            if seg and seg[3] == 50051 and seg[8]:
                chunks.append(seg[8])
    raw = b"".join(chunks)
    return raw[24:]  # strip the preface


STREAM = _real_stream()
REFERENCE = [(f[2], f[4], f[1]) for f in FrameSplitter().feed(STREAM, 1)]


def _payload(f) -> bytes:
    """A frame's payload: DATA payloads stay in the bytes they arrived in, at f[8]."""
    return f[5][f[8]:f[8] + f[1]]


def _frames_of(wire: bytes) -> list:
    """(type, flags, stream, payload) of each frame in `wire`, read the slow obvious way."""
    out, pos = [], 0
    while pos + 9 <= len(wire):
        n = int.from_bytes(wire[pos:pos + 3], "big")
        out.append((wire[pos + 3], wire[pos + 4], int.from_bytes(wire[pos + 5:pos + 9], "big") & 0x7FFFFFFF,
                    wire[pos + 9:pos + 9 + n]))
        pos += 9 + n
    return out


frame_st = st.tuples(st.sampled_from([0, 0, 0, 1, 4, 8]), st.integers(0, 255), st.integers(1, 9),
                     st.integers(0, 40_000).map(lambda n: bytes(range(256)) * (n // 256) + bytes(n % 256)))


@settings(max_examples=150, deadline=None)
@given(st.lists(frame_st, min_size=1, max_size=12), st.lists(st.integers(1, 70_000), min_size=1, max_size=20))
def test_payloads_come_out_whole_whatever_the_segmentation(frames, cuts):
    """Frames of up to 40 KB cut into chunks of any size (a frame in many chunks, many frames
    in one, headers split): every payload comes out whole, in order, each frame attributed
    to the chunks that carried its first and last bytes."""
    wire = b"".join(len(p).to_bytes(3, "big") + bytes([t, fl]) + sid.to_bytes(4, "big") + p for t, fl, sid, p in frames)
    sp = FrameSplitter()
    got, pos, i, ends = [], 0, 0, []
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        i += 1
        for f in sp.feed(wire[pos:pos + n], i):
            got.append((f[2], f[3], f[4], _payload(f)))
            ends.append((f[6], i))
        pos += n
    assert got == _frames_of(wire) and sp.pending == 0
    # The chunk numbers of each frame's first and last byte, from the cut points.
    bounds, pos, i = [], 0, 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        i += 1
        bounds.append((pos, pos + n, i))
        pos += n
    start = 0
    for (first, last), (_t, _fl, _sid, p) in zip(ends, got):
        end = start + 9 + len(p)
        assert first == next(k for a, b, k in bounds if a <= start < b)
        assert last == next(k for a, b, k in bounds if a < end <= b)
        start = end


@settings(max_examples=150, deadline=None)
@given(st.binary(min_size=1, max_size=3000), st.integers(0, 2999), st.integers(1, 500))
def test_a_hole_inside_a_data_frame_keeps_the_framing(payload, at, size):
    """A gap inside a DATA frame's payload: the frame still comes out (its length known, the
    hole zero-filled, marked damaged) and the next frame is read normally."""
    at = at % len(payload)
    size = min(size, len(payload) - at)
    frame = len(payload).to_bytes(3, "big") + b"\x00\x00\x00\x00\x00\x01" + payload
    after = b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + b"\x00\x00\x10\x00"  # a WINDOW_UPDATE
    sp = FrameSplitter()
    cut = 9 + at
    assert sp.feed(frame[:cut], 1) == []
    sp.gap(size)
    out = sp.feed(frame[cut + size:] + after, 2)
    assert [(f[2], f[7], _payload(f)) for f in out] == [
        (0, True, payload[:at] + bytes(size) + payload[at + size:]), (8, False, b"\x00\x00\x10\x00")]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(1, 400), min_size=1, max_size=80))
def test_frame_splitting_is_independent_of_segmentation(cuts):
    sp = FrameSplitter()
    out = []
    pos = 0
    i = 0
    while pos < len(STREAM):
        n = cuts[i % len(cuts)]
        i += 1
        out += [(f[2], f[4], f[1]) for f in sp.feed(STREAM[pos:pos + n], i)]
        pos += n
    assert out == REFERENCE and sp.pending == 0
    assert [_payload(f) for f in FrameSplitter().feed(STREAM, 1)] == [f[3] for f in _frames_of(STREAM)]


def test_frames_belong_to_the_packet_that_carried_their_last_byte():
    sp = FrameSplitter()
    first_len = 9 + int.from_bytes(STREAM[:3], "big")
    assert sp.feed(STREAM[:first_len - 1], 7) == []
    [frame, *_rest] = sp.feed(STREAM[first_len - 1:first_len + 5], 8)
    assert frame[6] == 7  # first packet
    assert len(sp.feed(STREAM[first_len + 5:], 9)) == len(REFERENCE) - 1


def test_splitter_agrees_with_hyperframe_on_every_frame():
    for header, length, ftype, flags, sid, payload, _first, _damaged, _start in FrameSplitter().feed(STREAM, 1):
        frame, hf_length = Frame.parse_frame_header(memoryview(header))
        assert (hf_length, frame.stream_id, frame.type) == (length, sid, ftype)


def test_splitter_resynchronises_after_any_gap():
    """A gap at every position and of several sizes: whatever the splitter emits afterwards
    are real frames of the stream (never frames invented from payload bytes), and once it
    has found the framing again it delivers the rest of the stream."""
    truth = []
    pos = 0
    for t, sid, length in REFERENCE:
        truth.append((pos, (t, sid, length)))
        pos += 9 + length
    real = set(REFERENCE)
    for at in range(1, len(STREAM) - 1, 5):
        for size in (1, 9, 40, 300, 1500):
            sp = FrameSplitter()
            sp.feed(STREAM[:at], 1)
            sp.gap(size)
            out = [(f[2], f[4], f[1]) for f in sp.feed(STREAM[at + size:], 2)]
            assert all(f in real for f in out), (at, size, [f for f in out if f not in real][:3])
            tail = [f for p, f in truth if p >= at + size]
            if out and tail:
                assert out[-len(tail):] == tail or out == tail[-len(out):], (at, size)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), min_size=1, max_size=12), st.lists(st.integers(1, 64), min_size=1))
def test_grpc_messages_split_across_arbitrary_data_frames(messages, cuts):
    wire = b"".join(b"\x00" + len(m).to_bytes(4, "big") + m for m in messages)
    ms = MessageSplitter()
    pos = 0
    i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        ms.feed(wire[pos:pos + n])
        pos += n
        i += 1
    ms.finish()
    assert ms.count == len(messages) and ms.total == sum(map(len, messages)) and not ms.partial
    assert ms.sizes == [len(m) for m in messages]
    # The same DATA payloads read in place, from inside larger buffers (as the splitter hands
    # them over).
    inplace = MessageSplitter()
    pos = 0
    i = 0
    while pos < len(wire):
        n = cuts[i % len(cuts)]
        inplace.feed(b"\xff" * i + wire[pos:pos + n] + b"\x01" * 7, i, i + len(wire[pos:pos + n]))
        pos += n
        i += 1
    inplace.finish()
    assert (inplace.count, inplace.total, inplace.sizes, inplace.partial, inplace.lost) == \
        (ms.count, ms.total, ms.sizes, ms.partial, ms.lost)
