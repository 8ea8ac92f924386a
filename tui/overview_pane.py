"""The capture at a glance: facts, findings by kind, and the per-method table."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import DataTable, Static

from h2scope.report.tables import method_table
from h2scope.rules.common import plural

from .export import overview_payload
from .tables import Table
from .styles import tone
from .view import BADGES, SEVERITY_LABEL, View, dur, size, utc


def capture_facts(view: View) -> Text:
    a = view.analysis
    cap = a.capture
    h2 = sum(1 for c in a.connections if c.protocol != "unknown")
    grpc = sum(1 for s in a.streams if s.grpc)
    text = Text()
    text.append(cap.path, style="bold")
    text.append(f"\n{cap.format}{' (gzip)' if cap.compressed else ''}, {', '.join(cap.link_types) or '?'}"
                f" · {cap.packets} packets · {utc(cap.first_ns)} + {dur(view.t1 - view.t0)}")
    text.append(f"\n{plural(len(a.connections), 'TCP connection')} ({h2} HTTP/2) · "
                f"{plural(len(a.streams), 'stream')} · {plural(grpc, 'gRPC call')} · {plural(a.frames, 'HTTP/2 frame')}")
    counts = {sev: sum(1 for f in view.findings if f.severity == sev) for sev in ("error", "warning", "info")}
    text.append("\nfindings: ")
    if not view.findings:
        text.append("none", style=tone("ok"))
    for sev in ("error", "warning", "info"):
        if counts[sev]:
            text.append(f"{counts[sev]} {sev}  ", style=tone(sev))
    for w in cap.warnings:
        text.append(f"\nwarning: {w}", style=tone("warning"))
    return text


class OverviewPane(VerticalScroll):
    def __init__(self, view: View, **kwargs) -> None:
        super().__init__(**kwargs)
        self.view = view
        self.kinds: list[str] = []
        self.methods: list[str] = []

    def compose(self) -> ComposeResult:
        yield Static(capture_facts(self.view), id="overview-facts")
        yield Static("Findings by kind  (Enter: the streams with it)", classes="section")
        yield Table(id="kinds-table")
        yield Static("Methods  (Enter: the calls to it)", classes="section")
        yield Table(id="methods-table")

    def on_mount(self) -> None:
        kinds = self.query_one("#kinds-table", Table)
        for col in ("", "kind", "severity", "count", "streams"):
            kinds.add_column(col)
        by_kind: dict[str, list] = {}
        for f in self.view.findings:
            by_kind.setdefault(f.kind, []).append(f)
        for kind, fs in by_kind.items():
            worst = max(fs, key=lambda f: f.rank).severity
            streams = {k for f in fs for k in self.view.finding_streams(f)}
            kinds.add_row(Text(BADGES.get(kind, "?"), style="bold"), kind,
                          Text(SEVERITY_LABEL[worst], style=tone(worst)), str(len(fs)), str(len(streams)),
                          key=kind)
            self.kinds.append(kind)
        if not by_kind:
            kinds.add_row("", Text("no findings", style=tone("ok")), "", "", "")
        methods = self.query_one("#methods-table", Table)
        df = method_table(self.view.findings, self.view.analysis.streams)
        for col in ("method", "calls", "statuses", "deadline %", "p50", "p99", "exceeded", "zombie"):
            methods.add_column(col)
        if df.height:
            for r in df.iter_rows(named=True):
                methods.add_row(
                    r["method"], str(r["calls"]), r["statuses"] or "",
                    f"{r['with_deadline_pct']:.0f}" if r["with_deadline_pct"] is not None else "-",
                    dur(int(r["p50_ms"] * 1e6)) if r["p50_ms"] is not None else "-",
                    dur(int(r["p99_ms"] * 1e6)) if r["p99_ms"] is not None else "-",
                    Text(str(r["deadline_exceeded"]), style=tone("warn") if r["deadline_exceeded"] else ""),
                    Text(size(r["zombie_bytes"]) if r["zombie_bytes"] else "-", style=tone("bad") if r["zombie_bytes"] else ""),
                )
                self.methods.append(r["method"])

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        if event.data_table.id == "kinds-table" and self.kinds:
            self.screen.show_streams(f"kind:{self.kinds[event.cursor_row]}")
        elif event.data_table.id == "methods-table" and self.methods:
            self.screen.show_streams(f'method:"{self.methods[event.cursor_row]}"')

    def export(self):
        return "overview", overview_payload(self.view)
