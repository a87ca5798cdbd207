"""The paper venue (``mm-trio paper``, alias ``mm-trio venue``): the simulated exchange served
over a Binance spot compatible API, for paper trading with any Binance client.

Start it with :func:`serve_paper_venue` (``task_status.started(port)``) or
:func:`open_paper_venue` (async context manager, for tests). Point any Binance spot client at
``http://127.0.0.1:<port>`` (REST ``/api/v3``), ``ws://127.0.0.1:<port>/ws`` / ``/stream``
(market streams) and ``ws://127.0.0.1:<port>/ws-api/v3`` (WebSocket API). The default
account is :data:`DEFAULT_API_KEY` / :data:`DEFAULT_API_SECRET`.
"""

from mm_trio.apps.paper.config import (
    DEFAULT_API_KEY,
    DEFAULT_API_SECRET,
    AccountConfig,
    FaultConfig,
    PaperConfig,
    RateLimitConfig,
    with_credentials,
)
from mm_trio.apps.paper.server import PaperServer, open_paper_venue, serve_paper_venue

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "AccountConfig",
    "FaultConfig",
    "RateLimitConfig",
    "PaperServer",
    "PaperConfig",
    "open_paper_venue",
    "serve_paper_venue",
    "with_credentials",
]
