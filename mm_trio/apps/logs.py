"""Logging set-up of the ``mm-trio`` command: human lines by default, or one JSON object per
line (``--json-logs``) for log shippers: ``ts``, ``level``, ``logger``, ``message`` and the
``symbol`` where one is known.

The symbol is known when a call passes ``extra={"symbol": ...}``, or when the message starts
with the symbol (the engine's convention: ``log.warning("%s breaker ...", symbol, ...)``).
"""

from __future__ import annotations

import json
import logging
import re
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
HUMAN_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{1,20}/[A-Z0-9]{1,20}$")


def record_symbol(record: logging.LogRecord) -> str | None:
    """The symbol a log record is about, if it names one (see the module docstring)."""
    given = record.__dict__.get("symbol")
    if isinstance(given, str):
        return given
    args = record.args
    if (
        isinstance(record.msg, str)
        and record.msg.startswith("%s")
        and isinstance(args, tuple)
        and args
        and isinstance(args[0], str)
        and _SYMBOL_RE.match(args[0])
    ):
        return args[0]
    return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line (newlines in messages are escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        symbol = record_symbol(record)
        if symbol is not None:
            line["symbol"] = symbol
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class _OurHandler(logging.StreamHandler[TextIO]):
    """The handler :func:`setup_logging` installs (so a second call replaces only it)."""


def setup_logging(level: str, *, json_lines: bool, stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) at ``level``, as text or as JSON lines. A second call (in
    the same process, e.g. in tests) replaces the first one's handler, and only it."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _OurHandler)]:
        root.removeHandler(old)
    handler = _OurHandler(sys.stderr if stream is None else stream)
    handler.setFormatter(JsonFormatter() if json_lines else logging.Formatter(HUMAN_FORMAT))
    root.addHandler(handler)
    root.setLevel(level)
