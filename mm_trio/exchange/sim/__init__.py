"""The simulated exchange (in-process): a pure matching engine, a pure seeded synthetic feed
and the trio shell :class:`SimulatedExchange` that implements
:class:`~mm_trio.exchange.base.Exchange`.
"""

from mm_trio.exchange.sim.exchange import EPOCH_NS, SimulatedExchange
from mm_trio.exchange.sim.feed import SyntheticFeed
from mm_trio.exchange.sim.matching import BUILTIN_SYMBOLS, MatchingEngine, derive_spec

__all__ = [
    "BUILTIN_SYMBOLS",
    "EPOCH_NS",
    "MatchingEngine",
    "SimulatedExchange",
    "SyntheticFeed",
    "derive_spec",
]
