"""Stream lifecycles as a passive observer of RFC 9113 §5.1.

An explicit state table in the manner of h2's stream state machine, seen from the wire
instead of from one endpoint: every (state, event) pair either has a next state or is a
violation, which is recorded and never raised. Events carry who sent the frame, so
"half-closed (local)" and "(remote)" become half-closed by the client or by the server.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    IDLE = "idle"
    RESERVED = "reserved"
    OPEN = "open"
    HALF_CLOSED_CLIENT = "half-closed (client done)"
    HALF_CLOSED_SERVER = "half-closed (server done)"
    CLOSED = "closed"


class Event(Enum):
    CLIENT_HEADERS = "client HEADERS"
    SERVER_HEADERS = "server HEADERS"
    CLIENT_DATA = "client DATA"
    SERVER_DATA = "server DATA"
    CLIENT_END_STREAM = "client END_STREAM"
    SERVER_END_STREAM = "server END_STREAM"
    CLIENT_RST = "client RST_STREAM"
    SERVER_RST = "server RST_STREAM"
    SERVER_PUSH = "server PUSH_PROMISE"


S, E = State, Event

# (state, event) → next state. Pairs not listed are violations of §5.1.
TRANSITIONS: dict[tuple[State, Event], State] = {
    (S.IDLE, E.CLIENT_HEADERS): S.OPEN,
    (S.IDLE, E.SERVER_PUSH): S.RESERVED,
    (S.RESERVED, E.SERVER_HEADERS): S.HALF_CLOSED_CLIENT,
    (S.RESERVED, E.CLIENT_RST): S.CLOSED,
    (S.RESERVED, E.SERVER_RST): S.CLOSED,

    (S.OPEN, E.CLIENT_HEADERS): S.OPEN,
    (S.OPEN, E.SERVER_HEADERS): S.OPEN,
    (S.OPEN, E.CLIENT_DATA): S.OPEN,
    (S.OPEN, E.SERVER_DATA): S.OPEN,
    (S.OPEN, E.CLIENT_END_STREAM): S.HALF_CLOSED_CLIENT,
    (S.OPEN, E.SERVER_END_STREAM): S.HALF_CLOSED_SERVER,
    (S.OPEN, E.CLIENT_RST): S.CLOSED,
    (S.OPEN, E.SERVER_RST): S.CLOSED,

    (S.HALF_CLOSED_CLIENT, E.SERVER_HEADERS): S.HALF_CLOSED_CLIENT,
    (S.HALF_CLOSED_CLIENT, E.SERVER_DATA): S.HALF_CLOSED_CLIENT,
    (S.HALF_CLOSED_CLIENT, E.SERVER_END_STREAM): S.CLOSED,
    (S.HALF_CLOSED_CLIENT, E.CLIENT_RST): S.CLOSED,
    (S.HALF_CLOSED_CLIENT, E.SERVER_RST): S.CLOSED,

    (S.HALF_CLOSED_SERVER, E.CLIENT_HEADERS): S.HALF_CLOSED_SERVER,
    (S.HALF_CLOSED_SERVER, E.CLIENT_DATA): S.HALF_CLOSED_SERVER,
    (S.HALF_CLOSED_SERVER, E.CLIENT_END_STREAM): S.CLOSED,
    (S.HALF_CLOSED_SERVER, E.CLIENT_RST): S.CLOSED,
    (S.HALF_CLOSED_SERVER, E.SERVER_RST): S.CLOSED,

    # A RST_STREAM on a stream that both sides already ended is harmless and common (a
    # server telling a client to stop sending); it does not reopen anything.
    (S.CLOSED, E.CLIENT_RST): S.CLOSED,
    (S.CLOSED, E.SERVER_RST): S.CLOSED,
}

# Why an unlisted pair is wrong, by event, for the violation text.
_ERROR = {
    S.IDLE: "on an idle stream (never opened)",
    S.RESERVED: "on a reserved (pushed) stream",
    S.HALF_CLOSED_CLIENT: "after the client's END_STREAM",
    S.HALF_CLOSED_SERVER: "after the server's END_STREAM",
    S.CLOSED: "on a closed stream",
    S.OPEN: "on an open stream",
}


def transition(state: State, event: Event) -> tuple[State, str | None]:
    """(next state, violation text or None). On a violation the state does not change."""
    nxt = TRANSITIONS.get((state, event))
    if nxt is not None:
        return nxt, None
    return state, f"{event.value} {_ERROR[state]} (RFC 9113 §5.1)"


def header_event(side: int) -> Event:
    return E.CLIENT_HEADERS if side == 0 else E.SERVER_HEADERS


def data_event(side: int) -> Event:
    return E.CLIENT_DATA if side == 0 else E.SERVER_DATA


def end_event(side: int) -> Event:
    return E.CLIENT_END_STREAM if side == 0 else E.SERVER_END_STREAM


def rst_event(side: int) -> Event:
    return E.CLIENT_RST if side == 0 else E.SERVER_RST
