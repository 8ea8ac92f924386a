"""The C record scanner (h2scope/capture/_scan_c.c) against its reference in Python.

The pipeline reads pcap records and pcapng Enhanced Packet Blocks through the scanner, which also decodes
decode()'s fast path (Ethernet/Linux cooked + option-less IPv4 + TCP) and, for a --jobs
worker, leaves out the other worker's segments. Whatever it does must be what
pcap.read_packets + LinkDecoder.decode + the per-packet loop's partition do: the same
segments for the same packet numbers and timestamps, the same TCP packet count, the same
facts and warnings about the file, on every stored capture, on files cut or damaged
anywhere, across read chunks, and on damaged packet headers.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import sys
from contextlib import redirect_stdout
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcapgen as g
from conftest import CAPTURES_DIR, capture_files
from h2scope import pipeline
from h2scope.capture import pcap, pcapng
from h2scope.capture.link import LinkDecoder
from h2scope.capture.reader import CHUNK, CaptureReader
from h2scope.cli import main
from h2scope.errors import CaptureError

PCAPS = capture_files()  # pcap, pcapng and gzip of either
IDS = [str(p.relative_to(CAPTURES_DIR)) for p in PCAPS]
BASE = CAPTURES_DIR / "grpcio/unary_ok.pcap"


@pytest.fixture(scope="module")
def scan():
    if pcap.C_SCAN is None or pcapng.C_SCAN is None:
        pytest.skip("built without a C compiler (CI builds it: .ci/run checks --version)")
    return pcap.C_SCAN


def _facts(r: CaptureReader) -> tuple:
    return (r.format, r.packets, r.first_ts_ns, r.last_ts_ns, r.warnings, r.link_types)


def reference(path, parts: int = 1, part: int = 0):
    """What run_capture's per-packet loop feeds the tracker: [(number, ts_ns, segment)], the
    TCP packet count, the reader's facts (or the CaptureError)."""
    decoder = LinkDecoder()
    fed, tcp = [], 0
    r = CaptureReader(str(path))
    try:
        for number, ts, lt, data, _orig in r:
            seg = decoder.decode(lt, data)
            if seg is not None:
                tcp += 1
                if (seg[1] + seg[3]) % parts == part:
                    fed.append((number, ts, seg))
    except CaptureError as e:
        return fed, tcp, str(e), dict(decoder.skipped)
    finally:
        r.close()
    return fed, tcp, _facts(r), dict(decoder.skipped)


def scanned(path, scan, parts: int = 1, part: int = 0):
    """The same through CaptureReader.batches and the scanner, as run_capture's batch loop
    does; also how many segments the scanner decoded itself and where batches ended."""
    decoder = LinkDecoder()
    fed, tcp, in_c, lasts = [], 0, 0, []
    r = CaptureReader(str(path))
    try:
        for items, last, counted in r.batches(parts, part):
            tcp += counted
            lasts.append(last)
            for number, ts, src, sport, dst, dport, seq, ack, flags, window, payload in items:
                if src is not None:
                    in_c += 1
                    fed.append((number, ts, (src, sport, dst, dport, seq, ack, flags, window, payload, 0)))
                else:
                    seg = decoder.decode(sport, payload)
                    if seg is not None:
                        tcp += 1
                        if (seg[1] + seg[3]) % parts == part:
                            fed.append((number, ts, seg))
    except CaptureError as e:
        return (fed, tcp, str(e), dict(decoder.skipped)), in_c, lasts
    finally:
        r.close()
    return (fed, tcp, _facts(r), dict(decoder.skipped)), in_c, lasts


@pytest.mark.parametrize("path", PCAPS, ids=IDS)
def test_every_stored_capture_scans_as_the_python_reader_reads_it(path: Path, scan) -> None:
    want = reference(path)
    got, in_c, lasts = scanned(path, scan)
    assert got == want
    for parts in (2, 3):
        for part in range(parts):
            assert scanned(path, scan, parts, part)[0] == reference(path, parts, part)
    # A batch ends at the latest where the pipeline sweeps: after every 4096th record.
    assert all(b - a <= 4096 for a, b in zip([0] + lasts, lasts))


def test_the_scanner_decodes_nearly_every_stored_packet_itself(scan) -> None:
    in_c = total = 0
    for path in PCAPS:
        got, n, _ = scanned(path, scan)
        in_c += n
        total += got[2][1]
    assert total > 2000 and in_c > total * 0.8  # not a scanner that hands everything back


def _big(tmp_path: Path, nano: bool = False, endian: str = "<") -> Path:
    """A capture of several read chunks and more than 4096 records, from a real one."""
    cap = g.read_pcap(CAPTURES_DIR / "grpcio/large_message.pcap")
    records = []
    for rep in range(int(3 * CHUNK / sum(len(r.data) + 16 for r in cap.records)) + 2):
        records += [replace(r, ts_ns=r.ts_ns + rep * 10**9 + 7) for r in cap.records]
    small = g.read_pcap(BASE).records
    while len(records) < 9000:
        records += [replace(r, ts_ns=r.ts_ns + len(records) * 10**6) for r in small]
    path = tmp_path / f"big-{nano}-{endian}.pcap"
    path.write_bytes(g.pcap_bytes(cap.linktype, records, nano=nano, endian=endian))
    return path


@pytest.mark.parametrize("nano,endian,gz", [(False, "<", False), (True, ">", False), (False, "<", True)])
def test_a_capture_across_read_chunks_and_sweeps(tmp_path: Path, scan, nano, endian, gz) -> None:
    """A plain file is mapped and scanned whole; a gzip one is read in chunks, and the
    records that straddle a chunk boundary come back through Python."""
    path = _big(tmp_path, nano, endian)
    assert path.stat().st_size > 3 * CHUNK
    if gz:
        path = path.with_suffix(".pcap.gz")
        path.write_bytes(gzip.compress(path.with_suffix("").read_bytes(), compresslevel=1))
    want = reference(path)
    got, in_c, lasts = scanned(path, scan)
    assert got == want and want[2][1] > 9000
    assert (in_c < want[1]) if gz else (in_c == want[1])
    assert [n for n in lasts if n % 4096 == 0] == list(range(4096, want[2][1] + 1, 4096))
    for part in (0, 1):
        assert scanned(path, scan, 2, part)[0] == reference(path, 2, part)


def test_a_mapped_capture_gives_its_pages_back_as_it_goes(tmp_path: Path, scan) -> None:
    """Resident memory must not grow with the capture: pages of the mapped file that were
    read are handed back every RELEASE_EVERY bytes."""
    from h2scope.capture.reader import RELEASE_EVERY

    path = _big(tmp_path)
    cap = g.read_pcap(path)
    size = path.stat().st_size
    reps = RELEASE_EVERY * 2 // size + 1
    records = [replace(r, ts_ns=r.ts_ns + k * 10**10) for k in range(reps) for r in cap.records]
    path.write_bytes(g.pcap_bytes(cap.linktype, records))
    assert path.stat().st_size > 2 * RELEASE_EVERY
    r = CaptureReader(str(path))
    released = []
    try:
        for _items, _last, _tcp in r.batches():
            released.append(r.source._released)
        assert r.source._map is not None and r.packets == len(records)
    finally:
        r.close()
    assert r.source._map is None  # closed with the reader
    assert released[-1] >= path.stat().st_size - 2 * RELEASE_EVERY
    assert sorted(set(released)) == sorted(set(released), key=released.index)  # only forward


def test_what_cannot_be_mapped_is_read_in_chunks(tmp_path: Path, scan) -> None:
    import subprocess

    path = _big(tmp_path)
    empty = tmp_path / "empty.pcap"
    empty.write_bytes(b"")
    with CaptureReader(str(path)) as r:
        r.detect()
        assert r.map_file()
    with CaptureReader(str(path)) as r:
        r.detect()
        r.compressed = True  # a gzip stream has no file offsets to map
        assert not r.map_file() and r.source._map is None
    # stdin, a pipe: read in chunks, the same records
    out = subprocess.run([sys.executable, "-c", "import sys; from h2scope.capture.reader import CaptureReader\n"
                          "r = CaptureReader('-')\n"
                          "print(sum(len(i) for i, _l, _t in r.batches()), r.source._map is None, r.packets)"],
                         stdin=open(path, "rb"), capture_output=True, text=True, check=True).stdout.split()
    assert out == [str(reference(path)[0].__len__()), "True", str(len(g.read_pcap(path).records))]


def test_a_capture_cut_or_damaged_anywhere_reads_the_same(tmp_path: Path, scan) -> None:
    raw = BASE.read_bytes()
    path = tmp_path / "cut.pcap"
    checked = 0
    for end in list(range(0, 200)) + list(range(200, len(raw), 37)):
        path.write_bytes(raw[:end])
        assert scanned(path, scan)[0] == reference(path), end
        checked += 1
    # a record header claiming more than the snaplen allows, at several records
    offsets, pos = [], 24
    while pos + 16 <= len(raw):
        offsets.append(pos)
        pos += 16 + struct.unpack_from("<I", raw, pos + 8)[0]
    for at in offsets[::3]:
        bad = bytearray(raw)
        struct.pack_into("<I", bad, at + 8, 0x7FFFFFFF)
        path.write_bytes(bytes(bad))
        got = scanned(path, scan)[0]
        assert got == reference(path)
        assert isinstance(got[2], str) or "damaged" in got[2][4][0]
        checked += 1
    assert checked > 250


_HEAD = {1: None, 113: bytes(14) + b"\x08\x00", 276: b"\x08\x00" + bytes(18)}


def _one_record(tmp_path: Path, lt: int, data: bytes) -> Path:
    path = tmp_path / f"one-{lt}.pcap"
    path.write_bytes(g.pcap_bytes(lt, [g.Record(1_700_000_000_123_456_000, data, len(data))]))
    return path


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([1, 113, 276, 101, 0]),
       st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4), st.integers(-30, 4))
def test_damaged_packet_headers_decode_as_decode_does(tmp_path_factory, lt, edits, cut):
    if pcap.C_SCAN is None:
        pytest.skip("built without a C compiler")
    base = g.read_pcap(BASE).records[5].data  # a data-carrying Ethernet/IPv4/TCP packet
    head = {1: base[:14], 113: _HEAD[113], 276: _HEAD[276], 101: b"", 0: b"\x02\x00\x00\x00"}[lt]
    data = bytearray(head + base[14:])
    for i, v in edits:
        if i < len(data):
            data[i] = v
    data = bytes(data[:len(data) + cut] if cut < 0 else data + bytes(cut))
    path = _one_record(tmp_path_factory.mktemp("one"), lt, data)
    assert scanned(path, pcap.C_SCAN)[0] == reference(path)


@pytest.mark.parametrize("lt", [1, 113, 276])
def test_every_single_byte_edit_of_the_headers(tmp_path: Path, scan, lt) -> None:
    base = g.read_pcap(BASE).records[5].data
    head = base[:14] if lt == 1 else _HEAD[lt]
    packet = head + base[14:]
    records = []
    for i in range(len(head) + 40):  # every byte of the link, IPv4 and TCP headers
        for v in range(0, 256, 3):
            d = packet[:i] + bytes([v]) + packet[i + 1:]
            records.append(g.Record(1_700_000_000_000_000_000 + len(records) * 1000, d, len(d)))
    path = tmp_path / "edits.pcap"
    path.write_bytes(g.pcap_bytes(lt, records))
    want = reference(path)
    assert len(want[0]) > len(records) // 2
    for parts, part in ((1, 0), (2, 0), (2, 1)):
        assert scanned(path, scan, parts, part)[0] == reference(path, parts, part)


def test_the_scanner_refuses_bad_arguments(scan) -> None:
    ok = (b"", 0, True, 1000, 262144, 1, 0, 1, 0)
    assert scan(*ok) == (0, 0, -1, -1, 0, [])
    ng = (b"", 0, True, [(1, 1000, 0), None], 0, 1, 0)
    assert pcapng.C_SCAN(*ng) == (0, 0, -1, -1, 0, [])
    with pytest.raises(TypeError):
        pcapng.C_SCAN(*ng[:6])
    with pytest.raises(TypeError):
        pcapng.C_SCAN(b"", 0, True, ((1, 1000, 0),), 0, 1, 0)
    epb = g.epb(0, g.read_pcap(BASE).records[5])
    with pytest.raises(TypeError):  # a malformed interface entry, met when a block uses it
        pcapng.C_SCAN(epb, 0, True, [(1, 1000)], 0, 1, 0)
    assert pcapng.C_SCAN(epb, 0, True, [(1, 1000, 0)], 0, 1, 0)[1] == 1
    assert pcapng.C_SCAN(epb, 0, True, [None], 0, 1, 0)[1] == 0  # left to Python
    assert pcapng.C_SCAN(epb, 0, True, [(1 << 20, 1000, 0)], 0, 1, 0)[1] == 0  # not a link type
    for i, value in ((1, -1), (1, 5), (4, -1), (5, 0), (6, 1)):
        args = list(ng)
        args[0] = b"\0" * 4
        args[i] = value
        with pytest.raises(ValueError):
            pcapng.C_SCAN(*args)
    with pytest.raises(TypeError):
        scan(*ok[:8])
    with pytest.raises(TypeError):
        scan("text", *ok[1:])
    for i, value in ((1, -1), (1, 5), (3, 0), (3, 7), (4, -1), (6, -1), (7, 0), (8, 1), (8, -1)):
        args = list(ok)
        args[i] = value
        with pytest.raises(ValueError):
            scan(*args)


def _analyze(path, jobs: int) -> str:
    out = io.StringIO()
    with redirect_stdout(out):
        main(["analyze", str(path), "--format", "json", "--jobs", str(jobs)])
    return out.getvalue()


@pytest.mark.parametrize("jobs", [1, 2])
def test_analysis_is_the_same_with_and_without_the_scanner(tmp_path: Path, scan, jobs) -> None:
    paths = PCAPS + [_big(tmp_path)]
    try:
        pipeline.use_c_scan(True)
        with_c = [_analyze(p, jobs) for p in paths]
        pipeline.use_c_scan(True, mapped=False)
        chunked = [_analyze(p, jobs) for p in paths]
        pipeline.use_c_scan(False)
        without = [_analyze(p, jobs) for p in paths]
    finally:
        pipeline.use_c_scan(True)
    assert with_c == chunked == without
    assert sum(json.loads(s)["summary"]["streams"] for s in with_c) > 500


# ---- pcapng ------------------------------------------------------------------------------

from test_capture_formats import VARIANTS  # noqa: E402  (the derived link layers and pcapng layouts)


@pytest.fixture(scope="module")
def bases() -> dict:
    return {p: g.read_pcap(p) for p in {source for source, _ in VARIANTS.values()}}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_every_derived_variant_scans_as_it_reads(name: str, bases, tmp_path: Path, scan) -> None:
    source, build = VARIANTS[name]
    data, _ = build(bases[source])
    path = tmp_path / f"{name}.bin"
    path.write_bytes(data)
    for parts, part in ((1, 0), (2, 0), (2, 1)):
        got, _in_c, _ = scanned(path, scan, parts, part)
        assert got == reference(path, parts, part)


def _ng(records, *, tsresol=None, e="<", sections=1) -> bytes:
    """A pcapng file of EN10MB records, `sections` sections of them."""
    out = []
    per = (len(records) + sections - 1) // sections
    for k in range(sections):
        out += [g.shb(e), g.idb(g.EN10MB, tsresol=tsresol, e=e)]
        out += [g.epb(0, r, tsresol, e) for r in records[k * per:(k + 1) * per]]
    return b"".join(out)


def test_a_pcapng_across_read_chunks_sections_and_sweeps(tmp_path: Path, scan) -> None:
    cap = g.read_pcap(_big(tmp_path))
    for kw in ({}, {"tsresol": 9, "e": ">", "sections": 3}):
        path = tmp_path / "big.pcapng"
        path.write_bytes(_ng(cap.records, **kw))
        assert path.stat().st_size > 3 * CHUNK
        want = reference(path)
        got, in_c, lasts = scanned(path, scan)
        assert got == want and want[2][1] == len(cap.records)
        assert in_c == want[1]  # mapped: every EPB in C
        gz = tmp_path / "big.pcapng.gz"
        gz.write_bytes(gzip.compress(path.read_bytes(), compresslevel=1))
        got, in_c, _ = scanned(gz, scan)
        assert got[:2] == want[:2] and want[1] > in_c > want[1] * 0.9  # blocks across chunks in Python
        assert [n for n in lasts if n % 4096 == 0] == list(range(4096, want[2][1] + 1, 4096))
        for part in (0, 1):
            assert scanned(path, scan, 2, part)[0] == reference(path, 2, part)


def _idb_with(opts: bytes, tsresol=None) -> bytes:
    body_opts = opts + (g._opt(9, bytes([tsresol])) if tsresol is not None else b"")
    return g._block(1, struct.pack("<HHI", g.EN10MB, 0, 262144) + body_opts + b"\0\0\0\0")


@pytest.mark.parametrize("tsresol,offset_s,high,in_c", [
    (None, None, 0, True), (9, None, 0, True), (0, None, 0, True), (0x80 | 20, None, 0, False),
    (0x80 | 30, None, 0, False), (12, None, 0, False),
    (9, 1_000_000, 0, True), (9, -1, 0, False),  # C takes no timestamp before 1970
    (6, 2**40, 0, False), (9, None, 0xFFFFFFFF, False), (6, None, 0x7FFFFFFF, False), (0, None, 0xFFFFFFFF, False)])
def test_pcapng_timestamps_are_the_python_readers_whatever_the_unit(tmp_path: Path, scan, tsresol, offset_s,
                                                                     high, in_c) -> None:
    """Units of a power of two or finer than a nanosecond, offsets, and timestamps past 63
    bits are left to Python; the rest computed in C. Either way the same numbers."""
    records = g.read_pcap(BASE).records
    opts = g._opt(14, struct.pack("<q", offset_s)) if offset_s is not None else b""
    blocks = [g.shb(), _idb_with(opts, tsresol)]
    for i, r in enumerate(records):
        body = struct.pack("<IIIII", 0, high, 1000 * i + 7, len(r.data), r.orig_len) + g._pad4(r.data)
        blocks.append(g._block(6, body))
    path = tmp_path / "ts.pcapng"
    path.write_bytes(b"".join(blocks))
    want = reference(path)
    got, n_c, _ = scanned(path, scan)
    assert got == want and want[2][1] == len(records)
    assert n_c == (len(records) if in_c else 0)


def test_a_pcapng_cut_or_damaged_anywhere_reads_the_same(tmp_path: Path, scan) -> None:
    records = g.read_pcap(BASE).records
    raw = _ng(records)
    path = tmp_path / "cut.pcapng"
    checked = 0
    for end in list(range(0, 120)) + list(range(120, len(raw), 41)):
        path.write_bytes(raw[:end])
        assert scanned(path, scan)[0] == reference(path), end
        checked += 1
    for at in range(0, len(raw), 97):  # a damaged byte anywhere, block headers included
        for v in (0x00, 0xFF):
            bad = bytearray(raw)
            bad[at] = v
            path.write_bytes(bytes(bad))
            assert scanned(path, scan)[0] == reference(path), at
            checked += 1
    assert checked > 200


def test_a_pcapng_with_very_many_interfaces(tmp_path: Path, scan) -> None:
    """Any number of interfaces, declared between packets as well as before them: read in
    time linear in the blocks (each interface block used to copy every interface before it)
    and the same way as the Python reader; those past what C takes are read in Python."""
    records = g.read_pcap(BASE).records
    blocks = [g.shb()]
    blocks += [g.idb(g.EN10MB)] * 70_000
    for i, r in enumerate(records):
        blocks.append(g.epb(i * 997 % 70_000, r))
        blocks.append(g.idb(g.EN10MB, tsresol=9))
        blocks.append(g.unknown_block(0x00000BAD, b"\0\0\0\x01custom"))
    path = tmp_path / "many.pcapng"
    path.write_bytes(b"".join(blocks))
    want = reference(path)
    got, in_c, _ = scanned(path, scan)
    assert got == want and want[2][1] == 2 * len(records)  # custom blocks are numbered too
    assert in_c == want[1] > 10
