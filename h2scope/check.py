"""`h2scope check PATH...`: a CI regression check of stored captures against what was accepted.

Each capture is analyzed exactly as `h2scope analyze` does (the same model, no re-parsing)
and compared with its expectations: a **baseline** of accepted findings and **policies**.

Where expectations live
-----------------------
* ``h2scope-expect.toml`` in a capture's directory: ``[defaults]`` (policies and analysis
  settings for every capture in that directory) and one ``[captures."NAME"]`` table per
  capture (NAME is the file name in that directory), or
* ``NAME.h2scope-expect.toml`` beside the capture: the same keys as a ``[captures."NAME"]``
  table, at top level. A capture is described in one place only; the directory's
  ``[defaults]`` still apply under it.

Directories are not inherited: ``captures/h2scope-expect.toml`` does not apply to
``captures/grpcio/``, so a result never depends on which path the check was started from.

Keys of a capture table (and of ``[defaults]``, except ``baseline``)::

    baseline = [                      # accepted findings; `h2scope check --update` writes it
      { kind = "data-after-rst", conn = "127.0.0.1:50071 / 127.0.0.1", stream = 1,
        method = "/demo.Demo/ServerStream", severity = "error", verdict = "server after peer-rst",
        packets = [17, 18, 21] },
    ]
    data-after-rst = 0                # policy: at most N findings of this kind (any finding kind)
    max-overrun = "50ms"              # policy: no deadline-exceeded overrun above this (s, ms, us, ns)
    require-deadline = ['^/demo\\.Demo/']   # policy: calls whose :path matches carry a valid grpc-timeout
    max-severity = "warning"          # policy: no finding above this severity
    grace = "10ms"                    # analysis: like analyze --grace
    storm-count = 10                  # analysis: like analyze --storm-count
    storm-window = "1s"               # analysis: like analyze --storm-window
    decode-as = [50051]               # analysis: like analyze --decode-as
    note = "why this capture exists"  # free text, kept by --update

Baseline identity
-----------------
A finding is matched by (kind, connection, stream id, method) — never by list order,
connection ids or time. The connection is named by what stays the same when the same
scenario is recorded again: the server's ip:port and the client's ip, ``"SERVER / CLIENTIP"``
(the client's port is ephemeral). Several findings with one identity are counted
(``count = 2``). ``severity`` and ``verdict`` (who ended a late call, who kept sending after
which reset, why a stream was lost) are the finding's verdict: a matched finding whose
verdict differs fails as *changed*. ``packets`` is evidence for people (it is shown when a
finding goes missing) and is not compared. Keys left out of an entry match anything.

Results: *passed*; *improved* (accepted findings are gone: passes, fails with --strict);
*regressed* (new or changed findings, or a policy violated); *unbaselined* (no baseline
yet: fails until --update writes one); *missing* (expectations for a capture that is not
there); *error* (unreadable capture). Exit 0 all pass, 1 a regression, 2 usage or
unreadable input. Without --update nothing is ever written (except --junit's file).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Optional

from .check_cli import add_parser
from .errors import CaptureError
from .findings import SEVERITIES, SEVERITY_RANK

EXIT_OK = 0
EXIT_REGRESSION = 1
EXIT_ERROR = 2

DIR_FILE = "h2scope-expect.toml"
BESIDE_SUFFIX = ".h2scope-expect.toml"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")
SKIP_DIRS = {"node_modules", "__pycache__"}
MAX_PACKETS_STORED = 12
MAX_PACKETS_SHOWN = 12

# Detail keys that make up a finding's verdict, per kind.
VERDICT_KEYS = {
    "deadline-exceeded": ("ended_by",),
    "data-after-rst": ("by", "after"),
    "stream-lost": ("cause",),
    "cancel-storm": ("scope",),
    "protocol-violation": ("by",),
}
VERDICT_JOIN = {"data-after-rst": " after "}

POLICY_KEYS = ("max-overrun", "require-deadline", "max-severity")
SETTING_KEYS = ("grace", "storm-count", "storm-window", "decode-as")
ENTRY_KEYS = ("kind", "conn", "stream", "method", "severity", "verdict", "count", "packets")

FAILING = ("regressed", "unbaselined", "missing")

HEADER = """\
# h2scope check expectations for the captures in this directory.
# `h2scope check --update` rewrites the baselines (and this file's layout); policies,
# analysis settings, `note` values and the summary comments above baseline entries are kept;
# other comments are not.
# Format: h2scope/check.py's docstring, or `h2scope check --help`.
"""


class UsageError(Exception):
    """A problem with the command line or an expectation file: one line, exit 2."""


def _kinds() -> tuple[str, ...]:
    from .rules import KINDS

    return KINDS


# --------------------------------------------------------------------------- values

_DURATION = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(s|ms|us|µs|ns)?\s*")
_UNIT = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}


def parse_duration(value: Any, where: str) -> float:
    """'50ms', '1.5s', '200us', '0' or a number of seconds → seconds."""
    if isinstance(value, bool):
        raise UsageError(f"{where}: expected a duration like \"50ms\", got {value!r}")
    if isinstance(value, (int, float)):
        if value < 0 or math.isnan(value):
            raise UsageError(f"{where}: a duration cannot be negative: {value!r}")
        return float(value)
    if isinstance(value, str):
        m = _DURATION.fullmatch(value)
        if m:
            return float(m.group(1)) * _UNIT[m.group(2) or "s"]
    raise UsageError(f"{where}: not a duration: {value!r} (e.g. \"50ms\", \"1.5s\", \"200us\")")


def fmt_seconds(s: float) -> str:
    from .rules.common import ms

    return ms(int(round(s * 1e9)))


def _packets_text(packets: list[int]) -> str:
    if not packets:
        return "no packets"
    shown = ", ".join(map(str, packets[:MAX_PACKETS_SHOWN]))
    more = f", … ({len(packets) - MAX_PACKETS_SHOWN} more)" if len(packets) > MAX_PACKETS_SHOWN else ""
    return f"packet{'s' if len(packets) > 1 else ''} {shown}{more}"


# --------------------------------------------------------------------------- identity

@dataclass(frozen=True)
class Key:
    kind: str
    conn: Optional[str]
    stream: Optional[int]
    method: Optional[str]

    def sort_key(self, kinds: tuple[str, ...]) -> tuple:
        return (kinds.index(self.kind) if self.kind in kinds else len(kinds), self.kind, self.conn or "",
                -1 if self.stream is None else self.stream, self.method or "")

    def describe(self) -> str:
        parts = [self.kind]
        if self.stream is not None:
            parts.append(f"stream {self.stream}")
        if self.method:
            parts.append(self.method)
        if self.conn:
            parts.append(f"[{self.conn}]")
        return " ".join(parts)


def conn_label(conn) -> str:
    """'SERVER_IP:PORT / CLIENT_IP' — what survives re-recording the same scenario."""
    client_ip = conn.client.rsplit(":", 1)[0] if ":" in conn.client else conn.client
    return f"{conn.server} / {client_ip}"


@dataclass
class Item:
    """One finding of the capture as it is today."""

    key: Key
    severity: str
    verdict: Optional[str]
    packets: list[int]
    summary: str
    details: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"kind": self.key.kind, "severity": self.severity, "conn": self.key.conn,
                "stream": self.key.stream, "method": self.key.method, "verdict": self.verdict,
                "packets": self.packets, "summary": self.summary}


@dataclass
class Entry:
    """One accepted finding (or several with the same identity and verdict: count)."""

    key: Key
    severity: Optional[str] = None
    verdict: Optional[str] = None
    count: int = 1
    packets: list[int] = field(default_factory=list)
    summary: Optional[str] = None  # written as a comment; not read back

    def signature(self) -> tuple:
        return (self.key, self.severity, self.verdict, self.count, tuple(self.packets))

    def matches(self, item: Item) -> bool:
        return (item.key == self.key and (self.severity is None or self.severity == item.severity)
                and (self.verdict is None or self.verdict == item.verdict))

    def to_json(self) -> dict:
        return {"kind": self.key.kind, "severity": self.severity, "conn": self.key.conn,
                "stream": self.key.stream, "method": self.key.method, "verdict": self.verdict,
                "count": self.count, "packets": self.packets}


def verdict_of(finding) -> Optional[str]:
    keys = VERDICT_KEYS.get(finding.kind)
    if not keys:
        return None
    values = [str(finding.details.get(k)) for k in keys if finding.details.get(k) is not None]
    return VERDICT_JOIN.get(finding.kind, " ").join(values) or None


def items_of(analysis) -> list[Item]:
    conns = {c.id: c for c in analysis.connections}
    out = []
    for f in analysis.findings:
        c = conns.get(f.conn) if f.conn is not None else None
        label = conn_label(c) if c is not None else (f"conn {f.conn}" if f.conn is not None else None)
        out.append(Item(Key(f.kind, label, f.stream, f.method), f.severity, verdict_of(f),
                        list(f.packets), f.summary, dict(f.details)))
    return out


def baseline_from(items: list[Item]) -> list[Entry]:
    """The baseline that accepts exactly these findings."""
    groups: dict[tuple, list[Item]] = defaultdict(list)
    for it in items:
        groups[(it.key, it.severity, it.verdict)].append(it)
    entries = []
    for (key, severity, verdict), its in groups.items():
        packets = sorted({p for it in its for p in it.packets})[:MAX_PACKETS_STORED]
        summary = its[0].summary + (f" (and {len(its) - 1} more like it)" if len(its) > 1 else "")
        entries.append(Entry(key, severity, verdict, len(its), packets, summary))
    return sort_entries(entries)


def sort_entries(entries: list[Entry]) -> list[Entry]:
    kinds = _kinds()
    return sorted(entries, key=lambda e: (e.key.sort_key(kinds), e.severity or "", e.verdict or ""))


@dataclass
class Comparison:
    new: list[Item] = field(default_factory=list)
    missing: list[Entry] = field(default_factory=list)  # count = how many are gone
    changed: list[tuple[Entry, Item]] = field(default_factory=list)


def compare(items: list[Item], baseline: list[Entry]) -> Comparison:
    """Match today's findings against the accepted ones as multisets, by identity."""
    left = list(items)
    remaining: list[list] = []  # [entry, unmatched count]
    # Entries that pin more of the verdict match first, so a looser entry cannot steal their findings.
    for entry in sorted(baseline, key=lambda e: (e.severity is None, e.verdict is None)):
        n = entry.count
        i = 0
        while n and i < len(left):
            if entry.matches(left[i]):
                left.pop(i)
                n -= 1
            else:
                i += 1
        if n:
            remaining.append([entry, n])
    result = Comparison()
    for slot in remaining:
        entry, n = slot
        i = 0
        while n and i < len(left):
            if left[i].key == entry.key:
                result.changed.append((entry, left.pop(i)))
                n -= 1
            else:
                i += 1
        if n:
            e = entry
            result.missing.append(Entry(e.key, e.severity, e.verdict, n, e.packets, e.summary))
    result.new = left
    return result


# --------------------------------------------------------------------------- expectation files

def _is_capture_name(name: str) -> bool:
    low = name.lower()
    if low.endswith(BESIDE_SUFFIX):
        return False
    if low.endswith(CAPTURE_SUFFIXES):
        return True
    if low.endswith(".gz"):
        stem = low[:-3]
        return stem.endswith(CAPTURE_SUFFIXES) or "." not in stem
    return False


def _check_table(tbl: dict, where: str, *, allow_baseline: bool) -> dict:
    """Validate one capture (or defaults) table; return it with parsed values under '_parsed'."""
    kinds = _kinds()
    parsed: dict[str, Any] = {}
    for key, value in tbl.items():
        at = f"{where}: {key}"
        if key in kinds:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise UsageError(f"{at}: expected a count (0 or more), got {value!r}")
            parsed[key] = value
        elif key == "max-overrun":
            parsed[key] = parse_duration(value, at)
        elif key == "max-severity":
            if value not in SEVERITIES:
                raise UsageError(f"{at}: expected one of {', '.join(SEVERITIES)}, got {value!r}")
            parsed[key] = value
        elif key == "require-deadline":
            pats = [value] if isinstance(value, str) else value
            if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
                raise UsageError(f"{at}: expected a regular expression or a list of them")
            compiled = []
            for p in pats:
                try:
                    compiled.append(re.compile(p))
                except re.error as e:
                    raise UsageError(f"{at}: bad regular expression {p!r}: {e}") from None
            parsed[key] = compiled
        elif key in ("grace", "storm-window"):
            parsed[key] = parse_duration(value, at)
        elif key == "storm-count":
            if isinstance(value, bool) or not isinstance(value, int) or value < 2:
                raise UsageError(f"{at}: expected a count of 2 or more, got {value!r}")
            parsed[key] = value
        elif key == "decode-as":
            ports = [value] if isinstance(value, int) and not isinstance(value, bool) else value
            if not isinstance(ports, list) or not all(
                    isinstance(p, int) and not isinstance(p, bool) and 0 < p < 65536 for p in ports):
                raise UsageError(f"{at}: expected a port or a list of ports, got {value!r}")
            parsed[key] = tuple(ports)
        elif key == "note":
            if not isinstance(value, str):
                raise UsageError(f"{at}: expected a string")
        elif key == "baseline" and allow_baseline:
            parsed[key] = _parse_baseline(value, f"{where}: baseline")
        else:
            hint = " (the baseline belongs to a capture, not to [defaults])" if key == "baseline" else ""
            raise UsageError(f"{where}: unknown key {key!r}{hint}; expected a finding kind, "
                             f"{', '.join(POLICY_KEYS + SETTING_KEYS)}, note or baseline")
    return parsed


def _parse_baseline(value: Any, where: str) -> list[Entry]:
    kinds = _kinds()
    if not isinstance(value, list):
        raise UsageError(f"{where}: expected a list of {{ kind = ..., ... }} tables")
    out = []
    for i, e in enumerate(value, 1):
        at = f"{where} entry {i}"
        if not isinstance(e, dict):
            raise UsageError(f"{at}: expected a table like {{ kind = \"data-after-rst\", stream = 1 }}")
        unknown = set(e) - set(ENTRY_KEYS)
        if unknown:
            raise UsageError(f"{at}: unknown key {sorted(unknown)[0]!r}; expected {', '.join(ENTRY_KEYS)}")
        kind = e.get("kind")
        if kind not in kinds:
            raise UsageError(f"{at}: kind must be one of {', '.join(kinds)}, got {kind!r}")
        for name in ("conn", "method", "verdict"):
            if name in e and not isinstance(e[name], str):
                raise UsageError(f"{at}: {name} must be a string")
        stream = e.get("stream")
        if stream is not None and (isinstance(stream, bool) or not isinstance(stream, int) or stream < 0):
            raise UsageError(f"{at}: stream must be a stream id")
        severity = e.get("severity")
        if severity is not None and severity not in SEVERITIES:
            raise UsageError(f"{at}: severity must be one of {', '.join(SEVERITIES)}")
        count = e.get("count", 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise UsageError(f"{at}: count must be 1 or more")
        packets = e.get("packets", [])
        if not isinstance(packets, list) or not all(isinstance(p, int) and not isinstance(p, bool) for p in packets):
            raise UsageError(f"{at}: packets must be a list of packet numbers")
        out.append(Entry(Key(kind, e.get("conn"), stream, e.get("method")), severity, e.get("verdict"),
                         count, list(packets)))
    return out


def _load_toml(path: str) -> dict:
    import tomllib  # here: only `check` reads TOML, and the import costs 4 ms of every command's start

    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"{path}: not valid TOML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise UsageError(f"{path}: cannot read: {getattr(e, 'strerror', None) or e}") from None


def _keep_comments(path: str, tables) -> None:
    """Give baseline entries back the one-line summary comment written above them, so an
    --update that rewrites the file keeps the comments of the captures it did not touch."""
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError:
        return
    above: dict[str, str] = {}
    for prev, line in zip(lines, lines[1:]):
        p, cur = prev.strip(), line.strip()
        if p.startswith("# ") and cur.startswith("{") and cur.endswith("},"):
            above[cur[:-1]] = p[2:]
    if not above:
        return
    for tbl in tables:
        for e in tbl.get("baseline") or ():
            if e.summary is None:
                e.summary = above.get(_toml_value(_entry_table(e)))


class DirExpectations:
    """The expectations of one directory: its h2scope-expect.toml and beside files."""

    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.path = os.path.join(directory, DIR_FILE)
        self.exists = os.path.isfile(self.path)
        self.defaults_raw: dict = {}
        self.defaults: dict = {}
        self.captures_raw: dict[str, dict] = {}  # name → raw table (in file order)
        self.captures: dict[str, dict] = {}  # name → parsed
        self.beside: dict[str, tuple[str, dict, dict]] = {}  # name → (path, raw, parsed)
        if self.exists:
            data = _load_toml(self.path)
            for key in data:
                if key not in ("defaults", "captures"):
                    raise UsageError(f"{self.path}: unknown top-level key {key!r}; expected [defaults] "
                                     "and [captures.\"NAME\"] tables")
            d = data.get("defaults", {})
            if not isinstance(d, dict):
                raise UsageError(f"{self.path}: defaults must be a table")
            self.defaults_raw = d
            self.defaults = _check_table(d, f"{self.path} [defaults]", allow_baseline=False)
            caps = data.get("captures", {})
            if not isinstance(caps, dict):
                raise UsageError(f"{self.path}: captures must be a table of [captures.\"NAME\"] tables")
            for name, tbl in caps.items():
                where = f"{self.path} [captures.{_toml_key(name)}]"
                if not isinstance(tbl, dict):
                    raise UsageError(f"{where}: expected a table")
                if "/" in name or os.sep in name:
                    raise UsageError(f"{where}: name a capture in this directory only (each directory has "
                                     f"its own {DIR_FILE})")
                self.captures_raw[name] = tbl
                self.captures[name] = _check_table(tbl, where, allow_baseline=True)
            _keep_comments(self.path, self.captures.values())
        try:
            names = os.listdir(directory)
        except OSError:
            names = []
        for fname in sorted(names):
            if fname.endswith(BESIDE_SUFFIX) and len(fname) > len(BESIDE_SUFFIX):
                name = fname[: -len(BESIDE_SUFFIX)]
                path = os.path.join(directory, fname)
                raw = _load_toml(path)
                parsed = _check_table(raw, path, allow_baseline=True)
                _keep_comments(path, [parsed])
                if name in self.captures:
                    raise UsageError(f"{path}: {name} also has a [captures.{_toml_key(name)}] table in "
                                     f"{self.path}; describe a capture in one place only")
                self.beside[name] = (path, raw, parsed)

    def names(self) -> list[str]:
        return sorted(set(self.captures) | set(self.beside))

    def for_capture(self, name: str) -> tuple[Optional[str], dict]:
        """(file holding the capture's table or None, merged parsed settings)."""
        merged = dict(self.defaults)
        merged.pop("baseline", None)
        if name in self.beside:
            path, _raw, parsed = self.beside[name]
            merged.update(parsed)
            return path, merged
        if name in self.captures:
            merged.update(self.captures[name])
            return self.path, merged
        return None, merged


# --------------------------------------------------------------------------- TOML writing

_BARE = re.compile(r"[A-Za-z0-9_-]+")


def _toml_key(k: str) -> str:
    return k if _BARE.fullmatch(k) else _toml_str(k)


def _toml_str(s: str) -> str:
    # Literal strings read best for regular expressions; fall back to basic strings.
    if "\\" in s and "'" not in s and not any(ord(c) < 0x20 or ord(c) == 0x7F for c in s):
        return f"'{s}'"
    out = []
    for c in s:
        if c == '"':
            out.append('\\"')
        elif c == "\\":
            out.append("\\\\")
        elif c == "\n":
            out.append("\\n")
        elif c == "\t":
            out.append("\\t")
        elif ord(c) < 0x20 or ord(c) == 0x7F:
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isinf(v) or math.isnan(v):
            return ("-inf" if v < 0 else "inf") if math.isinf(v) else "nan"
        return repr(v)
    if isinstance(v, str):
        return _toml_str(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    raise TypeError(f"cannot write {type(v).__name__} to TOML")


def _entry_table(e: Entry) -> dict:
    t: dict[str, Any] = {"kind": e.key.kind}
    if e.key.conn is not None:
        t["conn"] = e.key.conn
    if e.key.stream is not None:
        t["stream"] = e.key.stream
    if e.key.method is not None:
        t["method"] = e.key.method
    if e.severity is not None:
        t["severity"] = e.severity
    if e.verdict is not None:
        t["verdict"] = e.verdict
    if e.count != 1:
        t["count"] = e.count
    if e.packets:
        t["packets"] = e.packets
    return t


def _comment(text: str) -> str:
    return " ".join(text.split())


def _emit_table_body(raw: dict, baseline: Optional[list[Entry]]) -> list[str]:
    lines = [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in raw.items() if k != "baseline"]
    if baseline is not None:
        if not baseline:
            lines.append("baseline = []")
        else:
            lines.append("baseline = [")
            for e in baseline:
                if e.summary:
                    lines.append(f"  # {_comment(e.summary)}")
                lines.append(f"  {_toml_value(_entry_table(e))},")
            lines.append("]")
    return lines


def render_dir_file(defaults_raw: dict, captures: list[tuple[str, dict, Optional[list[Entry]]]]) -> str:
    out = [HEADER]
    if defaults_raw:
        out.append("[defaults]")
        out.extend(_emit_table_body(defaults_raw, None))
        out.append("")
    for name, raw, baseline in captures:
        out.append(f"[captures.{_toml_key(name)}]")
        out.extend(_emit_table_body(raw, baseline))
        out.append("")
    return "\n".join(out).rstrip("\n") + "\n"


def render_beside_file(raw: dict, baseline: Optional[list[Entry]]) -> str:
    return HEADER + "\n" + "\n".join(_emit_table_body(raw, baseline)) + "\n"


# --------------------------------------------------------------------------- policies

def check_policies(settings: dict, analysis, items: list[Item]) -> list[str]:
    kinds = _kinds()
    out = []
    by_kind: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        by_kind[it.key.kind].append(it)
    for kind in kinds:
        if kind in settings and len(by_kind[kind]) > settings[kind]:
            its = by_kind[kind]
            pk = sorted({p for it in its for p in it.packets})
            out.append(f"{kind} = {settings[kind]}: found {len(its)} "
                       f"({'; '.join(it.key.describe() for it in its[:5])}{'; …' if len(its) > 5 else ''}), "
                       f"{_packets_text(pk)}")
    if "max-severity" in settings:
        limit = SEVERITY_RANK[settings["max-severity"]]
        for it in items:
            if SEVERITY_RANK[it.severity] > limit:
                out.append(f"max-severity = {settings['max-severity']}: {it.severity} finding "
                           f"{it.key.describe()}, {_packets_text(it.packets)}")
    if "max-overrun" in settings:
        limit = settings["max-overrun"]
        for it in by_kind.get("deadline-exceeded", []):
            overrun = it.details.get("overrun")
            if overrun is not None and overrun > limit:
                out.append(f"max-overrun = {fmt_seconds(limit)}: {it.key.describe()} ran "
                           f"{fmt_seconds(overrun)} past its deadline, {_packets_text(it.packets)}")
    if settings.get("require-deadline"):
        conns = {c.id: c for c in analysis.connections}
        for rec in analysis.streams:
            if not rec.method or rec.timeout_ns is not None:
                continue
            pat = next((p for p in settings["require-deadline"] if p.search(rec.method)), None)
            if pat is None:
                continue
            if rec.grpc_timeout is None and (rec.headers_unknown or rec.request_headers is None):
                continue  # the request's headers are not all in the capture: cannot tell
            why = ("no grpc-timeout" if rec.grpc_timeout is None
                   else f"an invalid grpc-timeout {rec.grpc_timeout!r}")
            c = conns.get(rec.conn)
            where = f" [{conn_label(c)}]" if c is not None else ""
            out.append(f"require-deadline {pat.pattern!r}: stream {rec.stream} {rec.method}{where} has {why}, "
                       f"packet {rec.start_packet}")
    return out


# --------------------------------------------------------------------------- checking

@dataclass
class Result:
    capture: str
    status: str = "passed"
    expectations: Optional[str] = None
    findings: int = 0
    accepted: int = 0
    new: list[Item] = field(default_factory=list)
    missing: list[Entry] = field(default_factory=list)
    changed: list[tuple[Entry, Item]] = field(default_factory=list)
    policy: list[str] = field(default_factory=list)
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    update: list[str] = field(default_factory=list)  # what --update changed for this capture
    seconds: float = 0.0
    items: list[Item] = field(default_factory=list)
    baselined: bool = False

    def failed(self, strict: bool) -> bool:
        return self.status in FAILING or (strict and self.status == "improved")

    def message_lines(self) -> list[str]:
        lines = []
        if self.error:
            lines.append(f"cannot read the capture: {self.error}")
        if self.status == "unbaselined":
            what = (f"review its {self.findings} finding{'s' if self.findings != 1 else ''} below"
                    if self.findings else "it shows no findings")
            lines.append(f"no baseline for this capture: {what}, then accept with "
                         f"`h2scope check --update {self.capture}`")
        if self.status == "missing":
            lines.append(f"{self.expectations} has expectations for this capture but the file is not there "
                         "(`h2scope check --update DIR` drops them)")
        for it in self.new:
            lines.append(f"new finding: {it.key.describe()} ({it.severity}), {_packets_text(it.packets)}: "
                         f"{_comment(it.summary)}")
        for e, it in self.changed:
            what = []
            if e.severity and e.severity != it.severity:
                what.append(f"severity {e.severity} → {it.severity}")
            if e.verdict and e.verdict != it.verdict:
                what.append(f"verdict {e.verdict} → {it.verdict or '(none)'}")
            lines.append(f"changed verdict: {it.key.describe()}: {', '.join(what)}, {_packets_text(it.packets)}: "
                         f"{_comment(it.summary)}")
        for p in self.policy:
            lines.append(f"policy {p}")
        for e in self.missing:
            times = f" ×{e.count}" if e.count > 1 else ""
            lines.append(f"gone (improvement): {e.key.describe()}{times} "
                         f"({e.severity or 'any severity'}), was at {_packets_text(e.packets)}")
        return lines

    def to_json(self) -> dict:
        return {
            "capture": self.capture, "status": self.status, "expectations": self.expectations,
            "findings": self.findings, "accepted": self.accepted,
            "new": [it.to_json() for it in self.new],
            "missing": [e.to_json() for e in self.missing],
            "changed": [{"was": e.to_json(), "now": it.to_json()} for e, it in self.changed],
            "policy": self.policy, "error": self.error, "warnings": self.warnings,
            "update": self.update, "seconds": round(self.seconds, 3),
        }


def _walk(root: str) -> list[str]:
    found = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
        for fn in sorted(filenames):
            if _is_capture_name(fn):
                found.append(os.path.join(dirpath, fn))
    return found


def discover(paths: list[str]) -> tuple[list[str], set[str]]:
    """(capture paths in order, directories that were scanned whole)."""
    captures: list[str] = []
    seen: set[str] = set()
    scanned: set[str] = set()
    for p in paths:
        if os.path.isdir(p):
            found = _walk(p)
            for dirpath, dirnames, _files in os.walk(p):
                dirnames[:] = [d for d in dirnames if d not in SKIP_DIRS and not d.startswith(".")]
                scanned.add(os.path.normpath(dirpath))
            if not found:
                raise UsageError(f"no captures (.pcap, .pcapng, .cap, .gz) found under {p}")
        elif os.path.isfile(p):
            found = [p]
        elif os.path.exists(p):
            raise UsageError(f"not a file or directory: {p}")
        else:
            raise UsageError(f"no such file or directory: {p}")
        for c in found:
            c = os.path.normpath(c)
            real = os.path.realpath(c)
            if real not in seen:
                seen.add(real)
                captures.append(c)
    return captures, scanned


def _options(settings: dict):
    from .analysis import Options

    opts = Options()
    if "grace" in settings:
        opts.grace_s = settings["grace"]
    if "storm-count" in settings:
        opts.storm_count = settings["storm-count"]
    if "storm-window" in settings:
        opts.storm_window_s = settings["storm-window"]
    if "decode-as" in settings:
        opts.decode_as = settings["decode-as"]
    return opts


def check_capture(path: str, exp: DirExpectations) -> Result:
    from .analysis import analyze

    name = os.path.basename(path)
    source, settings = exp.for_capture(name)
    res = Result(capture=path, expectations=source)
    t0 = time.monotonic()
    try:
        analysis = analyze(path, _options(settings))
    except CaptureError as e:
        res.status, res.error = "error", str(e)
        return res
    except (OSError, ValueError, EOFError) as e:
        res.status, res.error = "error", f"{type(e).__name__}: {e}"
        return res
    except Exception as e:  # never a traceback in CI output; H2SCOPE_DEBUG=1 shows it
        if os.environ.get("H2SCOPE_DEBUG"):
            raise
        res.status = "error"
        res.error = (f"internal error {type(e).__name__}: {e} (set H2SCOPE_DEBUG=1 for details, "
                     "and please report it)")
        return res
    finally:
        res.seconds = time.monotonic() - t0
    res.warnings = list(analysis.capture.warnings)
    res.items = items_of(analysis)
    res.findings = len(res.items)
    baseline = settings.get("baseline")
    res.baselined = baseline is not None
    res.policy = check_policies(settings, analysis, res.items)
    if baseline is None:
        res.new = list(res.items)
        res.status = "unbaselined"
        return res
    res.accepted = sum(e.count for e in baseline)
    cmp = compare(res.items, baseline)
    res.new, res.missing, res.changed = cmp.new, cmp.missing, cmp.changed
    if res.new or res.changed or res.policy:
        res.status = "regressed"
    elif res.missing:
        res.status = "improved"
    return res


# --------------------------------------------------------------------------- --update

def _entries_differ(old: Optional[list[Entry]], new: list[Entry]) -> bool:
    if old is None:
        return True
    return sorted(map(repr, (e.signature() for e in old))) != sorted(map(repr, (e.signature() for e in new)))


def _describe_entry(e: Entry) -> str:
    times = f" ×{e.count}" if e.count > 1 else ""
    sev = f" ({e.severity})" if e.severity else ""
    return f"{e.key.describe()}{sev}{times}, {_packets_text(e.packets)}"


def _update_lines(old: Optional[list[Entry]], new: list[Entry]) -> list[str]:
    if old is None:
        lines = ["new baseline" + ("" if new else ": no findings")]
        return lines + [f"+ {_describe_entry(e)}" for e in new]
    def counts(entries):
        c: Counter = Counter()
        for e in entries:
            c[(e.key, e.severity, e.verdict)] += e.count
        return c
    co, cn = counts(old), counts(new)
    lines = []
    kinds = _kinds()
    for k in sorted(set(co) | set(cn), key=lambda k: (k[0].sort_key(kinds), k[1] or "", k[2] or "")):
        d = cn[k] - co[k]
        if d:
            e = Entry(k[0], k[1], k[2], abs(d),
                      next((x.packets for x in (new if d > 0 else old) if (x.key, x.severity, x.verdict) == k), []))
            lines.append(f"{'+' if d > 0 else '-'} {_describe_entry(e)}")
    if not lines:
        lines.append("refreshed evidence packets")
    return lines


def apply_update(results: list[Result], exps: dict[str, DirExpectations]) -> list[str]:
    """Rewrite the baselines of the checked captures; return the files written."""
    by_dir: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if r.status != "missing":
            by_dir[os.path.dirname(r.capture) or "."].append(r)
    gone_by_dir: dict[str, list[Result]] = defaultdict(list)
    for r in results:
        if r.status == "missing":
            gone_by_dir[os.path.dirname(r.capture) or "."].append(r)
    written = []
    for d in sorted(set(by_dir) | set(gone_by_dir)):
        exp = exps[d]
        dir_changed = False
        dir_tables: dict[str, tuple[dict, Optional[list[Entry]]]] = {
            name: (raw, exp.captures[name].get("baseline")) for name, raw in exp.captures_raw.items()}
        for r in by_dir.get(d, []):
            if r.status == "error":
                continue  # keep what was accepted; the capture could not be read
            name = os.path.basename(r.capture)
            new = baseline_from(r.items)
            if name in exp.beside:
                path, raw, parsed = exp.beside[name]
                old = parsed.get("baseline")
                if _entries_differ(old, new):
                    r.update = _update_lines(old, new)
                    _write(path, render_beside_file(raw, new))
                    written.append(path)
                continue
            raw, old = dir_tables.get(name, ({}, None))
            if _entries_differ(old, new):
                r.update = _update_lines(old, new)
                r.expectations = exp.path
                dir_tables[name] = (raw, new)
                dir_changed = True
        for r in gone_by_dir.get(d, []):
            name = os.path.basename(r.capture)
            if name in dir_tables and r.expectations == exp.path:
                del dir_tables[name]
                r.update = [f"removed the expectations of {name} from {exp.path}"]
                r.status = "removed"
                dir_changed = True
            else:
                r.update = [f"left {r.expectations} in place: delete it yourself if {name} is gone for good"]
        if dir_changed:
            tables = []
            for name in sorted(dir_tables):
                raw, baseline = dir_tables[name]
                tables.append((name, raw, baseline))
            _write(exp.path, render_dir_file(exp.defaults_raw, tables))
            written.append(exp.path)
    return written


def _write(path: str, text: str) -> None:
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise UsageError(f"cannot write {path}: {e.strerror or e}") from None


# --------------------------------------------------------------------------- output

def _status_word(r: Result, strict: bool) -> str:
    if r.status == "improved" and strict:
        return "improved (strict: fails)"
    return r.status


def render_text(results: list[Result], strict: bool, update: bool, written: list[str], out,
                quiet: bool = False) -> None:
    shown = [r for r in results if r.status != "passed" or r.update or r.warnings] if quiet else results
    rows = [("capture", "status", "findings", "accepted", "changes")]
    for r in shown:
        bits = []
        if r.new:
            bits.append(f"{len(r.new)} new")
        if r.changed:
            bits.append(f"{len(r.changed)} changed")
        if r.missing:
            bits.append(f"{sum(e.count for e in r.missing)} gone")
        if r.policy:
            bits.append(f"{len(r.policy)} policy")
        if r.error:
            bits.append("unreadable")
        if update and r.update:
            bits.append("baseline updated")
        rows.append((r.capture, _status_word(r, strict),
                     "-" if r.status in ("error", "missing") else str(r.findings),
                     str(r.accepted) if r.baselined else "-", ", ".join(bits)))
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows if shown else []:
        out.write("  ".join(row[i].ljust(widths[i]) if i in (0, 1) else row[i].rjust(widths[i])
                            for i in range(4)) + "  " + row[4] + "\n")
    details = [r for r in shown if (r.status != "passed" or r.warnings or r.update)]
    for r in details:
        out.write(f"\n{r.capture}: {_status_word(r, strict)}"
                  + (f" (expectations: {r.expectations})" if r.expectations else " (no expectations yet)") + "\n")
        for line in r.update:
            out.write(f"  updated: {line}\n")
        for line in r.message_lines():
            out.write(f"  {line}\n")
        for w in r.warnings:
            out.write(f"  capture warning: {w}\n")
    counts = Counter(r.status for r in results)
    order = ("passed", "updated", "improved", "regressed", "unbaselined", "missing", "removed", "error")
    out.write(f"{chr(10) if shown else ''}{len(results)} capture{'s' if len(results) != 1 else ''}: "
              + ", ".join(f"{counts[s]} {s}" for s in order if counts[s]) + "\n")
    if update:
        if written:
            for p in written:
                out.write(f"wrote {p}\n")
        else:
            out.write("baselines unchanged: nothing written\n")


def _xml_safe(s: str) -> str:
    return "".join(c if (c in "\t\n\r" or 0x20 <= ord(c) < 0xD800 or 0xE000 <= ord(c) <= 0xFFFD
                         or 0x10000 <= ord(c) <= 0x10FFFF) else f"\\x{ord(c):02x}" for c in s)


def write_junit(path: str, results: list[Result], strict: bool) -> None:
    import xml.etree.ElementTree as ET

    failures = sum(1 for r in results if r.status != "error" and r.failed(strict))
    errors = sum(1 for r in results if r.status == "error")
    total_time = sum(r.seconds for r in results)
    suites = ET.Element("testsuites", name="h2scope check", tests=str(len(results)), failures=str(failures),
                        errors=str(errors), time=f"{total_time:.3f}")
    suite = ET.SubElement(suites, "testsuite", name="h2scope check", tests=str(len(results)),
                          failures=str(failures), errors=str(errors), skipped="0", time=f"{total_time:.3f}")
    for r in results:
        d = os.path.dirname(r.capture)
        classname = ".".join(p for p in d.replace("\\", "/").split("/") if p and p not in (".", "..")) or "captures"
        case = ET.SubElement(suite, "testcase", classname=_xml_safe(classname), name=_xml_safe(r.capture),
                             file=_xml_safe(r.capture), time=f"{r.seconds:.3f}")
        lines = r.message_lines()
        body = _xml_safe("\n".join(lines + [f"capture warning: {w}" for w in r.warnings]))
        if r.status == "error":
            el = ET.SubElement(case, "error", message=_xml_safe(f"cannot read {r.capture}: {r.error}"),
                               type="unreadable")
            el.text = body
        elif r.failed(strict):
            el = ET.SubElement(case, "failure", message=_xml_safe(f"{r.capture}: {_headline(r)}"), type=r.status)
            el.text = body
        elif body:
            ET.SubElement(case, "system-out").text = body
    tree = ET.ElementTree(suites)
    ET.indent(tree)
    try:
        with open(path, "wb") as f:
            tree.write(f, encoding="utf-8", xml_declaration=True)
    except OSError as e:
        raise UsageError(f"cannot write the JUnit report {path}: {e.strerror or e}") from None


def _headline(r: Result) -> str:
    parts = []
    if r.status == "unbaselined":
        parts.append("no baseline yet")
    if r.status == "missing":
        parts.append("capture file is missing")
    if r.new:
        parts.append(f"{len(r.new)} new finding{'s' if len(r.new) > 1 else ''} "
                     f"({', '.join(sorted({it.key.kind for it in r.new}))})")
    if r.changed:
        parts.append(f"{len(r.changed)} changed verdict{'s' if len(r.changed) > 1 else ''}")
    if r.policy:
        parts.append(f"{len(r.policy)} policy violation{'s' if len(r.policy) > 1 else ''}")
    if r.missing:
        n = sum(e.count for e in r.missing)
        parts.append(f"{n} accepted finding{'s' if n > 1 else ''} gone")
    if r.error:
        parts.append(f"unreadable: {r.error}")
    return f"{r.status}: " + "; ".join(parts) if parts else r.status


def _gh_escape_data(s: str) -> str:
    return s.replace("%", "%25").replace("\r", "%0D").replace("\n", "%0A")


def _gh_escape_prop(s: str) -> str:
    return _gh_escape_data(s).replace(":", "%3A").replace(",", "%2C")


def github_annotations(results: list[Result], strict: bool) -> list[str]:
    out = []
    workspace = os.environ.get("GITHUB_WORKSPACE")
    for r in results:
        if r.status == "error" or r.failed(strict):
            level = "error"
        elif r.status == "improved":
            level = "warning"
        else:
            level = None
        if level is None:
            continue
        f = r.capture
        if workspace and os.path.isabs(f):
            try:
                f = os.path.relpath(f, workspace)
            except ValueError:
                pass
        msg = f"{_headline(r)}\n" + "\n".join(r.message_lines())
        out.append(f"::{level} file={_gh_escape_prop(f)},title={_gh_escape_prop('h2scope check: ' + r.status)}::"
                   f"{_gh_escape_data(msg)}")
    return out


# --------------------------------------------------------------------------- command

def run(args) -> int:
    try:
        return _run(args)
    except UsageError as e:
        print(f"h2scope: error: {e}", file=sys.stderr)
        return EXIT_ERROR


def _run(args) -> int:
    captures, scanned = discover(args.paths)
    exps: dict[str, DirExpectations] = {}

    def exp_for(d: str) -> DirExpectations:
        if d not in exps:
            exps[d] = DirExpectations(d)
        return exps[d]

    for c in captures:  # read every expectation file first: a typo stops the run before any work
        exp_for(os.path.dirname(c) or ".")
    for d in sorted(scanned):
        exp_for(d)
    results = [check_capture(c, exp_for(os.path.dirname(c) or ".")) for c in captures]
    present = {os.path.normpath(c) for c in captures}
    for d in sorted(scanned):
        exp = exps[d]
        for name in exp.names():
            path = os.path.normpath(os.path.join(d, name))
            if path not in present and not os.path.isfile(path):
                src = exp.beside[name][0] if name in exp.beside else exp.path
                results.append(Result(capture=path, status="missing", expectations=src))
    results.sort(key=lambda r: r.capture)

    written: list[str] = []
    if args.update:
        written = apply_update(results, exps)
        for r in results:  # the baselines now accept today's findings: only policies can still fail
            if r.status in ("error", "missing", "removed"):
                continue
            r.new, r.missing, r.changed = [], [], []
            r.accepted, r.baselined = r.findings, True
            r.status = "regressed" if r.policy else ("updated" if r.update else "passed")

    strict = args.strict
    if args.format == "json":
        doc = {
            "passed": not _failing(results, strict),
            "strict": strict,
            "update": args.update,
            "written": written,
            "summary": dict(Counter(r.status for r in results)),
            "captures": [r.to_json() for r in results],
        }
        json.dump(doc, sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        render_text(results, strict, args.update, written, sys.stdout, quiet=args.quiet)
    if args.junit:
        write_junit(args.junit, results, strict)
    if os.environ.get("GITHUB_ACTIONS"):
        stream = sys.stderr if args.format == "json" else sys.stdout
        for line in github_annotations(results, strict):
            print(line, file=stream)
    if any(r.status == "error" for r in results):
        return EXIT_ERROR
    return EXIT_REGRESSION if _failing(results, strict) else EXIT_OK


def _failing(results: list[Result], strict: bool) -> bool:
    return any(r.failed(strict) or r.status == "error" for r in results)


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m h2scope.check PATH...` (tests, and before the CLI wires `check` in)."""
    parser = argparse.ArgumentParser(prog="h2scope")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    add_parser(sub)
    args = parser.parse_args(["check", *(sys.argv[1:] if argv is None else argv)])
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
