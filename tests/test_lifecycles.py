"""Each scenario's lifecycles match what its capture shows.

The facts come from captures/*/facts.json, written by the recording scripts from the
capture files with tshark (never from the scripts' intent): streams with :path,
grpc-timeout, status, RST_STREAM attribution, GOAWAYs and how TCP closed.
"""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote

import pytest

from h2scope.analysis import decode
from h2scope.grpc.status import status_name

ROOT = Path(__file__).resolve().parent.parent / "captures"
CASES = []
for facts_file in sorted(ROOT.glob("*/facts.json")):
    for name, facts in json.loads(facts_file.read_text()).items():
        CASES.append((facts_file.parent / name, facts))

_cache: dict = {}

# Where h2scope and the facts (tshark) are expected to differ, and why.
DIFFERENCES = {
    "h2peers/protocol_violations.pcap": {
        # Frames on streams never validly opened (DATA on idle 7, orphan CONTINUATION on 9, even
        # client stream 4, decreasing id 13) are reported as violations, not invented streams.
        "absent": {4, 7, 9, 13},
        # A PING cut stream 3's header block: a connection error after which the HPACK state is
        # unknowable. h2scope shows later headers as unknown instead of guessing; tshark decodes on.
        "unknown": {3, 15, 17},
    },
}


def model(path: Path):
    if path not in _cache:
        _cache[path] = decode(str(path))
    return _cache[path]


def _ids():
    return [f"{p.parent.name}/{p.name}" for p, _ in CASES]


def test_facts_cover_every_directory():
    assert {p.parent.name for p, _ in CASES} >= {"grpcio", "grpcgo", "grpcjs", "h2peers", "links", "upgrade"}


@pytest.mark.parametrize("path,facts", CASES, ids=_ids())
def test_streams_match_facts(path: Path, facts: dict):
    result = model(path)
    ours = {(s.conn, s.stream): s for s in result.streams}
    expected = DIFFERENCES.get(f"{path.parent.name}/{path.name}", {})
    for fs in facts["streams"]:
        key = (fs.get("conn", 0), fs["stream"])
        if fs["stream"] in expected.get("absent", ()):
            assert key not in ours
            continue
        assert key in ours, f"stream {key} missing; have {sorted(ours)}"
        s = ours[key]
        where = f"{path.name} stream {key}"
        if fs["stream"] in expected.get("unknown", ()):
            assert s.method is None and s.headers_unknown, f"{where}: headers after lost HPACK state were guessed"
            continue
        unresolved = fs.get("unresolved_headers", 0)
        if fs["path"] is not None:
            assert s.method == fs["path"], where
        elif unresolved:
            assert s.method is None and s.headers_unknown, f"{where}: a :path tshark could not resolve was guessed"
        assert s.grpc_timeout == fs["grpc_timeout"], where
        if fs["grpc_status"] is not None:
            assert s.grpc_status == fs["grpc_status"], where
        elif unresolved:
            assert s.grpc_status is None, where
        if fs.get("grpc_message"):
            assert s.grpc_message == unquote(fs["grpc_message"]), where
        if fs.get("status") is not None:
            assert s.http_status == fs["status"], where
        rst = fs.get("rst")
        if rst is None:
            assert s.rst_by is None, f"{where}: unexpected RST_STREAM {s.rst_json()}"
        else:
            assert s.rst_json()["by"] == rst["by"], where
            assert s.rst_json()["code"] == rst["code"], where
            assert s.rst_packet == rst["frame"], where
        if "frames" in fs:
            for side, name in ((0, "client"), (1, "server")):
                assert s.frames[side] == sum(fs["frames"][name].values()), f"{where}: {name} frames"
        if "data_frames" in fs:
            assert s.data_frames == (fs["data_frames"]["client"], fs["data_frames"]["server"]), where


@pytest.mark.parametrize("path,facts", CASES, ids=_ids())
def test_goaways_and_close_match_facts(path: Path, facts: dict):
    result = model(path)
    goaways = [(["client", "server"][g.by], g.last_stream_id, g.packet) for c in result.connections for g in c.goaways]
    expected = [(g["by"], g["last_stream_id"], g["frame"]) for g in facts.get("goaway", [])]
    assert sorted(goaways) == sorted(expected)
    main = result.connection(facts["streams"][0].get("conn", 0)) if facts["streams"] else result.connections[0]
    assert main.close == facts["close"]
    if "close_by" in facts and facts["close_by"]:
        assert main.close_by == facts["close_by"]
    for c in facts.get("conns", []):
        conn = result.connection(c["conn"])
        assert conn is not None and conn.close == c["close"]
        assert conn.role_source == ("syn" if c["syn"] else "http2-headers")
        assert conn.client.endswith(f":{c['client_port']}")


def test_grpc_fields_on_real_calls():
    """Status names, percent-decoded messages and trace metadata from real grpcio calls."""
    err = model(ROOT / "grpcio" / "error_status.pcap").streams[0]
    assert (err.grpc_status, status_name(err.grpc_status)) == (5, "NOT_FOUND")
    assert err.grpc_message == "no such key: café" and err.trailers_only
    unary = {s.stream: s for s in model(ROOT / "grpcio" / "unary_ok.pcap").streams}
    assert "traceparent" in unary[3].metadata and "x-request-id" in unary[3].metadata
    assert all(s.grpc and s.messages == (1, 1) and s.end_reason == "complete" for s in unary.values())
    big = model(ROOT / "grpcio" / "large_message.pcap").streams[0]
    assert big.messages == (1, 1) and big.message_bytes[0] > 150_000 and big.message_bytes[1] > 150_000


def test_deadline_from_timeout():
    s = model(ROOT / "grpcio" / "deadline_unary.pcap").streams[0]
    assert s.timeout_ns == 101_000_000 and s.deadline_ns == s.start_ns + 101_000_000
    assert s.grpc_status == 4


def test_upgrade_request_becomes_stream_1():
    result = model(ROOT / "upgrade" / "h2c_upgrade.pcap")
    assert result.connections[0].protocol == "h2c (HTTP/1.1 Upgrade)"
    s1 = next(s for s in result.streams if s.stream == 1)
    assert (s1.http_method, s1.method, s1.http_status) == ("GET", "/", 200)
    assert s1.end_stream_packet[0] is not None  # the HTTP/1.1 request half-closed it


def test_refused_upgrade_is_http1():
    result = model(ROOT / "upgrade" / "nghttpd_no_upgrade.pcap")
    assert result.streams == [] and all(c.protocol.startswith("http/1.1") for c in result.connections)


def test_midstream_capture_roles_and_unknown_headers():
    result = model(ROOT / "grpcio" / "midstream.pcap")
    conn = result.connections[0]
    assert conn.role_source == "http2-headers" and conn.server.endswith(":50051")
    assert "mid-connection" in conn.protocol
    assert any("HPACK state not in the capture" in n for n in conn.notes)


def test_goaway_affected_streams_and_lifecycle_states():
    result = model(ROOT / "h2peers" / "frames_after_goaway.pcap")
    g = result.connections[0].goaways[0]
    assert g.last_stream_id == 1
    states = {s.stream: s.state for s in result.streams}
    assert states[1] == "closed"
    zombie = model(ROOT / "h2peers" / "zombie_server.pcap")
    s1 = next(s for s in zombie.streams if s.stream == 1)
    assert s1.end_reason == "reset" and s1.rst_by == 0
    assert sum(1 for lf in s1.late if lf.side == 1 and lf.type == 0) == 10  # DATA after the cancel


def test_flow_control_stall_is_visible():
    """The server's stream window hit zero at packet 12 and the client's WINDOW_UPDATE came
    200 ms later at packet 14 (captures/h2peers/README.md)."""
    [s] = model(ROOT / "h2peers" / "flow_stall.pcap").streams
    [stall] = s.stalls
    assert (stall.side, stall.stream, stall.start_packet, stall.end_packet) == (1, 1, 12, 14)
    assert 0.19 < (stall.end_ns - stall.start_ns) / 1e9 < 0.25
    assert model(ROOT / "grpcio" / "unary_ok.pcap").streams[0].stalls == []


def test_rtt_from_handshake_else_ping():
    assert model(ROOT / "grpcio" / "unary_ok.pcap").connections[0].rtt_source == "tcp-handshake"
    mid = model(ROOT / "grpcio" / "midstream.pcap").connections[0]
    assert mid.rtt_source == "http2-ping" and 0 < mid.rtt_ns < 10_000_000


@pytest.mark.parametrize("raw", ["", "OK", "deadline exceeded", "a%20b", "%E2%9C%93 done", "bad %ZZ and %E2%9C",
                                 "100%", "%", "caf%C3%A9 / caf\u00e9"])
def test_grpc_message_decodes_as_urllib_unquote(raw):
    from urllib.parse import unquote

    from h2scope.grpc.status import decode_grpc_message

    assert decode_grpc_message(raw) == unquote(raw, errors="replace")
