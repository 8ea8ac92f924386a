"""Drive the pipeline over one capture: packets → TCP byte streams → per-connection sinks.

This is the only place that connects the stages; each stage is a sans-IO core that the
driver feeds. Views (report, JSON, TUI, check) read the result and never re-parse.
"""

from __future__ import annotations

from typing import Callable, Optional

from .capture.link import LINKTYPE_NAMES, LinkDecoder
from .capture.reader import CaptureReader
from .tcp.reassembly import DEFAULT_OOO_CAP, SinkFactory, TcpConnection, TcpTracker


class CaptureInfo:
    """What the capture file itself says; filled in as it is read. (A plain class, as the
    model's records are: see model.py.)"""

    def __init__(self, path: str) -> None:
        self.path = path
        self.format = "unknown"
        self.compressed = False
        self.packets = 0
        self.tcp_packets = 0
        self.first_ns: Optional[int] = None
        self.last_ns: Optional[int] = None
        self.link_types: list[str] = []
        self.warnings: list[str] = []
        self.skipped: dict[str, int] = {}
        self.ip_fragments = 0
        self.secrets = 0

    # Workers send it to the parent by pickle; a compiled class is only made through __init__.
    def __reduce__(self) -> tuple:
        return (CaptureInfo, (self.path,), (self.format, self.compressed, self.packets, self.tcp_packets,
                                            self.first_ns, self.last_ns, self.link_types, self.warnings,
                                            self.skipped, self.ip_fragments, self.secrets))

    def __setstate__(self, state: tuple) -> None:
        (self.format, self.compressed, self.packets, self.tcp_packets, self.first_ns, self.last_ns,
         self.link_types, self.warnings, self.skipped, self.ip_fragments, self.secrets) = state

    def to_json(self) -> dict:
        return {
            "path": self.path,
            "format": self.format,
            "compressed": self.compressed,
            "packets": self.packets,
            "tcp_packets": self.tcp_packets,
            "first_time": self.first_ns / 1e9 if self.first_ns is not None else None,
            "last_time": self.last_ns / 1e9 if self.last_ns is not None else None,
            "link_types": self.link_types,
            "warnings": self.warnings,
            "skipped": self.skipped,
            "ip_fragments": self.ip_fragments,
            "decryption_secrets": self.secrets,
        }


ProgressFn = Callable[[int], None]

# Whether records are read through the C scanner (capture/_scan_c.c) where it was built (not
# with H2SCOPE_PURE_PYTHON set); tests switch it off with use_c_scan(False) to hold the two
# paths equal.
_use_c = True
_use_map = True  # and regular files mapped rather than read in chunks (reader.map_file)


def use_c_scan(on: bool, mapped: bool = True) -> None:
    global _use_c, _use_map
    _use_c = on
    _use_map = mapped


def _every_4096(tracker: TcpTracker, reader: CaptureReader, number: int, progress: Optional[ProgressFn],
                tick: Optional[Callable[[int], None]]) -> None:
    """What the loop does after every 4096th packet: close idle connections, report progress."""
    tracker.sweep()
    if progress is not None:
        progress(reader.bytes_read)
    if tick is not None:
        tick(number)


def run_capture(path: str, sink_factory: SinkFactory, *,
                on_finished: Optional[Callable[[TcpConnection], None]] = None,
                ooo_cap: int = DEFAULT_OOO_CAP,
                progress: Optional[ProgressFn] = None,
                at_end: Optional[Callable[[], None]] = None,
                part: int = 0, parts: int = 1,
                tick: Optional[Callable[[int], None]] = None) -> CaptureInfo:
    """Stream one capture through link decoding and TCP reassembly into per-connection sinks.

    `progress`, when given, is called with the number of capture bytes read so far every
    few thousand packets (the CLI turns it into a progress bar on a TTY). A parallel worker
    passes `part` of `parts`: it keeps the TCP segments whose port sum modulo `parts` is
    `part` (both directions of a connection agree), and `tick`, called with the packet number
    as often as `progress`.
    """
    info = CaptureInfo(path=path)
    decoder = LinkDecoder()
    tracker = TcpTracker(sink_factory, ooo_cap=ooo_cap, on_finished=on_finished)
    tcp_packets = 0
    with CaptureReader(path) as reader:
        info.compressed = reader.compressed
        try:
            if _use_c and reader.can_batch():
                # Records and their fast-path headers decoded in C, a batch at a time; the
                # rest as below (pcap.read_batches says how the two agree).
                for items, last, tcp in reader.batches(parts, part, _use_map):
                    tcp_packets += tcp
                    for item in items:
                        number, ts_ns, src, sport, dst, dport, seq, ack, flags, window, payload = item
                        if src is not None and dst is not None:
                            tracker.feed(number, ts_ns, (src, sport, dst, dport, seq, ack, flags, window, payload, 0))
                        else:
                            seg = decoder.decode(sport, payload)  # sport holds the link type here
                            if seg is not None:
                                tcp_packets += 1
                                if parts == 1 or (seg[1] + seg[3]) % parts == part:
                                    tracker.feed(number, ts_ns, seg)
                    if not last & 0xFFF:
                        _every_4096(tracker, reader, last, progress, tick)
            else:
                for number, ts_ns, linktype, data, _orig in reader:
                    if parts == 1:
                        seg = decoder.decode(linktype, data)
                        if seg is not None:
                            tcp_packets += 1
                            tracker.feed(number, ts_ns, seg)
                    else:
                        port_sum = decoder.fast_port_sum(linktype, data)
                        if port_sum >= 0:
                            tcp_packets += 1  # TCP by decode's fast path, whoever's it is
                            if port_sum % parts == part:
                                seg = decoder.decode(linktype, data)
                                if seg is not None:
                                    tracker.feed(number, ts_ns, seg)
                        else:
                            seg = decoder.decode(linktype, data)
                            if seg is not None:
                                tcp_packets += 1
                                if (seg[1] + seg[3]) % parts == part:
                                    tracker.feed(number, ts_ns, seg)
                    if not number & 0xFFF:
                        _every_4096(tracker, reader, number, progress, tick)
        finally:
            info.format = reader.format
            info.packets = reader.packets
            info.first_ns = reader.first_ts_ns
            info.last_ns = reader.last_ts_ns
        if at_end is not None:
            at_end()  # what is still open is flushed next, by connection rather than by packet
        tracker.finish()
        info.tcp_packets = tcp_packets
        info.link_types = sorted({LINKTYPE_NAMES.get(t, f"LINKTYPE_{t}") for t in reader.link_types})
        info.warnings = list(reader.warnings)
        info.skipped = dict(decoder.skipped)
        info.ip_fragments = decoder.ip_fragments
        info.secrets = len(reader.secrets)
        if decoder.ip_fragments:
            info.warnings.append(
                f"{decoder.ip_fragments} IP fragments were not reassembled; TCP data inside them is a gap"
            )
        if tracker.flushed:
            info.warnings.append(
                f"more than {tracker.max_open} TCP connections were open at once (a port scan?): "
                f"{tracker.flushed} of the least recently active were ended early to bound memory; "
                "packets of theirs that came later were counted as new connections")
        if tracker.ooo_shed:
            info.warnings.append(
                f"more than {tracker.ooo_total_cap // 1048576} MB of out-of-order TCP data was buffered at once: "
                f"{tracker.ooo_shed} buffers were delivered early with their holes as gaps")
        if tracker.late_packets:
            info.skipped["after connection close"] = tracker.late_packets
    return info
