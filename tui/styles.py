"""Styles for what the TUI draws itself (charts, badges, statuses), with a NO_COLOR palette.

Textual turns colors grey when NO_COLOR is set, and red on black turns into dark grey on
black; so without color the meaning moves to bold, italic, underline and reverse instead.
"""

from __future__ import annotations

import os

from rich.style import Style

PALETTE = {
    "ok": Style(color="green"),
    "bad": Style(color="red"),
    "warn": Style(color="yellow"),
    "open": Style(color="magenta"),
    "goaway": Style(color="bright_blue", bold=True),
    "deadline": Style(color="magenta", bold=True),
    "rst": Style(color="red", bold=True),
    "rst_mark": Style(color="red", bold=True, reverse=True),
    "close": Style(color="yellow", bold=True),
    "headers": Style(color="cyan", bold=True),
    "data": Style(color="green"),
    "late": Style(color="red", bold=True),
    "dim": Style(dim=True),
    "error": Style(color="red", bold=True),
    "warning": Style(color="yellow"),
    "info": Style(dim=True),
}

NO_COLOR_PALETTE = {
    "ok": Style(),
    "bad": Style(bold=True),
    "warn": Style(italic=True),
    "open": Style(italic=True),
    "goaway": Style(bold=True),
    "deadline": Style(bold=True),
    "rst": Style(bold=True),
    "rst_mark": Style(bold=True, reverse=True),
    "close": Style(bold=True, italic=True),
    "headers": Style(bold=True),
    "data": Style(),
    "late": Style(bold=True),
    "dim": Style(dim=True),
    "error": Style(bold=True, reverse=True),
    "warning": Style(bold=True),
    "info": Style(dim=True),
}


def no_color() -> bool:
    return os.environ.get("NO_COLOR") is not None  # as Textual decides it


def tone(name: str) -> Style:
    return (NO_COLOR_PALETTE if no_color() else PALETTE)[name]
