"""pcapng: a sequence of blocks, several sections, several interfaces each with its own
link type, snaplen and timestamp resolution (draft-ietf-opsawg-pcapng).

As for classic pcap (pcap.py), two ways through: read_packets() one record at a time in
compiled Python, the reference; read_batches() with the Enhanced Packet Blocks that lie
whole in the source's buffer read and decoded by the C scanner (_scan_c.c), a batch at a
time. Every other block goes through _block() in both.
"""

from __future__ import annotations

import struct
from typing import Any, Callable, Final, Iterator, Optional, TYPE_CHECKING

from .link import NOT_A_PACKET
from .pcap import Batch, Item, c_scanner, u32

if TYPE_CHECKING:
    from .reader import CaptureReader

SHB: Final = 0x0A0D0D0A
IDB: Final = 0x00000001
PB_OBSOLETE: Final = 0x00000002
SPB: Final = 0x00000003
EPB: Final = 0x00000006
DSB: Final = 0x0000000A
JOURNAL: Final = 0x00000009  # systemd Journal Export Block
CUSTOM: Final = (0x00000BAD, 0x40000BAD)
BYTE_ORDER_MAGIC: Final = 0x1A2B3C4D

OPT_ENDOFOPT: Final = 0
OPT_IF_TSRESOL: Final = 9
OPT_IF_TSOFFSET: Final = 14

# Blocks larger than this are damage, not data (Wireshark uses 16 MiB for most blocks).
MAX_BLOCK: Final = 16 * 1024 * 1024

ScanNg = Callable[[Any, int, bool, list, int, int, int], tuple[int, int, int, int, int, list[Item]]]


C_SCAN: Final[Optional[ScanNg]] = c_scanner("scan_ng")  # the C scanner's pcapng loop


class Interface:
    __slots__ = ("linktype", "snaplen", "num", "den", "offset_s")

    def __init__(self, linktype: int, snaplen: int) -> None:
        self.linktype = linktype
        self.snaplen = snaplen
        # Timestamp unit as the fraction num/den of a nanosecond multiplier: default microseconds.
        self.num = 1000
        self.den = 1
        self.offset_s = 0

    def set_tsresol(self, v: int) -> None:
        exp = v & 0x7F
        if v & 0x80:  # a power of two
            self.num, self.den = 1_000_000_000, 1 << exp
        elif exp <= 9:
            self.num, self.den = 10 ** (9 - exp), 1
        else:
            self.num, self.den = 1, 10 ** (exp - 9)

    def ts_ns(self, high: int, low: int) -> int:
        units = (high << 32) | low
        if self.den == 1:
            return units * self.num + self.offset_s * 1_000_000_000
        return units * self.num // self.den + self.offset_s * 1_000_000_000


def _options(body: bytes, start: int, endian: str) -> Iterator[tuple[int, bytes]]:
    pos = start
    n = len(body)
    hdr = struct.Struct(endian + "HH")
    while pos + 4 <= n:
        code, length = hdr.unpack_from(body, pos)
        pos += 4
        if code == OPT_ENDOFOPT:
            return
        yield code, body[pos:pos + length]
        pos += (length + 3) & ~3


class _Sections:
    """What the blocks read so far say about the ones to come: the current section's byte
    order and interfaces."""

    def __init__(self) -> None:
        self.endian = "<"
        self.little = True
        self.section = 0
        self.interfaces: list[Interface] = []
        # per interface: (linktype, num, den, offset_ns) for the fast path's timestamp arithmetic
        self.fast: list[tuple[int, int, int, int]] = []
        # the same for the C scanner: (linktype, ns per unit, offset_ns), or None where the
        # unit is not a whole number of nanoseconds; a list, appended to (a section may
        # declare any number of interfaces) and read by the scanner per block
        self.for_c: list[Optional[tuple[int, int, int]]] = []
        self.stop = False  # the end of the file, or damage (reported)


def _block(reader: "CaptureReader", st: _Sections, type_bytes: bytes) -> Optional[tuple[int, int, bytes, int]]:
    """Read the block whose type `type_bytes` was just taken, through the source: a record
    (ts_ns, linktype, data, orig_len) when it holds a packet (or is a custom or journal
    block, which Wireshark numbers: linktype NOT_A_PACKET), else None. Sets st.stop at the
    end of the file and at damage, which it reports."""
    src = reader.source
    if len(type_bytes) < 4:
        if type_bytes:
            reader.fail_or_warn("capture is cut short inside a block header")
        st.stop = True
        return None
    block_offset = src.offset - 4
    if type_bytes == b"\x0a\x0d\x0d\x0a":
        # A Section Header Block: byte order comes from its own magic, read before its length.
        rest = src.take(8)
        if len(rest) < 8:
            reader.fail_or_warn("capture is cut short inside a section header")
            st.stop = True
            return None
        bom = rest[4:8]
        if bom == b"\x4d\x3c\x2b\x1a":
            endian = "<"
        elif bom == b"\x1a\x2b\x3c\x4d":
            endian = ">"
        else:
            reader.fail_or_warn(f"section header at offset {block_offset} has a bad byte-order magic")
            st.stop = True
            return None
        (length,) = struct.unpack(endian + "I", rest[:4])
        if length < 28 or length % 4 or length > MAX_BLOCK:
            reader.fail_or_warn(f"section header at offset {block_offset} has an impossible length {length}")
            st.stop = True
            return None
        body = src.take(length - 12)
        if len(body) < length - 12:
            reader.fail_or_warn("capture is cut short inside a section header")
            st.stop = True
            return None
        st.section += 1
        st.endian = endian
        st.little = endian == "<"
        st.interfaces = []  # interface ids are per section
        st.fast = []
        st.for_c = []
        return None
    endian = st.endian
    (btype,) = struct.unpack(endian + "I", type_bytes)
    lb = src.take(4)
    if len(lb) < 4:
        reader.fail_or_warn("capture is cut short inside a block header")
        st.stop = True
        return None
    (length,) = struct.unpack(endian + "I", lb)
    if length < 12 or length % 4 or length > MAX_BLOCK:
        reader.fail_or_warn(f"block at offset {block_offset} has an impossible length {length}")
        st.stop = True
        return None
    body = src.take(length - 8)
    if len(body) < length - 8:
        reader.fail_or_warn(f"capture is cut short inside the block at offset {block_offset}")
        st.stop = True
        return None
    (trailer,) = struct.unpack_from(endian + "I", body, length - 12)
    if trailer != length:
        reader.fail_or_warn(f"block at offset {block_offset} has mismatched lengths ({length} vs {trailer})")
        st.stop = True
        return None
    blen = length - 12  # body without the trailing length
    if st.section == 0:
        reader.fail_or_warn("pcapng block before any section header")
        st.stop = True
        return None
    interfaces = st.interfaces
    if btype == EPB:
        if blen < 20:
            reader.fail_or_warn(f"enhanced packet block at offset {block_offset} is too short")
            st.stop = True
            return None
        ifid, high, low, caplen, orig = struct.unpack_from(endian + "IIIII", body, 0)
        if ifid >= len(interfaces) or caplen > blen - 20:
            reader.fail_or_warn(
                f"enhanced packet block at offset {block_offset} names interface {ifid} or length {caplen} "
                "that do not exist"
            )
            st.stop = True
            return None
        iface = interfaces[ifid]
        return (iface.ts_ns(high, low), iface.linktype, body[20:20 + caplen], orig)
    if btype == SPB:
        if not interfaces or blen < 4:
            reader.fail_or_warn(f"simple packet block at offset {block_offset} without an interface")
            st.stop = True
            return None
        (orig,) = struct.unpack_from(endian + "I", body, 0)
        iface = interfaces[0]
        caplen = min(orig, blen - 4, iface.snaplen or orig)
        # Simple Packet Blocks carry no timestamp; Wireshark shows them at time 0.
        return (0, iface.linktype, body[4:4 + caplen], orig)
    if btype == PB_OBSOLETE:
        if blen < 20:
            reader.fail_or_warn(f"packet block at offset {block_offset} is too short")
            st.stop = True
            return None
        ifid, _drops, high, low, caplen, orig = struct.unpack_from(endian + "HHIIII", body, 0)
        if ifid >= len(interfaces) or caplen > blen - 20:
            reader.fail_or_warn(f"packet block at offset {block_offset} is inconsistent")
            st.stop = True
            return None
        iface = interfaces[ifid]
        return (iface.ts_ns(high, low), iface.linktype, body[20:20 + caplen], orig)
    if btype == IDB:
        if blen < 8:
            reader.fail_or_warn(f"interface block at offset {block_offset} is too short")
            st.stop = True
            return None
        linktype, _reserved, snaplen = struct.unpack_from(endian + "HHI", body, 0)
        iface = Interface(linktype, snaplen)
        for code, value in _options(body[:blen], 8, endian):
            if code == OPT_IF_TSRESOL and value:
                iface.set_tsresol(value[0])
            elif code == OPT_IF_TSOFFSET and len(value) == 8:
                (iface.offset_s,) = struct.unpack(endian + "q", value)
        interfaces.append(iface)
        offset_ns = iface.offset_s * 1_000_000_000
        st.fast.append((iface.linktype, iface.num, iface.den, offset_ns))
        st.for_c.append((iface.linktype, iface.num, offset_ns) if iface.den == 1 else None)
        reader.link_types.add(linktype)
        return None
    if btype == DSB:
        if blen >= 8:
            stype, slen = struct.unpack_from(endian + "II", body, 0)
            reader.secrets.append((stype, bytes(body[8:8 + min(slen, blen - 8)])))
        return None
    if btype in CUSTOM or btype == JOURNAL:
        # Wireshark shows these as frames of their own, so they take a packet number.
        return (_journal_ts(body[:blen]) if btype == JOURNAL else 0, NOT_A_PACKET, b"", 0)
    # Name Resolution, Interface Statistics and unknown blocks: skipped by design.
    return None


def read_packets(reader: "CaptureReader", magic: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
    """Yield (number, ts_ns, linktype, data, orig_len), keeping the reader's packet count and
    first/last timestamps current (records that are not packets are numbered, not timed)."""
    src = reader.source
    st = _Sections()
    pending_type: bytes | None = magic
    number = 0
    first = last = None
    # Fast path for Enhanced Packet Blocks lying whole in the source's buffer: the block and
    # packet headers and the trailer read in place (pcap.u32), one slice (measured: iterating
    # W1-20MB rewritten as pcapng 0.337 s -> 0.132 s with struct, before u32).
    try:
        while True:
            if pending_type is not None:
                type_bytes = pending_type
                pending_type = None
            else:
                buf = src._buf
                pos = src._pos
                little = st.little
                if len(buf) - pos >= 28 and u32(buf, pos, little) == EPB:
                    length = u32(buf, pos + 4, little)
                    ifid = u32(buf, pos + 8, little)
                    caplen = u32(buf, pos + 20, little)
                    if 32 <= length <= MAX_BLOCK and not length & 3 and ifid < len(st.fast) \
                            and caplen <= length - 32 and pos + length <= len(buf) \
                            and u32(buf, pos + length - 4, little) == length:
                        high = u32(buf, pos + 12, little)
                        low = u32(buf, pos + 16, little)
                        orig = u32(buf, pos + 24, little)
                        src._pos = pos + length
                        linktype, num, den, offset_ns = st.fast[ifid]
                        if den == 1:
                            ts_ns = ((high << 32) | low) * num + offset_ns
                        else:
                            ts_ns = ((high << 32) | low) * num // den + offset_ns
                        number += 1
                        reader.packets = number
                        if first is None:
                            first = ts_ns
                        last = ts_ns
                        yield number, ts_ns, linktype, buf[pos + 28:pos + 28 + caplen], orig
                        continue
                type_bytes = src.take(4)
            record = _block(reader, st, type_bytes)
            if st.stop:
                return
            if record is not None:
                ts_ns, linktype, data, orig = record
                number += 1
                reader.packets = number
                if linktype != NOT_A_PACKET:
                    if first is None:
                        first = ts_ns
                    last = ts_ns
                yield number, ts_ns, linktype, data, orig
    finally:
        reader.first_ts_ns = first
        reader.last_ts_ns = last


def read_batches(reader: "CaptureReader", magic: bytes, scan: ScanNg, parts: int, part: int) -> Iterator[Batch]:
    """The records of read_packets() in batches, as pcap.read_batches gives a pcap file's:
    Enhanced Packet Blocks through the C scanner, every other block (and an EPB the scanner
    declines) through _block."""
    src = reader.source
    st = _Sections()
    number = 0
    first: Optional[int] = None
    last: Optional[int] = None
    type_bytes = magic
    try:
        while True:
            if not type_bytes:
                before = number
                pos, number, c_first, c_last, tcp, items = scan(src.view(), src._pos, st.little, st.for_c, number,
                                                                parts, part)
                src._pos = pos
                src.release()
                if number > before:
                    reader.packets = number
                    if first is None:
                        first = c_first
                    last = c_last
                    yield items, number, tcp
                    if not number & 0xFFF:
                        continue  # stopped where the pipeline sweeps: the buffer may hold more
                type_bytes = src.take(4)
            record = _block(reader, st, type_bytes)
            type_bytes = b""
            if st.stop:
                return
            if record is not None:
                ts_ns, linktype, data, _orig = record
                number += 1
                reader.packets = number
                if linktype != NOT_A_PACKET:
                    if first is None:
                        first = ts_ns
                    last = ts_ns
                yield [(number, ts_ns, None, linktype, None, 0, 0, 0, 0, 0, data)], number, 0
    finally:
        reader.first_ts_ns = first
        reader.last_ts_ns = last


def _journal_ts(entry: bytes) -> int:
    """A journal entry's __REALTIME_TIMESTAMP (microseconds) in nanoseconds, else 0."""
    key = b"__REALTIME_TIMESTAMP="
    i = entry.find(key)
    if i < 0:
        return 0
    i += len(key)
    j = i
    while j < len(entry) and 48 <= entry[j] <= 57:
        j += 1
    return int(entry[i:j]) * 1000 if j > i and j - i < 20 else 0
