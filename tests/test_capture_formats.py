"""Capture formats and link layers.

Every stored capture: packet count, per-packet timestamps (to the nanosecond, compared as
text, never as floats), captured/original lengths, file format and link types agree with
capinfos/tshark; gzip is found by content. Then variants derived from real captures with
tests/pcapgen.py's own writer — other link layers, VLAN tags, IP options and extension
headers, pcap byte orders and resolutions, pcapng with several sections and interfaces,
Simple and obsolete Packet Blocks, unknown blocks, Decryption Secrets — must be read as
tshark reads them and reassemble to exactly the bytes of the original.
"""

from __future__ import annotations

import gzip
import shutil
import subprocess
import tracemalloc
from dataclasses import replace
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import pcapgen as g
from conftest import CAPTURES_DIR, capture_files
from h2scope.capture.link import NOT_A_PACKET, LinkDecoder
from h2scope.capture.reader import CHUNK, CaptureReader
from test_reassembly import reassemble

CAPTURES = capture_files()
IDS = [str(p.relative_to(CAPTURES_DIR)) for p in CAPTURES]

# capinfos' encapsulation names → LINKTYPE numbers
ENCAP = {"ether": 1, "linux-sll2": 276, "linux-sll": 113, "null": 0, "loop": 108, "rawip": 101,
         "rawip4": 228, "rawip6": 229}
FILE_TYPE = {"pcap": "pcap", "nsecpcap": "pcap", "pcapng": "pcapng"}


def read_all(path) -> tuple[CaptureReader, list]:
    with CaptureReader(str(path)) as r:
        packets = list(r)
    return r, packets


@pytest.fixture(scope="module")
def capinfos_table(capinfos) -> dict:
    """One capinfos run over every stored capture: file type, encapsulation, packet count."""
    out = subprocess.run([capinfos, "-T", "-M", "-t", "-E", "-c", *map(str, CAPTURES)],
                         capture_output=True, text=True, check=True).stdout
    lines = out.splitlines()
    assert lines[0].split("\t")[:4] == ["File name", "File type", "File encapsulation", "Number of packets"]
    table = {}
    for line in lines[1:]:
        name, ftype, encap, count = line.split("\t")[:4]
        table[name] = (ftype, encap, int(count))
    return table


def test_every_capture_is_found() -> None:
    names = {p.name for p in CAPTURES}
    for must in ("sll2_any.pcap", "nano.pcap", "ipv6.pcap", "dumpcap.pcapng", "unary_gz.pcap.gz",
                 "plain_name.cap", "midstream.pcap", "cancel_stream.pcap"):
        assert must in names


@pytest.mark.parametrize("path", CAPTURES, ids=IDS)
def test_stored_capture_matches_capinfos_and_tshark(path: Path, capinfos_table, tshark_of) -> None:
    ftype, encap, count = capinfos_table[str(path)]
    reader, packets = read_all(path)
    # packet count, 1-based numbering in file order
    assert reader.packets == len(packets) == count
    assert [p[0] for p in packets] == list(range(1, count + 1))
    assert reader.warnings == []
    # format, compression by content, link types
    assert reader.format == FILE_TYPE[ftype]
    assert reader.compressed == (path.read_bytes()[:2] == b"\x1f\x8b")
    assert reader.link_types == {ENCAP[encap]}
    assert {p[2] for p in packets} == {ENCAP[encap]}
    # every packet's timestamp (exact, as text), captured and original length, as tshark has them
    view = tshark_of(path)
    assert len(view.packets) == count
    for (number, ts_ns, _lt, data, orig), t in zip(packets, view.packets):
        assert number == t["number"]
        assert g.epoch_text(ts_ns) == t["epoch"], f"packet {number}"
        assert (len(data), orig) == (t["cap_len"], t["len"]), f"packet {number}"
    assert (reader.first_ts_ns, reader.last_ts_ns) == (packets[0][1], packets[-1][1])


def test_nanosecond_capture_keeps_every_digit(tshark_of) -> None:
    path = CAPTURES_DIR / "links/nano.pcap"
    assert path.read_bytes()[:4] == b"\x4d\x3c\xb2\xa1"
    _, packets = read_all(path)
    stamps = [g.epoch_text(p[1]) for p in packets]
    assert stamps == [t["epoch"] for t in tshark_of(path).packets]
    assert any(not s.endswith("000") for s in stamps), "a nanosecond capture with only whole microseconds?"


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    # the stored one whose name lies: .cap, gzip of a pcapng
    r, packets = read_all(CAPTURES_DIR / "links/plain_name.cap")
    assert (r.compressed, r.format, len(packets)) == (True, "pcapng", 32)
    r, packets = read_all(CAPTURES_DIR / "links/unary_gz.pcap.gz")
    assert (r.compressed, r.format, len(packets)) == (True, "pcap", 34)
    # a gzip file named .pcap, and a plain file named .gz
    src = (CAPTURES_DIR / "grpcio/unary_ok.pcap").read_bytes()
    (tmp_path / "zipped.pcap").write_bytes(gzip.compress(src))
    (tmp_path / "plain.pcap.gz").write_bytes(src)
    a, pa = read_all(tmp_path / "zipped.pcap")
    b, pb = read_all(tmp_path / "plain.pcap.gz")
    _, po = read_all(CAPTURES_DIR / "grpcio/unary_ok.pcap")
    assert (a.compressed, b.compressed) == (True, False)
    assert pa == pb == po


def test_reading_streams_across_chunks_with_bounded_memory(tmp_path: Path) -> None:
    """A capture several read chunks long (plain and gzip) yields exactly the records an
    independent reader finds, and reading it never holds the file in memory."""
    cap = g.read_pcap(CAPTURES_DIR / "grpcio/large_message.pcap")
    records = []
    for rep in range(int(10 * CHUNK / sum(len(r.data) + 16 for r in cap.records)) + 2):
        records += [replace(r, ts_ns=r.ts_ns + rep * 10**9) for r in cap.records]
    plain = g.write_pcap(tmp_path / "big.pcap", cap.linktype, records, nano=True)
    size = plain.stat().st_size
    assert size > 10 * CHUNK
    (tmp_path / "big.pcap.gz").write_bytes(gzip.compress(plain.read_bytes(), compresslevel=1))
    want = [(r.ts_ns, r.data, r.orig_len) for r in g.read_pcap(plain).records]
    for path in (plain, tmp_path / "big.pcap.gz"):
        tracemalloc.start()
        n = 0
        with CaptureReader(str(path)) as r:
            for number, ts_ns, _lt, data, orig in r:
                assert (ts_ns, data, orig) == want[n]
                n += 1
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        assert n == len(want)
        # a few read chunks in flight, not the file
        assert peak < 4 * CHUNK < size / 2.5, f"reading {path.name} peaked at {peak} bytes for a {size}-byte file"


# ---------------------------------------------------------------------------------------
# derived variants


BASE4 = CAPTURES_DIR / "grpcio/unary_ok.pcap"
BASE6 = CAPTURES_DIR / "links/ipv6.pcap"


def _pcap(cap: g.Capture, linktype: int | None = None, **kw) -> bytes:
    return g.pcap_bytes(linktype if linktype is not None else cap.linktype, cap.records, **kw)


def _relinked(base: g.Capture, linktype: int, **kw) -> tuple[bytes, set]:
    return _pcap(g.relink(base, linktype, **kw), nano=True), {linktype}


def _pcapng_two_sections(base: g.Capture) -> tuple[bytes, set]:
    """Section 1 (little-endian): EN10MB at µs (default if_tsresol) and RAW at ns, packets
    alternating, plus Name Resolution, Interface Statistics, custom and unknown blocks and a
    Decryption Secrets Block. Section 2 (big-endian): LINUX_SLL at 2^-30 s and NULL at ms."""
    recs = base.records
    half = len(recs) // 2
    eth = base.records
    raw = g.relink(base, g.RAW).records
    sll = g.relink(base, g.LINUX_SLL).records
    null = g.relink(base, g.NULL, byteorder=">").records
    out = [g.shb("<"), g.idb(g.EN10MB, name="lo"), g.nrb(), g.idb(g.RAW, tsresol=9),
           g.dsb(b"CLIENT_RANDOM 00 11\n"), g.unknown_block(0x00000BAD, b"\0\0\0\x01custom")]
    for i in range(half):
        if i % 2:
            out.append(g.epb(1, raw[i], tsresol=9, options=g._opt(1, b"a comment")))
        else:
            out.append(g.epb(0, eth[i]))
        if i == 3:
            out.append(g.unknown_block(0x0BADBEEF))  # unknown: skipped
            out.append(g.unknown_block(0x80000001, b"local use"))  # local use: skipped
        if i == 5:
            out.append(g.unknown_block(0x40000BAD, b"\0\0\x7f\xffcustom, not to be copied"))  # a frame to Wireshark
            out.append(g.unknown_block(0x00000009, b"__REALTIME_TIMESTAMP=1795441881849526\nMESSAGE=hi\n"))
    out += [g.isb(0), g.isb(1)]
    out += [g.shb(">"), g.idb(g.LINUX_SLL, tsresol=0x80 | 30, e=">"), g.idb(g.NULL, tsresol=3, e=">")]
    for i in range(half, len(recs)):
        if i % 2:
            out.append(g.epb(1, null[i], tsresol=3, e=">"))
        else:
            out.append(g.epb(0, sll[i], tsresol=0x80 | 30, e=">"))
    return b"".join(out), {g.EN10MB, g.RAW, g.LINUX_SLL, g.NULL}


def _pcapng_spb(base: g.Capture) -> tuple[bytes, set]:
    return b"".join([g.shb(), g.idb(g.EN10MB, snaplen=0)] + [g.spb(r) for r in base.records]), {g.EN10MB}


def _pcapng_obsolete_pb(base: g.Capture) -> tuple[bytes, set]:
    return b"".join([g.shb(), g.idb(g.EN10MB, tsresol=9)]
                    + [g.obsolete_pb(0, r, tsresol=9) for r in base.records]), {g.EN10MB}


def _gzip_pcapng(base: g.Capture) -> tuple[bytes, set]:
    data, lts = _pcapng_two_sections(base)
    return gzip.compress(data), lts


# name → (source, builder(base) → (file bytes, expected link types))
VARIANTS = {
    "pcap-be-us": (BASE4, lambda b: (_pcap(b, endian=">"), {1})),
    "pcap-le-ns": (BASE4, lambda b: (_pcap(b, nano=True), {1})),
    "pcap-be-ns": (BASE4, lambda b: (_pcap(b, endian=">", nano=True), {1})),
    "pcap-fcs-bits": (BASE4, lambda b: (_pcap(b, linktype=0x10000000 | 1), {1})),
    "null-le": (BASE4, lambda b: _relinked(b, g.NULL, byteorder="<")),
    "null-be": (BASE4, lambda b: _relinked(b, g.NULL, byteorder=">")),
    "loop": (BASE4, lambda b: _relinked(b, g.LOOP)),
    "raw-101": (BASE4, lambda b: _relinked(b, g.RAW)),
    "raw-12": (BASE4, lambda b: _relinked(b, g.RAW_12)),
    "raw-14": (BASE4, lambda b: _relinked(b, g.RAW_14)),
    "ipv4-228": (BASE4, lambda b: _relinked(b, g.IPV4)),
    "linux-sll-113": (BASE4, lambda b: _relinked(b, g.LINUX_SLL)),
    "linux-sll2-276": (BASE4, lambda b: _relinked(b, g.LINUX_SLL2)),
    "vlan-8021q": (BASE4, lambda b: _relinked(b, g.EN10MB, vlans=[(0x8100, 42)])),
    "vlan-qinq": (BASE4, lambda b: _relinked(b, g.EN10MB, vlans=[(0x88A8, 7), (0x8100, 42)])),
    "ipv4-options": (BASE4, lambda b: _relinked(b, g.EN10MB, ip_transform=g.ipv4_add_options)),
    "ipv6-229": (BASE6, lambda b: _relinked(b, g.IPV6)),
    "ipv6-raw-101": (BASE6, lambda b: _relinked(b, g.RAW)),
    "ipv6-null-bsd24": (BASE6, lambda b: _relinked(b, g.NULL, byteorder="<", af_inet6=24)),
    "ipv6-null-freebsd28": (BASE6, lambda b: _relinked(b, g.NULL, byteorder="<", af_inet6=28)),
    "ipv6-loop-macos30": (BASE6, lambda b: _relinked(b, g.LOOP, af_inet6=30)),
    "ipv6-sll": (BASE6, lambda b: _relinked(b, g.LINUX_SLL)),
    "ipv6-ext-headers": (BASE6, lambda b: _relinked(b, g.EN10MB, ip_transform=g.ipv6_add_ext_headers)),
    "ipv6-ext-headers-vlan": (BASE6, lambda b: _relinked(b, g.EN10MB, vlans=[(0x8100, 5)],
                                                         ip_transform=g.ipv6_add_ext_headers)),
    "pcapng-2-sections-4-interfaces": (BASE4, _pcapng_two_sections),
    "pcapng-simple-packet-blocks": (BASE4, _pcapng_spb),
    "pcapng-obsolete-packet-blocks": (BASE4, _pcapng_obsolete_pb),
    "pcapng-gzip": (BASE4, _gzip_pcapng),
}


@pytest.fixture(scope="module")
def originals() -> dict:
    return {p: (g.read_pcap(p), reassemble(p)) for p in (BASE4, BASE6)}


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_reads_like_tshark_and_reassembles_like_the_original(name: str, originals, tshark,
                                                                     tmp_path: Path) -> None:
    source, build = VARIANTS[name]
    base, base_result = originals[source]
    data, linktypes = build(base)
    path = tmp_path / f"{name}.bin"
    path.write_bytes(data)

    reader, packets = read_all(path)
    assert reader.warnings == []
    real = [p for p in packets if p[2] != NOT_A_PACKET]
    assert len(real) == len(base.records)
    assert reader.link_types == linktypes
    assert {p[2] for p in real} == linktypes
    # tshark reads our file the same way: count (Wireshark numbers custom blocks too),
    # timestamps (none for Simple Packet and custom blocks: we say 0), lengths
    view = g.tshark_view(tshark, path)
    assert reader.packets == len(packets) == len(view.packets)
    for (number, ts_ns, lt, d, orig), t in zip(packets, view.packets):
        assert g.epoch_text(ts_ns) == (t["epoch"] or "0.000000000"), f"packet {number}"
        if lt != NOT_A_PACKET:
            assert (len(d), orig) == (t["cap_len"], t["len"]), f"packet {number}"
    # every packet decodes to the same TCP segment as the original's
    dec = LinkDecoder()
    want = LinkDecoder()
    for (_n, _ts, lt, d, _o), r in zip(real, base.records):
        assert dec.decode(lt, d) == want.decode(base.linktype, r.data)
    assert not dec.skipped and dec.ip_fragments == 0
    # and it reassembles to the original's bytes, which tshark's follower also finds here
    got = reassemble(path)
    assert got.bytes() == base_result.bytes()
    assert got.gaps() == base_result.gaps()
    assert [(s.conn.client, s.conn.server, s.conn.close) for s in got.streams.values()] == \
        [(s.conn.client, s.conn.server, s.conn.close) for s in base_result.streams.values()]
    for cid, s in got.streams.items():
        assert sorted([bytes(s.data[0]), bytes(s.data[1])]) == sorted(view.streams[cid].data)


def test_variant_timestamps_follow_each_interface_resolution(originals, tmp_path: Path) -> None:
    base, _ = originals[BASE4]
    data, _ = _pcapng_two_sections(base)
    path = tmp_path / "ng.pcapng"
    path.write_bytes(data)
    _, packets = read_all(path)
    # the custom block before the first packet is number 1; the custom and journal blocks
    # after the 6th packet are numbers 8 and 9, as in Wireshark; a journal entry has a time
    assert [i for i, p in enumerate(packets, 1) if p[2] == NOT_A_PACKET] == [1, 8, 9]
    assert packets[8][1] == 1795441881849526000
    packets = [p for p in packets if p[2] != NOT_A_PACKET]
    half = len(base.records) // 2
    for i, (p, r) in enumerate(zip(packets, base.records)):
        res = (None if i % 2 == 0 else 9) if i < half else (0x80 | 30 if i % 2 == 0 else 3)
        assert p[1] == g.units_ns(g.ts_units(r.ts_ns, res), res), f"packet {i + 1} (if_tsresol {res})"


def test_decryption_secrets_are_kept(originals, tmp_path: Path) -> None:
    base, _ = originals[BASE4]
    data, _ = _pcapng_two_sections(base)
    path = tmp_path / "ng.pcapng"
    path.write_bytes(data)
    reader, _ = read_all(path)
    assert reader.secrets == [(0x544C534B, b"CLIENT_RANDOM 00 11\n")]


def test_simple_packet_blocks_honour_the_interface_snaplen(originals, tmp_path: Path) -> None:
    """An SPB's captured length is min(original length, the IDB's snaplen)."""
    base, _ = originals[BASE4]
    path = tmp_path / "spb.pcapng"
    path.write_bytes(b"".join([g.shb(), g.idb(g.EN10MB, snaplen=80)]
                              + [g.spb(replace(r, data=r.data[:80])) for r in base.records]))
    _, packets = read_all(path)
    assert [len(p[3]) for p in packets] == [min(80, len(r.data)) for r in base.records]
    assert [p[4] for p in packets] == [r.orig_len for r in base.records]


def test_ip_fragments_are_counted_not_decoded(originals) -> None:
    base, _ = originals[BASE4]
    dec = LinkDecoder()
    frame = bytearray(base.records[3].data)
    frame[14 + 6] |= 0x20  # IPv4 More Fragments
    assert dec.decode(g.EN10MB, bytes(frame)) is None
    frame6 = bytearray(originals[BASE6][0].records[3].data)
    ip6 = g.ipv6_add_ext_headers(0x86DD, bytes(frame6[14:]))
    # turn the Destination Options header into a Fragment header (44)
    ip6 = bytearray(ip6)
    ip6[40] = 44
    assert dec.decode(g.EN10MB, bytes(frame6[:14]) + bytes(ip6)) is None
    assert dec.ip_fragments == 2


def test_editcap_conversions_read_the_same(tmp_path: Path, originals) -> None:
    """editcap's own pcapng and nanosecond pcap writers, for an independent second opinion."""
    editcap = shutil.which("editcap")
    assert editcap, "editcap is required (apt-get install -y tshark)"
    base, base_result = originals[BASE4]
    _, want = read_all(BASE4)
    for fmt in ("pcapng", "nsecpcap"):
        out = tmp_path / f"conv.{fmt}"
        subprocess.run([editcap, "-F", fmt, str(BASE4), str(out)], check=True, capture_output=True)
        reader, packets = read_all(out)
        assert reader.format == ("pcapng" if fmt == "pcapng" else "pcap")
        assert [(p[1], p[3], p[4]) for p in packets] == [(p[1], p[3], p[4]) for p in want]
        assert reassemble(out).bytes() == base_result.bytes()


def test_gzip_members_padding_and_damage(tmp_path: Path) -> None:
    src = (CAPTURES_DIR / "grpcio/large_message.pcap").read_bytes()
    _, want = read_all(CAPTURES_DIR / "grpcio/large_message.pcap")
    # several gzip members (what `cat a.gz b.gz` or pigz makes), then zero padding
    cut = len(src) // 3
    multi = tmp_path / "multi.pcap.gz"
    multi.write_bytes(gzip.compress(src[:cut]) + gzip.compress(src[cut:2 * cut]) + gzip.compress(src[2 * cut:])
                      + b"\0" * 512)
    r, got = read_all(multi)
    assert got == want and r.warnings == []
    # damage in the middle of the compressed stream: what came before is kept, with a warning
    z = bytearray(gzip.compress(src))
    z[len(z) // 2] ^= 0xFF
    z[len(z) // 2 + 1] ^= 0xFF
    bad = tmp_path / "bad.pcap.gz"
    bad.write_bytes(bytes(z))
    r, got = read_all(bad)
    assert r.warnings, "damage must be reported"
    good = 0
    while good < min(len(got), len(want)) and got[good] == want[good]:
        good += 1
    assert good >= 5, "the packets before the damage must be read"


def _fast_sum_agrees(decoder: LinkDecoder, lt: int, data: bytes) -> bool:
    """fast_port_sum either declines or names the port sum decode() finds; True if it named one."""
    fast = decoder.fast_port_sum(lt, data)
    if fast < 0:
        return False
    seg = decoder.decode(lt, data)
    assert seg is not None and seg[1] + seg[3] == fast
    return True


@pytest.mark.parametrize("name", ["linux-sll-113", "linux-sll2-276", "vlan-8021q", "ipv4-options", "ipv6-sll",
                                  "ipv6-ext-headers", "null-le", "raw-101"])
def test_workers_skip_by_the_port_sum_decode_would_find(name: str, originals, tmp_path: Path) -> None:
    """A --jobs worker skips other workers' packets by fast_port_sum without decoding them."""
    source, build = VARIANTS[name]
    data, _ = build(originals[source][0])
    path = tmp_path / f"{name}.bin"
    path.write_bytes(data)
    decoder = LinkDecoder()
    named = sum(_fast_sum_agrees(decoder, lt, d) for _n, _ts, lt, d, _o in read_all(path)[1])
    # Only option-less IPv4 behind Ethernet and Linux cooked headers takes the fast path.
    assert named == (len(originals[source][0].records) if name in ("linux-sll-113", "linux-sll2-276") else 0)


def test_fast_port_sum_on_every_stored_packet() -> None:
    decoder = LinkDecoder()
    named = total = 0
    for path in CAPTURES:
        for _n, _ts, lt, d, _o in read_all(path)[1]:
            total += 1
            named += _fast_sum_agrees(decoder, lt, d)
    assert total > 2000 and named > total * 0.8  # nearly all stored packets are Ethernet, IPv4 and TCP


@settings(max_examples=400, deadline=None)
@given(st.sampled_from([1, 113, 276]), st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4),
       st.integers(-20, 4))
def test_fast_port_sum_never_disagrees_on_damaged_headers(lt, edits, cut):
    base = g.read_pcap(BASE4).records[5].data  # a data-carrying Ethernet/IPv4/TCP packet
    ip = base[14:]
    head = {1: base[:14], 113: bytes(14) + b"\x08\x00", 276: b"\x08\x00" + bytes(18)}[lt]
    data = bytearray(head + ip)
    for i, v in edits:
        if i < len(data):
            data[i] = v
    data = bytes(data[:len(data) + cut] if cut < 0 else data + bytes(cut))
    _fast_sum_agrees(LinkDecoder(), lt, data)


_IP_AT = {1: 14, 113: 16, 276: 20}  # where the IPv4 header starts behind each fast-path link header


def _fast_path_agrees(lt: int, data: bytes) -> bool:
    """decode()'s fast path (IPv4 + TCP behind Ethernet or Linux cooked headers) returns what
    its general path returns for the same IP packet, seen as a raw-IP capture (LINKTYPE_RAW
    has no fast path). True if the packet was compared."""
    ip = data[_IP_AT[lt]:]
    etype_at = {1: 12, 113: 14, 276: 0}[lt]
    if data[etype_at:etype_at + 2] != b"\x08\x00" or not ip or ip[0] >> 4 != 4:
        return False  # the general path reads these by their link header: not comparable with raw IP
    assert LinkDecoder().decode(lt, data) == LinkDecoder().decode(101, ip)
    return True


def test_decode_fast_path_equals_the_general_path_on_every_stored_packet() -> None:
    compared = 0
    for path in CAPTURES:
        for _n, _ts, lt, d, _o in read_all(path)[1]:
            if lt in _IP_AT:
                compared += _fast_path_agrees(lt, d)
    assert compared > 2000


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([1, 113, 276]), st.lists(st.tuples(st.integers(0, 63), st.integers(0, 255)), max_size=4),
       st.integers(-20, 4))
def test_decode_fast_path_equals_the_general_path_on_damaged_headers(lt, edits, cut):
    base = g.read_pcap(BASE4).records[5].data  # a data-carrying Ethernet/IPv4/TCP packet
    head = {1: base[:14], 113: bytes(14) + b"\x08\x00", 276: b"\x08\x00" + bytes(18)}[lt]
    data = bytearray(head + base[14:])
    for i, v in edits:
        if i < len(data):
            data[i] = v
    _fast_path_agrees(lt, bytes(data[:len(data) + cut] if cut < 0 else data + bytes(cut)))


@pytest.mark.parametrize("lt", [1, 113, 276])
def test_decode_fast_path_equals_the_general_path_for_every_single_byte_edit(lt):
    base = g.read_pcap(BASE4).records[5].data
    head = {1: base[:14], 113: bytes(14) + b"\x08\x00", 276: b"\x08\x00" + bytes(18)}[lt]
    packet = head + base[14:]
    for i in range(_IP_AT[lt] + 40):  # every byte of the link, IPv4 and TCP headers
        for v in range(256):
            _fast_path_agrees(lt, packet[:i] + bytes([v]) + packet[i + 1:])
