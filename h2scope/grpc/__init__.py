"""gRPC over HTTP/2: the timeout grammar, message framing, status codes."""
