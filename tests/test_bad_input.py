"""Bad input through the real command line (`h2scope analyze` in a subprocess).

Nothing readable → exit 2 and exactly one line on stderr, "h2scope: error: ...", never a
traceback. Damage after some packets → exit 0, a warning naming the damage, and the packets
before it analyzed. The CLI runs with H2SCOPE_DEBUG=1, so an internal error would surface
as a traceback (and fail here) instead of hiding behind the generic error line.
"""

from __future__ import annotations

import gzip
import json
import os
import struct
import subprocess
import sys
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

import pcapgen as g
from conftest import CAPTURES_DIR

CLI = [sys.executable, "-c", "from h2scope.cli import console; console()"]  # what the h2scope script runs

PCAP = CAPTURES_DIR / "grpcio/streaming_ok.pcap"
PCAPNG = CAPTURES_DIR / "links/dumpcap.pcapng"
GZ = CAPTURES_DIR / "links/unary_gz.pcap.gz"


def _pcap_record_offsets(raw: bytes) -> list[int]:
    """File offsets of each pcap record header."""
    e = "<" if raw[:4] in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1") else ">"
    pos, out = 24, []
    while pos + 16 <= len(raw):
        out.append(pos)
        pos += 16 + struct.unpack_from(e + "I", raw, pos + 8)[0]
    return out


def _pcapng_blocks(raw: bytes) -> list[tuple[int, int, int]]:
    """(offset, type, length) of each block of a little-endian pcapng file."""
    pos, out = 0, []
    while pos + 12 <= len(raw):
        btype, length = struct.unpack_from("<II", raw, pos)
        out.append((pos, btype, length))
        pos += length
    return out


# ---------------------------------------------------------------------------------------
# inputs that cannot be read at all


def fatal_cases(tmp: Path) -> dict[str, list[str]]:
    pcap = PCAP.read_bytes()
    ng = PCAPNG.read_bytes()
    first = _pcap_record_offsets(pcap)[0]
    cases: dict[str, bytes | None] = {
        "not-a-capture": b"GET / HTTP/1.1\r\nHost: example\r\n\r\n" * 10,
        "empty": b"",
        "three-bytes": pcap[:3],
        "truncated-pcap-header": pcap[:17],
        "truncated-pcapng-section-header": ng[:10],
        "pcapng-impossible-section-length": ng[:4] + struct.pack("<I", 0xFFFFFFF0) + ng[8:],
        "pcapng-section-length-not-multiple-of-4": ng[:4] + struct.pack("<I", 30) + ng[8:],
        "pcapng-bad-byte-order-magic": ng[:8] + b"\x01\x02\x03\x04" + ng[12:],
        "pcapng-impossible-interface-block-length": _patch_block_length(ng, 1, 8),
        "pcapng-huge-interface-block-length": _patch_block_length(ng, 1, 0x7FFFFFF0),
        "pcapng-packet-before-any-interface": _drop_block(ng, 1),
        "pcap-record-larger-than-snaplen": _patch_first_record_len(pcap, 0x7FFFFFF0),
        "pcap-record-cut-short": pcap[:first + 16 + 10],
        "pcap-record-header-cut-short": pcap[:first + 7],
        "gzip-garbage": b"\x1f\x8b\x08\x00" + os.urandom(200),
        "gzip-of-not-a-capture": gzip.compress(b"just some text, not a capture at all"),
        "gzip-cut-inside-header": gzip.compress(pcap)[:30],
    }
    args: dict[str, list[str]] = {}
    for name, data in cases.items():
        p = tmp / f"{name}.pcap"
        p.write_bytes(data)
        args[name] = [str(p)]
    (tmp / "a-directory.pcap").mkdir()
    args["a-directory"] = [str(tmp / "a-directory.pcap")]
    args["missing-file"] = [str(tmp / "no-such-file.pcap")]
    return args


def _patch_block_length(ng: bytes, index: int, length: int) -> bytes:
    off, _t, _l = _pcapng_blocks(ng)[index]
    return ng[:off + 4] + struct.pack("<I", length) + ng[off + 8:]


def _drop_block(ng: bytes, index: int) -> bytes:
    off, _t, length = _pcapng_blocks(ng)[index]
    return ng[:off] + ng[off + length:]


def _patch_first_record_len(pcap: bytes, incl: int) -> bytes:
    off = _pcap_record_offsets(pcap)[0]
    return pcap[:off + 8] + struct.pack("<I", incl) + pcap[off + 12:]


def run_cli(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, H2SCOPE_DEBUG="1", NO_COLOR="1")
    return subprocess.run(CLI + args, input=stdin, capture_output=True, timeout=60, env=env)


@pytest.fixture(scope="module")
def fatal_results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("fatal")
    cases = fatal_cases(tmp)
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run_cli, ["analyze", *args]) for name, args in cases.items()}
        futures["stdin-not-a-capture"] = pool.submit(run_cli, ["analyze", "-"], b"definitely not a pcap file")
        futures["stdin-empty"] = pool.submit(run_cli, ["analyze", "-", "--format", "json"], b"")
        futures["frames-command-not-a-capture"] = pool.submit(run_cli, ["frames", *cases["not-a-capture"]])
        return {name: f.result() for name, f in futures.items()}


FATAL = [
    "not-a-capture", "empty", "three-bytes", "truncated-pcap-header", "truncated-pcapng-section-header",
    "pcapng-impossible-section-length", "pcapng-section-length-not-multiple-of-4",
    "pcapng-bad-byte-order-magic", "pcapng-impossible-interface-block-length",
    "pcapng-huge-interface-block-length", "pcapng-packet-before-any-interface",
    "pcap-record-larger-than-snaplen", "pcap-record-cut-short", "pcap-record-header-cut-short",
    "gzip-garbage", "gzip-of-not-a-capture", "gzip-cut-inside-header", "a-directory", "missing-file",
    "stdin-not-a-capture", "stdin-empty", "frames-command-not-a-capture",
]

# what the one line must say, beyond "h2scope: error:"
SAYS = {
    "not-a-capture": "not a pcap or pcapng", "empty": "empty", "a-directory": "directory",
    "missing-file": "no such file", "pcap-record-larger-than-snaplen": "snaplen",
    "pcapng-impossible-section-length": "length", "pcapng-huge-interface-block-length": "length",
    "pcapng-impossible-interface-block-length": "length", "truncated-pcap-header": "truncated",
    "pcap-record-cut-short": "cut short", "gzip-garbage": "compressed",
}


@pytest.mark.parametrize("case", FATAL)
def test_unreadable_input_is_one_error_line_and_exit_2(case: str, fatal_results) -> None:
    proc = fatal_results[case]
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 2, (proc.returncode, err)
    lines = err.splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("h2scope: error: "), err
    assert "internal error" not in err, err
    if case in SAYS:
        assert SAYS[case] in lines[0].lower(), lines[0]
    assert proc.stdout == b"", "nothing may be printed as if it were a result"


# ---------------------------------------------------------------------------------------
# damage after some packets: a warning, and everything before it analyzed


def damaged_cases(tmp: Path) -> dict[str, tuple[Path, int, str]]:
    """name → (file, packets before the damage, a word the warning must contain)."""
    pcap = PCAP.read_bytes()
    recs = _pcap_record_offsets(pcap)
    ng = PCAPNG.read_bytes()
    blocks = _pcapng_blocks(ng)
    epbs = [i for i, (_o, t, _l) in enumerate(blocks) if t == 6]
    out: dict[str, tuple[Path, int, str]] = {}

    def put(name: str, data: bytes, before: int, word: str) -> None:
        p = tmp / f"{name}.pcap"
        p.write_bytes(data)
        out[name] = (p, before, word)

    put("pcap-cut-mid-record", pcap[:recs[20] + 16 + 30], 20, "cut short")
    put("pcap-cut-mid-record-header", pcap[:recs[33] + 5], 33, "cut short")
    put("pcap-later-record-larger-than-snaplen",
        pcap[:recs[12] + 8] + struct.pack("<I", 0x7FFFFFF0) + pcap[recs[12] + 12:], 12, "snaplen")
    k = epbs[10]
    off = blocks[k][0]
    put("pcapng-later-block-impossible-length", ng[:off + 4] + struct.pack("<I", 0xFFFFFFF0) + ng[off + 8:],
        10, "length")
    put("pcapng-later-block-odd-length", ng[:off + 4] + struct.pack("<I", 13) + ng[off + 8:], 10, "length")
    # the trailing length disagrees with the leading one
    end = off + blocks[k][2]
    put("pcapng-later-block-mismatched-trailer", ng[:end - 4] + struct.pack("<I", 4) + ng[end:], 10, "length")
    put("pcapng-cut-mid-block", ng[:off + 40], 10, "cut short")
    # an EPB that names an interface that does not exist
    put("pcapng-later-block-unknown-interface", ng[:off + 8] + struct.pack("<I", 7) + ng[off + 12:], 10,
        "interface")
    # gzip cut in the middle of the compressed stream
    z = GZ.read_bytes()
    cut = z[:len(z) // 2]
    before = _complete_records_in_partial_gzip(cut)
    assert 0 < before < 34
    put("gzip-cut-in-the-middle", cut, before, "compressed")
    return out


def _complete_records_in_partial_gzip(data: bytes) -> int:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    raw = d.decompress(data)
    return len([o for o in _pcap_record_offsets(raw)
                if o + 16 + struct.unpack_from("<I", raw, o + 8)[0] <= len(raw)])


@pytest.fixture(scope="module")
def damaged_results(tmp_path_factory) -> dict:
    tmp = tmp_path_factory.mktemp("damaged")
    cases = damaged_cases(tmp)
    with ThreadPoolExecutor(4) as pool:
        futures = {name: pool.submit(run_cli, ["analyze", str(p), "--format", "json"])
                   for name, (p, _b, _w) in cases.items()}
        futures["stdin-pcap-cut-mid-record"] = pool.submit(
            run_cli, ["analyze", "-", "--format", "json"], cases["pcap-cut-mid-record"][0].read_bytes())
        futures["text-pcap-cut-mid-record"] = pool.submit(
            run_cli, ["analyze", str(cases["pcap-cut-mid-record"][0])])
        cases["stdin-pcap-cut-mid-record"] = cases["pcap-cut-mid-record"]
        return {name: (f.result(), cases.get(name)) for name, f in futures.items()}


DAMAGED = ["pcap-cut-mid-record", "pcap-cut-mid-record-header", "pcap-later-record-larger-than-snaplen",
           "pcapng-later-block-impossible-length", "pcapng-later-block-odd-length",
           "pcapng-later-block-mismatched-trailer", "pcapng-cut-mid-block",
           "pcapng-later-block-unknown-interface", "gzip-cut-in-the-middle", "stdin-pcap-cut-mid-record"]


@pytest.mark.parametrize("case", DAMAGED)
def test_later_damage_is_a_warning_and_earlier_packets_are_analyzed(case: str, damaged_results) -> None:
    proc, (_path, before, word) = damaged_results[case]
    err = proc.stderr.decode("utf-8", "replace")
    assert "Traceback" not in err, err
    assert proc.returncode == 0, err
    doc = json.loads(proc.stdout)
    cap = doc["capture"]
    assert cap["packets"] == before
    assert cap["warnings"], "the damage must be reported"
    assert any(word in w for w in cap["warnings"]), cap["warnings"]
    assert any(f"{before} packets" in w for w in cap["warnings"]), cap["warnings"]
    # and on stderr, as warnings (not errors)
    assert err.strip() and all(line.startswith("h2scope: warning: ") for line in err.splitlines()), err
    # what came before the damage was analyzed: connections and calls were found
    assert doc["connections"], "the packets before the damage were not analyzed"
    assert doc["streams"]


def test_text_report_of_damaged_capture_mentions_the_damage(damaged_results) -> None:
    proc, _ = damaged_results["text-pcap-cut-mid-record"]
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == 0 and "Traceback" not in err
    assert "cut short" in (proc.stdout.decode() + err)


def test_damaged_variants_analyze_the_same_packets_as_tshark_reads(damaged_results, tshark) -> None:
    """tshark also stops at the damage: it reads exactly the packets we analyzed."""
    for case in ("pcap-cut-mid-record", "pcapng-later-block-impossible-length", "gzip-cut-in-the-middle"):
        proc, (path, before, _w) = damaged_results[case]
        r = subprocess.run([tshark, "-n", "-r", str(path), "-T", "fields", "-e", "frame.number"],
                           capture_output=True, text=True)
        assert len(r.stdout.split()) == before, case
        assert r.stderr.strip(), f"tshark too should complain about {case}"


def test_valid_capture_with_no_packets_is_not_an_error(tmp_path: Path) -> None:
    p = g.write_pcap(tmp_path / "none.pcap", g.EN10MB, [])
    proc = run_cli(["analyze", str(p), "--format", "json"])
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["capture"]["packets"] == 0 and doc["capture"]["warnings"] == []


def _syn(i: int) -> bytes:
    src, dst = bytes([10, 1, (i >> 8) & 255, i & 255]), bytes([10, 0, 0, 1])
    tcp = struct.pack("!HHIIBBHHH", 1024 + i % 60000, 50051, i * 7919 & 0xFFFFFFFF, 0, 0x50, 0x02, 65535, 0, 0)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), i & 0xFFFF, 0, 64, 6, 0, src, dst)
    return g.ethernet_header(0x0800) + ip + tcp


@pytest.mark.interpreted
def test_a_port_scan_keeps_a_bounded_number_of_connections(tmp_path, monkeypatch):
    """Every SYN opens a connection; past MAX_OPEN the least recently active are ended early,
    every connection is still reported once, and the capture's warnings say so."""
    from h2scope.analysis import Options, run
    from h2scope.report.json_report import JsonReport
    from h2scope.results import Selection
    from h2scope.tcp import reassembly

    n = 9000
    path = g.write_pcap(tmp_path / "scan.pcap", g.EN10MB,
                        (g.Record(1_700_000_000_000_000_000 + i * 10_000, f, len(f))
                         for i, f in ((i, _syn(i)) for i in range(n))))
    monkeypatch.setattr(reassembly, "MAX_OPEN", 500)
    most = [0]
    feed = reassembly.TcpTracker.feed

    def counting_feed(self, number, ts_ns, seg):
        feed(self, number, ts_ns, seg)
        most[0] = max(most[0], self.open_connections)

    monkeypatch.setattr(reassembly.TcpTracker, "feed", counting_feed)
    import io

    out = io.StringIO()
    rep = JsonReport(Selection(), out=out)
    r = run(str(path), rep, Options())
    rep.write_json(r.capture.to_json())
    doc = json.loads(out.getvalue())
    assert doc["summary"]["connections"] == n == len({c["id"] for c in doc["connections"]})
    assert 500 < most[0] <= 500 + 4096  # swept every 4,096 packets
    assert any("more than 500 TCP connections were open at once" in w for w in doc["capture"]["warnings"])
    flushed = [c for c in doc["connections"] if any("ended early" in note for note in c["notes"])]
    assert len(flushed) >= n - 500 - 4096
    assert all(c["close"] == "open" for c in flushed)


@pytest.mark.interpreted
def test_out_of_order_data_has_a_total_budget(tmp_path, monkeypatch):
    """Data held back behind holes counts against one budget over all connections; past it
    the fullest buffers are delivered with their holes as gaps, and the count stays exact."""
    from h2scope.analysis import Options, analyze
    from h2scope.tcp import reassembly

    cap = g.read_pcap(CAPTURES_DIR / "grpcio" / "multi_channel.pcap")
    # Lose the first data segment of every connection after its handshake: everything after
    # it waits in the out-of-order buffers until a gap is declared.
    seen, lost = set(), []
    for i, rec in enumerate(cap.records):
        v = g.tcp_view(rec.data, cap.linktype)
        if v is not None and v.payload_len and v.sport != 50051 and v.sport not in seen:
            seen.add(v.sport)
            lost.append(i)
    assert len(lost) == 8
    path = g.write_pcap(tmp_path / "holes.pcap", cap.linktype, g.drop(cap.records, lost))

    totals = []
    shed = reassembly.TcpTracker._shed

    def checked_shed(self, number, ts_ns):
        shed(self, number, ts_ns)
        buffered = sum(d.ooo_bytes for c, ep in self._open.values() if ep == 0 for d in c.dirs)
        assert self.ooo_total == buffered
        totals.append(self.ooo_total)

    monkeypatch.setattr(reassembly, "OOO_TOTAL_CAP", 150)
    monkeypatch.setattr(reassembly.TcpTracker, "_shed", checked_shed)
    a = analyze(str(path), Options())
    assert totals and max(totals) <= 150 * 9 // 10
    assert any("out-of-order TCP data was buffered at once" in w for w in a.capture.warnings)
    assert sum(c.gaps[0] for c in a.connections) >= 8
