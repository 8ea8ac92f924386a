"""One TCP connection's HTTP/2, observed: the sink that TCP reassembly feeds.

Per direction a frame splitter and an HPACK decoder; per stream a lifecycle (state table
in lifecycle.py), gRPC fields and flow-control windows. Live state exists only for open
streams; a closed stream is a StreamRecord, kept reachable for a while because frames
sent after a reset (the zombies this tool exists to find) arrive after it closed.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Callable, Final, Optional, Protocol

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import Frame

from ..grpc.messages import MessageSplitter
from ..grpc.status import decode_grpc_message
from ..grpc.timeout import parse_timeout_ns
from ..model import (
    CLIENT, DIR_NAMES, MAX_LATE_FRAMES, SERVER, ConnectionRecord, Goaway, LateFrame, Stall,
    StreamRecord, Violation,
)
from ..tcp.reassembly import NativeSink, TcpConnection
from . import detect
from .constants import (
    CONTINUATION, DATA, DEFAULT_MAX_FRAME_SIZE, DEFAULT_WINDOW, FLAG_ACK, FLAG_END_HEADERS,
    FLAG_END_STREAM, GOAWAY, HEADERS, PING, PREFACE, PRIORITY, PUSH_PROMISE,
    RST_STREAM, SETTINGS, SETTINGS_HEADER_TABLE_SIZE, SETTINGS_INITIAL_WINDOW_SIZE,
    SETTINGS_MAX_FRAME_SIZE, WINDOW_UPDATE, error_name, flag_names, type_name,
)
from . import fastparse
from .fastparse import Parsed
from .hpack_state import HeaderDecoder
from .lifecycle import (CLOSED, HALF_CLOSED_CLIENT, IDLE, OPEN, RESERVED, STATE_NAMES, data_event, end_event,
                        header_event, rst_event, transition)
from .splitter import FrameSplitter, RawFrame

PROBE_BYTES: Final = 64 * 1024  # held back per connection while judging roles from HTTP/2 headers
RECENT_CLOSED = 1024  # closed streams per connection kept for late frames, then final
MAX_RECORDED: Final = 200  # per-connection evidence lists beyond which we only count
MAX_VIOLATIONS: Final = 10_000  # per connection; a hostile capture's further ones are counted
TRACE_KEYS: Final = ("traceparent", "tracestate", "grpc-trace-bin", "b3", "x-b3-traceid", "x-request-id",
              "x-cloud-trace-context", "user-agent")


class ResultConsumer(Protocol):
    """Where finished pieces of the model go, as soon as they are final. `at` is the packet
    being processed (None once the capture has ended)."""

    def connection_new(self, conn_id: int, at: int) -> None: ...

    def stream_done(self, rec: StreamRecord, conn: ConnectionRecord, at: Optional[int]) -> None: ...

    def stream_reset(self, rec: StreamRecord, conn: ConnectionRecord, at: Optional[int]) -> None: ...

    def connection_done(self, conn: ConnectionRecord, violations: list[Violation], methods: dict,
                        at: Optional[int]) -> None: ...


class DecodeContext:
    """What all connections of one capture share: options and where results go."""

    def __init__(self, results: ResultConsumer, decode_as: tuple[int, ...] = (),
                 on_frame: Optional[Callable[[dict], None]] = None, keep_frames: bool = False) -> None:
        self.results = results
        self.decode_as = set(decode_as)
        self.on_frame = on_frame
        self.keep_frames = keep_frames or on_frame is not None
        self.capture_ended = False  # set by the driver before it flushes what is still open
        self.frames_by_stream: dict[tuple[int, int], list[dict]] = {}
        self.conn_frames: dict[int, list[dict]] = {}
        self.total_frames = 0


class LiveStream:
    """Transient per-stream state, dropped when the stream closes."""

    __slots__ = ("rec", "state", "msgs", "window", "stall", "ended")

    def __init__(self, rec: StreamRecord, window_c: int, window_s: int) -> None:
        self.rec = rec
        self.state: int = IDLE
        self.msgs = (MessageSplitter(), MessageSplitter())
        self.window = [window_c, window_s]  # what each side may still send
        self.stall: list[Optional[Stall]] = [None, None]
        self.ended = [False, False]


class H2Observer(NativeSink):
    """The StreamSink for one TCP connection."""

    def __init__(self, tcp: TcpConnection, ctx: DecodeContext) -> None:
        self.tcp = tcp
        self.ctx = ctx
        self.conn_id = tcp.id
        self.mode = "sniff"  # sniff → h2 | upgrade | tls | other
        self.protocol = "unknown"
        self.partial = False  # decoding began mid-connection
        self._sniff = [b"", b""]  # first bytes per side, to decide what the connection carries
        self._chunks: list[list] = [[], []]  # the same bytes as (data, packet, ts_ns) chunks
        self._upgrade_request: Optional[tuple] = None
        self.splitters: list[Optional[FrameSplitter]] = [None, None]
        self.hpack: list[HeaderDecoder] = []  # made when HTTP/2 starts: a port scan's connections never need one
        self.live: dict[int, LiveStream] = {}
        self.recent: OrderedDict[int, StreamRecord] = OrderedDict()
        self.max_stream = [0, 0]  # highest stream id initiated by client / server
        self.pending_block: list[Optional[list]] = [None, None]  # [stream, fragments, is_push, promised, first pkt, ts]
        self.settings: list[dict] = [{}, {}]
        self.initial_window = [DEFAULT_WINDOW, DEFAULT_WINDOW]  # announced by each side (applies to the peer)
        self.conn_window = [DEFAULT_WINDOW, DEFAULT_WINDOW]
        self.conn_stall: list[Optional[Stall]] = [None, None]
        self.goaways: list[Goaway] = []
        self.goaway_seen_by: list[Optional[Goaway]] = [None, None]  # first GOAWAY each side received
        self.goaway_limit: list[Optional[Goaway]] = [None, None]  # the lowest last_stream_id each side received
        self.after_goaway: list[dict] = []
        self.pings: dict[tuple[int, bytes], int] = {}
        self.ping_rtt_ns: Optional[int] = None
        self.stalls: list[Stall] = []
        self.notes: list[str] = []
        self.frames = 0
        self.streams_seen = 0
        self.flow_known = True
        self.tls_alpn: Optional[list[str]] = None
        self.violations: list[Violation] = []
        self.violations_dropped = 0
        self._violation_sids: set[int] = set()
        self._violation_methods: dict[int, Optional[str]] = {}
        self.record: Optional[ConnectionRecord] = None
        self._ended = False
        ctx.results.connection_new(self.conn_id, tcp.first_packet)

    # ---- StreamSink ------------------------------------------------------------------

    def on_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None:
        sp = self.splitters[side]
        if sp is not None:
            for fr in sp.feed(data, packet):
                self._frame(side, fr, packet, ts_ns)
            return
        if self.mode == "sniff" or self.mode == "upgrade":
            self._sniff_data(side, data, packet, ts_ns)

    def on_gap(self, side: int, size: int, packet: int, ts_ns: int) -> None:
        sp = self.splitters[side]
        if sp is not None:
            framed = sp.synced
            sp.gap(size)
            if framed and not sp.synced:
                self.notes.append(f"{DIR_NAMES[side]}: {size} bytes missing from the capture at packet "
                                  f"{packet}; HTTP/2 framing resynchronised after it")
            if not sp.synced:
                # Whole frames were lost, header blocks perhaps among them: later blocks may
                # reference table entries we never saw, and message framing is unknown.
                self.pending_block[side] = None
                self.hpack[side].lose_state()
                for ls in self.live.values():
                    ls.msgs[side].lose()
                self.flow_known = False
        elif self.mode == "sniff":
            self._sniff[side] = b""
            self._chunks[side] = []

    def on_close(self, side: int, how: str, packet: int, ts_ns: int) -> None:
        pass  # the connection record reads close facts from TCP when it ends

    def on_end(self, ts_ns: int) -> None:
        # Flushed by the end of the capture rather than closed on the wire: results from here
        # on are ordered by connection, not by packet.
        self._ended = self.ctx.capture_ended
        if self.mode == "sniff" and self.tcp.role_source == "port-guess" and any(self._chunks):
            # A short mid-connection capture: decide with what there is, then decode it.
            self._settle_roles(final=True)
            self._start_partial("h2c (decoded from mid-connection)")
            self._replay(CLIENT)
            self._replay(SERVER)
        self._finish(ts_ns)

    # ---- finding HTTP/2 ----------------------------------------------------------------

    def _start_h2(self, protocol: str, synced: bool = True) -> None:
        self.mode = "h2"
        self.protocol = protocol
        if not self.hpack:
            self.hpack = [HeaderDecoder(), HeaderDecoder()]
        for side in (CLIENT, SERVER):
            if self.splitters[side] is None:
                self.splitters[side] = FrameSplitter(synced=synced)

    def _splitter(self, side: int) -> FrameSplitter:
        sp = self.splitters[side]
        assert sp is not None  # made by _start_h2
        return sp

    def _start_partial(self, protocol: str) -> None:
        """Decoding from the middle: framing is found by resynchronisation, HPACK is partial."""
        self.partial = True
        self.flow_known = False
        self.hpack = [HeaderDecoder(partial=True), HeaderDecoder(partial=True)]
        self._start_h2(protocol, synced=False)
        self._splitter(CLIENT).max_len = DEFAULT_MAX_FRAME_SIZE
        self._splitter(SERVER).max_len = DEFAULT_MAX_FRAME_SIZE

    def _sniff_data(self, side: int, data: bytes, packet: int, ts_ns: int) -> None:
        self._chunks[side].append((data, packet, ts_ns))
        buf = self._sniff[side] + data
        self._sniff[side] = buf
        if self.mode == "upgrade":
            self._sniff_upgrade(side)
            return
        state = detect.preface_state(buf)
        if state is True:
            if side == SERVER:  # the preface came from the side we took for the server
                self.tcp.swap_roles("preface")
                self._sniff.reverse()
                self._chunks.reverse()
            elif self.tcp.role_source != "syn":
                self.tcp.role_source = "preface"
            self._start_h2("h2c")
            self._splitter(CLIENT).expect_preface(PREFACE)
            # The server may have spoken first (its SETTINGS before the preface arrived).
            self._replay(SERVER)
            self._replay(CLIENT)
            return
        if state is None:
            return
        port = self.tcp.server_port
        if side == CLIENT and detect.looks_http1_request(buf):
            head = detect.parse_http1_head(buf)
            if head is None:
                if len(buf) > detect.MAX_SNIFF:
                    self._give_up("http/1.1")
                return
            line, headers, _ = head
            upgrade = dict(headers).get("upgrade", "").lower()
            if "h2c" in [u.strip() for u in upgrade.split(",")]:
                self.mode = "upgrade"
                self._upgrade_request = (line, headers, packet, ts_ns)
                self._sniff[CLIENT] = b""
                self._chunks[CLIENT] = []
                self._sniff_upgrade(SERVER)
                return
            self._give_up("http/1.1")
            return
        if side == CLIENT and buf[:1] == b"\x16":
            alpn = detect.tls_client_hello_alpn(buf)
            if alpn is not None:
                self.tls_alpn = alpn
                self.protocol = "h2 over TLS (encrypted - needs a key log)" if "h2" in alpn else "TLS"
                self.mode = "tls"
                self._sniff = [b"", b""]
                self._chunks = [[], []]
                return
            if len(buf) < 6:
                return
        if port in self.ctx.decode_as or self.tcp.role_source == "port-guess":
            # Told to, or the capture began after the connection did: find frame boundaries.
            if self.tcp.role_source == "port-guess" and not self._settle_roles(final=False):
                return
            self._start_partial("h2c (--decode-as)" if port in self.ctx.decode_as
                                else "h2c (decoded from mid-connection)")
            self._replay(CLIENT)
            self._replay(SERVER)
            return
        if side == SERVER and not self._sniff[CLIENT] and len(buf) < detect.MAX_SNIFF:
            return  # a server speaking first (SETTINGS before the client's preface) is normal for gRPC
        self._give_up("unknown")

    def _settle_roles(self, final: bool) -> bool:
        """Without a SYN or a preface, roles come from HTTP/2 itself: the side whose header
        blocks carry :status is the server, :method/:path the client. The port guess
        stands only when nothing decides it. True once settled."""
        client = self._probe_roles()
        if client is None:
            held = len(self._sniff[CLIENT]) + len(self._sniff[SERVER])
            if not final and held < PROBE_BYTES:
                return False
            return True
        if client == SERVER:
            self.tcp.swap_roles("http2-headers")
            self._sniff.reverse()
            self._chunks.reverse()
        else:
            self.tcp.role_source = "http2-headers"
        return True

    def _probe_roles(self) -> Optional[int]:
        """Which side looks like the client, from a throwaway decode of the held-back bytes."""
        for side in (CLIENT, SERVER):
            splitter = FrameSplitter(synced=False, max_len=DEFAULT_MAX_FRAME_SIZE)
            decoder = HeaderDecoder(partial=True)
            for data, packet, _ts in self._chunks[side]:
                for fr in splitter.feed(data, packet):
                    if fr[2] != HEADERS or not fr[3] & FLAG_END_HEADERS:
                        continue
                    try:
                        frame, _ = Frame.parse_frame_header(memoryview(fr[0]))
                        frame.parse_body(memoryview(fr[5]))
                    except (HyperframeError, ValueError, IndexError):
                        continue
                    headers, _err, _unknown = decoder.decode(bytes(frame.data))  # type: ignore[attr-defined]
                    for name, _value in headers or ():
                        if name == ":status":
                            return 1 - side
                        if name in (":method", ":path", ":scheme"):
                            return side
        return None

    def _replay(self, side: int, skip: int = 0) -> None:
        """Feed what was held back while sniffing, chunk by chunk so frames keep their packets."""
        chunks = self._chunks[side]
        self._chunks[side] = []
        self._sniff[side] = b""
        for data, packet, ts_ns in chunks:
            if skip:
                cut = min(skip, len(data))
                data = data[cut:]
                skip -= cut
            if data:
                self.on_data(side, data, packet, ts_ns)

    def _give_up(self, protocol: str) -> None:
        if self.tcp.server_port in self.ctx.decode_as:
            # The user said this port is HTTP/2: look for frames whatever the first bytes said.
            self._start_partial("h2c (--decode-as)")
            self._replay(CLIENT)
            self._replay(SERVER)
            return
        self.mode = "other"
        self.protocol = protocol
        self._sniff = [b"", b""]
        self._chunks = [[], []]

    def _sniff_upgrade(self, side: int) -> None:
        if side != SERVER:
            return
        buf = self._sniff[SERVER]
        if len(buf) >= 5 and not buf.startswith(b"HTTP/"):
            # e.g. nghttpd answers an Upgrade request with HTTP/2 SETTINGS: no upgrade happened.
            self._give_up("http/1.1 (h2c upgrade answered with non-HTTP/1.1 bytes)")
            return
        head = detect.parse_http1_head(buf)
        if head is None:
            if len(buf) > detect.MAX_SNIFF:
                self._give_up("http/1.1")
            return
        line, _headers, size = head
        parts = line.split()
        if len(parts) < 2 or parts[1] != "101":
            self._give_up("http/1.1")
            return
        # Switched: the request became stream 1 (half-closed by the client), then HTTP/2.
        assert self._upgrade_request is not None  # a 101 answers the request seen before it
        req_line, req_headers, req_packet, req_ts = self._upgrade_request
        self._start_h2("h2c (HTTP/1.1 Upgrade)")
        method, _, rest = req_line.partition(" ")
        path = rest.rsplit(" ", 1)[0]
        headers = [(":method", method), (":path", path), (":scheme", "http")]
        for name, value in req_headers:
            if name == "host":
                headers.append((":authority", value))
            elif name not in ("connection", "upgrade", "http2-settings", "keep-alive", "transfer-encoding"):
                headers.append((name, value))
        ls = self._open_stream(1, req_packet, req_ts)
        self._request_headers(ls.rec, headers)
        ls.state = HALF_CLOSED_CLIENT
        ls.ended[CLIENT] = True
        ls.rec.c2s.end_stream_ns = req_ts
        ls.rec.c2s.end_stream_packet = req_packet
        self.max_stream[CLIENT] = 1
        self._splitter(CLIENT).expect_preface(PREFACE)
        self._replay(SERVER, skip=size)
        self._replay(CLIENT)

    # ---- frames ------------------------------------------------------------------------

    def _frame(self, side: int, fr: RawFrame, packet: int, ts_ns: int) -> None:
        header, length, ftype, flags, sid, payload, first_packet, damaged, pstart = fr
        self.frames += 1
        ctx = self.ctx
        ctx.total_frames += 1
        record: Optional[dict] = None
        if ctx.keep_frames:
            record = {"packet": packet, "time": ts_ns / 1e9, "ts_ns": ts_ns, "index": self.frames,
                      "conn": self.conn_id, "dir": DIR_NAMES[side], "stream": sid, "type": type_name(ftype),
                      "flags": flags, "flag_names": flag_names(ftype, flags), "length": length}
            if first_packet != packet:
                record["first_packet"] = first_packet
            if damaged:
                record["damaged"] = True
        pending = self.pending_block[side]
        if pending is not None and (ftype != CONTINUATION or sid != pending[0]):
            self._violation(packet, ts_ns, side, sid or None,
                            f"{type_name(ftype)} interleaved in the header block of stream {pending[0]} "
                            "(expected CONTINUATION, RFC 9113 §6.10)")
            self.pending_block[side] = None
            self.hpack[side].lose_state()
            if pending[2] is not None:
                pending[2].headers_unknown = True  # its header block was never completed
            pending = None
        if ftype == DATA:
            self._data_frame(side, header, payload, pstart, length, flags, sid, packet, ts_ns, damaged)
        else:
            self._other_frame(side, header, payload, ftype, flags, sid, packet, first_packet, ts_ns, damaged, record)
        if sid:
            self._count_stream_frame(side, sid, ftype, length, packet, ts_ns)
        if record is not None:
            if ftype in (DATA, HEADERS):
                record["end_stream"] = bool(flags & FLAG_END_STREAM)
            if ctx.on_frame is not None:
                ctx.on_frame(record)
            else:
                key = (self.conn_id, sid)
                if sid:
                    ctx.frames_by_stream.setdefault(key, []).append(record)
                else:
                    ctx.conn_frames.setdefault(self.conn_id, []).append(record)

    def _data_frame(self, side: int, header: bytes, payload: bytes, pstart: int, length: int, flags: int, sid: int,
                    packet: int, ts_ns: int, damaged: bool) -> None:
        """A DATA frame, its payload left in place: payload[pstart:pstart + length]."""
        data_start = data_end = -1
        if not damaged:
            try:
                data_start, data_end = fastparse.data_range(flags, sid, payload, pstart, length)
            except fastparse.FrameError:  # malformed: hyperframe words the violation
                frame = self._parse(side, header, payload[pstart:pstart + length], DATA, flags, sid, packet, ts_ns)
                if frame is not None:
                    payload, data_start, data_end = frame.data, 0, len(frame.data)
        self._data(side, sid, length, flags, payload, data_start, data_end, packet, ts_ns, damaged)

    def _other_frame(self, side: int, header: bytes, payload: bytes, ftype: int, flags: int, sid: int, packet: int,
                     first_packet: int, ts_ns: int, damaged: bool, record: Optional[dict]) -> None:
        frame: Optional[Parsed] = None
        if damaged:
            if ftype in (HEADERS, PUSH_PROMISE, CONTINUATION):
                self.hpack[side].lose_state()
        else:
            frame = self._parse(side, header, payload, ftype, flags, sid, packet, ts_ns)
        if ftype == HEADERS:
            self._headers(side, sid, flags, frame, packet, first_packet, ts_ns, record)
        elif ftype == CONTINUATION:
            self._continuation(side, sid, flags, frame, packet, ts_ns, record)
        elif ftype == RST_STREAM:
            if frame is not None:
                if record is not None:
                    record["error_code"] = error_name(frame.error_code)
                self._rst(side, sid, frame.error_code, packet, ts_ns)
        elif ftype == SETTINGS:
            if frame is not None and not flags & FLAG_ACK:
                self._settings(side, frame.settings, record)
        elif ftype == WINDOW_UPDATE:
            if frame is not None:
                self._window_update(side, sid, frame.window_increment, packet, ts_ns)
        elif ftype == PING:
            if frame is not None:
                self._ping(side, flags, bytes(frame.opaque_data), ts_ns)
        elif ftype == GOAWAY:
            if frame is not None:
                if record is not None:
                    record["error_code"] = error_name(frame.error_code)
                    record["last_stream_id"] = frame.last_stream_id
                self._goaway(side, frame, packet, ts_ns)
        elif ftype == PUSH_PROMISE:
            if frame is not None:
                self._push_promise(side, sid, flags, frame, packet, first_packet, ts_ns, record)
        elif ftype == PRIORITY:
            if frame is not None and frame.depends_on == sid:
                self._violation(packet, ts_ns, side, sid, "PRIORITY frame makes a stream depend on itself")

    def _parse(self, side: int, header: bytes, payload: bytes, ftype: int, flags: int, sid: int, packet: int,
               ts_ns: int) -> Optional[Parsed]:
        if ftype > CONTINUATION:
            return None  # unknown types are ignored (RFC 9113 §4.1), not rejected
        try:
            return fastparse.parse(ftype, flags, sid, payload)
        except fastparse.FrameError:
            pass  # malformed: hyperframe says how, in its own words
        try:
            frame, _ = Frame.parse_frame_header(memoryview(header))
            frame.parse_body(memoryview(payload))
            return fastparse.from_hyperframe(frame)
        except HyperframeError as e:
            self._violation(packet, ts_ns, side, sid or None,
                            f"malformed {type_name(ftype)} frame ({len(payload)} bytes): {e}")
        except (ValueError, IndexError, KeyError) as e:
            self._violation(packet, ts_ns, side, sid or None, f"malformed {type_name(ftype)} frame: {e!r}")
        if ftype in (HEADERS, PUSH_PROMISE, CONTINUATION):
            self.hpack[side].lose_state()
        return None

    def _violation(self, packet: int, ts_ns: int, side: Optional[int], sid: Optional[int], what: str) -> None:
        if len(self.violations) >= MAX_VIOLATIONS:
            self.violations_dropped += 1
            return
        self.violations.append(Violation(self.conn_id, sid, packet, ts_ns, side, what))
        if sid:
            self._violation_sids.add(sid)

    # ---- streams -------------------------------------------------------------------------

    def _open_stream(self, sid: int, packet: int, ts_ns: int, partial: bool = False) -> LiveStream:
        rec = StreamRecord(conn=self.conn_id, stream=sid, start_ns=ts_ns, start_packet=packet, partial=partial)
        ls = LiveStream(rec, self.initial_window[SERVER], self.initial_window[CLIENT])
        self.live[sid] = ls
        self.streams_seen += 1
        return ls

    def _lookup(self, side: int, sid: int, ftype: int, packet: int,
                ts_ns: int) -> tuple[Optional[LiveStream], Optional[StreamRecord]]:
        """(live stream or None, closed record or None) for a frame on `sid`."""
        ls = self.live.get(sid)
        if ls is not None:
            return ls, None
        rec = self.recent.get(sid)
        if rec is not None:
            return None, rec
        initiator = CLIENT if sid & 1 else SERVER
        if sid <= self.max_stream[initiator] and not self.partial:
            return None, None  # closed long ago and released
        if self.partial:
            ls = self._open_stream(sid, packet, ts_ns, partial=True)
            ls.state = OPEN
            for s in (CLIENT, SERVER):
                ls.msgs[s].lose()
                ls.rec.side(s).messages_known = False
            self.max_stream[initiator] = max(self.max_stream[initiator], sid)
            return ls, None
        return None, None

    def _count_stream_frame(self, side: int, sid: int, ftype: int, length: int, packet: int,
                            ts_ns: int) -> None:
        ls = self.live.get(sid)
        rec = ls.rec if ls is not None else self.recent.get(sid)
        if rec is None:
            return
        d = rec.side(side)
        d.frames += 1
        d.last_frame_ns = ts_ns
        # Frames on a stream that a GOAWAY's sender said it would not process.
        g = self.goaway_limit[CLIENT if sid & 1 else SERVER]
        if g is not None and sid > g.last_stream_id and ts_ns >= g.ts_ns:
            self._after_goaway(g, side, sid, ftype, packet, ts_ns, new_stream=False)

    def _transition(self, ls: LiveStream, event: int, side: int, packet: int, ts_ns: int) -> bool:
        nxt, err = transition(ls.state, event)
        if err is not None:
            self._violation(packet, ts_ns, side, ls.rec.stream, err)
            return False
        ls.state = nxt
        if nxt == CLOSED:
            self._close_stream(ls, packet, ts_ns)
        return True

    def _close_stream(self, ls: LiveStream, packet: int, ts_ns: int, reason: Optional[str] = None) -> None:
        rec = ls.rec
        rec.state = STATE_NAMES[ls.state]
        rec.end_ns = ts_ns
        rec.end_packet = packet
        if reason is None:
            reason = "reset" if rec.rst_by is not None else "complete"
        rec.end_reason = reason
        for s in (CLIENT, SERVER):
            m = ls.msgs[s]
            m.finish()
            d = rec.side(s)
            d.messages = m.count
            d.message_bytes = m.total
            d.message_sizes = m.sizes
            d.compressed_messages = m.compressed
            if m.lost:
                d.messages_known = False
            st = ls.stall[s]
            if st is not None:
                st.end_ns, st.end_packet = ts_ns, packet
        del self.live[rec.stream]
        self.recent[rec.stream] = rec
        if reason == "reset":
            self.ctx.results.stream_reset(rec, self._conn_view(), None if self._ended else self.tcp.last_packet)
        if len(self.recent) > RECENT_CLOSED:
            self._finalize(self.recent.popitem(last=False)[1])

    def _finalize(self, rec: StreamRecord) -> None:
        """No more late frames will be attributed to `rec`: its record is final."""
        if rec.stream in self._violation_sids:
            self._violation_methods[rec.stream] = rec.method
        self.ctx.results.stream_done(rec, self._conn_view(), None if self._ended else self.tcp.last_packet)

    def _late(self, rec: StreamRecord, side: int, ftype: int, length: int, packet: int, ts_ns: int) -> None:
        if len(rec.late) < MAX_LATE_FRAMES:
            rec.late.append(LateFrame(ts_ns, packet, side, ftype, length))
        else:
            rec.late_dropped += 1

    def _data(self, side: int, sid: int, length: int, flags: int, buf: bytes, data_start: int, data_end: int,
              packet: int, ts_ns: int, damaged: bool) -> None:
        """A DATA frame whose data is buf[data_start:data_end] (data_end -1: unreadable)."""
        if not sid:
            return  # hyperframe already reported DATA on stream 0
        ls, rec = self._lookup(side, sid, DATA, packet, ts_ns)
        if ls is None:
            self._frame_on_closed(side, sid, DATA, length, rec, packet, ts_ns)
            return
        rec = ls.rec
        if not self._transition(ls, data_event(side), side, packet, ts_ns):
            return
        d = rec.side(side)
        d.data_frames += 1
        d.data_bytes += length
        if d.first_data_ns is None:
            d.first_data_ns = ts_ns
        if data_end >= 0:
            ls.msgs[side].feed(buf, data_start, data_end)
        elif damaged:
            ls.msgs[side].lose()
        if side == SERVER and rec.deadline_ns is not None and ts_ns > rec.deadline_ns:
            self._after_deadline(rec, length, packet, ts_ns)
        self._flow_consume(ls, side, length, packet, ts_ns, bool(flags & FLAG_END_STREAM))
        if flags & FLAG_END_STREAM and sid in self.live:
            self._end_stream(ls, side, packet, ts_ns)

    @staticmethod
    def _after_deadline(rec: StreamRecord, length: int, packet: int, ts_ns: int) -> None:
        if len(rec.after_deadline) < MAX_LATE_FRAMES:
            rec.after_deadline.append((ts_ns, packet, length))
        else:
            rec.after_deadline_dropped += 1

    def _end_stream(self, ls: LiveStream, side: int, packet: int, ts_ns: int) -> None:
        ls.ended[side] = True
        d = ls.rec.side(side)
        d.end_stream_ns = ts_ns
        d.end_stream_packet = packet
        self._transition(ls, end_event(side), side, packet, ts_ns)

    def _frame_on_closed(self, side: int, sid: int, ftype: int, length: int, rec: Optional[StreamRecord],
                         packet: int, ts_ns: int) -> None:
        name = type_name(ftype)
        if rec is None:
            initiator = CLIENT if sid & 1 else SERVER
            if sid > self.max_stream[initiator]:
                self._violation(packet, ts_ns, side, sid, f"{name} on idle stream {sid} (never opened; RFC 9113 §5.1)")
            return
        if rec.rst_by is not None:
            self._late(rec, side, ftype, length, packet, ts_ns)
            if ftype == DATA:
                d = rec.side(side)
                d.data_bytes += length
                d.data_frames += 1
                if side == SERVER and rec.deadline_ns is not None and ts_ns > rec.deadline_ns:
                    self._after_deadline(rec, length, packet, ts_ns)
            return
        if ftype in (DATA, HEADERS) and rec.side(side).end_stream_ns is not None:
            self._violation(packet, ts_ns, side, sid,
                            f"{name} on stream {sid} after this endpoint's own END_STREAM (STREAM_CLOSED, RFC 9113 §5.1)")

    def _headers(self, side: int, sid: int, flags: int, frame: Optional[Parsed], packet: int, first_packet: int,
                 ts_ns: int, record: Optional[dict]) -> None:
        if not sid:
            return
        block = frame.data if frame is not None else None
        ls = self.live.get(sid)
        closed = self.recent.get(sid) if ls is None else None
        if ls is None and closed is None:
            if side == CLIENT and sid & 1 and sid > self.max_stream[CLIENT]:
                ls = self._new_client_stream(sid, first_packet, ts_ns, packet)
            elif side == CLIENT and sid & 1 and not self.partial:
                self._violation(packet, ts_ns, side, sid,
                                f"stream {sid} opened after stream {self.max_stream[CLIENT]}: stream ids must "
                                "increase (RFC 9113 §5.1.1)")
                if block is not None:  # keep the HPACK table in sync
                    self._block(side, sid, flags, block, None, packet, ts_ns, record)
                return
            else:
                ls, closed = self._lookup(side, sid, HEADERS, first_packet, ts_ns)
        if ls is None:
            self._frame_on_closed(side, sid, HEADERS, len(block or b""), closed, packet, ts_ns)
            if block is not None:
                # Decoded even so: the HPACK table must stay in sync, and trailers that cross a
                # reset (grpcio's DEADLINE_EXCEEDED) still tell how the call ended.
                late_ok = closed is not None and closed.rst_by is not None
                self._block(side, sid, flags, block, closed if late_ok else None, packet, ts_ns, record)
            return
        ok = self._transition(ls, header_event(side), side, packet, ts_ns)
        if block is not None:
            self._block(side, sid, flags, block, ls.rec if ok else None, packet, ts_ns, record)
        if flags & FLAG_END_STREAM and sid in self.live:
            if self.live[sid] is ls:
                self._end_stream(ls, side, packet, ts_ns)

    def _new_client_stream(self, sid: int, first_packet: int, ts_ns: int, packet: int) -> LiveStream:
        self.max_stream[CLIENT] = sid
        ls = self._open_stream(sid, first_packet, ts_ns)
        g = self.goaway_seen_by[CLIENT]
        if g is not None:
            self._after_goaway(g, CLIENT, sid, HEADERS, packet, ts_ns, new_stream=True)
        return ls

    def _block(self, side: int, sid: int, flags: int, block: bytes, rec: Optional[StreamRecord], packet: int,
               ts_ns: int, record: Optional[dict], promised: Optional[int] = None) -> None:
        if flags & FLAG_END_HEADERS:
            self._decode_block(side, sid, block, rec, packet, ts_ns, record, promised)
        else:
            self.pending_block[side] = [sid, [block], rec, promised]

    def _continuation(self, side: int, sid: int, flags: int, frame: Optional[Parsed], packet: int, ts_ns: int,
                      record: Optional[dict]) -> None:
        pending = self.pending_block[side]
        if pending is None:
            self._violation(packet, ts_ns, side, sid or None,
                            "CONTINUATION without a preceding HEADERS or PUSH_PROMISE (RFC 9113 §6.10)")
            return
        if frame is None:
            self.pending_block[side] = None
            return
        pending[1].append(frame.data)
        if flags & FLAG_END_HEADERS:
            self.pending_block[side] = None
            self._decode_block(side, sid, b"".join(pending[1]), pending[2], packet, ts_ns, record, pending[3])

    def _decode_block(self, side: int, sid: int, block: bytes, rec: Optional[StreamRecord], packet: int,
                      ts_ns: int, record: Optional[dict], promised: Optional[int]) -> None:
        headers, error, unknown = self.hpack[side].decode(block)
        if error is not None:
            self._violation(packet, ts_ns, side, sid, f"{error} (COMPRESSION_ERROR)")
        if record is not None and headers is not None:
            record["headers"] = [[n, v] for n, v in headers]
        if promised is not None:
            pls = self.live.get(promised)
            if pls is not None and headers is not None:
                self._request_headers(pls.rec, headers)
                pls.rec.headers_unknown = unknown
            return
        if rec is None:
            return
        if headers is None or unknown:
            rec.headers_unknown = True
        if headers is None:
            return
        if side == CLIENT:
            if rec.request_headers is None:
                self._request_headers(rec, headers)
            else:
                rec.trailers = headers  # client trailers: rare, kept
        else:
            self._response_headers(rec, headers)

    def _request_headers(self, rec: StreamRecord, headers: list[tuple[str, str]]) -> None:
        rec.request_headers = headers
        for name, value in headers:
            if name == ":path":
                rec.method = value
            elif name == ":method":
                rec.http_method = value
            elif name == ":authority":
                rec.authority = value
            elif name == "content-type":
                rec.content_type = value
                rec.grpc = value.startswith("application/grpc")
            elif name == "grpc-timeout":
                rec.grpc_timeout = value
                ns = parse_timeout_ns(value)
                if ns is not None:
                    rec.timeout_ns = ns
                    rec.deadline_ns = rec.start_ns + ns
            elif name == "grpc-encoding":
                rec.grpc_encoding = value
            elif name in TRACE_KEYS:
                rec.metadata[name] = value

    def _response_headers(self, rec: StreamRecord, headers: list[tuple[str, str]]) -> None:
        status = None
        grpc_status = None
        message = None
        for name, value in headers:
            if name == ":status":
                status = value
            elif name == "grpc-status":
                grpc_status = value
            elif name == "grpc-message":
                message = value
        if rec.response_headers is None and status is not None:
            rec.response_headers = headers
            try:
                rec.http_status = int(status)
            except ValueError:
                pass
            if grpc_status is not None:
                rec.trailers_only = True
                rec.trailers = headers
        elif rec.response_headers is None:
            rec.response_headers = headers
        else:
            rec.trailers = headers
        if grpc_status is not None:
            try:
                rec.grpc_status = int(grpc_status)
            except ValueError:
                rec.grpc_status = None
            # Trailers that crossed (or ignored) a reset: the client never acted on them.
            rec.status_after_reset = rec.rst_by is not None
        if message is not None:
            rec.grpc_message = decode_grpc_message(message)

    def _push_promise(self, side: int, sid: int, flags: int, frame: Parsed, packet: int, first_packet: int,
                      ts_ns: int, record: Optional[dict]) -> None:
        promised = frame.promised_stream_id
        if record is not None:
            record["promised_stream_id"] = promised
        if side != SERVER:
            self._violation(packet, ts_ns, side, sid, "PUSH_PROMISE sent by the client (RFC 9113 §8.4)")
        elif promised <= self.max_stream[SERVER] or promised & 1:
            self._violation(packet, ts_ns, side, sid, f"PUSH_PROMISE with invalid promised stream id {promised}")
        else:
            self.max_stream[SERVER] = promised
            pls = self._open_stream(promised, first_packet, ts_ns)
            pls.state = RESERVED
        self._block(side, sid, flags, frame.data, None, packet, ts_ns, record, promised)

    def _rst(self, side: int, sid: int, code: int, packet: int, ts_ns: int) -> None:
        ls, rec = self._lookup(side, sid, RST_STREAM, packet, ts_ns)
        if ls is None:
            if rec is not None:
                rec.rst_count += 1
                if rec.rst_by is not None:
                    self._late(rec, side, RST_STREAM, 4, packet, ts_ns)
                else:
                    # A reset after both sides ended: harmless, but note who reset and why.
                    rec.rst_by, rec.rst_code, rec.rst_ns, rec.rst_packet = side, code, ts_ns, packet
            else:
                self._frame_on_closed(side, sid, RST_STREAM, 4, None, packet, ts_ns)
            return
        rec = ls.rec
        rec.rst_count += 1
        if rec.rst_by is None:
            rec.rst_by, rec.rst_code, rec.rst_ns, rec.rst_packet = side, code, ts_ns, packet
        self._transition(ls, rst_event(side), side, packet, ts_ns)

    # ---- connection-level frames -------------------------------------------------------

    def _settings(self, side: int, settings: dict, record: Optional[dict]) -> None:
        named = {}
        for key, value in settings.items():
            named[_SETTING_NAMES.get(key, f"0x{key:x}")] = value
            if key == SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.initial_window[side]
                self.initial_window[side] = value
                peer = 1 - side  # the window governs what the peer may send
                for ls in self.live.values():
                    ls.window[peer] += delta
            elif key == SETTINGS_HEADER_TABLE_SIZE:
                # The announcing side decodes what the peer sends.
                dec = self.hpack[1 - side]
                dec.announced_max = max(dec.announced_max, value)
            elif key == SETTINGS_MAX_FRAME_SIZE:
                sp = self.splitters[1 - side]
                if sp is not None and not self.partial:
                    sp.max_len = max(sp.max_len, value)
        self.settings[side].update(named)
        if record is not None:
            record["settings"] = named

    def _flow_consume(self, ls: LiveStream, side: int, length: int, packet: int, ts_ns: int,
                      end_stream: bool) -> None:
        if not length or not self.flow_known:
            return
        self.conn_window[side] -= length
        ls.window[side] -= length
        if end_stream:
            return  # a sender that has finished is not waiting for a window
        if ls.window[side] <= 0 and ls.stall[side] is None:
            st = Stall(side, ls.rec.stream, ts_ns, packet)
            ls.stall[side] = st
            ls.rec.stalls.append(st)
        if self.conn_window[side] <= 0 and self.conn_stall[side] is None:
            st = Stall(side, None, ts_ns, packet)
            self.conn_stall[side] = st
            if len(self.stalls) < MAX_RECORDED:
                self.stalls.append(st)

    def _window_update(self, side: int, sid: int, inc: int, packet: int, ts_ns: int) -> None:
        if inc == 0:
            self._violation(packet, ts_ns, side, sid or None, "WINDOW_UPDATE with a zero increment (RFC 9113 §6.9)")
            return
        peer = 1 - side  # the update lets the peer send more
        if not sid:
            self.conn_window[peer] += inc
            st = self.conn_stall[peer]
            if st is not None and self.conn_window[peer] > 0:
                st.end_ns, st.end_packet = ts_ns, packet
                self.conn_stall[peer] = None
            return
        ls = self.live.get(sid)
        if ls is None:
            if sid not in self.recent:
                initiator = CLIENT if sid & 1 else SERVER
                if sid > self.max_stream[initiator] and not self.partial:
                    self._violation(packet, ts_ns, side, sid, f"WINDOW_UPDATE on idle stream {sid} (RFC 9113 §5.1)")
            return
        ls.window[peer] += inc
        st = ls.stall[peer]
        if st is not None and ls.window[peer] > 0:
            st.end_ns, st.end_packet = ts_ns, packet
            ls.stall[peer] = None

    def _ping(self, side: int, flags: int, opaque: bytes, ts_ns: int) -> None:
        if flags & FLAG_ACK:
            sent = self.pings.pop((1 - side, opaque), None)
            if sent is not None:
                rtt = ts_ns - sent
                if self.ping_rtt_ns is None or rtt < self.ping_rtt_ns:
                    self.ping_rtt_ns = rtt
        elif len(self.pings) < 64:
            self.pings[(side, opaque)] = ts_ns

    def _goaway(self, side: int, frame: Parsed, packet: int, ts_ns: int) -> None:
        last = frame.last_stream_id
        debug = bytes(frame.additional_data).decode("utf-8", "replace")
        g = Goaway(side, packet, ts_ns, last, frame.error_code, debug)
        receiver = 1 - side
        # Streams the receiver initiated above last_stream_id were not (and will not be) processed.
        for sid, ls in self.live.items():
            if sid > last and ((sid & 1) == 1) == (receiver == CLIENT):
                g.affected.append(sid)
                if ls.rec.goaway_packet is None:
                    ls.rec.goaway_packet = packet
        self.goaways.append(g)
        if self.goaway_seen_by[receiver] is None:
            self.goaway_seen_by[receiver] = g
        limit = self.goaway_limit[receiver]
        if limit is None or last < limit.last_stream_id:
            # A later GOAWAY may lower last_stream_id (graceful shutdown's second step); never raise it.
            self.goaway_limit[receiver] = g

    def _after_goaway(self, g: Goaway, side: int, sid: int, ftype: int, packet: int, ts_ns: int,
                      new_stream: bool) -> None:
        if not new_stream and ftype == HEADERS and self.after_goaway:
            last = self.after_goaway[-1]
            if last["new_stream"] and last["stream"] == sid and last["packet"] == packet:
                return  # the HEADERS that opened this stream, already recorded as a new stream
        if len(self.after_goaway) < MAX_RECORDED:
            self.after_goaway.append({"goaway_packet": g.packet, "goaway_ns": g.ts_ns, "last_stream_id": g.last_stream_id,
                                      "side": side, "stream": sid, "type": ftype, "packet": packet, "ts_ns": ts_ns,
                                      "new_stream": new_stream})

    # ---- end -----------------------------------------------------------------------------

    def _finish(self, ts_ns: int) -> None:
        tcp = self.tcp
        end_packet: Optional[int]
        if tcp.close == "open":
            reason, end_packet, end_ns = "capture-ended", tcp.last_packet, tcp.end_ns
        else:
            reason, end_packet, end_ns = "connection-closed", tcp.close_packet, tcp.end_ns
        if tcp.flushed:
            self.notes.append("ended early, still open: more connections were open at once than h2scope "
                              "tracks; what followed on the wire is a new connection")
        record = self._conn_view(final=True)  # before streams close: their rules read how it ended
        for ls in list(self.live.values()):
            if ls.rec.goaway_packet is not None and reason == "connection-closed":
                r = "goaway"
            else:
                r = reason
            self._close_stream(ls, end_packet or tcp.last_packet, end_ns, r)
        for sp, side in ((self.splitters[CLIENT], CLIENT), (self.splitters[SERVER], SERVER)):
            if sp is not None:
                if sp.pending and tcp.close == "open":
                    self.notes.append(f"{DIR_NAMES[side]}: capture ended inside a frame ({sp.pending} bytes)")
                if sp.skipped:
                    self.notes.append(f"{DIR_NAMES[side]}: {sp.skipped} bytes could not be framed as HTTP/2")
        for side in (CLIENT, SERVER) if self.hpack else ():
            if self.hpack[side].partial and self.hpack[side].unknown_refs:
                self.notes.append(f"{DIR_NAMES[side]}: {self.hpack[side].unknown_refs} header fields "
                                  "referenced HPACK state not in the capture (shown as unknown)")
        for rec in self.recent.values():
            self._finalize(rec)
        if self.violations_dropped:
            record.notes.append(f"{self.violations_dropped} more protocol violations were counted, not listed")
        self.ctx.results.connection_done(record, self.violations, self._violation_methods,
                                         None if self._ended else self.tcp.last_packet)
        # TCP remembers closed connections for a while to absorb trailing ACKs, and with
        # them this sink: keep nothing of the decoding state (an HPACK memo, splitters).
        self.live.clear()
        self.recent.clear()
        self.hpack = []
        self.splitters = [None, None]
        self._sniff = [b"", b""]
        self._chunks = [[], []]
        self.pending_block = [None, None]
        self.pings.clear()
        self.violations = []
        self._violation_methods = {}
        self._violation_sids = set()
        self.record = None
        self.goaways = []
        self.after_goaway = []
        self.stalls = []
        self.notes = []
        self.settings = [{}, {}]

    def _conn_view(self, final: bool = False) -> ConnectionRecord:
        """The connection's record: built once, its RTT kept current while streams finish
        (the rules read it), and the rest filled in when the connection ends."""
        tcp = self.tcp
        rec = self.record
        if rec is None:
            rec = self.record = ConnectionRecord(
                id=tcp.id, client=tcp.client, server=tcp.server, server_port=tcp.server_port,
                role_source=tcp.role_source, start_ns=tcp.start_ns, end_ns=tcp.end_ns,
                first_packet=tcp.first_packet, last_packet=tcp.last_packet, close=tcp.close,
                close_by=tcp.close_by, close_packet=tcp.close_packet, rtt_ns=None, rtt_source=None,
                protocol=self.protocol, packets=[0, 0], bytes=[0, 0], retransmissions=[0, 0], gaps=[0, 0],
                gap_bytes=[0, 0], conflicts=[0, 0])
        if rec.rtt_source != "tcp-handshake":
            if tcp.rtt_ns is not None:
                rec.rtt_ns, rec.rtt_source = tcp.rtt_ns, "tcp-handshake"
            elif self.ping_rtt_ns is not None:
                rec.rtt_ns, rec.rtt_source = self.ping_rtt_ns, "http2-ping"
        if not final:
            return rec
        c, s = tcp.direction(CLIENT), tcp.direction(SERVER)
        rec.client, rec.server, rec.server_port = tcp.client, tcp.server, tcp.server_port
        rec.role_source, rec.start_ns, rec.end_ns = tcp.role_source, tcp.start_ns, tcp.end_ns
        rec.first_packet, rec.last_packet = tcp.first_packet, tcp.last_packet
        rec.close, rec.close_by, rec.close_packet = tcp.close, tcp.close_by, tcp.close_packet
        rec.protocol = self.protocol
        rec.packets, rec.bytes = [c.packets, s.packets], [c.delivered, s.delivered]
        rec.retransmissions, rec.gaps = [c.retransmissions, s.retransmissions], [c.gap_count, s.gap_count]
        rec.gap_bytes, rec.conflicts = [c.gap_bytes, s.gap_bytes], [c.conflicts, s.conflicts]
        rec.streams, rec.goaways, rec.settings, rec.stalls = self.streams_seen, self.goaways, self.settings, self.stalls
        rec.notes = self.notes
        if self.hpack:
            rec.hpack_blocks = self.hpack[0].blocks + self.hpack[1].blocks
            rec.hpack_memo_hits = self.hpack[0].memo_hits + self.hpack[1].memo_hits
        rec.after_goaway = self.after_goaway
        rec.tls_alpn = self.tls_alpn
        return rec


_SETTING_NAMES: Final = {
    0x1: "HEADER_TABLE_SIZE", 0x2: "ENABLE_PUSH", 0x3: "MAX_CONCURRENT_STREAMS", 0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE", 0x6: "MAX_HEADER_LIST_SIZE", 0x8: "ENABLE_CONNECT_PROTOCOL", 0x9: "NO_RFC7540_PRIORITIES",
}
