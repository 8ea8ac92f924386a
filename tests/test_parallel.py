"""--jobs: worker processes must produce exactly what one process produces."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, capture_files
from h2scope.analysis import Options, run
from h2scope.errors import CaptureError
from h2scope.parallel import auto_jobs, run_parallel
from h2scope.report.json_report import JsonReport
from h2scope.report.text import TextReport
from h2scope.results import MemorySink, Selection

CAPTURES = capture_files()


def _json(path: str, jobs: int, options: Options = None) -> str:
    out = io.StringIO()
    rep = JsonReport(Selection(), out=out)
    options = options or Options()
    r = run(path, rep, options) if jobs == 1 else run_parallel(path, rep, options, jobs)
    cap = r.capture.to_json()
    cap["frames"] = r.frames
    rep.write_json(cap)
    return out.getvalue()


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_two_workers_write_the_same_document_as_one_process(path):
    one = _json(str(path), 1)
    assert json.loads(one)["capture"]["packets"] > 0
    assert _json(str(path), 2) == one  # byte for byte: same ids, same order, same findings


def test_a_real_capture_spreads_over_both_workers():
    """captures/grpcio/multi_channel.pcap: 8 grpcio connections, client ports alternating in
    parity, a cancel storm that only the host scope sees (2 resets per connection)."""
    path = str(next(p for p in CAPTURES if p.name == "multi_channel.pcap"))
    one = _json(path, 1)
    doc = json.loads(one)
    parities = [(int(c["client"].rsplit(":", 1)[1]) + int(c["server"].rsplit(":", 1)[1])) % 2
                for c in doc["connections"]]
    assert len(parities) == 8 and sorted(set(parities)) == [0, 1]
    storms = [f for f in doc["findings"] if f["kind"] == "cancel-storm"]
    assert [f["scope"] for f in storms] == ["host"] and len(storms[0]["connections"]) == 8
    assert _json(path, 2) == one


def _generated(tmp_path, workload: str) -> str:
    """A benchmark workload at 1 MB: 16 connections from one client host (both workers
    get some), resets and cancel storms on several connections at once."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    return str(gen.write(workload, 1, tmp_path / f"{workload}.pcap"))


@pytest.mark.parametrize("workload", ["W1", "W4"])
def test_workers_split_connections_and_still_agree(tmp_path, workload):
    path = _generated(tmp_path, workload)
    one = _json(path, 1)
    doc = json.loads(one)
    parities = {(int(c["client"].rsplit(":", 1)[1]) + int(c["server"].rsplit(":", 1)[1])) % 2
                for c in doc["connections"]}
    assert parities == {0, 1} and len(doc["connections"]) >= 4  # both workers really decode
    kinds = {f["kind"] for f in doc["findings"]}
    if workload == "W4":
        assert "cancel-storm" in kinds  # cross-connection state merged from both workers
    assert _json(path, 2) == one
    assert _json(path, 3) == one


def test_text_report_and_memory_model_match_too():
    path = str(next(p for p in CAPTURES if p.name == "cancel_storm_100.pcap"))
    pages = []
    for jobs in (1, 2):
        rep = TextReport(Selection())
        r = run(path, rep, Options()) if jobs == 1 else run_parallel(path, rep, Options(), jobs)
        from rich.console import Console

        out = io.StringIO()
        rep.render(Console(file=out, width=100, no_color=True), r.capture, r.frames)
        pages.append(out.getvalue())
    assert pages[0] == pages[1]
    one, two = MemorySink(), MemorySink()
    run(path, one, Options())
    run_parallel(path, two, Options(), 2)
    assert [(s.conn, s.stream, s.end_packet) for s in one.sorted().streams] == \
        [(s.conn, s.stream, s.end_packet) for s in two.sorted().streams]
    assert [f.to_json() for f in one.findings] == [f.to_json() for f in two.findings]


def test_worker_errors_are_the_same_one_line_errors():
    with pytest.raises(CaptureError) as e:
        run_parallel(str(ROOT / "README.md"), JsonReport(Selection()), Options(), 2)
    assert "not a pcap or pcapng capture" in str(e.value)


def test_cli_jobs_flag_and_auto_choice(tmp_path):
    path = str(next(p for p in CAPTURES if p.name == "zombie_server.pcap"))
    assert auto_jobs(path) == 1  # small file: one process
    assert auto_jobs("-") == 1
    outs = [subprocess.run([str(Path(sys.executable).with_name("h2scope")), "analyze", path, "--format", "json", "--jobs", j],
                           capture_output=True, text=True, check=True).stdout for j in ("1", "2")]
    assert outs[0] == outs[1]


def test_damaged_captures_agree_too(tmp_path):
    """Truncated and partly garbage captures: workers skip and warn exactly as one process."""
    src = next(p for p in CAPTURES if p.name == "multi_channel.pcap").read_bytes()
    variants = {
        "cut.pcap": src[: len(src) * 2 // 3 + 7],  # ends inside a record
        "garbage.pcap": src[: len(src) // 2] + bytes(range(256)) * 8 + src[len(src) // 2:],
    }
    import gzip

    variants["gz.pcap.gz"] = gzip.compress(src)
    for name, data in variants.items():
        path = tmp_path / name
        path.write_bytes(data)
        one = _json(str(path), 1)
        assert json.loads(one)["capture"]["packets"] > 0
        assert _json(str(path), 2) == one, name
