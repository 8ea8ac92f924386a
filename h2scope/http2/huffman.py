"""HPACK's Huffman code (RFC 7541 Appendix B), decoded with hpack's own state machine.

hpack walks its 256-state, nibble-at-a-time table in interpreted Python: on W2-20MB (a
unique traceparent and x-request-id per call, so every block is decoded afresh) that was
1.98 s of 8.1 s profiled, the largest single cost of the run. This is the same walk over
the same table, in a module mypyc compiles (h2scope/native.py), with the table split into
three flat byte strings. tests/test_hpack_fast.py holds it equal to hpack on every
captured string and on random bytes.

Where the package was built with a C compiler, the walk itself runs in C (_hpack_c.c,
over these same tables): W2-2MB's pipeline 598 M -> 520 M instructions (callgrind).
decode_walk below stays the reference, and what runs without the extension or with
H2SCOPE_PURE_PYTHON set.
"""

from __future__ import annotations

import os
from typing import Callable, Final, Optional

from hpack.huffman_table import HUFFMAN_COMPLETE, HUFFMAN_EMIT_SYMBOL, HUFFMAN_FAIL, HUFFMAN_TABLE

# Every state number, flag set and symbol fits a byte; bytes index to ints without boxing.
_NEXT: Final[bytes] = bytes(entry[0] for entry in HUFFMAN_TABLE)
_FLAGS: Final[bytes] = bytes(entry[1] for entry in HUFFMAN_TABLE)
_SYMBOL: Final[bytes] = bytes(entry[2] for entry in HUFFMAN_TABLE)
_COMPLETE: Final = HUFFMAN_COMPLETE
_EMIT: Final = HUFFMAN_EMIT_SYMBOL
_FAIL: Final = HUFFMAN_FAIL

Walk = Callable[[bytes, bytes, bytes, bytes], Optional[bytes]]


def _c_walk() -> Optional[Walk]:
    """The C walk, unless H2SCOPE_PURE_PYTHON (h2scope.native.ENV) is set or it was not built."""
    if os.environ.get("H2SCOPE_PURE_PYTHON"):
        return None
    try:
        from ._hpack_c import walk
    except ImportError:
        return None
    # The C file names hpack's flag values; a hpack that changed them keeps the Python walk.
    if (_COMPLETE, _EMIT, _FAIL) != (1, 2, 4) or len(_NEXT) != 4096:
        return None
    return walk


C_WALK: Final = _c_walk()


def decode(data: bytes) -> Optional[bytes]:
    """The decoded string, or None where hpack raises (an invalid or incomplete code)."""
    if C_WALK is not None:
        return C_WALK(data, _NEXT, _FLAGS, _SYMBOL)
    return decode_walk(data)


def decode_walk(data: bytes) -> Optional[bytes]:
    """decode() in compiled Python: the reference for the C walk."""
    if not data:
        return b""
    out: list[int] = []  # not a bytearray: compiled, bytearray.append is a generic method call
    state = 0
    flags = 0
    for byte in data:  # high nibble, then low: unrolled as hpack does, no tuple per byte
        i = state * 16 + (byte >> 4)
        flags = _FLAGS[i]
        if flags & _FAIL:
            return None
        if flags & _EMIT:
            out.append(_SYMBOL[i])
        state = _NEXT[i]
        i = state * 16 + (byte & 0x0F)
        flags = _FLAGS[i]
        if flags & _FAIL:
            return None
        if flags & _EMIT:
            out.append(_SYMBOL[i])
        state = _NEXT[i]
    if not flags & _COMPLETE:
        return None
    return bytes(out)
