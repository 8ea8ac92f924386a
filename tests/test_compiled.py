"""The mypyc-compiled hot path (setup.py, h2scope/native.py) must say exactly what the
interpreted sources say: every report of every stored capture, generated workloads and
damaged captures, byte for byte, and the same one-line errors."""

from __future__ import annotations

import gzip
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import PURE_ENV, ROOT, capture_files
from h2scope.native import COMPILED, compiled_modules

# Runs h2scope's CLI on each input named in argv[2:], writing what each command printed, its
# stderr and its exit code to a JSON file (argv[1]).
_RUNNER = r"""
import contextlib, io, json, sys
from h2scope.cli import main
from h2scope.native import describe
results = {"describe": describe()}
for path in sys.argv[2:]:
    for args in (["analyze", path, "--format", "json"], ["analyze", path, "--headers", "--format", "json"],
                 ["analyze", path], ["frames", path]):
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = main(args)
            except SystemExit as e:
                code = e.code
        results[" ".join(args)] = [code, out.getvalue(), err.getvalue()]
with open(sys.argv[1], "w") as f:
    json.dump(results, f)
"""


def _reports(tmp_path: Path, inputs: list[str], pure: bool) -> dict:
    out = tmp_path / ("pure.json" if pure else "compiled.json")
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    env["NO_COLOR"] = "1"
    if pure:
        env[PURE_ENV] = "1"
    subprocess.run([sys.executable, "-c", _RUNNER, str(out), *inputs], cwd=ROOT, env=env, check=True, timeout=900)
    return json.loads(out.read_text())


def _inputs(tmp_path: Path) -> list[str]:
    paths = [str(p) for p in capture_files()]
    spec = importlib.util.spec_from_file_location("bench_generate", ROOT / "benchmarks" / "generate.py")
    gen = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gen)
    for workload in ("W1", "W2", "W3", "W4"):
        paths.append(str(gen.write(workload, 1, tmp_path / f"{workload}.pcap")))
    src = (ROOT / "captures" / "grpcio" / "multi_channel.pcap").read_bytes()
    damaged = {
        "cut.pcap": src[: len(src) * 2 // 3 + 7],
        "garbage.pcap": src[: len(src) // 2] + bytes(range(256)) * 8 + src[len(src) // 2:],
        "gz.pcap.gz": gzip.compress(src),
        "not-a-capture.pcap": b"this is not a capture\n" * 10,
        "empty.pcap": b"",
    }
    for name, data in damaged.items():
        (tmp_path / name).write_bytes(data)
        paths.append(str(tmp_path / name))
    return paths


@pytest.mark.skipif(not compiled_modules(), reason="this install is pure Python (no mypyc or no C compiler "
                    "when it was built); .ci/run fails unless the hot path is compiled")
def test_compiled_and_interpreted_print_the_same(tmp_path):
    inputs = _inputs(tmp_path)
    compiled = _reports(tmp_path, inputs, pure=False)
    pure = _reports(tmp_path, inputs, pure=True)
    assert compiled.pop("describe").startswith(f"{len(COMPILED)} of {len(COMPILED)} ")
    assert pure.pop("describe").startswith("pure Python")
    assert compiled.keys() == pure.keys()
    errors = 0
    for command, result in compiled.items():
        assert result == pure[command], command
        errors += result[0] == 2
    assert errors >= 2 * 4  # the two inputs that are not captures fail the same way in every command
    assert json.loads(compiled[f"analyze {inputs[0]} --format json"][1])["capture"]["packets"] > 0


def test_the_pure_switch_loads_every_module_from_source():
    env = {**os.environ, PURE_ENV: "1"}
    code = ("from h2scope.native import compiled_modules, COMPILED; import importlib, sys; "
            "mods = [importlib.import_module(m) for m in COMPILED]; "
            "from h2scope.http2 import huffman, hpack_state; from h2scope.capture import pcap; "
            "from h2scope import model; "
            "print(compiled_modules(), all(m.__file__.endswith('.py') for m in mods), huffman.C_WALK, "
            "hpack_state.C_TABLE, pcap.C_SCAN, model._C_LINE)")
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert r.stdout.split() == ["[]", "True", "None", "None", "None", "None"]  # the C extensions are off too


def test_version_says_how_h2scope_runs():
    exe = str(Path(sys.executable).with_name("h2scope"))
    env = {k: v for k, v in os.environ.items() if k != PURE_ENV}
    r = subprocess.run([exe, "--version"], env=env, capture_output=True, text=True)
    assert r.returncode == 0 and r.stderr == ""
    from h2scope import model
    from h2scope.capture import pcap
    from h2scope.http2 import hpack_state

    n = len(compiled_modules())
    parts = [name for name, fn in (("HPACK decoding", hpack_state.C_TABLE), ("pcap records", pcap.C_SCAN),
                                   ("stream JSON", model._C_LINE)) if fn]
    c = ", " + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)) + " in C" \
        if parts else ""
    expected = f"{n} of {len(COMPILED)} hot-path modules compiled with mypyc{c}" if n else f"pure Python{c}"
    assert r.stdout == f"h2scope 0.1.0 ({expected})\n"
    r = subprocess.run([exe, "--version"], env={**env, PURE_ENV: "1"}, capture_output=True, text=True)
    assert r.stdout == f"h2scope 0.1.0 (pure Python: {PURE_ENV} is set)\n"
