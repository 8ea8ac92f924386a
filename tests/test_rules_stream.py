"""stream_findings (h2scope/rules/stream.py) calls each stream rule only when the rule's own
first test would not return [] at once. That shortcut must never lose a finding: on every
stored capture, every stream's findings equal those of calling every rule."""

from __future__ import annotations

import copy
from collections import Counter

from hypothesis import given, settings, strategies as st

from conftest import capture_files
from h2scope.analysis import Options, decode
from h2scope.model import LateFrame
from h2scope.rules.stream import STREAM_RULES, stream_findings


def test_stream_findings_equal_every_rule_called_on_every_stored_stream():
    options = Options()
    kinds: Counter = Counter()
    streams = 0
    for path in capture_files():
        analysis = decode(str(path))
        conns = {c.id: c for c in analysis.connections}
        for rec in analysis.streams:
            conn = conns.get(rec.conn)
            everything = [f for rule in STREAM_RULES for f in rule(rec, conn, options)]
            assert [f.to_json() for f in stream_findings(rec, conn, options)] == \
                [f.to_json() for f in everything], (path.name, rec.stream)
            kinds.update(f.kind for f in everything)
            streams += 1
    assert streams > 200
    # Not vacuous: every stream rule found something somewhere in the stored captures.
    assert {"data-after-rst", "deadline-exceeded", "work-after-deadline", "invalid-grpc-timeout",
            "stream-lost"} <= set(kinds), kinds


_REAL = {}


def _real_records():
    """The first stored gRPC stream with its connection: the record the test varies."""
    if not _REAL:
        for path in capture_files():
            analysis = decode(str(path))
            conns = {c.id: c for c in analysis.connections}
            for rec in analysis.streams:
                if rec.grpc and rec.conn in conns:
                    _REAL.setdefault("pair", (rec, conns[rec.conn]))
            if _REAL:
                break
    return _REAL["pair"]


# ts_ns is an offset: the test adds the stream's start.
late_st = st.builds(LateFrame, ts_ns=st.integers(0, 10**9), packet=st.integers(1, 10**4),
                    side=st.integers(0, 1), type=st.sampled_from([0, 1, 3, 8, 9]), length=st.integers(0, 10**5))


@settings(max_examples=300, deadline=None)
@given(rst_by=st.sampled_from([None, 0, 1]), late=st.lists(late_st, max_size=6),
       deadline=st.sampled_from([None, -10**9, 0, 10**6, 10**10]), end=st.sampled_from([None, 0, 10**7, 10**11]),
       timeout=st.sampled_from([(None, None), ("1S", 10**9), ("bad", None), ("5m", 5 * 10**6)]),
       after=st.lists(st.tuples(st.integers(0, 10**11), st.integers(1, 10**4), st.integers(0, 10**5)), max_size=3),
       end_reason=st.sampled_from([None, "complete", "reset", "connection-closed", "goaway", "capture-ended"]),
       status=st.sampled_from([None, 0, 1, 4]), with_conn=st.booleans())
def test_stream_findings_equal_every_rule_called_on_varied_records(rst_by, late, deadline, end, timeout, after,
                                                                   end_reason, status, with_conn):
    real, conn = _real_records()
    rec = copy.copy(real)
    start = rec.start_ns
    rec.rst_by, rec.rst_ns, rec.rst_packet, rec.rst_code = (rst_by, start + 5 * 10**6, 7, 8) if rst_by is not None \
        else (None, None, None, None)
    rec.late = [LateFrame(start + lf.ts_ns, lf.packet, lf.side, lf.type, lf.length) for lf in late]
    rec.grpc_timeout, rec.timeout_ns = timeout
    rec.deadline_ns = None if deadline is None else start + deadline
    rec.end_ns = None if end is None else start + end
    rec.after_deadline = [(start + t, p, n) for t, p, n in after]
    rec.end_reason = end_reason
    rec.grpc_status = status
    rec.goaway_packet = 9 if end_reason == "goaway" else None
    conn = conn if with_conn else None
    options = Options()

    def outcome(run):
        try:
            return [f.to_json() for f in run()]
        except Exception as e:  # an inconsistent combination may trip a rule: then both must
            return type(e).__name__

    everything = outcome(lambda: [f for rule in STREAM_RULES for f in rule(rec, conn, options)])
    assert outcome(lambda: stream_findings(rec, conn, options)) == everything
