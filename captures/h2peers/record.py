"""Record misbehaving-peer captures.  Run:  /tmp/venv/bin/python captures/h2peers/record.py [name ...]

Each scenario runs a server thread and a client on 127.0.0.1:PORT over real sockets,
captured with tcpdump -i lo (see ../record_util.py).  Both peers are python-h2
connections; raw hyperframe frames are used only where the misbehaviour needs them.
"""
import os
import socket
import struct
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from record_util import capture  # noqa: E402
from peers import (E, Peer, RESPONSE_HEADERS, connect, grpc_message, listen,  # noqa: E402
                   raw_data, raw_goaway, raw_headers_unindexed, raw_rst, request_headers,
                   trailers)

PORT = 50071
CANCEL, INTERNAL_ERROR, REFUSED_STREAM, NO_ERROR = 8, 2, 7, 0


def out(name):
    return os.path.join(HERE, name)


class ServerThread(threading.Thread):
    def __init__(self, ls, fn):
        super().__init__(daemon=True)
        self.ls, self.fn, self.exc = ls, fn, None

    def run(self):
        try:
            s, _ = self.ls.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            p = Peer(s, client_side=False)
            p.start()
            self.fn(p)
        except BaseException as e:  # re-raised in the main thread
            self.exc = e


def run(name, server_fn, client_fn, client_setup=None):
    print(name)
    ls = listen(PORT)
    try:
        with capture(out(name), PORT):
            st = ServerThread(ls, server_fn)
            st.start()
            c = Peer(connect(PORT), client_side=True)
            if client_setup:  # e.g. change the client's initial SETTINGS before start()
                client_setup(c)
            c.start()
            client_fn(c)
            st.join(10)
            if st.exc:
                raise st.exc
            assert not st.is_alive(), "server thread hung"
    finally:
        ls.close()
    time.sleep(0.2)


def finish_client(c):
    """Client half-closes (FIN) and waits for the server's FIN, reading everything."""
    c.flush()
    c.sock.shutdown(socket.SHUT_WR)
    c.drain_until_eof()
    c.close()


def finish_server(p):
    """Server waits for the client's FIN, then closes (FIN)."""
    p.drain_until_eof()
    p.flush()
    p.close()


def answer_unary(p, sid, text="ok"):
    p.conn.send_headers(sid, RESPONSE_HEADERS)
    p.conn.send_data(sid, grpc_message(text))
    p.conn.send_headers(sid, trailers(0, ""), end_stream=True)
    p.flush()


# --------------------------------------------------------------------------- zombie_server
def zombie_server():
    def server(p):
        ev, _ = p.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        p.conn.send_headers(1, RESPONSE_HEADERS)
        p.flush()
        seq, reset_at, zombies = 0, None, 0
        while zombies < 10:
            for e in p.pump(0.02 if reset_at is None else 0.03):
                if isinstance(e, E.StreamReset) and e.stream_id == 1:
                    reset_at = time.monotonic()
                if isinstance(e, E.StreamEnded) and e.stream_id == 3:
                    answer_unary(p, 3)
            if reset_at is None:
                p.conn.send_data(1, grpc_message(f"item {seq}", seq))
                p.flush()
            else:
                # h2 refuses to send on a reset stream: write the frame ourselves
                p.send_raw(raw_data(1, grpc_message(f"item {seq}", seq)))
                zombies += 1
            seq += 1
        # ...and finally trailers, as if nothing had happened
        p.send_raw(raw_headers_unindexed(p, 1, trailers(0, "")))
        finish_server(p)

    def client(c):
        reset = set()
        # ignore frames on streams we reset (RFC 9113 §5.1 "closed"), do not answer them
        c.drop = lambda t, f, sid: sid in reset
        c.conn.send_headers(1, request_headers(PORT, "ServerStream", "200m"))
        c.conn.send_data(1, grpc_message("interval:0.02", 100), end_stream=True)
        c.flush()
        n = 0
        while n < 3:
            _, evs = c.wait_for(lambda e: isinstance(e, E.DataReceived) and e.stream_id == 1)
            n += sum(isinstance(e, E.DataReceived) and e.stream_id == 1 for e in evs)
        c.conn.reset_stream(1, CANCEL)
        reset.add(1)
        c.flush()
        c.pump(0.04)
        # a second call on the same connection, completes normally
        c.conn.send_headers(3, request_headers(PORT, "Unary", "1S"))
        c.conn.send_data(3, grpc_message("hello", 1), end_stream=True)
        c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 3)
        c.pump(0.4)  # zombie DATA keeps arriving on stream 1 and is ignored
        assert c.dropped, "expected frames after our RST_STREAM"
        finish_client(c)

    run("zombie_server.pcap", server, client)


# ---------------------------------------------------------------------- frames_after_goaway
def frames_after_goaway():
    def server(p):
        p.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        p.conn.send_headers(1, RESPONSE_HEADERS)
        p.conn.send_data(1, grpc_message("item 0", 0))
        p.flush()
        # GOAWAY behind h2's back so h2 still lets us talk on the connection
        p.send_raw(raw_goaway(1, NO_ERROR))
        done = set()
        end = time.monotonic() + 1.0
        while time.monotonic() < end and done != {3, 5}:
            for e in p.pump(0.01):
                if isinstance(e, E.StreamEnded) and e.stream_id == 3:
                    answer_unary(p, 3, "served despite GOAWAY")   # server still answers 3
                    done.add(3)
                if isinstance(e, E.StreamEnded) and e.stream_id == 5:
                    p.conn.reset_stream(5, REFUSED_STREAM)
                    p.flush()
                    done.add(5)
        p.conn.send_data(1, grpc_message("item 1", 1))
        p.conn.send_headers(1, trailers(0, ""), end_stream=True)
        p.flush()
        finish_server(p)

    def client(c):
        # a client that does not look at GOAWAY: drop it before h2 sees it
        c.drop = lambda t, f, sid: t == 0x7
        c.conn.send_headers(1, request_headers(PORT, "ServerStream", "1S"))
        c.conn.send_data(1, grpc_message("interval:0", 2), end_stream=True)
        c.flush()
        deadline = time.monotonic() + 2
        while not c.dropped and time.monotonic() < deadline:
            c.pump(0.01)
        assert c.dropped, "GOAWAY never arrived"
        # Keep using the connection well after the GOAWAY arrived (beyond any in-flight grace).
        c.pump(0.05)
        for sid in (3, 5):  # new streams after GOAWAY(last_stream_id=1)
            c.conn.send_headers(sid, request_headers(PORT, "Unary", "500m"))
            c.conn.send_data(sid, grpc_message(f"after goaway {sid}", sid), end_stream=True)
            c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        c.pump(0.05)
        finish_client(c)

    run("frames_after_goaway.pcap", server, client)


# ----------------------------------------------------------------------- data_after_own_rst
def data_after_own_rst():
    def server(p):
        p.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        p.conn.send_headers(1, RESPONSE_HEADERS)
        for i in range(2):
            p.conn.send_data(1, grpc_message(f"item {i}", i))
            p.flush()
            p.pump(0.02)
        p.conn.reset_stream(1, INTERNAL_ERROR)
        p.flush()
        for i in range(2, 7):  # DATA on the stream we ourselves reset
            p.pump(0.02)
            p.send_raw(raw_data(1, grpc_message(f"item {i}", i)))
        finish_server(p)

    def client(c):
        c.conn.send_headers(1, request_headers(PORT, "ServerStream", "1S"))
        c.conn.send_data(1, grpc_message("interval:0.02", 10), end_stream=True)
        c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamReset) and e.stream_id == 1)
        c.pump(0.25)  # h2 answers each late DATA frame with RST_STREAM(STREAM_CLOSED)
        finish_client(c)

    run("data_after_own_rst.pcap", server, client)


# -------------------------------------------------------------------------- invalid_timeout
TIMEOUTS = ["100", "1.5S", "123456789m", "10x", "5S"]


def invalid_timeout():
    def server(p):
        ended = 0
        while ended < len(TIMEOUTS):
            for e in p.pump(0.01):
                if isinstance(e, E.StreamEnded):
                    answer_unary(p, e.stream_id)
                    ended += 1
        finish_server(p)

    def client(c):
        for i, t in enumerate(TIMEOUTS):
            sid = 1 + 2 * i
            c.conn.send_headers(sid, request_headers(PORT, "Unary", t))
            c.conn.send_data(sid, grpc_message(f"timeout {t}", i), end_stream=True)
            c.flush()
            c.wait_for(lambda e, s=sid: isinstance(e, E.StreamEnded) and e.stream_id == s)
        finish_client(c)

    run("invalid_timeout.pcap", server, client)


# ----------------------------------------------------------------------------- cancel_storm
N_STORM = 30


def cancel_storm():
    def server(p):
        open_, reset, seq = set(), set(), 0
        end = None
        while True:
            for e in p.pump(0.01):
                if isinstance(e, E.StreamEnded):
                    p.conn.send_headers(e.stream_id, RESPONSE_HEADERS)
                    open_.add(e.stream_id)
                if isinstance(e, E.StreamReset):
                    reset.add(e.stream_id)
            for sid in sorted(open_ - reset):  # one message every 10 ms on every live stream
                p.conn.send_data(sid, grpc_message(f"item {seq}", seq))
            seq += 1
            p.flush()
            if len(reset) == N_STORM:
                end = end or time.monotonic()
                if time.monotonic() - end > 0.1:
                    break
        finish_server(p)

    def client(c):
        sids = [1 + 2 * i for i in range(N_STORM)]
        for sid in sids:
            c.conn.send_headers(sid, request_headers(PORT, "ServerStream", "5S"))
            c.conn.send_data(sid, grpc_message("interval:0.01", 1000), end_stream=True)
        c.flush()
        seen = set()
        end = time.monotonic() + 3
        while len(seen) < N_STORM and time.monotonic() < end:
            for e in c.poll(0.01):
                if isinstance(e, E.DataReceived):
                    seen.add(e.stream_id)
                    c.conn.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
        c.pump(0.03)
        reset = set()
        c.drop = lambda t, f, sid: sid in reset  # ignore in-flight DATA on reset streams
        for sid in sids:  # 30 resets spread over ~50 ms
            c.conn.reset_stream(sid, CANCEL)
            reset.add(sid)
            c.flush()
            c.pump(0.0017)
        c.pump(0.2)
        finish_client(c)

    run("cancel_storm.pcap", server, client)


# -------------------------------------------------------------------------------- conn_lost
def conn_lost():
    def server(p):
        got = set()
        while len(got) < 3:
            for e in p.pump(0.01):
                if isinstance(e, E.StreamEnded):
                    p.conn.send_headers(e.stream_id, RESPONSE_HEADERS)  # headers only
                    p.flush()
                    got.add(e.stream_id)
        p.pump(0.1)
        # abortive close: SO_LINGER 0 makes close() send RST instead of FIN
        p.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        p.sock.close()

    def client(c):
        for i, sid in enumerate((1, 3, 5)):
            c.conn.send_headers(sid, request_headers(PORT, "ServerStream", "2S"))
            c.conn.send_data(sid, grpc_message("interval:1", 10), end_stream=True)
        c.flush()
        c.drain_until_eof(3)  # ECONNRESET counts as EOF here
        c.close()

    run("conn_lost.pcap", server, client)


# ----------------------------------------------------------------------------- continuation
def continuation():
    import random
    rnd = random.Random(20240601)
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    big = [(f"x-big-{i}", "".join(rnd.choice(alphabet) for _ in range(14000)))
           for i in range(3)]

    def server(p):
        done = set()
        while done != {1, 3}:
            for e in p.pump(0.01):
                if isinstance(e, E.StreamEnded) and e.stream_id == 1:
                    # ~40 KB header block > 16384 max frame size: h2 splits it into
                    # HEADERS + CONTINUATION + CONTINUATION
                    p.conn.send_headers(1, RESPONSE_HEADERS + big)
                    p.conn.send_data(1, grpc_message("big metadata", 1))
                    p.conn.send_headers(1, trailers(0, ""), end_stream=True)
                    p.flush()
                    done.add(1)
                if isinstance(e, E.StreamEnded) and e.stream_id == 3:
                    answer_unary(p, 3, "priority+padding")
                    done.add(3)
        finish_server(p)

    def client(c):
        c.conn.send_headers(1, request_headers(PORT, "Unary", "2S"))
        c.conn.send_data(1, grpc_message("give me big metadata", 1), end_stream=True)
        c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        # HEADERS with the PRIORITY flag, then padded DATA
        c.conn.send_headers(3, request_headers(PORT, "Unary", "2S"), priority_weight=201,
                            priority_depends_on=0, priority_exclusive=True)
        c.conn.send_data(3, grpc_message("padded", 3), end_stream=True, pad_length=32)
        c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 3)
        finish_client(c)

    run("continuation.pcap", server, client)


# ---------------------------------------------------------------------- protocol_violations
def protocol_violations():
    """A client that breaks RFC 9113 in many ways on one connection, against a lenient raw
    server (an h2 server would close at the first violation). Raw sockets on both sides;
    every frame is built with hyperframe or by hand where hyperframe refuses."""
    from hpack import Encoder
    from hyperframe.frame import (ContinuationFrame, DataFrame, HeadersFrame, PingFrame, SettingsFrame,
                                  WindowUpdateFrame)

    preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

    def headers_frame(enc, sid, hdrs, flags=("END_HEADERS",)):
        f = HeadersFrame(sid, data=enc.encode(hdrs))
        for flag in flags:
            f.flags.add(flag)
        return f.serialize()

    def raw_frame(ftype, flags, sid, payload):
        return struct.pack("!BHBBI", len(payload) >> 16, len(payload) & 0xFFFF, ftype, flags, sid) + payload

    def server(sock):
        enc = Encoder()
        sock.sendall(SettingsFrame(0).serialize())
        buf = b""
        answered = acked = False
        sock.settimeout(5)
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            buf += chunk
            if not acked and len(buf) >= len(preface) + 9:
                ack = SettingsFrame(0)
                ack.flags.add("ACK")
                sock.sendall(ack.serialize())
                acked = True
            if not answered and b"/demo.Demo/Unary" in buf or (not answered and len(buf) > 60):
                answered = True
                sock.sendall(headers_frame(enc, 1, [(":status", "200"), ("content-type", "application/grpc")])
                             + DataFrame(1, data=grpc_message("ok", 0)).serialize()
                             + headers_frame(enc, 1, [("grpc-status", "0")], ("END_HEADERS", "END_STREAM")))
        sock.close()

    def client(sock):
        enc = Encoder()
        req = [(":method", "POST"), (":scheme", "http"), (":path", "/demo.Demo/Unary"),
               (":authority", f"127.0.0.1:{PORT}"), ("content-type", "application/grpc"), ("te", "trailers"),
               ("grpc-timeout", "1S")]
        sock.sendall(preface + SettingsFrame(0).serialize())
        time.sleep(0.02)
        step = lambda data: (sock.sendall(data), time.sleep(0.005))  # noqa: E731
        step(headers_frame(enc, 1, req) + DataFrame(1, data=grpc_message("hi", 1), flags=["END_STREAM"]).serialize())
        time.sleep(0.05)
        step(DataFrame(7, data=b"idle stream data").serialize())                       # DATA on idle stream 7
        step(raw_frame(0x8, 0, 0, struct.pack("!I", 0)))                               # WINDOW_UPDATE +0
        step(raw_frame(0x6, 0, 0, b"1234567"))                                         # PING of 7 bytes
        hdr = HeadersFrame(3, data=enc.encode(req)[:10])                              # HEADERS without END_HEADERS
        step(hdr.serialize() + PingFrame(0, opaque_data=b"12345678").serialize())     # ... interrupted by a PING
        cont = ContinuationFrame(9, data=b"\x82")
        cont.flags.add("END_HEADERS")
        step(cont.serialize())                                                         # CONTINUATION out of nowhere
        step(headers_frame(enc, 4, req, ("END_HEADERS", "END_STREAM")))               # client uses even stream 4
        step(headers_frame(enc, 15, req, ("END_HEADERS", "END_STREAM")))              # stream 15, then ...
        step(headers_frame(enc, 13, req, ("END_HEADERS", "END_STREAM")))              # ... 13: ids must increase
        step(raw_frame(0x1, 0x5, 17, b"\xbf\x7f"))                                    # HPACK index nobody has
        wu = WindowUpdateFrame(0, window_increment=1)
        step(wu.serialize())
        time.sleep(0.05)
        sock.shutdown(socket.SHUT_WR)
        sock.settimeout(5)
        while sock.recv(65536):
            pass
        sock.close()

    name = "protocol_violations.pcap"
    print(name)
    ls = listen(PORT)
    try:
        with capture(out(name), PORT):
            t = threading.Thread(target=lambda: server(ls.accept()[0]), daemon=True)
            t.start()
            client(connect(PORT))
            t.join(10)
            assert not t.is_alive(), "server thread hung"
    finally:
        ls.close()
    time.sleep(0.2)


# ------------------------------------------------------------------------------- flow_stall
STALL_WINDOW = 16384
STALL_SECONDS = 0.2
STALL_PAYLOAD = 100_000


def flow_stall():
    """The client announces SETTINGS_INITIAL_WINDOW_SIZE=16384 and sends no WINDOW_UPDATE
    for ~200 ms; the server's ~100 KB response exhausts the stream window after one DATA
    frame and the server (h2 enforces flow control) waits for credit."""
    from h2.settings import SettingCodes, Settings

    def client_setup(c):
        vals = dict(c.conn.local_settings.items())
        vals[SettingCodes.INITIAL_WINDOW_SIZE] = STALL_WINDOW
        c.conn.local_settings = Settings(client=True, initial_values=vals)

    stalls = []

    def server(p):
        p.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        p.conn.send_headers(1, RESPONSE_HEADERS)
        p.flush()
        pending = grpc_message("big", 1, payload=b"Z" * STALL_PAYLOAD)
        while pending:
            n = min(p.conn.local_flow_control_window(1), p.conn.max_outbound_frame_size,
                    len(pending))
            if n == 0:  # window exhausted: wait for the peer's WINDOW_UPDATE
                t0 = time.monotonic()
                p.wait_for(lambda e: isinstance(e, E.WindowUpdated) and e.stream_id == 1)
                stalls.append(time.monotonic() - t0)
                continue
            p.conn.send_data(1, pending[:n])
            pending = pending[n:]
            p.flush()
        p.conn.send_headers(1, trailers(0, ""), end_stream=True)
        p.flush()
        finish_server(p)

    def client(c):
        c.conn.send_headers(1, request_headers(PORT, "Unary", "5S"))
        c.conn.send_data(1, grpc_message("send me 100 KB", 1), end_stream=True)
        c.flush()
        got = 0
        while got < STALL_WINDOW:
            _, evs = c.wait_for(lambda e: isinstance(e, E.DataReceived) and e.stream_id == 1)
            got += sum(e.flow_controlled_length for e in evs
                       if isinstance(e, E.DataReceived) and e.stream_id == 1)
        assert got == STALL_WINDOW, got
        # stall: no WINDOW_UPDATE; the server must not send anything on s1 meanwhile
        evs = c.pump(STALL_SECONDS)
        assert not any(isinstance(e, E.DataReceived) for e in evs), evs
        credit = STALL_PAYLOAD + 1024
        c.conn.increment_flow_control_window(credit, stream_id=1)
        c.conn.increment_flow_control_window(credit)  # connection (stream 0)
        c.flush()
        c.wait_for(lambda e: isinstance(e, E.StreamEnded) and e.stream_id == 1)
        finish_client(c)

    run("flow_stall.pcap", server, client, client_setup)
    assert len(stalls) == 1 and stalls[0] >= STALL_SECONDS, stalls
    print(f"    server stalled {stalls[0] * 1000:.0f} ms")


SCENARIOS = [zombie_server, frames_after_goaway, data_after_own_rst, invalid_timeout,
             cancel_storm, conn_lost, continuation, protocol_violations, flow_stall]

if __name__ == "__main__":
    wanted = sys.argv[1:]
    for fn in SCENARIOS:
        if not wanted or fn.__name__ in wanted:
            fn()
    import runpy  # by path: every capture directory has its own make_facts.py
    runpy.run_path(os.path.join(HERE, "make_facts.py"), run_name="__main__")
