"""Open a capture (file, `-` for stdin, gzip by content) and stream its packets.

The reader never holds the file: it refills a bounded chunk buffer and slices each packet
out of it. Damage after the first packet becomes a warning and ends the stream; damage
before anything could be read raises CaptureError.
"""

from __future__ import annotations

import io
import os
import stat
import sys
import zlib
from typing import Any, BinaryIO, Final, Iterator, NamedTuple

from ..errors import CaptureError
from . import pcap, pcapng

CHUNK: Final = 1 << 20
RELEASE_EVERY: Final = 4 << 20  # mapped bytes read between giving their pages back


class Packet(NamedTuple):
    """One captured packet. `number` is 1-based in file order, as Wireshark numbers it."""

    number: int
    ts_ns: int  # epoch nanoseconds: a float cannot hold nanosecond precision
    linktype: int
    data: bytes  # captured bytes (may be shorter than orig_len: snaplen)
    orig_len: int


class GzipStream:
    """Decompress a gzip stream (one or more members) incrementally.

    Unlike gzip.GzipFile, a stream that is cut short or damaged gives back every byte that
    decompressed before the damage (GzipFile discards the whole last read), and the damage
    is kept in `error` instead of raised: a capture cut short by a full disk is still
    analyzed up to its last complete packet.
    """

    IN_CHUNK = 1 << 16

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._tail = b""  # compressed input not consumed yet
        self._fed = False  # the current member has received input
        self._done = False
        self.members = 0
        self.error: str | None = None

    def read(self, n: int) -> bytes:
        out = []
        got = 0
        while got < n and not self._done:
            if self._tail:
                raw, self._tail = self._tail, b""
            else:
                raw = self._f.read(self.IN_CHUNK)
                if not raw:
                    if self._fed:
                        self.error = "the compressed data is cut short (gzip stream ends early)"
                    self._done = True
                    break
            data = self._feed(raw, n - got)
            if data:
                out.append(data)
                got += len(data)
        return b"".join(out)

    def _feed(self, raw: bytes, limit: int) -> bytes:
        if not self._fed and self.members and not raw.strip(b"\0"):
            self._done = True  # zero padding after the last member
            return b""
        self._fed = True
        d = self._d
        before = d.copy()
        try:
            data = d.decompress(raw, max(limit, 1))
        except zlib.error as e:
            # Salvage what decompresses before the damage, in small steps.
            self.error = f"the compressed data is damaged ({e})"
            self._done = True
            salvaged = []
            for i in range(0, len(raw), 64):
                try:
                    salvaged.append(before.decompress(raw[i:i + 64]))
                except zlib.error:
                    break
            return b"".join(salvaged)
        self._tail = d.unconsumed_tail
        if d.eof:
            self.members += 1
            rest = d.unused_data
            self._d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self._fed = False
            self._tail = rest + self._tail
        return data


class ChunkSource:
    """A forward-only byte source with a bounded lookahead buffer.

    `take(n)` returns exactly n bytes or fewer at end of input; parsing code reads
    headers with struct.unpack_from on the returned bytes. Reading in 1 MiB chunks keeps
    per-packet cost to one slice instead of two file reads (measured: 2.1x faster than
    f.read per record on a gzip stream).
    """

    __slots__ = ("_f", "_buf", "_pos", "_base", "_error", "_map", "_released")

    def __init__(self, f: BinaryIO) -> None:
        self._f = f
        self._buf = b""
        self._pos = 0  # next byte of _buf take() returns; record loops may advance it directly
        self._base = 0  # file offset of _buf[0]
        self._error: str | None = None
        # A regular file read by the C scanner is mapped instead (map_file): no chunk is read
        # or joined; _pos is then the file offset, and _buf stays empty.
        self._map: Any = None
        self._released = 0  # the mapping's pages before this offset were handed back

    def map_file(self, fileno: int) -> bool:
        """Read the rest of the file through mmap rather than in chunks, where it can be
        mapped. W3-100MB with two workers: each worker had copied all 100 MB out of the page
        cache into fresh 1 MiB buffers, and joined them again at every boundary, which was
        most of the run's page faults (40,849; perf) and system time. The mapping is the
        file as it was when mapped; a file that another process truncates meanwhile ends
        the run with SIGBUS, as it would any program that maps it (README says so)."""
        import mmap

        try:
            mapped = mmap.mmap(fileno, 0, access=mmap.ACCESS_READ)
        except (OSError, ValueError):  # not mappable (a pipe, an empty file): read in chunks
            return False
        self._pos = self._base + self._pos
        self._base = 0
        self._buf = b""
        self._map = mapped
        return True

    def view(self) -> Any:
        """What the C scanner reads from _pos on: the mapped file, else the current chunk."""
        return self._map if self._map is not None else self._buf

    def release(self) -> None:
        """Hand the mapped pages already read back to the system, so that the process's
        resident memory does not grow with the capture (they stay in the page cache)."""
        import mmap

        start = self._released
        end = self._pos & ~(mmap.PAGESIZE - 1)
        if self._map is not None and end - start >= RELEASE_EVERY:
            self._map.madvise(mmap.MADV_DONTNEED, start, end - start)
            self._released = end

    def unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    @property
    def offset(self) -> int:
        """File offset of the next byte take() returns."""
        return self._base + self._pos

    def _fill(self, n: int) -> None:
        chunks = [self._buf[self._pos:]]
        have = len(chunks[0])
        while have < n:
            try:
                more = self._f.read(max(CHUNK, n - have))
            except (EOFError, OSError, zlib.error) as e:
                self._error = f"the file could not be read ({e})"
                more = b""
            if not more:
                error = getattr(self._f, "error", None)
                if error and not self._error:
                    self._error = error
                break
            chunks.append(more)
            have += len(more)
        self._base += self._pos
        self._buf = b"".join(chunks)
        self._pos = 0

    def take(self, n: int) -> bytes:
        if self._map is not None:
            p = self._pos
            mapped: bytes = self._map[p:p + n]
            self._pos = p + len(mapped)
            return mapped
        if len(self._buf) - self._pos < n:
            self._fill(n)
        p = self._pos
        out = self._buf[p:p + n]
        self._pos = p + len(out)
        return out

    def skip(self, n: int) -> int:
        """Skip n bytes, returning how many could be skipped."""
        return len(self.take(n)) if n < CHUNK * 4 else self._skip_large(n)

    def _skip_large(self, n: int) -> int:
        done = 0
        while done < n:
            got = len(self.take(min(CHUNK, n - done)))
            if not got:
                break
            done += got
        return done

    @property
    def read_error(self) -> str | None:
        return self._error


def _open_binary(path: str) -> tuple[BinaryIO, str]:
    if path == "-":
        return sys.stdin.buffer, "<stdin>"
    if os.path.isdir(path):
        raise CaptureError(f"{path}: is a directory, not a capture file")
    try:
        return open(path, "rb"), path
    except FileNotFoundError:
        raise CaptureError(f"{path}: no such file") from None
    except PermissionError:
        raise CaptureError(f"{path}: permission denied") from None
    except OSError as e:
        raise CaptureError(f"{path}: cannot open ({e.strerror})") from None


class CaptureReader:
    """Iterate the packets of one capture file; facts about the file accumulate as it reads.

    After iteration: `packets` (count), `link_types` (set), `format` ("pcap", "pcapng"),
    `compressed` (bool), `warnings` (what was skipped and why), `secrets` (pcapng
    Decryption Secrets Blocks, kept for TLS decryption), `bytes_read`.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        raw, self.display_name = _open_binary(path)
        self._raw = raw
        buffered = raw if isinstance(raw, io.BufferedReader) else io.BufferedReader(raw)  # type: ignore[arg-type,type-var]
        head = buffered.peek(4)[:4]
        self.compressed = head[:2] == b"\x1f\x8b"
        stream: BinaryIO = GzipStream(buffered) if self.compressed else buffered  # type: ignore[assignment]
        self.source = ChunkSource(stream)
        self.packets = 0
        self.link_types: set[int] = set()
        self.warnings: list[str] = []
        self.secrets: list[tuple[int, bytes]] = []
        self.format = "unknown"
        self.first_ts_ns: int | None = None
        self.last_ts_ns: int | None = None
        self._magic: bytes | None = None

    def close(self) -> None:
        self.source.unmap()
        if self._raw is not sys.stdin.buffer:
            self._raw.close()

    def map_file(self) -> bool:
        """Read a regular, uncompressed file through mmap from here on (ChunkSource.map_file)."""
        if self.compressed or self._raw is sys.stdin.buffer:
            return False
        try:
            fileno = self._raw.fileno()
            if not stat.S_ISREG(os.fstat(fileno).st_mode):
                return False
        except (OSError, ValueError, io.UnsupportedOperation):
            return False
        return self.source.map_file(fileno)

    def __enter__(self) -> "CaptureReader":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def bytes_read(self) -> int:
        return self.source.offset

    def warn(self, message: str) -> None:
        self.warnings.append(message)

    def fail_or_warn(self, message: str) -> None:
        """Damage: fatal when nothing has been read yet, a warning once packets exist."""
        if self.packets == 0:
            raise CaptureError(f"{self.display_name}: {message}")
        self.warn(f"{message}; analyzed the {self.packets} packets before it")

    def detect(self) -> str:
        """Read the file's magic once and name its format ("pcap" or "pcapng"); CaptureError
        when it is neither."""
        if self._magic is not None:
            return self.format
        magic = self.source.take(4)
        if len(magic) < 4:
            if self.source.read_error:
                raise CaptureError(f"{self.display_name}: {self.source.read_error}")
            raise CaptureError(f"{self.display_name}: empty file" if not magic else
                               f"{self.display_name}: too short to be a capture ({len(magic)} bytes)")
        if magic == b"\x0a\x0d\x0d\x0a":
            self.format = "pcapng"
        elif magic in pcap.MAGICS:
            self.format = "pcap"
        else:
            raise CaptureError(
                f"{self.display_name}: not a pcap or pcapng capture (starts with {magic.hex()})"
            )
        self._magic = magic
        return self.format

    def __iter__(self) -> Iterator[tuple[int, int, int, bytes, int]]:
        """Yield (number, ts_ns, linktype, data, orig_len) tuples: the hot path avoids
        building a Packet per record; wrap with Packet._make when convenient."""
        self.detect()
        magic = self._magic
        assert magic is not None
        # The format readers number the records and keep packets/first_ts_ns/last_ts_ns
        # current themselves: one generator per packet instead of two.
        if self.format == "pcapng":
            yield from pcapng.read_packets(self, magic)
        else:
            yield from pcap.read_packets(self, magic)
        if self.source.read_error:
            self.fail_or_warn(self.source.read_error)

    def can_batch(self) -> bool:
        """Whether batches() can read this file: the C scanner was built for its format."""
        return (pcap.C_SCAN if self.detect() == "pcap" else pcapng.C_SCAN) is not None

    def batches(self, parts: int = 1, part: int = 0, mapped: bool = True) -> Iterator[pcap.Batch]:
        """The file's records through the C scanner, a batch at a time (pcap.read_batches,
        pcapng.read_batches), for a reader whose can_batch() said so."""
        self.detect()
        magic = self._magic
        assert magic is not None
        if mapped:
            self.map_file()
        if self.format == "pcap":
            scan = pcap.C_SCAN
            assert scan is not None
            yield from pcap.read_batches(self, magic, scan, parts, part)
        else:
            scan_ng = pcapng.C_SCAN
            assert scan_ng is not None
            yield from pcapng.read_batches(self, magic, scan_ng, parts, part)
        if self.source.read_error:
            self.fail_or_warn(self.source.read_error)


def open_capture(path: str) -> CaptureReader:
    return CaptureReader(path)
