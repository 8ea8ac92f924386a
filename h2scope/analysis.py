"""Build the model of one capture: the one entry point the CLI, the TUI and `check` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .http2.connection import DecodeContext, H2Observer
from .model import ConnectionRecord, StreamRecord, Violation
from .pipeline import CaptureInfo, ProgressFn, run_capture
from .results import Assembler, Emitter, MemorySink, Sink
from .tcp.reassembly import DEFAULT_OOO_CAP


@dataclass
class Options:
    decode_as: tuple[int, ...] = ()
    ooo_cap: int = DEFAULT_OOO_CAP
    grace_s: Optional[float] = None  # None: from each connection's RTT
    keep_frames: bool = False  # per-stream frame timelines, for the TUI
    storm_count: int = 10
    storm_window_s: float = 1.0


@dataclass
class Analysis:
    capture: CaptureInfo
    options: Options
    connections: list[ConnectionRecord]
    streams: list[StreamRecord]
    violations: list[Violation]
    frames: int
    findings: list = field(default_factory=list)
    frames_by_stream: dict = field(default_factory=dict)
    conn_frames: dict = field(default_factory=dict)

    def connection(self, cid: int) -> Optional[ConnectionRecord]:
        for c in self.connections:
            if c.id == cid:
                return c
        return None


@dataclass
class Run:
    """What a streamed run leaves besides what went to its sink."""

    capture: CaptureInfo
    frames: int
    ctx: Optional[DecodeContext] = None


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
