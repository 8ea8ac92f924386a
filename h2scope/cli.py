"""The `h2scope` command line.

Exit codes: 0 clean, 1 a finding at or above --fail-on, 2 usage or input error.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
from typing import Optional

from . import __version__
from .errors import CaptureError
from .argtypes import PlainHelp, RawHelp, add_input_arguments, duration_seconds, regex
from .findings import SEVERITIES, SEVERITY_RANK

EXIT_OK = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

DESCRIPTION = """\
Explain what happened to every HTTP/2 and gRPC call's deadline in a packet capture.

h2scope reads pcap, pcapng and gzip-compressed captures (use - for stdin), reassembles
TCP, finds HTTP/2 on any port (prior knowledge, h2c Upgrade, or --decode-as for captures
that start mid-connection), and reports deadline overruns, streams that kept sending after
a cancel, streams lost to GOAWAY or connection close, cancel storms and protocol
violations. Every claim names packet numbers you can open in Wireshark.
"""

EPILOG = """\
examples:
  h2scope analyze dump.pcap                      terminal report
  h2scope analyze dump.pcap --format json        everything, for scripts
  h2scope analyze dump.pcap --fail-on error      exit 1 when an error-level finding exists
  tcpdump -i any -w - port 50051 | h2scope analyze -
  h2scope frames dump.pcap --stream 5            one stream's frames, as Wireshark numbers them
  h2scope explain data-after-rst                 what a finding means and how to fix it
  h2scope tui dump.pcap                          browse connections, streams and timelines
  h2scope check captures/                        CI: stored captures against accepted findings
"""


class _Version(argparse.Action):
    """--version, saying how this h2scope runs (importing the pipeline only when asked)."""

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        from .native import describe

        print(f"h2scope {__version__} ({describe()})")  # stdout, like argparse's own version action
        parser.exit()


def build_parser() -> argparse.ArgumentParser:
    from .rules import KINDS

    parser = argparse.ArgumentParser(prog="h2scope", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=RawHelp)
    parser.add_argument("--version", action=_Version, nargs=0,
                        help="show the version, and whether the hot path is compiled, and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    a = sub.add_parser("analyze", help="report deadline, cancel, GOAWAY and protocol findings",
                       description="Analyze a capture and report findings with evidence packets.",
                       formatter_class=RawHelp, epilog=(
                           "severities: error > warning > info\n"
                           f"finding kinds: {', '.join(KINDS)}\n"
                           "exit codes: 0 clean, 1 a finding at or above --fail-on, 2 usage or input error"))
    add_input_arguments(a)
    a.add_argument("--format", choices=("text", "json", "jsonl"), default="text",
                   help="text report (default), one JSON document, or one finding per line")
    a.add_argument("--fail-on", choices=SEVERITIES + ("never",), default="never",
                   help="exit 1 when a finding at or above this severity exists (default: never)")
    a.add_argument("--min-severity", choices=SEVERITIES, default="info", help="hide findings below this severity")
    a.add_argument("--method", type=regex, metavar="REGEX", help="only calls whose :path matches REGEX")
    a.add_argument("--conn", type=int, metavar="ID", help="only connection ID (Wireshark's tcp.stream)")
    a.add_argument("--grace", type=duration_seconds, metavar="SECONDS",
                   help="time a reset or GOAWAY may take to reach the peer before later frames count "
                        "(default: 4x RTT, at least 10 ms; 50 ms without an RTT)")
    a.add_argument("--storm-count", type=int, default=10, metavar="N", help="resets that make a cancel storm (default 10)")
    a.add_argument("--storm-window", type=duration_seconds, default=1.0, metavar="SECONDS",
                   help="window for --storm-count (default 1 s)")
    a.add_argument("--headers", action="store_true",
                   help="with --format json: include every stream's full request/response headers and trailers")
    a.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    a.add_argument("--jobs", type=int, default=0, metavar="N",
                   help="worker processes, each decoding a share of the TCP connections (default: 2 on a "
                        "multi-core machine for a capture file of 32 MB or more, else 1; results are the same)")

    f = sub.add_parser("frames", help="list every HTTP/2 frame (packet, stream, type, flags, headers)",
                       formatter_class=PlainHelp,
                       description="List every HTTP/2 frame, numbered by packet as Wireshark does.")
    add_input_arguments(f)
    f.add_argument("--format", choices=("text", "jsonl"), default="text")
    f.add_argument("--conn", type=int, metavar="ID", help="only connection ID")
    f.add_argument("--stream", type=int, metavar="ID", help="only stream ID")

    e = sub.add_parser("explain", help="what a finding kind means, why it matters, usual fixes",
                       formatter_class=PlainHelp)
    e.add_argument("kind", nargs="?", choices=KINDS, metavar="KIND", help=", ".join(KINDS))

    from .check_cli import add_parser as add_check_parser
    from .tui import add_parser as add_tui_parser

    add_tui_parser(sub)
    add_check_parser(sub)
    return parser


def _console(stream=None):
    from rich.console import Console

    out = stream or sys.stdout
    tty = out.isatty()
    width = None
    if not tty:  # a pipe or file: the terminal's width is unknown, use COLUMNS or a wide page
        try:
            width = max(40, int(os.environ.get("COLUMNS", "120")))
        except ValueError:
            width = 120

    class _Console(Console):
        def on_broken_pipe(self) -> None:
            # rich exits 1 here, which h2scope's callers read as "findings": let main() see it.
            self.quiet = True
            raise BrokenPipeError

    return _Console(file=out, width=width, no_color="NO_COLOR" in os.environ or not tty, highlight=False)


def _options(args):
    from .analysis import Options

    opts = Options(decode_as=tuple(args.decode_as))
    if args.ooo_cap is not None:
        opts.ooo_cap = max(1, args.ooo_cap)
    if getattr(args, "grace", None) is not None:
        opts.grace_s = args.grace
    if getattr(args, "storm_count", None) is not None:
        opts.storm_count = max(2, args.storm_count)
        opts.storm_window_s = args.storm_window
    return opts


class _Progress:
    """A progress bar on stderr for long captures, only on a TTY."""

    def __init__(self, path: str, enabled: bool) -> None:
        self.bar = None
        if not enabled or path == "-" or not sys.stderr.isatty() or "CI" in os.environ:
            return
        try:
            total = os.path.getsize(path)
        except OSError:
            return
        if total < 8 * 1024 * 1024:
            return
        from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn

        self.bar = Progress("reading", BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                            console=_console(sys.stderr), transient=True)
        self.task = self.bar.add_task("read", total=total)
        self.started = False

    def __call__(self, done: int) -> None:
        if self.bar is not None:
            if not self.started:
                # Started at the first report, not before: --jobs forks its workers first, and
                # a fork must not copy a running refresh thread's locks.
                self.bar.start()
                self.started = True
            self.bar.update(self.task, completed=done)

    def close(self) -> None:
        if self.bar is not None and self.started:
            self.bar.stop()

    @property
    def callback(self):
        return self if self.bar is not None else None


def cmd_analyze(args) -> int:
    from .analysis import run
    from .parallel import auto_jobs, run_parallel
    from .report.json_report import JsonReport
    from .results import Selection

    selection = Selection.from_args(args.conn, args.method, args.min_severity)
    if args.format == "text":
        from .report.text import TextReport  # rich: about 40 ms of imports that JSON output skips

        report = TextReport(selection)
    else:
        report = JsonReport(selection, out=sys.stdout if args.format == "json" else None, headers=args.headers,
                            indent=args.format == "json" and sys.stdout.isatty())
    jobs = args.jobs if args.jobs > 0 else auto_jobs(args.capture)
    if args.capture == "-":
        jobs = 1  # standard input can be read once
    progress = _Progress(args.capture, not args.no_progress)
    try:
        if jobs > 1:
            result = run_parallel(args.capture, report, _options(args), jobs, progress=progress.callback)
        else:
            result = run(args.capture, report, _options(args), progress=progress.callback)
    finally:
        progress.close()
    if args.format == "json":
        cap = result.capture.to_json()
        cap["frames"] = result.frames
        report.write_json(cap)
    elif args.format == "jsonl":
        report.write_jsonl(sys.stdout)
    else:
        report.render(_console(), result.capture, result.frames)
    for w in result.capture.warnings:
        if args.format != "text":
            print(f"h2scope: warning: {w}", file=sys.stderr)
    if args.fail_on != "never" and report.max_rank >= SEVERITY_RANK[args.fail_on]:
        return EXIT_FINDINGS
    return EXIT_OK


def _frame_text(r: dict) -> str:
    extra = []
    if "error_code" in r:
        extra.append(r["error_code"])
    if "last_stream_id" in r:
        extra.append(f"last_stream_id={r['last_stream_id']}")
    if "settings" in r:
        extra.append(" ".join(f"{k}={v}" for k, v in r["settings"].items()))
    if "headers" in r:
        extra.append(" ".join(f"{n}: {v}" for n, v in r["headers"]))
    if r.get("damaged"):
        extra.append("(bytes missing from capture)")
    flags = "|".join(r["flag_names"]) or "-"
    return (f"{r['packet']:>7} {r['time']:.6f} conn {r['conn']:<3} {r['dir']} stream {r['stream']:<5} "
            f"{r['type']:<13} {flags:<24} len {r['length']:<6} {'  '.join(extra)}")


def cmd_frames(args) -> int:
    from .analysis import run
    from .results import NullSink

    out = sys.stdout
    want_conn, want_stream = args.conn, args.stream
    jsonl = args.format == "jsonl"

    def emit(r: dict) -> None:
        if want_conn is not None and r["conn"] != want_conn:
            return
        if want_stream is not None and r["stream"] != want_stream:
            return
        out.write(json.dumps(r, ensure_ascii=False) + "\n" if jsonl else _frame_text(r) + "\n")

    # Frames are printed as they are decoded; nothing else of the model is kept.
    result = run(args.capture, NullSink(), _options(args), rules=False, on_frame=emit)
    for w in result.capture.warnings:
        print(f"h2scope: warning: {w}", file=sys.stderr)
    return EXIT_OK


def cmd_explain(args) -> int:
    from .explain import explain
    from .rules import KINDS

    if args.kind is None:
        for kind in KINDS:
            print(explain(kind))
        return EXIT_OK
    print(explain(args.kind), end="")
    return EXIT_OK


def cmd_tui(args) -> int:
    from .tui import run

    return run(args)


def cmd_check(args) -> int:
    from . import check

    return check.run(args)


COMMANDS = {"analyze": cmd_analyze, "frames": cmd_frames, "explain": cmd_explain, "tui": cmd_tui,
            "check": cmd_check}


_gc_tuned = False


def _tune_gc() -> None:
    """Once per process, before decoding: move what start-up made (modules, tables, classes)
    out of the collector's reach and collect the young generation far less often.

    Decoding allocates a container per packet, frame and header, nearly all freed by
    reference counting; the pipeline makes no reference cycles that outlive a connection
    (the tracker lets go of an ended connection's sink, tcp/reassembly.py's _Released). A
    young-generation collection found nothing to free, yet walked every container alive
    at the time (the batch of records being fed, open streams, the recently closed ones):
    with the threshold at 20,000, W1-100MB ran 63 of them and W4-100MB 115, 0.17 s and
    0.39 s (6% and 8% of `analyze --format json --jobs 1`). At 200,000, none runs on
    either; the collector stays on, so a cycle nobody foresaw is still freed, after at most
    200,000 net container allocations.

    Earlier: every full collection walked the start-up objects again, which freezing them
    ended (W1 -7%, W2 -4%, W4 -4% of what follows start-up, callgrind)."""
    global _gc_tuned
    if not _gc_tuned:
        _gc_tuned = True
        gc.freeze()
        gc.set_threshold(200_000, 20, 20)


_command: Optional[str] = None  # what main() last ran (console() leaves the TUI's exit alone)


def main(argv: Optional[list[str]] = None) -> int:
    global _command
    parser = build_parser()
    args = parser.parse_args(argv)
    _command = args.command
    if args.command in ("analyze", "frames", "check"):
        _tune_gc()
    try:
        return COMMANDS[args.command](args)
    except CaptureError as e:
        print(f"h2scope: error: {e}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("h2scope: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader went away (e.g. `| head`): not an error of ours. What is still buffered
        # goes to /dev/null, so that flushing it at exit does not fail again (the recipe in
        # the Python docs' note on SIGPIPE).
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):
            pass
        return EXIT_OK
    except OSError as e:  # the machine's, not ours: a full disk under the output, and the like
        if os.environ.get("H2SCOPE_DEBUG"):
            raise
        _print_os_error(e)
        return EXIT_ERROR
    except Exception as e:  # never a traceback for the user; H2SCOPE_DEBUG=1 shows it
        if os.environ.get("H2SCOPE_DEBUG"):
            raise
        print(f"h2scope: error: could not analyze {getattr(args, 'capture', '')}: internal error "
              f"{type(e).__name__}: {e} (set H2SCOPE_DEBUG=1 for details, and please report it)", file=sys.stderr)
        return EXIT_ERROR


def _print_os_error(e: OSError) -> None:
    where = f" ({e.filename})" if e.filename else ""
    print(f"h2scope: error: {e.strerror or e}{where}", file=sys.stderr)


def console() -> None:
    """The `h2scope` command: main(), then leave without tearing the interpreter down.

    Freeing every module, table and class one by one at exit is work nobody waits for:
    analyze --format json took 52 -> 49 ms on a small capture and 186 -> 175 ms on
    benchmarks' W3-100MB (median of 30 and 5 runs). Only the output must be flushed first.
    The TUI exits normally: Textual restores the terminal in its own shutdown."""
    rc = main()
    if _command == "tui":
        sys.exit(rc)
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        pass  # the reader went away (e.g. `| head`), as main() treats it
    except OSError as e:
        _print_os_error(e)
        rc = EXIT_ERROR
    try:
        sys.stderr.flush()
    except OSError:
        pass
    os._exit(rc)


if __name__ == "__main__":
    console()
