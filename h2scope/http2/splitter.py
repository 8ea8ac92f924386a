"""Cut one direction's byte stream into HTTP/2 frames.

A frame belongs to the packet that carried its last byte (Wireshark's convention for
reassembled PDUs); the packet that carried its first byte is kept too. After a gap inside
a frame's payload the frame is still delivered, marked damaged, and framing stays in sync
(its length is known). A gap across a frame boundary loses the framing: the splitter
then looks for a validated resynchronisation point, a run of consecutive frame headers
that are each plausible (known type, defined flags only, stream-0 rules, fixed lengths).
The same search finds frame boundaries in captures that start mid-connection.
"""

from __future__ import annotations

import struct
from typing import Final, Optional

from .constants import (
    CONTINUATION, DATA, DEFINED_FLAGS, GOAWAY, HEADERS, PING, PRIORITY, PUSH_PROMISE, RST_STREAM,
    SETTINGS, WINDOW_UPDATE,
)

HDR: Final = struct.Struct("!BHBBI")  # 24-bit length as (high byte, low 16 bits), type, flags, stream
RESYNC_FRAMES: Final = 3  # consecutive plausible headers that confirm a resynchronisation
MAX_KNOWN_ERROR: Final = 0xD  # HTTP_1_1_REQUIRED; larger codes are legal but implausible noise here
STREAM_ID_SPREAD: Final = 256  # ids this close are neighbours at any scale; farther apart, within a factor 2
MAX_RESYNC_BUFFER: Final = 1 << 20  # bytes kept while looking for frame boundaries
_STREAM0: Final = (SETTINGS, PING, GOAWAY)
_FIXED: Final = {PING: 8, RST_STREAM: 4, PRIORITY: 5, WINDOW_UPDATE: 4}

# One split frame: (header bytes, length, type, flags, stream id, payload, packet of its first
# byte, damaged by a gap).
# (header, length, type, flags, stream id, payload or its buffer, first packet, damaged,
# where the payload starts in it): see FrameSplitter.feed.
RawFrame = tuple[bytes, int, int, int, int, bytes, int, bool, int]


def plausible_frame_end(buf: bytes, i: int, max_len: int) -> Optional[int]:
    """End offset of the frame whose header starts at i, if the header is plausible."""
    hi, lo, t, flags, sid = HDR.unpack_from(buf, i)
    length = (hi << 16) | lo
    if length > max_len or t > CONTINUATION or sid & 0x80000000 or flags & ~DEFINED_FLAGS[t] & 0xFF:
        return None
    if t in _STREAM0:
        if sid:
            return None
    elif t != WINDOW_UPDATE and not sid:
        return None
    fixed = _FIXED.get(t)
    if fixed is not None and length != fixed:
        return None
    if t == SETTINGS and (length % 6 or (flags & 1 and length)):
        return None
    if t == GOAWAY and length < 8:
        return None
    end = i + 9 + length
    if end <= len(buf) and not _payload_plausible(buf, i + 9, length, t, flags, sid):
        return None
    return end


def _payload_plausible(buf: bytes, p: int, length: int, t: int, flags: int, sid: int) -> bool:
    """Checks a real endpoint never fails, used only to tell frames from noise when resyncing."""
    if flags & 0x08 and t in (DATA, HEADERS, PUSH_PROMISE):  # PADDED: pad length inside the frame
        if length < 1 or buf[p] >= length:
            return False
    if t == WINDOW_UPDATE:
        inc = int.from_bytes(buf[p:p + 4], "big")
        return 0 < inc < 0x80000000
    if t == RST_STREAM:
        return int.from_bytes(buf[p:p + 4], "big") <= MAX_KNOWN_ERROR
    if t == GOAWAY:
        return int.from_bytes(buf[p + 4:p + 8], "big") <= MAX_KNOWN_ERROR and not buf[p] & 0x80
    if t == PRIORITY:
        return int.from_bytes(buf[p:p + 4], "big") & 0x7FFFFFFF != sid
    if t == SETTINGS:
        return all(int.from_bytes(buf[q:q + 2], "big") <= 0x10 for q in range(p, p + length, 6))
    return True


def _empty_start(buf: bytes, i: int) -> bool:
    """A zero-length frame only needs 9 header-like bytes before a real frame to be mimicked
    by payload; a resynchronisation does not start on one (SETTINGS ACK excepted)."""
    return buf[i] == 0 and buf[i + 1] == 0 and buf[i + 2] == 0 and not (buf[i + 3] == SETTINGS and buf[i + 4] == 1)


def coherent_stream_ids(ids: list[int]) -> bool:
    """Real streams on one connection have ids near each other; a header made of payload bytes
    has an arbitrary id. Each non-zero id must lie near another one: within STREAM_ID_SPREAD,
    or within half the smaller id on long-lived connections with large ids."""
    nonzero = [s for s in ids if s]
    if len(nonzero) < 2:
        return True
    return all(any(abs(a - b) <= max(STREAM_ID_SPREAD, min(a, b) // 2) for j, b in enumerate(nonzero) if j != i)
               for i, a in enumerate(nonzero))


class FrameSplitter:
    """Frames come out as RawFrame tuples."""

    __slots__ = ("_buf", "_first_packet", "synced", "resyncs", "skipped", "_damaged",
                 "max_len", "_need_start", "_preface", "_more", "_size", "_want")

    def __init__(self, synced: bool = True, max_len: int = (1 << 24) - 1) -> None:
        # The bytes of a frame not yet complete (or of the stream while looking for framing):
        # _buf, then the chunks waiting in _more, unjoined, until _size (bytes held) reaches
        # _want (the end of the frame, or 9 while its header is incomplete), so assembling a
        # frame costs one join instead of one concatenation per chunk (measured, a 16 MB frame
        # in 1448-byte chunks: 2.7 s for its first 4 MB before, quadratic; 0.025 s now).
        self._buf = b""
        self._more: list[bytes] = []
        self._size = 0
        self._want = 0
        self._first_packet = 0
        self.synced = synced
        self.resyncs = 0  # times framing was found again after a gap or a mid-connection start
        self.skipped = 0  # bytes that could not be framed
        self._damaged = False  # the frame being assembled lost bytes to a gap
        self.max_len = max_len  # for resynchronisation only: the largest length believed
        self._need_start = True  # the next data starts a TCP chunk right after a gap/start
        self._preface: bytes = b""  # bytes to strip before the first frame

    def expect_preface(self, preface: bytes) -> None:
        """The stream starts with this preface (after an h2c upgrade's 101), not a frame."""
        self._preface = preface

    def _held(self) -> bytes:
        """Every byte held, as one bytes object (joins the chunks waiting in _more)."""
        if self._more:
            self._more.insert(0, self._buf)
            self._buf = b"".join(self._more)
            self._more = []
        return self._buf

    def _hold(self, buf: bytes, first_packet: int) -> None:
        """Hold `buf`, the start of a frame, until the rest of it arrives."""
        self._buf = buf
        self._more = []
        n = len(buf)
        self._size = n
        self._want = 9 + (buf[0] << 16 | buf[1] << 8 | buf[2]) if n >= 9 else 9
        self._first_packet = first_packet

    def _release(self) -> None:
        self._buf = b""
        self._more = []
        self._size = 0
        self._want = 0

    def feed(self, data: bytes, packet: int) -> list[RawFrame]:
        """Frames completed by `data` (which arrived in `packet`).

        A DATA frame's payload is not copied out of the bytes it arrived in: it is
        frame[5][frame[8]:frame[8] + frame[1]]. Other frames' payloads are their own bytes
        (frame[8] is 0). Slicing every DATA payload, and re-joining the rest of a chunk to a
        frame held from the one before, copied a bulk transfer's bytes twice more after
        reading them (W3-100MB, `--jobs 1`: memmove was 13% of the run's cycles, perf)."""
        if self._preface:
            seen = self._held() + data
            if len(seen) < len(self._preface) and self._preface.startswith(seen):
                self._buf = seen
                self._size = len(seen)
                return []
            self._release()
            if seen.startswith(self._preface):
                seen = seen[len(self._preface):]
            self._preface = b""
            data = seen
        out: list[RawFrame] = []
        damaged = self._damaged
        pos = 0
        if not self.synced:
            if self._size:
                buf = self._held() + data
            else:
                buf = data
                self._first_packet = packet
            buf = self._resync(buf, packet)
            if not self.synced:
                self._buf = buf
                self._more = []
                self._size = len(buf)
                return []
            self._release()
            first = self._first_packet
        elif self._size:
            size = self._size + len(data)
            if size < self._want:  # the frame is still incomplete: hold the chunk, unjoined
                self._more.append(data)
                self._size = size
                return []
            first = self._first_packet
            if self._size < 9:  # its header was cut: join it to this chunk and read on
                buf = self._held() + data
            else:  # complete the held frame with the head of this chunk; read on in place
                take = self._want - self._size
                more = self._more
                more.insert(0, self._buf)
                more.append(data[:take])
                frame = b"".join(more)
                length = self._want - 9
                sid = (frame[5] & 0x7F) << 24 | frame[6] << 16 | frame[7] << 8 | frame[8]
                if frame[3] == DATA:
                    out.append((frame[:9], length, DATA, frame[4], sid, frame, first, damaged, 9))
                else:
                    out.append((frame[:9], length, frame[3], frame[4], sid, frame[9:], first, damaged, 0))
                damaged = False
                first = packet
                buf = data
                pos = take
            self._release()
        else:
            buf = data
            first = packet
        n = len(buf)
        while n - pos >= 9:
            length = buf[pos] << 16 | buf[pos + 1] << 8 | buf[pos + 2]
            start = pos + 9
            end = start + length
            if end > n:
                break
            ftype = buf[pos + 3]
            sid = (buf[pos + 5] & 0x7F) << 24 | buf[pos + 6] << 16 | buf[pos + 7] << 8 | buf[pos + 8]
            if ftype == DATA:
                out.append((buf[pos:start], length, DATA, buf[pos + 4], sid, buf, first, damaged, start))
            else:
                out.append((buf[pos:start], length, ftype, buf[pos + 4], sid, buf[start:end], first, damaged, 0))
            damaged = False
            pos = end
            first = packet
        self._damaged = damaged
        if pos < n:
            self._hold(buf[pos:] if pos else buf, first)
        else:
            self._first_packet = packet
        return out

    def gap(self, size: int) -> None:
        """`size` bytes the capture never saw come next in this direction."""
        buf = self._held()
        if self.synced and len(buf) >= 9:
            hi, lo = buf[0], int.from_bytes(buf[1:3], "big")
            frame_total = 9 + ((hi << 16) | lo)
            remaining = frame_total - len(buf)
            if size <= remaining:
                # The hole is inside this frame's payload: keep framing, mark the frame damaged.
                self._hold(buf + bytes(size), self._first_packet)
                self._damaged = True
                return
        self.skipped += len(buf)
        self._release()
        self._damaged = False
        self.synced = False
        self._need_start = True

    def _resync(self, buf: bytes, packet: int) -> bytes:
        n = len(buf)
        i = 0
        max_len = self.max_len
        while i + 9 <= n:
            count = 0
            j = i
            incomplete = False
            ids = []
            while j + 9 <= n:
                end = plausible_frame_end(buf, j, max_len)
                if end is None:
                    break
                count += 1
                ids.append(int.from_bytes(buf[j + 5:j + 9], "big"))
                if end > n:
                    incomplete = True
                    break
                j = end
                if count >= RESYNC_FRAMES:
                    break
            if not coherent_stream_ids(ids) or (count and _empty_start(buf, i)):
                i += 1
                continue
            if count >= RESYNC_FRAMES or (count and j == n and i == 0 and self._need_start):
                self.skipped += i
                self.synced = True
                self.resyncs += 1
                self._first_packet = packet
                self._need_start = False
                return buf[i:]
            if count and (incomplete or j + 9 > n):
                # Plausible so far but not yet confirmed: wait for more bytes.
                break
            i += 1
        self._need_start = False
        if i:
            self.skipped += i
            buf = buf[i:]
        if len(buf) > MAX_RESYNC_BUFFER:
            self.skipped += len(buf) - MAX_RESYNC_BUFFER
            buf = buf[-MAX_RESYNC_BUFFER:]
        self._buf = buf
        self._first_packet = packet
        return buf

    @property
    def pending(self) -> int:
        return len(self._buf) + sum(map(len, self._more))
