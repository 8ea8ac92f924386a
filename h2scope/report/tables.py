"""Tables of numbers computed with polars: the per-method summary."""

from __future__ import annotations

import polars as pl

from ..grpc.status import status_name
from ..http2.constants import error_name


def _short_outcome(s) -> str:
    """The status column: the gRPC status, or the reset that ended the call before one arrived."""
    if s.rst_by is not None and (s.grpc_status is None or s.status_after_reset):
        return f"RST {error_name(s.rst_code or 0)}"
    if s.grpc_status is not None:
        return status_name(s.grpc_status)
    if s.http_status is not None and not s.grpc:
        return str(s.http_status)
    return "none"


def method_table(findings: list, streams: list) -> pl.DataFrame:
    """One row per :path: calls, statuses, deadline coverage, p50/p99 duration, overruns, zombies."""
    exceeded = {(f.conn, f.stream) for f in findings if f.kind == "deadline-exceeded"}
    zombie: dict[tuple, int] = {}
    for f in findings:
        if f.kind == "data-after-rst":
            zombie[(f.conn, f.stream)] = zombie.get((f.conn, f.stream), 0) + f.details.get("bytes", 0)
    rows = [
        {
            "method": s.method,
            "duration_ms": (s.end_ns - s.start_ns) / 1e6 if s.end_ns is not None else None,
            "status": _short_outcome(s),
            "has_deadline": s.timeout_ns is not None,
            "exceeded": (s.conn, s.stream) in exceeded,
            "zombie_bytes": zombie.get((s.conn, s.stream), 0),
        }
        for s in streams if s.method is not None
    ]
    if not rows:
        return pl.DataFrame()
    df = pl.DataFrame(rows, schema={"method": pl.String, "duration_ms": pl.Float64, "status": pl.String,
                                    "has_deadline": pl.Boolean, "exceeded": pl.Boolean,
                                    "zombie_bytes": pl.Int64})
    statuses = (
        df.group_by("method", "status").len()
        .sort(["method", "len", "status"], descending=[False, True, False])
        .group_by("method", maintain_order=True)
        .agg((pl.col("status") + " " + pl.col("len").cast(pl.String)).str.join(", ").alias("statuses"))
    )
    return (
        df.group_by("method")
        .agg(
            pl.len().alias("calls"),
            (pl.col("has_deadline").mean() * 100).alias("with_deadline_pct"),
            pl.col("duration_ms").quantile(0.5, "nearest").alias("p50_ms"),
            pl.col("duration_ms").quantile(0.99, "nearest").alias("p99_ms"),
            pl.col("exceeded").sum().alias("deadline_exceeded"),
            pl.col("zombie_bytes").sum().alias("zombie_bytes"),
        )
        .join(statuses, on="method", how="left")
        .select("method", "calls", "statuses", "with_deadline_pct", "p50_ms", "p99_ms", "deadline_exceeded",
                "zombie_bytes")
        .sort(["calls", "method"], descending=[True, False])
    )
