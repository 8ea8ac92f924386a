"""Record the link-layer / file-format variants.  Run:
    /tmp/venv/bin/python captures/links/record.py

Every file holds the same small grpcio scenario on one connection: 2 unary calls that
succeed (timeout 2 s) and 1 unary call that exceeds its deadline (timeout 0.1 s, handler
sleeps 0.5 s).  Only the capture interface, link type, timestamp precision, address family,
file format and compression differ.
"""
import gzip
import os
import shutil
import sys
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "grpcio"))
from record_util import capture  # noqa: E402
from server import serve  # noqa: E402
from client import channel, Msg  # noqa: E402

PORT = 50061


def out(name):
    return os.path.join(HERE, name)


def scenario(host="127.0.0.1"):
    ch, stub = channel(PORT, host=host)
    stub.Unary(Msg(text="first", seq=1), timeout=2)
    stub.Unary(Msg(text="second", seq=2), timeout=2)
    try:
        stub.Unary(Msg(text="sleep:0.5", seq=3), timeout=0.1)
        raise AssertionError("expected DEADLINE_EXCEEDED")
    except grpc.RpcError as e:
        assert e.code() == grpc.StatusCode.DEADLINE_EXCEEDED, e.code()
    time.sleep(0.6)      # handler returns on the server
    ch.close()
    time.sleep(0.5)      # client FIN / server FIN


def record(name, host="127.0.0.1", **kw):
    print(name)
    srv = serve(PORT, host=host)
    with capture(out(name), PORT, **kw):
        scenario(host)
        srv.stop(None).wait()
    time.sleep(0.3)


def gzip_copy(src, dst):
    # mtime=0 and no file name in the header: reproducible bytes for the same input
    with open(src, "rb") as fi, open(dst, "wb") as raw:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as fo:
            shutil.copyfileobj(fi, fo)


def main():
    record("sll2_any.pcap", iface="any")                    # LINUX_SLL2
    record("nano.pcap", nano=True)                          # EN10MB, nanosecond magic
    record("ipv6.pcap", host="::1")                         # EN10MB, IPv6 loopback
    record("dumpcap.pcapng", tool="dumpcap")                # pcapng from dumpcap
    # gzip variants: recorded as plain files, then compressed
    record("unary_gz.pcap")
    gzip_copy(out("unary_gz.pcap"), out("unary_gz.pcap.gz"))
    os.unlink(out("unary_gz.pcap"))
    record("plain_name.pcapng", tool="dumpcap")
    gzip_copy(out("plain_name.pcapng"), out("plain_name.cap"))  # gzip despite the name
    os.unlink(out("plain_name.pcapng"))


if __name__ == "__main__":
    main()
    import runpy  # by path: every capture directory has its own make_facts.py
    runpy.run_path(os.path.join(HERE, "make_facts.py"), run_name="__main__")
