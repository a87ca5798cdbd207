"""Keeping the garbage collector off the long-lived heap of a running process.

A trader or a venue builds its long-lived objects at start-up (modules, specs, symbols,
tables). They never become garbage, yet every full collection walks all of them again while
the event loop waits: tens of milliseconds on a busy market stream, long enough for market
events to arrive late. :func:`freeze_heap` moves what is alive at that moment into the
collector's permanent generation (``gc.freeze``); the caller ``gc.unfreeze()``s when it is
done, so an in-process caller (a test, a script) gets its collector back.
"""

from __future__ import annotations

import gc


def freeze_heap() -> None:
    """Collect once, then freeze everything still alive (see the module docstring)."""
    gc.collect()
    gc.freeze()
