"""HTTP/2 names and numbers (RFC 9113)."""

from typing import Final

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# Final literals, one per line: mypyc compiles them in as numbers instead of looking each
# up in the module's dict at every use (a tuple unpack of range() would not be constant).
DATA: Final = 0
HEADERS: Final = 1
PRIORITY: Final = 2
RST_STREAM: Final = 3
SETTINGS: Final = 4
PUSH_PROMISE: Final = 5
PING: Final = 6
GOAWAY: Final = 7
WINDOW_UPDATE: Final = 8
CONTINUATION: Final = 9

FRAME_TYPES: Final[tuple[str, ...]] = (
    "DATA", "HEADERS", "PRIORITY", "RST_STREAM", "SETTINGS", "PUSH_PROMISE", "PING", "GOAWAY",
    "WINDOW_UPDATE", "CONTINUATION",
)

FLAG_END_STREAM: Final = 0x01
FLAG_ACK: Final = 0x01
FLAG_END_HEADERS: Final = 0x04
FLAG_PADDED: Final = 0x08
FLAG_PRIORITY: Final = 0x20

# Flags defined per type; other bits are unused and must be ignored by receivers.
DEFINED_FLAGS: Final = {
    DATA: FLAG_END_STREAM | FLAG_PADDED,
    HEADERS: FLAG_END_STREAM | FLAG_END_HEADERS | FLAG_PADDED | FLAG_PRIORITY,
    PRIORITY: 0,
    RST_STREAM: 0,
    SETTINGS: FLAG_ACK,
    PUSH_PROMISE: FLAG_END_HEADERS | FLAG_PADDED,
    PING: FLAG_ACK,
    GOAWAY: 0,
    WINDOW_UPDATE: 0,
    CONTINUATION: FLAG_END_HEADERS,
}

FLAG_NAMES: Final = {
    DATA: ((FLAG_END_STREAM, "END_STREAM"), (FLAG_PADDED, "PADDED")),
    HEADERS: ((FLAG_END_STREAM, "END_STREAM"), (FLAG_END_HEADERS, "END_HEADERS"), (FLAG_PADDED, "PADDED"),
              (FLAG_PRIORITY, "PRIORITY")),
    SETTINGS: ((FLAG_ACK, "ACK"),),
    PUSH_PROMISE: ((FLAG_END_HEADERS, "END_HEADERS"), (FLAG_PADDED, "PADDED")),
    PING: ((FLAG_ACK, "ACK"),),
    CONTINUATION: ((FLAG_END_HEADERS, "END_HEADERS"),),
}

ERROR_CODES: Final[tuple[str, ...]] = (
    "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
    "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
    "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
)

SETTINGS_HEADER_TABLE_SIZE: Final = 0x1
SETTINGS_ENABLE_PUSH: Final = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS: Final = 0x3
SETTINGS_INITIAL_WINDOW_SIZE: Final = 0x4
SETTINGS_MAX_FRAME_SIZE: Final = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE: Final = 0x6

DEFAULT_WINDOW: Final = 65535
DEFAULT_MAX_FRAME_SIZE: Final = 16384
MAX_STREAM_ID: Final = 0x7FFFFFFF


def type_name(t: int) -> str:
    return FRAME_TYPES[t] if t < 10 else f"UNKNOWN(0x{t:02x})"


def error_name(code: int) -> str:
    """Known codes by name; others stay numbers, shown as text (RFC 9113 §7: they are legal)."""
    return ERROR_CODES[code] if 0 <= code < len(ERROR_CODES) else f"0x{code:x}"


def flag_names(t: int, flags: int) -> list[str]:
    return [name for bit, name in FLAG_NAMES.get(t, ()) if flags & bit]
