"""The ``mm-trio`` command: ``run`` trades symbols on the simulated venue (default).

Exit codes: 0 done (also after SIGINT/SIGTERM), 2 bad input (symbol, config), 1 crash.
The verbs (``status``, ``symbols``, ``pause``, ``resume``, ``kill``) talk to a running
``run``'s control plane: 0 ok, 1 not reachable / refused, 2 bad input.
"""

from __future__ import annotations

import argparse
import gc
import logging
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

import attrs
import trio

from mm_trio import __version__
from mm_trio.apps.config_file import load_config, read_toml
from mm_trio.apps.control.names import DEFAULT_PORT as CONTROL_PORT
from mm_trio.apps.control.names import TOKEN_ENV, URL_ENV
from mm_trio.apps.logs import LEVELS, setup_logging
from mm_trio.apps.output_paths import check_output_dir, check_output_file, check_seconds
from mm_trio.apps.run import EXIT_OK, EXIT_USAGE, EXIT_VENUE, run_command
from mm_trio.apps.state_file import state_path
from mm_trio.apps.summary import REPLAY_COLUMNS, replay_counts_line, replay_warnings, summary_table
from mm_trio.domain.config import ConfigError, validate
from mm_trio.domain.errors import ReplayInputError, UsageError
from mm_trio.domain.model import SymbolError, parse_symbol
from mm_trio.exchange.base import ExchangeError

log = logging.getLogger("mm_trio")

VERBS = ("status", "symbols", "pause", "resume", "kill")
EXIT_SIGNAL_BASE = 128
"""A command stopped by signal N exits 128 + N (the shell's convention: 130 SIGINT, 143
SIGTERM)."""
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


class _Parser(argparse.ArgumentParser):
    """argparse with bad arguments told in one line (and the --help to read), exit 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_logging_options(parser: argparse.ArgumentParser, *, top: bool) -> None:
    """``--log-level`` / ``--json-logs`` before or after the subcommand: a subcommand's
    copies have no default (argparse.SUPPRESS), so they override only when given."""
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LEVELS,
        default="WARNING" if top else argparse.SUPPRESS,
        help="log level for stderr (default WARNING)",
    )
    parser.add_argument(
        "--json-logs",
        action="store_true",
        default=False if top else argparse.SUPPRESS,
        help="log one JSON object per line (ts, level, logger, message, symbol)",
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="mm-trio", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"mm-trio {__version__}")
    _add_logging_options(parser, top=True)
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
    run.add_argument(
        "--state",
        type=Path,
        help="state store (SQLite) of this account: journal, fills, registry; recovery on "
        "start (default: none for --venue sim; a file per venue and API key under the "
        "user data directory for binance)",
    )
    run.add_argument(
        "--no-state", action="store_true", help="keep no state store (no crash recovery)"
    )
    run.add_argument(
        "--override-recovery",
        action="store_true",
        help="trade even if recovery finds the store and the venue disagree (the store's "
        "inventory is kept; every disagreement is logged at ERROR)",
    )
    run.add_argument("--quiet", action="store_true", help="do not print each fill as it happens")
    run.add_argument(
        "--control",
        metavar="HOST:PORT|off",
        help="serve the control API, events and /metrics here (default "
        f"127.0.0.1:{CONTROL_PORT}; port 0: any free one; 'off': none)",
    )
    run.add_argument(
        "--control-allow-remote",
        action="store_true",
        help="allow --control on a non-loopback address (anyone reaching it needs only the token)",
    )
    verbs = _Parser(add_help=False)
    verbs.add_argument(
        "--control",
        metavar="URL",
        help=f"the run's control API (default ${URL_ENV} or http://127.0.0.1:{CONTROL_PORT}); "
        f"token from ${TOKEN_ENV} or the file the run wrote",
    )
    verbs.add_argument("--json", action="store_true", help="print the API's JSON answer")
    sub.add_parser("status", parents=[verbs], help="status of a running mm-trio run")
    sym = sub.add_parser("symbols", help="list, add or remove symbols of a running mm-trio run")
    sym_sub = sym.add_subparsers(dest="symbols_verb", required=True)
    sym_sub.add_parser("list", parents=[verbs], help="the running symbols")
    add = sym_sub.add_parser("add", parents=[verbs], help="start trading a symbol")
    add.add_argument("symbol", help="BASE/QUOTE, e.g. SOL/USDT")
    add.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a [grid] key for this symbol, e.g. --set step=0.002 (repeatable)",
    )
    rm = sym_sub.add_parser("remove", parents=[verbs], help="cancel a symbol's orders, stop it")
    rm.add_argument("symbol", help="BASE/QUOTE")
    pause = sub.add_parser(
        "pause", parents=[verbs], help="stop opening orders (take-profits stay) on one or all"
    )
    pause.add_argument("symbol", nargs="?", help="BASE/QUOTE (default: every symbol)")
    resume = sub.add_parser(
        "resume", parents=[verbs], help="lift a pause; without a symbol also lift the kill switch"
    )
    resume.add_argument("symbol", nargs="?", help="BASE/QUOTE (default: every symbol)")
    kill = sub.add_parser("kill", parents=[verbs], help="kill switch: cancel everything, stop")
    kill.add_argument("--reason", help="why (shown in status and logs)")
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
    ven.add_argument(
        "--replay-speed",
        type=float,
        metavar="X",
        help="serve the --replay recordings X times faster than real time (overrides "
        "server.replay_speed; default 1)",
    )
    ven.add_argument(
        "--replay-repeat",
        type=int,
        metavar="N",
        help="play the --replay recordings N times in a row, 0: until stopped (overrides "
        "server.replay_repeat; default 1)",
    )
    ven.add_argument(
        "--state",
        type=Path,
        help="keep every account's balances, orders, trades and ids in this SQLite file, so a "
        "restarted venue serves the same accounts (overrides server.state)",
    )
    ven.add_argument("--api-key", help="API key of the first account (default mmtrio-test-key)")
    ven.add_argument(
        "--api-secret",
        help="its HMAC secret (default mmtrio-test-secret); "
        "MM_TRIO_VENUE_API_SECRET is read if not given",
    )
    trades = sub.add_parser("trades", help="the state store's fill ledger (read-only)")
    trades.add_argument("--state", required=True, type=Path, help="the state store file")
    trades.add_argument("--symbol", help="only this BASE/QUOTE symbol")
    trades.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
    orders = sub.add_parser("orders", help="the state store's order journal (read-only)")
    orders.add_argument("--state", required=True, type=Path, help="the state store file")
    orders.add_argument("--open", action="store_true", help="only orders with no final outcome yet")
    orders.add_argument("--symbol", help="only this BASE/QUOTE symbol")
    orders.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")
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
    rep.add_argument(
        "--state",
        type=Path,
        help="journal orders and fills into this NEW state store, as a live run does",
    )
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
    for subparser in {id(p): p for p in sub.choices.values()}.values():  # aliases: once
        _add_logging_options(subparser, top=False)
    return parser


def _control_options(value: str | None, allow_remote: bool) -> Any:
    """``--control HOST:PORT`` / ``off`` / default, with its token (ControlOptions | None)."""
    import os

    from mm_trio.apps.control.server import ControlOptions
    from mm_trio.apps.control.token import DEFAULT_HOST, ControlToken
    from mm_trio.apps.web import is_loopback

    if value is not None and value.strip().lower() == "off":
        return None
    host, port = DEFAULT_HOST, CONTROL_PORT
    if value is not None:
        text = value.strip()
        host, sep, port_text = text.rpartition(":")
        host = host.strip("[]")
        if not sep or not host or not port_text.isdigit() or int(port_text) > 65535:
            raise UsageError(
                f"--control: expected HOST:PORT (e.g. 127.0.0.1:{CONTROL_PORT}) or off, "
                f"got {value!r}"
            )
        port = int(port_text)
        if not is_loopback(host) and not allow_remote:
            raise UsageError(
                f"--control: {host!r} is not a loopback address; the control API can trade "
                "your account: add --control-allow-remote to bind it anyway"
            )
    try:
        token = ControlToken.resolve(os.environ)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    return ControlOptions(host, port, token, explicit=value is not None)


def _verb(args: argparse.Namespace) -> int:
    from mm_trio.apps.control.client import VerbError, run_verb

    verb = args.symbols_verb if args.command == "symbols" else args.command
    try:
        return run_verb(
            verb,
            url=args.control,
            as_json=args.json,
            symbol=getattr(args, "symbol", None),
            overrides=getattr(args, "set", ()),
            reason=getattr(args, "reason", None),
        )
    except VerbError as exc:
        print(f"mm-trio: error: {exc}", file=sys.stderr)
        return exc.code


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
    from mm_trio.apps.record import record_command
    from mm_trio.exchange.binance.adapter import VENUES, derive_ws_urls

    symbols = _parse_symbols(args.symbols)
    check_seconds("--duration", args.duration)
    if args.out.exists():
        raise UsageError(f"--out: {str(args.out)!r} exists; not overwriting a recording")
    check_output_file("--out", args.out)
    try:
        ws = derive_ws_urls(args.base_url)[0] if args.base_url else VENUES[args.venue][1]
    except ValueError as exc:
        raise UsageError(f"--base-url: {exc}") from None
    rest = args.base_url or VENUES[args.venue][0]
    return _run_trio(
        lambda: record_command(
            symbols,
            args.out,
            ws_base_url=ws,
            rest_url=rest,
            venue=args.base_url or args.venue,
            stop_after=args.duration,
            out=sys.stdout,
            err=sys.stderr,
        )
    )


def _audit(args: argparse.Namespace) -> int:
    import os

    from mm_trio.apps.audit import orders_command, trades_command

    try:
        if args.command == "trades":
            trades_command(args.state, args.symbol, as_csv=args.csv, out=sys.stdout)
        else:
            orders_command(
                args.state, args.symbol, open_only=args.open, as_csv=args.csv, out=sys.stdout
            )
        sys.stdout.flush()
    except BrokenPipeError:  # e.g. piped into head: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return EXIT_OK


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


def _replay_pace(cfg: Any, speed: float | None, repeat: int | None) -> Any:
    """``--replay-speed`` / ``--replay-repeat`` into the venue config, validated."""
    from mm_trio.apps.paper.config import replay_speed_error

    if speed is not None:
        why = replay_speed_error(speed)
        if why is not None:
            raise UsageError(f"--replay-speed: {why}, got {speed:g}")
        cfg = attrs.evolve(cfg, replay_speed=speed)
    if repeat is not None:
        if repeat < 0:
            raise UsageError(f"--replay-repeat: must be >= 0 (0: until stopped), got {repeat}")
        cfg = attrs.evolve(cfg, replay_repeat=repeat)
    if (cfg.replay_speed != 1 or cfg.replay_repeat != 1) and not cfg.replay:
        raise UsageError("--replay-speed and --replay-repeat need recordings (--replay FILE...)")
    return cfg


def _paper(args: argparse.Namespace) -> int:
    import os

    from mm_trio.apps.heap import freeze_heap
    from mm_trio.apps.paper.auth import AdminToken
    from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV, with_credentials
    from mm_trio.apps.paper.server import serve_paper_venue
    from mm_trio.apps.paper.state import VenueStateError, VenueStateWriteError

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port: must be 0..65535, got {args.port}")
    cfg = load_server_config(args.config, args.seed)
    if args.replay:
        for path in args.replay:
            if not path.is_file():
                raise UsageError(f"--replay: recording {str(path)!r} does not exist")
        cfg = attrs.evolve(cfg, replay=tuple(str(p) for p in args.replay))
    cfg = _replay_pace(cfg, args.replay_speed, args.replay_repeat)
    if args.state is not None:
        cfg = attrs.evolve(cfg, state=str(args.state))
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
                freeze_heap()  # see mm_trio.apps.heap; unfrozen when the venue stops
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

    try:
        return _run_trio(main_task)
    except (VenueStateError, BaseExceptionGroup) as exc:
        failure: BaseException = exc
        if isinstance(exc, BaseExceptionGroup):
            state_errors, others = exc.split(VenueStateError)
            if state_errors is None or others is not None:
                raise
            failure = state_errors
            while isinstance(failure, BaseExceptionGroup):  # the same failure, seen twice
                failure = failure.exceptions[0]
        print(f"mm-trio: error: {failure}", file=sys.stderr)
        # a file refused at start is bad input; a write that failed while serving is not
        return EXIT_VENUE if isinstance(failure, VenueStateWriteError) else EXIT_USAGE
    finally:
        gc.unfreeze()


def _replay(args: argparse.Namespace) -> int:
    """``mm-trio replay``; SIGINT / SIGTERM stop it early: what was replayed is reported and
    written (``"partial": true``), exit 130 / 143 (128 + the signal's number)."""
    from mm_trio.apps.replay import run_replay

    config = load_config(args.config)
    if args.out is not None:
        check_output_dir("--out", args.out)
    interrupted: list[str] = []
    try:
        summary = run_replay(
            args.files,
            config,
            speed=args.speed,
            out=args.out,
            progress=None if args.no_progress else sys.stderr,
            state=args.state,
            interrupted=interrupted,
        )
    except KeyboardInterrupt:  # before the replay could stop in order: nothing to write
        print("mm-trio: replay interrupted while starting; nothing written", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signal.SIGINT
    print(summary_table(summary, REPLAY_COLUMNS))
    rp = summary["replay"]
    print(replay_counts_line(rp) + (f"; outputs in {args.out}" if args.out else ""))
    for warning in replay_warnings(rp):
        print(f"mm-trio: warning: {warning}", file=sys.stderr)
    if interrupted:
        name = interrupted[0]
        print(
            f"mm-trio: replay stopped by {name} after {rp['duration_s']}s of market time: "
            "the results are partial" + (' ("partial": true in summary.json)' if args.out else ""),
            file=sys.stderr,
        )
        return EXIT_SIGNAL_BASE + signal.Signals[name].value
    return EXIT_OK


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


def _run(args: argparse.Namespace) -> int:
    symbols = _parse_symbols(args.symbols)
    config = load_config(args.config)
    if args.seed is not None:
        config = validate(attrs.evolve(config, venue=attrs.evolve(config.venue, seed=args.seed)))
    check_seconds("--status-interval", args.status_interval)
    if args.status_interval is not None:
        config = validate(
            attrs.evolve(config, run=attrs.evolve(config.run, status_interval=args.status_interval))
        )
    check_seconds("--duration", args.duration)
    if args.base_url is not None and args.venue == "sim":
        raise UsageError("--base-url needs --venue binance or binance-testnet")
    from mm_trio.exchange.binance.adapter import ENV_API_KEY

    if args.state is not None and args.no_state:
        raise UsageError("--state and --no-state exclude each other")
    state = state_path(
        given=args.state,
        configured=config.run.state,
        disabled=args.no_state,
        venue=args.venue,
        base_url=args.base_url,
        api_key=os.environ.get(ENV_API_KEY),
    )
    control = _control_options(args.control, args.control_allow_remote)
    if args.summary_json is not None:
        check_output_file("--summary-json", args.summary_json)
    return _run_trio(
        lambda: run_command(
            config,
            symbols,
            duration=args.duration,
            summary_json=args.summary_json,
            venue=args.venue,
            base_url=args.base_url,
            state=state,
            override_recovery=args.override_recovery,
            quiet=args.quiet,
            control=control,
        )
    )


_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


def main(argv: Sequence[str] | None = None) -> int:
    parser = _build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_level, json_lines=args.json_logs)
    try:
        handler = _COMMANDS.get(args.command)
        if handler is not None:
            return handler(args)
        if args.command in VERBS:
            return _verb(args)
        if args.command in ("trades", "orders"):
            return _audit(args)
        if args.command == PAPER_COMMAND or args.command in PAPER_ALIASES:
            return _paper(args)
    except (UsageError, ConfigError, SymbolError, ReplayInputError) as exc:
        print(f"mm-trio: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:  # Ctrl-C before a command listens for it (or one that does not)
        print("mm-trio: interrupted", file=sys.stderr)
        return EXIT_SIGNAL_BASE + signal.SIGINT
    except Exception as exc:  # a bug of ours: one line for the user, the traceback in a file
        return _internal_error(exc)
    parser.error(f"unknown command {args.command!r}")
    return EXIT_USAGE


def _internal_error(exc: BaseException) -> int:
    """Report an unexpected exception in one line, with its traceback saved for a report."""
    import tempfile
    import traceback

    leaf = _leaf(exc)
    where = ""
    try:
        with tempfile.NamedTemporaryFile(
            "w", prefix="mm-trio-crash-", suffix=".txt", delete=False
        ) as f:
            traceback.print_exception(exc, file=f)
            where = f"; the traceback is in {f.name}"
    except OSError:
        pass
    print(
        f"mm-trio: internal error: {type(leaf).__name__}: {leaf} (a bug: please report it{where})",
        file=sys.stderr,
    )
    return EXIT_VENUE


_COMMANDS.update(
    {"run": _run, "record": _record, "replay": _replay, "report": _report, "sweep": _sweep}
)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
