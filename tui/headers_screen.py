"""`h` on a stream: its request headers, response headers, trailers and metadata, decoded."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from .view import View, header_lines, size


class HeadersScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,h", "app.pop_screen", "Close")]

    def __init__(self, view: View, stream) -> None:
        super().__init__()
        self.view = view
        self.stream = stream

    def compose(self) -> ComposeResult:
        s = self.stream
        text = Text()
        for title, headers in (("request headers", s.request_headers), ("response headers", s.response_headers),
                               ("trailers", s.trailers)):
            text.append(f"{title}\n", style="bold")
            lines = header_lines(headers)
            if s.trailers_only and title == "response headers":
                lines = ["(trailers-only response)"]
            text.append(("\n".join("  " + line for line in lines) if lines else "  (none seen)") + "\n\n")
        text.append("messages\n", style="bold")
        for side, name in ((0, "client → server"), (1, "server → client")):
            n = s.messages[side] if s.messages_known[side] else "?"
            text.append(f"  {name}: {n} gRPC messages, {size(s.message_bytes[side])}"
                        f" ({s.compressed_messages[side]} compressed) in {s.data_frames[side]} DATA frames, "
                        f"{size(s.data_bytes[side])}\n")
        if s.grpc_message:
            text.append(f"\ngrpc-message: {s.grpc_message}\n")
        with VerticalScroll(id="modal-box") as box:
            box.border_title = f"stream {s.stream} · conn {s.conn} · {s.method or ''}"
            box.border_subtitle = "Esc to close"
            yield Static(text)
