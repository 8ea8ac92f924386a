"""Findings: one small module per kind, each a function of the model."""

from __future__ import annotations

from ..findings import Finding
from . import cancel_storm, data_after_rst, deadlines, frames_after_goaway, protocol_violation, stream_lost

RULES = {
    "data-after-rst": data_after_rst.check,
    "frames-after-goaway": frames_after_goaway.check,
    "deadline-exceeded": deadlines.deadline_exceeded,
    "work-after-deadline": deadlines.work_after_deadline,
    "deadline-missing": deadlines.deadline_missing,
    "invalid-grpc-timeout": deadlines.invalid_timeout,
    "stream-lost": stream_lost.check,
    "cancel-storm": cancel_storm.check,
    "protocol-violation": protocol_violation.check,
}

KINDS = tuple(RULES)


def run_rules(analysis) -> list[Finding]:
    findings: list[Finding] = []
    for rule in RULES.values():
        findings.extend(rule(analysis))
    findings.sort(key=lambda f: (-f.rank, KINDS.index(f.kind), f.ts_ns))
    return findings
