"""h2scope: explain what happened to every HTTP/2 / gRPC call's deadline in a packet capture."""

import os as _os

__version__ = "0.1.0"

if _os.environ.get("H2SCOPE_PURE_PYTHON"):  # skip the compiled modules (h2scope/native.py)
    from .native import install_source_first as _source_first

    _source_first()
