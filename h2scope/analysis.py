"""Build the model of one capture: the one entry point the CLI, the TUI and `check` share."""

from __future__ import annotations

from typing import Callable, Optional

from .http2.connection import DecodeContext, H2Observer
from .model import ConnectionRecord, StreamRecord, Violation
from .pipeline import CaptureInfo, ProgressFn, run_capture
from .results import Assembler, Emitter, MemorySink, Sink
from .tcp.reassembly import DEFAULT_OOO_CAP


# Plain classes, not dataclasses: importing dataclasses and generating the methods of a
# run's classes was 13 ms of a 67 ms start-up (analyze --format json on a small capture).


class Options:
    __slots__ = ("decode_as", "ooo_cap", "grace_s", "keep_frames", "storm_count", "storm_window_s")

    def __init__(self, decode_as: tuple[int, ...] = (), ooo_cap: int = DEFAULT_OOO_CAP,
                 grace_s: Optional[float] = None, keep_frames: bool = False, storm_count: int = 10,
                 storm_window_s: float = 1.0) -> None:
        self.decode_as = decode_as
        self.ooo_cap = ooo_cap
        self.grace_s = grace_s  # None: from each connection's RTT
        self.keep_frames = keep_frames  # per-stream frame timelines, for the TUI
        self.storm_count = storm_count
        self.storm_window_s = storm_window_s

    def __repr__(self) -> str:
        return "Options(" + ", ".join(f"{k}={getattr(self, k)!r}" for k in self.__slots__) + ")"


class Analysis:
    def __init__(self, capture: CaptureInfo, options: Options, connections: list[ConnectionRecord],
                 streams: list[StreamRecord], violations: list[Violation], frames: int,
                 findings: Optional[list] = None, frames_by_stream: Optional[dict] = None,
                 conn_frames: Optional[dict] = None) -> None:
        self.capture = capture
        self.options = options
        self.connections = connections
        self.streams = streams
        self.violations = violations
        self.frames = frames
        self.findings: list = [] if findings is None else findings
        self.frames_by_stream: dict = {} if frames_by_stream is None else frames_by_stream
        self.conn_frames: dict = {} if conn_frames is None else conn_frames

    def connection(self, cid: int) -> Optional[ConnectionRecord]:
        for c in self.connections:
            if c.id == cid:
                return c
        return None


class Run:
    """What a streamed run leaves besides what went to its sink."""

    def __init__(self, capture: CaptureInfo, frames: int, ctx: Optional[DecodeContext] = None) -> None:
        self.capture = capture
        self.frames = frames
        self.ctx = ctx


def run(path: str, sink: Sink, options: Optional[Options] = None, *, rules: bool = True,
        on_frame: Optional[Callable[[dict], None]] = None, progress: Optional[ProgressFn] = None) -> Run:
    """Stream a capture through the pipeline in this process; streams, connections and
    findings go to `sink` as each becomes final, so memory follows what is open, not the
    capture's size."""
    options = options or Options()
    assembler = Assembler(options, sink, rules=rules)
    emitter = Emitter(options, sink, lambda ev: assembler.handle(0, ev), rules=rules)
    ctx = DecodeContext(emitter, decode_as=options.decode_as, on_frame=on_frame,
                        keep_frames=options.keep_frames)
    info = decode_capture(path, ctx, options, progress=progress)
    assembler.finish()
    return Run(capture=info, frames=ctx.total_frames, ctx=ctx)


def decode_capture(path: str, ctx: DecodeContext, options: Options, *, progress: Optional[ProgressFn] = None,
                   part: int = 0, parts: int = 1,
                   tick: Optional[Callable[[int], None]] = None) -> CaptureInfo:
    """The decoding half of a run, shared with parallel workers."""

    def at_end() -> None:
        ctx.capture_ended = True

    return run_capture(path, lambda tcp: H2Observer(tcp, ctx), ooo_cap=options.ooo_cap, progress=progress,
                       at_end=at_end, part=part, parts=parts, tick=tick)


def _analysis(path: str, options: Optional[Options], rules: bool, on_frame, progress) -> Analysis:
    options = options or Options()
    sink = MemorySink()
    r = run(path, sink, options, rules=rules, on_frame=on_frame, progress=progress)
    sink.sorted()
    return Analysis(capture=r.capture, options=options, connections=sink.connections, streams=sink.streams,
                    violations=sink.violations, frames=r.frames, findings=sink.findings,
                    frames_by_stream=r.ctx.frames_by_stream, conn_frames=r.ctx.conn_frames)


def decode(path: str, options: Optional[Options] = None, *,
           on_frame: Optional[Callable[[dict], None]] = None,
           progress: Optional[ProgressFn] = None) -> Analysis:
    """Capture → connections, streams and violations, all in memory (no findings)."""
    return _analysis(path, options, False, on_frame, progress)


def analyze(path: str, options: Optional[Options] = None, *,
            progress: Optional[ProgressFn] = None) -> Analysis:
    """Capture → model → findings, all in memory (the TUI, `check`, tests)."""
    return _analysis(path, options, True, None, progress)
