#!/usr/bin/env python3
"""Record the grpc-go captures (re-runnable): builds scenario.go against Debian's grpc-go,
records each scenario on loopback port 50052 with captures/record_util.py (tcpdump
--immediate-mode -B 16384; refuses drops and empty files), then writes facts.json from the
captures themselves with tshark (facts.py).

    python3 captures/grpcgo/record.py [scenario ...]

Needs (Debian 12): apt-get install -y tcpdump tshark golang-go golang-google-grpc-dev
golang-github-golang-protobuf-1-5-dev
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # captures/record_util.py
sys.path.insert(0, HERE)
from record_util import capture  # noqa: E402
import facts  # noqa: E402

PORT = 50052
SCENARIOS = ["unary_ok", "deadline_unary", "cancel_stream", "graceful_stop", "hard_stop",
             "server_stream_ok", "deadline_stream"]


def build():
    env = dict(os.environ, GOPATH="/usr/share/gocode", GO111MODULE="off",
               GOCACHE=os.environ.get("GOCACHE", "/tmp/h2scope-gocache"), GOFLAGS="")
    subprocess.run(["go", "build", "-o", "scenario", "scenario.go"], cwd=HERE, env=env,
                   check=True)


def main(names):
    build()
    for name in names or SCENARIOS:
        out = os.path.join(HERE, name + ".pcap")
        with capture(out, PORT):
            subprocess.run([os.path.join(HERE, "scenario"), "-port", str(PORT),
                            "-scenario", name], check=True, timeout=30)
    facts.write(HERE, PORT)


if __name__ == "__main__":
    main(sys.argv[1:])
