"""h2scope: explain what happened to every HTTP/2 / gRPC call's deadline in a packet capture."""

__version__ = "0.1.0"
