"""The hand-written HPACK decoding path (h2scope/http2/hpack_state.py) against hpack's own
Decoder: the same headers and the same dynamic table after every block, on every header
block of every stored capture and on generated and random blocks."""

from __future__ import annotations

import copy

import pytest
from hpack import Encoder, HPACKError
from hpack.huffman_table import decode_huffman
from hypothesis import example, given, settings, strategies as st

from conftest import capture_files
from h2scope.analysis import decode
from h2scope.http2 import hpack_state, huffman
from h2scope.http2.hpack_state import HeaderDecoder, error_text


def _library_view(dec: HeaderDecoder, block: bytes):
    """What hpack itself makes of `block` from `dec`'s current state (on a copy), as text."""
    lib = copy.deepcopy(dec._decoder)
    lib.header_table = copy.deepcopy(dec.table())
    try:
        raw = lib.decode(block, raw=True)
    except (HPACKError, IndexError, ValueError):
        return None, _table_view(lib.header_table)
    return _texts(raw), _table_view(lib.header_table)


def _texts(raw):
    return [(bytes(n).decode("utf-8", "replace"), bytes(v).decode("utf-8", "replace")) for n, v in raw]


def _table_view(table):
    """Everything of a table a later block depends on: entries, their total size, the limit."""
    return list(table.dynamic_entries), table._current_size, table._maxsize


def _fast_views(dec: HeaderDecoder, block: bytes) -> list:
    """What each fast path (the C table where built, and the compiled-Python reference) makes
    of `block` from `dec`'s state, on copies: ("fallback", None) where it leaves hpack to decide."""
    views = []
    mine = copy.deepcopy(dec)
    mine.table()  # the reference decodes from the ObserverTable: load it from the C table
    try:
        got = mine._decode_fast(block)
        views.append((_texts(got), _table_view(mine._table)))
    except (hpack_state._Slow, IndexError, HPACKError):
        views.append(("fallback", None))
    c = dec._c.copy() if dec._c is not None else _c_table_from(dec)
    if c is not None:
        got = c.decode(block)
        views.append(("fallback", None) if got is None else (got[0], (c.entries(), c.size, c.maxsize)))
    return views


def _c_table_from(dec: HeaderDecoder):
    """A C table in `dec`'s state, where the extension was built: the `interpreted` tests run
    with H2SCOPE_PURE_PYTHON, which keeps hpack_state off it, but the C table is held to
    hpack on every captured block all the same."""
    try:
        from h2scope.http2 import _hpack_c
    except ImportError:
        return None
    _hpack_c.configure(hpack_state._STATIC, hpack_state._UNKNOWN_B, huffman._NEXT, huffman._FLAGS, huffman._SYMBOL,
                       hpack_state.MEMO_MAX)
    table = dec.table()
    c = _hpack_c.Table(partial=table.partial)
    c.load(list(table.dynamic_entries), table._current_size, table._maxsize)
    c.unknown_refs = table.unknown_refs
    return c


def _c_built() -> bool:
    try:
        from h2scope.http2 import _hpack_c  # noqa: F401
    except ImportError:
        return False
    return True


def _decoder(use_c: bool, partial: bool = False) -> HeaderDecoder:
    """A HeaderDecoder on the C table (skipped where it was not built) or on the reference path."""
    dec = HeaderDecoder(partial=partial)
    if use_c and dec._c is None:  # H2SCOPE_PURE_PYTHON: the C table all the same, where built
        dec._c = _c_table_from(dec)
        if dec._c is None:
            pytest.skip("built without a C compiler (CI builds it: .ci/run checks --version)")
    if not use_c:
        dec._c = None
    return dec


both_paths = pytest.mark.parametrize("use_c", [True, False], ids=["c-table", "reference"])


@pytest.mark.interpreted
@pytest.mark.parametrize("path", capture_files(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_every_captured_block_decodes_as_hpack_decodes_it(path, monkeypatch):
    seen = [0, 0]
    original = HeaderDecoder.decode

    def checked(self, block):
        headers, table = _library_view(self, block)
        for k, (fast, fast_table) in enumerate(_fast_views(self, block)):
            if fast != "fallback":
                assert headers is not None, "the fast path accepted a block hpack rejects"
                assert fast == headers and fast_table == table
                seen[k] += 1
        return original(self, block)

    monkeypatch.setattr(HeaderDecoder, "decode", checked)
    decode(str(path))
    if path.parent.name in ("grpcio", "grpcgo", "grpcjs") and "tls" not in path.name:
        assert seen[0] > 0 and (seen[1] > 0 or not _c_built())


headers_st = st.lists(
    st.tuples(st.sampled_from([":path", ":method", "content-type", "grpc-timeout", "traceparent", "x-request-id",
                               "user-agent", "te", "grpc-status", "x-custom"]),
              st.text(min_size=0, max_size=40)),
    min_size=1, max_size=12)


@both_paths
@settings(max_examples=200, deadline=None)
@given(st.lists(headers_st, min_size=1, max_size=8), st.booleans(), st.sampled_from([0, 64, 256, 4096]),
       st.booleans())
def test_generated_blocks_match_hpack(use_c, lists, huffman, table_size, sensitive):
    enc = Encoder()
    if table_size != 4096:
        enc.header_table_size = table_size
    ours = _decoder(use_c)
    lib = copy.deepcopy(ours._decoder)
    for headers in lists:
        if sensitive:
            from hpack import NeverIndexedHeaderTuple
            headers = [NeverIndexedHeaderTuple(n, v) if n == "x-custom" else (n, v) for n, v in headers]
        block = enc.encode(headers, huffman=huffman)
        got, err, unknown = ours.decode(block)
        want = [(n.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for n, v in lib.decode(block, raw=True)]
        assert err is None and not unknown and got == want
        assert _table_view(ours.table()) == _table_view(lib.header_table)


def _hpack_result(lib, block: bytes):
    """(headers as text, None) as hpack decodes `block`, or (None, its error in h2scope's words)."""
    try:
        return [(n.decode("utf-8", "replace"), v.decode("utf-8", "replace"))
                for n, v in lib.decode(block, raw=True)], None
    except (HPACKError, IndexError, ValueError) as e:
        return None, error_text(e)


@both_paths
@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=64))
@example(b"\xff\x80\x80\x80\x80\x80\x00")  # hpack's message for it carries a memory address
@example(b"?\x80 ")  # a table size update to 4127: hpack accepts it, h2scope flags it
def test_random_bytes_fall_back_to_hpack_wording(use_c, block):
    ours = _decoder(use_c)
    lib = copy.deepcopy(ours._decoder)  # configured as h2scope configures it
    got, err, _ = ours.decode(block)
    want, want_err = _hpack_result(lib, block)
    if want_err is None and err is not None:
        # hpack (set up to accept any size) took the block; h2scope still reports a table grown
        # past the decoding side's announced SETTINGS_HEADER_TABLE_SIZE, as a violation.
        assert err.startswith("dynamic table size ") and "exceeds the announced" in err, err
        err = None
    assert (got, err) == (want, want_err)
    assert err is None or "<memory" not in err


def _hpack_huffman(data: bytes):
    try:
        return decode_huffman(data)
    except HPACKError:
        return None


# decode() is the C walk where it was built (CI builds it: .ci/run checks --version), else
# decode_walk; both are held to hpack.
_WALKS = [huffman.decode, huffman.decode_walk]


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=80))
def test_huffman_matches_hpack_on_random_bytes(data):
    want = _hpack_huffman(data)
    assert [walk(data) for walk in _WALKS] == [want, want]


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=200))
def test_huffman_decodes_what_hpack_encodes(raw):
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    encoded = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH).encode(raw)
    assert [walk(encoded) for walk in _WALKS] == [raw, raw] == [_hpack_huffman(encoded)] * 2


def test_huffman_walks_agree_on_every_truncation_and_bit_flip_of_encoded_strings():
    from hpack.huffman import HuffmanEncoder
    from hpack.huffman_constants import REQUEST_CODES, REQUEST_CODES_LENGTH

    enc = HuffmanEncoder(REQUEST_CODES, REQUEST_CODES_LENGTH)
    compared = 0
    for raw in (b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", b"grpc-python/1.85.1 grpc-c/45.0.0",
                bytes(range(256)), b"\xff" * 40):
        encoded = enc.encode(raw)
        variants = [encoded[:n] for n in range(len(encoded) + 1)]
        variants += [encoded[:i] + bytes([encoded[i] ^ (1 << b)]) + encoded[i + 1:]
                     for i in range(len(encoded)) for b in range(8)]
        for v in variants:
            want = _hpack_huffman(v)
            assert [walk(v) for walk in _WALKS] == [want, want], v
            compared += 1
    assert compared > 2000


def test_the_c_walk_refuses_what_is_not_its_tables():
    if huffman.C_WALK is None:
        pytest.skip("built without a C compiler (CI builds it: .ci/run checks --version)")
    from h2scope.http2._hpack_c import walk

    tables = (huffman._NEXT, huffman._FLAGS, huffman._SYMBOL)
    with pytest.raises(TypeError):
        walk(b"\x1f", *tables[:2])
    with pytest.raises(TypeError):
        walk("text", *tables)
    with pytest.raises(ValueError):
        walk(b"\x1f", tables[0][:100], *tables[1:])


@both_paths
def test_a_block_that_adds_to_the_table_is_decoded_again_every_time(use_c):
    # One literal with incremental indexing. Sent again, the same bytes add the entry again:
    # the table changed, so the memo must not answer for them.
    block = Encoder().encode([("x-one", "v")])
    ours = _decoder(use_c)
    lib = copy.deepcopy(ours._decoder)
    for _ in range(3):
        generation = ours.table().generation
        got, err, unknown = ours.decode(block)
        lib.decode(block, raw=True)
        assert (got, err, unknown) == ([("x-one", "v")], None, False)
        assert ours.table().generation != generation
        assert _table_view(ours.table()) == _table_view(lib.header_table)
    assert len(ours.table().dynamic_entries) == 3 and ours.memo_hits == 0


@both_paths
@settings(max_examples=300, deadline=None)
@given(st.lists(headers_st, min_size=1, max_size=4), headers_st, st.binary(min_size=1, max_size=12),
       st.sampled_from([64, 128, 4096]), st.sampled_from([b"", b"\x3f\x21", b"\x20", b"\x3f\xe1\x1f"]))
@example([[("x-custom", "a" * 30)]], [("x-custom", "b" * 200)], b"\xff", 64, b"")  # an entry larger than the table
def test_a_block_the_fast_path_gives_up_on_midway_leaves_the_table_as_hpack_would(
        use_c, lists, last, tail, table_size, size_update):
    """A block whose first fields add to (and evict from) the dynamic table, and whose tail
    the fast path cannot take: its changes are rolled back and hpack decides, from the same
    table hpack itself would have."""
    enc = Encoder()
    enc.header_table_size = table_size
    ours = _decoder(use_c)
    lib = copy.deepcopy(ours._decoder)
    for headers in lists:
        block = enc.encode(headers, huffman=False)
        ours.decode(block)
        lib.decode(block, raw=True)
    block = size_update + enc.encode(last, huffman=False) + tail
    got, err, _ = ours.decode(block)
    want, want_err = _hpack_result(lib, block)
    if want_err is None and err is not None and "exceeds the announced" in err:
        err = None  # h2scope's own violation for a table grown past 4096 (see above)
    assert (got, err) == (want, want_err)
    if want_err is None:
        assert _table_view(ours.table()) == _table_view(lib.header_table)
    else:
        assert ours.table().dynamic_entries == type(ours._table.dynamic_entries)() and ours.partial



@pytest.mark.parametrize("raw,text", [(b"grpc-go/1.59", "grpc-go/1.59"), ("f\u00fcr \u2713".encode(), "f\u00fcr \u2713"),
                                      (b"bad \xff\xfe end", "bad \ufffd\ufffd end"), (b"\xc3", "\ufffd"), (b"", "")])
@both_paths
def test_header_bytes_are_shown_as_text_even_when_not_utf8(use_c, raw, text):
    """Undecodable UTF-8 in a header is shown (U+FFFD), never refused, and names and values
    decode the same whether the fast path or hpack took the block."""
    enc = Encoder()
    block = enc.encode([(b"x-bytes", raw), (raw or b"x", b"v")], huffman=False)
    got, err, _ = _decoder(use_c).decode(block)
    assert err is None and got == [("x-bytes", text), (text or "x", "v")]
    assert hpack_state._text(raw) == raw.decode("utf-8", "replace") == text


_BLOCK_PIECES = [b"\xbe", b"\xc0", b"\xff\x10", b"\x7e\x01v", b"\x40\x01n\x01v", b"\x0f\x30\x01v", b"\x3f\xe1\x1f",
                 b"\x20", b"\x82", b"\x86", b"\x44\x83\x62\x90\x5f", b"\x80", b"\x00\x01a\x81\xff", b"\x01"]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.lists(st.sampled_from(_BLOCK_PIECES) | st.binary(max_size=6), max_size=5).map(b"".join),
                min_size=1, max_size=8),
       st.booleans())
@example([b"\xbe\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x7f"], True)  # an unknown entry, then hpack's error
def test_the_c_table_and_the_reference_keep_the_same_state_block_after_block(blocks, partial):
    """Whatever the blocks (valid, unknown references on a partial table, errors, size
    updates), the C table and the compiled-Python path answer the same and count the same:
    unknown references, memo hits, errors, and the table left behind."""
    c, ref = _decoder(True, partial), _decoder(False, partial)
    for block in blocks * 2:  # twice: the second time, unchanged tables answer from the memo
        assert c.decode(block) == ref.decode(block), block
        assert (c.unknown_refs, c.memo_hits, c.errors, c.blocks, c.partial) == \
            (ref.unknown_refs, ref.memo_hits, ref.errors, ref.blocks, ref.partial)
        assert _table_view(c.table()) == _table_view(ref.table())
        assert c.table().generation == ref.table().generation


@both_paths
def test_a_header_list_past_hpacks_limit_is_refused_as_hpack_refuses_it(use_c):
    """A block of 1,100 references to a 1 MB entry lists 1.1 GB of headers (as hpack counts
    them, past the 1 GiB limit h2scope gives it): hpack refuses it, and so does h2scope, in
    hpack's words, whichever path decodes it. A list under the limit is decoded."""
    enc = Encoder()
    enc.header_table_size = 2_000_000
    big = enc.encode([("x", "v" * (1 << 20))], huffman=False)  # a size update, then the entry
    for refs, refused in ((1000, False), (1100, True)):
        ours = _decoder(use_c)
        ours.announced_max = 2_000_000
        lib = copy.deepcopy(ours._decoder)
        assert ours.decode(big) == ([("x", "v" * (1 << 20))], None, False)
        lib.decode(big, raw=True)
        block = b"\xbe" * refs
        got, err, _ = ours.decode(block)
        want, want_err = _hpack_result(lib, block)
        assert (want is None) == refused
        assert (got, err) == (want, want_err)


def test_the_c_table_gives_back_what_one_large_block_made_it_hold():
    """300,000 entries added (and evicted) by one block: the table keeps one; its arrays
    shrink back instead of keeping room for all of them for the rest of the connection."""
    ours, ref = _decoder(True), _decoder(False)
    block = b"\x3f\x01" + b"\x40\x00\x00" * 300_000  # a table of 32 bytes, then 300k empty fields
    assert ours.decode(block) == ref.decode(block)
    assert len(ours._c) == 1 and ours._c.capacity <= 16
    assert _table_view(ours.table()) == _table_view(ref.table())
