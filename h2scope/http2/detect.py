"""Deciding what a TCP connection carries, from its first bytes.

- prior-knowledge h2c: the client's 24-byte preface, on any port;
- HTTP/1.1 `Upgrade: h2c` answered by `101 Switching Protocols` (the request becomes stream 1);
- TLS with ALPN offering h2 (encrypted: reported, not decoded);
- anything else is not HTTP/2 unless the user said `--decode-as PORT` or the capture
  began after the connection did (then frame boundaries are found by resynchronisation).
"""

from __future__ import annotations

from typing import Final, Optional

from .constants import PREFACE

HTTP1_METHODS: Final[tuple[bytes, ...]] = (b"GET ", b"POST ", b"PUT ", b"HEAD ", b"OPTIONS ", b"DELETE ", b"PATCH ", b"CONNECT ")
MAX_SNIFF: Final = 64 * 1024


def preface_state(buf: bytes) -> Optional[bool]:
    """True: starts with the preface; None: could still become it; False: is not it."""
    if buf.startswith(PREFACE):
        return True
    if PREFACE.startswith(buf):
        return None
    return False


def looks_http1_request(buf: bytes) -> bool:
    return buf.startswith(HTTP1_METHODS)


def parse_http1_head(buf: bytes) -> Optional[tuple[str, list[tuple[str, str]], int]]:
    """(start line, headers with lower-case names, length of the head) once complete."""
    end = buf.find(b"\r\n\r\n")
    if end < 0:
        return None
    lines = buf[:end].decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers.append((name.strip().lower(), value.strip()))
    return lines[0], headers, end + 4


def tls_client_hello_alpn(buf: bytes) -> Optional[list[str]]:
    """ALPN protocols offered in a TLS ClientHello, [] if none, None if not a ClientHello."""
    if len(buf) < 6 or buf[0] != 0x16 or buf[1] != 0x03 or buf[5] != 0x01:
        return None
    try:
        rec_len = int.from_bytes(buf[3:5], "big")
        body = buf[5:5 + rec_len]
        pos = 4 + 2 + 32  # handshake header, version, random
        sid_len = body[pos]
        pos += 1 + sid_len
        cs_len = int.from_bytes(body[pos:pos + 2], "big")
        pos += 2 + cs_len
        comp_len = body[pos]
        pos += 1 + comp_len
        ext_total = int.from_bytes(body[pos:pos + 2], "big")
        pos += 2
        end = min(len(body), pos + ext_total)
        while pos + 4 <= end:
            etype = int.from_bytes(body[pos:pos + 2], "big")
            elen = int.from_bytes(body[pos + 2:pos + 4], "big")
            ext = body[pos + 4:pos + 4 + elen]
            pos += 4 + elen
            if etype == 16:  # application_layer_protocol_negotiation
                out = []
                p = 2
                while p < len(ext):
                    n = ext[p]
                    out.append(ext[p + 1:p + 1 + n].decode("latin-1"))
                    p += 1 + n
                return out
        return []
    except IndexError:
        return []
