"""Build the model of one capture: the one entry point the CLI, the TUI and `check` share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

from .http2.connection import DecodeContext, H2Observer
from .model import ConnectionRecord, StreamRecord, Violation
from .pipeline import CaptureInfo, ProgressFn, run_capture
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


def decode(path: str, options: Optional[Options] = None, *,
           on_frame: Optional[Callable[[dict], None]] = None,
           progress: Optional[ProgressFn] = None) -> Analysis:
    """Capture → connections, streams and violations (no findings yet)."""
    options = options or Options()
    ctx = DecodeContext(decode_as=options.decode_as, on_frame=on_frame, keep_frames=options.keep_frames)
    info = run_capture(path, lambda tcp: H2Observer(tcp, ctx), ooo_cap=options.ooo_cap, progress=progress)
    ctx.connections.sort(key=lambda c: c.id)
    ctx.streams.sort(key=lambda s: (s.conn, s.stream))
    return Analysis(capture=info, options=options, connections=ctx.connections, streams=ctx.streams,
                    violations=ctx.violations, frames=ctx.total_frames,
                    frames_by_stream=ctx.frames_by_stream, conn_frames=ctx.conn_frames)


def analyze(path: str, options: Optional[Options] = None, *,
            progress: Optional[ProgressFn] = None) -> Analysis:
    """Capture → model → findings."""
    from .rules import run_rules

    result = decode(path, options, progress=progress)
    result.findings = run_rules(result)
    return result
