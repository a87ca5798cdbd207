"""The control plane's fixed names (environment variables, default address): importable
without the server or the client (the CLI's help text needs them for every command)."""

from __future__ import annotations

TOKEN_ENV = "MM_TRIO_CONTROL_TOKEN"
URL_ENV = "MM_TRIO_CONTROL_URL"
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8766
"""The control plane's port (the paper venue's is 8765)."""
DEFAULT_URL = f"http://{DEFAULT_HOST}:{DEFAULT_PORT}"
