"""scripts/bench_ws_reader.py end to end: its sender subprocess streams the real recordings to
the real market stream and every message arrives as one event (skips without the data)."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

from tests.conftest import ROOT, SHARED_DATA

pytestmark = pytest.mark.slow  # a subprocess and ~70,000 messages over loopback


def bench() -> ModuleType:
    scripts = str(ROOT / "scripts")
    if scripts not in sys.path:
        sys.path.insert(0, scripts)
    return importlib.import_module("bench_ws_reader")


def test_one_pass_delivers_every_recorded_message() -> None:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"no recordings at {SHARED_DATA}")
    b = bench()
    sent = len(b.market_messages(SHARED_DATA))
    result = b.run(passes=1)
    assert result.events == sent  # none lost (run() also checks the decoded counts)
    assert result.messages == sent - 1  # timed from the first event on
    assert result.rate > 0 and result.cpu_us_per_msg > 0
