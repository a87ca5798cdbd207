"""``mm-trio sweep``: replay a grid of configs over recordings in parallel worker processes.

Each ``--grid KEY=V1,V2,...`` is one parameter (``step`` means ``grid.step``; any
``section.key`` of the config file works, e.g. ``risk.jump_pct``); the trials are every
combination (or ``--trials K`` of them, drawn at random with ``--seed``) on top of the
``--config`` file. Every trial is validated before any work starts (a bad key or value is a
:class:`~mm_trio.domain.config.ConfigError` naming it).

A trial is one :func:`~mm_trio.apps.replay.run_replay` in a fresh ``trio.run`` inside a
worker process (``forkserver`` where the platform has it, else ``spawn``: nothing is
inherited from the parent's state), exactly what ``mm-trio replay --config
trials/<id>/config.toml --out DIR`` does, so its outputs are byte-identical to that command.
Its metrics are the report's (:mod:`mm_trio.apps.report`), read back from its outputs.

Layout of ``--out DIR``: ``trials/<id>/`` per trial (the replay outputs, ``config.toml`` and,
written last and atomically, ``result.json``); ``results.csv`` (ranked) and ``sweep.html``
(the ranked table and a heat map of the objective over two parameters). The trial id is a
hash of the trial's whole config and of the recordings (path, size), so a rerun of the same
command skips every trial that has its ``result.json`` and redoes only the rest; a changed
base config or recording gives new trials.
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import hashlib
import html
import io
import itertools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import tomli_w

from mm_trio.domain.config import ConfigError, config_from_dict
from mm_trio.domain.errors import UsageError

OBJECTIVES = ("pnl", "sharpe", "pnl_per_drawdown")
SAMPLERS = ("tpe", "random")
"""How ``--trials K`` picks its K trials: optuna's TPE, guided by the finished trials'
objective, or a seeded random draw."""
RESULT_FILE = "result.json"
TRIALS_DIR = "trials"
TRIAL_ID_CHARS = 12
TABLE_ROWS = 20
"""The terminal shows the best this many trials (results.csv and sweep.html have all)."""
HEATMAP_HEIGHT = 600
_INT_RE = re.compile(r"^[+-]?\d+$")
_KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?$")


@dataclass(frozen=True, slots=True)
class Param:
    key: str  # dotted: "grid.step"
    values: tuple[Any, ...]


def _value(text: str) -> Any:
    """``"5"`` -> 5, ``"true"`` -> True, anything else stays text (decimals stay exact)."""
    if _INT_RE.match(text):
        return int(text)
    if text in ("true", "false"):
        return text == "true"
    return text


def parse_grid(specs: Sequence[str]) -> list[Param]:
    """``["step=0.001,0.002", "levels_below=3,5"]`` -> params; :class:`UsageError` naming
    the bad specification."""
    if not specs:
        raise UsageError("--grid: give at least one, e.g. --grid 'step=0.0005,0.001,0.002'")
    params: list[Param] = []
    for spec in specs:
        key, sep, values = spec.partition("=")
        key = key.strip()
        if not sep or not key:
            raise UsageError(f"--grid {spec!r}: expected KEY=V1,V2,... (e.g. step=0.001,0.002)")
        if not _KEY_RE.match(key):
            raise UsageError(f"--grid {spec!r}: {key!r} is not a config key (grid key or a.b)")
        dotted = key if "." in key else f"grid.{key}"
        items = [v.strip() for v in values.split(",")]
        if not items or any(not v for v in items):
            raise UsageError(f"--grid {spec!r}: empty value in {values!r}")
        if len(set(items)) != len(items):
            raise UsageError(f"--grid {spec!r}: a value is given twice")
        if any(p.key == dotted for p in params):
            raise UsageError(f"--grid: {dotted} is given twice")
        params.append(Param(dotted, tuple(_value(v) for v in items)))
    return params


def combinations(params: Sequence[Param]) -> list[dict[str, Any]]:
    return [
        dict(zip((p.key for p in params), combo, strict=True))
        for combo in itertools.product(*(p.values for p in params))
    ]


def with_params(base: dict[str, Any], params: dict[str, Any]) -> dict[str, Any]:
    """The base config data with each ``section.key`` set (``base`` is not changed)."""
    data = json.loads(json.dumps(base))  # a deep copy of plain TOML data
    for dotted, value in params.items():
        section, key = dotted.split(".")
        table = data.setdefault(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"invalid config: {section} is not a table")
        table[key] = value
    return data


@dataclass(frozen=True, slots=True)
class Trial:
    id: str
    params: dict[str, Any]
    config: dict[str, Any]


def plan(
    base: dict[str, Any],
    params: Sequence[Param],
    recordings: Sequence[Path],
    *,
    trials: int | None = None,
    seed: int = 0,
) -> list[Trial]:
    """Every combination as a validated trial (:class:`ConfigError` names the bad key and
    value), or ``trials`` of them drawn at random with ``seed``."""
    if trials is not None and trials < 1:
        raise UsageError(f"--trials: must be >= 1, got {trials}")
    files = [[str(p.resolve()), p.stat().st_size] for p in recordings]
    out = []
    for combo in combinations(params):
        data = with_params(base, combo)
        try:
            config_from_dict(data)
        except ConfigError as exc:
            shown = ", ".join(f"{k}={v}" for k, v in combo.items())
            raise ConfigError(f"{exc} (trial {shown})") from None
        key = json.dumps({"config": data, "recordings": files}, sort_keys=True)
        digest = hashlib.sha256(key.encode()).hexdigest()[:TRIAL_ID_CHARS]
        out.append(Trial(digest, combo, data))
    if trials is not None and trials < len(out):
        out = random.Random(seed).sample(out, trials)
    return out


# --------------------------------------------------------------------------- one trial


def run_trial(trial_dir: str, recordings: list[str], config: dict[str, Any]) -> dict[str, Any]:
    """The worker: one replay, its metrics, then ``result.json`` (written last)."""
    from mm_trio.apps.replay import run_replay
    from mm_trio.apps.report.command import run_metrics
    from mm_trio.apps.report.load import TOTAL, load_run

    out = Path(trial_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.toml").write_text(tomli_w.dumps(config), encoding="utf-8")
    started = time.perf_counter()
    run_replay([Path(p) for p in recordings], config_from_dict(config), out=out, progress=None)
    wall = time.perf_counter() - started
    m = run_metrics(load_run(out))[TOTAL]
    result = {
        "pnl": str(m.net_pnl),
        "sharpe": m.sharpe,
        "pnl_per_drawdown": m.pnl_per_drawdown,
        "max_drawdown": str(m.max_drawdown),
        "fees": str(m.fees),
        "round_trips": m.round_trips,
        "fills": m.fills,
        "fill_rate": m.fill_rate,
        "return_on_capital": m.return_on_capital,
        "wall_s": round(wall, 3),
    }
    tmp = out / (RESULT_FILE + ".tmp")
    tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    os.replace(tmp, out / RESULT_FILE)  # atomic: a trial is done only once this exists
    return result


def _worker_init() -> None:
    """Workers leave Ctrl-C to the parent: it cancels the trials not started, and the ones
    running finish (each is one bounded replay), so no worker dies half-way."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")


@dataclass(slots=True)
class Outcome:
    trial: Trial
    result: dict[str, Any] | None
    error: str = ""
    resumed: bool = False


def _done(trial_dir: Path) -> dict[str, Any] | None:
    try:
        result = json.loads((trial_dir / RESULT_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None


class _Workers:
    """The worker processes of one sweep. Leaving on Ctrl-C drops the trials not started;
    the running ones finish (and are kept)."""

    def __init__(self, recordings: Sequence[Path], out: Path, jobs: int) -> None:
        # as given, not resolved: the replay's problem list names files as the user did, so
        # a trial stays byte-identical to ``mm-trio replay`` run with the same arguments
        self._paths = [str(p) for p in recordings]
        self._out = out
        self._pool = cf.ProcessPoolExecutor(
            max_workers=jobs, mp_context=_context(), initializer=_worker_init
        )

    def submit(self, t: Trial) -> cf.Future[dict[str, Any]]:
        return self._pool.submit(run_trial, str(self._out / TRIALS_DIR / t.id), self._paths,
                                 t.config)  # fmt: skip

    def __enter__(self) -> _Workers:
        return self

    def __exit__(self, kind: type[BaseException] | None, *_: object) -> None:
        # not the executor's own ``with``: it would never cancel the trials not started
        interrupted = kind is not None and issubclass(kind, KeyboardInterrupt)
        self._pool.shutdown(wait=True, cancel_futures=interrupted)


def _finished(t: Trial, fut: cf.Future[dict[str, Any]]) -> Outcome:
    try:
        return Outcome(t, fut.result())
    except Exception as exc:  # a failed trial is reported, the rest go on
        return Outcome(t, None, f"{type(exc).__name__}: {exc}")


def _resumed(trials: Sequence[Trial], out: Path) -> dict[str, Outcome]:
    """The trials that have their ``result.json`` (finished by an earlier run)."""
    found = {}
    for t in trials:
        done = _done(out / TRIALS_DIR / t.id)
        if done is not None:
            found[t.id] = Outcome(t, done, resumed=True)
    return found


def run_trials(
    trials: Sequence[Trial],
    recordings: Sequence[Path],
    out: Path,
    *,
    jobs: int,
    progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """Run the trials not done yet on ``jobs`` worker processes; finished ones are read."""
    outcomes = _resumed(trials, out)
    todo = [t for t in trials if t.id not in outcomes]
    if progress:
        progress(len(outcomes), len(trials))
    if todo:
        with _Workers(recordings, out, jobs) as workers:
            futures = {workers.submit(t): t for t in todo}
            for fut in cf.as_completed(futures):
                t = futures[fut]
                outcomes[t.id] = _finished(t, fut)
                if progress:
                    progress(len(outcomes), len(trials))
    return [outcomes[t.id] for t in trials]


def run_tpe(
    trials: Sequence[Trial],
    params: Sequence[Param],
    count: int,
    recordings: Sequence[Path],
    out: Path,
    *,
    jobs: int,
    objective: str,
    seed: int = 0,
    progress: Callable[[int, int], None] | None = None,
) -> list[Outcome]:
    """``count`` of ``trials`` chosen by optuna's TPE sampler, ``jobs`` at a time: each
    finished trial's objective guides the next choice. Trials finished by an earlier run of
    the sweep are told to the sampler first and count towards ``count``."""
    try:
        import optuna
    except ImportError:
        raise UsageError(
            "--sampler tpe needs optuna (pip install 'mm-trio[tune]'), or use --sampler random"
        ) from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    dists: dict[str, optuna.distributions.BaseDistribution] = {
        p.key: optuna.distributions.CategoricalDistribution(list(p.values)) for p in params
    }
    by_combo = {json.dumps(t.params, sort_keys=True): t for t in trials}
    study = optuna.create_study(direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    fail = optuna.trial.TrialState.FAIL

    def tell(asked: Any, result: dict[str, Any] | None) -> None:
        value = _objective(result, objective)
        if value is None:
            study.tell(asked, state=fail)
        else:
            study.tell(asked, value)

    outcomes = _resumed(trials, out)
    for o in outcomes.values():
        value = _objective(o.result, objective)
        study.add_trial(optuna.trial.create_trial(
            params=o.trial.params, distributions=dists, value=value,
            state=optuna.trial.TrialState.COMPLETE if value is not None else fail))  # fmt: skip
    count = min(count, len(trials))
    rng = random.Random(seed)
    if progress:
        progress(min(len(outcomes), count), count)
    with _Workers(recordings, out, jobs) as workers:
        flight: dict[cf.Future[dict[str, Any]], tuple[Any, Trial]] = {}
        while True:
            while len(outcomes) + len(flight) < count:
                asked = study.ask(dists)
                t = by_combo[json.dumps(asked.params, sort_keys=True)]
                running = {x.id for _, x in flight.values()}
                if t.id in outcomes or t.id in running:
                    # proposed again: tell what is known, and try one never tried instead
                    if t.id in outcomes:
                        tell(asked, outcomes[t.id].result)
                    else:
                        study.tell(asked, state=optuna.trial.TrialState.PRUNED)
                    fresh = [x for x in trials if x.id not in outcomes and x.id not in running]
                    study.enqueue_trial(rng.choice(fresh).params)
                    continue
                flight[workers.submit(t)] = (asked, t)
            if not flight:
                break
            done, _ = cf.wait(flight, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                asked, t = flight.pop(fut)
                outcomes[t.id] = _finished(t, fut)
                tell(asked, outcomes[t.id].result)
                if progress:
                    progress(min(len(outcomes), count), count)
    return list(outcomes.values())


# --------------------------------------------------------------------------- results


def _objective(result: dict[str, Any] | None, objective: str) -> float | None:
    if result is None or result.get(objective) is None:
        return None
    return float(result[objective])


def rank(outcomes: Sequence[Outcome], objective: str) -> list[Outcome]:
    """Best first; trials without a value (failed, or an undefined ratio) last."""

    def key(o: Outcome) -> tuple[bool, float]:
        v = _objective(o.result, objective)
        return (v is None, -(v or 0.0))

    return sorted(outcomes, key=key)


RESULT_COLUMNS = ["pnl", "sharpe", "pnl_per_drawdown", "max_drawdown", "fees", "round_trips",
                  "fills", "fill_rate"]  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}" if abs(value) < 1e4 else f"{value:.0f}"
    try:
        return f"{float(value):.4f}" if isinstance(value, str) else str(value)
    except ValueError:
        return str(value)


def table_rows(ranked: Sequence[Outcome], keys: Sequence[str]) -> list[list[str]]:
    rows = [["rank", *keys, *RESULT_COLUMNS, "trial"]]
    for n, o in enumerate(ranked, start=1):
        values = [_cell(o.result.get(c)) if o.result else "-" for c in RESULT_COLUMNS]
        if o.error:
            values[0] = "failed"
        rows.append([str(n), *(str(o.trial.params[k]) for k in keys), *values, o.trial.id])
    return rows


def text_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_csv(path: Path, ranked: Sequence[Outcome], keys: Sequence[str]) -> None:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["rank", *keys, *RESULT_COLUMNS, "wall_s", "trial", "error"])
    for n, o in enumerate(ranked, start=1):
        r = o.result or {}
        writer.writerow(
            [
                n,
                *(o.trial.params[k] for k in keys),
                *(r.get(c, "") for c in RESULT_COLUMNS),
                r.get("wall_s", ""),
                o.trial.id,
                o.error,
            ]  # fmt: skip
        )
    path.write_text(buf.getvalue(), encoding="utf-8")


def heatmap_axes(params: Sequence[Param], chosen: str | None) -> tuple[str, str | None]:
    """The heat map's x and y keys (``--heatmap X,Y``; default: the first two params)."""
    keys = [p.key for p in params]
    if chosen is None:
        return keys[0], keys[1] if len(keys) > 1 else None
    names = [k.strip() for k in chosen.split(",")]
    dotted = [k if "." in k else f"grid.{k}" for k in names]
    if len(dotted) != 2 or dotted[0] == dotted[1] or not set(dotted) <= set(keys):
        raise UsageError(f"--heatmap {chosen!r}: name two different --grid keys ({keys})")
    return dotted[0], dotted[1]


def heatmap(
    outcomes: Sequence[Outcome], params: Sequence[Param], x: str, y: str | None, objective: str
) -> Any:
    """The best objective over the other parameters, for each (x, y) value pair."""
    import plotly.graph_objects as go

    xs = next(p.values for p in params if p.key == x)
    ys = next(p.values for p in params if p.key == y) if y else ("",)
    z: list[list[float | None]] = [[None] * len(xs) for _ in ys]
    for o in outcomes:
        v = _objective(o.result, objective)
        if v is None:
            continue
        i = ys.index(o.trial.params[y]) if y else 0
        j = xs.index(o.trial.params[x])
        z[i][j] = v if z[i][j] is None else max(v, z[i][j])  # type: ignore[type-var]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=[str(v) for v in xs],
            y=[str(v) for v in ys],
            colorscale="RdYlGn",
            colorbar={"title": objective},
            texttemplate="%{z:.4g}",
        )  # fmt: skip
    )
    fig.update_xaxes(title_text=x, type="category")
    fig.update_yaxes(title_text=y or "", type="category")
    fig.update_layout(title=f"{objective} by {x}" + (f" and {y}" if y else ""),
                      height=HEATMAP_HEIGHT)  # fmt: skip
    return fig


def write_html(
    path: Path,
    ranked: Sequence[Outcome],
    params: Sequence[Param],
    objective: str,
    axes: tuple[str, str | None],
    header: str,
) -> None:
    from mm_trio.apps.report.html import CSS, PLOT_CONFIG, get_plotlyjs

    keys = [p.key for p in params]
    rows = table_rows(ranked, keys)
    head = "".join(f"<th>{html.escape(c)}</th>" for c in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows[1:]
    )
    fig = heatmap(ranked, params, axes[0], axes[1], objective)
    page = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        f"<title>mm-trio sweep</title><style>{CSS}</style>"
        f'<script type="text/javascript">{get_plotlyjs()}</script></head><body>'
        f"<h1>mm-trio sweep</h1><p>{html.escape(header)}</p>"
        + fig.to_html(full_html=False, include_plotlyjs=False, config=PLOT_CONFIG, div_id="heat")
        + f'<h2>Trials ranked by {html.escape(objective)}</h2><table class="metrics">'
        f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></body></html>\n"
    )
    path.write_text(page, encoding="utf-8")


# --------------------------------------------------------------------------- command


def _bar(stream: TextIO) -> tuple[Callable[[int, int], None] | None, Callable[[], None]]:
    """A rich progress bar on a terminal; nothing otherwise."""
    if not stream.isatty():
        return None, lambda: None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    bar = Progress(
        "sweep", BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        console=Console(file=stream), transient=False,
    )  # fmt: skip
    task = bar.add_task("trials", total=None)
    bar.start()

    def update(done: int, total: int) -> None:
        bar.update(task, completed=done, total=total)

    return update, bar.stop


def sweep(
    recordings: Sequence[Path],
    grid: Sequence[str],
    out: Path,
    *,
    base: dict[str, Any],
    jobs: int | None = None,
    objective: str = "pnl",
    trials: int | None = None,
    sampler: str = "tpe",
    seed: int = 0,
    heatmap_keys: str | None = None,
    progress: TextIO | None = sys.stderr,
) -> tuple[str, list[Outcome]]:
    """The whole command; returns the terminal's text and the ranked outcomes."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective: {objective!r} is not one of {', '.join(OBJECTIVES)}")
    for p in recordings:
        if not p.is_file():
            raise UsageError(f"recording {str(p)!r} does not exist")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out: {str(out)!r} is not a directory")
    jobs = jobs if jobs is not None else (os.cpu_count() or 1)
    if jobs < 1:
        raise UsageError(f"--jobs: must be >= 1, got {jobs}")
    if sampler not in SAMPLERS:
        raise UsageError(f"--sampler: {sampler!r} is not one of {', '.join(SAMPLERS)}")
    params = parse_grid(grid)
    axes = heatmap_axes(params, heatmap_keys)
    tpe = trials is not None and sampler == "tpe"
    planned = plan(base, params, recordings, trials=None if tpe else trials, seed=seed)
    if tpe:
        import importlib.util

        if importlib.util.find_spec("optuna") is None:
            raise UsageError(
                "--sampler tpe needs optuna (pip install 'mm-trio[tune]'); or use --sampler random"
            )
    out.mkdir(parents=True, exist_ok=True)
    update, stop = _bar(progress) if progress is not None else (None, lambda: None)
    started = time.perf_counter()
    try:
        if tpe and trials is not None:
            outcomes = run_tpe(planned, params, trials, recordings, out, jobs=jobs,
                               objective=objective, seed=seed, progress=update)  # fmt: skip
        else:
            outcomes = run_trials(planned, recordings, out, jobs=jobs, progress=update)
    finally:
        stop()
    wall = time.perf_counter() - started
    ranked = rank(outcomes, objective)
    keys = [p.key for p in params]
    write_csv(out / "results.csv", ranked, keys)
    resumed = sum(o.resumed for o in outcomes)
    failed = [o for o in outcomes if o.error]
    header = (
        f"{len(outcomes)} trials over {', '.join(p.name for p in recordings)}; "
        f"{resumed} already done, {len(outcomes) - resumed} run on {jobs} worker processes "
        f"in {wall:.1f} s; ranked by {objective}"
    )
    write_html(out / "sweep.html", ranked, params, objective, axes, header)
    shown = table_rows(ranked[:TABLE_ROWS], keys)
    lines = [text_table(shown), header]
    if len(ranked) > TABLE_ROWS:
        lines.append(f"(best {TABLE_ROWS} shown; all in {out / 'results.csv'})")
    for o in failed:
        lines.append(f"trial {o.trial.id} failed: {o.error}")
    lines.append(f"results in {out / 'results.csv'} and {out / 'sweep.html'}")
    return "\n".join(lines), ranked
