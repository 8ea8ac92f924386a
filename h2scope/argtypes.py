"""Argument types and options shared by the CLI's subcommands (analyze, frames, tui)."""

from __future__ import annotations

import argparse
import os
import re
import sys


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns (COLUMNS, else the terminal, else 80), without
    importing shutil: argparse makes a help formatter for every argument it adds, and its
    own would import shutil (with zlib, bz2 and lzma) for it, 2 ms of every start."""
    try:
        columns = int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns
        except (AttributeError, ValueError, OSError):
            columns = 0
        columns = columns or 80
    return columns


class PlainHelp(argparse.HelpFormatter):
    """argparse's formatter, as wide as the terminal (see terminal_columns)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


class RawHelp(argparse.RawDescriptionHelpFormatter):
    """argparse's RawDescriptionHelpFormatter, as wide as the terminal (see terminal_columns)."""

    def __init__(self, prog: str, indent_increment: int = 2, max_help_position: int = 24,
                 width: int | None = None) -> None:
        super().__init__(prog, indent_increment, max_help_position, terminal_columns() - 2 if width is None else width)


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
