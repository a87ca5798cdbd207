"""``mm-trio run``: trade symbols on a venue until a duration elapses or SIGINT/SIGTERM, with
status lines and an exit summary."""

from __future__ import annotations

import gc
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import attrs
import msgspec
import trio

from mm_trio.apps.fills import FillPrinter, clock_text
from mm_trio.apps.funding import funding_problems
from mm_trio.apps.heap import freeze_heap
from mm_trio.apps.state_file import open_state
from mm_trio.apps.summary import limiter_summary, status_lines, summary_dict, summary_table
from mm_trio.domain.config import Config, GridConfig
from mm_trio.domain.errors import UsageError
from mm_trio.domain.model import SymbolError
from mm_trio.engine.orchestrator import Orchestrator, open_orchestrator
from mm_trio.engine.persistence import Persistence
from mm_trio.engine.recovery import Recoverer, Recovery, RecoveryError, registry_grid
from mm_trio.exchange.base import Exchange
from mm_trio.exchange.limiter import Limiter, Priority, priority
from mm_trio.exchange.sim.exchange import SimulatedExchange
from mm_trio.store import StateStore, StoreError, StoreLock

if TYPE_CHECKING:  # the server (hypercorn, starlette) is imported when a run serves it
    from mm_trio.apps.control.server import ControlOptions

log = logging.getLogger("mm_trio")

EXIT_OK = 0
EXIT_VENUE = 1
EXIT_USAGE = 2
EXIT_RECOVERY = 3
"""Recovery could not make the store and the venue agree: nothing was traded."""
ORDER_DAY_NS = 86_400 * 1_000_000_000
"""The venue's longest order-count window (orders per day)."""
RESUMABLE_STATES = ("running", "paused")
"""Registry states of symbols a restart trades again even if not given on the command line
(symbols added at runtime)."""


async def _print_status(orch: Orchestrator, interval: float, out: TextIO) -> None:
    while True:
        await trio.sleep(interval)
        lines = status_lines(orch.snapshot(), clock_text(time.time()))
        print("\n".join(lines), file=out, flush=True)


async def _watch_signals(
    run_scope: trio.CancelScope, bound: float, received: list[str] | None = None
) -> None:
    """SIGINT/SIGTERM end the run (our orders are then cancelled). Later signals are only
    acknowledged: interrupting the cancels would leave orders behind, and the shutdown is
    bounded anyway. ``received`` gets the name of each signal."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if received is not None:
                received.append(name)
            if not run_scope.cancel_called:
                log.warning("received %s: cancelling our orders and exiting", name)
                run_scope.cancel()
            else:
                print(
                    f"mm-trio: {name} again: still cancelling our orders (at most {bound:g}s more)",
                    file=sys.stderr,
                    flush=True,
                )


def make_exchange(venue: str, base_url: str | None, config: Config, limiter: Limiter) -> Exchange:
    """The venue ``run`` trades on: the embedded simulator, or Binance (keys from the env)."""
    if venue == "sim":
        if base_url is not None:
            raise UsageError("--base-url needs --venue binance or binance-testnet")
        return SimulatedExchange(config.venue, limiter=limiter)
    from mm_trio.exchange.binance.adapter import BinanceExchange

    try:
        return BinanceExchange.from_env(venue, base_url, limiter)
    except ValueError as exc:
        raise UsageError(f"--base-url: {exc}") from None


async def run_command(
    config: Config,
    symbols: Sequence[str],
    *,
    duration: float | None,
    summary_json: Path | None,
    out: TextIO | None = None,
    err: TextIO | None = None,
    venue: str = "sim",
    base_url: str | None = None,
    state: Path | None = None,
    override_recovery: bool = False,
    quiet: bool = False,
    control: ControlOptions | None = None,
) -> int:
    """Trade ``symbols`` until ``duration`` elapses or SIGINT/SIGTERM; print the summary
    (to ``out``, errors to ``err``: stdout / stderr by default); each fill as it happens
    unless ``quiet``.

    With a ``state`` store, recovery runs first (see :mod:`mm_trio.engine.recovery`) and
    every state change is persisted before it is acted on. ``control``: serve the control
    plane (API, events, metrics) while it runs.
    """
    out = sys.stdout if out is None else out
    err = sys.stderr if err is None else err
    alerts: list[str] = []  # venue bans: logged at ERROR by the limiter, kept for the summary
    limiter = Limiter(config.limiter, on_alert=alerts.append)
    exchange = make_exchange(venue, base_url, config, limiter)
    store: StateStore | None = None
    lock: StoreLock | None = None
    if state is not None:
        try:
            store, lock = open_state(state)
        except (StoreError, OSError) as exc:
            print(f"mm-trio: error: --state: {exc}", file=err, flush=True)
            return EXIT_USAGE
    try:
        return await _trade(
            config,
            list(symbols),
            exchange,
            limiter,
            alerts,
            store,
            duration=duration,
            summary_json=summary_json,
            out=out,
            err=err,
            override_recovery=override_recovery,
            fills=FillPrinter(out, enabled=not quiet),
            control=control,
        )
    finally:
        gc.unfreeze()  # frozen once trading began: an in-process caller gets it back
        if store is not None:
            store.close()
        if lock is not None:
            lock.release()


async def _trade(
    config: Config,
    symbols: list[str],
    exchange: Exchange,
    limiter: Limiter,
    alerts: list[str],
    store: StateStore | None,
    *,
    duration: float | None,
    summary_json: Path | None,
    out: TextIO,
    err: TextIO,
    override_recovery: bool,
    fills: FillPrinter,
    control: ControlOptions | None,
) -> int:
    from mm_trio.apps.control.server import open_control

    persistence = None if store is None else Persistence(store, exchange.now_ns)
    run_scope = trio.CancelScope()
    rc = EXIT_OK
    signals: list[str] = []
    async with trio.open_nursery() as outer:
        outer.start_soon(_watch_signals, run_scope, 3 * config.run.shutdown_timeout, signals)
        async with (
            open_orchestrator(
                exchange, config, limiter=limiter, persistence=persistence, journal=fills.journal
            ) as orch,
            open_control(orch, control, exchange.name, err) as served,
        ):
            fills.orch = orch
            try:
                for symbol in symbols:
                    orch.check_symbol(symbol)
            except SymbolError as exc:
                print(f"mm-trio: error: --symbols: {exc}", file=err, flush=True)
                rc = EXIT_USAGE
            recovery: Recovery | None = None
            grids = {s: config.grid_for(s) for s in symbols}
            if rc == EXIT_OK:
                for problem in await funding_problems(orch, grids):
                    print(f"mm-trio: error: {problem}", file=err, flush=True)
                    rc = EXIT_USAGE
            traded = False
            if rc == EXIT_OK:
                try:
                    with run_scope:  # a signal during recovery ends the run: nothing traded
                        if store is not None:
                            recovery = await recover_account(
                                orch, store, grids, override_recovery, out
                            )
                        await orch.add_symbols(list(grids), configs=grids)
                        freeze_heap()
                        traded = True
                        print(
                            f"mm-trio: trading {', '.join(grids)} on {exchange.name}"
                            + (f" for {duration:g}s" if duration else " (Ctrl-C to stop)"),
                            file=out,
                            flush=True,
                        )
                        if served is not None:  # after "trading": scripts read that first
                            print(served.banner, file=out, flush=True)
                        if duration is not None:
                            run_scope.deadline = trio.current_time() + duration
                        async with trio.open_nursery() as inner:
                            inner.start_soon(_print_status, orch, config.run.status_interval, out)
                            await trio.sleep_forever()
                except RecoveryError as exc:
                    print(f"mm-trio: recovery failed: {exc}", file=err, flush=True)
                    rc = EXIT_RECOVERY
            if traded:
                run_end = signals[0] if signals else ("duration" if duration else "stopped")
                written = await _finish(
                    orch, exchange, summary_json, out, alerts, recovery, run_end
                )
                if not written and rc == EXIT_OK:
                    rc = EXIT_VENUE
        outer.cancel_scope.cancel()
    return rc


async def recover_account(
    orch: Orchestrator,
    store: StateStore,
    grids: dict[str, GridConfig],
    override: bool,
    out: TextIO,
) -> Recovery:
    """Recover the account before the first order; ``grids`` gains the symbols the store
    says were running (added at runtime) with their stored grid."""
    registry = store.symbols()
    for rec in registry:
        if rec.state in RESUMABLE_STATES and rec.symbol not in grids and rec.symbol in orch.specs:
            stored, _ = registry_grid(rec)
            if stored is not None:
                log.warning("%s was running when the last run ended: trading it again", rec.symbol)
                grids[rec.symbol] = attrs.evolve(stored, anchor=None)
    # the venue still counts the orders our last process sent: so does our limiter
    now_ns = orch.exchange.now_ns()
    orch.limiter.book_earlier_orders(
        [(now_ns - ts) / 1e9 for ts in store.intent_times(now_ns - ORDER_DAY_NS)]
    )
    result = await Recoverer(orch.exchange, store, override=override).run(
        grids, orch.specs, orch.balances
    )
    for problem in result.problems:  # only with the override: else recovery raised
        log.error("recovery (overridden): %s", problem)
    orch.takeovers.update(result.takeovers)
    orch.paused_by_registry.update(r.symbol for r in registry if r.state == "paused")
    orch.stopped_by_latch.update({s: r.stopped for s, r in result.symbols.items() if r.stopped})
    if result.kill_reason is not None:
        await orch.kill(result.kill_reason)
    for line in result.lines():
        print(f"mm-trio: recovery: {line}", file=out, flush=True)
    print(f"mm-trio: recovery: done in {result.seconds:.1f}s ({store.path})", file=out, flush=True)
    return result


async def _finish(
    orch: Orchestrator,
    exchange: Exchange,
    summary_json: Path | None,
    out: TextIO,
    alerts: Sequence[str] = (),
    recovery: Recovery | None = None,
    run_end: str | None = None,
) -> bool:
    """Stop, count what is left open, print the exit table and write ``summary_json``;
    ``False`` if that file could not be written."""
    timeout = orch.config.run.shutdown_timeout
    with trio.CancelScope(shield=True), priority(Priority.SHUTDOWN):
        at_stop = orch.snapshot()
        if orch.config.run.cancel_on_exit:
            await orch.shutdown()
        else:
            log.warning("run.cancel_on_exit is false: our open orders stay on the venue")
        prefixes = {orch.config.grid_for(s).client_id_prefix for s in orch.snapshot().symbols}
        open_at_exit: dict[str, int | None] = {s: None for s in orch.snapshot().symbols}
        with trio.move_on_after(timeout):  # a venue that hangs must not hold the exit
            try:
                orders = await exchange.open_orders()
            except Exception as exc:
                log.error("cannot count open orders at exit: %s", exc)
            else:
                open_at_exit = dict.fromkeys(open_at_exit, 0)
                for order in orders:
                    if any(order.client_id.startswith(p + "_") for p in prefixes):
                        open_at_exit[order.symbol] = (open_at_exit.get(order.symbol) or 0) + 1
        summary = summary_dict(
            orch.snapshot(),
            open_at_exit,
            at_stop,
            limiter=limiter_summary(orch.limiter, alerts),
            run_end=run_end,
        )
        if recovery is not None:
            summary["recovery"] = recovery.as_dict()
        print(summary_table(summary), file=out, flush=True)
        if summary_json is not None:
            text = msgspec.json.format(msgspec.json.encode(summary)).decode() + "\n"
            try:
                summary_json.write_text(text)  # noqa: ASYNC240 - one small file at exit
            except OSError as exc:  # e.g. the disk filled up: the table above has it all
                print(
                    f"mm-trio: error: --summary-json: cannot write {str(summary_json)!r}: "
                    f"{exc.strerror or exc}",
                    file=sys.stderr,
                    flush=True,
                )
                return False
    return True
