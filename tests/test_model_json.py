"""The stream JSON's hand-written encoders against what json.dumps and float repr print."""

import json
import math
import random

from hypothesis import given, settings
from hypothesis import strategies as st

from h2scope.model import _SEC_FAST_MAX, _SEC_FAST_MIN, _jsec, _jsec_exact, _jstr, _method_json


def _want(ns):
    return "null" if ns is None else json.dumps(ns / 1e9)


def _c_jsec():
    """The C writer's times (h2scope/_jsonline_c.c), where it was built; else the Python one
    twice (CI builds it: .ci/run checks --version)."""
    try:
        from h2scope._jsonline_c import jsec
    except ImportError:
        return _jsec
    return lambda ns: jsec(ns) if ns is None or -2**63 <= ns < 2**63 else _jsec(ns)


C_JSEC = _c_jsec()


def test_seconds_match_repr_across_a_million_timestamps():
    rng = random.Random(20261123)
    edges = [None, 0, 1, 999, 1000, 99_999, 100_000, 100_001, 500, 499_999_999, 1_000_000_000,
             _SEC_FAST_MIN - 1, _SEC_FAST_MIN, _SEC_FAST_MAX - 1, _SEC_FAST_MAX, _SEC_FAST_MAX + 1,
             -1, -1_000_000_000, 10**22, 1_000_000_000_000_000_000, 999_999_999_999_999_999]
    values = list(edges)
    for _ in range(250_000):
        values.append(rng.randrange(1_500_000_000 * 10**9, 2_100_000_000 * 10**9))  # epochs
        values.append(rng.randrange(1_795_000_000 * 10**9, 1_795_000_001 * 10**9, 1000))  # microsecond clocks
        values.append(rng.randrange(0, 100 * 10**9))  # timeouts and durations
        values.append(rng.randrange(0, 10**6) * 10**rng.randrange(0, 13))  # round numbers
    for ns in values:
        assert _jsec(ns) == _want(ns) == C_JSEC(ns), ns


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.integers(-10**20, 10**20), st.integers(0, 10**12), st.none()))
def test_seconds_match_repr_for_any_integer(ns):
    assert _jsec(ns) == _want(ns) == C_JSEC(ns)


@settings(max_examples=3000, deadline=None)
@given(st.one_of(st.floats(min_value=1e-4, max_value=2.0**34),
                 st.integers(2**15 * 10**7, 2**33 * 10**7).map(lambda n: n / 1e7),
                 st.integers(2**15 * 10**6, 2**33 * 10**6).map(lambda n: n / 1e6)))
def test_exact_seconds_match_repr_for_any_float_in_range(x):
    # Floats with 6, 7 or more fractional digits, powers of two and halfway cases alike.
    assert _jsec_exact(x) == repr(x)


def test_exact_seconds_cover_seven_digit_epochs_and_their_neighbours():
    rng = random.Random(7)
    for _ in range(100_000):
        x = rng.randrange(1_700_000_000 * 10**9, 1_800_000_000 * 10**9) / 1e9
        for y in (x, math.nextafter(x, 0), math.nextafter(x, 4e9), float(int(x)), x / 1024):
            assert _jsec_exact(y) == repr(y), y


@settings(max_examples=500, deadline=None)
@given(st.text(max_size=40))
def test_strings_match_json_dumps_cached_or_not(text):
    assert _jstr(text) == json.dumps(text, ensure_ascii=False)
    assert _jstr(text) == json.dumps(text, ensure_ascii=False)  # second time from the cache


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.none(), st.text(alphabet="/ab.é\"", max_size=12)))
def test_method_service_rpc_match_the_properties(method):
    from h2scope.model import StreamRecord

    rec = StreamRecord(0, 1, 0, 1)
    rec.method = method
    want = json.dumps({"method": rec.method, "service": rec.service, "rpc": rec.rpc},
                      ensure_ascii=False, separators=(",", ":"))[1:-1]
    assert _method_json(method) == want
    assert _method_json(method) == want


def test_the_string_caches_stay_small_whatever_the_strings():
    from h2scope import model

    big = "x" * 1000
    for i in range(model._JSTR_CACHE_MAX + 100):
        assert _jstr(f"{big}{i}") == json.dumps(f"{big}{i}")
        assert _jstr(str(i)) == json.dumps(str(i))
        _method_json(f"/svc/{big}{i}")
    assert len(model._JSTR_CACHE) <= model._JSTR_CACHE_MAX and len(model._METHOD_JSON) <= model._JSTR_CACHE_MAX
    assert all(len(k) <= model._JSTR_CACHED_LEN for k in list(model._JSTR_CACHE) + list(model._METHOD_JSON))
    assert model._JSTR_CACHE  # short strings are cached


def _c_line():
    try:
        from h2scope._jsonline_c import line
    except ImportError:
        return None
    return line


C_LINE = _c_line()


def _needs_c():
    if C_LINE is None:
        import pytest

        pytest.skip("built without a C compiler (CI builds it: .ci/run checks --version)")


def test_the_c_line_is_the_python_line_on_every_stored_stream():
    """Every stream of every stored capture, with and without headers: the C writer and the
    compiled-Python reference write the same line, byte for byte."""
    _needs_c()
    from conftest import capture_files
    from h2scope.analysis import analyze

    n = 0
    for path in capture_files():
        for rec in analyze(str(path)).streams:
            for headers in (False, True):
                assert C_LINE(rec._line_fields(headers)) == rec._line_py(headers), (path.name, rec.stream)
                n += 1
    assert n > 500


@settings(max_examples=500, deadline=None)
@given(st.text(), st.text(), st.dictionaries(st.text(max_size=8), st.text(max_size=40), max_size=4),
       st.lists(st.integers(0, 2**40), max_size=5), st.one_of(st.none(), st.integers(-2**63, 2**63 - 1)),
       st.integers(0, 2**63 - 1), st.booleans())
def test_the_c_line_is_the_python_line_on_any_record(method, message, metadata, sizes, end_ns, packet, known):
    """Control characters, quotes, backslashes and any Unicode in the text; any count and time."""
    _needs_c()
    from h2scope.model import StreamRecord

    rec = StreamRecord(conn=1, stream=2**31 - 1, start_ns=1_795_443_061_048_817_123, start_packet=packet)
    rec.method, rec.grpc_message, rec.metadata, rec.end_ns, rec.end_packet = method, message, metadata, end_ns, packet
    rec.c2s.message_sizes, rec.s2c.messages_known, rec.s2c.messages = sizes, known, 3
    rec.deadline_ns = end_ns
    for headers in (False, True):
        assert C_LINE(rec._line_fields(headers)) == rec._line_py(headers)


def test_the_c_line_leaves_to_python_what_it_cannot_write():
    """A lone surrogate (not UTF-8) or an int past 63 bits: the C writer declines, and the
    line is still json.dumps's."""
    _needs_c()
    from h2scope.model import StreamRecord

    rec = StreamRecord(conn=1, stream=1, start_ns=10**9, start_packet=1)
    rec.metadata = {"x-bad": "a\ud800b"}
    assert C_LINE(rec._line_fields(False)) is None
    rec.metadata = {}
    rec.c2s.data_bytes = 2**70
    assert C_LINE(rec._line_fields(False)) is None
    obj = rec.to_json(headers=False)
    del obj["conn"]
    assert "{" + rec.compact_json_after_conn() == json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
