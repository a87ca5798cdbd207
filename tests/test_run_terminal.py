"""What ``mm-trio run`` prints, as a trader reads it: a status block with one line per symbol
and a TOTAL line, each fill as it happens (``--quiet`` hides them), and an exit table with a
TOTAL row and a final state that says why each symbol stopped. Also the start check that the
account can pay for an order.

In process, through ``run_command`` on the embedded simulated venue and trio's MockClock.
"""

from __future__ import annotations

import io
import json
import re
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import trio

from mm_trio.apps import run as run_app
from mm_trio.apps.summary import final_state
from mm_trio.core.grid.funding import funding_problem
from mm_trio.domain.config import GridConfig
from mm_trio.domain.model import Balance, SymbolSpec
from tests.test_orchestrator import make_config

D = Decimal
NINE = [
    "BTC/USDT",
    "ETH/USDT",
    "BNB/USDT",
    "SOL/USDT",
    "XRP/USDT",
    "DOGE/USDT",
    "ADA/USDT",
    "LTC/USDT",
    "AVAX/USDT",
]
FILL_RE = re.compile(
    r"^\d\d:\d\d:\d\d\.\d{3}  (?P<symbol>[A-Z]+/[A-Z]+)  (?P<side>BUY |SELL)  "
    r"(?P<qty>[0-9.]+) @ (?P<price>[0-9.]+)  level (?P<level>-?\d+)  "
    r"(?P<role>opening|take-profit)( \(partial\))?$"
)
TERMINAL_WIDTH = 120


async def _run(
    symbols: list[str],
    tmp_path: Path,
    extra: dict[str, Any] | None = None,
    *,
    duration: float = 30.0,
    quiet: bool = False,
) -> tuple[int, str, str, dict[str, Any]]:
    config = make_config({"run": {"status_interval": 10.0}, **(extra or {})})
    out, err = io.StringIO(), io.StringIO()
    summary_path = tmp_path / "summary.json"
    rc = await run_app.run_command(
        config,
        symbols,
        duration=duration,
        summary_json=summary_path,
        out=out,
        err=err,
        quiet=quiet,
    )
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    return rc, out.getvalue(), err.getvalue(), summary


def _status_blocks(out: str) -> list[list[str]]:
    blocks: list[list[str]] = []
    for line in out.splitlines():
        if line.startswith("-- status"):
            blocks.append([])
        elif blocks and (not blocks[-1] or not blocks[-1][-1].startswith("TOTAL")):
            blocks[-1].append(line)
    return blocks


async def test_status_is_one_line_per_symbol_then_a_total(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    rc, out, err, _ = await _run(NINE, tmp_path, quiet=True)
    assert rc == 0, err
    blocks = _status_blocks(out)
    assert len(blocks) >= 2  # 30 s at one block per 10 s
    for block in blocks:
        symbol_lines = [line for line in block if not line.startswith("TOTAL")]
        # exactly one line per symbol, in order, each naming its symbol first
        assert [line.split()[0] for line in symbol_lines] == sorted(NINE)
        assert block[-1].startswith("TOTAL pnl ") and " USDT; exposure " in block[-1]
        assert all(len(line) <= TERMINAL_WIDTH for line in block), block
        # the TOTAL is the sum of the lines' PnL (per quote currency)
        pnls = [D(re.search(r"pnl=(-?[0-9.]+)", line)[1]) for line in symbol_lines]  # type: ignore[index]
        total = D(re.search(r"TOTAL pnl (-?[0-9.]+) USDT", block[-1])[1])  # type: ignore[index]
        assert abs(total - sum(pnls)) <= D("0.0001") * len(pnls)


async def test_each_fill_is_printed_once_as_it_happens(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    rc, out, err, summary = await _run(["BTC/USDT", "ETH/USDT"], tmp_path)
    assert rc == 0, err
    fills = [m for m in map(FILL_RE.match, out.splitlines()) if m]
    for sym, s in summary["symbols"].items():
        mine = [m for m in fills if m["symbol"] == sym]
        assert s["fills"] > 0, (sym, s)
        assert len(mine) == s["fills"], (sym, len(mine), s)
        assert sum(m["side"] == "BUY " for m in mine) == s["buys"]
    # a long grid opens with BUYs and takes profit with SELLs
    assert {(m["side"].strip(), m["role"]) for m in fills} <= {
        ("BUY", "opening"),
        ("SELL", "take-profit"),
    }
    # fills come before the exit table, as they happen
    assert out.index(fills[-1].group(0)) < out.index("open_orders_at_exit")


async def test_quiet_prints_no_fill(autojump_clock: trio.abc.Clock, tmp_path: Path) -> None:
    rc, out, err, summary = await _run(["BTC/USDT"], tmp_path, quiet=True)
    assert rc == 0, err
    assert summary["symbols"]["BTC/USDT"]["fills"] > 0
    assert not [line for line in out.splitlines() if FILL_RE.match(line)]


def _table_rows(out: str) -> dict[str, list[str]]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("symbol "))
    rows = {}
    for line in lines[start + 1 :]:
        if line.startswith("exposure total"):
            break
        if not line.startswith("--"):
            cells = re.split(r"\s{2,}", line.strip())
            rows[cells[0]] = cells
    return rows


async def test_exit_table_has_a_total_row_and_says_why_each_stopped(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    rc, out, err, summary = await _run(["BTC/USDT", "ETH/USDT"], tmp_path, quiet=True)
    assert rc == 0, err
    rows = _table_rows(out)
    for sym, s in summary["symbols"].items():
        assert s["state"] == "REMOVED"  # unchanged: the lifecycle's last state
        assert s["stopped_by"] == "duration"
        assert s["final_state"] == "STOPPED (duration)"
        assert rows[sym][1] == "STOPPED (duration)"
    # TOTAL, then the summed columns (the empty position cell is no column)
    total = dict(
        zip(
            ["fills", "buys", "sells", "realized", "unrealized", "fees", "open"],
            rows["TOTAL"][1:],
            strict=True,
        )
    )
    symbols = summary["symbols"].values()
    assert int(total["fills"]) == sum(s["fills"] for s in symbols)
    assert int(total["buys"]) + int(total["sells"]) == int(total["fills"])
    assert D(total["fees"]) == sum(D(s["fees"]) for s in symbols)
    assert D(total["realized"]) == sum(D(s["realized_pnl"]) for s in symbols)
    assert int(total["open"]) == 0


@pytest.mark.parametrize(
    ("extra", "stopped_by", "text"),
    [
        ({"risk": {"max_loss": "0.000001"}}, "loss_limit", "STOPPED (loss limit: PnL "),
        ({"governor": {"max_total_loss": "0.000001"}}, "kill", "KILLED: "),
    ],
)
async def test_final_state_names_a_loss_limit_or_the_kill_switch(
    autojump_clock: trio.abc.Clock,
    tmp_path: Path,
    extra: dict[str, Any],
    stopped_by: str,
    text: str,
) -> None:
    rc, out, err, summary = await _run(["BTC/USDT"], tmp_path, extra, quiet=True)
    assert rc == 0, err
    s = summary["symbols"]["BTC/USDT"]
    assert s["stopped_by"] == stopped_by, s
    assert s["final_state"].startswith(text), s
    assert _table_rows(out)["BTC/USDT"][1].startswith(text)


@pytest.mark.parametrize(
    ("state", "reason", "end", "expected"),
    [
        ("RUNNING", "", "SIGINT", ("SIGINT", "STOPPED (SIGINT)")),
        ("HALTED", "stale: no quote", "SIGTERM", ("SIGTERM", "STOPPED (SIGTERM)")),
        ("FAILED", "KeyError: 'x'", "duration", ("failed", "FAILED: KeyError: 'x'")),
        ("STOPPED", "kill switch: operator", "duration", ("kill", "KILLED: operator")),
        (
            "STOPPED",
            "kill switch: loss limit: PnL -2 reached",  # latched by an earlier run
            "duration",
            ("loss_limit", "STOPPED (loss limit: PnL -2 reached)"),
        ),
        ("REMOVED", "", "duration", ("removed", "REMOVED")),
    ],
)
def test_final_state_text(state: str, reason: str, end: str, expected: tuple[str, str]) -> None:
    assert final_state(state, reason, end) == expected


# --------------------------------------------------------------------------- funding


async def test_a_symbol_the_account_cannot_pay_is_refused_with_the_amounts(
    autojump_clock: trio.abc.Clock, tmp_path: Path
) -> None:
    """ETH/BTC with the default quote-sized order of 100 (BTC) on an account with 1 BTC."""
    config = make_config()  # order_size stays the default: 100 in the quote asset
    out, err = io.StringIO(), io.StringIO()
    rc = await run_app.run_command(
        config, ["BTC/USDT", "ETH/BTC"], duration=5.0, summary_json=None, out=out, err=err
    )
    assert rc == 2
    line = err.getvalue().strip()
    assert line == (
        "mm-trio: error: ETH/BTC: the account cannot pay for an order: one opening BUY "
        "(grid.order_size = 100 quote) needs 100 BTC, the account holds 1 BTC"
    )
    assert "trading" not in out.getvalue()  # nothing was traded


SPEC = SymbolSpec(
    symbol="AAA/QQQ", base="AAA", quote="QQQ", tick_size=D("0.01"), step_size=D("0.001")
)


def _bal(quote: str, base: str, locked: str = "0") -> dict[str, Balance]:
    return {
        "QQQ": Balance(asset="QQQ", free=D(quote), locked=D(locked)),
        "AAA": Balance(asset="AAA", free=D(base), locked=D(0)),
    }


def test_funds_locked_in_orders_count() -> None:
    """A restart finds its quote locked in its own resting BUYs: it is not refused."""
    grid = GridConfig(order_size=D(50))
    assert funding_problem(grid, SPEC, _bal("0", "0", locked="250"), None) is None
    assert funding_problem(grid, SPEC, _bal("0", "0", locked="49"), None) is not None


@pytest.mark.parametrize(
    ("grid", "quote", "base", "price", "needle"),
    [
        (GridConfig(order_size=D(50)), "49", "0", None, "needs 50 QQQ, the account holds 49 QQQ"),
        (GridConfig(order_size=D(50)), "50", "0", None, None),
        (GridConfig(order_size=D(2), order_size_in="base"), "19", "0", D(10), "needs 20 QQQ"),
        (GridConfig(order_size=D(2), order_size_in="base"), "0", "0", None, None),  # no price
        (GridConfig(order_size=D(50), mode="neutral"), "0", "5", D(10), None),  # sells
        (
            GridConfig(order_size=D(50), mode="neutral"),
            "0",
            "4",
            D(10),
            "SELL needs 5 AAA, the account holds 4 AAA",
        ),
    ],
)
def test_funding_problem(
    grid: GridConfig, quote: str, base: str, price: Decimal | None, needle: str | None
) -> None:
    problem = funding_problem(grid, SPEC, _bal(quote, base), price)
    if needle is None:
        assert problem is None
    else:
        assert problem is not None and needle in problem and problem.startswith("AAA/QQQ: ")


@pytest.mark.parametrize(
    ("grid", "message"),
    [
        (
            {"anchor": "1e-30"},
            "mm-trio: error: BTC/USDT: grid.anchor = 1E-30: below one tick (0.01)",
        ),
        (
            {"step": "1e-30"},
            "mm-trio: error: BTC/USDT: grid.step = 1E-30: one step at the anchor 60000 is "
            "6.0000E-26, smaller than one tick (0.01); levels would collide",
        ),
    ],
)
async def test_a_grid_that_does_not_fit_the_symbol_is_refused_at_start(
    autojump_clock: trio.abc.Clock, grid: dict[str, str], message: str
) -> None:
    """Checked at the venue's price before trading, not found by the symbol FAILING later."""
    config = make_config({"grid": grid, "venue": {"volatility": 0.0}})
    out, err = io.StringIO(), io.StringIO()
    rc = await run_app.run_command(
        config, ["BTC/USDT"], duration=5.0, summary_json=None, out=out, err=err
    )
    assert rc == 2
    assert err.getvalue().strip() == message
    assert "trading" not in out.getvalue()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (Linux)")
async def test_a_summary_that_cannot_be_written_is_one_line_and_exit_1(
    autojump_clock: trio.abc.Clock, capsys: pytest.CaptureFixture[str]
) -> None:
    out = io.StringIO()
    rc = await run_app.run_command(
        make_config(), ["BTC/USDT"], duration=5.0, summary_json=Path("/dev/full"), out=out
    )
    assert rc == 1
    err = capsys.readouterr().err
    assert "mm-trio: error: --summary-json: cannot write '/dev/full': No space left" in err
    assert "Traceback" not in err
    assert "TOTAL" in out.getvalue()  # the table was printed before the write failed
