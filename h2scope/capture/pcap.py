"""Classic libpcap files: 24-byte file header, 16-byte record headers.

Magic a1b2c3d4 means microsecond timestamps, a1b23c4d nanoseconds; either byte order.
"""

from __future__ import annotations

import struct
from typing import Final, Iterator, TYPE_CHECKING

if TYPE_CHECKING:
    from .reader import CaptureReader

MAGICS: Final = {
    b"\xd4\xc3\xb2\xa1": ("<", 1000),  # little-endian, microseconds
    b"\xa1\xb2\xc3\xd4": (">", 1000),
    b"\x4d\x3c\xb2\xa1": ("<", 1),  # little-endian, nanoseconds
    b"\xa1\xb2\x3c\x4d": (">", 1),
}

# Wireshark refuses records above this when the snaplen is smaller (WTAP_MAX_PACKET_SIZE_STANDARD).
MAX_RECORD: Final = 262144


def u32(b: bytes, i: int, little: bool) -> int:
    """The 32-bit unsigned integer at b[i], byte by byte: record headers are read this way,
    on native ints in compiled code, where struct made a Python int per field and a tuple
    per record (callgrind, W1-2MB: see benchmarks/README.md)."""
    if little:
        return b[i] | b[i + 1] << 8 | b[i + 2] << 16 | b[i + 3] << 24
    return b[i] << 24 | b[i + 1] << 16 | b[i + 2] << 8 | b[i + 3]


def read_packets(reader: "CaptureReader", magic: bytes) -> Iterator[tuple[int, int, int, bytes, int]]:
    """Yield (number, ts_ns, linktype, data, orig_len), keeping the reader's packet count and
    first/last timestamps current."""
    endian, ns_per_unit = MAGICS[magic]
    src = reader.source
    header = src.take(20)
    if len(header) < 20:
        reader.fail_or_warn("pcap file header is truncated")
        return
    _major, _minor, _zone, _sigfigs, snaplen, linktype_field = struct.unpack(endian + "HHiIII", header)
    # The upper bits of the link-type field carry the FCS length (pcap spec); the type is the low 16.
    linktype = linktype_field & 0xFFFF
    reader.link_types.add(linktype)
    limit = max(snaplen, MAX_RECORD)
    unpack_from = struct.Struct(endian + "IIII").unpack_from
    little = endian == "<"
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
            hdr = src.take(16)
            if len(hdr) < 16:
                if hdr:
                    reader.fail_or_warn(f"capture is cut short inside the record header of packet {number + 1}")
                return
            sec, frac, incl, orig = unpack_from(hdr)
            if incl > limit:
                reader.fail_or_warn(
                    f"packet {number + 1} claims {incl} bytes, more than the snaplen {snaplen}: the file is damaged"
                )
                return
            data = src.take(incl)
            if len(data) < incl:
                reader.fail_or_warn(
                    f"capture is cut short inside packet {number + 1} "
                    f"({len(data)} of {incl} bytes present)"
                )
                return
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
