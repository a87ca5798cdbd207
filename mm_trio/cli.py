"""The ``mm-trio`` command: ``run`` trades symbols on the simulated venue (default).

Exit codes: 0 done (also after SIGINT/SIGTERM), 2 bad input (symbol, config), 1 crash.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO

import attrs
import msgspec
import trio

from mm_trio import __version__
from mm_trio.config import Config, ConfigError, load_config, read_toml, validate
from mm_trio.exchange.base import Exchange, ExchangeError
from mm_trio.exchange.limiter import Limiter, Priority, priority
from mm_trio.exchange.sim.venue import SimulatedExchange
from mm_trio.model import SymbolError, parse_symbol
from mm_trio.orchestrator import Orchestrator, Snapshot, open_orchestrator
from mm_trio.replay_errors import ReplayInputError

log = logging.getLogger("mm_trio")

EXIT_OK = 0
EXIT_VENUE = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """Bad input from the user: printed as one line, exit 2."""


def _parse_symbols(text: str) -> list[str]:
    symbols = [s.strip() for s in text.split(",") if s.strip()]
    if not symbols:
        raise UsageError("--symbols: no symbol given (expected e.g. BTC/USDT,ETH/USDT)")
    seen: set[str] = set()
    for s in symbols:
        try:
            parse_symbol(s)
        except SymbolError as exc:
            raise UsageError(f"--symbols: {exc}") from None
        if s in seen:
            raise UsageError(f"--symbols: {s!r} given twice")
        seen.add(s)
    return symbols


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mm-trio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mm-trio {__version__}")
    parser.add_argument("--log-level", default="WARNING",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="log level for stderr (default WARNING)")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="trade grid strategies on one or more symbols")
    run.add_argument("--symbols", required=True, help="comma-separated BASE/QUOTE symbols")
    run.add_argument("--config", type=Path, help="TOML config file (every key has a default)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--seed", type=int, help="simulated venue seed (overrides venue.seed)")
    run.add_argument("--summary-json", type=Path, help="write the exit summary as JSON here")
    run.add_argument("--status-interval", type=float,
                     help="seconds between status lines (overrides run.status_interval)")
    run.add_argument("--venue", default="sim", choices=["sim", "binance", "binance-testnet"],
                     help="sim (embedded simulated venue, default), binance or binance-testnet "
                          "(keys from MM_TRIO_API_KEY + MM_TRIO_API_SECRET or "
                          "MM_TRIO_ED25519_KEY)")
    run.add_argument("--base-url", help="REST base URL of a Binance-compatible venue, e.g. "
                                        "http://127.0.0.1:8765 (streams derived from it)")
    ven = sub.add_parser("venue", help="serve the simulated venue over Binance's spot API")
    ven.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    ven.add_argument("--config", type=Path,
                     help="TOML: [venue] as for run, plus [server] (accounts, rate_limits, "
                          "faults, ...)")
    ven.add_argument("--seed", type=int, help="simulated market seed (overrides venue.seed)")
    ven.add_argument("--replay", nargs="+", type=Path, metavar="FILE",
                     help="serve these recordings (SPEC §10) as market data, in real time, "
                          "instead of the synthetic feed")
    ven.add_argument("--api-key", help="API key of the first account (default mmtrio-test-key)")
    ven.add_argument("--api-secret", help="its HMAC secret (default mmtrio-test-secret); "
                                          "MM_TRIO_VENUE_API_SECRET is read if not given")
    rec = sub.add_parser("record", help="record Binance combined streams (SPEC §10 format)")
    rec.add_argument("--symbols", required=True, help="comma-separated BASE/QUOTE symbols")
    rec.add_argument("--out", required=True, type=Path, help="output file (.gz)")
    rec.add_argument("--venue", default="binance", choices=["binance", "binance-testnet"])
    rec.add_argument("--base-url", help="REST base URL of a Binance-compatible venue")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rep = sub.add_parser("replay", help="replay recordings through the live pipeline")
    rep.add_argument("files", nargs="+", type=Path, help="recordings (SPEC §10, gzip or plain)")
    rep.add_argument("--config", type=Path, help="TOML config file")
    rep.add_argument("--speed", default="max",
                     help="'max' (as fast as possible, default) or a factor of real time")
    rep.add_argument("--out", type=Path,
                     help="write orders.jsonl, fills.csv, equity.csv, summary.json here")
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


# --------------------------------------------------------------------------- output


def _fmt(d: Decimal | None, places: int = 2) -> str:
    if d is None:
        return "-"
    return f"{d:.{places}f}"


def status_line(snapshot: Snapshot) -> str:
    parts = []
    for sym, s in snapshot.symbols.items():
        breakers = ",".join(s.breakers) or "-"
        parts.append(
            f"{sym} {s.state} mid={_fmt(s.mid, 4)} pos={s.position.normalize():f} "
            f"open={s.open_orders} fills={s.fills} pnl={_fmt(s.total_pnl, 4)} brk={breakers}"
        )
    exp = snapshot.exposure
    parts.append(f"exposure={_fmt(exp.total)}/{exp.max_total}")
    return " | ".join(parts)


def plain(value: Decimal) -> str:
    """A Decimal as plain digits without trailing zeros (``0E-13`` -> ``0``)."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


def _plain_tree(value: Any) -> Any:
    if isinstance(value, Decimal):
        return plain(value)
    if isinstance(value, dict):
        return {k: _plain_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain_tree(v) for v in value]
    return value


def summary_dict(snapshot: Snapshot, open_at_exit: dict[str, int | None],
                 exposure_at_stop: Snapshot | None = None, *,
                 limiter: dict[str, Any] | None = None) -> dict[str, Any]:
    """The exit summary (``--summary-json``); ``exposure_at_stop`` is a snapshot taken when
    trading stopped, before our orders were cancelled and the symbols removed; ``limiter``
    (see :func:`limiter_summary`) adds the rate limiter's counters and the venue's alerts."""
    symbols: dict[str, Any] = {}
    for sym, s in snapshot.symbols.items():
        symbols[sym] = {
            "fills": s.fills,
            "buys": s.buys,
            "sells": s.sells,
            "position": plain(s.position),
            "realized_pnl": plain(s.realized_pnl),
            "unrealized_pnl": plain(s.unrealized_pnl),
            "fees": plain(s.fees_quote),
            "max_inventory": plain(s.max_inventory),
            "breaker_trips": s.breaker_trips,
            # None (null) when the venue could not be asked
            "open_orders_at_exit": open_at_exit.get(sym, s.open_orders),
            "state": s.state,
            "reason": s.reason,
            # execution reports of orders that are not ours (hand-placed, other programs)
            "foreign_reports": s.foreign_reports,
        }
    exposure = (exposure_at_stop or snapshot).exposure
    summary: dict[str, Any] = {
        "symbols": symbols,
        "exposure": _plain_tree(msgspec.to_builtins(exposure, builtin_types=(Decimal,))),
        "killed": snapshot.killed,
        "kill_reason": snapshot.kill_reason,
    }
    if limiter is not None:
        summary["limiter"] = limiter
    return summary


def limiter_summary(limiter: Limiter, alerts: Sequence[str]) -> dict[str, Any]:
    """The limiter's counters (``pauses`` by 429 or 418, ``bans`` by 418 alone) and every
    alert it raised (one per ban)."""
    return {**limiter.stats(), "alerts": list(alerts)}


RUN_COLUMNS = ["symbol", "state", "fills", "buys", "sells", "position", "realized_pnl",
               "unrealized_pnl", "fees", "open_orders_at_exit"]
REPLAY_COLUMNS = ["symbol", "events", "fills", "buys", "sells", "position", "realized_pnl",
                  "unrealized_pnl", "fees", "max_inventory", "breaker_trips"]


def summary_table(summary: dict[str, Any], cols: Sequence[str] = RUN_COLUMNS) -> str:
    rows = [list(cols)]
    for sym, s in summary["symbols"].items():
        rows.append([sym] + [str(s[c]) for c in cols[1:]])
    widths = [max(len(r[i]) for r in rows) for i in range(len(cols))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    exp = summary["exposure"]
    lines.append(f"exposure total {exp.get('total')} (cap {exp.get('max_total')})"
                 + ("  KILLED: " + summary["kill_reason"] if summary["killed"] else ""))
    lim = summary.get("limiter")
    if lim and lim["pauses"]:
        lines.append(f"venue paused us {lim['pauses']} times ({lim['bans']} bans, 418)")
    return "\n".join(lines)


def replay_counts_line(rp: dict[str, Any]) -> str:
    """One line of the replay's counts (the summary's ``replay`` section)."""
    return (f"replayed {rp['records']:,} records ({rp['duration_s']}s of market time); "
            f"malformed lines {rp['malformed_lines']}, unknown streams "
            f"{rp['unknown_streams']}, unknown symbols {rp['unknown_symbols']}; "
            f"time jumps skipped {rp['time_jumps_skipped']}, out of order skipped "
            f"{rp['out_of_order_skipped']}, late lines kept {rp['late_lines_kept']}; "
            f"truncated files {rp['truncated_files']}, corrupt files {rp['corrupt_files']}")


def replay_warnings(rp: dict[str, Any]) -> list[str]:
    """What the user must hear about the replay's input: every damaged file, where it stopped,
    then the first problems by file and line."""
    out = [f"{d['file']} is {d['problem']} at byte {d['at_byte']}: its lines up to line "
           f"{d['after_line']} were replayed, reading stopped there ({d['detail']})"
           for d in rp["damage"]]
    out.extend(rp["problems"])
    return out


# --------------------------------------------------------------------------- run


async def _print_status(orch: Orchestrator, interval: float, out: TextIO) -> None:
    while True:
        await trio.sleep(interval)
        print(status_line(orch.snapshot()), file=out, flush=True)


async def _watch_signals(run_scope: trio.CancelScope, bound: float) -> None:
    """SIGINT/SIGTERM end the run (our orders are then cancelled). Later signals are only
    acknowledged: interrupting the cancels would leave orders behind, and the shutdown is
    bounded anyway."""
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            name = signal.Signals(signum).name
            if not run_scope.cancel_called:
                log.warning("received %s: cancelling our orders and exiting", name)
                run_scope.cancel()
            else:
                print(f"mm-trio: {name} again: still cancelling our orders (at most "
                      f"{bound:g}s more)", file=sys.stderr, flush=True)


def make_exchange(venue: str, base_url: str | None, config: Config,
                  limiter: Limiter) -> Exchange:
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


async def run_command(config: Config, symbols: Sequence[str], *, duration: float | None,
                      summary_json: Path | None, out: TextIO = sys.stdout,
                      err: TextIO = sys.stderr, venue: str = "sim",
                      base_url: str | None = None) -> int:
    """Trade ``symbols`` until ``duration`` elapses or SIGINT/SIGTERM; print the summary."""
    alerts: list[str] = []  # venue bans: logged at ERROR by the limiter, kept for the summary
    limiter = Limiter(config.limiter, on_alert=alerts.append)
    exchange = make_exchange(venue, base_url, config, limiter)
    run_scope = trio.CancelScope()
    rc = EXIT_OK
    async with trio.open_nursery() as outer:
        outer.start_soon(_watch_signals, run_scope, 3 * config.run.shutdown_timeout)
        async with open_orchestrator(exchange, config, limiter=limiter) as orch:
            try:
                for symbol in symbols:
                    orch.check_symbol(symbol)
            except SymbolError as exc:
                print(f"mm-trio: error: --symbols: {exc}", file=err, flush=True)
                rc = EXIT_USAGE
            if rc == EXIT_OK:
                await orch.add_symbols(list(symbols))
                print(f"mm-trio: trading {', '.join(symbols)} on {exchange.name}"
                      + (f" for {duration:g}s" if duration else " (Ctrl-C to stop)"),
                      file=out, flush=True)
                with run_scope:
                    if duration is not None:
                        run_scope.deadline = trio.current_time() + duration
                    async with trio.open_nursery() as inner:
                        inner.start_soon(_print_status, orch, config.run.status_interval, out)
                        await trio.sleep_forever()
                await _finish(orch, exchange, summary_json, out, alerts)
        outer.cancel_scope.cancel()
    return rc


async def _finish(orch: Orchestrator, exchange: Exchange, summary_json: Path | None,
                  out: TextIO, alerts: Sequence[str] = ()) -> None:
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
        summary = summary_dict(orch.snapshot(), open_at_exit, at_stop,
                               limiter=limiter_summary(orch.limiter, alerts))
        print(summary_table(summary), file=out, flush=True)
        if summary_json is not None:
            text = msgspec.json.format(msgspec.json.encode(summary)).decode() + "\n"
            summary_json.write_text(text)  # noqa: ASYNC240 - one small file at exit


def _leaf(exc: BaseException) -> BaseException:
    while isinstance(exc, BaseExceptionGroup) and len(exc.exceptions) == 1:
        exc = exc.exceptions[0]
    return exc


def _run_trio(fn: Any) -> int:
    """``trio.run`` with venue failures reported in one line (exit 1), not a traceback."""
    try:
        return int(trio.run(fn))
    except BaseExceptionGroup as group:
        leaf = _leaf(group)
        if isinstance(leaf, (ExchangeError, OSError)):
            print(f"mm-trio: venue error: {leaf}", file=sys.stderr)
            return EXIT_VENUE
        if isinstance(leaf, (UsageError, SymbolError, ReplayInputError, ConfigError)):
            print(f"mm-trio: error: {leaf}", file=sys.stderr)
            return EXIT_USAGE
        raise
    except (ExchangeError, OSError) as exc:
        print(f"mm-trio: venue error: {exc}", file=sys.stderr)
        return EXIT_VENUE


def _record(args: argparse.Namespace) -> int:
    from mm_trio.exchange.binance.adapter import VENUES, derive_ws_urls
    from mm_trio.recorder import record

    symbols = _parse_symbols(args.symbols)
    if args.duration is not None and args.duration <= 0:
        raise UsageError(f"--duration: must be > 0, got {args.duration:g}")
    if args.out.exists():
        raise UsageError(f"--out: {str(args.out)!r} exists; not overwriting a recording")
    try:
        ws = derive_ws_urls(args.base_url)[0] if args.base_url else VENUES[args.venue][1]
    except ValueError as exc:
        raise UsageError(f"--base-url: {exc}") from None

    async def main_task() -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                async def stop_on_signal() -> None:
                    async for _ in signals:
                        nursery.cancel_scope.cancel()
                        return

                nursery.start_soon(stop_on_signal)
                lines = 0

                async def go() -> None:
                    nonlocal lines
                    lines = await record(symbols, args.out, ws_base_url=ws,
                                         stop_after=args.duration)
                    nursery.cancel_scope.cancel()

                nursery.start_soon(go)
        print(f"mm-trio: recorded {', '.join(symbols)} to {args.out}"
              + (f" ({lines:,} lines)" if lines else ""))
        return EXIT_OK

    return _run_trio(main_task)


def load_server_config(path: Path | None, seed: int | None) -> Any:
    """``[venue]`` as for ``run`` plus an optional ``[server]`` section (accounts, limits...)."""
    from mm_trio.config import config_from_dict, structure
    from mm_trio.venue.config import VenueServerConfig

    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    server_data = data.pop("server", {})
    config = config_from_dict(data)
    venue = config.venue if seed is None else attrs.evolve(config.venue, seed=seed)
    server = structure(server_data, VenueServerConfig, "server")
    return attrs.evolve(server, venue=venue)


def _venue(args: argparse.Namespace) -> int:
    import os

    from mm_trio.venue.auth import AdminToken
    from mm_trio.venue.config import ADMIN_TOKEN_ENV, with_credentials
    from mm_trio.venue.server import serve_venue

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0..65535, got {args.port}")
    cfg = load_server_config(args.config, args.seed)
    if args.replay:
        for path in args.replay:
            if not path.is_file():
                raise UsageError(f"--replay: recording {str(path)!r} does not exist")
        cfg = attrs.evolve(cfg, replay=tuple(str(p) for p in args.replay))
    secret = args.api_secret or os.environ.get("MM_TRIO_VENUE_API_SECRET")
    cfg = with_credentials(cfg, api_key=args.api_key, api_secret=secret)
    try:
        token = AdminToken.resolve(cfg.admin_token, os.environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    # resolved here so that a generated token is printed once, whatever the log level
    cfg = attrs.evolve(cfg, admin_token=token.reveal())

    async def main_task() -> int:
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as nursery:
                port = await nursery.start(lambda task_status: serve_venue(
                    cfg, port=args.port, task_status=task_status))
                keys = ", ".join(a.api_key for a in cfg.accounts)
                print(f"mm-trio venue: Binance spot API on http://127.0.0.1:{port} "
                      f"(streams ws://127.0.0.1:{port}/stream, WebSocket API "
                      f"ws://127.0.0.1:{port}/ws-api/v3; api keys: {keys})", flush=True)
                if cfg.admin and token.generated:
                    print(f"mm-trio venue: admin token {token.reveal()} (generated; send "
                          f"'Authorization: Bearer <token>' to /_admin/*, or set "
                          f"{ADMIN_TOKEN_ENV} to choose one)", file=sys.stderr, flush=True)
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        return EXIT_OK

    return _run_trio(main_task)


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "run":
            symbols = _parse_symbols(args.symbols)
            config = load_config(args.config)
            if args.seed is not None:
                config = validate(attrs.evolve(config,
                                               venue=attrs.evolve(config.venue, seed=args.seed)))
            if args.status_interval is not None:
                config = validate(attrs.evolve(config, run=attrs.evolve(
                    config.run, status_interval=args.status_interval)))
            if args.duration is not None and args.duration <= 0:
                raise UsageError(f"--duration: must be > 0, got {args.duration:g}")
            if args.base_url is not None and args.venue == "sim":
                raise UsageError("--base-url needs --venue binance or binance-testnet")
            return _run_trio(lambda: run_command(config, symbols, duration=args.duration,
                                                 summary_json=args.summary_json,
                                                 venue=args.venue, base_url=args.base_url))
        if args.command == "record":
            return _record(args)
        if args.command == "venue":
            return _venue(args)
        if args.command == "replay":
            from mm_trio.replay import run_replay

            config = load_config(args.config)
            summary = run_replay(args.files, config, speed=args.speed, out=args.out,
                                 progress=None if args.no_progress else sys.stderr)
            print(summary_table(summary, REPLAY_COLUMNS))
            rp = summary["replay"]
            print(replay_counts_line(rp) + (f"; outputs in {args.out}" if args.out else ""))
            for warning in replay_warnings(rp):
                print(f"mm-trio: warning: {warning}", file=sys.stderr)
            return EXIT_OK
    except (UsageError, ConfigError, SymbolError, ReplayInputError) as exc:
        print(f"mm-trio: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
