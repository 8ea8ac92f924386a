"""Tiny HTTP/2 peer toolkit over real loopback sockets: h2 for the well-behaved parts,
hyperframe/hpack raw frames for what a real stack refuses to do.

A Peer wraps one socket and one h2.connection.H2Connection.  Incoming bytes are split into
frames here first, so a scenario can drop chosen frames before h2 sees them (e.g. a client
that ignores frames on a stream it has reset, as RFC 9113 §5.1 allows, or that pretends it
never saw a GOAWAY).  Only non-header-block frames may be dropped, so the HPACK decoder
stays in sync.
"""
from __future__ import annotations

import os
import select
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import DataFrame, GoAwayFrame, HeadersFrame, RstStreamFrame

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "grpcio"))
import demo_pb2  # noqa: E402

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
HEADER_FRAME_TYPES = (0x1, 0x5, 0x9)  # HEADERS, PUSH_PROMISE, CONTINUATION


def grpc_message(text, seq=0, payload=b""):
    body = demo_pb2.Msg(text=text, seq=seq, payload=payload).SerializeToString()
    return b"\x00" + struct.pack(">I", len(body)) + body


def request_headers(port, method="ServerStream", timeout="200m", extra=()):
    h = [(":method", "POST"), (":scheme", "http"), (":path", f"/demo.Demo/{method}"),
         (":authority", f"127.0.0.1:{port}"), ("content-type", "application/grpc"),
         ("te", "trailers")]
    if timeout is not None:
        h.append(("grpc-timeout", timeout))
    h.append(("user-agent", "h2scope-peer (python-h2)"))
    h.extend(extra)
    return h


RESPONSE_HEADERS = [(":status", "200"), ("content-type", "application/grpc")]


def trailers(status=0, message=None):
    t = [("grpc-status", str(status))]
    if message is not None:
        t.append(("grpc-message", message))
    return t


class Peer:
    def __init__(self, sock, client_side, name=None):
        cfg = h2.config.H2Configuration(client_side=client_side, header_encoding="utf-8",
                                        validate_outbound_headers=False,
                                        validate_inbound_headers=False,
                                        normalize_inbound_headers=False)
        self.conn = h2.connection.H2Connection(cfg)
        self.sock = sock
        self.client_side = client_side
        self.name = name or ("client" if client_side else "server")
        self.buf = b""
        self.preface_done = client_side
        self.eof = False
        self.drop = lambda ftype, flags, sid: False
        self.dropped = []

    # -- sending
    def flush(self):
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def send_raw(self, *frames):
        self.flush()
        self.sock.sendall(b"".join(f.serialize() for f in frames))

    def start(self):
        self.conn.initiate_connection()
        self.flush()

    # -- receiving
    def poll(self, timeout):
        """Wait up to timeout for bytes; feed complete frames to h2; return events."""
        if self.eof:
            time.sleep(timeout)
            return []
        r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return []
        try:
            data = self.sock.recv(65536)
        except ConnectionResetError:
            data = b""
        if not data:
            self.eof = True
            return []
        self.buf += data
        events = []
        if not self.preface_done:
            if len(self.buf) < len(PREFACE):
                return []
            events += self.conn.receive_data(self.buf[:len(PREFACE)])
            self.buf = self.buf[len(PREFACE):]
            self.preface_done = True
        while len(self.buf) >= 9:
            length = int.from_bytes(self.buf[:3], "big")
            if len(self.buf) < 9 + length:
                break
            frame, self.buf = self.buf[:9 + length], self.buf[9 + length:]
            ftype, flags = frame[3], frame[4]
            sid = int.from_bytes(frame[5:9], "big") & 0x7FFFFFFF
            if ftype not in HEADER_FRAME_TYPES and self.drop(ftype, flags, sid):
                self.dropped.append((ftype, sid))
                continue
            events += self.conn.receive_data(frame)
        self.flush()
        return events

    def pump(self, seconds):
        """Process incoming frames for `seconds`; return all events."""
        end = time.monotonic() + seconds
        events = []
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return events
            events += self.poll(min(left, 0.005))

    def wait_for(self, pred, timeout=5.0):
        """Pump until an event matches pred; return (match, all events)."""
        end = time.monotonic() + timeout
        events = []
        while time.monotonic() < end:
            new = self.poll(0.005)
            events += new
            for ev in new:
                if pred(ev):
                    return ev, events
            if self.eof:
                break
        raise TimeoutError(f"{self.name}: no matching event; got {events}")

    def drain_until_eof(self, timeout=5.0):
        end = time.monotonic() + timeout
        events = []
        while not self.eof and time.monotonic() < end:
            events += self.poll(0.01)
        return events

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def listen(port):
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", port))
    ls.listen(4)
    return ls


def connect(port):
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def raw_data(sid, payload, end_stream=False):
    f = DataFrame(sid, data=payload)
    if end_stream:
        f.flags.add("END_STREAM")
    return f


def raw_rst(sid, code):
    f = RstStreamFrame(sid)
    f.error_code = code
    return f


def raw_goaway(last_stream_id, code=0, debug=b""):
    f = GoAwayFrame(0)
    f.last_stream_id = last_stream_id
    f.error_code = code
    f.additional_data = debug
    return f


def raw_headers_unindexed(peer, sid, headers, end_stream=True):
    """A HEADERS frame encoded with never-indexed literals, so neither HPACK dynamic table
    changes; safe to send behind h2's back and safe for the peer to ignore."""
    from hpack import NeverIndexedHeaderTuple
    block = peer.conn.encoder.encode([NeverIndexedHeaderTuple(n, v) for n, v in headers])
    f = HeadersFrame(sid, data=block)
    f.flags.add("END_HEADERS")
    if end_stream:
        f.flags.add("END_STREAM")
    return f


E = h2.events
