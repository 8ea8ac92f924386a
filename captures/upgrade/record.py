"""Record the h2c Upgrade captures.  Run:  /tmp/venv/bin/python captures/upgrade/record.py

h2c_upgrade.pcap       curl --http2 (HTTP/1.1 Upgrade: h2c) against hypercorn 0.18 serving ./www
                       through app.py; two URLs in one curl invocation.
nghttpd_no_upgrade.pcap  the same curl command against `nghttpd --no-tls`, which does NOT
                       implement Upgrade: it answers the HTTP/1.1 request with HTTP/2 frames
                       (SETTINGS, GOAWAY) and curl gives up ("Received HTTP/0.9").

hypercorn lives in its own venv (HYPERCORN, default /tmp/venv-hc/bin/hypercorn; create it
with `python3 -m venv /tmp/venv-hc && /tmp/venv-hc/bin/pip install hypercorn`).
"""
import os
import signal
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
from record_util import capture  # noqa: E402

PORT = 50081
HYPERCORN = os.environ.get("HYPERCORN", "/tmp/venv-hc/bin/hypercorn")


def wait_port(port, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listening on {port}")


def server(cmd):
    p = subprocess.Popen(cmd, cwd=HERE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # probing the port opens a TCP connection: do it before the capture starts
    wait_port(PORT)
    time.sleep(0.3)
    return p


def stop(p):
    p.send_signal(signal.SIGINT)
    try:
        p.wait(5)
    except subprocess.TimeoutExpired:
        p.kill()
        p.wait()


CURL = ["curl", "-sS", "--http2", "-o", "/dev/null", "-o", "/dev/null",
        "-w", "%{http_version} %{response_code} %{url_effective}\\n",
        f"http://127.0.0.1:{PORT}/", f"http://127.0.0.1:{PORT}/data.json"]


def main():
    print("h2c_upgrade.pcap")
    p = server([HYPERCORN, "--bind", f"127.0.0.1:{PORT}", "app:app"])
    try:
        with capture(os.path.join(HERE, "h2c_upgrade.pcap"), PORT):
            r = subprocess.run(CURL, capture_output=True, text=True, timeout=10)
            print("   ", r.stdout.strip().replace("\n", " | "), r.stderr.strip())
            assert r.stdout.startswith("2 200"), r.stdout
    finally:
        stop(p)

    print("nghttpd_no_upgrade.pcap")
    p = server(["nghttpd", "--no-tls", "-d", "www", str(PORT)])
    try:
        with capture(os.path.join(HERE, "nghttpd_no_upgrade.pcap"), PORT):
            r = subprocess.run(CURL, capture_output=True, text=True, timeout=10)
            print("   ", r.stdout.strip().replace("\n", " | "), r.stderr.strip())
    finally:
        stop(p)


if __name__ == "__main__":
    main()
    import runpy  # by path: every capture directory has its own make_facts.py
    runpy.run_path(os.path.join(HERE, "make_facts.py"), run_name="__main__")
