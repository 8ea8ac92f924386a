"""grpcio Demo server used by record.py (and usable standalone: python server.py PORT)."""
import os
import sys
import time
from concurrent import futures

import grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import demo_pb2  # noqa: E402
import demo_pb2_grpc  # noqa: E402


class Demo(demo_pb2_grpc.DemoServicer):
    """Behaviour is driven by the request:
    Unary:        text "sleep:S" sleeps S seconds; "notfound:MSG" aborts NOT_FOUND with MSG;
                  otherwise echoes, replying with a payload as long as the request's.
    ServerStream: seq = number of messages, text "interval:S" = pause between them.
    """

    def Unary(self, request, context):
        if request.text.startswith("sleep:"):
            time.sleep(float(request.text.split(":", 1)[1]))
        elif request.text.startswith("notfound:"):
            context.abort(grpc.StatusCode.NOT_FOUND, request.text.split(":", 1)[1])
        return demo_pb2.Msg(text="echo:" + request.text[:40],
                            payload=b"R" * len(request.payload), seq=request.seq)

    def ServerStream(self, request, context):
        interval = 0.0
        if request.text.startswith("interval:"):
            interval = float(request.text.split(":", 1)[1])
        for i in range(request.seq):
            if not context.is_active():
                return
            yield demo_pb2.Msg(text=f"item {i}", seq=i)
            if interval:
                time.sleep(interval)

    def ClientStream(self, request_iterator, context):
        n = 0
        for m in request_iterator:
            n += 1
        return demo_pb2.Msg(text=f"got {n}", seq=n)

    def Bidi(self, request_iterator, context):
        for m in request_iterator:
            yield demo_pb2.Msg(text="re:" + m.text, seq=m.seq)


def serve(port, host="127.0.0.1", options=()):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=list(options))
    demo_pb2_grpc.add_DemoServicer_to_server(Demo(), server)
    bound = server.add_insecure_port(f"{host}:{port}" if ":" not in host else f"[{host}]:{port}")
    if bound != port:
        raise RuntimeError(f"could not bind {host}:{port}")
    server.start()
    return server


if __name__ == "__main__":
    s = serve(int(sys.argv[1]) if len(sys.argv) > 1 else 50051)
    s.wait_for_termination()
