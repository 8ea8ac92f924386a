"""Shared fixtures: where the stored captures are, and tshark (required, never skipped)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from h2scope.native import ENV as PURE_ENV
from h2scope.native import compiled_modules, stale_modules

ROOT = Path(__file__).resolve().parent.parent
CAPTURES_DIR = ROOT / "captures"
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".gz", ".cap")


def capture_files() -> list[Path]:
    """Every stored capture (recursively), excluding vendored node_modules."""
    return sorted(
        p for p in CAPTURES_DIR.rglob("*")
        if p.is_file() and p.name.endswith(CAPTURE_SUFFIXES) and "node_modules" not in p.parts
    )


@pytest.fixture(scope="session")
def captures_dir() -> Path:
    assert CAPTURES_DIR.is_dir(), f"{CAPTURES_DIR} is missing"
    return CAPTURES_DIR


@pytest.fixture(scope="session")
def tshark() -> str:
    """Path of tshark. Missing tshark is a failure, not a skip: the differential tests are
    the point of these suites."""
    path = shutil.which("tshark")
    if path is None:
        pytest.fail("tshark is required for these tests: apt-get install -y tshark", pytrace=False)
    return path


@pytest.fixture(scope="session")
def capinfos() -> str:
    path = shutil.which("capinfos")
    if path is None:
        pytest.fail("capinfos (from the tshark/wireshark-common package) is required: "
                    "apt-get install -y tshark", pytrace=False)
    return path


@pytest.fixture(scope="session")
def tshark_of(tshark):
    """tshark's view of a capture (pcapgen.TsharkView), cached; the stored captures are
    read in parallel on first use."""
    from concurrent.futures import ThreadPoolExecutor

    import pcapgen

    cache: dict = {}

    def get(path) -> "pcapgen.TsharkView":
        key = str(path)
        if key not in cache:
            if not cache:
                stored = [str(p) for p in capture_files()]
                with ThreadPoolExecutor(4) as pool:
                    for p, view in zip(stored, pool.map(lambda p: pcapgen.tshark_view(tshark, p), stored)):
                        cache[p] = view
            if key not in cache:
                cache[key] = pcapgen.tshark_view(tshark, key)
        return cache[key]

    return get


# ---- compiled and interpreted (h2scope/native.py) -------------------------------------------

def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "interpreted: the test spies on or patches functions inside the hot path, which "
        "compiled code calls directly; when the hot path is compiled it runs in a subprocess "
        f"with {PURE_ENV}=1, against the same sources")


def pytest_sessionstart(session) -> None:
    stale = stale_modules()
    if stale:
        pytest.exit(f"compiled modules are older than their sources ({', '.join(stale)}): rebuild with "
                    f"`pip install -e .`, or run with {PURE_ENV}=1", returncode=2)


_REPORT_ENV = "H2SCOPE_INTERPRETED_REPORT"  # set in the interpreted subprocess: where to write outcomes
_outcomes_written: dict = {}


def pytest_collection_modifyitems(config, items) -> None:
    config.h2scope_interpreted = [i.nodeid for i in items if i.get_closest_marker("interpreted")]


def pytest_runtest_logreport(report) -> None:
    if os.environ.get(_REPORT_ENV) and (report.when == "call" or report.failed):
        _outcomes_written[report.nodeid] = {"outcome": report.outcome, "text": report.longreprtext[-6000:]}


def pytest_sessionfinish(session) -> None:
    path = os.environ.get(_REPORT_ENV)
    if path:
        with open(path, "w") as f:
            json.dump(_outcomes_written, f)


def _interpreted_outcomes(config) -> dict:
    """Runs every selected `interpreted` test once, in one subprocess, and keeps the outcomes."""
    cached = getattr(config, "h2scope_interpreted_outcomes", None)
    if cached is None:
        with tempfile.TemporaryDirectory() as tmp:
            report = os.path.join(tmp, "outcomes.json")
            r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                                *config.h2scope_interpreted], cwd=ROOT, capture_output=True, text=True,
                               env={**os.environ, PURE_ENV: "1", _REPORT_ENV: report})
            cached = {}
            if os.path.exists(report):
                with open(report) as f:
                    cached = json.load(f)
            cached["__output__"] = r.stdout[-4000:] + r.stderr[-2000:]
        config.h2scope_interpreted_outcomes = cached
    return cached


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    if pyfuncitem.get_closest_marker("interpreted") is None or not compiled_modules():
        return None
    outcomes = _interpreted_outcomes(pyfuncitem.config)
    got = outcomes.get(pyfuncitem.nodeid)
    if got is None:
        pytest.fail(f"did not run when interpreted ({PURE_ENV}=1):\n{outcomes['__output__']}", pytrace=False)
    if got["outcome"] != "passed":
        pytest.fail(f"{got['outcome']} when interpreted ({PURE_ENV}=1):\n{got['text']}", pytrace=False)
    return True
