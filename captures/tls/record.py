"""Record the TLS captures.  Run:  /tmp/venv/bin/python captures/tls/record.py [name ...]

    tls_grpc      grpcio server + grpcio client over TLS (ssl_server_credentials /
                  ssl_channel_credentials), 2 unary calls, port 50443        -> tls_grpc.pcap
    tls_keylog    python ssl (SSLContext.keylog_filename) + python-h2 peers, gRPC-shaped
                  unary call, port 50443, recorded with dumpcap; the key log is injected
                  as a pcapng Decryption Secrets Block with editcap        -> tls_keylog.pcapng

The self-signed test certificate (TEST ONLY, CN=localhost, SAN DNS:localhost,
IP:127.0.0.1) is generated with openssl into this directory if missing:
test-only-localhost.key / test-only-localhost.crt.  The key is committed on purpose; it
protects nothing.

facts.json here is hand-written (the shared write_facts expects cleartext HTTP/2);
`python record.py --check` prints the tshark facts it was written from.
"""
import os
import select
import socket
import ssl
import subprocess
import sys
import threading
import time

import grpc

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "grpcio"))
sys.path.insert(0, os.path.join(ROOT, "h2peers"))
from record_util import capture  # noqa: E402
import demo_pb2_grpc  # noqa: E402
from server import Demo  # noqa: E402
from client import Msg  # noqa: E402
from peers import (E, PREFACE, Peer, RESPONSE_HEADERS, grpc_message,  # noqa: E402
                   request_headers, trailers)
from concurrent import futures  # noqa: E402

PORT = 50443
KEY = os.path.join(HERE, "test-only-localhost.key")
CRT = os.path.join(HERE, "test-only-localhost.crt")
KEYLOG = os.path.join(HERE, "tls_keylog.keys.txt")


def out(name):
    return os.path.join(HERE, name)


def ensure_cert():
    if os.path.exists(KEY) and os.path.exists(CRT):
        return
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-nodes", "-keyout", KEY, "-out", CRT, "-days", "3650",
                    "-subj", "/O=h2scope TEST ONLY/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                    "-addext", "basicConstraints=critical,CA:TRUE",
                    "-addext", "keyUsage=critical,digitalSignature,keyCertSign"],
                   check=True, capture_output=True)
    os.chmod(KEY, 0o644)


def read(p):
    with open(p, "rb") as fh:
        return fh.read()


# ------------------------------------------------------------------------------- tls_grpc
def tls_grpc():
    print("tls_grpc.pcap")
    creds = grpc.ssl_server_credentials([(read(KEY), read(CRT))])
    srv = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    demo_pb2_grpc.add_DemoServicer_to_server(Demo(), srv)
    assert srv.add_secure_port(f"127.0.0.1:{PORT}", creds) == PORT
    srv.start()
    try:
        with capture(out("tls_grpc.pcap"), PORT):
            ch = grpc.secure_channel(
                f"127.0.0.1:{PORT}", grpc.ssl_channel_credentials(root_certificates=read(CRT)),
                options=[("grpc.enable_http_proxy", 0), ("grpc.enable_retries", 0),
                         ("grpc.use_local_subchannel_pool", 1),
                         # SNI + certificate name check against "localhost"
                         ("grpc.ssl_target_name_override", "localhost")])
            grpc.channel_ready_future(ch).result(timeout=5)
            stub = demo_pb2_grpc.DemoStub(ch)
            for i, text in enumerate(("one", "two"), 1):
                r = stub.Unary(Msg(text=text, seq=i), timeout=2)
                assert r.text == "echo:" + text, r
            ch.close()
            time.sleep(0.5)
            srv.stop(None).wait()
    finally:
        srv.stop(None)
    time.sleep(0.2)


# ----------------------------------------------------------------------------- tls_keylog
class TLSPeer(Peer):
    """Peer over an ssl.SSLSocket: decrypted bytes may already sit in the SSL buffer, where
    select() cannot see them, so check pending() first."""

    def poll(self, timeout):
        if not self.eof and self.sock.pending():
            timeout = 0
            r = [self.sock]
        else:
            if self.eof:
                time.sleep(timeout)
                return []
            r, _, _ = select.select([self.sock], [], [], max(timeout, 0))
        if not r:
            return []
        try:
            data = self.sock.recv(65536)
        except ssl.SSLWantReadError:
            return []
        except (ConnectionResetError, ssl.SSLEOFError):
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
            events += self.conn.receive_data(frame)
        self.flush()
        return events


def tls_keylog():
    print("tls_keylog.pcapng")
    if os.path.exists(KEYLOG):
        os.unlink(KEYLOG)
    sctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    sctx.load_cert_chain(CRT, KEY)
    sctx.set_alpn_protocols(["h2"])
    cctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    cctx.load_verify_locations(CRT)
    cctx.set_alpn_protocols(["h2"])
    cctx.keylog_filename = KEYLOG  # NSS key log format (CLIENT_HANDSHAKE_TRAFFIC_SECRET, ...)
    raw = out("tls_keylog.raw.pcapng")
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind(("127.0.0.1", PORT))
    ls.listen(4)
    exc = []

    def server():
        try:
            s, _ = ls.accept()
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = sctx.wrap_socket(s, server_side=True)
            assert s.selected_alpn_protocol() == "h2"
            p = TLSPeer(s, client_side=False)
            p.start()
            done = 0
            while done < 2:
                for e in p.pump(0.01):
                    if isinstance(e, E.StreamEnded):
                        p.conn.send_headers(e.stream_id, RESPONSE_HEADERS)
                        p.conn.send_data(e.stream_id, grpc_message("echo", e.stream_id))
                        p.conn.send_headers(e.stream_id, trailers(0, ""), end_stream=True)
                        p.flush()
                        done += 1
            p.drain_until_eof()  # the client's close_notify reads as EOF
            s.unwrap()           # answer with our close_notify, then TCP FIN
            p.close()
        except BaseException as e:  # noqa: BLE001
            exc.append(e)

    try:
        with capture(raw, PORT, tool="dumpcap"):
            t = threading.Thread(target=server, daemon=True)
            t.start()
            s = socket.create_connection(("127.0.0.1", PORT))
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s = cctx.wrap_socket(s, server_hostname="localhost")
            assert s.selected_alpn_protocol() == "h2", s.selected_alpn_protocol()
            c = TLSPeer(s, client_side=True)
            c.start()
            for sid in (1, 3):
                c.conn.send_headers(sid, [(k, "https" if k == ":scheme" else v)
                                          for k, v in request_headers(PORT, "Unary", "1S")])
                c.conn.send_data(sid, grpc_message(f"hello {sid}", sid), end_stream=True)
                c.flush()
                c.wait_for(lambda e, s_=sid: isinstance(e, E.StreamEnded) and e.stream_id == s_)
            c.flush()
            s = s.unwrap()  # close_notify both ways (TLS 1.3: encrypted alert records)
            s.shutdown(socket.SHUT_WR)
            s.settimeout(5)
            while s.recv(4096):
                pass
            s.close()
            t.join(10)
            if exc:
                raise exc[0]
            assert not t.is_alive(), "server thread hung"
    finally:
        ls.close()
    subprocess.run(["editcap", "--inject-secrets", f"tls,{KEYLOG}", raw, out("tls_keylog.pcapng")],
                   check=True)
    os.unlink(raw)
    os.chmod(out("tls_keylog.pcapng"), 0o644)
    time.sleep(0.2)


# ---------------------------------------------------------------------------------- check
def tshark(path, *args):
    return subprocess.run(["tshark", "-r", path, *args], check=True, capture_output=True,
                          text=True).stdout


def check():
    for name in ("tls_grpc.pcap", "tls_keylog.pcapng"):
        p = out(name)
        print(f"== {name}")
        print(subprocess.run(["capinfos", "-t", "-E", "-c", p], capture_output=True, text=True).stdout.strip())
        print("connections:", tshark(p, "-T", "fields", "-e", "tcp.stream").split().__len__() and
              sorted(set(tshark(p, "-T", "fields", "-e", "tcp.stream").split())))
        print("ClientHello/ServerHello ALPN, SNI, version:")
        print(tshark(p, "-Y", "tls.handshake.extensions_alpn_str", "-T", "fields",
                     "-e", "frame.number", "-e", "tcp.srcport", "-e", "tcp.dstport",
                     "-e", "tls.handshake.type", "-e", "tls.handshake.extensions_alpn_str",
                     "-e", "tls.handshake.extensions_server_name",
                     "-e", "tls.handshake.extensions.supported_version").rstrip())
        print("http2 (decrypted, only possible with the DSB):",
              tshark(p, "-Y", "http2", "-T", "fields", "-e", "frame.number", "-e", "http2.type",
                     "-e", "http2.streamid", "-e", "http2.header.value").rstrip() or "none")


SCENARIOS = [tls_grpc, tls_keylog]

if __name__ == "__main__":
    if "--check" in sys.argv:
        check()
        sys.exit()
    ensure_cert()
    wanted = sys.argv[1:]
    for fn in SCENARIOS:
        if not wanted or fn.__name__ in wanted:
            fn()
    check()
