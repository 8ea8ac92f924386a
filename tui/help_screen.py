"""`?`: the keys, the filter syntax and what the badges and glyphs mean."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

from .view import BADGES

HELP = """\
## Keys

| key | |
|---|---|
| `1` `2` `3` `4` | Overview, Findings, Streams, Connections (or click the tabs) |
| `↑` `↓` `PgUp` `PgDn` | move; the mouse works too (click, wheel, click a column header to sort) |
| `Enter` | open: a finding's evidence, a stream's timeline, a connection |
| `Esc` | back |
| `/` | filter the streams |
| `s` / `r` | streams: sort by the next column / reverse the order |
| `n` | stream or connection: next evidence frame |
| `h` | stream: request headers, response headers, trailers, messages |
| `c` | stream: its connection |
| `Tab` | connection: between the chart and the frames (Enter on a stream's row or frame opens it) |
| `e` | export what is selected as JSON (`h2scope-export-….json` in the current directory) |
| `?` | this help · `q` quit |

## Filter

Words are ANDed, case-insensitive, and match as you type:
`method:Unary` `status:cancel` `kind:data-after-rst` (or a badge letter, `kind:Z`)
`conn:0` `stream:5`, and any other word matches method, status, findings, authority.

## Badges

{badges}

## Stream timeline

`●` evidence of the finding you opened, `·` a frame after the stream was reset,
`┊` the deadline, `╳` the TCP connection closing.
Times are from the stream's start and against its deadline (`-` before it, `+` past it).
Flags: `ES` END_STREAM, `EH` END_HEADERS, `PAD` PADDED, `PRIO` PRIORITY.

Life chart: `H` headers, `T` trailers, `▌` a DATA frame, `█` several, `▒` after the reset,
`✕` RST_STREAM, `┊` deadline, `▼` GOAWAY, `─` the side's half of the stream still open.

Connections chart: `━` a call (green ok, red reset or error, yellow past its deadline,
magenta never ended), `┄` frames sent after a reset, `F`/`R` the connection closed
with FIN/RST, `»` still open.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,q,question_mark", "app.pop_screen", "Close")]

    def compose(self) -> ComposeResult:
        badges = "\n".join(f"- `{letter}` {kind}" for kind, letter in BADGES.items())
        with VerticalScroll(id="modal-box") as box:
            box.border_title = "h2scope help"
            box.border_subtitle = "Esc to close"
            yield Markdown(HELP.format(badges=badges))
