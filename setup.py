"""Compiles the packet → frame → stream pipeline with mypyc, when it can.

The modules in h2scope.native.COMPILED are ordinary, type-checked Python. mypyc turns them
into C extensions with the same behaviour (tests/test_compiled.py compares the two on every
stored capture): `analyze --format json --jobs 1` on W1-20MB took 4.02 s of CPU
interpreted and 2.95 s compiled (best of 5; benchmarks/README.md has instruction counts).
Everything else (CLI, the rules' wording of findings, reports, TUI, check) stays
interpreted: it runs once per finding or once per capture, not per packet or stream.

It also builds three hand-written C extensions: HPACK's Huffman machine and decoding table
(h2scope/http2/_hpack_c.c; huffman.py and hpack_state.py say why), the pcap record scanner
(h2scope/capture/_scan_c.c; pcap.py says why) and a stream's JSON line
(h2scope/_jsonline_c.c). Set H2SCOPE_PURE_PYTHON=1 to install
without compiling. Without mypy or a C compiler the extensions are skipped (setuptools'
optional extensions) and h2scope runs as plain Python.
"""

from __future__ import annotations

import os
import sys

from setuptools import setup

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from h2scope.native import COMPILED  # noqa: E402  (the list lives with the code that reports it)


def c_modules() -> list:
    """The hand-written C extensions: HPACK's Huffman walk and decoding table
    (h2scope/http2/_hpack_c.c), the pcap record scanner (h2scope/capture/_scan_c.c) and the
    stream JSON line (h2scope/_jsonline_c.c)."""
    from setuptools import Extension

    return [Extension("h2scope.http2._hpack_c", ["h2scope/http2/_hpack_c.c"], optional=True),
            Extension("h2scope.capture._scan_c", ["h2scope/capture/_scan_c.c"], optional=True),
            Extension("h2scope._jsonline_c", ["h2scope/_jsonline_c.c"], optional=True)]


def ext_modules() -> list:
    if os.environ.get("H2SCOPE_PURE_PYTHON"):
        return []
    return mypyc_modules() + c_modules()


def mypyc_modules() -> list:
    try:
        from mypyc.build import mypycify
    except ImportError:
        return []
    try:
        exts = mypycify([name.replace(".", "/") + ".py" for name in COMPILED], opt_level="3", debug_level="0")
    except (Exception, SystemExit) as e:  # mypyc exits on a type error: still install, uncompiled
        print(f"h2scope: not compiling with mypyc ({e!r}); installing as plain Python", file=sys.stderr)
        return []
    for ext in exts:
        ext.optional = True  # no compiler: install the pure-Python package instead of failing
    return exts


setup(ext_modules=ext_modules())
