from typing import Any, Optional

_Item = tuple[int, int, Optional[bytes], int, Optional[bytes], int, int, int, int, int, bytes]

def scan(buf: Any, pos: int, little: bool, ns_per_unit: int, limit: int, linktype: int, number: int,
         parts: int, part: int, /) -> tuple[int, int, int, int, int, list[_Item]]: ...
def scan_ng(buf: Any, pos: int, little: bool, interfaces: list, number: int, parts: int, part: int,
            /) -> tuple[int, int, int, int, int, list[_Item]]: ...
