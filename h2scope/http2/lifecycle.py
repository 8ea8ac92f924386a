"""Stream lifecycles as a passive observer of RFC 9113 §5.1.

An explicit state table in the manner of h2's stream state machine, seen from the wire
instead of from one endpoint: every (state, event) pair either has a next state or is a
violation, which is recorded and never raised. Events carry who sent the frame, so
"half-closed (local)" and "(remote)" become half-closed by the client or by the server.

States and events are small ints, and the table is a flat tuple indexed by both: this runs
once per frame, and the Enum version hashed a (State, Event) tuple through the interpreted
`Enum.__hash__` twice per frame (the Enum classes were 3.7% of `analyze` on W1 in callgrind
instructions, and their member lookups were generic attribute reads in compiled code).
"""

from __future__ import annotations

from typing import Final, Optional

# States. A record's `state` is the name.
IDLE: Final = 0
RESERVED: Final = 1
OPEN: Final = 2
HALF_CLOSED_CLIENT: Final = 3
HALF_CLOSED_SERVER: Final = 4
CLOSED: Final = 5
STATE_NAMES: Final[tuple[str, ...]] = ("idle", "reserved", "open", "half-closed (client done)", "half-closed (server done)",
                      "closed")

# Events: what kind of frame, plus the sender's side (0 client, 1 server).
CLIENT_HEADERS: Final = 0
SERVER_HEADERS: Final = 1
CLIENT_DATA: Final = 2
SERVER_DATA: Final = 3
CLIENT_END_STREAM: Final = 4
SERVER_END_STREAM: Final = 5
CLIENT_RST: Final = 6
SERVER_RST: Final = 7
SERVER_PUSH: Final = 9  # 8 would be a client PUSH_PROMISE, which is not an event of a stream
EVENT_NAMES: Final[tuple[str, ...]] = ("client HEADERS", "server HEADERS", "client DATA", "server DATA", "client END_STREAM",
                      "server END_STREAM", "client RST_STREAM", "server RST_STREAM", "client PUSH_PROMISE",
                      "server PUSH_PROMISE")
N_EVENTS: Final = 10

# (state, event) → next state. Pairs not listed are violations of §5.1.
TRANSITIONS: Final[dict[tuple[int, int], int]] = {
    (IDLE, CLIENT_HEADERS): OPEN,
    (IDLE, SERVER_PUSH): RESERVED,
    (RESERVED, SERVER_HEADERS): HALF_CLOSED_CLIENT,
    (RESERVED, CLIENT_RST): CLOSED,
    (RESERVED, SERVER_RST): CLOSED,

    (OPEN, CLIENT_HEADERS): OPEN,
    (OPEN, SERVER_HEADERS): OPEN,
    (OPEN, CLIENT_DATA): OPEN,
    (OPEN, SERVER_DATA): OPEN,
    (OPEN, CLIENT_END_STREAM): HALF_CLOSED_CLIENT,
    (OPEN, SERVER_END_STREAM): HALF_CLOSED_SERVER,
    (OPEN, CLIENT_RST): CLOSED,
    (OPEN, SERVER_RST): CLOSED,

    (HALF_CLOSED_CLIENT, SERVER_HEADERS): HALF_CLOSED_CLIENT,
    (HALF_CLOSED_CLIENT, SERVER_DATA): HALF_CLOSED_CLIENT,
    (HALF_CLOSED_CLIENT, SERVER_END_STREAM): CLOSED,
    (HALF_CLOSED_CLIENT, CLIENT_RST): CLOSED,
    (HALF_CLOSED_CLIENT, SERVER_RST): CLOSED,

    (HALF_CLOSED_SERVER, CLIENT_HEADERS): HALF_CLOSED_SERVER,
    (HALF_CLOSED_SERVER, CLIENT_DATA): HALF_CLOSED_SERVER,
    (HALF_CLOSED_SERVER, CLIENT_END_STREAM): CLOSED,
    (HALF_CLOSED_SERVER, CLIENT_RST): CLOSED,
    (HALF_CLOSED_SERVER, SERVER_RST): CLOSED,

    # A RST_STREAM on a stream that both sides already ended is harmless and common (a
    # server telling a client to stop sending); it does not reopen anything.
    (CLOSED, CLIENT_RST): CLOSED,
    (CLOSED, SERVER_RST): CLOSED,
}

# The same table, flat: _NEXT[state * N_EVENTS + event] is the next state, or -1.
_NEXT: Final[tuple[int, ...]] = tuple(TRANSITIONS.get((state, event), -1)
                     for state in range(len(STATE_NAMES)) for event in range(N_EVENTS))

# Why an unlisted pair is wrong, by state, for the violation text.
_ERROR: Final[tuple[str, ...]] = (
    "on an idle stream (never opened)",
    "on a reserved (pushed) stream",
    "on an open stream",
    "after the client's END_STREAM",
    "after the server's END_STREAM",
    "on a closed stream",
)


def transition(state: int, event: int) -> tuple[int, Optional[str]]:
    """(next state, violation text or None). On a violation the state does not change."""
    nxt = _NEXT[state * N_EVENTS + event]
    if nxt >= 0:
        return nxt, None
    return state, f"{EVENT_NAMES[event]} {_ERROR[state]} (RFC 9113 §5.1)"


def header_event(side: int) -> int:
    return CLIENT_HEADERS + side


def data_event(side: int) -> int:
    return CLIENT_DATA + side


def end_event(side: int) -> int:
    return CLIENT_END_STREAM + side


def rst_event(side: int) -> int:
    return CLIENT_RST + side
