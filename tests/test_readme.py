"""The README is the front door: its first commands must stay true."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text, re.S)
    assert block and text.index("```sh") < 200, "README must start with the two commands"
    return [line for line in block.group(1).splitlines() if line.strip()]


def test_readme_starts_with_install_analyze_and_install_test():
    first, second = _commands()[:2]
    assert "pip install ." in first and "h2scope analyze captures/" in first
    capture = re.search(r"h2scope analyze (captures/\S+)", first).group(1)
    assert (ROOT / capture).is_file()
    assert "'.[test]'" in second and "pytest" in second


def test_ci_runs_the_readme_test_command():
    test_cmd = _commands()[1].split("&&")[-1].strip()
    assert test_cmd in (ROOT / ".ci" / "run").read_text()
