"""Which of h2scope's modules run compiled, and how to run without them.

setup.py compiles the per-packet pipeline with mypyc when it can; the compiled extension
sits next to its source and Python prefers it. H2SCOPE_PURE_PYTHON=1 in the environment
makes h2scope import every module from its .py source instead (tests/test_compiled.py uses
it to compare the two; a developer uses it to try an edit without rebuilding).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from typing import Optional, Sequence

ENV = "H2SCOPE_PURE_PYTHON"

# What setup.py compiles: the code that runs per packet, per frame and per stream (of the
# rules, the per-stream dispatch in rules/stream.py and cancel-storm, which sees every reset). The rest (CLI, the rules that word
# findings, reports, TUI, check) runs once per finding or per capture and stays interpreted.
COMPILED = (
    "h2scope.capture.link",
    "h2scope.capture.pcap",
    "h2scope.capture.pcapng",
    "h2scope.capture.reader",
    "h2scope.tcp.reassembly",
    "h2scope.http2.constants",
    "h2scope.http2.detect",
    "h2scope.http2.fastparse",
    "h2scope.http2.huffman",
    "h2scope.http2.hpack_state",
    "h2scope.http2.splitter",
    "h2scope.http2.lifecycle",
    "h2scope.http2.connection",
    "h2scope.grpc.messages",
    "h2scope.grpc.status",
    "h2scope.grpc.timeout",
    "h2scope.model",
    "h2scope.results",
    "h2scope.rules.stream",
    "h2scope.rules.cancel_storm",
    "h2scope.pipeline",
)


# The hand-written C extensions (setup.py), with their sources beside them.
C_EXTENSIONS = ("h2scope.http2._hpack_c", "h2scope.capture._scan_c", "h2scope._jsonline_c")


class SourceFirst(importlib.abc.MetaPathFinder):
    """Finds h2scope's modules as .py files even where a compiled extension sits beside them."""

    def find_spec(self, fullname: str, path: Optional[Sequence[str]], target=None):
        if path is None or not fullname.startswith("h2scope."):
            return None
        leaf = fullname.rpartition(".")[2]
        for entry in path:
            source = os.path.join(entry, leaf + ".py")
            if os.path.isfile(source):
                return importlib.util.spec_from_file_location(fullname, source)
        return None  # a package directory: the usual finders


def install_source_first() -> None:
    if not any(isinstance(f, SourceFirst) for f in sys.meta_path):
        sys.meta_path.insert(0, SourceFirst())


def compiled_modules() -> list[str]:
    """Names of the modules in COMPILED that are loaded from compiled extensions."""
    suffixes = tuple(importlib.machinery.EXTENSION_SUFFIXES)
    return [name for name in COMPILED
            if (getattr(importlib.import_module(name), "__file__", None) or "").endswith(suffixes)]


def stale_modules() -> list[str]:
    """Compiled modules whose .py (or .c) source changed after they were built (rebuild with
    `pip install -e .`, or run with H2SCOPE_PURE_PYTHON=1)."""
    stale = []
    for name in compiled_modules():
        ext = sys.modules[name].__file__
        assert ext is not None
        source = os.path.join(os.path.dirname(ext), name.rpartition(".")[2] + ".py")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(ext):
            stale.append(name)
    for name in C_EXTENSIONS:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.origin:
            continue
        source = os.path.join(os.path.dirname(spec.origin), name.rpartition(".")[2] + ".c")
        if os.path.exists(source) and os.path.getmtime(source) > os.path.getmtime(spec.origin):
            stale.append(name)
    return stale


def c_parts() -> list[str]:
    """What runs in the hand-written C extensions (setup.py), where they were built."""
    from . import model
    from .capture import pcap, pcapng
    from .http2 import hpack_state

    return [name for name, fn in (("HPACK decoding", hpack_state.C_TABLE),
                                  ("pcap records", pcap.C_SCAN and pcapng.C_SCAN),
                                  ("stream JSON", model._C_LINE)) if fn is not None]


def _listed(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def describe() -> str:
    """For --version: how this h2scope runs."""
    n = len(compiled_modules())
    parts = c_parts()
    c = ", " + _listed(parts) + " in C" if parts else ""
    if n:
        return f"{n} of {len(COMPILED)} hot-path modules compiled with mypyc{c}"
    return "pure Python" + (f": {ENV} is set" if os.environ.get(ENV) else c)
