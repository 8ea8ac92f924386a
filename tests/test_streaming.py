"""analyze streams: reports built as records become final must say exactly what the
in-memory model says, and nothing may be held for the whole capture."""

from __future__ import annotations

import io
import json
import random
import subprocess
import sys
from contextlib import redirect_stdout

import pytest
from hypothesis import given, settings, strategies as st

from conftest import ROOT, capture_files
from h2scope import cli
from h2scope.analysis import Options, analyze, run
from h2scope.http2 import connection
from h2scope.report import text as text_report
from h2scope.report.json_report import JsonReport, analysis_json
from h2scope.results import MemorySink, Selection
from h2scope.rules.cancel_storm import StormDetector

CAPTURES = capture_files()


def _cli_json(*argv) -> dict:
    out = io.StringIO()
    with redirect_stdout(out):
        assert cli.main(["analyze", *argv, "--format", "json", "--fail-on", "never"]) == 0
    return json.loads(out.getvalue())


@pytest.mark.parametrize("path", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_streamed_json_equals_the_in_memory_model(path):
    streamed = _cli_json(str(path))
    a = analyze(str(path))
    memory = json.loads(json.dumps(analysis_json(a, a.findings, a.streams, a.connections)))
    assert streamed["capture"] == memory["capture"]
    assert streamed["summary"] == memory["summary"]
    assert sorted(streamed["connections"], key=lambda c: c["id"]) == memory["connections"]
    assert sorted(streamed["streams"], key=lambda s: (s["conn"], s["stream"])) == memory["streams"]
    # The same findings in the same order: worst first, by kind, then as concluded.
    assert streamed["findings"] == memory["findings"]


def _capture(directory: str, name: str) -> str:
    return str(next(p for p in CAPTURES if p.name == name and p.parent.name == directory))


def test_jsonl_is_the_json_findings_one_per_line():
    path = _capture("h2peers", "protocol_violations.pcap")
    doc = _cli_json(path)
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(["analyze", path, "--format", "jsonl", "--fail-on", "never"])
    lines = out.getvalue().splitlines()
    assert len(lines) == len(doc["findings"]) >= 10
    assert [json.loads(line) for line in lines] == doc["findings"]


def test_filters_apply_while_streaming():
    path = _capture("grpcio_vs_h2", "zombie_server.pcap")
    full = _cli_json(path)
    errors = _cli_json(path, "--min-severity", "error")
    assert errors["findings"] == [f for f in full["findings"] if f["severity"] == "error"]
    assert errors["summary"]["findings"]["warning"] == 0 < full["summary"]["findings"]["warning"]


def test_text_report_caps_what_it_prints_and_counts_the_rest(monkeypatch):
    path = _capture("h2peers", "protocol_violations.pcap")
    doc = _cli_json(path)
    kinds = {}
    for f in doc["findings"]:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    kind, count = max(kinds.items(), key=lambda kv: kv[1])
    assert count > 3
    monkeypatch.setattr(text_report, "MAX_PER_KIND", 3)
    out = io.StringIO()
    with redirect_stdout(out):
        cli.main(["analyze", path, "--fail-on", "never"])
    page = out.getvalue()
    assert f"{kind} ({count})" in page
    assert f"… and {count - 3} more {kind} findings" in page


@pytest.mark.interpreted
def test_closed_streams_leave_memory_after_the_linger(monkeypatch):
    """A connection keeps at most RECENT_CLOSED closed streams; older ones go to the sink
    while the connection is still open, and every stream still arrives exactly once."""
    path = _capture("grpcio_vs_h2", "cancel_storm_100.pcap")
    monkeypatch.setattr(connection, "RECENT_CLOSED", 8)
    held = []  # (closed streams still held, finalized before the connection ended?)
    ending = set()
    finalize, finish = connection.H2Observer._finalize, connection.H2Observer._finish

    def spy_finalize(self, rec):
        held.append((len(self.recent), id(self) not in ending))
        finalize(self, rec)

    def spy_finish(self, ts_ns):
        ending.add(id(self))
        finish(self, ts_ns)

    monkeypatch.setattr(connection.H2Observer, "_finalize", spy_finalize)
    monkeypatch.setattr(connection.H2Observer, "_finish", spy_finish)
    sink = MemorySink()
    run(path, sink, Options())
    streams = {(s.conn, s.stream) for s in sink.streams}
    assert len(streams) == len(sink.streams) == len(analyze(path).streams) > 100
    assert max(n for n, _ in held) <= 8
    assert sum(1 for _, early in held if early) > 90  # released while their connection was open


def _batch_windows(resets: list, count: int, window_ns: int) -> list[list]:
    """The batch definition the streaming detector must equal (h2scope before 2026-11-23)."""
    runs = []
    i, n = 0, len(resets)
    while i < n:
        j = i
        while j + 1 < n and resets[j + 1][0] - resets[i][0] <= window_ns:
            j += 1
        if j - i + 1 >= count:
            while j + 1 < n and resets[j + 1][0] - resets[j][0] <= window_ns:
                j += 1
            runs.append(resets[i:j + 1])
            i = j + 1
        else:
            i += 1
    return runs


@settings(max_examples=300, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=400), max_size=120), st.integers(2, 12), st.integers(1, 60))
def test_storm_detector_equals_the_batch_rule(gaps, count, window):
    t = 0
    resets = []
    for i, g in enumerate(gaps):
        t += g
        resets.append((t, i + 1, 2 * i + 1, i % 2, 8, i % 3))
    got = []
    det = StormDetector(count, window, got.append)
    for r in resets:
        det.add(r)
    det.flush()
    want = _batch_windows(resets, count, window)
    assert [(r.n, r.first_ns, r.last_ns, r.packets) for r in got] == \
        [(len(w), w[0][0], w[-1][0], [x[1] for x in w[:20]]) for w in want]


def test_json_report_writes_streams_as_they_come():
    out = io.StringIO()
    rep = JsonReport(Selection(), out=out)
    rng = random.Random(7)
    for i in range(2000):
        rep.add_stream((json.dumps({"stream": 2 * i + 1, "pad": rng.random()})[1:], False), 0)
    assert 1500 < out.getvalue().count('"stream"') <= 2000  # on its way out, not held
    for i in range(5):
        rep.connections.add({"id": i})
    rep.write_json({"path": "x"})
    doc = json.loads(out.getvalue())
    assert [s["stream"] for s in doc["streams"]] == [2 * i + 1 for i in range(2000)]
    assert all(s["conn"] == 0 for s in doc["streams"]) and len(doc["connections"]) == 5
    assert doc["summary"]["streams"] == 2000 and doc["capture"] == {"path": "x"}


@pytest.mark.parametrize("name", ["zombie_server.pcap", "multi_channel.pcap"])
def test_indented_json_for_a_terminal_is_the_same_document(name):
    path = str(next(p for p in CAPTURES if p.name == name))
    docs = []
    for indent in (False, True):
        out = io.StringIO()
        rep = JsonReport(Selection(), out=out, indent=indent)
        r = run(path, rep, Options())
        rep.write_json(r.capture.to_json())
        docs.append(out.getvalue())
    assert "\n    {\n      \"conn\": " in docs[1]
    assert json.loads(docs[0]) == json.loads(docs[1])


def test_hand_built_stream_json_is_json_dumps_byte_for_byte():
    n = 0
    for path in CAPTURES:
        for rec in analyze(str(path)).streams:
            for headers in (False, True):
                obj = rec.to_json(headers=headers)
                del obj["conn"]
                want = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
                assert "{" + rec.compact_json_after_conn(headers) == want
                n += 1
    assert n > 500


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=30), st.text(max_size=30), st.dictionaries(st.text(max_size=8), st.text(max_size=12), max_size=3),
       st.one_of(st.none(), st.integers(0, 2**40)),
       st.one_of(st.none(), st.tuples(st.sampled_from([0, 1]), st.integers(0, 2**32 - 1),
                                      st.one_of(st.none(), st.integers(0, 2**62)),
                                      st.one_of(st.none(), st.integers(1, 10**6)))))
def test_hand_built_stream_json_handles_any_text(method, message, metadata, end_ns, reset):
    from h2scope.model import StreamRecord

    rec = StreamRecord(conn=3, stream=7, start_ns=1_795_443_061_048_817_123, start_packet=5)
    rec.method, rec.grpc_message, rec.metadata, rec.end_ns = method, message, metadata, end_ns
    rec.grpc, rec.grpc_status = True, 4
    if reset is not None:  # who, any code (named or not), when (or unknown), which packet
        rec.rst_by, rec.rst_code, rec.rst_ns, rec.rst_packet = reset
    rec.c2s.message_sizes = [1, 2, 3]
    rec.s2c.messages_known, rec.s2c.frames, rec.c2s.data_bytes = False, 7, 12345
    obj = rec.to_json(headers=False)
    del obj["conn"]
    assert "{" + rec.compact_json_after_conn() == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))



@settings(max_examples=600, deadline=None)
@given(st.fixed_dictionaries({
    "state": st.sampled_from(["closed", "open", "half-closed (client done)"]), "partial": st.booleans(),
    "http_method": st.sampled_from([None, "POST", "GET"]), "authority": st.sampled_from([None, "a:1", "b:2", "ü"]),
    "content_type": st.sampled_from([None, "application/grpc", "text/plain"]),
    "grpc_encoding": st.sampled_from([None, "gzip"]), "grpc_timeout": st.sampled_from([None, "1S", "5m", "x"]),
    "timeout_ns": st.sampled_from([None, 10**9, 5 * 10**6, 1]), "http_status": st.sampled_from([None, 200, 404]),
    "grpc_status": st.sampled_from([None, 0, 4, 14, 99]), "grpc_message": st.sampled_from([None, "", "x\n\"y\""]),
    "trailers_only": st.booleans(), "status_after_reset": st.booleans(), "grpc": st.booleans(),
    "end_reason": st.sampled_from([None, "complete", "reset", "goaway", "capture-ended"]),
    "rst_count": st.integers(0, 2), "late_dropped": st.integers(0, 2), "headers_unknown": st.booleans()}),
    st.sampled_from([None, (0, 8), (1, 2)]))
def test_hand_built_stream_json_reuses_runs_only_for_equal_values(fields, reset):
    """The request and response runs of a stream's JSON come from caches keyed by what they
    encode: many records with few distinct values, each checked against json.dumps."""
    from h2scope.model import StreamRecord

    rec = StreamRecord(conn=1, stream=3, start_ns=1_795_443_061_048_817_000, start_packet=2)
    for name, value in fields.items():
        setattr(rec, name, value)
    if reset is not None:
        rec.rst_by, rec.rst_code, rec.rst_ns, rec.rst_packet = reset[0], reset[1], rec.start_ns + 10**6, 4
    obj = rec.to_json(headers=False)
    del obj["conn"]
    assert "{" + rec.compact_json_after_conn() == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))

def test_method_table_durations_stay_bounded_and_close(monkeypatch):
    """Past the exact budget a method's durations become 1% buckets: p50/p99 within 1%."""
    from h2scope.model import StreamRecord
    from h2scope.report import tables

    monkeypatch.setattr(tables, "EXACT_PER_METHOD", 500)
    rng = random.Random(3)
    exact, bounded = tables.MethodStats(), tables.MethodStats()
    monkeypatch.setattr(tables, "EXACT_PER_METHOD", 10**9)
    for i in range(3000):
        rec = StreamRecord(conn=0, stream=2 * i + 1, start_ns=0, start_packet=1)
        rec.method, rec.end_ns = "/a.B/C", int(rng.lognormvariate(16, 1.2))
        exact.add(rec, False, 0)
        monkeypatch.setattr(tables, "EXACT_PER_METHOD", 500)
        bounded.add(rec, False, 0)
        monkeypatch.setattr(tables, "EXACT_PER_METHOD", 10**9)
    m = bounded.methods["/a.B/C"]
    assert m.durations is None and sum(m.hist.values()) == 3000 and len(m.hist) < 800
    want, got = exact.frame().row(0, named=True), bounded.frame().row(0, named=True)
    for col in ("p50_ms", "p99_ms"):
        assert abs(got[col] - want[col]) <= 0.01 * want[col], (col, got[col], want[col])
    assert got["calls"] == want["calls"] == 3000


@settings(max_examples=300, deadline=None)
@given(st.lists(st.floats(min_value=0, max_value=1e7, allow_nan=False), min_size=1, max_size=300),
       st.one_of(st.sampled_from([0.0, 0.5, 0.99, 1.0]), st.floats(min_value=0, max_value=1)))
def test_method_quantiles_are_polars_nearest(values, q):
    """The terminal report's p50/p99 are computed without polars: the same as polars computes them."""
    import polars as pl

    from h2scope.report.tables import _nearest

    assert _nearest(sorted(values), q) == pl.Series(values, dtype=pl.Float64).quantile(q, "nearest")


def test_method_rows_are_what_polars_computes_over_the_streams():
    """The per-method rows (built without polars) against a polars group-by over the same
    streams, on every stored capture: calls, order, p50 and p99."""
    import polars as pl

    from h2scope.report import tables

    compared = 0
    for path in capture_files():
        streams = [s for s in analyze(str(path)).streams if s.method is not None]
        if not streams:
            continue
        stats = tables.MethodStats()
        for s in streams:
            stats.add(s, False, 0)
        got = [(r["method"], r["calls"], r["p50_ms"], r["p99_ms"]) for r in stats.rows()]
        df = pl.DataFrame({"method": [s.method for s in streams],
                           "ms": [(s.end_ns - s.start_ns) / 1e6 if s.end_ns is not None else None for s in streams]},
                          schema={"method": pl.String, "ms": pl.Float64})
        want = (df.group_by("method")
                .agg(pl.len().alias("calls"), pl.col("ms").drop_nulls().quantile(0.5, "nearest").alias("p50"),
                     pl.col("ms").drop_nulls().quantile(0.99, "nearest").alias("p99"))
                .sort(["calls", "method"], descending=[True, False]))
        assert got == [tuple(r) for r in want.iter_rows()], path
        compared += len(got)
    assert compared > 20


def test_the_text_report_does_not_import_polars():
    path = str(ROOT / "captures/grpcgo/deadline_unary.pcap")
    code = ("import sys; from h2scope.cli import main; main(['analyze', sys.argv[1]]); "
            "print('polars' in sys.modules, file=sys.stderr)")
    p = subprocess.run([sys.executable, "-c", code, path], capture_output=True, text=True, timeout=120)
    assert "Methods" in p.stdout and p.stderr.strip() == "False", p.stderr


def test_decoding_leaves_no_reference_cycles():
    """The cycle collector runs rarely (cli._tune_gc): what decoding a capture leaves behind
    must be freed by reference counting. Every stored capture, decoded with the collector
    off, leaves no garbage that only the collector could free."""
    import gc

    gc.collect()
    gc.disable()
    try:
        gc.set_debug(gc.DEBUG_SAVEALL)
        streams = 0
        for path in CAPTURES:
            run(str(path), JsonReport(Selection(), out=io.StringIO()), Options())
            sink = MemorySink()
            run(str(path), sink, Options())
            streams += len(sink.streams)
        assert streams > 200
        found = gc.collect()
        kinds = sorted({type(o).__qualname__ for o in gc.garbage})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert found == 0, kinds
