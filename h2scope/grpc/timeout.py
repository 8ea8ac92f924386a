"""The grpc-timeout header: 1 to 8 ASCII digits and one unit (gRPC PROTOCOL-HTTP2.md)."""

from __future__ import annotations

import re
from typing import Final, Optional

_GRAMMAR: Final = re.compile(r"([0-9]{1,8})([HMSmun])\Z")
_UNIT_SECONDS: Final = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}
_UNIT_NS: Final = {"H": 3_600_000_000_000, "M": 60_000_000_000, "S": 1_000_000_000, "m": 1_000_000, "u": 1_000, "n": 1}


def parse_timeout_ns(value: str) -> Optional[int]:
    """Nanoseconds for a valid grpc-timeout value, None for anything outside the grammar."""
    m = _GRAMMAR.match(value)
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_NS[m.group(2)]


def parse_timeout(value: str) -> Optional[float]:
    """Seconds for a valid grpc-timeout value, None otherwise."""
    m = _GRAMMAR.match(value)
    if m is None:
        return None
    return int(m.group(1)) * _UNIT_SECONDS[m.group(2)]
