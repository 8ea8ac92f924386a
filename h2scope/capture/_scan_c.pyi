from typing import Optional

def scan(buf: bytes, pos: int, little: bool, ns_per_unit: int, limit: int, linktype: int, number: int,
         parts: int, part: int, /) -> tuple[int, int, int, int, int,
                                            list[tuple[int, int, Optional[bytes], int, Optional[bytes], int, int,
                                                       int, int, int, bytes]]]: ...
