"""Argument types and options shared by the CLI's subcommands (analyze, frames, tui)."""

from __future__ import annotations

import argparse
import re


def port(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {value!r}") from None
    if not 0 < number < 65536:
        raise argparse.ArgumentTypeError(f"port out of range: {number}")
    return number


def duration_seconds(value: str) -> float:
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*(ms|s|us|µs)?\s*", value)
    if not m:
        raise argparse.ArgumentTypeError(f"not a duration: {value!r} (e.g. 0.05, 50ms)")
    n = float(m.group(1))
    unit = m.group(2) or "s"
    return n / {"s": 1, "ms": 1e3, "us": 1e6, "µs": 1e6}[unit]


def regex(value: str) -> re.Pattern:
    try:
        return re.compile(value)
    except re.error as e:
        raise argparse.ArgumentTypeError(f"bad regular expression {value!r}: {e}") from None


def add_input_arguments(p: argparse.ArgumentParser, stdin: bool = True) -> None:
    """The capture and the options that say how to read it."""
    p.add_argument("capture", help="pcap, pcapng or .gz capture" + ("; - reads stdin" if stdin else " file"))
    p.add_argument("--decode-as", metavar="PORT", type=port, action="append", default=[],
                   help="decode TCP port PORT as HTTP/2 even without a preface (captures that start "
                        "mid-connection); repeatable")
    p.add_argument("--ooo-cap", metavar="BYTES", type=int, default=None,
                   help="out-of-order bytes buffered per TCP direction before declaring a gap (default 4 MiB)")
