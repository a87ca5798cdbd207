"""The ``mm-trio`` command: ``run`` trades symbols on the simulated venue (default).

Exit codes: 0 done (also after SIGINT/SIGTERM), 2 bad input (symbol, config), 1 crash.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import trio

from mm_trio import __version__
from mm_trio.apps.config_file import load_config, read_toml
from mm_trio.apps.run import EXIT_OK, EXIT_USAGE, EXIT_VENUE, run_command
from mm_trio.apps.summary import REPLAY_COLUMNS, replay_counts_line, replay_warnings, summary_table
from mm_trio.domain.config import ConfigError, validate
from mm_trio.domain.errors import ReplayInputError, UsageError
from mm_trio.domain.model import SymbolError, parse_symbol
from mm_trio.exchange.base import ExchangeError

log = logging.getLogger("mm_trio")

PAPER_COMMAND = "paper"
PAPER_ALIASES = ["venue"]  # the command's first name, kept working


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
    parser.add_argument(
        "--log-level",
        default="WARNING",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log level for stderr (default WARNING)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="trade grid strategies on one or more symbols")
    run.add_argument("--symbols", required=True, help="comma-separated BASE/QUOTE symbols")
    run.add_argument("--config", type=Path, help="TOML config file (every key has a default)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.add_argument("--seed", type=int, help="simulated venue seed (overrides venue.seed)")
    run.add_argument("--summary-json", type=Path, help="write the exit summary as JSON here")
    run.add_argument(
        "--status-interval",
        type=float,
        help="seconds between status lines (overrides run.status_interval)",
    )
    run.add_argument(
        "--venue",
        default="sim",
        choices=["sim", "binance", "binance-testnet"],
        help="sim (embedded simulated venue, default), binance or binance-testnet "
        "(keys from MM_TRIO_API_KEY + MM_TRIO_API_SECRET or "
        "MM_TRIO_ED25519_KEY)",
    )
    run.add_argument(
        "--base-url",
        help="REST base URL of a Binance-compatible venue, e.g. "
        "http://127.0.0.1:8765 (streams derived from it)",
    )
    ven = sub.add_parser(
        PAPER_COMMAND,
        aliases=PAPER_ALIASES,
        help="the paper venue: serve the simulated exchange over Binance's spot API",
    )
    ven.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any free)")
    ven.add_argument(
        "--config",
        type=Path,
        help="TOML: [venue] as for run, plus [server] (accounts, rate_limits, faults, ...)",
    )
    ven.add_argument("--seed", type=int, help="simulated market seed (overrides venue.seed)")
    ven.add_argument(
        "--replay",
        nargs="+",
        type=Path,
        metavar="FILE",
        help="serve these recordings (SPEC §10) as market data, in real time, "
        "instead of the synthetic feed",
    )
    ven.add_argument("--api-key", help="API key of the first account (default mmtrio-test-key)")
    ven.add_argument(
        "--api-secret",
        help="its HMAC secret (default mmtrio-test-secret); "
        "MM_TRIO_VENUE_API_SECRET is read if not given",
    )
    rec = sub.add_parser("record", help="record Binance combined streams (SPEC §10 format)")
    rec.add_argument("--symbols", required=True, help="comma-separated BASE/QUOTE symbols")
    rec.add_argument("--out", required=True, type=Path, help="output file (.gz)")
    rec.add_argument("--venue", default="binance", choices=["binance", "binance-testnet"])
    rec.add_argument("--base-url", help="REST base URL of a Binance-compatible venue")
    rec.add_argument("--duration", type=float, help="stop after this many seconds")
    rep = sub.add_parser("replay", help="replay recordings through the live pipeline")
    rep.add_argument("files", nargs="+", type=Path, help="recordings (SPEC §10, gzip or plain)")
    rep.add_argument("--config", type=Path, help="TOML config file")
    rep.add_argument(
        "--speed",
        default="max",
        help="'max' (as fast as possible, default) or a factor of real time",
    )
    rep.add_argument(
        "--out", type=Path, help="write orders.jsonl, fills.csv, equity.csv, summary.json here"
    )
    rep.add_argument("--no-progress", action="store_true", help="no progress bar")
    rpt = sub.add_parser("report", help="one offline HTML report (plots, metrics) of runs")
    rpt.add_argument(
        "runs",
        nargs="+",
        type=Path,
        metavar="RUN",
        help="a replay output directory (replay --out) or a state store (run --state)",
    )
    rpt.add_argument("--out", required=True, type=Path, help="the HTML file to write")
    swp = sub.add_parser("sweep", help="replay a grid of configs in parallel, ranked")
    swp.add_argument("files", nargs="+", type=Path, help="recordings (as for replay)")
    swp.add_argument(
        "--grid",
        action="append",
        required=True,
        metavar="KEY=V1,V2,...",
        help="a parameter and its values, e.g. 'step=0.0005,0.001' (a [grid] key) or "
        "'risk.jump_pct=0.01,0.03'; repeat for more (every combination is a trial)",
    )
    swp.add_argument("--config", type=Path, help="base TOML config of every trial")
    swp.add_argument("--out", required=True, type=Path, help="sweep directory (resumable)")
    swp.add_argument("--jobs", type=int, help="worker processes (default: every core)")
    swp.add_argument("--objective", default="pnl", choices=["pnl", "sharpe", "pnl_per_drawdown"])
    swp.add_argument("--trials", type=int, help="run only K of the combinations")
    swp.add_argument(
        "--sampler",
        default="tpe",
        choices=["tpe", "random"],
        help="how --trials picks them: tpe (optuna, guided by the objective; default) or random",
    )
    swp.add_argument("--seed", type=int, default=0, help="seed of the --trials choice")
    swp.add_argument("--heatmap", metavar="X,Y", help="the heat map's two --grid keys")
    swp.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


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
    from mm_trio.apps.record import record
    from mm_trio.exchange.binance.adapter import VENUES, derive_ws_urls

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
                    lines = await record(
                        symbols, args.out, ws_base_url=ws, stop_after=args.duration
                    )
                    nursery.cancel_scope.cancel()

                nursery.start_soon(go)
        print(
            f"mm-trio: recorded {', '.join(symbols)} to {args.out}"
            + (f" ({lines:,} lines)" if lines else "")
        )
        return EXIT_OK

    return _run_trio(main_task)


def load_server_config(path: Path | None, seed: int | None) -> Any:
    """``[venue]`` as for ``run`` plus an optional ``[server]`` section (accounts, limits...)."""
    from mm_trio.apps.paper.config import PaperConfig
    from mm_trio.domain.config import config_from_dict, structure

    data: dict[str, Any] = {}
    if path is not None:
        data = read_toml(path)
    server_data = data.pop("server", {})
    config = config_from_dict(data)
    venue = config.venue if seed is None else attrs.evolve(config.venue, seed=seed)
    server = structure(server_data, PaperConfig, "server")
    return attrs.evolve(server, venue=venue)


def _paper(args: argparse.Namespace) -> int:
    import os

    from mm_trio.apps.paper.auth import AdminToken
    from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV, with_credentials
    from mm_trio.apps.paper.server import serve_paper_venue

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
                port = await nursery.start(
                    lambda task_status: serve_paper_venue(
                        cfg, port=args.port, task_status=task_status
                    )
                )
                keys = ", ".join(a.api_key for a in cfg.accounts)
                print(
                    f"mm-trio {args.command}: Binance spot API on http://127.0.0.1:{port} "
                    f"(streams ws://127.0.0.1:{port}/stream, WebSocket API "
                    f"ws://127.0.0.1:{port}/ws-api/v3; api keys: {keys})",
                    flush=True,
                )
                if cfg.admin and token.generated:
                    print(
                        f"mm-trio {args.command}: admin token {token.reveal()} (generated; send "
                        f"'Authorization: Bearer <token>' to /_admin/*, or set "
                        f"{ADMIN_TOKEN_ENV} to choose one)",
                        file=sys.stderr,
                        flush=True,
                    )
                async for _ in signals:
                    nursery.cancel_scope.cancel()
                    break
        return EXIT_OK

    return _run_trio(main_task)


def _report(args: argparse.Namespace) -> int:
    from mm_trio.apps.report.command import report
    from mm_trio.apps.report.load import ReportError

    try:
        table = report(args.runs, args.out)
    except ReportError as exc:
        raise UsageError(str(exc)) from None
    print(table)
    print(f"mm-trio: report written to {args.out}")
    return EXIT_OK


EXIT_INTERRUPTED = 130


def _sweep(args: argparse.Namespace) -> int:
    from mm_trio.apps.sweep import sweep

    base = read_toml(args.config) if args.config is not None else {}
    # SIGTERM stops a sweep as Ctrl-C does: finished trials are kept for a rerun
    previous = signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        text, _ = sweep(
            args.files,
            args.grid,
            args.out,
            base=base,
            jobs=args.jobs,
            objective=args.objective,
            trials=args.trials,
            sampler=args.sampler,
            seed=args.seed,
            heatmap_keys=args.heatmap,
            progress=None if args.no_progress else sys.stderr,
        )
    except KeyboardInterrupt:
        print(
            "mm-trio: sweep interrupted; finished trials are kept: rerun the same command "
            "to resume",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(text)
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "run":
            symbols = _parse_symbols(args.symbols)
            config = load_config(args.config)
            if args.seed is not None:
                config = validate(
                    attrs.evolve(config, venue=attrs.evolve(config.venue, seed=args.seed))
                )
            if args.status_interval is not None:
                config = validate(
                    attrs.evolve(
                        config, run=attrs.evolve(config.run, status_interval=args.status_interval)
                    )
                )
            if args.duration is not None and args.duration <= 0:
                raise UsageError(f"--duration: must be > 0, got {args.duration:g}")
            if args.base_url is not None and args.venue == "sim":
                raise UsageError("--base-url needs --venue binance or binance-testnet")
            return _run_trio(
                lambda: run_command(
                    config,
                    symbols,
                    duration=args.duration,
                    summary_json=args.summary_json,
                    venue=args.venue,
                    base_url=args.base_url,
                )
            )
        if args.command == "record":
            return _record(args)
        if args.command == PAPER_COMMAND or args.command in PAPER_ALIASES:
            return _paper(args)
        if args.command == "replay":
            from mm_trio.apps.replay import run_replay

            config = load_config(args.config)
            summary = run_replay(
                args.files,
                config,
                speed=args.speed,
                out=args.out,
                progress=None if args.no_progress else sys.stderr,
            )
            print(summary_table(summary, REPLAY_COLUMNS))
            rp = summary["replay"]
            print(replay_counts_line(rp) + (f"; outputs in {args.out}" if args.out else ""))
            for warning in replay_warnings(rp):
                print(f"mm-trio: warning: {warning}", file=sys.stderr)
            return EXIT_OK
        if args.command == "report":
            return _report(args)
        if args.command == "sweep":
            return _sweep(args)
    except (UsageError, ConfigError, SymbolError, ReplayInputError) as exc:
        print(f"mm-trio: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
