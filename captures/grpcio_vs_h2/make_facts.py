"""Rewrite facts.json for this directory from the captures themselves (tshark).

    /tmp/venv/bin/python captures/grpcio_vs_h2/make_facts.py [--summary]
"""
import glob
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from record_util import summary, write_facts  # noqa: E402

PATTERNS = ("*.pcap", "*.pcapng", "*.pcap.gz", "*.cap")


def port_of(name):
    return 50091


def main(show=False):
    names = sorted({os.path.basename(p) for pat in PATTERNS
                    for p in glob.glob(os.path.join(HERE, pat))})
    res = write_facts(HERE, {n: port_of(n) for n in names})
    print(f"facts.json: {len(res)} captures")
    if show:
        for n, f in res.items():
            print(summary(n, f))


if __name__ == "__main__":
    main("--summary" in sys.argv)
