"""Frame bodies parsed with struct, the same fields and the same validations as hyperframe.

Hand-written because it is the hot path: parsing every frame with hyperframe (two objects,
a flags set and a memoryview per frame) took 25% of `analyze` on the benchmark captures
(cProfile, benchmarks/data/W1-5MB.pcap: 0.70 s of 2.80 s). tests/test_fastparse.py proves
that every frame of every stored capture, and fuzzed frames, parse to the same fields as
with hyperframe, and that both reject the same frames. On a rejection the caller asks
hyperframe for its exact error message, so violations read the same either way.
"""

from __future__ import annotations

from typing import Final

import struct

from .constants import (
    CONTINUATION, DATA, GOAWAY, HEADERS, PING, PRIORITY, PUSH_PROMISE, RST_STREAM, SETTINGS, WINDOW_UPDATE,
)

_L: Final = struct.Struct("!L").unpack_from
_LL: Final = struct.Struct("!LL").unpack_from
_LB: Final = struct.Struct("!LB").unpack_from
_HL: Final = struct.Struct("!HL").unpack_from

FLAG_ACK: Final = 0x01
FLAG_PADDED: Final = 0x08
FLAG_PRIORITY: Final = 0x20

# hyperframe's stream_association: these need a stream, those must be on stream 0.
_NEED_STREAM: Final = frozenset((DATA, HEADERS, PRIORITY, RST_STREAM, PUSH_PROMISE, CONTINUATION))
_NO_STREAM: Final = frozenset((SETTINGS, PING, GOAWAY))


class FrameError(Exception):
    """The frame is one hyperframe would reject."""


PARSED_FIELDS: Final[tuple[str, ...]] = ("data", "error_code", "settings", "window_increment", "opaque_data", "last_stream_id",
                 "additional_data", "promised_stream_id", "depends_on", "stream_weight", "exclusive", "pad_length")


class Parsed:
    """The fields h2scope reads from a frame body (the hyperframe attribute names)."""

    __slots__ = PARSED_FIELDS

    data: bytes  # always bytes (from_hyperframe copies a memoryview): no bytes() needed on it
    # Set only by the frame types that carry them.
    error_code: int
    settings: dict[int, int]
    window_increment: int
    opaque_data: bytes
    last_stream_id: int
    additional_data: bytes
    promised_stream_id: int

    def __init__(self) -> None:
        self.data = b""
        self.pad_length = 0
        self.depends_on = 0
        self.stream_weight = 0
        self.exclusive = False


def from_hyperframe(frame: object) -> Parsed:
    """The same fields from a frame hyperframe parsed (only where fastparse rejected a frame
    that hyperframe took, which tests/test_fastparse.py finds never happens), so that the
    decoder reads one compiled class."""
    p = Parsed()
    for name in PARSED_FIELDS:
        if hasattr(frame, name):
            value = getattr(frame, name)
            setattr(p, name, bytes(value) if isinstance(value, memoryview) else value)
    return p


def _pad_length(payload: bytes, n: int) -> int:
    """The Pad Length byte of a PADDED frame (hyperframe rejects an empty body)."""
    if not n:
        raise FrameError
    return payload[0]


def data_range(flags: int, sid: int, buf: bytes, start: int, n: int) -> tuple[int, int]:
    """Where a DATA frame's data lies when its n-byte payload starts at buf[start] (the
    splitter leaves DATA payloads in place): parse()'s checks and padding, without a copy."""
    if not sid:
        raise FrameError
    if flags & FLAG_PADDED:
        pad = _pad_length(buf[start:start + 1], n)
        if pad and pad >= n:
            raise FrameError
        return start + 1, start + n - pad
    return start, start + n


def _priority(p: Parsed, payload: bytes, off: int) -> None:
    dep, p.stream_weight = _LB(payload, off)
    p.exclusive = bool(dep >> 31)
    p.depends_on = dep & 0x7FFFFFFF


def parse(ftype: int, flags: int, sid: int, payload: bytes) -> Parsed:
    """Parse a frame body of a known type (0-9); raises FrameError where hyperframe raises."""
    if sid:
        if ftype in _NO_STREAM:
            raise FrameError
    elif ftype in _NEED_STREAM:
        raise FrameError
    n = len(payload)
    p = Parsed()
    if ftype == DATA:
        if flags & FLAG_PADDED:
            pad = p.pad_length = _pad_length(payload, n)
            if pad and pad >= n:
                raise FrameError
            p.data = payload[1:n - pad]
        else:
            p.data = payload
    elif ftype == HEADERS:
        pad = p.pad_length = _pad_length(payload, n) if flags & FLAG_PADDED else 0
        off = 1 if flags & FLAG_PADDED else 0
        rest = n - off
        if flags & FLAG_PRIORITY:
            if rest < 5:
                raise FrameError
            _priority(p, payload, off)
            start = off + 5
        else:
            start = off
        if pad and pad >= rest:
            raise FrameError
        # Clamped: compiled, a bytes slice whose end falls before its start raises SystemError
        # (mypyc's CPyBytes_GetSlice passes the negative length on) where Python gives b"".
        p.data = payload[start:max(start, n - pad)] if (start or pad) else payload
    elif ftype == RST_STREAM:
        if n != 4:
            raise FrameError
        p.error_code = _L(payload)[0]
    elif ftype == SETTINGS:
        if flags & FLAG_ACK and n:
            raise FrameError
        if n % 6:
            raise FrameError
        p.settings = {k: v for k, v in (_HL(payload, i) for i in range(0, n, 6))}
    elif ftype == WINDOW_UPDATE:
        if n != 4:
            raise FrameError
        inc = _L(payload)[0]
        if not 1 <= inc <= 0x7FFFFFFF:
            raise FrameError
        p.window_increment = inc
    elif ftype == PING:
        if n != 8:
            raise FrameError
        p.opaque_data = payload
    elif ftype == GOAWAY:
        if n < 8:
            raise FrameError
        p.last_stream_id, p.error_code = _LL(payload)
        p.additional_data = payload[8:]
    elif ftype == PRIORITY:
        if n != 5:
            raise FrameError
        _priority(p, payload, 0)
    elif ftype == PUSH_PROMISE:
        pad = p.pad_length = _pad_length(payload, n) if flags & FLAG_PADDED else 0
        off = 1 if flags & FLAG_PADDED else 0
        if n - off < 4:
            raise FrameError
        promised = _L(payload, off)[0]
        if promised == 0 or promised % 2:
            raise FrameError
        if pad and pad >= n:
            raise FrameError
        p.promised_stream_id = promised
        p.data = payload[off + 4:max(off + 4, n - pad)]  # clamped, as for HEADERS
    elif ftype == CONTINUATION:
        p.data = payload
    else:
        raise ValueError(f"not a known frame type: {ftype}")
    return p
