"""`h2scope tui CAPTURE`: browse findings → streams → each stream's frame timeline (Textual).

The CLI wires this in with `add_parser(subparsers)` and `run(args)`; nothing else here is API.
"""

from __future__ import annotations

import argparse
import os
import sys

from h2scope.argtypes import PlainHelp, add_input_arguments, duration_seconds

__all__ = ["add_parser", "run"]


def add_parser(subparsers) -> argparse.ArgumentParser:
    """Add `tui` to the CLI's subparsers (same ingestion options as `analyze`)."""
    p = subparsers.add_parser(
        "tui", help="browse findings, streams and frame timelines in a terminal UI", formatter_class=PlainHelp,
        description="Open a capture in an interactive terminal UI: findings → the stream → its frames, "
                    "with the evidence packets highlighted. Keys: ? help, / filter, Enter open, Esc back, "
                    "e export JSON, q quit.")
    add_input_arguments(p, stdin=False)
    p.add_argument("--grace", type=duration_seconds, metavar="SECONDS",
                   help="time a reset or GOAWAY may take to reach the peer before later frames count "
                        "(default: 4x RTT, at least 10 ms; 50 ms without an RTT)")
    return p


def run(args) -> int:
    """Build the model in the app's worker and run the app; 0, or 2 when the capture can't be read."""
    from h2scope.analysis import Options

    path = args.capture
    if path == "-":
        print("h2scope: error: tui needs a capture file (stdin is the keyboard); "
              "save it first, e.g. tcpdump -w dump.pcap", file=sys.stderr)
        return 2
    if not os.path.exists(path):
        print(f"h2scope: error: {path}: no such file", file=sys.stderr)
        return 2
    options = Options(decode_as=tuple(getattr(args, "decode_as", None) or ()), keep_frames=True)
    if getattr(args, "ooo_cap", None) is not None:
        options.ooo_cap = max(1, args.ooo_cap)
    if getattr(args, "grace", None) is not None:
        options.grace_s = args.grace

    from .app import H2ScopeApp

    app = H2ScopeApp(path, options)
    app.run()
    if app.error:
        print(f"h2scope: error: {app.error}", file=sys.stderr)
        return 2
    return 0
