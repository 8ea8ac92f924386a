"""Link layer → IPv4/IPv6 → TCP header, in one flat function per packet.

This is the per-packet hot path: plain struct.unpack_from on the captured bytes and a
tuple out, no per-layer objects. Everything that is not TCP over IP is counted by reason
so the report can say what it skipped.
"""

from __future__ import annotations

import struct
from collections import Counter
from typing import Final, Optional

LINKTYPE_NULL: Final = 0
LINKTYPE_EN10MB: Final = 1
LINKTYPE_RAW: Final = 101
LINKTYPE_RAW_12: Final = 12
LINKTYPE_RAW_14: Final = 14
LINKTYPE_LOOP: Final = 108
LINKTYPE_LINUX_SLL: Final = 113
LINKTYPE_IPV4: Final = 228
LINKTYPE_IPV6: Final = 229
LINKTYPE_LINUX_SLL2: Final = 276
# Not a link type: a pcapng record Wireshark numbers as a frame although it holds no packet
# (custom blocks, systemd journal entries). Readers yield it so packet numbers stay Wireshark's.
NOT_A_PACKET: Final = -1

LINKTYPE_NAMES: Final = {
    0: "NULL", 1: "EN10MB", 12: "RAW", 14: "RAW", 101: "RAW", 108: "LOOP",
    113: "LINUX_SLL", 228: "IPV4", 229: "IPV6", 276: "LINUX_SLL2",
}

ETH_IPV4: Final = 0x0800
ETH_IPV6: Final = 0x86DD
VLAN_TAGS: Final = (0x8100, 0x88A8, 0x9100, 0x9200)

# BSD AF_INET6 differs per OS: 24 (NetBSD/OpenBSD), 28 (FreeBSD), 30 (macOS); 10 is Linux.
AF_INET: Final = 2
AF_INET6: Final = (10, 24, 28, 30)

# IPv6 extension headers whose length is (hdr_ext_len + 1) * 8
IPV6_EXT: Final = (0, 43, 60, 135, 139, 140)
IPV6_FRAGMENT: Final = 44
IPV6_AH: Final = 51

TCP_FIN: Final = 0x01
TCP_SYN: Final = 0x02
TCP_RST: Final = 0x04
TCP_PSH: Final = 0x08
TCP_ACK: Final = 0x10

# What decode() returns for a TCP segment: (src, sport, dst, dport, seq, ack, flags, window,
# payload, missing). A typed tuple: its readers unpack native ints rather than objects.
Segment = tuple[bytes, int, bytes, int, int, int, int, int, bytes, int]

_u16: Final = struct.Struct("!H").unpack_from
_tcp: Final = struct.Struct("!HHIIBBH").unpack_from
_ip4: Final = struct.Struct("!BBHHHBB").unpack_from
# The fast path for the common packet (an option-less IPv4 header and a TCP header after the
# link header), per link type: (ethertype offset, IPv4 header offset).
_FAST_OFFSETS: Final = {LINKTYPE_EN10MB: (12, 14), LINKTYPE_LINUX_SLL: (14, 16), LINKTYPE_LINUX_SLL2: (0, 20)}


class LinkDecoder:
    """Turns (linktype, bytes) into a TCP segment tuple, counting what it skipped."""

    def __init__(self) -> None:
        self.skipped: Counter[str] = Counter()
        self.ip_fragments = 0

    @staticmethod
    def fast_port_sum(linktype: int, data: bytes) -> int:
        """sport + dport of a packet that decode() takes by its fast path, read from the
        bytes without decoding them; -1 for every other packet.

        A --jobs worker keeps the connections whose port sum falls to it, and skips the
        others' packets with this instead of decoding each (a few byte reads against one
        14-field unpack and a tuple). The conditions are the fast path's, so a skipped
        packet is one decode() would have returned as TCP: tests/test_capture_formats.py
        holds the two equal."""
        offsets = _FAST_OFFSETS.get(linktype)
        if offsets is None:
            return -1
        e, off = offsets
        n = len(data)
        if n < off + 40 or data[e] != 0x08 or data[e + 1] or data[off] != 0x45 or data[off + 9] != 6:
            return -1
        if data[off + 6] & 0x3F or data[off + 7]:
            return -1  # a fragment
        doff = data[off + 32]
        if doff < 0x50:
            return -1
        total = data[off + 2] << 8 | data[off + 3]
        ip_end = off + total if total else n
        if not off + 20 + (doff >> 4) * 4 <= ip_end <= n:
            return -1
        return (data[off + 20] << 8 | data[off + 21]) + (data[off + 22] << 8 | data[off + 23])

    def decode(self, linktype: int, data: bytes) -> Optional[Segment]:
        """(src, sport, dst, dport, seq, ack, flags, window, payload, missing) or None.

        src/dst are packed address bytes (4 or 16). `missing` counts payload bytes the IP
        header promised but the capture did not keep (snaplen truncation).
        """
        n = len(data)
        offsets = _FAST_OFFSETS.get(linktype)
        if offsets is not None:
            # Fast path: IPv4 without options, not a fragment, TCP; anything else takes the
            # general path below. The fields are read byte by byte, which compiled code does
            # on native ints, rather than with one struct unpack, which made a Python int
            # per field and a 14-tuple only to unbox them again (callgrind, W1-2MB: see
            # benchmarks/README.md).
            e, off = offsets
            if n >= off + 40 and data[e] == 0x08 and not data[e + 1] and data[off] == 0x45 \
                    and data[off + 9] == 6 and not data[off + 6] & 0x3F and not data[off + 7]:
                t = off + 20
                doff = data[t + 12]
                total = data[off + 2] << 8 | data[off + 3]
                start = t + (doff >> 4) * 4
                ip_end = off + total if total else n
                if doff >= 0x50 and start <= ip_end <= n:
                    return (data[off + 12:off + 16], data[t] << 8 | data[t + 1], data[off + 16:t],
                            data[t + 2] << 8 | data[t + 3],
                            data[t + 4] << 24 | data[t + 5] << 16 | data[t + 6] << 8 | data[t + 7],
                            data[t + 8] << 24 | data[t + 9] << 16 | data[t + 10] << 8 | data[t + 11],
                            data[t + 13], data[t + 14] << 8 | data[t + 15], data[start:ip_end], 0)
        # --- link layer: find the network-layer offset and protocol ---
        if linktype == LINKTYPE_EN10MB:
            if n < 14:
                self.skipped["truncated link header"] += 1
                return None
            etype = _u16(data, 12)[0]
            off = 14
            while etype in VLAN_TAGS:
                if n < off + 4:
                    self.skipped["truncated VLAN tag"] += 1
                    return None
                etype = _u16(data, off + 2)[0]
                off += 4
        elif linktype == LINKTYPE_LINUX_SLL2:
            if n < 20:
                self.skipped["truncated link header"] += 1
                return None
            etype = _u16(data, 0)[0]
            off = 20
        elif linktype == LINKTYPE_LINUX_SLL:
            if n < 16:
                self.skipped["truncated link header"] += 1
                return None
            etype = _u16(data, 14)[0]
            off = 16
        elif linktype == LINKTYPE_NULL or linktype == LINKTYPE_LOOP:
            if n < 4:
                self.skipped["truncated link header"] += 1
                return None
            # NULL is in the capturing host's byte order, LOOP in network order; the family
            # value is small, so whichever end holds it tells the order.
            if data[0] == 0 and data[1] == 0:
                af = data[3] | (data[2] << 8)
            else:
                af = data[0] | (data[1] << 8)
            if af == AF_INET:
                etype = ETH_IPV4
            elif af in AF_INET6:
                etype = ETH_IPV6
            else:
                self.skipped["non-IP loopback family"] += 1
                return None
            off = 4
        elif linktype in (LINKTYPE_RAW, LINKTYPE_RAW_12, LINKTYPE_RAW_14, LINKTYPE_IPV4, LINKTYPE_IPV6):
            if not n:
                self.skipped["empty packet"] += 1
                return None
            v = data[0] >> 4
            etype = ETH_IPV4 if v == 4 else ETH_IPV6 if v == 6 else 0
            off = 0
        elif linktype == NOT_A_PACKET:
            self.skipped["pcapng custom or journal block (not a packet)"] += 1
            return None
        else:
            self.skipped[f"unsupported link type {linktype}"] += 1
            return None

        # --- network layer ---
        if etype == ETH_IPV4:
            if n < off + 20:
                self.skipped["truncated IPv4 header"] += 1
                return None
            vihl, _tos, total, _ident, frag, _ttl, proto = _ip4(data, off)
            ihl = (vihl & 0x0F) * 4
            if vihl >> 4 != 4 or ihl < 20 or n < off + ihl:
                self.skipped["malformed IPv4 header"] += 1
                return None
            if frag & 0x3FFF:  # MF flag or a fragment offset
                self.ip_fragments += 1
                return None
            if proto != 6:
                self.skipped["not TCP"] += 1
                return None
            src = data[off + 12:off + 16]
            dst = data[off + 16:off + 20]
            # total == 0 happens with TSO on the capturing host: trust the captured length.
            ip_end = off + total if total else n
            l4 = off + ihl
        elif etype == ETH_IPV6:
            if n < off + 40:
                self.skipped["truncated IPv6 header"] += 1
                return None
            if data[off] >> 4 != 6:
                self.skipped["malformed IPv6 header"] += 1
                return None
            plen = _u16(data, off + 4)[0]
            nxt = data[off + 6]
            src = data[off + 8:off + 24]
            dst = data[off + 24:off + 40]
            ip_end = off + 40 + plen if plen else n  # jumbograms: trust the capture
            l4 = off + 40
            while nxt != 6:
                if nxt in IPV6_EXT:
                    if n < l4 + 2:
                        self.skipped["truncated IPv6 extension header"] += 1
                        return None
                    nxt, hlen = data[l4], (data[l4 + 1] + 1) * 8
                    l4 += hlen
                elif nxt == IPV6_FRAGMENT:
                    self.ip_fragments += 1
                    return None
                elif nxt == IPV6_AH:
                    if n < l4 + 2:
                        self.skipped["truncated IPv6 extension header"] += 1
                        return None
                    nxt, hlen = data[l4], (data[l4 + 1] + 2) * 4
                    l4 += hlen
                else:
                    self.skipped["not TCP"] += 1
                    return None
        else:
            self.skipped["not IP"] += 1
            return None

        # --- TCP ---
        if n < l4 + 20:
            self.skipped["truncated TCP header"] += 1
            return None
        tcp: tuple[int, int, int, int, int, int, int] = _tcp(data, l4)
        sport, dport, seq, ack, doff, flags, window = tcp
        hl = (doff >> 4) * 4
        if hl < 20:
            self.skipped["malformed TCP header"] += 1
            return None
        start = l4 + hl
        if ip_end < start:
            self.skipped["malformed TCP header"] += 1
            return None
        if ip_end <= n:
            payload = data[start:ip_end]  # drops Ethernet padding after the IP datagram
            missing = 0
        else:
            payload = data[start:] if start < n else b""
            missing = ip_end - max(start, n)
        return (src, sport, dst, dport, seq, ack, flags, window, payload, missing)


def format_addr(addr: bytes, port: int) -> str:
    """'ip:port' as Wireshark and users write it; IPv6 in brackets (and compressed, by
    ipaddress, imported only then: 1 ms of every start)."""
    if len(addr) == 4:
        return f"{addr[0]}.{addr[1]}.{addr[2]}.{addr[3]}:{port}"
    import ipaddress

    return f"[{ipaddress.IPv6Address(addr)}]:{port}"
