"""grpcio Demo client helpers used by record.py."""
import os
import sys

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_pb2  # noqa: E402,F401
import demo_pb2_grpc  # noqa: E402

Msg = demo_pb2.Msg


def channel(port, host="127.0.0.1", options=()):
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    # No proxy lookups, no retries: keep the wire simple and deterministic.
    ch = grpc.insecure_channel(target, options=[("grpc.enable_http_proxy", 0),
                                                ("grpc.enable_retries", 0),
                                                ("grpc.use_local_subchannel_pool", 1)]
                               + list(options))
    grpc.channel_ready_future(ch).result(timeout=5)
    return ch, demo_pb2_grpc.DemoStub(ch)
