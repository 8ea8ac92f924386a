"""The model every view reads: connections, streams, GOAWAYs, violations.

Times are integer epoch nanoseconds inside (a float cannot hold a nanosecond capture's
precision) and epoch seconds as floats in JSON, as DESIGN.md's contract says. Packet
numbers are Wireshark's. Sides are 0 = client, 1 = server.
"""

from __future__ import annotations

import json
import json.encoder
import os
from typing import Any, Final, Optional

from .grpc.status import status_name
from .http2.constants import error_name

CLIENT: Final = 0
SERVER: Final = 1
SIDE_NAMES: Final[tuple[str, ...]] = ("client", "server")
DIR_NAMES: Final[tuple[str, ...]] = ("c2s", "s2c")

MAX_LATE_FRAMES: Final = 256  # frames after a reset kept in detail per stream; more are counted


def sec(ns: Optional[int]) -> Optional[float]:
    return None if ns is None else ns / 1e9


_encode_str: Final = json.encoder.encode_basestring  # json's own C string encoder (ensure_ascii=False)


def _jdumps(obj) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# Strings a stream's JSON repeats call after call (method, authority, state, status name,
# outcome...), each JSON-encoded once. Bounded twice: only short strings are kept (a hostile
# capture's megabyte grpc-message is encoded and dropped), and the cache is cleared when
# full, so unique values (a W2-style grpc-message per call) cost one dict insert each.
_JSTR_CACHE: Final[dict[str, str]] = {}
_JSTR_CACHE_MAX: Final = 4096
_JSTR_CACHED_LEN: Final = 256


def _remember(cache: dict, key: object, value: str) -> None:
    """Keep `value` in one of the bounded caches below, clearing it when full."""
    if len(cache) >= _JSTR_CACHE_MAX:
        cache.clear()
    cache[key] = value


def _jstr(v: Optional[str]) -> str:
    if v is None:
        return "null"
    out = _JSTR_CACHE.get(v)
    if out is None:
        out = _encode_str(v)
        if len(v) <= _JSTR_CACHED_LEN:
            _remember(_JSTR_CACHE, v, out)
    return out


def _jint(v: Optional[int]) -> str:
    return "null" if v is None else str(v)


# Nanosecond counts whose seconds take the shortcuts below: 1e-4 s up to 4e9 s (the year 2096).
# Both limits fit mypyc's unboxed ints (below 2**62).
_SEC_FAST_MIN: Final = 100_000
_SEC_FAST_MAX: Final = 4_000_000_000_000_000_000

# "000".."999", and the same without trailing zeros ("" for 0): six fractional digits as two
# table lookups instead of str(), a slice and rstrip().
_PAD3: Final = tuple([str(i + 1000)[1:] for i in range(1000)])
_STRIP3: Final = tuple([str(i + 1000)[1:].rstrip("0") for i in range(1000)])


def _jsec(ns: Optional[int]) -> str:
    """repr(ns / 1e9), byte for byte, mostly without float repr (Python's dtoa was 8% of
    `analyze --format json` on W1, four times per stream).

    Why the shortcut is exact: below 2**33 a float's spacing is under 1e-6, so at most one
    decimal with six or fewer fractional digits rounds to x = ns / 1e9. If the microsecond
    decimal `us / 1e6` does (an IEEE division of exact operands is correctly rounded, as the
    parse of that decimal is), it is the shortest string that round-trips, which is what repr
    prints; from 1e-4 up repr uses fixed notation. Otherwise _jsec_exact decides.
    tests/test_model_json.py holds it to repr."""
    if ns is None:
        return "null"
    if _SEC_FAST_MIN <= ns < _SEC_FAST_MAX:
        us = (ns + 500) // 1000
        if us / 1e6 == ns / 1e9:
            return _six_digits(us // 1_000_000, us % 1_000_000)
        return _jsec_exact(ns / 1e9)
    return float.__repr__(ns / 1e9)


def _jsec_exact(x: float) -> str:
    """repr(x) for 2**15 <= x < 2**33 (epoch seconds) whose shortest decimal has 6 or 7
    fractional digits, from x's exact value in integers; anything else goes to repr.

    ns / 1e9 rounds twice when ns is past 2**53 (every epoch timestamp): ns to a float, then
    the quotient. A quarter of real timestamps then miss the microsecond shortcut, and float
    repr cost 7,900 instructions each (callgrind, W1). x = w + r * 2**-s exactly, with w its
    whole seconds and r its s fraction bits (x has 53 significant bits, so s = 53 - bits of w).
    The k-digit decimal nearest x has fraction cf = round(r * 10**k / 2**s); it reads back as
    x when it lies within half a spacing (2**-s / 2) of x: |cf * 2**s - r * 10**k| < 10**k / 2.
    Below 2**33 at most one 6-digit decimal does; if none does, the shortest has 7 digits or
    more, and repr prints the one nearest x, which is cf. Exact ties go to repr (a decimal
    can never sit exactly halfway between two floats here: that would need 2**(s+1) to
    divide 10**k). With x >= 2**15, s <= 37 and every product fits a 63-bit int."""
    w = int(x)
    if w < 32768 or w >= 8589934592:
        return float.__repr__(x)
    bits = 16
    while (1 << bits) <= w:
        bits += 1
    s = 53 - bits
    r = int(x * float(1 << s)) & ((1 << s) - 1)  # scaling by a power of two is exact
    cf = _nearest_fraction(r, 1_000_000, s)
    if cf >= 0:
        return _six_digits(w + cf // 1_000_000, cf % 1_000_000)
    cf = _nearest_fraction(r, 10_000_000, s)
    if cf >= 0:  # seven digits, the last not 0 (else six would have done)
        return f"{w + cf // 10_000_000}.{_PAD3[cf // 10_000 % 1000]}{_PAD3[cf // 10 % 1000]}{cf % 10}"
    return float.__repr__(x)


def _nearest_fraction(r: int, scale: int, s: int) -> int:
    """round(r * scale / 2**s), the fraction of the decimal with log10(scale) digits nearest
    the float whose s fraction bits are r, when that decimal reads back as the float (within
    half a spacing, and no tie either way); else -1."""
    f = r * scale
    half = 1 << (s - 1)
    if f & ((1 << s) - 1) == half:
        return -1
    cf = (f + half) >> s
    d = (cf << s) - f
    limit = scale // 2
    return cf if -limit < d < limit else -1


def _six_digits(whole: int, frac: int) -> str:
    """whole.frac, frac as six digits less its trailing zeros (".0" for none), as repr prints."""
    if frac == 0:
        return str(whole) + ".0"
    lo = frac % 1000
    if lo == 0:
        return f"{whole}.{_STRIP3[frac // 1000]}"
    return f"{whole}.{_PAD3[frac // 1000]}{_STRIP3[lo]}"


# "method", "service" and "rpc" of a :path, as JSON, per distinct :path (bounded like _JSTR_CACHE).
_METHOD_JSON: Final[dict[str, str]] = {}


def _method_json(method: Optional[str]) -> str:
    if method is None:
        return '"method":null,"service":null,"rpc":null'
    out = _METHOD_JSON.get(method)
    if out is None:
        service = rpc = None
        if method.count("/") >= 2:
            head, rpc = method.rsplit("/", 1)
            service = head.lstrip("/")
        out = '"method":' + _encode_str(method) + ',"service":' + _jstr(service) + ',"rpc":' + _jstr(rpc)
        if len(method) <= _JSTR_CACHED_LEN:
            _remember(_METHOD_JSON, method, out)
    return out


def _jmeta(d: dict[str, str]) -> str:
    """_jdumps of a dict of str to str, built directly: json.dumps makes a new encoder per call
    (4.7% of `analyze --format json` on W1 in callgrind instructions, one call per stream).
    Keys and values go through the bounded string cache: user-agent and the like repeat."""
    return "{" + ",".join([_jstr(k) + ":" + _jstr(v) for k, v in d.items()]) + "}"


# The records below are plain classes, not dataclasses: making five dataclasses cost 15 M
# instructions (3.5 ms) at every start, and importing dataclasses another 6 ms. Each has a
# __reduce__: records cross from --jobs workers to the parent by pickle, and a compiled class
# is only made through its __init__ (as StreamRecord below).


class Violation:
    """Something RFC 9113 (or HPACK, or TCP framing) forbids, seen on the wire."""

    def __init__(self, conn: int, stream: Optional[int], packet: int, ts_ns: int, side: Optional[int],
                 what: str) -> None:
        self.conn = conn
        self.stream = stream
        self.packet = packet
        self.ts_ns = ts_ns
        self.side = side
        self.what = what

    def __reduce__(self) -> tuple:
        return (Violation, (self.conn, self.stream, self.packet, self.ts_ns, self.side, self.what))

    def to_json(self) -> dict:
        return {"conn": self.conn, "stream": self.stream, "packet": self.packet, "time": sec(self.ts_ns),
                "by": SIDE_NAMES[self.side] if self.side is not None else None, "what": self.what}


class LateFrame:
    """A frame on a stream after it was reset: evidence for data-after-rst."""

    def __init__(self, ts_ns: int, packet: int, side: int, type: int, length: int) -> None:
        self.ts_ns = ts_ns
        self.packet = packet
        self.side = side
        self.type = type
        self.length = length

    def __reduce__(self) -> tuple:
        return (LateFrame, (self.ts_ns, self.packet, self.side, self.type, self.length))


class Goaway:
    def __init__(self, by: int, packet: int, ts_ns: int, last_stream_id: int, error_code: int,
                 debug: str) -> None:
        self.by = by
        self.packet = packet
        self.ts_ns = ts_ns
        self.last_stream_id = last_stream_id
        self.error_code = error_code
        self.debug = debug
        self.affected: list[int] = []  # open streams above last_stream_id

    def __reduce__(self) -> tuple:
        return (Goaway, (self.by, self.packet, self.ts_ns, self.last_stream_id, self.error_code, self.debug),
                self.affected)

    def __setstate__(self, affected: list[int]) -> None:
        self.affected = affected

    def to_json(self) -> dict:
        return {"by": SIDE_NAMES[self.by], "packet": self.packet, "time": sec(self.ts_ns),
                "last_stream_id": self.last_stream_id, "error_code": error_name(self.error_code),
                "debug_data": self.debug, "affected_streams": self.affected}


class Stall:
    """A sender that could not send DATA: its flow-control window was exhausted."""

    def __init__(self, side: int, stream: Optional[int], start_ns: int, start_packet: int) -> None:
        self.side = side
        self.stream = stream  # None: the connection window
        self.start_ns = start_ns
        self.start_packet = start_packet
        self.end_ns: Optional[int] = None
        self.end_packet: Optional[int] = None

    def __reduce__(self) -> tuple:
        return (Stall, (self.side, self.stream, self.start_ns, self.start_packet), (self.end_ns, self.end_packet))

    def __setstate__(self, state: tuple[Optional[int], Optional[int]]) -> None:
        self.end_ns, self.end_packet = state

    def to_json(self) -> dict:
        return {"by": SIDE_NAMES[self.side], "stream": self.stream, "start": sec(self.start_ns),
                "start_packet": self.start_packet, "end": sec(self.end_ns), "end_packet": self.end_packet,
                "duration": sec(self.end_ns - self.start_ns) if self.end_ns is not None else None}


SIDE_FIELDS: Final[tuple[str, ...]] = (
    "frames", "data_bytes", "data_frames", "messages", "message_bytes", "compressed_messages", "messages_known",
    "message_sizes", "end_stream_ns", "end_stream_packet", "last_frame_ns", "first_data_ns",
)


class StreamSide:
    """What one direction of a stream carried. Two small objects per stream instead of a
    [c2s, s2c] list per counter: making and freeing a StreamRecord's 16 lists was 8% of
    `analyze --format json` on W1-2MB (callgrind: 25 M of the pipeline's 317 M)."""

    __slots__ = SIDE_FIELDS

    frames: int
    data_bytes: int
    data_frames: int
    messages: int
    message_bytes: int
    compressed_messages: int
    messages_known: bool
    message_sizes: list[int]  # the first 64
    end_stream_ns: Optional[int]
    end_stream_packet: Optional[int]
    last_frame_ns: Optional[int]
    first_data_ns: Optional[int]

    def __init__(self) -> None:
        self.frames = 0
        self.data_bytes = 0
        self.data_frames = 0
        self.messages = 0
        self.message_bytes = 0
        self.compressed_messages = 0
        self.messages_known = True
        self.message_sizes = []
        self.end_stream_ns = None
        self.end_stream_packet = None
        self.last_frame_ns = None
        self.first_data_ns = None

    def __reduce__(self) -> tuple:
        return (StreamSide, (), tuple([getattr(self, name) for name in SIDE_FIELDS]))

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(SIDE_FIELDS, state):
            setattr(self, name, value)


STREAM_FIELDS: Final[tuple[str, ...]] = (
    "conn", "stream", "start_ns", "start_packet", "state", "partial", "end_ns", "end_packet",
    "end_reason", "method", "http_method", "authority", "content_type", "grpc", "grpc_encoding",
    "grpc_timeout", "timeout_ns", "deadline_ns", "http_status", "grpc_status", "grpc_message",
    "trailers_only", "status_after_reset", "request_headers", "response_headers", "trailers",
    "headers_unknown", "metadata", "c2s", "s2c", "rst_by", "rst_code", "rst_ns", "rst_packet", "rst_count",
    "late", "late_dropped", "after_deadline", "after_deadline_dropped", "goaway_packet", "stalls",
)


class StreamRecord:
    """One HTTP/2 stream: what its frames and headers said, and how it ended.

    A plain class with its own __init__, not a dataclass: mypyc compiles this __init__, while a
    dataclass's is generated at run time and interpreted (3.2 us per stream, and 7% of
    `analyze --format json` on W1 in callgrind instructions, before this)."""

    __slots__ = STREAM_FIELDS

    conn: int
    stream: int
    start_ns: int
    start_packet: int
    state: str
    partial: bool  # began before the capture did
    end_ns: Optional[int]
    end_packet: Optional[int]
    end_reason: Optional[str]
    method: Optional[str]  # :path
    http_method: Optional[str]
    authority: Optional[str]
    content_type: Optional[str]
    grpc: bool
    grpc_encoding: Optional[str]
    grpc_timeout: Optional[str]
    timeout_ns: Optional[int]
    deadline_ns: Optional[int]
    http_status: Optional[int]
    grpc_status: Optional[int]
    grpc_message: Optional[str]
    trailers_only: bool
    status_after_reset: bool  # the grpc-status came in trailers sent after a RST_STREAM
    request_headers: Optional[list]
    response_headers: Optional[list]
    trailers: Optional[list]
    headers_unknown: bool
    metadata: dict[str, str]
    c2s: StreamSide
    s2c: StreamSide
    rst_by: Optional[int]
    rst_code: Optional[int]
    rst_ns: Optional[int]
    rst_packet: Optional[int]
    rst_count: int  # RST_STREAMs on this stream, both sides
    late: list  # LateFrame, after the first RST_STREAM
    late_dropped: int
    after_deadline: list  # server DATA after the deadline: (ts_ns, packet, length)
    after_deadline_dropped: int
    goaway_packet: Optional[int]  # the GOAWAY that cut this stream, if one did
    stalls: list

    def __init__(self, conn: int, stream: int, start_ns: int, start_packet: int, partial: bool = False) -> None:
        self.conn = conn
        self.stream = stream
        self.start_ns = start_ns
        self.start_packet = start_packet
        self.state = "idle"
        self.partial = partial
        self.end_ns = None
        self.end_packet = None
        self.end_reason = None
        self.method = None
        self.http_method = None
        self.authority = None
        self.content_type = None
        self.grpc = False
        self.grpc_encoding = None
        self.grpc_timeout = None
        self.timeout_ns = None
        self.deadline_ns = None
        self.http_status = None
        self.grpc_status = None
        self.grpc_message = None
        self.trailers_only = False
        self.status_after_reset = False
        self.request_headers = None
        self.response_headers = None
        self.trailers = None
        self.headers_unknown = False
        self.metadata = {}
        self.c2s = StreamSide()
        self.s2c = StreamSide()
        self.rst_by = None
        self.rst_code = None
        self.rst_ns = None
        self.rst_packet = None
        self.rst_count = 0
        self.late = []
        self.late_dropped = 0
        self.after_deadline = []
        self.after_deadline_dropped = 0
        self.goaway_packet = None
        self.stalls = []

    # Records cross from --jobs workers to the parent by pickle, and a compiled class is only
    # made through its __init__.
    def __reduce__(self) -> tuple:
        return (StreamRecord, (self.conn, self.stream, self.start_ns, self.start_packet, self.partial),
                tuple([getattr(self, name) for name in STREAM_FIELDS]))

    def __setstate__(self, state: tuple) -> None:
        for name, value in zip(STREAM_FIELDS, state):
            setattr(self, name, value)

    def side(self, side: int) -> StreamSide:
        """The direction `side` sends (CLIENT: c2s, SERVER: s2c)."""
        return self.s2c if side else self.c2s

    # Each direction's counters as (c2s, s2c), for the readers (rules, reports, TUI, tests).
    # Tuples, so that a write meant for the record fails instead of changing a copy.
    @property
    def frames(self) -> tuple[int, int]:
        return self.c2s.frames, self.s2c.frames

    @property
    def data_bytes(self) -> tuple[int, int]:
        return self.c2s.data_bytes, self.s2c.data_bytes

    @property
    def data_frames(self) -> tuple[int, int]:
        return self.c2s.data_frames, self.s2c.data_frames

    @property
    def messages(self) -> tuple[int, int]:
        return self.c2s.messages, self.s2c.messages

    @property
    def message_bytes(self) -> tuple[int, int]:
        return self.c2s.message_bytes, self.s2c.message_bytes

    @property
    def compressed_messages(self) -> tuple[int, int]:
        return self.c2s.compressed_messages, self.s2c.compressed_messages

    @property
    def messages_known(self) -> tuple[bool, bool]:
        return self.c2s.messages_known, self.s2c.messages_known

    @property
    def message_sizes(self) -> tuple[list[int], list[int]]:
        return self.c2s.message_sizes, self.s2c.message_sizes

    @property
    def end_stream_ns(self) -> tuple[Optional[int], Optional[int]]:
        return self.c2s.end_stream_ns, self.s2c.end_stream_ns

    @property
    def end_stream_packet(self) -> tuple[Optional[int], Optional[int]]:
        return self.c2s.end_stream_packet, self.s2c.end_stream_packet

    @property
    def last_frame_ns(self) -> tuple[Optional[int], Optional[int]]:
        return self.c2s.last_frame_ns, self.s2c.last_frame_ns

    @property
    def first_data_ns(self) -> tuple[Optional[int], Optional[int]]:
        return self.c2s.first_data_ns, self.s2c.first_data_ns

    @property
    def service(self) -> Optional[str]:
        if self.method and self.method.count("/") >= 2:
            return self.method.rsplit("/", 1)[0].lstrip("/")
        return None

    @property
    def rpc(self) -> Optional[str]:
        if self.method and self.method.count("/") >= 2:
            return self.method.rsplit("/", 1)[1]
        return None

    @property
    def outcome(self) -> str:
        """How the call ended, as a person reads it: a status, or the reset that ended it first."""
        status = status_name(self.grpc_status) if self.grpc_status is not None else None
        if self.rst_by is not None and (status is None or self.status_after_reset):
            reset = f"RST_STREAM({error_name(self.rst_code or 0)}) by {SIDE_NAMES[self.rst_by]}"
            return f"{reset}, then {status}" if status else reset
        if status is not None:
            return status
        if self.http_status is not None and not self.grpc:
            return str(self.http_status)
        return self.end_reason or "-"

    @property
    def duration_ns(self) -> Optional[int]:
        return None if self.end_ns is None else self.end_ns - self.start_ns

    def rst_json(self) -> Optional[dict]:
        if self.rst_by is None:
            return None
        return {"by": SIDE_NAMES[self.rst_by], "code": error_name(self.rst_code or 0),
                "time": sec(self.rst_ns), "packet": self.rst_packet}

    def _rst_compact(self) -> str:
        """_jdumps(self.rst_json()) for a reset stream, built directly: json.dumps makes a new
        encoder per call, 6 us for a third of W4's streams (3% of its run)."""
        return ('{"by":' + _jstr(SIDE_NAMES[self.rst_by or 0]) + ',"code":' + _jstr(error_name(self.rst_code or 0))
                + ',"time":' + _jsec(self.rst_ns) + ',"packet":' + _jint(self.rst_packet) + "}")

    def to_json(self, headers: bool = True) -> dict:
        out = {
            "conn": self.conn,
            "stream": self.stream,
            "method": self.method,
            "service": self.service,
            "rpc": self.rpc,
            "grpc": self.grpc,
            "start": sec(self.start_ns),
            "end": sec(self.end_ns),
            "start_packet": self.start_packet,
            "end_packet": self.end_packet,
            "state": self.state,
            "partial": self.partial,
            "http_method": self.http_method,
            "authority": self.authority,
            "content_type": self.content_type,
            "grpc_encoding": self.grpc_encoding,
            "grpc_timeout": self.grpc_timeout,
            "timeout": sec(self.timeout_ns),
            "deadline": sec(self.deadline_ns),
            "http_status": self.http_status,
            "grpc_status": self.grpc_status,
            "grpc_status_name": status_name(self.grpc_status) if self.grpc_status is not None else None,
            "grpc_message": self.grpc_message,
            "trailers_only": self.trailers_only,
            "status_after_reset": self.status_after_reset,
            "outcome": self.outcome,
            "end_reason": self.end_reason,
            "rst": self.rst_json(),
            "resets": self.rst_count,
            "late_frames_not_listed": self.late_dropped,
            "frames": {"c2s": self.frames[0], "s2c": self.frames[1]},
            "data_bytes": {"c2s": self.data_bytes[0], "s2c": self.data_bytes[1]},
            "messages": {"c2s": self.messages[0] if self.messages_known[0] else None,
                         "s2c": self.messages[1] if self.messages_known[1] else None},
            "message_bytes": {"c2s": self.message_bytes[0], "s2c": self.message_bytes[1]},
            "compressed_messages": {"c2s": self.compressed_messages[0], "s2c": self.compressed_messages[1]},
            "message_sizes": {"c2s": self.message_sizes[0], "s2c": self.message_sizes[1]},
            "headers_unknown": self.headers_unknown,
            "metadata": self.metadata,
            "flow_control_stalls": [s.to_json() for s in self.stalls],
        }
        if headers:
            out["request_headers"] = self.request_headers
            out["response_headers"] = self.response_headers
            out["trailers"] = self.trailers
        return out

    def compact_json_after_conn(self, headers: bool = False) -> str:
        """json.dumps(to_json(headers) without "conn", separators=(",", ":"), ensure_ascii=False),
        less its opening brace: byte for byte (tests/test_streaming.py holds them equal), built
        directly: written in C where built (h2scope/_jsonline_c.c says why), else by
        _line_py."""
        if _C_LINE is not None:
            out: Optional[str] = _C_LINE(self._line_fields(headers))
            if out is not None:
                return out
        return self._line_py(headers)

    def _line_fields(self, headers: bool) -> tuple:
        """What the C line writer reads, in its order (_jsonline_c.c's line())."""
        c, s = self.c2s, self.s2c
        return (self.stream, _method_json(self.method), self.grpc, self.start_ns, self.end_ns, self.start_packet,
                self.end_packet, _request_run(self), self.deadline_ns, _response_run(self),
                c.frames, s.frames, c.data_bytes, s.data_bytes,
                c.messages if c.messages_known else None, s.messages if s.messages_known else None,
                c.message_bytes, s.message_bytes, c.compressed_messages, s.compressed_messages,
                c.message_sizes, s.message_sizes, self.headers_unknown, self.metadata,
                _jdumps([st.to_json() for st in self.stalls]) if self.stalls else "[]",
                self._headers_json() if headers else "")

    def _headers_json(self) -> str:
        return (f',"request_headers":{_jdumps(self.request_headers)}'
                f',"response_headers":{_jdumps(self.response_headers)},"trailers":{_jdumps(self.trailers)}')

    def _line_py(self, headers: bool = False) -> str:
        """compact_json_after_conn in compiled Python: the reference for the C line, and what
        runs without it. Building the dict and encoding it took 1.2 s of 7.6 s profiled on
        W1-20MB --format json; building the string: `analyze --format json --jobs 1` on
        W1-20MB 3.42 s -> 3.13 s (best of 3).

        One f-string (mypyc builds it in one allocation, without a list of parts), and the two
        runs of fields that calls to one method repeat (the request's state, authority, type
        and timeout; the response's status, message and outcome) from bounded caches keyed by
        the values they encode. The helpers are called by their module names: bound to
        locals, compiled code calls them as Python objects and boxes every argument."""
        c, s = self.c2s, self.s2c
        out = (
            f'"stream":{self.stream},{_method_json(self.method)},"grpc":{"true" if self.grpc else "false"}'
            f',"start":{_jsec(self.start_ns)},"end":{_jsec(self.end_ns)}'
            f',"start_packet":{self.start_packet},"end_packet":{_jint(self.end_packet)}'
            f'{_request_run(self)},"deadline":{_jsec(self.deadline_ns)}{_response_run(self)}'
            f',"frames":{{"c2s":{c.frames},"s2c":{s.frames}}}'
            f',"data_bytes":{{"c2s":{c.data_bytes},"s2c":{s.data_bytes}}}'
            f',"messages":{{"c2s":{str(c.messages) if c.messages_known else "null"}'
            f',"s2c":{str(s.messages) if s.messages_known else "null"}}}'
            f',"message_bytes":{{"c2s":{c.message_bytes},"s2c":{s.message_bytes}}}'
            f',"compressed_messages":{{"c2s":{c.compressed_messages},"s2c":{s.compressed_messages}}}'
            f',"message_sizes":{{"c2s":[{",".join([str(n) for n in c.message_sizes])}]'
            f',"s2c":[{",".join([str(n) for n in s.message_sizes])}]}}'
            f',"headers_unknown":{"true" if self.headers_unknown else "false"}'
            f',"metadata":{_jmeta(self.metadata) if self.metadata else "{}"}'
            f',"flow_control_stalls":{_jdumps([st.to_json() for st in self.stalls]) if self.stalls else "[]"}'
        )
        if headers:
            out += self._headers_json()
        return out + "}"


def _c_line() -> Any:
    """The C line writer (_jsonline_c.c), unless H2SCOPE_PURE_PYTHON (h2scope.native.ENV) is
    set or it was not built."""
    if os.environ.get("H2SCOPE_PURE_PYTHON"):
        return None
    try:
        from ._jsonline_c import line
    except ImportError:
        return None
    return line


_C_LINE: Final[Any] = _c_line()


# The runs of a stream's JSON that repeat call after call, keyed by what they encode; bounded
# like _JSTR_CACHE (only runs of up to _RUN_CACHED_LEN characters, cleared when full).
_REQUEST_RUNS: Final[dict[tuple, str]] = {}
_RESPONSE_RUNS: Final[dict[tuple, str]] = {}
_RUN_CACHED_LEN: Final = 512


def _request_run(r: StreamRecord) -> str:
    """',"state":...,"timeout":...' of r's JSON."""
    key = (r.state, r.partial, r.http_method, r.authority, r.content_type, r.grpc_encoding, r.grpc_timeout,
           r.timeout_ns)
    out = _REQUEST_RUNS.get(key)
    if out is None:
        out = (f',"state":{_jstr(r.state)},"partial":{"true" if r.partial else "false"}'
               f',"http_method":{_jstr(r.http_method)},"authority":{_jstr(r.authority)}'
               f',"content_type":{_jstr(r.content_type)},"grpc_encoding":{_jstr(r.grpc_encoding)}'
               f',"grpc_timeout":{_jstr(r.grpc_timeout)},"timeout":{_jsec(r.timeout_ns)}')
        if len(out) <= _RUN_CACHED_LEN:
            _remember(_REQUEST_RUNS, key, out)
    return out


def _response_run(r: StreamRecord) -> str:
    """',"http_status":...,"late_frames_not_listed":...' of r's JSON. A reset stream's run
    (its rst object has times and packets) is built every time."""
    if r.rst_by is not None:
        return _build_response_run(r)
    key = (r.http_status, r.grpc_status, r.grpc_message, r.trailers_only, r.status_after_reset, r.grpc,
           r.end_reason, r.rst_count, r.late_dropped)
    out = _RESPONSE_RUNS.get(key)
    if out is None:
        out = _build_response_run(r)
        if len(out) <= _RUN_CACHED_LEN:
            _remember(_RESPONSE_RUNS, key, out)
    return out


def _build_response_run(r: StreamRecord) -> str:
    # outcome reads grpc_status, rst_by, status_after_reset, http_status, grpc and end_reason:
    # all in the cache key (rst_by only as None).
    status = status_name(r.grpc_status) if r.grpc_status is not None else None
    return (f',"http_status":{_jint(r.http_status)},"grpc_status":{_jint(r.grpc_status)}'
            f',"grpc_status_name":{_jstr(status)},"grpc_message":{_jstr(r.grpc_message)}'
            f',"trailers_only":{"true" if r.trailers_only else "false"}'
            f',"status_after_reset":{"true" if r.status_after_reset else "false"}'
            f',"outcome":{_jstr(r.outcome)},"end_reason":{_jstr(r.end_reason)}'
            f',"rst":{"null" if r.rst_by is None else r._rst_compact()}'
            f',"resets":{r.rst_count},"late_frames_not_listed":{r.late_dropped}')


class ConnectionRecord:
    def __init__(self, id: int, client: str, server: str, server_port: int, role_source: str,
                 start_ns: int, end_ns: int, first_packet: int, last_packet: int, close: str,
                 close_by: Optional[str], close_packet: Optional[int], rtt_ns: Optional[int],
                 rtt_source: Optional[str], protocol: str, packets: list, bytes: list,
                 retransmissions: list, gaps: list, gap_bytes: list, conflicts: list) -> None:
        self.id = id
        self.client = client
        self.server = server
        self.server_port = server_port
        self.role_source = role_source
        self.start_ns = start_ns
        self.end_ns = end_ns
        self.first_packet = first_packet
        self.last_packet = last_packet
        self.close = close
        self.close_by = close_by
        self.close_packet = close_packet
        self.rtt_ns = rtt_ns
        self.rtt_source = rtt_source
        self.protocol = protocol
        self.packets = packets
        self.bytes = bytes
        self.retransmissions = retransmissions
        self.gaps = gaps
        self.gap_bytes = gap_bytes
        self.conflicts = conflicts
        self.streams = 0
        self.goaways: list = []
        self.settings: list = [{}, {}]
        self.stalls: list = []
        self.notes: list = []
        self.hpack_blocks = 0
        self.hpack_memo_hits = 0
        self.after_goaway: list = []  # frames above a GOAWAY's last_stream_id
        self.tls_alpn: Optional[list] = None

    def __reduce__(self) -> tuple:
        return (ConnectionRecord,
                (self.id, self.client, self.server, self.server_port, self.role_source, self.start_ns, self.end_ns,
                 self.first_packet, self.last_packet, self.close, self.close_by, self.close_packet, self.rtt_ns,
                 self.rtt_source, self.protocol, self.packets, self.bytes, self.retransmissions, self.gaps,
                 self.gap_bytes, self.conflicts),
                (self.streams, self.goaways, self.settings, self.stalls, self.notes, self.hpack_blocks,
                 self.hpack_memo_hits, self.after_goaway, self.tls_alpn))

    def __setstate__(self, state: tuple) -> None:
        (self.streams, self.goaways, self.settings, self.stalls, self.notes, self.hpack_blocks,
         self.hpack_memo_hits, self.after_goaway, self.tls_alpn) = state

    def to_json(self) -> dict:
        return {
            "id": self.id,
            "client": self.client,
            "server": self.server,
            "roles_from": self.role_source,
            "protocol": self.protocol,
            "start": sec(self.start_ns),
            "end": sec(self.end_ns),
            "first_packet": self.first_packet,
            "last_packet": self.last_packet,
            "close": self.close,
            "close_by": self.close_by,
            "close_packet": self.close_packet,
            "rtt": sec(self.rtt_ns),
            "rtt_source": self.rtt_source,
            "streams": self.streams,
            "goaways": [g.to_json() for g in self.goaways],
            "packets": {"c2s": self.packets[0], "s2c": self.packets[1]},
            "bytes": {"c2s": self.bytes[0], "s2c": self.bytes[1]},
            "retransmissions": {"c2s": self.retransmissions[0], "s2c": self.retransmissions[1]},
            "gaps": {"c2s": self.gaps[0], "s2c": self.gaps[1]},
            "gap_bytes": {"c2s": self.gap_bytes[0], "s2c": self.gap_bytes[1]},
            "conflicting_overlaps": {"c2s": self.conflicts[0], "s2c": self.conflicts[1]},
            "settings": {"client": self.settings[0], "server": self.settings[1]},
            "flow_control_stalls": [s.to_json() for s in self.stalls],
            "tls_alpn": self.tls_alpn,
            "hpack": {"blocks": self.hpack_blocks, "memo_hits": self.hpack_memo_hits},
            "notes": self.notes,
        }
