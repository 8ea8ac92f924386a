"""`e`: write what is selected to h2scope-export-<what>.json in the working directory."""

from __future__ import annotations

import json
import os
import re
from typing import Optional

from h2scope.report.json_report import analysis_json
from h2scope.report.tables import method_table

from .view import View


def write_export(what: str, payload: dict, directory: Optional[str] = None) -> str:
    """Write `payload` as JSON; never overwrite an earlier export (…-2.json, …-3.json)."""
    directory = directory or os.getcwd()
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "-", what).strip("-") or "selection"
    path = os.path.join(directory, f"h2scope-export-{slug}.json")
    n = 2
    while os.path.exists(path):
        path = os.path.join(directory, f"h2scope-export-{slug}-{n}.json")
        n += 1
    with open(path, "x", encoding="utf-8") as out:
        json.dump(payload, out, indent=2, ensure_ascii=False, default=str)
        out.write("\n")
    return path


def _frame(fr: dict, evidence: frozenset[int]) -> dict:
    out = dict(fr)
    out["headers"] = [list(h) for h in fr["headers"]] if fr.get("headers") else fr.get("headers")
    if out["headers"] is None:
        out.pop("headers")
    out["evidence"] = fr["packet"] in evidence
    return out


def stream_payload(view: View, key, evidence: frozenset[int] = frozenset()) -> dict:
    s = view.streams[key]
    return {
        "capture": view.analysis.capture.path,
        "stream": s.to_json(),
        "findings": [f.to_json() for f in view.findings_by_stream.get(key, [])],
        "frames": [_frame(fr, evidence) for fr in view.stream_frames(key)],
        "evidence_packets": sorted(evidence),
    }


def connection_payload(view: View, cid: int, evidence: frozenset[int] = frozenset()) -> dict:
    c = view.connections[cid]
    return {
        "capture": view.analysis.capture.path,
        "connection": c.to_json(),
        "streams": [s.to_json() for s in view.analysis.streams if s.conn == cid],
        "findings": [f.to_json() for f in view.findings_by_conn.get(cid, [])],
        "evidence_frames": [_frame(fr, evidence) for fr in view.conn_frames(cid) if fr["packet"] in evidence],
        "evidence_packets": sorted(evidence),
    }


def finding_payload(view: View, f) -> dict:
    out = {"capture": view.analysis.capture.path, "finding": f.to_json()}
    keys = view.finding_streams(f)
    out["streams"] = [view.streams[k].to_json() for k in keys]
    evidence = frozenset(f.packets)
    frames = []
    if f.conn is not None:
        frames = [_frame(fr, evidence) for fr in view.conn_frames(f.conn) if fr["packet"] in evidence]
    out["evidence_frames"] = frames
    return out


def streams_payload(view: View, rows, query: str) -> dict:
    return {
        "capture": view.analysis.capture.path,
        "filter": query,
        "count": len(rows),
        "streams": [dict(view.streams[r.key].to_json(), findings=r.kinds) for r in rows],
    }


def overview_payload(view: View) -> dict:
    a = view.analysis
    out = analysis_json(a, a.findings, a.streams, a.connections)
    table = method_table(a.findings, a.streams)
    out["methods"] = table.to_dicts() if table.height else []
    return out
