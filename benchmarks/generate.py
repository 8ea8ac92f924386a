"""Synthesize large, reproducible gRPC captures for benchmarks (never committed).

Real HTTP/2 on the wire, produced by h2 client and server connections talking to each
other in memory; the bytes are cut into TCP segments (MSS 1448, an ACK per flight) and
written as an Ethernet/IPv4 pcap with synthetic timestamps. A template of a few
connections is generated with h2 once, then replicated with new client ports and later
timestamps until the file reaches the requested size, so a 1 GB capture costs seconds.

    python benchmarks/generate.py W1 100   # → benchmarks/data/W1-100MB.pcap
    python benchmarks/generate.py all 100  # W1..W4 at 100 MB

Workloads:
  W1  unary calls with identical headers (HPACK blocks repeat: the memo's best case)
  W2  unary calls with unique traceparent/x-request-id per call (blocks never repeat)
  W3  server streaming of 64 KB messages (large DATA, flow control)
  W4  many concurrent streams, a third cancelled by the client, some reset by the server
"""

from __future__ import annotations

import random
import struct
import sys
from pathlib import Path

import h2.config
import h2.connection
import h2.events
import h2.settings

HERE = Path(__file__).resolve().parent
DATA = HERE / "data"
SERVER_PORT = 50051
MSS = 1448
PATH_PREFIX = "/bench.Bench/"


class PcapWriter:
    """Ethernet/IPv4/TCP pcap (microseconds), enough for h2scope and tshark to reassemble."""

    def __init__(self, path: Path) -> None:
        self.f = open(path, "wb", buffering=1 << 20)
        self.f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, 1))
        self.bytes = 24
        self.packets = 0

    def segment(self, ts_us: int, src: tuple, dst: tuple, seq: int, ack: int, flags: int, payload: bytes) -> None:
        ip_total = 20 + 20 + len(payload)
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, ip_total, 0, 0x4000, 64, 6, 0, src[0], dst[0])
        tcp = struct.pack("!HHIIBBHHH", src[1], dst[1], seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                          65535, 0, 0)
        frame = b"\x00" * 12 + b"\x08\x00" + ip + tcp + payload
        self.f.write(struct.pack("<IIII", ts_us // 1_000_000, ts_us % 1_000_000, len(frame), len(frame)))
        self.f.write(frame)
        self.bytes += 16 + len(frame)
        self.packets += 1

    def close(self) -> None:
        self.f.close()


def _pair() -> tuple[h2.connection.H2Connection, h2.connection.H2Connection]:
    client = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True, header_encoding="utf-8"))
    server = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    big = {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 1 << 24, h2.settings.SettingCodes.MAX_FRAME_SIZE: 16384,
           h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: 1000}
    client.initiate_connection()
    server.initiate_connection()
    client.update_settings(big)  # sent as a second SETTINGS frame, applied when the peer reads it
    server.update_settings(big)
    client.increment_flow_control_window(1 << 30)
    server.increment_flow_control_window(1 << 30)
    return client, server


def _message(size: int, rng: random.Random) -> bytes:
    body = rng.randbytes(size)
    return b"\x00" + len(body).to_bytes(4, "big") + body


class Template:
    """One connection's conversation as a list of (side, delay_us, bytes) flights."""

    def __init__(self) -> None:
        self.flights: list[tuple[int, int, bytes]] = []
        self.client, self.server = _pair()

    def send_within_window(self, conn: h2.connection.H2Connection, sid: int, data: bytes) -> None:
        """Send as flow control allows, letting WINDOW_UPDATEs through when the window is spent."""
        while data:
            room = min(conn.local_flow_control_window(sid), conn.max_outbound_frame_size, len(data))
            if room <= 0:
                before = len(self.flights)
                self.pump()
                if len(self.flights) == before:
                    raise RuntimeError("flow-control window stays closed: the generator would hang")
                continue
            conn.send_data(sid, data[:room])
            data = data[room:]

    def pump(self, delay_us: int = 30) -> None:
        """Move bytes both ways until both sides are quiet, answering nothing by itself."""
        for _ in range(8):
            moved = False
            for side, conn, peer in ((0, self.client, self.server), (1, self.server, self.client)):
                data = conn.data_to_send()
                if data:
                    self.flights.append((side, delay_us, data))
                    events = peer.receive_data(data)
                    for ev in events:
                        if isinstance(ev, h2.events.DataReceived):
                            peer.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                    moved = True
            if not moved:
                return


def request_headers(method: str, timeout: str | None, extra: list) -> list:
    hdrs = [(":method", "POST"), (":scheme", "http"), (":path", PATH_PREFIX + method),
            (":authority", f"127.0.0.1:{SERVER_PORT}"), ("content-type", "application/grpc"), ("te", "trailers")]
    if timeout:
        hdrs.append(("grpc-timeout", timeout))
    hdrs += [("grpc-accept-encoding", "identity,deflate,gzip"), ("user-agent", "grpc-python/1.85.1 grpc-c/45.0.0")]
    return hdrs + extra


RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]


def build(workload: str, rng: random.Random, calls: int) -> Template:
    t = Template()
    t.pump()
    c, s = t.client, t.server
    if workload in ("W1", "W2"):
        for i in range(calls):
            sid = c.get_next_available_stream_id()
            extra = []
            if workload == "W2":
                extra = [("traceparent", f"00-{rng.randbytes(16).hex()}-{rng.randbytes(8).hex()}-01"),
                         ("x-request-id", rng.randbytes(12).hex())]
            c.send_headers(sid, request_headers("Unary", "1S", extra))
            c.send_data(sid, _message(rng.randint(40, 200), rng), end_stream=True)
            t.pump()
            s.send_headers(sid, RESPONSE)
            s.send_data(sid, _message(rng.randint(40, 400), rng))
            s.send_headers(sid, [("grpc-status", "0"), ("grpc-message", "")], end_stream=True)
            t.pump(delay_us=200)
    elif workload == "W3":
        for i in range(max(1, calls // 40)):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, request_headers("Download", "30S", []))
            c.send_data(sid, _message(20, rng), end_stream=True)
            t.pump()
            s.send_headers(sid, RESPONSE)
            for _ in range(16):
                t.send_within_window(s, sid, _message(64 * 1024, rng))
                t.pump(delay_us=400)
            s.send_headers(sid, [("grpc-status", "0")], end_stream=True)
            t.pump()
    elif workload == "W4":
        open_ids: list[int] = []
        for i in range(calls):
            sid = c.get_next_available_stream_id()
            c.send_headers(sid, request_headers("Watch", f"{rng.randint(50, 500)}m", []))
            c.send_data(sid, _message(30, rng))
            open_ids.append(sid)
            t.pump(delay_us=20)
            s.send_headers(sid, RESPONSE)
            s.send_data(sid, _message(120, rng))
            t.pump(delay_us=20)
            if len(open_ids) >= 100:
                # Finish the batch: a third cancelled by the client, some reset by the server.
                for j, osid in enumerate(open_ids):
                    r = rng.random()
                    if r < 0.33:
                        c.reset_stream(osid, 8)
                    elif r < 0.40:
                        s.reset_stream(osid, 2)
                    else:
                        c.end_stream(osid)
                        s.send_data(osid, _message(60, rng))
                        s.send_headers(osid, [("grpc-status", "0")], end_stream=True)
                    t.pump(delay_us=15)
                open_ids = []
    else:
        raise SystemExit(f"unknown workload {workload}")
    return t


def write(workload: str, size_mb: int, path: Path | None = None, seed: int = 1) -> Path:
    rng = random.Random(seed)
    DATA.mkdir(parents=True, exist_ok=True)
    path = path or DATA / f"{workload}-{size_mb}MB.pcap"
    templates = [build(workload, rng, calls=2000 if workload != "W3" else 400) for _ in range(4)]
    target = size_mb * 1024 * 1024
    w = PcapWriter(path)
    ts = 1_795_000_000_000_000
    client_ip, server_ip = bytes([127, 0, 0, 1]), bytes([127, 0, 0, 1])
    port = 20000
    while w.bytes < target:
        # One round: every template replayed as a new connection, interleaved flight by flight.
        conns = []
        for t in templates:
            port = port + 1 if port < 65000 else 20001
            cl, sv = (client_ip, port), (server_ip, SERVER_PORT)
            seq = [rng.getrandbits(32), rng.getrandbits(32)]
            w.segment(ts, cl, sv, seq[0], 0, 0x02, b"")
            w.segment(ts + 20, sv, cl, seq[1], seq[0] + 1, 0x12, b"")
            w.segment(ts + 40, cl, sv, seq[0] + 1, seq[1] + 1, 0x10, b"")
            seq = [seq[0] + 1, seq[1] + 1]
            conns.append([t, 0, cl, sv, seq])
        ts += 100
        live = list(conns)
        while live and w.bytes < target:
            for entry in list(live):
                t, i, cl, sv, seq = entry
                if i >= len(t.flights):
                    live.remove(entry)
                    src, dst = cl, sv
                    w.segment(ts, src, dst, seq[0], seq[1], 0x11, b"")
                    w.segment(ts + 15, dst, src, seq[1], seq[0] + 1, 0x11, b"")
                    w.segment(ts + 30, src, dst, seq[0] + 1, seq[1] + 1, 0x10, b"")
                    continue
                side, delay, data = t.flights[i]
                entry[1] = i + 1
                ts += delay
                src, dst = (cl, sv) if side == 0 else (sv, cl)
                for off in range(0, len(data), MSS):
                    chunk = data[off:off + MSS]
                    w.segment(ts, src, dst, seq[side], seq[1 - side], 0x18, chunk)
                    seq[side] += len(chunk)
                    ts += 2
                w.segment(ts + 5, dst, src, seq[1 - side], seq[side], 0x10, b"")
    w.close()
    print(f"{path}: {w.packets} packets, {w.bytes / 1048576:.1f} MB", file=sys.stderr)
    return path


def main(argv: list[str]) -> None:
    if len(argv) < 2:
        raise SystemExit(__doc__)
    which = ["W1", "W2", "W3", "W4"] if argv[0] == "all" else [argv[0]]
    for wl in which:
        write(wl, int(argv[1]))


if __name__ == "__main__":
    main(sys.argv[1:])
