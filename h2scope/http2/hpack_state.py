"""HPACK decoding with hpack, as a passive observer.

Two additions to hpack's Decoder:

- **Partial tables.** A capture that starts mid-connection, or lost a header block to a
  gap, does not know the older dynamic-table entries. Entries inserted after that point
  are still at the right indices (HPACK indexes from the newest entry), so the table is
  cleared and marked partial: references beyond what we know decode as UNKNOWN instead of
  failing the whole block or, worse, being guessed from a shifted table.
- **Memoization.** Every block must be decoded in order, but a block that leaves the table
  unchanged decodes the same way every time against the same table. Blocks are memoized
  on (table generation, block bytes); the generation changes whenever the table does.
  DESIGN.md: 13 distinct blocks among 60k in a grpcio load.
"""

from __future__ import annotations

from typing import Optional

from hpack import Decoder, HPACKError
from hpack.table import HeaderTable

UNKNOWN = "<unknown: HPACK state not in the capture>"
_UNKNOWN_B = UNKNOWN.encode()
MEMO_MAX = 256  # per direction; DESIGN.md saw 13 distinct blocks in a grpcio load, and a
# memo full of blocks that never repeat (W2, W4) held 12.7 MB of header lists on W4-20MB


class ObserverTable(HeaderTable):
    """A HeaderTable that counts its changes and can resolve unknown entries."""

    def __init__(self) -> None:
        super().__init__()
        self.generation = 0
        self.partial = False
        self.unknown_refs = 0

    def get_by_index(self, index: int) -> tuple[bytes, bytes]:
        try:
            return super().get_by_index(index)
        except HPACKError:
            if self.partial and index > HeaderTable.STATIC_TABLE_LENGTH:
                self.unknown_refs += 1
                return (_UNKNOWN_B, _UNKNOWN_B)
            raise

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @HeaderTable.maxsize.setter  # type: ignore[attr-defined]
    def maxsize(self, newmax: int) -> None:
        self.generation += 1
        HeaderTable.maxsize.fset(self, newmax)  # type: ignore[attr-defined]


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
        self._memo: dict[tuple[int, bytes], list[tuple[str, str]]] = {}
        self.blocks = 0
        self.memo_hits = 0
        self.errors = 0
        self.announced_max = 4096  # the decoding side's SETTINGS_HEADER_TABLE_SIZE

    @property
    def partial(self) -> bool:
        return self._table.partial

    def lose_state(self) -> None:
        """A header block was lost (gap) or undecodable: older entries are unknown from now on."""
        self._table.dynamic_entries.clear()
        self._table._current_size = 0
        self._table.partial = True
        self._table.generation += 1

    def decode(self, block: bytes) -> tuple[Optional[list[tuple[str, str]]], Optional[str], bool]:
        """(headers, error, had_unknown). On error the table state is lost (marked partial)."""
        self.blocks += 1
        table = self._table
        key = (table.generation, block)
        hit = self._memo.get(key)
        if hit is not None:
            self.memo_hits += 1
            return hit, None, False
        before_unknown = table.unknown_refs
        gen = table.generation
        try:
            raw = self._decoder.decode(block, raw=True)
        except HPACKError as e:
            self.errors += 1
            self.lose_state()
            return None, f"HPACK decoding failed: {e}", False
        except (IndexError, ValueError) as e:  # truncated integers and the like
            self.errors += 1
            self.lose_state()
            return None, f"HPACK decoding failed: {e!r}", False
        # Header values are bytes on the wire; undecodable UTF-8 is shown, not refused.
        headers = [(n.decode("utf-8", "replace"), v.decode("utf-8", "replace")) for n, v in raw]
        had_unknown = table.unknown_refs != before_unknown
        if table.generation == gen and not had_unknown:
            if len(self._memo) >= MEMO_MAX:
                self._memo.clear()
            self._memo[key] = headers
        size = table.maxsize
        if size > self.announced_max:
            return headers, (f"dynamic table size {size} exceeds the announced "
                             f"SETTINGS_HEADER_TABLE_SIZE {self.announced_max}"), had_unknown
        return headers, None, had_unknown
