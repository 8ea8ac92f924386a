"""Record the grpcio captures.  Run:  /tmp/venv/bin/python captures/grpcio/record.py [name ...]

Each scenario starts a fresh grpcio server on 127.0.0.1, records `tcpdump -i lo` filtered
on the server port, runs the calls with a fresh channel, closes the channel, stops the
server and then stops tcpdump (see ../record_util.py).
"""
import os
import subprocess
import sys
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.dirname(HERE))
from record_util import capture  # noqa: E402
from server import serve  # noqa: E402
from client import channel, Msg  # noqa: E402

PORT = 50051
ALT_PORT = 7443
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def out(name):
    return os.path.join(HERE, name)


def close(ch):
    """Close the client channel and give chttp2 time to shut the TCP connection (client
    FIN) before anything else happens, so the capture ends deterministically."""
    ch.close()
    time.sleep(0.5)


def expect(code, fn):
    try:
        r = fn()
    except grpc.RpcError as e:
        print(f"    -> {e.code().name}: {e.details()}")
        assert e.code() == code, (e.code(), code)
        return None
    assert code == grpc.StatusCode.OK, f"expected {code}, got OK"
    return r


def unary_ok():
    srv = serve(PORT)
    with capture(out("unary_ok.pcap"), PORT):
        ch, stub = channel(PORT)
        stub.Unary(Msg(text="one", seq=1), timeout=2)
        stub.Unary(Msg(text="two", seq=2), timeout=2,
                   metadata=[("traceparent", TRACEPARENT), ("x-request-id", "req-0002")])
        stub.Unary(Msg(text="three", seq=3), timeout=2)
        close(ch)
        srv.stop(None).wait()


def streaming_ok():
    srv = serve(PORT)
    with capture(out("streaming_ok.pcap"), PORT):
        ch, stub = channel(PORT)
        got = list(stub.ServerStream(Msg(text="interval:0.01", seq=5), timeout=2))
        assert len(got) == 5
        r = stub.ClientStream(iter([Msg(text=f"c{i}", seq=i) for i in range(5)]), timeout=2)
        assert r.seq == 5
        got = list(stub.Bidi(iter([Msg(text=f"b{i}", seq=i) for i in range(5)]), timeout=2))
        assert len(got) == 5
        close(ch)
        srv.stop(None).wait()


def deadline_unary():
    srv = serve(PORT)
    with capture(out("deadline_unary.pcap"), PORT):
        ch, stub = channel(PORT)
        expect(grpc.StatusCode.DEADLINE_EXCEEDED,
               lambda: stub.Unary(Msg(text="sleep:0.5"), timeout=0.1))
        time.sleep(0.6)  # let the handler return on the server
        close(ch)
        srv.stop(None).wait()


def deadline_stream():
    srv = serve(PORT)
    with capture(out("deadline_stream.pcap"), PORT):
        ch, stub = channel(PORT)

        def run():
            n = 0
            for _ in stub.ServerStream(Msg(text="interval:0.02", seq=100), timeout=0.25):
                n += 1
            return n
        expect(grpc.StatusCode.DEADLINE_EXCEEDED, run)
        time.sleep(0.3)
        close(ch)
        srv.stop(None).wait()


def cancel():
    srv = serve(PORT)
    with capture(out("cancel.pcap"), PORT):
        ch, stub = channel(PORT)
        call = stub.ServerStream(Msg(text="interval:0.05", seq=100))  # no deadline
        n = 0
        try:
            for _ in call:
                n += 1
                if n == 3:
                    call.cancel()
        except grpc.RpcError as e:
            print(f"    -> {e.code().name} after {n} messages")
            assert e.code() == grpc.StatusCode.CANCELLED
        time.sleep(0.3)
        close(ch)
        srv.stop(None).wait()


def large_message():
    # grpcio advertises SETTINGS_MAX_FRAME_SIZE 4194304 by default (BDP-driven), which turns a 200 KB
    # message into 2 DATA frames; cap it at the RFC default 16384 on both sides so the
    # capture has many DATA frames, each of which still spans TCP segments.  The BDP
    # prober must be off too, otherwise chttp2 raises the advertised frame size again.
    small = [("grpc.http2.max_frame_size", 16384), ("grpc.http2.bdp_probe", 0)]
    srv = serve(PORT, options=small)
    with capture(out("large_message.pcap"), PORT):
        ch, stub = channel(PORT, options=small)
        r = stub.Unary(Msg(text="big", payload=b"Q" * 200_000), timeout=5)
        assert len(r.payload) == 200_000
        close(ch)
        srv.stop(None).wait()


def no_deadline():
    srv = serve(PORT)
    with capture(out("no_deadline.pcap"), PORT):
        ch, stub = channel(PORT)
        stub.Unary(Msg(text="a", seq=1))
        stub.Unary(Msg(text="b", seq=2))
        close(ch)
        srv.stop(None).wait()


def graceful_stop():
    srv = serve(PORT)
    with capture(out("graceful_stop.pcap"), PORT):
        ch, stub = channel(PORT)
        call = stub.ServerStream(Msg(text="interval:0.05", seq=30), timeout=10)
        stopper = threading.Timer(0.3, lambda: srv.stop(grace=1.0))
        stopper.start()
        n = 0
        try:
            for _ in call:
                n += 1
            print(f"    -> OK after {n} messages")
        except grpc.RpcError as e:
            print(f"    -> {e.code().name} after {n} messages: {e.details()}")
        stopper.join()
        time.sleep(1.5)  # server finishes shutting down; connection ends
        ch.close()


def hard_stop():
    srv = serve(PORT)
    with capture(out("hard_stop.pcap"), PORT):
        ch, stub = channel(PORT)
        call = stub.ServerStream(Msg(text="interval:0.05", seq=30), timeout=10)
        stopper = threading.Timer(0.3, lambda: srv.stop(None))
        stopper.start()
        n = 0
        try:
            for _ in call:
                n += 1
            print(f"    -> OK after {n} messages")
        except grpc.RpcError as e:
            print(f"    -> {e.code().name} after {n} messages: {e.details()}")
        stopper.join()
        time.sleep(0.5)
        ch.close()


def error_status():
    srv = serve(ALT_PORT)
    with capture(out("error_status.pcap"), ALT_PORT):
        ch, stub = channel(ALT_PORT)
        expect(grpc.StatusCode.NOT_FOUND,
               lambda: stub.Unary(Msg(text="notfound:no such key: café"), timeout=2))
        close(ch)
        srv.stop(None).wait()


def midstream():
    srv = serve(PORT)
    ch, stub = channel(PORT)
    for i in range(3):  # before the capture starts
        stub.Unary(Msg(text=f"pre{i}", seq=i), timeout=2)
    time.sleep(0.2)
    with capture(out("midstream.pcap"), PORT):
        for i in range(3):
            stub.Unary(Msg(text=f"mid{i}", seq=10 + i), timeout=2)
        got = list(stub.ServerStream(Msg(text="interval:0.01", seq=3), timeout=2))
        assert len(got) == 3
        close(ch)
        srv.stop(None).wait()


NETNS_ENV = "H2SCOPE_RECORD_NETNS"
PORT_RANGE = "/proc/sys/net/ipv4/ip_local_port_range"


def _low_port(low):
    """Linux connect() picks ephemeral ports with the parity of the range's low end first,
    so every client port on this host is even; set the low end per channel instead."""
    with open(PORT_RANGE, "w") as fh:
        fh.write(f"{low} 60999")


def multi_channel():
    """8 channels (8 TCP connections) from 127.0.0.1 to one server; client ports alternate
    even/odd so (client port + server port) % 2 takes both values.  Runs in a private
    network namespace (unshare --net) so changing ip_local_port_range touches nothing else."""
    if os.environ.get(NETNS_ENV) != "1":
        env = dict(os.environ, **{NETNS_ENV: "1"})
        subprocess.run(["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$0" "$@"',
                        sys.executable, os.path.abspath(__file__), "multi_channel"],
                       env=env, check=True)
        return
    n = 8
    srv = serve(PORT)
    with capture(out("multi_channel.pcap"), PORT):
        chans = []
        for i in range(n):
            _low_port(32768 + i % 2)  # even client port for even i, odd for odd i
            # a unique channel arg per channel (besides the local subchannel pool): one TCP
            # connection per channel, never a shared subchannel
            chans.append(channel(PORT, options=[("h2scope.record.channel", i)]))
        _low_port(32768)
        stubs = [stub for _, stub in chans]
        # one normal unary call with a deadline per connection, all at once
        oks = [s.Unary.future(Msg(text=f"ok{i}", seq=i), timeout=2) for i, s in enumerate(stubs)]
        for f in oks:
            assert f.result().seq >= 0
        # two client-streaming calls without grpc-timeout, on an even and an odd connection
        for i in (2, 5):
            r = stubs[i].ClientStream(iter([Msg(text=f"nd{i}", seq=1)]))
            assert r.seq == 1
        # three calls that outlive their deadline, on three connections
        late = [stubs[i].Unary.future(Msg(text="sleep:0.3", seq=i), timeout=0.1) for i in (0, 3, 6)]
        for f in late:
            expect(grpc.StatusCode.DEADLINE_EXCEEDED, f.result)
        time.sleep(0.25)  # the sleeping handlers return
        # a cancel burst: 2 server streams per connection, all cancelled by the client
        calls = [stubs[i % n].ServerStream(Msg(text="interval:0.5", seq=10), timeout=5)
                 for i in range(2 * n)]
        time.sleep(0.1)  # requests on the wire, first messages sent
        for c in calls:
            c.cancel()
        for c in calls:
            assert c.code() == grpc.StatusCode.CANCELLED, c.code()
        print(f"    -> {len(calls)} streams cancelled")
        time.sleep(0.6)  # the streaming handlers wake up, see the cancel and return
        for ch, _ in chans:
            ch.close()
        time.sleep(0.5)
        srv.stop(None).wait()


SCENARIOS = [unary_ok, streaming_ok, deadline_unary, deadline_stream, cancel, large_message,
             no_deadline, graceful_stop, hard_stop, error_status, midstream, multi_channel]

if __name__ == "__main__":
    wanted = sys.argv[1:]
    for fn in SCENARIOS:
        if wanted and fn.__name__ not in wanted:
            continue
        print(fn.__name__)
        fn()
        time.sleep(0.3)
    if os.environ.get(NETNS_ENV) == "1":
        sys.exit(0)  # a scenario re-run in its own network namespace: the parent writes facts
    import runpy  # by path: every capture directory has its own make_facts.py
    runpy.run_path(os.path.join(HERE, "make_facts.py"), run_name="__main__")
