"""``mm-trio venue``: the embedded simulated venue served over a Binance spot compatible API.

Start it with :func:`serve_venue` (``task_status.started(port)``) or :func:`open_venue`
(async context manager, for tests). Point any Binance spot client at
``http://127.0.0.1:<port>`` (REST ``/api/v3``), ``ws://127.0.0.1:<port>/ws`` / ``/stream``
(market streams) and ``ws://127.0.0.1:<port>/ws-api/v3`` (WebSocket API). The default
account is :data:`DEFAULT_API_KEY` / :data:`DEFAULT_API_SECRET`.
"""

from mm_trio.apps.paper.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    AccountConfig,
    FaultConfig,
    RateLimitConfig,
    VenueServerConfig,
    with_credentials,
)
from mm_trio.apps.paper.server import VenueServer, open_venue, serve_venue

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "AccountConfig",
    "FaultConfig",
    "RateLimitConfig",
    "VenueServer",
    "VenueServerConfig",
    "open_venue",
    "serve_venue",
    "with_credentials",
]
