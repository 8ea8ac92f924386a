#!/usr/bin/env python3
"""Record the grpc-js captures (re-runnable): installs the pinned npm packages if needed,
records each scenario of scenario.js on loopback port 50053 with captures/record_util.py
(tcpdump --immediate-mode -B 16384; refuses drops and empty files), then writes facts.json
from the captures themselves with tshark (facts.py).

    python3 captures/grpcjs/record.py [scenario ...]

Needs (Debian 12): apt-get install -y tcpdump tshark nodejs npm (Node 18+).
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # captures/record_util.py
sys.path.insert(0, HERE)
from record_util import capture  # noqa: E402
import facts  # noqa: E402

PORT = 50053
SCENARIOS = ["unary_ok", "deadline_unary", "cancel_stream", "bidi_ok", "error_status",
             "deadline_stream"]


def main(names):
    if not os.path.isdir(os.path.join(HERE, "node_modules", "@grpc", "grpc-js")):
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE, check=True)
    for name in names or SCENARIOS:
        out = os.path.join(HERE, name + ".pcap")
        with capture(out, PORT):
            subprocess.run(["node", os.path.join(HERE, "scenario.js"), str(PORT), name],
                           check=True, timeout=30)
    facts.write(HERE, PORT)


if __name__ == "__main__":
    main(sys.argv[1:])
