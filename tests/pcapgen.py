"""A small, independent pcap/pcapng writer for tests, plus helpers that derive link-layer
variants from real captures and permute, duplicate, drop or rewrite their records.

Nothing here imports h2scope: the files it writes are checked against h2scope's reader
*and* against tshark, so a bug shared by the writer and the reader cannot hide.
"""

from __future__ import annotations

import gzip
import random
import re
import struct
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Iterable, Optional, Sequence

# Link types (LINKTYPE_* numbers as written in files).
NULL, EN10MB, RAW_12, RAW_14, RAW, LOOP, LINUX_SLL, IPV4, IPV6, LINUX_SLL2 = 0, 1, 12, 14, 101, 108, 113, 228, 229, 276


@dataclass(frozen=True)
class Record:
    ts_ns: int
    data: bytes
    orig_len: int


@dataclass
class Capture:
    linktype: int
    snaplen: int
    records: list[Record]
    nano: bool = False


# ----------------------------------------------------------------------------------------
# reading (pcap only, plain or gzip) -- just enough to derive variants from real captures


def read_pcap(path: str | Path) -> Capture:
    raw = Path(path).read_bytes()
    if raw[:2] == b"\x1f\x8b":
        raw = gzip.decompress(raw)
    magic = raw[:4]
    table = {
        b"\xd4\xc3\xb2\xa1": ("<", False), b"\xa1\xb2\xc3\xd4": (">", False),
        b"\x4d\x3c\xb2\xa1": ("<", True), b"\xa1\xb2\x3c\x4d": (">", True),
    }
    if magic not in table:
        raise ValueError(f"{path}: not a classic pcap file")
    e, nano = table[magic]
    snaplen, linktype = struct.unpack_from(e + "II", raw, 16)
    pos = 24
    records = []
    while pos + 16 <= len(raw):
        sec, frac, incl, orig = struct.unpack_from(e + "IIII", raw, pos)
        pos += 16
        records.append(Record(sec * 1_000_000_000 + frac * (1 if nano else 1000), raw[pos:pos + incl], orig))
        pos += incl
    return Capture(linktype & 0xFFFF, snaplen, records, nano)


# ----------------------------------------------------------------------------------------
# writing


def pcap_bytes(linktype: int, records: Iterable[Record], *, endian: str = "<", nano: bool = False,
               snaplen: int = 262144) -> bytes:
    """A classic pcap file. Microsecond files round timestamps down to the microsecond."""
    magic = 0xA1B23C4D if nano else 0xA1B2C3D4
    out = [struct.pack(endian + "IHHiIII", magic, 2, 4, 0, 0, snaplen, linktype)]
    for r in records:
        sec, ns = divmod(r.ts_ns, 1_000_000_000)
        frac = ns if nano else ns // 1000
        data = r.data[:snaplen]
        out.append(struct.pack(endian + "IIII", sec, frac, len(data), r.orig_len))
        out.append(data)
    return b"".join(out)


def write_pcap(path: str | Path, linktype: int, records: Iterable[Record], **kw) -> Path:
    path = Path(path)
    path.write_bytes(pcap_bytes(linktype, records, **kw))
    return path


def _pad4(b: bytes) -> bytes:
    return b + b"\0" * (-len(b) % 4)


def _block(btype: int, body: bytes, e: str = "<") -> bytes:
    body = _pad4(body)
    length = 12 + len(body)
    return struct.pack(e + "II", btype, length) + body + struct.pack(e + "I", length)


def _opt(code: int, value: bytes, e: str = "<") -> bytes:
    return struct.pack(e + "HH", code, len(value)) + _pad4(value)


def shb(e: str = "<", *, options: bytes = b"") -> bytes:
    body = struct.pack(e + "IHHq", 0x1A2B3C4D, 1, 0, -1)
    if options:
        body += options + _opt(0, b"", e)
    return _block(0x0A0D0D0A, body, e)


def idb(linktype: int, snaplen: int = 262144, tsresol: Optional[int] = None, e: str = "<",
        name: Optional[str] = None) -> bytes:
    body = struct.pack(e + "HHI", linktype, 0, snaplen)
    opts = b""
    if name is not None:
        opts += _opt(2, name.encode(), e)
    if tsresol is not None:
        opts += _opt(9, bytes([tsresol]), e)
    if opts:
        body += opts + _opt(0, b"", e)
    return _block(1, body, e)


def ts_units(ts_ns: int, tsresol: Optional[int]) -> int:
    """A nanosecond timestamp in an interface's if_tsresol units (default microseconds)."""
    if tsresol is None:
        tsresol = 6
    if tsresol & 0x80:
        return ts_ns * (1 << (tsresol & 0x7F)) // 1_000_000_000
    exp = tsresol
    return ts_ns * 10 ** exp // 1_000_000_000 if exp >= 9 else ts_ns // 10 ** (9 - exp)


def units_ns(units: int, tsresol: Optional[int]) -> int:
    """What a reader must turn `units` back into (exact integer arithmetic)."""
    if tsresol is None:
        tsresol = 6
    if tsresol & 0x80:
        return units * 1_000_000_000 // (1 << (tsresol & 0x7F))
    exp = tsresol
    return units * 10 ** (9 - exp) if exp <= 9 else units // 10 ** (exp - 9)


def epb(ifid: int, r: Record, tsresol: Optional[int] = None, e: str = "<", options: bytes = b"") -> bytes:
    units = ts_units(r.ts_ns, tsresol)
    body = struct.pack(e + "IIIII", ifid, units >> 32, units & 0xFFFFFFFF, len(r.data), r.orig_len)
    body += _pad4(r.data)
    if options:
        body += options + _opt(0, b"", e)
    return _block(6, body, e)


def spb(r: Record, e: str = "<") -> bytes:
    return _block(3, struct.pack(e + "I", r.orig_len) + _pad4(r.data), e)


def obsolete_pb(ifid: int, r: Record, tsresol: Optional[int] = None, e: str = "<") -> bytes:
    units = ts_units(r.ts_ns, tsresol)
    body = struct.pack(e + "HHIIII", ifid, 0, units >> 32, units & 0xFFFFFFFF, len(r.data), r.orig_len)
    return _block(2, body + _pad4(r.data), e)


def dsb(secrets: bytes, stype: int = 0x544C534B, e: str = "<") -> bytes:  # 'TLSK': TLS key log
    return _block(0x0A, struct.pack(e + "II", stype, len(secrets)) + _pad4(secrets), e)


def isb(ifid: int, e: str = "<") -> bytes:
    return _block(5, struct.pack(e + "III", ifid, 0, 0), e)


def nrb(e: str = "<") -> bytes:
    rec = struct.pack(e + "HH", 1, 14) + _pad4(bytes([127, 0, 0, 1]) + b"localhost\0")
    return _block(4, rec + struct.pack(e + "HH", 0, 0), e)


def unknown_block(btype: int = 0x0BADBEEF, body: bytes = b"whatever is in here", e: str = "<") -> bytes:
    return _block(btype, body, e)


# ----------------------------------------------------------------------------------------
# link-layer variants


def split_ethernet(frame: bytes) -> tuple[int, bytes]:
    """(ethertype, network-layer bytes) of an untagged Ethernet frame."""
    (etype,) = struct.unpack_from("!H", frame, 12)
    return etype, frame[14:]


def split_sll2(frame: bytes) -> tuple[int, bytes]:
    (etype,) = struct.unpack_from("!H", frame, 0)
    return etype, frame[20:]


def network_layer(cap: Capture) -> list[tuple[Record, int, bytes]]:
    """Per record: (record, ethertype, IP bytes)."""
    split = {EN10MB: split_ethernet, LINUX_SLL2: split_sll2}[cap.linktype]
    out = []
    for r in cap.records:
        etype, ip = split(r.data)
        out.append((r, etype, ip))
    return out


AF_INET = 2


def link_header(linktype: int, etype: int, *, byteorder: str = "<", af_inet6: int = 30) -> bytes:
    if linktype in (RAW, RAW_12, RAW_14, IPV4, IPV6):
        return b""
    af = AF_INET if etype == 0x0800 else af_inet6
    if linktype == NULL:
        return struct.pack(byteorder + "I", af)
    if linktype == LOOP:
        return struct.pack("!I", af)
    if linktype == LINUX_SLL:
        # packet type 0 (to us), ARPHRD_LOOPBACK 772, address length 6, address, protocol
        return struct.pack("!HHH8sH", 0, 772, 6, b"\0" * 8, etype)
    if linktype == LINUX_SLL2:
        return struct.pack("!HHIHBB8s", etype, 0, 1, 772, 0, 6, b"\0" * 8)
    raise ValueError(linktype)


def ethernet_header(etype: int, vlans: Sequence[tuple[int, int]] = ()) -> bytes:
    """dst, src, then each (TPID, VLAN id) tag, then the ethertype."""
    h = b"\x02\0\0\0\0\x01" + b"\x02\0\0\0\0\x02"
    for tpid, vid in vlans:
        h += struct.pack("!HH", tpid, vid & 0x0FFF)
    return h + struct.pack("!H", etype)


def relink(cap: Capture, linktype: int, *, vlans: Sequence[tuple[int, int]] = (), ip_transform=None,
           **kw) -> Capture:
    """The same packets over another link layer (IP bytes unchanged unless ip_transform)."""
    records = []
    for r, etype, ip in network_layer(cap):
        if ip_transform is not None:
            ip = ip_transform(etype, ip)
        if linktype == EN10MB:
            hdr = ethernet_header(etype, vlans)
        else:
            hdr = link_header(linktype, etype, **kw)
        data = hdr + ip
        records.append(Record(r.ts_ns, data, r.orig_len - len(r.data) + len(data)))
    return Capture(linktype, cap.snaplen, records, cap.nano)


def ip_checksum(header: bytes) -> int:
    if len(header) % 2:
        header += b"\0"
    s = sum(struct.unpack(f"!{len(header) // 2}H", header))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def ipv4_add_options(etype: int, ip: bytes, options: bytes = b"\x01\x01\x01\x00" + b"\x94\x04\x00\x00") -> bytes:
    """Insert IPv4 options (default: 3x NOP, EOL, Router Alert) and fix IHL, total length and
    the header checksum. The TCP checksum does not cover IP options, so it stays valid."""
    if etype != 0x0800:
        return ip
    assert len(options) % 4 == 0
    ihl = (ip[0] & 0x0F) * 4
    (total,) = struct.unpack_from("!H", ip, 2)
    hdr = bytearray(ip[:ihl] + options)
    hdr[0] = 0x40 | (len(hdr) // 4)
    struct.pack_into("!H", hdr, 2, total + len(options))
    struct.pack_into("!H", hdr, 10, 0)
    struct.pack_into("!H", hdr, 10, ip_checksum(bytes(hdr)))
    return bytes(hdr) + ip[ihl:]


def ipv6_add_ext_headers(etype: int, ip: bytes) -> bytes:
    """Insert a Hop-by-Hop Options header and a Destination Options header (both PadN)
    between the IPv6 header and TCP; fix next-header and payload length."""
    if etype != 0x86DD:
        return ip
    nxt = ip[6]
    dest = bytes([nxt, 1]) + b"\x01\x0e" + b"\0" * 12  # 16 bytes: hdr_ext_len 1
    hbh = bytes([60, 0]) + b"\x01\x04" + b"\0" * 4  # 8 bytes: next is Destination Options
    (plen,) = struct.unpack_from("!H", ip, 4)
    fixed = bytearray(ip[:40])
    fixed[6] = 0  # Hop-by-Hop
    struct.pack_into("!H", fixed, 4, plen + len(hbh) + len(dest))
    return bytes(fixed) + hbh + dest + ip[40:]


# ----------------------------------------------------------------------------------------
# TCP-level helpers on Ethernet/IPv4/IPv6 frames


@dataclass(frozen=True)
class TcpView:
    l4: int  # offset of the TCP header in the frame
    src: bytes
    dst: bytes
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    payload_off: int
    payload_len: int

    @property
    def key(self) -> tuple:
        return (self.src, self.sport, self.dst, self.dport)


def tcp_view(frame: bytes, linktype: int = EN10MB) -> Optional[TcpView]:
    """The TCP header fields of an Ethernet/SLL2 + IPv4/IPv6 (no extension headers) frame,
    or None when it is not TCP or too short to say."""
    try:
        return _tcp_view(frame, linktype)
    except (struct.error, IndexError):
        return None


def _tcp_view(frame: bytes, linktype: int) -> Optional[TcpView]:
    off = {EN10MB: 14, LINUX_SLL2: 20}[linktype]
    (etype,) = struct.unpack_from("!H", frame, 12 if linktype == EN10MB else 0)
    if etype == 0x0800:
        ihl = (frame[off] & 0x0F) * 4
        if frame[off + 9] != 6:
            return None
        (total,) = struct.unpack_from("!H", frame, off + 2)
        src, dst = frame[off + 12:off + 16], frame[off + 16:off + 20]
        l4, end = off + ihl, off + total
    elif etype == 0x86DD:
        if frame[off + 6] != 6:
            return None
        (plen,) = struct.unpack_from("!H", frame, off + 4)
        src, dst = frame[off + 8:off + 24], frame[off + 24:off + 40]
        l4, end = off + 40, off + 40 + plen
    else:
        return None
    sport, dport, seq, ack, doff, flags = struct.unpack_from("!HHIIBB", frame, l4)
    poff = l4 + (doff >> 4) * 4
    return TcpView(l4, src, dst, sport, dport, seq, ack, flags, poff, end - poff)


def tcp_checksum(frame: bytearray, view: TcpView, linktype: int = EN10MB) -> None:
    """Recompute the TCP checksum in place (after rewriting sequence numbers)."""
    seg = bytes(frame[view.l4:view.payload_off + view.payload_len])
    seg = seg[:16] + b"\0\0" + seg[18:]
    if len(view.src) == 4:
        pseudo = view.src + view.dst + struct.pack("!BBH", 0, 6, len(seg))
    else:
        pseudo = view.src + view.dst + struct.pack("!IxxxB", len(seg), 6)
    struct.pack_into("!H", frame, view.l4 + 16, ip_checksum(pseudo + seg))


def shift_sequence_numbers(cap: Capture, target_isn: dict[tuple, int]) -> Capture:
    """Rewrite every segment's sequence number (and the peer's ACK number) so that each
    direction's initial sequence number becomes target_isn[(src, sport, dst, dport)]."""
    views = [tcp_view(r.data, cap.linktype) for r in cap.records]
    isn: dict[tuple, int] = {}
    for v in views:
        if v is not None and v.key not in isn:
            isn[v.key] = v.seq
    delta = {k: (target_isn[k] - s) & 0xFFFFFFFF for k, s in isn.items() if k in target_isn}
    out = []
    for r, v in zip(cap.records, views):
        if v is None:
            out.append(r)
            continue
        frame = bytearray(r.data)
        rev = (v.dst, v.dport, v.src, v.sport)
        struct.pack_into("!I", frame, v.l4 + 4, (v.seq + delta.get(v.key, 0)) & 0xFFFFFFFF)
        if v.flags & 0x10:
            struct.pack_into("!I", frame, v.l4 + 8, (v.ack + delta.get(rev, 0)) & 0xFFFFFFFF)
        tcp_checksum(frame, v, cap.linktype)
        out.append(replace(r, data=bytes(frame)))
    return replace(cap, records=out)


# ----------------------------------------------------------------------------------------
# permute / duplicate / drop (records keep their bytes and timestamps)


def permute(records: Sequence[Record], window: int, seed: int, *, keep: Sequence[int] = ()) -> list[Record]:
    """Shuffle records within consecutive blocks of `window` records; indices in `keep`
    stay where they are (and split the blocks around them)."""
    rng = random.Random(seed)
    keep_set = set(keep)
    out = list(records)
    block: list[int] = []

    def flush() -> None:
        shuffled = block[:]
        rng.shuffle(shuffled)
        for dst, src in zip(block, shuffled):
            out[dst] = records[src]
        block.clear()

    for i in range(len(records)):
        if i in keep_set:
            flush()
            continue
        block.append(i)
        if len(block) == window:
            flush()
    flush()
    return out


def duplicate(records: Sequence[Record], indices: Iterable[int]) -> list[Record]:
    """Each record in `indices` appears twice in a row."""
    idx = set(indices)
    out = []
    for i, r in enumerate(records):
        out.append(r)
        if i in idx:
            out.append(r)
    return out


def drop(records: Sequence[Record], indices: Iterable[int]) -> list[Record]:
    idx = set(indices)
    return [r for i, r in enumerate(records) if i not in idx]


def truncate(records: Sequence[Record], snaplen: int) -> list[Record]:
    """Cut every record to `snaplen` bytes, keeping its original length (what `-s` does)."""
    return [replace(r, data=r.data[:snaplen]) for r in records]


# ----------------------------------------------------------------------------------------
# the oracle: tshark's TCP stream follower


@dataclass
class Followed:
    stream: int
    nodes: tuple[str, str]  # "ip:port" of node 0 and node 1 as tshark prints them
    data: tuple[bytes, bytes]  # bytes sent by node 0, by node 1 (gap markers removed)
    gaps: tuple[list, list]  # per node: (offset, size) of "[N bytes missing in capture file]"


_MISSING = re.compile(rb"\[(\d+) bytes missing in capture file\]\x00?")


def parse_follow_raw(text: str) -> dict[int, Followed]:
    """Parse the output of one or more `-z follow,tcp,raw,N`: lines without a leading tab
    are node 0's segments, lines with one are node 1's, each in hex. tshark writes a lost
    segment as the text "[N bytes missing in capture file]"; it becomes a gap entry."""
    out: dict[int, Followed] = {}
    for block in text.split("Follow: tcp,raw")[1:]:
        lines = block.splitlines()
        assert lines[1].startswith("Filter: tcp.stream eq "), lines[:4]
        stream = int(lines[1].rsplit(" ", 1)[1])
        n0 = lines[2].split(": ", 1)[1]
        n1 = lines[3].split(": ", 1)[1]
        data = [bytearray(), bytearray()]
        gaps: tuple[list, list] = ([], [])
        for line in lines[4:]:
            if line.startswith("====="):
                break
            if not line.strip():
                continue
            node = 1 if line.startswith("\t") else 0
            chunk = bytes.fromhex(line.strip())
            m = _MISSING.fullmatch(chunk)
            if m:
                gaps[node].append((len(data[node]) + sum(s for _, s in gaps[node]), int(m.group(1))))
            else:
                data[node] += chunk
        out[stream] = Followed(stream, (n0, n1), (bytes(data[0]), bytes(data[1])), gaps)
    return out


def endpoint_key(text: str) -> tuple[str, int]:
    """'1.2.3.4:5' / '[::1]:5' / '::1:5' → (normalised ip, port), to compare endpoints."""
    import ipaddress

    host, port = text.rsplit(":", 1)
    host = host.strip("[]")
    return str(ipaddress.ip_address(host)), int(port)


@dataclass
class TsharkView:
    """What tshark sees in a capture: one row per packet, and each TCP stream followed."""

    packets: list[dict]  # number, epoch (text, as printed), cap_len, len, stream, flags, src, sport
    streams: dict[int, Followed]


_FIELDS = ("frame.number", "frame.time_epoch", "frame.cap_len", "frame.len", "tcp.stream", "tcp.flags",
           "ip.src", "ipv6.src", "tcp.srcport")


def tshark_view(tshark: str, path: str | Path, follow: int = 8) -> TsharkView:
    import subprocess

    args = [tshark, "-n", "-r", str(path), "-T", "fields"]
    for f in _FIELDS:
        args += ["-e", f]
    for i in range(follow):
        args += ["-z", f"follow,tcp,raw,{i}"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"tshark failed on {path}: {proc.stderr}"
    text = proc.stdout
    cut = text.find("\n=====")
    rows, follow_text = (text[:cut], text[cut:]) if cut >= 0 else (text, "")
    packets = []
    for line in rows.splitlines():
        if not line.strip():
            continue
        v = line.split("\t")
        v += [""] * (len(_FIELDS) - len(v))
        packets.append({
            "number": int(v[0]), "epoch": v[1], "cap_len": int(v[2]), "len": int(v[3]),
            "stream": int(v[4]) if v[4] else None, "flags": int(v[5], 16) if v[5] else None,
            "src": v[6].split(",")[-1] or v[7].split(",")[-1], "sport": int(v[8]) if v[8] else None,
        })
    streams = {s for p in packets if (s := p["stream"]) is not None}
    if streams and max(streams) >= follow:
        return tshark_view(tshark, path, follow=max(streams) + 1)
    followed = {k: v for k, v in parse_follow_raw(follow_text).items() if k in streams}
    return TsharkView(packets, followed)


def epoch_text(ts_ns: int) -> str:
    """A nanosecond timestamp as tshark prints frame.time_epoch (9 decimals, exact)."""
    sec, ns = divmod(ts_ns, 1_000_000_000)
    return f"{sec}.{ns:09d}"


def make_segment(rec: Record, view: TcpView, *, seq_delta: int, payload: bytes,
                 linktype: int = EN10MB) -> Record:
    """A copy of a TCP segment with its sequence number moved by seq_delta and another
    payload; IP lengths and checksums fixed up."""
    head = bytearray(rec.data[:view.payload_off])
    frame = head + payload
    struct.pack_into("!I", frame, view.l4 + 4, (view.seq + seq_delta) & 0xFFFFFFFF)
    off = {EN10MB: 14, LINUX_SLL2: 20}[linktype]
    if frame[off] >> 4 == 4:
        ihl = (frame[off] & 0x0F) * 4
        struct.pack_into("!H", frame, off + 2, len(frame) - off)
        struct.pack_into("!H", frame, off + 10, 0)
        struct.pack_into("!H", frame, off + 10, ip_checksum(bytes(frame[off:off + ihl])))
    else:
        struct.pack_into("!H", frame, off + 4, len(frame) - off - 40)
    new_view = replace(view, payload_len=len(payload))
    tcp_checksum(frame, new_view, linktype)
    return Record(rec.ts_ns, bytes(frame), len(frame))
