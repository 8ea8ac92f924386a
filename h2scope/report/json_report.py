"""`--format json` and `--format jsonl`: the contract in DESIGN.md."""

from __future__ import annotations

import json
from typing import IO

from ..model import sec


def analysis_json(analysis, findings: list, streams: list, connections: list, headers: bool = False) -> dict:
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


def write_json(out: IO[str], analysis, findings: list, streams: list, connections: list,
               headers: bool = False) -> None:
    # Indented for a person at a terminal, compact for pipes and files. json.dumps, not
    # json.dump: dump streams through the pure-Python encoder chunk by chunk, which took 33 s
    # of 51 s on benchmarks W1-100MB; dumps encodes in C in 2.5 s.
    indent = 2 if out.isatty() else None
    out.write(json.dumps(analysis_json(analysis, findings, streams, connections, headers), indent=indent,
                         ensure_ascii=False, separators=None if indent else (",", ":")))
    out.write("\n")


def write_jsonl(out: IO[str], findings: list) -> None:
    for f in findings:
        out.write(json.dumps(f.to_json(), ensure_ascii=False))
        out.write("\n")


__all__ = ["analysis_json", "write_json", "write_jsonl", "sec"]
