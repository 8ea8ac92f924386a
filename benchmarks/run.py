"""Benchmarks: h2scope against tshark (and pyshark on a slice), side by side, same files.

    python benchmarks/run.py                      # W1..W4 at 100 MB (generated if missing)
    python benchmarks/run.py --size 20 W1 W3      # smaller, selected workloads
    python benchmarks/run.py --files dump.pcap    # any captures you have

For each capture: wall time, packets/s, MB/s and peak RSS of each tool (each runs as its
own child process), and h2scope's ratio to tshark. h2scope runs twice: as it chooses
(two worker processes for a file of 32 MB or more on a multi-core machine) and with
--jobs 1. Peak memory is the whole process tree's: every 100 ms the PSS of the child and
its descendants is summed from /proc (pages shared after fork are counted once; wait4's
rusage would give only the largest process's RSS, which is recorded too).
Prints a table and writes benchmarks/results/<timestamp>.json. Targets (issue 7) are
reported, never asserted: h2scope >= 15x faster than tshark, peak RSS <= 100 MB.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import generate  # noqa: E402

PYSHARK_SLICE = 2000  # packets: pyshark is ~200 packets/s, a whole capture would take hours


def _tree_memory_kb(pid: int) -> int:
    """Memory of a process and all its descendants, from /proc: the sum of their PSS (each
    page shared after fork counted once, split among the sharers), else of their RSS."""
    total = 0
    todo = [pid]
    while todo:
        p = todo.pop()
        try:
            try:
                with open(f"/proc/{p}/smaps_rollup") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("Pss:"))
            except (OSError, StopIteration):
                with open(f"/proc/{p}/status") as f:
                    kb = next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))
            total += kb
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as f:
                    todo.extend(int(c) for c in f.read().split())
        except (OSError, ValueError, StopIteration):
            continue
    return total


def _run(cmd: list[str]) -> dict:
    """Run one child to completion: wall seconds, the process tree's peak memory (MB, PSS
    sampled every 100 ms) and the largest single process's peak RSS (MB, from wait4)."""
    peak = [0]
    done = threading.Event()
    start = time.perf_counter()
    with open(os.devnull, "wb") as devnull:
        proc = subprocess.Popen(cmd, stdout=devnull, stderr=devnull)

        def sample() -> None:
            while not done.wait(0.1):
                peak[0] = max(peak[0], _tree_memory_kb(proc.pid))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _pid, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
    wall = time.perf_counter() - start
    return {"seconds": wall, "peak_rss_mb": (peak[0] or usage.ru_maxrss) / 1024,
            "largest_process_rss_mb": usage.ru_maxrss / 1024, "exit": os.waitstatus_to_exitcode(status)}


def _install_kind() -> str:
    """"editable" (pip install -e) or "regular", from the installed distribution's metadata."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        direct = distribution("h2scope").read_text("direct_url.json")
    except PackageNotFoundError:
        return "not installed"
    return "editable" if direct and json.loads(direct).get("dir_info", {}).get("editable") else "regular"


def _packets(path: Path) -> int:
    from h2scope.capture.reader import CaptureReader

    with CaptureReader(str(path)) as reader:
        for _ in reader:
            pass
        return reader.packets


def bench_file(path: Path, port: int, repeat: int = 1) -> dict:
    size_mb = path.stat().st_size / 1048576
    packets = _packets(path)
    # The h2scope script; -P keeps the current directory off sys.path, so that a regular
    # install is not shadowed by the sources when run from the repository.
    h2scope = [sys.executable, "-P", "-c", "from h2scope.cli import console; console()",
               "analyze", str(path), "--format", "json", "--no-progress"]
    h2scope_1 = h2scope + ["--jobs", "1"]
    tshark = [shutil.which("tshark") or "tshark", "-n", "-r", str(path), "-o", "gui.max_tree_depth:1000000",
              "-d", f"tcp.port=={port},http2", "-Y", "http2", "-T", "fields", "-e", "frame.number",
              "-e", "http2.streamid", "-e", "http2.type"]
    pyshark = [sys.executable, "-c", (
        "import sys, pyshark\n"
        f"cap = pyshark.FileCapture(sys.argv[1], decode_as={{'tcp.port=={port}': 'http2'}}, keep_packets=False)\n"
        "n = 0\n"
        "for pkt in cap:\n"
        "    n += 1\n"
        f"    if n >= {PYSHARK_SLICE}:\n"
        "        break\n"
        "cap.close()\n"), str(path)]
    row = {"file": str(path), "size_mb": round(size_mb, 1), "packets": packets, "repeat": repeat}
    tools = (("h2scope", h2scope), ("h2scope_1", h2scope_1), ("tshark", tshark))
    runs: dict[str, list[dict]] = {name: [] for name, _ in tools}
    for _ in range(repeat):  # interleaved, so a slow spell of a shared machine hits every tool
        for name, cmd in tools:
            runs[name].append(_run(cmd))
    best = {name: dict(min(rs, key=lambda r: r["seconds"]), all_seconds=[r["seconds"] for r in rs],
                       peak_rss_mb=max(r["peak_rss_mb"] for r in rs)) for name, rs in runs.items()}
    best["pyshark"] = _run(pyshark)
    for name in ("h2scope", "h2scope_1", "tshark", "pyshark"):
        r = best[name]
        n = PYSHARK_SLICE if name == "pyshark" else packets
        r["packets_per_s"] = n / r["seconds"]
        r["mb_per_s"] = (size_mb * n / packets) / r["seconds"] if packets else 0
        row[name] = r
    row["speedup_vs_tshark"] = row["tshark"]["seconds"] / row["h2scope"]["seconds"]
    row["speedup_1_vs_tshark"] = row["tshark"]["seconds"] / row["h2scope_1"]["seconds"]
    return row


def _table(rows: list[dict]) -> str:
    head = (f"{'capture':<16} {'MB':>6} {'packets':>9} | {'h2scope s':>9} {'RSS MB':>6} {'MB/s':>5} | "
            f"{'--jobs 1 s':>10} {'RSS MB':>6} | {'tshark s':>8} {'RSS MB':>6} | {'pyshark pkt/s':>13} | "
            f"{'x tshark':>8} {'(1 job)':>7}")
    lines = [head, "-" * len(head)]
    for r in rows:
        h, h1, t, p = r["h2scope"], r["h2scope_1"], r["tshark"], r["pyshark"]
        lines.append(f"{Path(r['file']).name:<16} {r['size_mb']:>6} {r['packets']:>9} | {h['seconds']:>9.2f} "
                     f"{h['peak_rss_mb']:>6.0f} {h['mb_per_s']:>5.1f} | {h1['seconds']:>10.2f} "
                     f"{h1['peak_rss_mb']:>6.0f} | {t['seconds']:>8.2f} {t['peak_rss_mb']:>6.0f} | "
                     f"{p['packets_per_s']:>13.0f} | {r['speedup_vs_tshark']:>8.2f} {r['speedup_1_vs_tshark']:>7.2f}")
    return "\n".join(lines)


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("workloads", nargs="*", default=["W1", "W2", "W3", "W4"])
    ap.add_argument("--size", type=int, default=100, help="MB per generated capture (default 100)")
    ap.add_argument("--files", nargs="*", help="benchmark these captures instead of generated ones")
    ap.add_argument("--port", type=int, default=generate.SERVER_PORT, help="HTTP/2 port for tshark")
    ap.add_argument("--repeat", type=int, default=1, metavar="N",
                    help="run h2scope and tshark N times each, interleaved, and keep each one's fastest run "
                         "(memory: the largest peak); for shared machines whose speed drifts")
    args = ap.parse_args(argv)
    # As an installed h2scope runs: with its modules' bytecode cached (a sandbox may forbid
    # writing it, which would add compiling them to every run).
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    _run([sys.executable, "-P", "-c", "import h2scope.cli, h2scope.analysis, h2scope.parallel, h2scope.report.json_report"])
    if args.files:
        files = [Path(f) for f in args.files]
    else:
        files = []
        for wl in args.workloads:
            path = generate.DATA / f"{wl}-{args.size}MB.pcap"
            if not path.exists():
                generate.write(wl, args.size, path)
            files.append(path)
    rows = [bench_file(f, args.port, max(1, args.repeat)) for f in files]
    print(_table(rows))
    out = HERE / "results"
    out.mkdir(exist_ok=True)
    dest = out / f"{time.strftime('%Y%m%d-%H%M%S')}.json"
    from h2scope.native import describe

    build = describe()  # compiled with mypyc, or pure Python
    install = _install_kind()
    dest.write_text(json.dumps({"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0],
                                            "cpu": _cpu_model()}, "h2scope_build": build, "h2scope_install": install,
                                "rows": rows}, indent=2))
    print(f"h2scope build: {build}; {install} install")
    if install == "editable":
        print("(an editable install's import hook adds about 10 ms to every run, a tenth of W3's; "
              "the README's numbers come from a regular install, `pip install .`)")
    print(f"\nwrote {dest}")
    met = all(r["speedup_vs_tshark"] >= 15 and r["h2scope"]["peak_rss_mb"] <= 100 for r in rows)
    print("targets (>= 15x tshark, <= 100 MB RSS):", "met" if met else "NOT met")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
