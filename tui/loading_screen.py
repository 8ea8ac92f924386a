"""Shown while the worker reads the capture: a progress bar over the file's bytes."""

from __future__ import annotations

from typing import Optional

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import Screen
from textual.widgets import Footer, LoadingIndicator, ProgressBar, Static

from h2scope.rules.common import size


class LoadingScreen(Screen):
    def __init__(self, path: str, total: Optional[int]) -> None:
        super().__init__()
        self.path = path
        self.total = total

    def compose(self) -> ComposeResult:
        # no Header here: this screen can be gone before a Header finishes mounting
        with Vertical(id="loading-box"):
            yield Static("h2scope", id="loading-app")
            yield Static(Text.assemble("reading ", (self.path, "bold")), id="loading-title")
            yield ProgressBar(total=self.total or None, show_eta=False, id="loading-bar")
            yield Static(size(self.total) if self.total else "", id="loading-bytes")
            yield LoadingIndicator(id="loading-spinner")
            yield Static("", id="loading-error")
        yield Footer()

    def set_progress(self, done: int) -> None:
        bar = self.query_one(ProgressBar)
        if self.total:
            bar.update(progress=min(done, self.total))
            self.query_one("#loading-bytes", Static).update(f"{size(done)} of {size(self.total)}")
        else:
            self.query_one("#loading-bytes", Static).update(size(done))

    def show_error(self, message: str) -> None:
        self.query_one("#loading-spinner").display = False
        self.query_one(ProgressBar).display = False
        self.query_one("#loading-title", Static).update(Text.assemble("could not read ", (self.path, "bold")))
        err = self.query_one("#loading-error", Static)
        err.update(Text(f"{message}\n\npress q to quit"))
        err.add_class("error")
