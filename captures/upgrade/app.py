"""Minimal ASGI app for hypercorn: serves the files in ./www (GET only)."""
import os

WWW = os.path.join(os.path.dirname(os.path.abspath(__file__)), "www")
TYPES = {".html": b"text/html", ".json": b"application/json"}


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = scope["path"].lstrip("/") or "index.html"
    full = os.path.normpath(os.path.join(WWW, path))
    if not full.startswith(WWW) or not os.path.isfile(full):
        body, status, ctype = b"not found\n", 404, b"text/plain"
    else:
        with open(full, "rb") as fh:
            body = fh.read()
        status, ctype = 200, TYPES.get(os.path.splitext(full)[1], b"application/octet-stream")
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", ctype),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
