"""The TUI (`h2scope tui`) driven by Textual's pilot on the stored real captures.

Packet numbers are never written down here: they come from the same analysis the app shows,
so the tests keep holding when a capture is re-recorded. Snapshots (SVG, tests/__snapshots__)
are the exception: regenerate them with `pytest tests/test_tui.py --snapshot-update` and look
at them when a capture or the layout changes.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
from pathlib import Path

import pytest

pytest.importorskip("textual")

from h2scope.analysis import Options, analyze  # noqa: E402
from h2scope.tui import add_parser  # noqa: E402
from h2scope.tui.app import H2ScopeApp  # noqa: E402
from h2scope.tui.connection_screen import ConnectionScreen  # noqa: E402
from h2scope.tui.gantt import Gantt  # noqa: E402
from h2scope.tui.help_screen import HelpScreen  # noqa: E402
from h2scope.tui.loading_screen import LoadingScreen  # noqa: E402
from h2scope.tui.main_screen import MainScreen  # noqa: E402
from h2scope.tui.stream_screen import StreamScreen  # noqa: E402
from h2scope.tui.streams_pane import StreamsPane  # noqa: E402
from h2scope.tui.view import Filter, View  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
ZOMBIE = "captures/h2peers/zombie_server.pcap"
STORM = "captures/h2peers/cancel_storm.pcap"
GOAWAY = "captures/h2peers/frames_after_goaway.pcap"
GRACEFUL = "captures/grpcgo/graceful_stop.pcap"
SIZE = (100, 30)


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    monkeypatch.chdir(REPO)


def pilot_test(fn):
    """Run an async pilot test without a pytest async plugin (none is a dependency)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        asyncio.run(fn(*args, **kwargs))
    return wrapper


def model(path: str):
    return analyze(path, Options(keep_frames=True))


async def wait_loaded(pilot) -> None:
    """The capture is read in a worker thread: wait for it and for the main screen."""
    app = pilot.app
    for _ in range(500):
        if app.loaded or app.error:
            break
        await pilot.pause(0.01)
    await app.workers.wait_for_complete()
    await pilot.pause()
    assert app.loaded, app.error
    for _ in range(100):  # the main screen focuses its first table
        if app.focused is not None:
            break
        await pilot.pause(0.01)


def streams_table(app):
    return app.screen.query_one(StreamsPane).table


def table_keys(table) -> list[str]:
    return [row.key.value for row in table.ordered_rows]


# -- from a finding to its evidence ----------------------------------------------------------


@pilot_test
async def test_zombie_two_keystrokes_to_the_reset_and_what_followed():
    finding = model(ZOMBIE).findings[0]
    assert finding.kind == "data-after-rst"
    app = H2ScopeApp(ZOMBIE)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        # opens on Findings with the worst finding under the cursor
        assert isinstance(app.screen, MainScreen)
        assert app.screen.active_tab == "findings"
        assert app.screen.query_one("#findings-table").cursor_row == 0
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, StreamScreen)
        assert screen.key == (finding.conn, finding.stream)
        table = screen.table
        marked = screen.marked_packets()
        assert set(marked) == set(finding.packets)
        # the rows carrying ● are exactly the evidence rows, read back from the table
        shown = {int(str(table.get_row_at(i)[1]).strip()) for i in range(table.row_count)
                 if str(table.get_row_at(i)[0]).strip() == "●"}
        assert shown == set(finding.packets)
        # the reset is among them, and the cursor sits on it, the first evidence frame
        rst = finding.details["rst_packet"]
        assert rst in marked
        current = table.timeline_row()
        assert current.frame["type"] == "RST_STREAM" and current.packet == rst
        # every frame after the reset from the server is marked
        late = [r.packet for r in table.timeline if r.late and r.frame and r.frame["dir"] == "s2c"]
        assert late and set(late) <= set(marked)
        # the deadline line is a row of the timeline
        assert any(r.marker and r.marker.startswith("deadline") for r in table.timeline)
        await pilot.press("n")  # next evidence frame
        await pilot.pause()
        assert table.timeline_row().packet == sorted(set(marked) - {rst})[0]
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


@pilot_test
async def test_connection_finding_opens_the_connection_with_its_evidence():
    finding = next(f for f in model(GOAWAY).findings if f.kind == "frames-after-goaway")
    assert finding.stream is None
    app = H2ScopeApp(GOAWAY)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("enter")
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, ConnectionScreen)
        assert screen.cid == finding.conn
        assert set(screen.marked_packets()) == set(finding.packets)
        assert any(r.frame and r.frame["type"] == "GOAWAY" for r in screen.table.timeline)
        # Enter on a frame of a stream opens that stream
        screen.table.move_cursor(row=next(i for i, r in enumerate(screen.table.timeline)
                                          if r.frame and r.frame["stream"] in finding.details["streams"]))
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StreamScreen)
        assert app.screen.key[1] in finding.details["streams"]
        await pilot.press("escape", "escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)


@pilot_test
async def test_graceful_stop_connections_chart_shows_goaways_and_close():
    a = model(GRACEFUL)
    conn = next(c for c in a.connections if c.goaways)
    app = H2ScopeApp(GRACEFUL)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        assert app.screen.active_tab == "overview"  # no findings: the overview first
        await pilot.press("4")
        await pilot.pause()
        gantt = app.screen.query_one(Gantt)
        assert app.focused is gantt
        row = gantt.rows[0]
        assert row.kind == "conn" and row.conn == conn.id
        assert len(row.goaways) == len(conn.goaways)
        drawn = gantt.render_line(1).text
        assert drawn.count("▼") >= 1 and drawn.rstrip().endswith("F")  # GOAWAY marks, closed by FIN
        await pilot.press("down")  # its stream
        await pilot.pause()
        assert gantt.current_row.kind == "stream"
        await pilot.press("up", "enter")
        await pilot.pause()
        assert isinstance(app.screen, ConnectionScreen)
        goaway_rows = [r for r in app.screen.table.timeline if r.frame and r.frame["type"] == "GOAWAY"]
        assert [r.packet for r in goaway_rows] == [g.packet for g in conn.goaways]


# -- the streams table ------------------------------------------------------------------------


@pilot_test
async def test_filter_narrows_the_streams_table_as_you_type():
    a = model(STORM)
    app = H2ScopeApp(STORM)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash")
        await pilot.pause()
        assert app.screen.active_tab == "streams"
        assert app.focused.id == "streams-filter"
        table = streams_table(app)
        assert table.row_count == len(a.streams) == 30
        await pilot.press(*"stream:5")  # typed: narrows at each key (stream:5 is exact)
        await pilot.pause()
        assert table_keys(table) == ["0/5"]
        await pilot.press("backspace")
        await pilot.pause()
        assert table.row_count == 30
        pane = app.screen.query_one(StreamsPane)
        pane.set_filter("status:cancel kind:storm")
        await pilot.pause()
        assert table.row_count == 30
        await pilot.press(*" c:7")
        await pilot.pause()
        assert table.row_count == 0
        assert "0 of 30 streams" in str(app.screen.query_one("#streams-status").render())
        await pilot.press("escape")  # back to the table, filter kept
        await pilot.pause()
        assert app.focused is table


@pilot_test
async def test_filter_fields_on_the_zombie_capture():
    app = H2ScopeApp(ZOMBIE)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("slash", *"method:unary")
        await pilot.pause()
        table = streams_table(app)
        assert table_keys(table) == ["0/3"]
        pane = app.screen.query_one(StreamsPane)
        for query, expected in (("kind:Z", ["0/1"]), ("kind:work-after", ["0/1"]), ("ServerStream", ["0/1"]),
                                ("status:ok", ["0/1", "0/3"]), ("conn:0", ["0/1", "0/3"]), ("", ["0/1", "0/3"])):
            pane.set_filter(query)
            await pilot.pause()
            assert table_keys(table) == expected, query


@pilot_test
async def test_sorting_changes_the_order():
    a = model(STORM)
    by_duration = sorted(a.streams, key=lambda s: s.duration_ns, reverse=True)
    app = H2ScopeApp(STORM)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("3")
        await pilot.pause()
        table = streams_table(app)
        before = table_keys(table)
        await pilot.press("s")  # start → duration, longest first
        await pilot.pause()
        after = table_keys(table)
        assert after != before
        assert after[0] == f"{by_duration[0].conn}/{by_duration[0].stream}"
        assert after == [f"{s.conn}/{s.stream}" for s in by_duration] or \
            [a.streams[[f"{s.conn}/{s.stream}" for s in a.streams].index(k)].duration_ns for k in after] == \
            [s.duration_ns for s in by_duration]
        await pilot.press("r")
        await pilot.pause()
        assert table_keys(table)[0] == f"{by_duration[-1].conn}/{by_duration[-1].stream}"
        # the mouse: click the "method" header, then Enter opens the stream under the cursor
        pane = app.screen.query_one(StreamsPane)
        assert pane.sort_key == "duration"
        x = sum(col.get_render_width(table) for col in table.ordered_columns[:3]) + 2
        await pilot.click(table, offset=(x, 0))
        await pilot.pause()
        assert pane.sort_key == "method"
        await pilot.press("enter")
        await pilot.pause()
        assert isinstance(app.screen, StreamScreen)


# -- export, help, back -------------------------------------------------------------------------


@pilot_test
async def test_export_writes_valid_json(tmp_path, monkeypatch):
    capture = str(REPO / ZOMBIE)
    finding = model(capture).findings[0]
    monkeypatch.chdir(tmp_path)
    app = H2ScopeApp(capture)
    async with app.run_test(size=SIZE) as pilot:
        await wait_loaded(pilot)
        await pilot.press("e")  # the finding under the cursor
        await pilot.pause()
        await pilot.press("enter", "e")  # the stream it opens
        await pilot.pause()
        await pilot.press("escape", "3", "e")  # the streams table (filtered: everything)
        await pilot.pause()
    files = sorted(p.name for p in tmp_path.glob("h2scope-export-*.json"))
    assert files == ["h2scope-export-finding-data-after-rst-0-1.json", "h2scope-export-stream-0-1.json",
                     "h2scope-export-streams.json"]
    doc = json.loads((tmp_path / files[0]).read_text())
    assert doc["finding"]["kind"] == "data-after-rst"
    assert doc["finding"]["packets"] == finding.packets
    assert {fr["packet"] for fr in doc["evidence_frames"]} == set(finding.packets)
    doc = json.loads((tmp_path / files[1]).read_text())
    assert doc["stream"]["stream"] == finding.stream
    assert {fr["packet"] for fr in doc["frames"] if fr["evidence"]} == set(finding.packets)
    doc = json.loads((tmp_path / files[2]).read_text())
    assert doc["count"] == 2 and [s["stream"] for s in doc["streams"]] == [1, 3]


@pilot_test
async def test_help_and_back():
    app = H2ScopeApp(ZOMBIE)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        await pilot.pause()
        assert isinstance(app.screen, MainScreen)
        await pilot.click("#--content-tab-connections")  # tabs take the mouse
        await pilot.pause()
        assert app.screen.active_tab == "connections"


@pilot_test
async def test_unreadable_capture_shows_the_error(tmp_path):
    bad = tmp_path / "not-a-capture.pcap"
    bad.write_bytes(b"this is not a capture file at all" * 4)
    app = H2ScopeApp(str(bad))
    async with app.run_test(size=SIZE) as pilot:
        # Wait for what the user sees, not for the worker: waiting on a failed worker raises
        # WorkerFailed or not depending on whether it had finished yet.
        for _ in range(200):
            if app.error:
                break
            await pilot.pause(0.05)
        assert app.error
        assert isinstance(app.screen, LoadingScreen)
        await pilot.press("q")
    assert app.view is None


@pilot_test
async def test_no_color_renders_every_screen(monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = H2ScopeApp(GOAWAY)
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_loaded(pilot)
        assert app.no_color
        for keys in (("enter",), ("escape", "3"), ("4",), ("2", "enter"), ("escape",)):
            await pilot.press(*keys)
            await pilot.pause()
            app.screen._compositor.render_update(full=True)  # every visible widget through the NO_COLOR filter


def test_parser_and_filter_syntax():
    parser = argparse.ArgumentParser()
    add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["tui", "x.pcap", "--decode-as", "8080", "--decode-as", "50051", "--grace", "50ms"])
    assert (args.command, args.capture, args.decode_as, args.grace) == ("tui", "x.pcap", [8080, 50051], 0.05)
    f = Filter.parse('method:"/demo.Demo/Unary" status:OK kind:Z conn:0 stream:x hello')
    assert (f.method, f.status, f.kind, f.conn, f.text) == (["/demo.demo/unary"], ["ok"], ["z"], [0], ["hello"])
    assert f.errors
    view = View(model(ZOMBIE))
    assert [r.key for r in view.filtered_rows(Filter.parse("kind:data-after-rst"))] == [(0, 1)]
    assert view.rows_by_key[(0, 1)].zombie_bytes > 0


# -- snapshots (100x30) ---------------------------------------------------------------------------


def _snap(snap_compare, path: str, *keys: str) -> bool:
    async def before(pilot):
        await wait_loaded(pilot)
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
        await pilot.wait_for_scheduled_animations()

    return snap_compare(H2ScopeApp(path), terminal_size=SIZE, run_before=before)


def test_snapshot_findings(snap_compare):
    assert _snap(snap_compare, ZOMBIE)


def test_snapshot_overview(snap_compare):
    assert _snap(snap_compare, ZOMBIE, "1")


def test_snapshot_stream_detail(snap_compare):
    assert _snap(snap_compare, ZOMBIE, "enter")


def test_snapshot_streams(snap_compare):
    assert _snap(snap_compare, STORM, "3")


def test_snapshot_connections(snap_compare):
    assert _snap(snap_compare, GOAWAY, "4")


def test_snapshot_connection_detail(snap_compare):
    assert _snap(snap_compare, GOAWAY, "enter")
