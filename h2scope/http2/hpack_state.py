"""HPACK decoding with hpack, as a passive observer.

Two additions to hpack's Decoder:

- **Partial tables.** A capture that starts mid-connection, or lost a header block to a
  gap, does not know the older dynamic-table entries. Entries inserted after that point
  are still at the right indices (HPACK indexes from the newest entry), so the table is
  cleared and marked partial: references beyond what we know decode as UNKNOWN instead of
  failing the whole block or, worse, being guessed from a shifted table.
- **Memoization.** Every block must be decoded in order, but a block that leaves the table
  unchanged decodes the same way every time against the same table. Blocks are memoized
  by their bytes for the table's current generation, which changes whenever the table
  does (and only grows, so the memo starts afresh then). DESIGN.md: 13 distinct blocks
  among 60k in a grpcio load.

Most blocks are decoded by a lean path rather than by hpack: in C where it was built
(_hpack_c.c's Table, which then holds the dynamic table and the memo), else in compiled
Python (HeaderDecoder._decode_fast, the reference). Either leaves anything unusual to
hpack's own Decoder, from the same table, so that errors read as hpack words them.
"""

from __future__ import annotations

import os
import re
from collections import deque
from typing import Any, Final, Optional

from hpack import Decoder, HPACKError
from hpack.table import HeaderTable

from . import huffman
from .hpack_table import _UNKNOWN_B, ObserverTable

MEMO_MAX: Final = 256  # per direction; DESIGN.md saw 13 distinct blocks in a grpcio load, and a
# memo full of blocks that never repeat (W2, W4) held 12.7 MB of header lists on W4-20MB


# A header field as the table holds it. Typed as a variable-length tuple on purpose: mypyc
# keeps a fixed tuple[bytes, bytes] unboxed, and rebuilt a new tuple object every time a table
# entry went into a header list; worse, a Final fixed-length _STATIC was a 61-pair C struct
# boxed whole (62 tuples) at every static-table reference (W2: 380,000 tuples per 2 MB).
Field = tuple[bytes, ...]

_STATIC: Final[tuple[Field, ...]] = HeaderTable.STATIC_TABLE
_NSTATIC: Final = len(_STATIC)
_UNKNOWN_FIELD: Final[Field] = (_UNKNOWN_B, _UNKNOWN_B)


_MEMORY_REPR: Final = re.compile(r":? *<memory at 0x[0-9a-fA-F]+>")


def error_text(e: Exception) -> str:
    """hpack's words for a rejected block, without the memory address some of its messages
    carry (`... too long: <memory at 0x7f...>`): it changes from run to run."""
    text = str(e) if isinstance(e, HPACKError) else repr(e)
    return "HPACK decoding failed: " + _MEMORY_REPR.sub("", text)


def _c_table() -> Any:
    """The C decoding table (_hpack_c.c), unless H2SCOPE_PURE_PYTHON (h2scope.native.ENV) is
    set, it was not built, or huffman.py keeps its Python walk (hpack changed its tables)."""
    if os.environ.get("H2SCOPE_PURE_PYTHON") or huffman.C_WALK is None:
        return None
    try:
        from ._hpack_c import Table, configure
    except ImportError:
        return None
    configure(_STATIC, _UNKNOWN_B, huffman._NEXT, huffman._FLAGS, huffman._SYMBOL, MEMO_MAX)
    return Table


C_TABLE: Final = _c_table()


class _Slow(Exception):
    """Anything unusual in a block: hpack's own decoder decides (and words the error)."""


def huffman_decode(data: bytes) -> bytes:
    out = huffman.decode(data)
    if out is None:
        raise _Slow  # hpack's decoder words the error
    return out


def _text(b: bytes) -> str:
    """Header bytes as text; undecodable UTF-8 is shown, not refused. Strict decoding first:
    compiled, `decode()` is a direct call to CPython's UTF-8 decoder, where naming the error
    handler went through the codec machinery: 450 instructions a string, 27 M of W2-2MB's
    pipeline (478 M), now 17 M. Kept although under 5%, being no more complex."""
    try:
        return b.decode()
    except UnicodeDecodeError:
        return b.decode("utf-8", "replace")


# hpack refuses an integer whose fifth continuation byte is not its last (VARINT_MAX_LENGTH);
# the fast paths leave such a one to hpack. (Up to 63 bits were taken here, so an index hpack
# refuses decoded as an unknown entry on a partial table.)
_INTEGER_LAST_SHIFT: Final = 28


def _integer(block: bytes, i: int, mask: int) -> tuple[int, int]:
    n = block[i] & mask
    i += 1
    if n < mask:
        return n, i
    shift = 0
    while True:
        b = block[i]  # IndexError on a truncated block: hpack words the error
        i += 1
        n += (b & 0x7F) << shift
        if b < 0x80:
            return n, i
        shift += 7
        if shift > _INTEGER_LAST_SHIFT:
            raise _Slow


def _string(block: bytes, i: int) -> tuple[bytes, int]:
    huff = block[i] & 0x80
    length, i = _integer(block, i, 0x7F)
    end = i + length
    if end > len(block):
        raise _Slow
    raw = block[i:end]
    return (huffman_decode(raw) if huff else raw), end


def _dynamic(entries: deque, idx: int, table: ObserverTable) -> Field:
    """Dynamic-table entry `idx` (above the static table), as ObserverTable.get_by_index
    gives it: UNKNOWN past what a partial table knows; otherwise out of range is hpack's
    error to word."""
    i = idx - _NSTATIC - 1
    if i < len(entries):
        return entries[i]
    if table.partial:
        table.unknown_refs += 1
        return _UNKNOWN_FIELD
    raise _Slow


def _literal(block: bytes, i: int, mask: int, entries: deque, table: ObserverTable) -> tuple[Field, int]:
    """A literal field: its name by index (the prefix under `mask`) or as a string, then its value."""
    idx, i = _integer(block, i, mask)
    if idx:
        name = (_STATIC[idx - 1] if idx <= _NSTATIC else _dynamic(entries, idx, table))[0]
    else:
        name, i = _string(block, i)
    value, i = _string(block, i)
    return (name, value), i


class HeaderDecoder:
    """One per direction per connection."""

    def __init__(self, partial: bool = False) -> None:
        self._decoder = Decoder()
        self._table = ObserverTable()
        self._decoder.header_table = self._table
        # A passive observer must not refuse what the endpoints accepted.
        self._decoder.max_header_list_size = 1 << 30
        self._decoder.max_allowed_table_size = 1 << 30
        self._table.partial = partial
        # Where built, the C table is the dynamic table and keeps the memo; self._table is then
        # only loaded from it when hpack must decide a block (table()).
        self._c: Any = C_TABLE(partial) if C_TABLE is not None else None
        # Blocks decoded against the table of generation _memo_generation that left it as it
        # was. The generation only grows, so older blocks could never be answered again.
        self._memo: dict[bytes, list[tuple[str, str]]] = {}
        self._memo_generation = 0
        self._memo_hits = 0
        self._announced_max = 4096  # the decoding side's SETTINGS_HEADER_TABLE_SIZE
        self.blocks = 0
        self.errors = 0

    def _decode_fast(self, block: bytes) -> list[Field]:
        """RFC 7541 §6, for the blocks hpack would accept: what hpack.Decoder.decode(raw=True)
        returns, with the same table changes. hpack's decode cost 5.8 s of 13.8 s profiled on
        W2-20MB (unique metadata per call), much of it per-field debug logging and memoryview
        slicing; this path took the whole run from 5.11 s to 4.21 s (-18%).
        The dynamic table's deque and size are worked here directly, as HeaderTable.add and
        _shrink would (ObserverTable is interpreted: its get_by_index and add were most of
        this function's cost on W2); they are written back when the block is done.
        tests/test_hpack_fast.py holds it equal to hpack on every captured block."""
        table = self._table
        entries: deque = table.dynamic_entries  # of Field; untyped, so entries stay the objects they are
        size: int = table._current_size
        maxsize: int = table._maxsize
        adds = 0
        listed = 0  # the header list's size as hpack counts it: past its limit, hpack refuses
        headers: list[Field] = []
        i = 0
        n = len(block)
        while i < n:
            c = block[i]
            if c & 0x80:  # indexed field
                idx, i = _integer(block, i, 0x7F)
                if not idx:
                    raise _Slow
                indexed = _STATIC[idx - 1] if idx <= _NSTATIC else _dynamic(entries, idx, table)
                listed += len(indexed[0]) + len(indexed[1]) + 32
                headers.append(indexed)
            elif c & 0x40:  # literal with incremental indexing: HeaderTable.add
                field, i = _literal(block, i, 0x3F, entries, table)
                adds += 1
                entry_size = len(field[0]) + len(field[1]) + 32  # RFC 7541 §4.1
                listed += entry_size
                if entry_size > maxsize:
                    entries.clear()
                    size = 0
                else:
                    entries.appendleft(field)
                    size += entry_size
                    while size > maxsize:
                        old: Field = entries.pop()
                        size -= len(old[0]) + len(old[1]) + 32
                headers.append(field)
            elif c & 0x20:  # dynamic table size update: only before the first field
                if headers:
                    raise _Slow
                new_max, i = _integer(block, i, 0x1F)
                if new_max > self._decoder.max_allowed_table_size:
                    raise _Slow
                table._current_size = size
                table.maxsize = new_max  # hpack's setter (and the generation count)
                size = table._current_size
                maxsize = table._maxsize
            else:  # literal without indexing, or never indexed
                field, i = _literal(block, i, 0x0F, entries, table)
                listed += len(field[0]) + len(field[1]) + 32
                headers.append(field)
        if listed > self._decoder.max_header_list_size:
            raise _Slow
        table._current_size = size
        if adds:
            table.generation += adds  # ObserverTable.add counts one per entry
        return headers

    @property
    def partial(self) -> bool:
        return bool(self._c.partial) if self._c is not None else self._table.partial

    @property
    def unknown_refs(self) -> int:
        """Header fields that referred to table entries from before the capture (or a gap)."""
        return int(self._c.unknown_refs) if self._c is not None else self._table.unknown_refs

    @property
    def memo_hits(self) -> int:
        return self._memo_hits + (int(self._c.memo_hits) if self._c is not None else 0)

    @property
    def announced_max(self) -> int:
        return self._announced_max

    @announced_max.setter
    def announced_max(self, value: int) -> None:
        self._announced_max = value
        if self._c is not None:
            self._c.announced_max = value

    def table(self) -> ObserverTable:
        """The dynamic table as hpack's Decoder holds it (loaded from the C table, where built)."""
        table = self._table
        c = self._c
        if c is not None:
            table.dynamic_entries.clear()
            table.dynamic_entries.extend(c.entries())
            table._current_size = c.size
            table._maxsize = c.maxsize
            table.generation = c.generation
            table.partial = c.partial
            table.unknown_refs = c.unknown_refs
        return table

    def lose_state(self) -> None:
        """A header block was lost (gap) or undecodable: older entries are unknown from now on."""
        if self._c is not None:
            self._c.lose_state()
            return
        self._table.dynamic_entries.clear()
        self._table._current_size = 0
        self._table.partial = True
        self._table.generation += 1

    def decode(self, block: bytes) -> tuple[Optional[list[tuple[str, str]]], Optional[str], bool]:
        """(headers, error, had_unknown). On error the table state is lost (marked partial)."""
        self.blocks += 1
        if self._c is not None:
            result: Optional[tuple[Optional[list[tuple[str, str]]], Optional[str], bool]] = self._c.decode(block)
            return result if result is not None else self._decode_by_hpack(block)
        table = self._table
        gen = table.generation
        if gen == self._memo_generation:
            hit = self._memo.get(block)
            if hit is not None:
                self._memo_hits += 1
                return hit, None, False
        before_unknown = table.unknown_refs
        saved = (tuple(table.dynamic_entries), table._current_size, table._maxsize, table.resized)
        try:
            try:
                raw = self._decode_fast(block)
            except (_Slow, IndexError, HPACKError):
                # Put the table back as it was and let hpack decode the block and word any error.
                entries, table._current_size, table._maxsize, table.resized = saved
                table.dynamic_entries.clear()
                table.dynamic_entries.extend(entries)
                table.generation, table.unknown_refs = gen, before_unknown
                raw = self._decoder.decode(block, raw=True)  # type: ignore[assignment]
        except HPACKError as e:
            self.errors += 1
            self.lose_state()
            return None, error_text(e), False
        except (IndexError, ValueError) as e:  # truncated integers and the like
            self.errors += 1
            self.lose_state()
            return None, error_text(e), False
        # Header values are bytes on the wire; undecodable UTF-8 is shown, not refused.
        headers = [(_text(n), _text(v)) for n, v in raw]
        had_unknown = table.unknown_refs != before_unknown
        if table.generation == gen and not had_unknown:
            if gen != self._memo_generation or len(self._memo) >= MEMO_MAX:
                self._memo.clear()
                self._memo_generation = gen
            self._memo[block] = headers
        return self._result(headers, had_unknown, table.maxsize)

    def _decode_by_hpack(self, block: bytes) -> tuple[Optional[list[tuple[str, str]]], Optional[str], bool]:
        """A block the C table left to hpack: decoded from the same table, which is then loaded
        back; hpack words any error."""
        c = self._c
        table = self.table()
        gen = table.generation
        before_unknown = table.unknown_refs
        try:
            raw = self._decoder.decode(block, raw=True)
        except (HPACKError, IndexError, ValueError) as e:
            # What hpack changed before it gave up (a size update, unknown references, entries
            # the state loss then clears) counts, as it does without the C table.
            self._load_from(table)
            self.errors += 1
            self.lose_state()
            return None, error_text(e), False
        self._load_from(table)
        headers = [(_text(n), _text(v)) for n, v in raw]
        had_unknown = table.unknown_refs != before_unknown
        c.decided(block, headers, table.generation == gen and not had_unknown)
        return self._result(headers, had_unknown, table.maxsize)

    def _load_from(self, table: ObserverTable) -> None:
        """The C table takes the state hpack left in `table`."""
        c = self._c
        c.load(list(table.dynamic_entries), table._current_size, table._maxsize)
        c.generation = table.generation
        c.unknown_refs = table.unknown_refs
        table.dynamic_entries.clear()

    def _result(self, headers: list[tuple[str, str]], had_unknown: bool,
                size: int) -> tuple[Optional[list[tuple[str, str]]], Optional[str], bool]:
        if size > self._announced_max:
            return headers, (f"dynamic table size {size} exceeds the announced "
                             f"SETTINGS_HEADER_TABLE_SIZE {self._announced_max}"), had_unknown
        return headers, None, had_unknown
