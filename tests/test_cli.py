"""The command line as users and scripts meet it: exit codes, JSON contract, stdin, colour."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CAP = ROOT / "captures"
H2SCOPE = [sys.executable, "-c", "from h2scope.cli import console; console()"]  # what the h2scope script runs


def run(*args, stdin=None, env=None):
    e = dict(os.environ)
    e.pop("NO_COLOR", None)
    e.update(env or {})
    return subprocess.run(H2SCOPE + [str(a) for a in args], capture_output=True, text=stdin is None,
                          input=stdin, env=e, timeout=120)


def test_json_contract_fields():
    p = run("analyze", CAP / "h2peers/zombie_server.pcap", "--format", "json")
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert {"path", "packets", "first_time", "last_time", "link_types"} <= doc["capture"].keys()
    conn = doc["connections"][0]
    assert {"id", "client", "server", "start", "end", "close", "rtt", "streams", "goaways"} <= conn.keys()
    assert conn["close"] in ("fin", "rst", "open")
    stream = doc["streams"][0]
    for key in ("conn", "stream", "method", "grpc", "start", "end", "grpc_timeout", "timeout", "deadline",
                "http_status", "grpc_status", "grpc_message", "end_reason", "rst", "frames", "data_bytes",
                "messages"):
        assert key in stream, key
    assert set(stream["frames"]) == {"c2s", "s2c"}
    f = next(f for f in doc["findings"] if f["kind"] == "data-after-rst")
    assert {"kind", "severity", "conn", "stream", "time", "summary", "packets"} <= f.keys()
    assert f["severity"] in ("error", "warning", "info") and isinstance(f["time"], float)
    rst = next(s for s in doc["streams"] if s["stream"] == 1)["rst"]
    assert rst["by"] == "client" and rst["code"] == "CANCEL" and isinstance(rst["packet"], int)


def test_frames_jsonl_contract():
    p = run("frames", CAP / "h2peers/frames_after_goaway.pcap", "--format", "jsonl")
    frames = [json.loads(line) for line in p.stdout.splitlines()]
    for r in frames:
        assert {"packet", "time", "conn", "dir", "stream", "type", "flags", "length"} <= r.keys()
        assert r["dir"] in ("c2s", "s2c")
    goaway = next(r for r in frames if r["type"] == "GOAWAY")
    assert goaway["error_code"] == "NO_ERROR" and goaway["last_stream_id"] == 1
    rst = next(r for r in frames if r["type"] == "RST_STREAM")
    assert rst["error_code"] == "REFUSED_STREAM"
    hdr = next(r for r in frames if r["type"] == "HEADERS" and r["dir"] == "c2s")
    assert [":path", "/demo.Demo/ServerStream"] in hdr["headers"] and "end_stream" in hdr
    only = run("frames", CAP / "h2peers/frames_after_goaway.pcap", "--format", "jsonl", "--stream", "3")
    assert {json.loads(line)["stream"] for line in only.stdout.splitlines()} == {3}


def test_stdin_and_gzip_by_content():
    data = (CAP / "links/plain_name.cap").read_bytes()
    p = run("analyze", "-", "--format", "json", stdin=data)
    assert p.returncode == 0, p.stderr
    doc = json.loads(p.stdout)
    assert doc["capture"]["compressed"] is True and doc["capture"]["format"] == "pcapng"
    assert any(f["kind"] == "deadline-exceeded" for f in doc["findings"])


@pytest.mark.parametrize("fail_on,code", [("never", 0), ("error", 1), ("warning", 1), ("info", 1)])
def test_fail_on_exit_codes(fail_on, code):
    assert run("analyze", CAP / "h2peers/zombie_server.pcap", "--fail-on", fail_on).returncode == code


def test_fail_on_clean_capture_is_zero():
    assert run("analyze", CAP / "grpcio/unary_ok.pcap", "--fail-on", "info").returncode == 0


def test_usage_and_input_errors_exit_2_with_one_line():
    for args in (["analyze"], ["analyze", CAP / "nope.pcap"], ["analyze", CAP], ["explain", "bogus"],
                 ["analyze", CAP / "grpcio/unary_ok.pcap", "--method", "("]):
        p = run(*args)
        assert p.returncode == 2, args
        assert "Traceback" not in p.stderr
    p = run("analyze", CAP / "grpcio/README.md")
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and p.stderr.startswith("h2scope: error:")


def test_no_color_and_non_tty_output_are_plain():
    p = run("analyze", CAP / "h2peers/zombie_server.pcap")
    assert "\x1b[" not in p.stdout and "data-after-rst" in p.stdout
    p = run("analyze", CAP / "h2peers/zombie_server.pcap", env={"NO_COLOR": "1"})
    assert "\x1b[" not in p.stdout


def test_text_report_names_packets_and_connections():
    out = run("analyze", CAP / "h2peers/zombie_server.pcap", env={"COLUMNS": "1000"}).stdout
    assert "127.0.0.1:50071" in out and "closed by client FIN" in out
    assert re.search(r"server sent 11 frames \(10 DATA, [\d.]+ K?B\) for \d+ ms after the client's "
                     r"RST_STREAM\(CANCEL\) at packet \d+", out)
    assert "Methods" in out and "/demo.Demo/ServerStream" in out


def test_report_fits_80_columns():
    for rel in ("h2peers/zombie_server.pcap", "h2peers/cancel_storm.pcap", "grpcio/midstream.pcap",
                "h2peers/protocol_violations.pcap"):
        out = run("analyze", CAP / rel, env={"COLUMNS": "80"}).stdout
        assert max(len(line) for line in out.splitlines()) <= 80, rel
        assert not any(line.endswith(" ") for line in out.splitlines()), rel


def test_filters():
    doc = json.loads(run("analyze", CAP / "h2peers/zombie_server.pcap", "--format", "json",
                         "--method", "Unary$").stdout)
    assert {s["method"] for s in doc["streams"]} == {"/demo.Demo/Unary"} and doc["findings"] == []
    doc = json.loads(run("analyze", CAP / "grpcio/no_deadline.pcap", "--format", "json",
                         "--min-severity", "warning").stdout)
    assert doc["findings"] == []
    lines = run("analyze", CAP / "h2peers/conn_lost.pcap", "--format", "jsonl").stdout.splitlines()
    assert len(lines) == 3 and all(json.loads(line)["kind"] == "stream-lost" for line in lines)


def test_explain_every_kind():
    from h2scope.rules import KINDS

    for kind in KINDS:
        p = run("explain", kind)
        assert p.returncode == 0 and "Why it matters" in p.stdout and "Usual fixes" in p.stdout


def test_help_teaches():
    p = run("--help")
    assert p.returncode == 0 and "examples:" in p.stdout and "analyze" in p.stdout
    p = run("analyze", "--help")
    assert "--fail-on" in p.stdout and "exit codes" in p.stdout


def test_grace_option_changes_the_verdict():
    strict = json.loads(run("analyze", CAP / "h2peers/zombie_server.pcap", "--format", "json").stdout)
    loose = json.loads(run("analyze", CAP / "h2peers/zombie_server.pcap", "--format", "json", "--grace", "10s").stdout)
    assert any(f["kind"] == "data-after-rst" for f in strict["findings"])
    assert not any(f["kind"] == "data-after-rst" for f in loose["findings"])


def test_json_headers_only_on_request():
    plain = json.loads(run("analyze", CAP / "grpcio/unary_ok.pcap", "--format", "json").stdout)
    full = json.loads(run("analyze", CAP / "grpcio/unary_ok.pcap", "--format", "json", "--headers").stdout)
    assert "request_headers" not in plain["streams"][0]
    assert [":path", "/demo.Demo/Unary"] in full["streams"][0]["request_headers"]
    assert full["streams"][0]["trailers"] is not None


def test_json_names_service_and_rpc_and_hpack_memo():
    doc = json.loads(run("analyze", CAP / "grpcio/unary_ok.pcap", "--format", "json").stdout)
    s = doc["streams"][0]
    assert (s["service"], s["rpc"], s["resets"]) == ("demo.Demo", "Unary", 0)
    hp = doc["connections"][0]["hpack"]
    assert hp["blocks"] >= 9 and 0 < hp["memo_hits"] < hp["blocks"]


@pytest.mark.parametrize("argv", [
    ["analyze"],  # rich writes the text report, and exits 1 on a closed pipe by default
    ["analyze", "--format", "json"],
    ["analyze", "--format", "jsonl"],
    ["frames"],
])
def test_a_reader_that_goes_away_is_not_an_error(argv):
    # `h2scope analyze dump.pcap | head`: the pipe is closed before h2scope writes a byte,
    # so every write fails. Exit 1 would tell a script "findings"; a traceback is noise.
    p = subprocess.Popen(H2SCOPE + [argv[0], str(CAP / "grpcio_vs_h2/zombie_server.pcap"), *argv[1:]],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 0, err
    assert err == ""


@pytest.mark.parametrize("argv", [
    ["analyze", str(CAP / "grpcio_vs_h2/zombie_server.pcap"), "--format", "json"],  # fails while writing
    ["explain"],  # small enough to fail only when flushed at exit
])
def test_a_full_disk_under_the_output_is_one_line_and_exit_2(argv):
    with open("/dev/full", "w") as full:  # Linux: every write to it fails with ENOSPC
        p = subprocess.run(H2SCOPE + argv, stdout=full, stderr=subprocess.PIPE, text=True, timeout=120)
    assert p.returncode == 2
    assert p.stderr == "h2scope: error: No space left on device\n"
