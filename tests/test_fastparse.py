"""The hand-written frame parser equals hyperframe: on every frame of every stored capture
and on fuzzed frames, the same fields, and the same frames rejected."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame

from h2scope.analysis import decode
from h2scope.http2 import fastparse
from h2scope.http2.constants import DATA

ROOT = Path(__file__).resolve().parent.parent
CAPTURES = sorted(p for p in (ROOT / "captures").rglob("*")
                  if p.suffix in (".pcap", ".pcapng", ".gz", ".cap") and "node_modules" not in p.parts)
PARSE = fastparse.parse  # the real parser: tests below wrap the module attribute to record its inputs
FIELDS = ("data", "error_code", "settings", "window_increment", "opaque_data", "last_stream_id",
          "additional_data", "promised_stream_id", "depends_on", "stream_weight", "exclusive", "pad_length")


def _hyperframe(ftype: int, flags: int, sid: int, payload: bytes):
    header = struct.pack("!BHBBI", len(payload) >> 16, len(payload) & 0xFFFF, ftype, flags, sid)
    try:
        frame, _ = Frame.parse_frame_header(memoryview(header))
        frame.parse_body(memoryview(payload))
    except (HyperframeError, ValueError):
        return None
    return frame


def _same(ftype: int, flags: int, sid: int, payload: bytes) -> None:
    theirs = _hyperframe(ftype, flags, sid, payload)
    try:
        ours = PARSE(ftype, flags, sid, payload)
    except fastparse.FrameError:
        ours = None
    assert (ours is None) == (theirs is None), (ftype, flags, sid, payload[:40])
    if ours is None:
        return
    for field in FIELDS:
        if hasattr(theirs, field):
            a, b = getattr(ours, field, None), getattr(theirs, field)
            if field in ("data", "opaque_data", "additional_data"):
                a, b = bytes(a), bytes(b)
            if field == "settings":
                b = dict(b)
            assert a == b, (field, ftype, a, b)


@pytest.mark.interpreted
@pytest.mark.parametrize("path", CAPTURES, ids=[p.name for p in CAPTURES])
def test_fastparse_equals_hyperframe_on_every_captured_frame(path, monkeypatch):
    seen = []
    real = fastparse.parse

    def recording(ftype, flags, sid, payload):
        seen.append((ftype, flags, sid, bytes(payload)))
        return real(ftype, flags, sid, payload)

    monkeypatch.setattr(fastparse, "parse", recording)
    frames = decode(str(path)).frames
    assert seen or not frames  # the spy saw the frames
    for frame in seen:
        _same(*frame)


@pytest.mark.interpreted
def test_the_violations_capture_exercises_rejections(monkeypatch):
    rejected = []
    real = fastparse.parse

    def recording(ftype, flags, sid, payload):
        try:
            return real(ftype, flags, sid, payload)
        except fastparse.FrameError:
            rejected.append(ftype)
            raise

    monkeypatch.setattr(fastparse, "parse", recording)
    decode(str(ROOT / "captures/h2peers/protocol_violations.pcap"))
    assert sorted(rejected) == [6, 8]  # the 7-byte PING and the zero WINDOW_UPDATE


@settings(max_examples=600, deadline=None)
@given(st.integers(0, 9), st.integers(0, 255), st.sampled_from([0, 1, 2, 3, 0x7FFFFFFF]),
       st.binary(max_size=48))
def test_fastparse_equals_hyperframe_on_fuzzed_frames(ftype, flags, sid, payload):
    _same(ftype, flags, sid, payload)


@pytest.mark.parametrize("ftype, flags, payload", [
    # PADDED|PRIORITY HEADERS whose padding reaches into the priority fields' room: the
    # data slice ends before it starts. Compiled with mypyc, that slice raised SystemError.
    (1, 0x28, bytes([5]) + bytes(6)),
    (1, 0x28, bytes([2]) + b"\x00\x00\x00\x03\x10\x00"),
    # PADDED PUSH_PROMISE whose padding covers the promised stream id.
    (5, 0x08, bytes([4]) + b"\x00\x00\x00\x02" + bytes(1)),
])
def test_padding_past_the_fixed_fields_parses_as_hyperframe_does(ftype, flags, payload):
    _same(ftype, flags, 1, payload)
    theirs = _hyperframe(ftype, flags, 1, payload)
    assert theirs is not None and bytes(theirs.data) == b""  # accepted, with no header block
    assert fastparse.from_hyperframe(theirs).data == b""


@settings(max_examples=600, deadline=None)
@given(st.integers(0, 255), st.sampled_from([0, 1, 7]), st.binary(max_size=300), st.binary(max_size=20),
       st.binary(max_size=20))
def test_a_data_payload_read_in_place_is_where_parse_finds_it(flags, sid, payload, before, after):
    """The splitter leaves DATA payloads inside the bytes they arrived in: data_range finds
    the data where parse() would, and refuses what it refuses."""
    buf = before + payload + after
    try:
        want = fastparse.parse(DATA, flags, sid, payload).data
    except fastparse.FrameError:
        with pytest.raises(fastparse.FrameError):
            fastparse.data_range(flags, sid, buf, len(before), len(payload))
        return
    start, end = fastparse.data_range(flags, sid, buf, len(before), len(payload))
    assert buf[start:end] == want
