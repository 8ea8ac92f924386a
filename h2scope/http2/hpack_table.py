"""hpack's HeaderTable, extended for a passive observer (see hpack_state.py).

Kept out of the compiled modules (h2scope/native.py): it subclasses hpack's pure-Python
class and overrides a property setter, which mypyc's native classes cannot do.
"""

from __future__ import annotations

from hpack import HPACKError
from hpack.table import HeaderTable

UNKNOWN = "<unknown: HPACK state not in the capture>"
_UNKNOWN_B = UNKNOWN.encode()


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
