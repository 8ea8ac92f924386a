"""Shared helper for recording real loopback captures for h2scope's tests.

Usage:
    from record_util import capture
    with capture("out.pcap", port=50051):
        run_scenario()

The context manager starts tcpdump (or dumpcap), waits until it is really listening,
runs the body, sleeps ~0.5 s so the last segments are written, stops the capturer with
SIGINT, parses its closing statistics and raises CaptureError when the kernel dropped
packets or nothing was captured.  The file is removed on failure so a broken capture is
never left behind looking valid.

The second half extracts verifiable facts from a capture with tshark (not from the
recording script's intent); each directory's make_facts.py uses it to write facts.json.

    /tmp/venv/bin/python captures/record_util.py facts  FILE PORT [--http]
    /tmp/venv/bin/python captures/record_util.py frames FILE PORT [--http]   # timeline
(--http: the connection starts as HTTP/1.1, e.g. an h2c Upgrade.)
"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import threading
import time

__all__ = ["CaptureError", "Capturer", "capture", "facts", "frames", "timeline",
           "write_facts", "summary"]


class CaptureError(RuntimeError):
    pass


class Capturer:
    def __init__(self, out, port, iface="lo", nano=False, tool="tcpdump", bpf=None):
        self.out = os.path.abspath(out)
        self.port = port
        self.iface = iface
        self.nano = nano
        self.tool = tool
        self.bpf = bpf or f"tcp port {port}"
        self.proc = None
        self.lines = []
        self._reader = None
        self.stats = {}

    def command(self):
        if self.tool == "tcpdump":
            cmd = ["tcpdump", "-i", self.iface, "--immediate-mode", "-B", "16384"]
            if self.nano:
                cmd.append("--time-stamp-precision=nano")
            # -Z root: keep the file owned by root instead of the 'tcpdump' user.
            cmd += ["-Z", "root", "-w", self.out, self.bpf]
        elif self.tool == "dumpcap":
            cmd = ["dumpcap", "-i", self.iface, "-w", self.out, "-f", self.bpf]
        else:
            raise ValueError(self.tool)
        return cmd

    def _read_stderr(self):
        for raw in self.proc.stderr:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def start(self, timeout=10.0):
        if os.path.exists(self.out):
            os.unlink(self.out)
        self.proc = subprocess.Popen(self.command(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE)
        self._reader = threading.Thread(target=self._read_stderr, daemon=True)
        self._reader.start()
        ready = "listening on" if self.tool == "tcpdump" else "Capturing on"
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if any(ready in l for l in self.lines):
                # dumpcap prints "Capturing on" slightly before the ring is armed
                time.sleep(0.3 if self.tool == "dumpcap" else 0.1)
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.02)
        self._kill()
        raise CaptureError(f"{self.tool} did not start listening: {self.lines}")

    def _kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def stop(self, settle=0.5):
        time.sleep(settle)
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise CaptureError(f"{self.tool} did not exit on SIGINT")
        self._reader.join(5)
        text = "\n".join(self.lines)
        if self.tool == "tcpdump":
            cap = re.search(r"(\d+) packets? captured", text)
            drop = re.search(r"(\d+) packets? dropped by kernel", text)
            if not cap or not drop:
                raise CaptureError(f"no closing statistics from tcpdump: {text!r}")
            self.stats = {"captured": int(cap.group(1)), "dropped": int(drop.group(1))}
        else:
            cap = re.search(r"Packets captured: (\d+)", text)
            # Packets received/dropped on interface 'lo': 42/0 (pcap:0/dumpcap:0/flushed:0/ps_ifdrop:0)
            rd = re.search(r"received/dropped on interface '[^']*': (\d+)/(\d+)"
                           r"(?: \(pcap:(\d+)/dumpcap:(\d+)/flushed:(\d+)/ps_ifdrop:(\d+)\))?", text)
            if not cap or not rd:
                raise CaptureError(f"no closing statistics from dumpcap: {text!r}")
            drops = [int(x) for x in rd.groups()[1:] if x is not None]
            self.stats = {"captured": int(cap.group(1)), "dropped": sum(drops)}
        if self.stats["dropped"]:
            os.unlink(self.out)
            raise CaptureError(f"{self.out}: {self.stats['dropped']} packets dropped: {text}")
        if self.stats["captured"] == 0:
            os.unlink(self.out)
            raise CaptureError(f"{self.out}: zero packets captured: {text}")
        os.chmod(self.out, 0o644)  # dumpcap creates 0600 files
        self.stats["log"] = text
        print(f"  {os.path.basename(self.out)}: {self.stats['captured']} packets, 0 dropped")
        return self.stats


@contextlib.contextmanager
def capture(out, port, **kw):
    c = Capturer(out, port, **kw).start()
    try:
        yield c
    except BaseException:
        c._kill()
        raise
    c.stop()


# -------------------------------------------------------------------------------------- facts
FRAME_TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
               5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE",
               9: "CONTINUATION"}
ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
          4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
          7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
          11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
STD_HEADERS = {":path", ":authority", ":method", ":scheme", ":status", "content-type", "te",
               "grpc-accept-encoding", "grpc-encoding", "grpc-timeout", "user-agent",
               "grpc-status", "grpc-message", "accept-encoding", "content-length"}


def err_name(code):
    return ERRORS.get(code, str(code))


def _as_list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def tshark_packets(path, port, proto="http2"):
    # Without a raised tree depth tshark silently drops frames from packets carrying hundreds.
    cmd = ["tshark", "-r", path, "-o", "tcp.desegment_tcp_streams:TRUE", "-o", "gui.max_tree_depth:1000000",
           "-d", f"tcp.port=={port},{proto}", "-T", "json", "--no-duplicate-keys",
           "-J", "frame tcp http2 http"]
    outp = subprocess.run(cmd, check=True, capture_output=True).stdout
    return json.loads(outp)


def frames(path, port, proto="http2"):
    """Yield one dict per HTTP/2 frame (plus one per TCP control segment) in capture order."""
    for pkt in tshark_packets(path, port, proto):
        L = pkt["_source"]["layers"]
        fr, tcp = L["frame"], L.get("tcp")
        if tcp is None:
            continue
        base = {
            "frame": int(fr["frame.number"]),
            "t": float(fr["frame.time_relative"]),
            "conn": int(tcp["tcp.stream"]),
            "side": "server" if int(tcp["tcp.srcport"]) == port else "client",
            "tcp_flags": int(tcp["tcp.flags"], 16),
            "client_port": int(tcp["tcp.dstport"] if int(tcp["tcp.srcport"]) == port
                               else tcp["tcp.srcport"]),
        }
        yield dict(base, kind="tcp")
        http = L.get("http")
        for h in _as_list(http):
            if not isinstance(h, dict):
                continue
            yield dict(base, kind="http1", http=h)
        for h in _as_list(L.get("http2")):
            for s in _as_list(h.get("http2.stream")):
                if not isinstance(s, dict) or "http2.type" not in s:
                    continue
                ftype = int(s["http2.type"])
                f = dict(base, kind="h2", type=FRAME_TYPES.get(ftype, str(ftype)),
                         stream=int(s.get("http2.streamid", 0)),
                         flags=int(s.get("http2.flags", "0"), 16),
                         length=int(s.get("http2.length", 0)))
                hdrs = []
                for hh in _as_list(s.get("http2.header")):
                    if isinstance(hh, dict) and "http2.header.name" in hh:
                        hdrs.append((hh["http2.header.name"], hh.get("http2.header.value", "")))
                f["headers"] = hdrs
                if "http2.rst_stream.error" in s:
                    f["error"] = int(s["http2.rst_stream.error"])
                if "http2.goaway.last_stream_id" in s:
                    f["last_stream_id"] = int(s["http2.goaway.last_stream_id"])
                    f["error"] = int(s.get("http2.goaway.error", 0))
                    f["debug"] = s.get("http2.goaway.addata")
                yield f


def facts(path, port, proto="http2"):
    fl = list(frames(path, port, proto))
    conns = {}
    streams = {}
    goaway = []
    http1 = []
    for f in fl:
        c = conns.setdefault(f["conn"], {"conn": f["conn"], "client_port": f["client_port"],
                                         "syn": False, "events": []})
        if f["kind"] == "tcp":
            fl_ = f["tcp_flags"]
            if fl_ & 0x02 and not fl_ & 0x10:
                c["syn"] = True
            if fl_ & 0x01:
                c["events"].append(f"{f['side']} FIN")
            if fl_ & 0x04:
                c["events"].append(f"{f['side']} RST")
            continue
        if f["kind"] == "http1":
            h = f["http"]
            item = {"conn": f["conn"], "by": f["side"], "frame": f["frame"]}
            for k, v in h.items():
                if isinstance(v, dict) and "http.request.method" in v:
                    item["request"] = f"{v['http.request.method']} {v.get('http.request.uri')}"
                if isinstance(v, dict) and "http.response.code" in v:
                    item["status"] = int(v["http.response.code"])
            if "http.upgrade" in h:
                item["upgrade"] = h["http.upgrade"]
            http1.append(item)
            continue
        if f["type"] == "GOAWAY":
            goaway.append({"conn": f["conn"], "by": f["side"], "frame": f["frame"],
                           "last_stream_id": f["last_stream_id"],
                           "code": err_name(f["error"])})
            continue
        sid = f["stream"]
        if sid == 0:
            continue
        st = streams.setdefault((f["conn"], sid), {
            "conn": f["conn"], "stream": sid, "path": None, "grpc_timeout": None,
            "status": None, "grpc_status": None, "grpc_message": None, "metadata": {},
            "unresolved_headers": 0, "rst": None, "rst_all": [],
            "frames": {"client": {}, "server": {}},
            "after_first_rst": {"client": {}, "server": {}}})
        cnt = st["frames"][f["side"]]
        cnt[f["type"]] = cnt.get(f["type"], 0) + 1
        if st["rst_all"]:
            a = st["after_first_rst"][f["side"]]
            a[f["type"]] = a.get(f["type"], 0) + 1
        for n, v in f["headers"]:
            if n.startswith("<unknown"):
                # HPACK reference to a dynamic-table entry the capture never saw
                st["unresolved_headers"] += 1
            elif n == ":path":
                st["path"] = v
            elif n == "grpc-timeout":
                st["grpc_timeout"] = v
            elif n == ":status":
                st["status"] = int(v) if v.isdigit() else v
            elif n == "grpc-status":
                st["grpc_status"] = int(v) if v.isdigit() else v
            elif n == "grpc-message":
                st["grpc_message"] = v
            elif n not in STD_HEADERS and f["side"] == "client":
                st["metadata"][n] = v
        if f["type"] == "RST_STREAM":
            r = {"by": f["side"], "code": err_name(f["error"]), "frame": f["frame"]}
            st["rst_all"].append(r)
            if st["rst"] is None:
                st["rst"] = r
    conn_list = []
    for c in conns.values():
        ev = c.pop("events")
        c["close_events"] = ev
        c["close"] = "rst" if any(e.endswith("RST") for e in ev) else (
            "fin" if ev else "open")
        conn_list.append(c)
    out_streams = []
    for st in streams.values():
        if not st["rst_all"]:
            st["after_first_rst"] = None
        if not st["metadata"]:
            st["metadata"] = None
        out_streams.append(st)
    # h2c upgrade: stream 1 is the HTTP/1.1 request that asked for the upgrade
    for st in out_streams:
        if st["stream"] == 1 and st["path"] is None:
            up = [h for h in http1 if h["conn"] == st["conn"] and "request" in h
                  and h.get("upgrade")]
            if up:
                st["path"] = up[0]["request"].split(" ", 1)[1]
                st["upgraded_from_http1"] = True
    closes = {c["close"] for c in conn_list}
    res = {
        "port": port,
        "connections": len(conn_list),
        "handshake": all(c["syn"] for c in conn_list),
        "conns": conn_list,
        "streams": out_streams,
        "goaway": goaway,
        "close": closes.pop() if len(closes) == 1 else sorted(closes),
    }
    if http1:
        res["http1"] = http1
    res.update(capinfo(path))
    return res


def capinfo(path):
    outp = subprocess.run(["capinfos", "-t", "-E", "-c", "-a", "-e", "-S", "-r", path],
                          check=True, capture_output=True, text=True).stdout
    info = {}
    for line in outp.splitlines():
        if ":" not in line:
            continue
        k, v = (x.strip() for x in line.split(":", 1))
        if k == "File type":
            info["file_type"] = v
        elif k == "File encapsulation":
            info["encapsulation"] = v
        elif k == "Number of packets":
            info["packets"] = int(v.replace(" ", "").replace(",", ""))
    return info


def timeline(path, port, proto="http2"):
    lines = []
    for f in frames(path, port, proto):
        if f["kind"] == "tcp":
            fl = f["tcp_flags"]
            tags = [n for b, n in ((2, "SYN"), (1, "FIN"), (4, "RST")) if fl & b]
            if tags:
                lines.append(f"{f['frame']:5d} {f['t']:10.6f} c{f['conn']} {f['side']:6s} TCP {'+'.join(tags)}")
            continue
        if f["kind"] == "http1":
            first = [k for k in f["http"] if k.endswith("\\r\\n") and not k.startswith("http.")]
            lines.append(f"{f['frame']:5d} {f['t']:10.6f} c{f['conn']} {f['side']:6s} HTTP/1.1 {first[:1]}")
            continue
        extra = ""
        if f["type"] == "RST_STREAM":
            extra = err_name(f["error"])
        elif f["type"] == "GOAWAY":
            extra = f"last={f['last_stream_id']} {err_name(f['error'])}"
        elif f["headers"]:
            extra = " ".join(f"{n}={v}" for n, v in f["headers"]
                             if n in (":path", ":status", "grpc-timeout", "grpc-status",
                                      "grpc-message") or n not in STD_HEADERS)
        lines.append(f"{f['frame']:5d} {f['t']:10.6f} c{f['conn']} {f['side']:6s} "
                     f"{f['type']:13s} s={f['stream']} fl=0x{f['flags']:02x} len={f['length']} {extra}")
    return "\n".join(lines)


def write_facts(directory, files, out="facts.json"):
    """files: {name: port} or {name: (port, proto)}"""
    res = {}
    for name, spec in files.items():
        port, proto = (spec, "http2") if isinstance(spec, int) else spec
        res[name] = facts(os.path.join(directory, name), port, proto)
    with open(os.path.join(directory, out), "w") as fh:
        json.dump(res, fh, indent=1, ensure_ascii=False)
        fh.write("\n")
    return res


def summary(name, f):
    s = [f"{name}: {f.get('file_type')}, {f.get('encapsulation')}, {f.get('packets')} pkts, "
         f"port {f['port']}, {f['connections']} conn(s), handshake={f['handshake']}, "
         f"close={f['close']} {[c['close_events'] for c in f['conns']]}"]
    for st in f["streams"]:
        rst = ", ".join(f"{r['by']} {r['code']}" for r in st["rst_all"]) or "-"
        s.append(f"   c{st['conn']} s{st['stream']} {st['path']} timeout={st['grpc_timeout']} "
                 f"status={st['status']} grpc-status={st['grpc_status']} "
                 f"msg={st['grpc_message']!r} rst=[{rst}] frames={st['frames']}"
                 + (f" after_first_rst={st['after_first_rst']}" if st["after_first_rst"] else "")
                 + (f" unresolved_headers={st['unresolved_headers']}" if st["unresolved_headers"] else "")
                 + (f" metadata={st['metadata']}" if st["metadata"] else ""))
    for g in f["goaway"]:
        s.append(f"   GOAWAY by {g['by']} last={g['last_stream_id']} {g['code']} (frame {g['frame']})")
    for h in f.get("http1", []):
        s.append(f"   HTTP/1.1 {h}")
    return "\n".join(s)


if __name__ == "__main__":
    import sys
    cmd, p, port = sys.argv[1], sys.argv[2], int(sys.argv[3])
    proto = "http" if "--http" in sys.argv else "http2"
    if cmd == "frames":
        print(timeline(p, port, proto))
    else:
        print(json.dumps(facts(p, port, proto), indent=1, ensure_ascii=False))
