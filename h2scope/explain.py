"""`h2scope explain KIND`: what each finding means, why it matters, what usually fixes it."""

from __future__ import annotations

from .rules.common import DEFAULT_GRACE_S, GRACE_FLOOR_S, GRACE_RTT_FACTOR

GRACE_TEXT = (f"The grace window is {GRACE_RTT_FACTOR}x the connection's round-trip time (from the TCP "
              f"handshake, else an HTTP/2 PING), at least {GRACE_FLOOR_S * 1000:.0f} ms, or "
              f"{DEFAULT_GRACE_S * 1000:.0f} ms when no RTT is known; --grace SECONDS overrides it.")

EXPLAIN = {
    "data-after-rst": (
        "An endpoint kept sending DATA or HEADERS on a stream after it was reset: after the peer's "
        "RST_STREAM had time to arrive, or after the endpoint's own RST_STREAM.",
        "A 'zombie stream': the server keeps computing and sending for a caller that has given up "
        "(usually at its deadline). It burns CPU, bandwidth and flow-control window that live calls "
        "need, and under load turns one slow call into a cascade. Frames sent after an endpoint's own "
        "reset break RFC 9113 §5.4.2 outright.",
        "Make the server observe cancellation: check the call context (ctx.Done() in Go, "
        "context.is_active() / add_callback in grpcio, call.cancelled in grpc-js) inside streaming "
        "loops and before expensive work; stop producing when the stream is cancelled; in proxies, "
        "propagate RST_STREAM upstream. " + GRACE_TEXT,
    ),
    "frames-after-goaway": (
        "Frames on streams above a GOAWAY's last-stream-id after the GOAWAY, or new streams opened by an "
        "endpoint after it received a GOAWAY.",
        "Streams above last-stream-id were not processed by the GOAWAY's sender; requests on them are "
        "lost unless the client retries them on a new connection. New streams after GOAWAY break "
        "RFC 9113 §6.8 and typically fail with REFUSED_STREAM or a dropped connection during deploys.",
        "Clients: stop using a connection once GOAWAY arrives and retry unprocessed requests elsewhere "
        "(gRPC does this for you when the channel is healthy). Servers: use graceful shutdown "
        "(GOAWAY with 2^31-1, a PING round trip, then the real last-stream-id) and drain before closing. "
        "A normal two-step graceful GOAWAY is not reported.",
    ),
    "deadline-exceeded": (
        "A gRPC call ran past its deadline (the time its request HEADERS were seen plus grpc-timeout), "
        "with who ended it: the client's RST_STREAM(CANCEL), the server's DEADLINE_EXCEEDED status, "
        "a TCP close, or nobody within the capture.",
        "The caller saw DEADLINE_EXCEEDED. Who ended the call tells you where to look: a server that "
        "answers DEADLINE_EXCEEDED itself knew the deadline; a client cancel means the server was still "
        "working; nobody means no side enforced it.",
        "Compare the overrun with the server's own latency for that method; look for flow-control "
        "stalls and large responses; propagate the deadline to downstream calls; size timeouts from "
        "measured p99 latency, not guesses.",
    ),
    "work-after-deadline": (
        "The server sent DATA on a call after the call's deadline had passed (beyond the grace window).",
        "Everything sent after the deadline is wasted: the client has already failed the call.",
        "Check the deadline in the server's handler (the remaining time is in the call context) and stop "
        "streaming when it passes; propagate deadlines to the work the handler starts. " + GRACE_TEXT,
    ),
    "deadline-missing": (
        "gRPC calls that carried no grpc-timeout header at all, summarised per method.",
        "A call without a deadline waits forever on a stuck server or a lost connection; retries and "
        "hedging cannot work without one. This is info, not an error: some long-lived streams "
        "legitimately have none.",
        "Set a deadline (timeout) on every client call, or a default in the client's service config.",
    ),
    "invalid-grpc-timeout": (
        "A grpc-timeout value outside the grammar: 1 to 8 ASCII digits followed by exactly one unit "
        "H, M, S, m, u or n.",
        "Servers reject the call or ignore the deadline, depending on the implementation.",
        "Fix the client or proxy that writes the header; e.g. '1.5S' must be '1500m', and values above "
        "8 digits must use a larger unit.",
    ),
    "stream-lost": (
        "Streams still open when the TCP connection closed (FIN or RST), or that a GOAWAY excluded before "
        "they finished.",
        "The calls failed with UNAVAILABLE or similar at the client; whether they were safely retried "
        "depends on whether the server had processed them.",
        "Use graceful shutdown (GOAWAY, drain in-flight calls, then close); check keepalive and idle "
        "timeouts of proxies and load balancers in the path; make retried methods idempotent.",
    ),
    "cancel-storm": (
        "Many streams reset within a short window on one connection, or from one client host across "
        "connections (default: 10 resets within 1 s; --storm-count and --storm-window).",
        "Usually a shared cause: a client-side timeout hitting every in-flight call, a retry or hedging "
        "loop, a proxy resetting streams, or a server overload that makes every call miss its deadline.",
        "Look at the first resets of the window and what preceded them (a slow response, a GOAWAY, a "
        "flow-control stall); check retry/hedging policies and client timeouts.",
    ),
    "protocol-violation": (
        "Frames that RFC 9113 forbids in the stream's state, malformed frames (bad sizes, padding), "
        "HPACK decoding errors, CONTINUATION misuse, stream-id ordering errors.",
        "A peer that violates the protocol causes connection errors, lost calls or interoperability "
        "problems that appear only with certain clients or proxies.",
        "Identify the sender (the 'by' field) and its HTTP/2 library version; check the evidence packets "
        "in Wireshark; upgrade or report to the library.",
    ),
}


def explain(kind: str) -> str:
    what, why, fix = EXPLAIN[kind]
    return f"{kind}\n\nWhat it is:\n  {what}\n\nWhy it matters:\n  {why}\n\nUsual fixes:\n  {fix}\n"
