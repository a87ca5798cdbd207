"""The live dashboard: one HTML page with its script, stylesheet and icon, shipped in the
package (``static/``, package data) and served by the control server itself: no CDN.

The page and its assets hold no data, so they load without the token (the ``Host`` check
still applies); everything the page shows comes from the token-guarded API, which the
page's script calls with the token in the ``Authorization`` header. A strict
Content-Security-Policy (scripts, styles and connections only from this origin, nothing
inline, no framing, no form posts) goes with every one of these responses.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

__all__ = ["CSP", "PAGE_PATH", "PUBLIC_PATHS", "routes"]

log = logging.getLogger(__name__)

PAGE_PATH = "/"
STATIC_PREFIX = "/static/"
_PAGE_FILE = "index.html"
ASSETS: dict[str, str] = {
    _PAGE_FILE: "text/html; charset=utf-8",
    "dashboard.js": "text/javascript; charset=utf-8",
    "dashboard.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
"""Every file the page uses, with its media type (nothing else under static/ is served)."""
PUBLIC_PATHS = frozenset(
    {PAGE_PATH, *(STATIC_PREFIX + name for name in ASSETS if name != _PAGE_FILE)}
)
"""Paths a GET may fetch without the token: the page and its assets, no data."""

CSP = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "connect-src 'self'",
        "base-uri 'none'",
        "form-action 'none'",  # the forms are the script's: none may navigate (a token in a URL)
        "frame-ancestors 'none'",
    ]
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-cache",  # a new version of the package is picked up at once
}


def _read(name: str) -> bytes | None:
    try:
        return resources.files(__package__).joinpath("static", name).read_bytes()
    except OSError as exc:  # an installation without its package data
        log.error("control: dashboard file %s missing from the installation: %s", name, exc)
        return None


def routes() -> list[Route]:
    """The page at ``/`` and its assets under ``/static/`` (read once, served from memory)."""
    files = {name: (_read(name), media) for name, media in ASSETS.items()}

    def serve(name: str) -> Response:
        body, media = files[name]
        if body is None:
            return Response(
                f"the dashboard file {name} is missing from this installation of mm-trio "
                "(reinstall it); the API works without it",
                500,
                media_type="text/plain; charset=utf-8",
                headers=SECURITY_HEADERS,
            )
        return Response(body, media_type=media, headers=SECURITY_HEADERS)

    def handler(name: str) -> Callable[[Request], Awaitable[Response]]:
        async def endpoint(request: Request) -> Response:
            return serve(name)

        return endpoint

    return [
        Route(PAGE_PATH if name == _PAGE_FILE else STATIC_PREFIX + name, handler(name))
        for name in ASSETS
    ]
