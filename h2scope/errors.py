"""Errors a user can act on. Anything raised as CaptureError becomes one line on stderr and exit 2."""


class CaptureError(Exception):
    """The input could not be read as a capture at all (nothing to analyze)."""
