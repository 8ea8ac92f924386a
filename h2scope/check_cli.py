"""The `check` subcommand's arguments and help.

Apart from check.py so that building the CLI's parser, which every command does, does not
import the regression checker itself (its classes and tomllib: 10 ms of start-up).
"""

from __future__ import annotations

import argparse

from .argtypes import RawHelp


HELP = "compare stored captures with their accepted findings and policies (CI regression check)"
EPILOG = """\
expectations (TOML): h2scope-expect.toml per directory ([defaults] + [captures."NAME"]),
or NAME.h2scope-expect.toml beside a capture. Keys: baseline = [ {kind, conn, stream,
method, severity, verdict, count, packets} ... ]; policies: KIND = N (at most N findings of
a kind), max-overrun = "50ms", require-deadline = ['^/pkg\\.Svc/'], max-severity = "warning";
analysis settings: grace, storm-count, storm-window, decode-as; note.
A finding's identity: kind, connection ("SERVER_IP:PORT / CLIENT_IP"), stream id, method.

statuses: passed, improved (accepted findings gone: passes unless --strict), regressed (new
or changed findings, policy violated), unbaselined (run --update), missing (expected capture
gone), error (unreadable).
exit codes: 0 all pass, 1 a regression, 2 usage error or unreadable capture
GITHUB_ACTIONS set: ::error file=...:: annotations for every failing capture.

examples:
  h2scope check captures/                     the CI gate
  h2scope check captures/ --junit check.xml   plus a JUnit report for the CI's test view
  h2scope check --update captures/new.pcap    accept what a capture shows today (review the diff!)
"""


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser("check", help=HELP, description=HELP[0].upper() + HELP[1:] + ".",
                              epilog=EPILOG, formatter_class=RawHelp)
    p.add_argument("paths", nargs="+", metavar="PATH",
                   help="capture files and directories (searched recursively for .pcap, .pcapng, .cap, .gz; "
                        "node_modules and hidden directories are skipped)")
    p.add_argument("--update", action="store_true",
                   help="write or refresh the baselines to accept today's findings, and show what changed "
                        "(policies are kept; without --update nothing is written)")
    p.add_argument("--strict", action="store_true", help="fail when an accepted finding is gone, too")
    p.add_argument("--format", choices=("text", "json"), default="text", help="summary table (default) or JSON")
    p.add_argument("--junit", metavar="FILE", help="also write a JUnit XML report: one testcase per capture")
    p.add_argument("-q", "--quiet", action="store_true", help="list only the captures that did not pass")
    return p
