"""The starlette application of the paper venue: REST, market streams, WebSocket API, admin."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route, WebSocketRoute

from mm_trio.apps.paper.admin import admin_faults, admin_market, admin_reset_limits, admin_stats
from mm_trio.apps.paper.rest import api_endpoint
from mm_trio.apps.paper.streams import market_ws
from mm_trio.apps.paper.venue import PaperVenue
from mm_trio.apps.paper.wsapi import ws_api

__all__ = ["build_app"]


def build_app(venue: PaperVenue) -> Starlette:
    """The ASGI app serving ``venue`` (``app.state.venue``)."""
    routes = [
        Route("/api/v3/{path:path}", api_endpoint, methods=["GET", "POST", "DELETE", "PUT"]),
        WebSocketRoute("/ws-api/v3", ws_api),
        WebSocketRoute("/ws", market_ws),
        WebSocketRoute("/ws/{path:path}", market_ws),
        WebSocketRoute("/stream", market_ws),
    ]
    if venue.config.admin:
        routes += [
            Route("/_admin/faults", admin_faults, methods=["GET", "POST"]),
            Route("/_admin/reset-limits", admin_reset_limits, methods=["POST"]),
            Route("/_admin/market", admin_market, methods=["POST"]),
            Route("/_admin/stats", admin_stats, methods=["GET"]),
        ]
    app = Starlette(routes=routes)
    app.state.venue = venue
    return app
