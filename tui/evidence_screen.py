"""What the stream and connection screens share: a frames table with evidence rows marked,
and moving between those rows."""

from __future__ import annotations

from textual.screen import Screen

from .tables import FramesTable
from .view import View


class EvidenceScreen(Screen):
    """A screen around one FramesTable whose evidence frames (a finding's packets) are marked."""

    what = "screen"  # "stream" or "connection", for messages

    def __init__(self, view: View, *, evidence: frozenset[int] = frozenset(), finding=None) -> None:
        super().__init__()
        self.view = view
        self.evidence = evidence
        self.finding = finding

    @property
    def table(self) -> FramesTable:
        return self.query_one(FramesTable)

    def on_mount(self) -> None:
        table = self.table
        table.focus()
        if table.note:
            self.notify(table.note)
        self.call_after_refresh(table.focus_evidence)

    def marked_packets(self) -> list[int]:
        return self.table.marked_packets()

    def action_next_evidence(self) -> None:
        table = self.table
        if not table.marked:
            self.notify(f"no evidence frames on this {self.what}")
            return
        later = [i for i in table.marked if i > table.cursor_row]
        table.move_cursor(row=later[0] if later else table.marked[0])
