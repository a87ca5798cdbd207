"""Serve the paper venue: market streams on a lean websocket server, the rest with hypercorn.

``await nursery.start(serve_paper_venue, config)`` starts the simulated exchange(s), the market
data tasks and the HTTP/websocket server on ``host:port`` (port 0 picks a free one) and returns
the bound port. One port serves everything: :mod:`~mm_trio.apps.paper.front` takes the
market-stream websockets itself and hands every other connection to hypercorn.
:func:`open_paper_venue` is the same as an async context manager that yields a
:class:`PaperServer` (port, base URLs, the admin headers and the
:class:`~mm_trio.apps.paper.venue.PaperVenue` itself, for tests).

A generated admin token (none configured, ``MM_TRIO_VENUE_ADMIN_TOKEN`` unset) is logged once,
at WARNING, when the server starts listening; a configured one is never logged. Websocket
messages are capped at :data:`~mm_trio.apps.paper.config.MAX_BODY_BYTES` like request bodies
(hypercorn closes the connection with 1009 beyond it).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio
from hypercorn.config import Config as HypercornConfig

from mm_trio.apps.paper.app import build_app
from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV, MAX_BODY_BYTES, PaperConfig
from mm_trio.apps.paper.front import serve_front
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.apps.web import hypercorn_config

__all__ = ["PaperServer", "open_paper_venue", "serve_paper_venue"]

log = logging.getLogger(__name__)


@attrs.frozen
class PaperServer:
    """A running paper venue: where it listens and the :class:`PaperVenue` itself."""

    host: str
    port: int
    venue: PaperVenue

    @property
    def http_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://{self.host}:{self.port}"

    @property
    def admin_token(self) -> str:
        """The bearer token of ``/_admin/*``."""
        return self.venue.admin_token.reveal()

    @property
    def admin_headers(self) -> dict[str, str]:
        """``Authorization: Bearer <token>`` for requests to ``/_admin/*``."""
        return {"Authorization": f"Bearer {self.admin_token}"}


def _hypercorn_config(config: PaperConfig, host: str, port: int) -> HypercornConfig:
    return hypercorn_config(
        host, port, max_message_bytes=MAX_BODY_BYTES, ws_ping_interval=config.ws_ping_interval
    )


async def _run(
    config: PaperConfig, host: str, port: int, task_status: trio.TaskStatus[PaperServer]
) -> None:
    venue = PaperVenue(config)
    async with trio.open_nursery() as nursery:
        await nursery.start(venue.run)
        app = build_app(venue)
        bound: int = await nursery.start(
            serve_front, app, _hypercorn_config(config, host, port), venue, host, port
        )
        log.info(
            "venue listening on http://%s:%d (%d account(s))", host, bound, len(config.accounts)
        )
        if config.admin and venue.admin_token.generated:
            log.warning(
                "venue admin token (generated; set %s to choose one): %s",
                ADMIN_TOKEN_ENV,
                venue.admin_token.reveal(),
            )
        task_status.started(PaperServer(host, bound, venue))


async def serve_paper_venue(
    config: PaperConfig,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run the venue server until cancelled; ``task_status.started(bound_port)``."""
    async with trio.open_nursery() as nursery:
        server: PaperServer = await nursery.start(_run, config, host, port)
        task_status.started(server.port)


@asynccontextmanager
async def open_paper_venue(
    config: PaperConfig | None = None, *, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[PaperServer]:
    """``async with open_paper_venue(cfg) as server:`` — the venue runs inside the block."""
    async with trio.open_nursery() as nursery:
        server: PaperServer = await nursery.start(
            _run, config if config is not None else PaperConfig(), host, port
        )
        try:
            yield server
        finally:
            nursery.cancel_scope.cancel()
