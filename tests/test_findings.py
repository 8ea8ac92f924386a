"""Findings on real captures: what each scenario must report, and the false alarms it must not.

Real stacks produce "in flight" frames on every deadline: grpcio's trailers cross the
client's cancel, grpc-go drains queued DATA for ~1 ms after a cancel. Those must not be
findings; the h2-built misbehaving peers must be.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from h2scope.analysis import Options, analyze

ROOT = Path(__file__).resolve().parent.parent / "captures"
_cache: dict = {}


def findings(rel: str, **opts):
    key = (rel, tuple(sorted(opts.items())))
    if key not in _cache:
        _cache[key] = analyze(str(ROOT / rel), Options(**opts))
    return _cache[key].findings


def kinds(rel: str, **opts) -> list[str]:
    return sorted(f.kind for f in findings(rel, **opts))


def test_zombie_server_is_data_after_rst_with_evidence():
    [f] = [f for f in findings("h2peers/zombie_server.pcap") if f.kind == "data-after-rst"]
    assert (f.severity, f.conn, f.stream, f.method) == ("error", 0, 1, "/demo.Demo/ServerStream")
    d = f.details
    assert d["by"] == "server" and d["after"] == "peer-rst" and d["rst_code"] == "CANCEL"
    assert d["data_frames"] == 10 and d["bytes"] > 0
    assert 0.25 < d["zombie_window"] < 0.4  # the peer kept going for ~290 ms
    assert f.packets[0] == d["rst_packet"] and len(f.packets) > 10
    assert "RST_STREAM(CANCEL)" in f.summary and "packet" in f.summary
    # The second stream on that connection completed normally: nothing about it.
    assert all(f.stream != 3 for f in findings("h2peers/zombie_server.pcap"))


def test_zombie_frames_inside_the_grace_window_are_not_counted():
    wide = [f for f in findings("h2peers/zombie_server.pcap", grace_s=10.0) if f.kind == "data-after-rst"]
    assert wide == []


def test_data_after_own_rst_needs_no_grace():
    [f] = [f for f in findings("h2peers/data_after_own_rst.pcap", grace_s=10.0) if f.kind == "data-after-rst"]
    assert f.details["after"] == "own-rst" and f.details["by"] == "server" and f.details["data_frames"] == 5
    assert f.details["rst_code"] == "INTERNAL_ERROR"


@pytest.mark.parametrize("rel,ended_by", [
    ("grpcio/deadline_unary.pcap", {"server-deadline-exceeded", "client-cancel"}),
    ("grpcio/deadline_stream.pcap", {"client-cancel", "server-deadline-exceeded"}),
    ("grpcgo/deadline_unary.pcap", {"client-cancel"}),
    ("grpcjs/deadline_unary.pcap", {"client-cancel", "server-deadline-exceeded"}),
    ("links/nano.pcap", {"client-cancel", "server-deadline-exceeded"}),
])
def test_real_deadlines_are_reported_without_crying_wolf(rel, ended_by):
    fs = findings(rel)
    [f] = [f for f in fs if f.kind == "deadline-exceeded"]
    assert f.details["ended_by"] in ended_by
    assert f.details["timeout"] in (0.1, 0.101, 0.25, 0.251) or 0.09 < f.details["timeout"] < 0.11
    assert -0.005 < f.details["overrun"] < 0.02
    # Trailers and resets crossing on the wire are normal, not zombies or late work.
    assert not {"data-after-rst", "work-after-deadline", "protocol-violation"} & {f.kind for f in fs}


def test_grpc_go_queue_drain_after_cancel_is_not_a_zombie():
    assert "data-after-rst" not in kinds("grpcgo/cancel_stream.pcap")


def test_work_after_deadline_on_the_zombie():
    [f] = [f for f in findings("h2peers/zombie_server.pcap") if f.kind == "work-after-deadline"]
    assert f.details["frames"] >= 1 and f.details["bytes"] > 0 and f.details["duration"] > 0.05


def test_graceful_goaway_is_not_a_finding():
    for rel in ("grpcgo/graceful_stop.pcap", "grpcio/graceful_stop.pcap"):
        assert "frames-after-goaway" not in kinds(rel), rel


def test_frames_after_goaway():
    [f] = [f for f in findings("h2peers/frames_after_goaway.pcap") if f.kind == "frames-after-goaway"]
    assert f.details["last_stream_id"] == 1
    assert f.details["new_streams"] == [3, 5] and f.details["streams"] == [3, 5]
    assert f.details["goaway_packet"] in f.packets


def test_stream_lost_on_connection_close():
    lost = [f for f in findings("h2peers/conn_lost.pcap") if f.kind == "stream-lost"]
    assert sorted(f.stream for f in lost) == [1, 3, 5]
    assert all(f.details["close"] == "rst" and "RST" in f.summary for f in lost)
    [go] = [f for f in findings("grpcgo/hard_stop.pcap") if f.kind == "stream-lost"]
    assert go.details["close"] == "fin" and "FIN from the server" in go.summary


def test_cancel_storm_and_its_threshold():
    [f] = [f for f in findings("h2peers/cancel_storm.pcap") if f.kind == "cancel-storm"]
    assert f.details["resets"] == 30 and f.details["window"] < 0.1 and f.details["scope"] == "connection"
    assert "cancel-storm" not in kinds("h2peers/cancel_storm.pcap", storm_count=31)
    assert "cancel-storm" not in kinds("h2peers/cancel_storm.pcap", storm_window_s=0.001)


def test_invalid_grpc_timeouts_keep_the_raw_value():
    bad = [f for f in findings("h2peers/invalid_timeout.pcap") if f.kind == "invalid-grpc-timeout"]
    assert sorted(f.details["value"] for f in bad) == sorted(["100", "1.5S", "123456789m", "10x"])


def test_deadline_missing_is_summarised_per_method():
    [f] = [f for f in findings("grpcio/no_deadline.pcap") if f.kind == "deadline-missing"]
    assert f.severity == "info" and f.details["calls"] == 2 and f.method == "/demo.Demo/Unary"
    assert "deadline-missing" not in kinds("grpcio/unary_ok.pcap")


def test_protocol_violations_from_a_misbehaving_client():
    vs = [f for f in findings("h2peers/protocol_violations.pcap") if f.kind == "protocol-violation"]
    text = " | ".join(f.summary for f in vs)
    for expected in ("DATA on idle stream 7", "WINDOW_UPDATE", "PING frame must have 8 byte length",
                     "interleaved in the header block of stream 3", "CONTINUATION without a preceding",
                     "HEADERS on idle stream 4", "stream ids must increase", "HPACK decoding failed"):
        assert expected in text, expected
    assert all(f.details["by"] == "client" and f.packets for f in vs)


@pytest.mark.parametrize("rel", [
    "grpcio/unary_ok.pcap", "grpcio/streaming_ok.pcap", "grpcio/large_message.pcap", "grpcio/error_status.pcap",
    "grpcgo/unary_ok.pcap", "grpcgo/server_stream_ok.pcap", "grpcjs/unary_ok.pcap", "grpcjs/bidi_ok.pcap",
    "grpcjs/error_status.pcap", "upgrade/h2c_upgrade.pcap", "h2peers/continuation.pcap", "grpcio/midstream.pcap",
])
def test_clean_captures_have_no_warnings_or_errors(rel):
    assert [f.summary for f in findings(rel) if f.severity != "info"] == []


def test_every_finding_points_at_packets_and_sorts_worst_first():
    fs = findings("h2peers/zombie_server.pcap")
    ranks = [f.rank for f in fs]
    assert ranks == sorted(ranks, reverse=True)
    for rel in ("h2peers/conn_lost.pcap", "h2peers/cancel_storm.pcap", "grpcio/deadline_stream.pcap"):
        assert all(f.packets and all(isinstance(p, int) and p > 0 for p in f.packets) for f in findings(rel))


def test_zombie_against_a_real_grpcio_client():
    fs = findings("grpcio_vs_h2/zombie_server.pcap")
    [z] = [f for f in fs if f.kind == "data-after-rst"]
    assert z.details["by"] == "server" and z.details["rst_code"] == "CANCEL"
    assert z.details["data_frames"] >= 15 and z.details["zombie_window"] > 0.3
    assert z.details["frames_in_grace"] >= 1  # the frame already in flight is not counted as a zombie
    assert {"deadline-exceeded", "work-after-deadline"} <= {f.kind for f in fs}


def test_the_well_behaved_twin_is_not_a_zombie():
    """Same server, same client, but it stops at the reset: one DATA frame crosses the RST
    on the wire, and that is in flight, not a zombie."""
    from h2scope.analysis import analyze as run

    result = run(str(ROOT / "grpcio_vs_h2/well_behaved_twin.pcap"))
    s = next(s for s in result.streams if s.rst_by is not None)
    assert [lf.type for lf in s.late if lf.side == 1] == [0]  # exactly one server DATA after the reset
    assert not {"data-after-rst", "work-after-deadline"} & {f.kind for f in result.findings}


@pytest.mark.parametrize("rel", ["grpcio/deadline_stream.pcap", "grpcgo/deadline_stream.pcap",
                                 "grpcjs/deadline_stream.pcap", "grpcgo/deadline_unary.pcap",
                                 "grpcjs/deadline_unary.pcap", "grpcio/deadline_unary.pcap",
                                 "grpcio/cancel.pcap", "grpcjs/cancel_stream.pcap", "grpcgo/cancel_stream.pcap"])
def test_real_stacks_deadline_and_cancel_handling_is_not_a_zombie(rel):
    assert "data-after-rst" not in kinds(rel)


def test_server_sending_above_its_own_goaway():
    fs = findings("grpcio_vs_h2/goaway_keeps_sending.pcap")
    [g] = [f for f in fs if f.kind == "frames-after-goaway"]
    assert g.details["last_stream_id"] == 1 and g.details["streams"] == [3, 5] and g.details["new_streams"] == []
    assert "above its own last-stream-id" in g.summary


def test_cancel_storm_of_a_hundred_real_calls():
    [f] = [f for f in findings("grpcio_vs_h2/cancel_storm_100.pcap") if f.kind == "cancel-storm"]
    assert f.details["resets"] >= 100 and f.details["window"] < 0.05
