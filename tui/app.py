"""The h2scope TUI: load the capture in a worker, then browse findings → streams → frames."""

from __future__ import annotations

import os
import time
from typing import Optional

from textual import work
from textual.app import App
from textual.binding import Binding
from textual.worker import Worker, WorkerState

from h2scope.analysis import Analysis, Options, analyze

from .view import View


class H2ScopeApp(App[int]):
    """`h2scope tui CAPTURE`."""

    CSS_PATH = "h2scope.tcss"
    TITLE = "h2scope"
    ENABLE_COMMAND_PALETTE = False
    BINDINGS = [
        Binding("question_mark", "help", "Help"),
        Binding("q", "quit", "Quit"),
        Binding("ctrl+c", "quit", "Quit", show=False, priority=True),
    ]

    def __init__(self, path: str, options: Optional[Options] = None, *, analysis: Optional[Analysis] = None) -> None:
        super().__init__()
        self.path = path
        self.options = options or Options(keep_frames=True)
        self.options.keep_frames = True
        self.view: Optional[View] = View(analysis) if analysis is not None else None
        self.error: Optional[str] = None
        self.sub_title = os.path.basename(path)
        self._last_progress = 0.0

    # -- loading ------------------------------------------------------------------------

    def on_mount(self) -> None:
        from .loading_screen import LoadingScreen

        try:
            total = os.path.getsize(self.path)
        except OSError:
            total = None
        if self.view is not None:  # a model built elsewhere (tests, embedding)
            from .main_screen import MainScreen

            self.push_screen(MainScreen(self.view))
            return
        self.push_screen(LoadingScreen(self.path, total))
        self.load()

    @work(thread=True, exclusive=True, group="load", exit_on_error=False)
    def load(self) -> View:
        result = analyze(self.path, self.options, progress=self._progress)
        return View(result)

    def _progress(self, done: int) -> None:
        now = time.monotonic()
        if now - self._last_progress < 0.1:
            return
        self._last_progress = now
        self.call_from_thread(self._set_progress, done)

    def _set_progress(self, done: int) -> None:
        from .loading_screen import LoadingScreen

        if isinstance(self.screen, LoadingScreen):
            self.screen.set_progress(done)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "load":
            return
        if event.state == WorkerState.SUCCESS:
            self.view = event.worker.result
            self._show_main()
        elif event.state == WorkerState.ERROR:
            from .loading_screen import LoadingScreen

            err = event.worker.error
            self.error = str(err) if err is not None else "unknown error"
            if os.environ.get("H2SCOPE_DEBUG") and err is not None:
                import traceback

                self.error += "\n" + "".join(traceback.format_exception(err))
            if isinstance(self.screen, LoadingScreen):
                self.screen.show_error(self.error)

    def _show_main(self) -> None:
        from .main_screen import MainScreen

        for w in self.view.analysis.capture.warnings:
            self.notify(w, title="capture warning", severity="warning", timeout=8)
        self.switch_screen(MainScreen(self.view))

    @property
    def loaded(self) -> bool:
        from .main_screen import MainScreen

        return self.view is not None and any(isinstance(s, MainScreen) for s in self.screen_stack)

    # -- navigation used by every screen -------------------------------------------------

    def open_stream(self, key, evidence: frozenset[int] = frozenset(), finding=None) -> None:
        from .stream_screen import StreamScreen

        if key not in self.view.streams:
            self.notify(f"no stream {key[1]} on connection {key[0]}", severity="warning")
            return
        self.push_screen(StreamScreen(self.view, key, evidence=frozenset(evidence), finding=finding))

    def open_connection(self, cid: int, evidence: frozenset[int] = frozenset(), finding=None) -> None:
        from .connection_screen import ConnectionScreen

        if cid not in self.view.connections:
            self.notify(f"no connection {cid}", severity="warning")
            return
        self.push_screen(ConnectionScreen(self.view, cid, evidence=frozenset(evidence), finding=finding))

    def open_finding(self, f) -> None:
        """A finding's evidence: its stream's timeline, or its connection's when it has no single stream."""
        if f.conn is not None and f.stream is not None and (f.conn, f.stream) in self.view.streams:
            self.open_stream((f.conn, f.stream), frozenset(f.packets), f)
        elif f.conn is not None:
            self.open_connection(f.conn, frozenset(f.packets), f)
        else:
            self.notify("this finding is about the whole capture; its packets are "
                        + ", ".join(map(str, f.packets[:20])), timeout=8)

    def export(self, what: str, payload: dict) -> Optional[str]:
        from .export import write_export

        try:
            path = write_export(what, payload)
        except OSError as e:
            self.notify(f"export failed: {e}", severity="error")
            return None
        self.notify(f"exported to {path}", title="export")
        return path

    def action_help(self) -> None:
        from .help_screen import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())
