"""`--format json` and `--format jsonl`: the contract in DESIGN.md.

`JsonReport` is a sink: each stream is encoded and written out the moment it is final,
connections and findings are spilled to temporary files and follow at the end, so memory
stays flat however many calls the capture holds (W1 at 1 GB kept 9.4 GB of records in
memory before). The document's keys come in the order they can be written: `streams`,
`connections`, `findings`, `capture`, `summary`. Arrays list connections and streams in
the order they ended, findings worst first and by kind, each kind in the order it was
concluded.
"""

from __future__ import annotations

import json
from typing import IO, Optional

from ..findings import SEVERITIES, Finding
from ..model import sec
from ..results import CompactStreams, Selection
from ..rules import KINDS

_BATCH = 256  # encoded items joined per write: one write per item cost ~10% on W1


def _dumps(obj) -> str:
    # json.dumps encodes in C; json.dump streams through the pure-Python encoder chunk by
    # chunk, which took 33 s of 51 s on benchmarks W1-100MB.
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _pretty(obj, depth: int) -> str:
    return json.dumps(obj, ensure_ascii=False, indent=2).replace("\n", "\n" + "  " * depth)


class _Spill:
    """A JSON array's items, encoded, in a temporary file until the document is written."""

    def __init__(self, indent: bool) -> None:
        self.file: Optional[IO[str]] = None
        self.count = 0
        self.indent = indent
        self._pending: list[str] = []

    def add(self, obj) -> None:
        self.add_encoded(_pretty(obj, 2) if self.indent else _dumps(obj))

    def add_encoded(self, text: str) -> None:
        self._pending.append(text)
        self.count += 1
        if len(self._pending) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._pending:
            return
        if self.file is None:
            import tempfile  # only a report with more items than one batch spills

            self.file = tempfile.TemporaryFile("w+", encoding="utf-8")
        # One item per line even when compact: still one JSON document, and grep-able.
        sep = ",\n    " if self.indent else ",\n"
        if self.file.tell():
            self.file.write(sep)
        self.file.write(sep.join(self._pending))
        self._pending = []

    def copy_to(self, out: IO[str]) -> None:
        if self.file is None:  # never more than a batch: no temporary file
            out.write((",\n    " if self.indent else ",\n").join(self._pending))
            self._pending = []
            return
        self._flush()
        self.file.seek(0)
        while True:  # shutil.copyfileobj, without importing shutil (and zlib, bz2, lzma) for it
            chunk = self.file.read(1 << 20)
            if not chunk:
                break
            out.write(chunk)
        self.file.close()
        self.file = None

    def lines_to(self, out: IO[str]) -> None:
        """The items one per line (jsonl); only for compact spills, whose items are one line each."""
        if self.file is None:
            for item in self._pending:
                out.write(item)
                out.write("\n")
            self._pending = []
            return
        self._flush()
        self.file.seek(0)
        for line in self.file:
            out.write(line.rstrip(",\n"))
            out.write("\n")
        self.file.close()
        self.file = None

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


class _Direct:
    """The streams array, written to the output as the capture is read (the bulk of the
    document: a temporary copy would cost as much disk, or RAM where /tmp is tmpfs)."""

    def __init__(self, out: IO[str], opening: str, indent: bool) -> None:
        self.out = out
        self.opening = opening
        self.indent = indent
        self.count = 0
        self.started = False
        self._pending: list[str] = []

    def add_encoded(self, text: str) -> None:
        self._pending.append(text)
        self.count += 1
        if len(self._pending) >= _BATCH:
            self.flush()

    def add_many(self, texts: list[str]) -> None:
        self._pending.extend(texts)
        self.count += len(texts)
        if len(self._pending) >= _BATCH:
            self.flush()

    def flush(self) -> None:
        sep = ",\n    " if self.indent else ",\n"
        if not self.started:
            self.out.write(self.opening)
            self.started = True
            if self._pending:
                self.out.write(sep[1:])
        elif self._pending:
            self.out.write(sep)
        if self._pending:
            self.out.write(sep.join(self._pending))
            self._pending = []


class JsonReport:
    """The sink behind `analyze --format json|jsonl`."""

    def __init__(self, selection: Selection, out: Optional[IO[str]] = None, headers: bool = False,
                 indent: bool = False) -> None:
        """`out`: where --format json goes (its streams are written there as they come);
        None for --format jsonl, which lists findings only."""
        self.selection = selection
        self.out = out
        self.headers = headers
        self.indent = indent
        self.connections = _Spill(indent)
        self.streams = _Direct(out, "{" + self._key("streams") + "[", indent) if out is not None else None
        # Compact streams are encoded and collected by compiled code (results.CompactStreams).
        self.compact = CompactStreams(selection, headers) if out is not None and not indent else None
        if self.compact is not None and self.streams is not None:
            self.compact.write = self.streams.add_many
        self.stream_count = 0
        self.findings: dict[tuple[int, int], _Spill] = {}
        self.grpc_calls = 0
        self.severity_counts = {sev: 0 for sev in SEVERITIES}
        self.max_rank = -1

    # ---- Sink ----------------------------------------------------------------------------

    def _key(self, k: str) -> str:
        return f'\n  "{k}": ' if self.indent else f'"{k}":'

    def encode_stream(self, rec, findings: list[Finding]) -> Optional[tuple]:
        """(the stream's JSON after its opening brace, whether it is a gRPC call): encoded
        where the stream was decoded; the connection id is put in front where the results
        meet (it is "conn", the first key). Compact JSON comes from `compact`, which the
        decoding side calls directly."""
        if self.compact is not None:
            return self.compact.encode(rec)
        if not self.selection.method_ok(rec.method):
            return None
        if self.out is None:
            return (None, rec.grpc)  # jsonl: counted, not written
        obj = rec.to_json(headers=self.headers)
        del obj["conn"]
        return (_pretty(obj, 2)[1:], rec.grpc)

    def add_stream(self, item: tuple, conn: int) -> None:
        if self.compact is not None:
            self.compact.add(item, conn)
            return
        if not self.selection.conn_ok(conn):
            return
        body, grpc = item
        self.stream_count += 1
        if body is None:
            pass
        elif self.indent:
            self.streams.add_encoded(f'{{\n      "conn": {conn},{body}' if body != "}" else f'{{"conn": {conn}}}')
        else:
            self.streams.add_encoded(f'{{"conn":{conn},{body}')
        if grpc:
            self.grpc_calls += 1

    def connection(self, conn, violations: list) -> None:
        if self.selection.connection(conn):
            self.connections.add(conn.to_json())

    def finding(self, f: Finding) -> None:
        if not self.selection.finding(f):
            return
        key = (-f.rank, KINDS.index(f.kind))
        spill = self.findings.get(key)
        if spill is None:
            spill = self.findings[key] = _Spill(self.indent)
        spill.add(f.to_json())
        self.severity_counts[f.severity] += 1
        self.max_rank = max(self.max_rank, f.rank)

    # ---- output ----------------------------------------------------------------------------

    def write_json(self, capture: dict) -> None:
        """The rest of the document after the streams: connections, findings, capture, summary."""
        out = self.out
        compact = self.compact
        if compact is not None:
            compact.flush()
        summary = {
            "connections": self.connections.count,
            "streams": compact.count if compact is not None else self.stream_count,
            "grpc_calls": compact.grpc_calls if compact is not None else self.grpc_calls,
            "findings": {sev: self.severity_counts[sev] for sev in ("error", "warning", "info")},
        }
        nl, item = ("\n", "\n    ") if self.indent else ("", "\n")
        key = self._key
        enc = (lambda o: _pretty(o, 1)) if self.indent else _dumps
        self.streams.flush()
        out.write(("\n  ]," if self.indent and self.streams.count else "],"))
        for name, spills in (("connections", [self.connections]),
                             ("findings", [self.findings[k] for k in sorted(self.findings)])):
            out.write(key(name) + "[")
            first = True
            for spill in spills:
                if not spill.count:
                    continue
                out.write(item if first else "," + item)
                first = False
                spill.copy_to(out)
            if not first and self.indent:
                out.write("\n  ")
            out.write("],")
        out.write(key("capture") + enc(capture) + ",")
        out.write(key("summary") + enc(summary) + nl + "}\n")

    def write_jsonl(self, out: IO[str]) -> None:
        """The findings, one object per line."""
        for k in sorted(self.findings):
            self.findings[k].lines_to(out)
        self.close()

    def close(self) -> None:
        for spill in (self.connections, *self.findings.values()):
            spill.close()


def analysis_json(analysis, findings: list, streams: list, connections: list, headers: bool = False) -> dict:
    """The same document from an in-memory Analysis (the TUI's export)."""
    cap = analysis.capture.to_json()
    cap["frames"] = analysis.frames
    return {
        "capture": cap,
        "connections": [c.to_json() for c in connections],
        "streams": [s.to_json(headers=headers) for s in streams],
        "findings": [f.to_json() for f in findings],
        "summary": {
            "connections": len(connections),
            "streams": len(streams),
            "grpc_calls": sum(1 for s in streams if s.grpc),
            "findings": {sev: sum(1 for f in findings if f.severity == sev) for sev in ("error", "warning", "info")},
        },
    }


__all__ = ["JsonReport", "analysis_json", "sec"]
