"""Shared fixtures: where the stored captures are, and tshark (required, never skipped)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

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
