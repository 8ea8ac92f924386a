"""The main screen: Overview, Findings, Streams and Connections as tabs (1–4 or the mouse)."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, TabbedContent, TabPane

from .connections_pane import ConnectionsPane
from .findings_pane import FindingsPane
from .overview_pane import OverviewPane
from .streams_pane import StreamsPane
from .tables import Table
from .view import View

TABS = ("overview", "findings", "streams", "connections")


class MainScreen(Screen):
    BINDINGS = [
        Binding("1", "tab('overview')", "Overview", show=False),
        Binding("2", "tab('findings')", "Findings", show=False),
        Binding("3", "tab('streams')", "Streams", show=False),
        Binding("4", "tab('connections')", "Connections", show=False),
        Binding("slash", "filter", "Filter"),
        Binding("e", "export", "Export"),
        Binding("escape", "back", "Back", show=False),
    ]

    def __init__(self, view: View) -> None:
        super().__init__()
        self.view = view
        self._want_filter = False  # `/`: the filter gets the focus once the Streams tab shows
        self.AUTO_FOCUS = "#findings-table" if view.findings else "#kinds-table"

    def compose(self) -> ComposeResult:
        yield Header()
        initial = "findings" if self.view.findings else "overview"
        with TabbedContent(initial=initial, id="tabs"):
            with TabPane("1 Overview", id="overview"):
                yield OverviewPane(self.view, id="overview-pane")
            with TabPane(f"2 Findings ({len(self.view.findings)})", id="findings"):
                yield FindingsPane(self.view, id="findings-pane")
            with TabPane(f"3 Streams ({len(self.view.rows)})", id="streams"):
                yield StreamsPane(self.view, id="streams-pane")
            with TabPane(f"4 Connections ({len(self.view.connections)})", id="connections"):
                yield ConnectionsPane(self.view, id="connections-pane")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_tab)

    @property
    def active_tab(self) -> str:
        return self.query_one(TabbedContent).active

    def _focus_tab(self) -> None:
        """Focus the main widget of the active tab (the table or the chart), or the filter after `/`."""
        tab = self.active_tab
        if tab == "streams" and self._want_filter:
            self._want_filter = False
            self.query_one(StreamsPane).focus_filter()
            return
        target = self.query_one(f"#{tab}-pane").query("Table, Gantt").first()
        if target is not None:
            target.focus()

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.call_after_refresh(self._focus_tab)

    def action_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        if tabs.active == tab:
            self._focus_tab()
        else:
            tabs.active = tab  # TabActivated moves the focus

    def action_filter(self) -> None:
        self._want_filter = True
        self.action_tab("streams")

    def show_streams(self, query: str) -> None:
        """Switch to the Streams tab with a filter applied (from the Overview's tables)."""
        self.query_one(TabbedContent).active = "streams"
        pane = self.query_one(StreamsPane)
        pane.set_filter(query)
        self.call_after_refresh(pane.table.focus)

    def action_back(self) -> None:
        if isinstance(self.focused, Input):
            self.focused.parent.query_one(Table).focus()

    def action_export(self) -> None:
        pane = self.query_one(f"#{self.active_tab}-pane")
        result = pane.export()
        if result is None:
            self.notify("nothing selected to export", severity="warning")
            return
        what, payload = result
        self.app.export(what, payload)
