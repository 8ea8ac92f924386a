#!/usr/bin/env python3
"""Derive facts.json from the captures themselves with tshark (not from what the scenario
meant to do). Identical copies live in captures/grpcgo/ and captures/grpcjs/.

    python3 facts.py DIR PORT        # rewrites DIR/facts.json for every DIR/*.pcap

Per capture:
  port, connections (TCP connections seen, i.e. distinct tcp.stream, refused ones included),
  refused_connections (connections reset without carrying any HTTP/2),
  streams: one entry per HTTP/2 stream that carried HEADERS, in order of appearance:
    conn (tcp.stream index), stream, path, grpc_timeout (request header, verbatim, or null),
    grpc_status (int from the server's trailers / trailers-only, or null),
    grpc_message (verbatim, or null), data_frames {client, server},
    rst: first RST_STREAM on the stream {by, code, frame, peer_frames_after} or null, where
         peer_frames_after counts frames the *other* side sent on that stream in packets
         after the RST's packet (in flight or not: the capture cannot tell by itself);
    rst_more: further RST_STREAMs on the stream (only present when there are some),
  goaway: every GOAWAY in order {by, last_stream_id, code, frame},
  close: "rst" if any TCP RST was seen on a connection that carried HTTP/2, else "fin"
         (null if the connection was still open when the capture stopped),
  close_by: who sent the first FIN/RST on the (first) HTTP/2 connection.
"""
import glob
import json
import os
import subprocess
import sys

H2_ERRORS = {0: "NO_ERROR", 1: "PROTOCOL_ERROR", 2: "INTERNAL_ERROR", 3: "FLOW_CONTROL_ERROR",
             4: "SETTINGS_TIMEOUT", 5: "STREAM_CLOSED", 6: "FRAME_SIZE_ERROR",
             7: "REFUSED_STREAM", 8: "CANCEL", 9: "COMPRESSION_ERROR", 10: "CONNECT_ERROR",
             11: "ENHANCE_YOUR_CALM", 12: "INADEQUATE_SECURITY", 13: "HTTP_1_1_REQUIRED"}
TYPES = {0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST_STREAM", 4: "SETTINGS",
         5: "PUSH_PROMISE", 6: "PING", 7: "GOAWAY", 8: "WINDOW_UPDATE", 9: "CONTINUATION"}


def _list(x):
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


# tshark stops dissecting a packet after gui.max_tree_depth (default 500) protocol layers:
# a grpc-go segment with ~900 small HTTP/2 frames silently loses its tail (here: the
# RST_STREAM). Raise the limit, and cross-check the frame counts against a plain parse of
# the reassembled byte streams (raw_frame_counts) so a truncated dissection cannot pass.
TSHARK_PREFS = ["-o", "gui.max_tree_depth:1000000"]


def _tshark(args):
    return subprocess.run(["tshark"] + TSHARK_PREFS + args, check=True, capture_output=True,
                          text=True).stdout


def raw_frame_counts(path, port, conn):
    """Count HTTP/2 frames per (direction, type) by parsing the reassembled TCP payload of
    one connection (tshark -z follow,tcp,raw), independent of the HTTP/2 dissector."""
    out = _tshark(["-r", path, "-q", "-z", f"follow,tcp,raw,{conn}"])
    nodes, data = {}, {0: bytearray(), 1: bytearray()}
    for line in out.splitlines():
        if line.startswith("Node "):
            idx, addr = line[5:].split(": ", 1)
            nodes[int(idx)] = int(addr.rsplit(":", 1)[1])
        elif line and not line.startswith("=") and ":" not in line:
            node = 1 if line.startswith("\t") else 0
            data[node] += bytes.fromhex(line.strip())
    counts = {}
    for node, buf in data.items():
        by = "server" if nodes.get(node) == port else "client"
        pos = 24 if buf.startswith(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n") else 0
        while pos + 9 <= len(buf):
            length = int.from_bytes(buf[pos:pos + 3], "big")
            ftype = TYPES.get(buf[pos + 3], buf[pos + 3])
            counts[(by, ftype)] = counts.get((by, ftype), 0) + 1
            pos += 9 + length
    return counts


def h2_frames(path, port):
    """Yield dicts: frame, conn, by, stream, type, headers[(name, value)], error, last."""
    out = _tshark(["-r", path, "-d", f"tcp.port=={port},http2", "-Y", "http2",
                   "-T", "json", "--no-duplicate-keys", "-J", "frame tcp http2"])
    for pkt in json.loads(out or "[]"):
        lay = pkt["_source"]["layers"]
        num = int(lay["frame"]["frame.number"])
        tcp = lay["tcp"]
        by = "server" if int(tcp["tcp.srcport"]) == port else "client"
        conn = int(tcp["tcp.stream"])
        for h2 in _list(lay.get("http2")):
            for fr in _list(h2.get("http2.stream")):
                if "http2.type" not in fr:  # connection preface
                    continue
                headers = [(h.get("http2.header.name"), h.get("http2.header.value"))
                           for h in _list(fr.get("http2.header"))]
                yield {"frame": num, "conn": conn, "by": by,
                       "stream": int(fr["http2.streamid"]),
                       "type": TYPES.get(int(fr["http2.type"]), fr["http2.type"]),
                       "headers": headers,
                       "error": fr.get("http2.rst_stream.error",
                                       fr.get("http2.goaway.error")),
                       "last": fr.get("http2.goaway.last_stream_id")}


def tcp_packets(path, port):
    out = _tshark(["-r", path, "-T", "fields", "-E", "separator=,", "-e", "frame.number",
                   "-e", "tcp.stream", "-e", "tcp.srcport", "-e", "tcp.flags.syn",
                   "-e", "tcp.flags.fin", "-e", "tcp.flags.reset", "tcp"])
    for line in out.splitlines():
        num, conn, sport, syn, fin, rst = line.split(",")
        yield {"frame": int(num), "conn": int(conn),
               "by": "server" if int(sport) == port else "client",
               "syn": syn in ("1", "True"), "fin": fin in ("1", "True"),
               "rst": rst in ("1", "True")}


def code_name(v):
    v = int(v)
    return H2_ERRORS.get(v, v)


def facts_for(path, port):
    frames = list(h2_frames(path, port))
    packets = list(tcp_packets(path, port))
    for conn in sorted({f["conn"] for f in frames}):
        want = raw_frame_counts(path, port, conn)
        got = {}
        for f in frames:
            if f["conn"] == conn:
                got[(f["by"], f["type"])] = got.get((f["by"], f["type"]), 0) + 1
        if got != want:
            raise RuntimeError(f"{path} conn {conn}: tshark dissected {sorted(got.items())}"
                               f" but the byte stream holds {sorted(want.items())}")
    streams = {}
    goaway = []
    for f in frames:
        key = (f["conn"], f["stream"])
        if f["type"] == "GOAWAY":
            goaway.append({"by": f["by"], "last_stream_id": int(f["last"]),
                           "code": code_name(f["error"]), "frame": f["frame"]})
            continue
        if f["stream"] == 0:
            continue
        if key not in streams and f["type"] != "HEADERS":
            continue  # frames on a stream whose HEADERS we never saw
        s = streams.setdefault(key, {"conn": f["conn"], "stream": f["stream"], "path": None,
                                     "grpc_timeout": None, "grpc_status": None,
                                     "grpc_message": None,
                                     "data_frames": {"client": 0, "server": 0},
                                     "rst": None, "_frames": []})
        s["_frames"].append(f)
        hd = dict(f["headers"])
        if f["type"] == "HEADERS" and f["by"] == "client":
            s["path"] = hd.get(":path", s["path"])
            s["grpc_timeout"] = hd.get("grpc-timeout", s["grpc_timeout"])
        elif f["type"] == "HEADERS" and "grpc-status" in hd:
            s["grpc_status"] = int(hd["grpc-status"])
            s["grpc_message"] = hd.get("grpc-message")
        elif f["type"] == "DATA":
            s["data_frames"][f["by"]] += 1
        elif f["type"] == "RST_STREAM":
            r = {"by": f["by"], "code": code_name(f["error"]), "frame": f["frame"]}
            if s["rst"] is None:
                s["rst"] = r
            else:
                s.setdefault("rst_more", []).append(r)
    for s in streams.values():
        if s["rst"]:
            r = s["rst"]
            r["peer_frames_after"] = sum(1 for f in s["_frames"]
                                         if f["by"] != r["by"] and f["frame"] > r["frame"])
        del s["_frames"]
    h2conns = {f["conn"] for f in frames}
    conns = {p["conn"] for p in packets}
    close, close_by = None, None
    ends = [p for p in packets if p["conn"] in h2conns and (p["fin"] or p["rst"])]
    if ends:
        close = "rst" if any(p["rst"] for p in ends) else "fin"
        first = min(h2conns)
        close_by = next((p["by"] for p in ends if p["conn"] == first), None)
    # connection attempts answered by a TCP RST without ever carrying HTTP/2 (e.g. grpc-go
    # redialling a server that has stopped listening)
    refused = sorted({p["conn"] for p in packets if p["rst"]} - h2conns)
    return {"port": port, "connections": len(conns), "refused_connections": len(refused),
            "streams": sorted(streams.values(), key=lambda s: (s["conn"], s["stream"])),
            "goaway": goaway, "close": close, "close_by": close_by}


def write(directory, port):
    result = {}
    for path in sorted(glob.glob(os.path.join(directory, "*.pcap"))):
        result[os.path.basename(path)] = facts_for(path, port)
    with open(os.path.join(directory, "facts.json"), "w") as f:
        json.dump(result, f, indent=2)
        f.write("\n")
    return result


if __name__ == "__main__":
    print(json.dumps(write(sys.argv[1], int(sys.argv[2])), indent=2))
