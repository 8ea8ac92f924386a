"""Classic libpcap files: 24-byte file header, 16-byte record headers.

Magic a1b2c3d4 means microsecond timestamps, a1b23c4d nanoseconds; either byte order.

Two ways through the records: read_packets() yields one record at a time, in compiled
Python; read_batches() hands the records that lie whole in the source's buffer to the C
scanner (_scan_c.c), which also decodes their Ethernet/IPv4/TCP headers, and yields them a
batch at a time. read_packets() and link.py's decode() are the reference for the scanner.
"""

from __future__ import annotations

import os
import struct
from typing import Any, Callable, Final, Iterator, Optional, TYPE_CHECKING

if TYPE_CHECKING:
    from .reader import CaptureReader, ChunkSource

MAGICS: Final = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}

# Wireshark refuses records above this when the snaplen is smaller (WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_RECORD: Final = 262144

# What the scanner gives per record: (number, ts_ns, src, sport, dst, dport, seq, ack, flags,
# window, payload) for a segment decode()'s fast path takes (link.Segment with `missing`
# always 0 there), or (number, ts_ns, None, linktype, None, 0, 0, 0, 0, 0, data) for any
# other record, which decode() reads.
Item = tuple[int, int, Optional[bytes], int, Optional[bytes], int, int, int, int, int, bytes]
# A batch: (items, number of the last record read, records the fast path took: this worker's
# or not).
Batch = tuple[list[Item], int, int]
Scan = Callable[[Any, int, bool, int, int, int, int, int, int], tuple[int, int, int, int, int, list[Item]]]


def c_scanner(name: str) -> Any:
    """A loop of the C scanner (_scan_c.c), or None where H2SCOPE_PURE_PYTHON
    (h2scope.native.ENV) is set or it was not built."""
    if os.environ.get("H2SCOPE_PURE_PYTHON"):
        return None
    try:
        from . import _scan_c
    except ImportError:
        return None
    return getattr(_scan_c, name)


C_SCAN: Final[Optional[Scan]] = c_scanner("scan")


def u32(b: bytes, i: int, little: bool) -> int:
    """The 32-bit unsigned integer at b[i], byte by byte: record headers are read this way,
    on native ints in compiled code, where struct made a Python int per field and a tuple
    per record (callgrind, W1-2MB: see benchmarks/README.md)."""
    if little:
        return b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24
    return b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3]


class FileHeader:
    """What the 24-byte file header says, as the record loops need it."""

    def __init__(self, little: bool, ns_per_unit: int, snaplen: int, linktype: int) -> None:
        self.little = little
        self.ns_per_unit = ns_per_unit
        self.snaplen = snaplen
        self.linktype = linktype
        self.limit = max(snaplen, MAX_RECORD)
        self.unpack_from = struct.Struct(("<" if little else ">") + "IIII").unpack_from


def _file_header(reader: "CaptureReader", magic: bytes) -> Optional[FileHeader]:
    endian, ns_per_unit = MAGICS[magic]
    header = reader.source.take(20)
    if len(header) < 20:
        reader.fail_or_warn("pcap file header is truncated")
        return None
    _major, _minor, _zone, _sigfigs, snaplen, linktype_field = struct.unpack(endian + "HHiIII", header)
    # The upper bits of the link-type field carry the FCS length (pcap spec); the type is the low 16.
    linktype = linktype_field & 0xFFFF
    reader.link_types.add(linktype)
    return FileHeader(endian == "<", ns_per_unit, snaplen, linktype)


def _read_record(reader: "CaptureReader", src: "ChunkSource", fh: FileHeader,
                 number: int) -> Optional[tuple[int, int, bytes, int]]:
    """(sec, frac, data, orig) of the next record through take(), which crosses chunk
    boundaries; None at the end of the file or at damage, which it reports."""
    hdr = src.take(16)
    if len(hdr) < 16:
        if hdr:
            reader.fail_or_warn(f"capture is cut short inside the record header of packet {number + 1}")
        return None
    sec, frac, incl, orig = fh.unpack_from(hdr)
    if incl > fh.limit:
        reader.fail_or_warn(
            f"packet {number + 1} claims {incl} bytes, more than the snaplen {fh.snaplen}: the file is damaged"
        )
        return None
    data = src.take(incl)
    if len(data) < incl:
        reader.fail_or_warn(
            f"capture is cut short inside packet {number + 1} "
            f"({len(data)} of {incl} bytes present)"
        )
        return None
    return sec, frac, data, orig


def read_packets(reader: "CaptureReader", magic: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
    """Yield (number, ts_ns, linktype, data, orig_len), keeping the reader's packet count and
    first/last timestamps current."""
    fh = _file_header(reader, magic)
    if fh is None:
        return
    src = reader.source
    linktype = fh.linktype
    limit = fh.limit
    ns_per_unit = fh.ns_per_unit
    little = fh.little
    number = 0
    ts = None
    # Fast path: records lying whole inside the source's buffer are read (u32) and sliced in
    # place, one slice per record; take() handles chunk boundaries and damage (measured:
    # iterating W1-20MB.pcap 0.136 s -> 0.076 s, when the header was one unpack_from).
    buf = src._buf
    pos = src._pos
    blen = len(buf)
    try:
        while True:
            if blen - pos >= 16:
                sec = u32(buf, pos, little)
                frac = u32(buf, pos + 4, little)
                incl = u32(buf, pos + 8, little)
                orig = u32(buf, pos + 12, little)
                start = pos + 16
                end = start + incl
                if end <= blen and incl <= limit:
                    src._pos = pos = end
                    number += 1
                    reader.packets = number
                    ts = sec * 1_000_000_000 + frac * ns_per_unit
                    if number == 1:
                        reader.first_ts_ns = ts
                    yield number, ts, linktype, buf[start:end], orig
                    continue
            src._pos = pos
            rec = _read_record(reader, src, fh, number)
            if rec is None:
                return
            sec, frac, data, orig = rec
            buf = src._buf
            pos = src._pos
            blen = len(buf)
            number += 1
            reader.packets = number
            ts = sec * 1_000_000_000 + frac * ns_per_unit
            if number == 1:
                reader.first_ts_ns = ts
            yield number, ts, linktype, data, orig
    finally:
        reader.last_ts_ns = ts


def read_batches(reader: "CaptureReader", magic: bytes, scan: Scan, parts: int, part: int) -> Iterator[Batch]:
    """The records of read_packets(), decoded as decode()'s fast path decodes them, in
    batches (see Item and Batch). A batch ends at the latest after a record whose number is
    a multiple of 4096, where the pipeline sweeps. With parts > 1, a fast-path segment
    whose port sum modulo parts is not `part` is counted in the batch's third field and left
    out (it is another worker's): what run_capture's per-packet loop does."""
    fh = _file_header(reader, magic)
    if fh is None:
        return
    src = reader.source
    linktype = fh.linktype
    little = fh.little
    limit = fh.limit
    ns_per_unit = fh.ns_per_unit
    number = 0
    ts: Optional[int] = None
    try:
        while True:
            pos, number, first, last, tcp, items = scan(src.view(), src._pos, little, ns_per_unit, limit,
                                                        linktype, number, parts, part)
            src._pos = pos
            src.release()
            if last >= 0:
                reader.packets = number
                if reader.first_ts_ns is None:
                    reader.first_ts_ns = first
                ts = last
                yield items, number, tcp
                if not number & 0xFFF:
                    continue  # stopped where the pipeline sweeps: the buffer may hold more
            # The next record is not whole in the buffer (or is damaged): through the source.
            rec = _read_record(reader, src, fh, number)
            if rec is None:
                return
            sec, frac, data, _orig = rec
            number += 1
            reader.packets = number
            ts = sec * 1_000_000_000 + frac * ns_per_unit
            if number == 1:
                reader.first_ts_ns = ts
            yield [(number, ts, None, linktype, None, 0, 0, 0, 0, 0, data)], number, 0
    finally:
        reader.last_ts_ns = ts
