"""HTTP/2: finding it on a connection, splitting frames, HPACK, and stream lifecycles."""
