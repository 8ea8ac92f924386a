"""Record a real grpcio client against misbehaving python-h2 servers (and one grpcio-vs-grpcio
cancel storm).  Run:

    /tmp/venv/bin/python captures/grpcio_vs_h2/record.py                 # all four + facts.json
    /tmp/venv/bin/python captures/grpcio_vs_h2/record.py zombie_server   # one scenario by name

Client side: grpcio 1.85 (`grpc.insecure_channel("127.0.0.1:50091")` with
`grpc.use_local_subchannel_pool=1`, so `channel.close()` really closes the TCP connection),
demo_pb2_grpc stubs from ../grpcio.  Server side: python-h2 over a real socket (../h2peers/
peers.py); raw hyperframe frames where h2 refuses (DATA on a stream the peer reset, GOAWAY
behind h2's back).  Everything is captured with tcpdump -i lo (../record_util.py), which
refuses captures with kernel drops.
"""
import os
import socket
import sys
import threading
import time
from concurrent import futures

import grpc
import h2.exceptions

HERE = os.path.dirname(os.path.abspath(__file__))
CAPTURES = os.path.dirname(HERE)
sys.path.insert(0, CAPTURES)
sys.path.insert(0, os.path.join(CAPTURES, "h2peers"))
sys.path.insert(0, os.path.join(CAPTURES, "grpcio"))
from record_util import capture, frames  # noqa: E402
from peers import (E, Peer, RESPONSE_HEADERS, grpc_message, listen, raw_data,  # noqa: E402
                   raw_goaway, raw_headers_unindexed, trailers)
import demo_pb2  # noqa: E402
import demo_pb2_grpc  # noqa: E402

PORT = 50091
NO_ERROR = 0
Msg = demo_pb2.Msg
LOG = []


def log(msg):
    LOG.append(msg)
    print("    " + msg)


def out(name):
    return os.path.join(HERE, name)


def grpc_channel():
    ch = grpc.insecure_channel(f"127.0.0.1:{PORT}",
                               options=[("grpc.enable_http_proxy", 0),
                                        ("grpc.enable_retries", 0),
                                        ("grpc.use_local_subchannel_pool", 1)])
    grpc.channel_ready_future(ch).result(timeout=5)
    return ch, demo_pb2_grpc.DemoStub(ch)


# ------------------------------------------------------------------ h2 server plumbing
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


def run_vs_h2(name, server_fn, client_fn):
    """h2 server thread + grpcio client in this process, one TCP connection, captured."""
    print(name)
    ls = listen(PORT)
    try:
        with capture(out(name), PORT):
            st = ServerThread(ls, server_fn)
            st.start()
            ch, stub = grpc_channel()
            try:
                client_fn(ch, stub)
            finally:
                ch.close()  # local subchannel pool: this closes the TCP connection
            st.join(10)
            if st.exc:
                raise st.exc
            assert not st.is_alive(), "server thread hung"
    finally:
        ls.close()
    time.sleep(0.3)


def finish_server(p, timeout=5.0):
    """Server reads until the client's FIN (channel.close()), then closes (FIN)."""
    p.drain_until_eof(timeout)
    p.flush()
    p.close()


def answer_unary(p, sid, text="ok"):
    p.conn.send_headers(sid, RESPONSE_HEADERS)
    p.conn.send_data(sid, grpc_message(text))
    p.conn.send_headers(sid, trailers(0), end_stream=True)
    p.flush()


def parse_timeout(v):
    units = {"H": 3600, "M": 60, "S": 1, "m": 1e-3, "u": 1e-6, "n": 1e-9}
    return int(v[:-1]) * units[v[-1]]


def send_data_any(p, sid, payload):
    """DATA through h2 while h2 allows it; raw hyperframe once h2 knows the stream is closed
    (e.g. the client reset it). Returns True when it had to go raw."""
    try:
        p.conn.send_data(sid, payload)
        p.flush()
        return False
    except h2.exceptions.StreamClosedError:
        p.send_raw(raw_data(sid, payload))
        return True


# --------------------------------------------------- zombie_server / well_behaved_twin
STREAM_TIMEOUT = 0.3
TICK = 0.02            # normal cadence: one DATA every 20 ms
BURST_TICK = 0.001     # around the deadline: one DATA every 1 ms ...
BURST_BEFORE = 0.015   # ... starting 15 ms before the deadline the request announced
ZOMBIE_FOR = 0.4


def deadline_server(zombie):
    """Unary on s1 answered normally; ServerStream on s3: HEADERS, then DATA every 20 ms and,
    from 15 ms before the announced deadline, every 1 ms. Each DATA is written *before* the
    socket is read (sleep, send, read), so a frame sent just after the client's RST_STREAM
    crosses it on the wire: in flight, not sent after knowing.  After reading the RST:
    zombie -> keeps sending raw DATA on s3 every 20 ms for 400 ms; twin -> stops at once."""
    def server(p):
        stream_sid, deadline, seq = None, None, 0
        while stream_sid is None:
            for e in p.poll(0.005):
                if isinstance(e, E.RequestReceived):
                    h = dict(e.headers)
                    if h[":path"].endswith("/ServerStream"):
                        stream_sid = e.stream_id
                        deadline = time.monotonic() + parse_timeout(h["grpc-timeout"])
                        p.conn.send_headers(stream_sid, RESPONSE_HEADERS)
                        p.flush()
                if isinstance(e, E.StreamEnded) and e.stream_id != stream_sid:
                    answer_unary(p, e.stream_id, "unary ok")
        reset_at = None
        last_send = 0.0
        burst_from = deadline - BURST_BEFORE
        while reset_at is None:
            nxt = last_send + TICK
            if nxt > burst_from:
                nxt = max(last_send + BURST_TICK, burst_from)
            time.sleep(max(0.0, nxt - time.monotonic()))    # not reading meanwhile
            p.conn.send_data(stream_sid, grpc_message(f"item {seq}", seq))
            p.flush()
            last_send = time.monotonic()
            seq += 1
            for e in p.poll(0):                              # read only after sending
                if isinstance(e, E.StreamReset) and e.stream_id == stream_sid:
                    reset_at = time.monotonic()
            if time.monotonic() > deadline + 2:
                raise TimeoutError("client never reset the stream")
        log(f"server read RST_STREAM({stream_sid}) after {seq} DATA frames")
        if zombie:
            n = 0
            while time.monotonic() - reset_at < ZOMBIE_FOR:
                p.pump(TICK)
                # h2 refuses to send on a reset stream: write the frame ourselves
                p.send_raw(raw_data(stream_sid, grpc_message(f"item {seq}", seq)))
                seq += 1
                n += 1
            log(f"zombie: {n} raw DATA frames on s{stream_sid} after reading the RST")
        finish_server(p)

    def client(ch, stub):
        r = stub.Unary(Msg(text="hello", seq=1), timeout=2)
        log(f"Unary -> OK {r.text!r}")
        n = 0
        t0 = time.monotonic()
        try:
            for _ in stub.ServerStream(Msg(text="interval:0.02", seq=1000),
                                       timeout=STREAM_TIMEOUT):
                n += 1
            log(f"ServerStream -> OK after {n} messages (unexpected)")
        except grpc.RpcError as e:
            log(f"ServerStream -> {e.code().name} ({e.details()!r}) after {n} messages, "
                f"{(time.monotonic() - t0) * 1000:.0f} ms")
            assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
        # stay connected while the zombie keeps talking; then close the channel
        time.sleep(ZOMBIE_FOR + 0.2)

    return server, client


def zombie_server():
    run_vs_h2("zombie_server.pcap", *deadline_server(zombie=True))


def well_behaved_twin():
    run_vs_h2("well_behaved_twin.pcap", *deadline_server(zombie=False))


# ------------------------------------------------------------------- goaway_keeps_sending
def goaway_keeps_sending():
    """Three concurrent ServerStream calls (s1, s3, s5); server answers HEADERS + 1 DATA on
    each, sends GOAWAY(last_stream_id=1, NO_ERROR) and nevertheless keeps sending DATA on
    all three (s3, s5 above its own last-stream-id) every 20 ms for 200 ms, then trailers
    grpc-status 0 on all three (s3, s5 first), then would close the connection 300 ms
    later; grpcio closes it first."""
    def server(p):
        sids = []
        while len(sids) < 3:
            for e in p.pump(0.005):
                if isinstance(e, E.StreamEnded):
                    sids.append(e.stream_id)
        sids.sort()
        raw_streams = set()
        for sid in sids:
            p.conn.send_headers(sid, RESPONSE_HEADERS)
            p.conn.send_data(sid, grpc_message(f"s{sid} item 0", 0))
        p.flush()
        p.pump(0.02)
        # GOAWAY behind h2's back, so h2 still lets us use every stream
        p.send_raw(raw_goaway(1, NO_ERROR))
        log(f"server GOAWAY(last=1) with streams {sids} open")
        seq, t0 = 1, time.monotonic()
        while time.monotonic() - t0 < 0.2:
            for e in p.pump(0.02):
                if isinstance(e, E.StreamReset):
                    log(f"server read RST_STREAM(s{e.stream_id}, {e.error_code!r})")
            for sid in sids:
                if send_data_any(p, sid, grpc_message(f"s{sid} item {seq}", seq)):
                    raw_streams.add(sid)
            seq += 1
        # trailers above the GOAWAY's last-stream-id first: grpcio closes the connection as
        # soon as s1, the last stream it still counts on, has finished
        for sid in sorted(sids, key=lambda s: (s <= 1, s)):
            try:
                p.conn.send_headers(sid, trailers(0), end_stream=True)
                p.flush()
            except h2.exceptions.StreamClosedError:
                p.send_raw(raw_headers_unindexed(p, sid, trailers(0)))
                raw_streams.add(sid)
        log(f"server sent {seq} DATA per stream + trailers; raw (h2 knew them closed): "
            f"{sorted(raw_streams)}")
        p.drain_until_eof(0.3)
        if p.eof:
            # grpcio closed the connection itself once s1 (the only stream the GOAWAY
            # allowed) had finished
            log("client closed the connection before the server did")
            p.close()
            return
        # "later closes the connection": server FIN first, then read to EOF
        p.flush()
        p.sock.shutdown(socket.SHUT_WR)
        p.drain_until_eof(3)
        p.close()

    def client(ch, stub):
        results = {}

        def call(i):
            n = 0
            t0 = time.monotonic()
            try:
                for _ in stub.ServerStream(Msg(text=f"call {i}", seq=100), timeout=2):
                    n += 1
                results[i] = f"OK after {n} messages"
            except grpc.RpcError as e:
                results[i] = f"{e.code().name} ({e.details()!r}) after {n} messages"
            results[i] += f", {(time.monotonic() - t0) * 1000:.0f} ms"

        ts = [threading.Thread(target=call, args=(i,)) for i in range(3)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(5)
        for i in sorted(results):
            log(f"call {i}: {results[i]}")
        time.sleep(0.6)   # give the server time to close the connection first

    run_vs_h2("goaway_keeps_sending.pcap", server, client)


# ----------------------------------------------------------------------- cancel_storm_100
N_STORM = 120


def cancel_storm_100():
    """grpcio client vs grpcio server: 120 concurrent ServerStream calls (one message every
    100 ms), the client reads the first message of each, waits ~150 ms, then cancels all
    of them in a tight loop."""
    from server import Demo  # ../grpcio/server.py's servicer
    name = "cancel_storm_100.pcap"
    print(name)
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=N_STORM + 8))
    demo_pb2_grpc.add_DemoServicer_to_server(Demo(), srv)
    assert srv.add_insecure_port(f"127.0.0.1:{PORT}") == PORT
    srv.start()
    try:
        with capture(out(name), PORT):
            ch, stub = grpc_channel()
            calls = [stub.ServerStream(Msg(text="interval:0.1", seq=50), timeout=10)
                     for _ in range(N_STORM)]
            for c in calls:
                next(c)            # every stream is open and has produced a message
            time.sleep(0.15)
            t0 = time.perf_counter()
            for c in calls:
                c.cancel()
            dt = time.perf_counter() - t0
            codes = {}
            for c in calls:
                codes[c.code().name] = codes.get(c.code().name, 0) + 1
            log(f"{N_STORM} cancel() calls in {dt * 1000:.2f} ms; codes {codes}")
            time.sleep(0.3)        # the server handlers notice and return
            ch.close()
            time.sleep(0.3)
            srv.stop(None).wait()
    finally:
        srv.stop(None)
    time.sleep(0.3)


# ------------------------------------------------------------ checks on the capture itself
def _h2(name):
    return [f for f in frames(out(name), PORT) if f["kind"] == "h2"]


def _first_rst(fl, by="client", code=8):
    return next(f for f in fl if f["type"] == "RST_STREAM" and f["side"] == by
                and f["error"] == code)


def _after(fl, rst, side="server", types=("DATA",)):
    return [f for f in fl if f["frame"] > rst["frame"] and f["side"] == side
            and f["stream"] == rst["stream"] and f["type"] in types]


def check_zombie_server():
    fl = _h2("zombie_server.pcap")
    rst = _first_rst(fl)
    after = _after(fl, rst, types=("DATA", "HEADERS", "RST_STREAM"))
    ms = [(f["t"] - rst["t"]) * 1000 for f in after]
    # like the twin: the DATA burst crosses the reset (in flight) ...
    inflight = [m for m in ms if m < 5]
    assert inflight, f"no DATA crossed the RST in flight: {ms[:3]}"
    # ... and then the zombie frames, sent after the server had read the reset
    zombie = [m for m in ms if m >= 5]
    assert len(zombie) >= 10 and zombie[-1] > 300, (len(after), ms)
    unary = [f for f in fl if f["stream"] == 1 and ("grpc-status", "0") in f["headers"]]
    assert unary, "Unary on s1 did not end with grpc-status 0"
    return (f"client RST_STREAM(CANCEL) s{rst['stream']} at pkt {rst['frame']} "
            f"(t={rst['t']:.6f}); {len(after)} server DATA after it: {len(inflight)} in "
            f"flight (+{', +'.join(f'{m:.2f}' for m in inflight)} ms), then {len(zombie)} "
            f"from +{zombie[0]:.1f} ms to +{zombie[-1]:.1f} ms")


def check_well_behaved_twin():
    fl = _h2("well_behaved_twin.pcap")
    rst = _first_rst(fl)
    after = _after(fl, rst, types=("DATA", "HEADERS", "RST_STREAM"))
    ms = [(f["t"] - rst["t"]) * 1000 for f in after]
    assert after and all(m < 5 for m in ms), ms      # in flight only, nothing later
    return (f"client RST_STREAM(CANCEL) s{rst['stream']} at pkt {rst['frame']} "
            f"(t={rst['t']:.6f}); {len(after)} server DATA after it "
            f"(+{', +'.join(f'{m:.2f}' for m in ms)} ms), nothing later")


def check_goaway_keeps_sending():
    fl = _h2("goaway_keeps_sending.pcap")
    ga = next(f for f in fl if f["type"] == "GOAWAY" and f["side"] == "server")
    assert ga["last_stream_id"] == 1 and ga["error"] == 0
    above = [f for f in fl if f["frame"] > ga["frame"] and f["side"] == "server"
             and f["stream"] > 1 and f["type"] == "DATA"]
    rsts = [f for f in fl if f["type"] == "RST_STREAM" and f["frame"] > ga["frame"]]
    assert len(above) >= 10, len(above)
    return (f"server GOAWAY(last=1, NO_ERROR) at pkt {ga['frame']} (t={ga['t']:.6f}); "
            f"client RST_STREAM {[(f['stream'], f['error']) for f in rsts]} at "
            f"+{(rsts[0]['t'] - ga['t']) * 1000:.2f} ms; {len(above)} server DATA on "
            f"streams >1 after the GOAWAY over "
            f"{(above[-1]['t'] - ga['t']) * 1000:.0f} ms")


def check_cancel_storm_100():
    fl = _h2("cancel_storm_100.pcap")
    rsts = [f for f in fl if f["type"] == "RST_STREAM" and f["side"] == "client"
            and f["error"] == 8]
    span = (rsts[-1]["t"] - rsts[0]["t"]) * 1000
    assert len(rsts) >= 100 and span < 100, (len(rsts), span)
    reset = {f["stream"]: f["frame"] for f in rsts}
    late = [f for f in fl if f["side"] == "server" and f["stream"] in reset
            and f["frame"] > reset[f["stream"]]]
    pkts = len({f["frame"] for f in rsts})
    return (f"{len(rsts)} client RST_STREAM(CANCEL) in pkts {rsts[0]['frame']}.."
            f"{rsts[-1]['frame']} ({pkts} segments) over {span:.2f} ms; "
            f"{len(late)} server frames on a stream after its RST")


def record_checked(fn, tries=5):
    check = globals()["check_" + fn.__name__]
    for i in range(tries):
        fn()
        try:
            msg = check()
        except AssertionError as e:
            print(f"    check failed ({e!r}); {'retrying' if i + 1 < tries else 'giving up'}")
            continue
        print("    verified: " + msg)
        return msg
    raise SystemExit(f"{fn.__name__}: capture does not show the scenario after {tries} tries")


SCENARIOS = [zombie_server, well_behaved_twin, goaway_keeps_sending, cancel_storm_100]

if __name__ == "__main__":
    wanted = sys.argv[1:]
    unknown = set(wanted) - {f.__name__ for f in SCENARIOS}
    if unknown:
        sys.exit(f"unknown scenario(s) {sorted(unknown)}; have "
                 f"{[f.__name__ for f in SCENARIOS]}")
    for fn in SCENARIOS:
        if not wanted or fn.__name__ in wanted:
            record_checked(fn)
    import runpy  # by path: every capture directory has its own make_facts.py
    runpy.run_path(os.path.join(HERE, "make_facts.py"), run_name="__main__")
