"""``mm-trio sweep``: grid parsing and validation, ranking, the heat map, and end to end the
worker processes, byte-identity with ``mm-trio replay``, resume after an interruption."""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from mm_trio.apps.sweep import (
    RESULT_FILE,
    Outcome,
    Param,
    Trial,
    heatmap,
    heatmap_axes,
    parse_grid,
    plan,
    rank,
    with_params,
)
from mm_trio.domain.config import ConfigError
from mm_trio.domain.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
RECORDING = ROOT / "fixtures" / "btcusdt-synth.gz"
OUTPUTS = ["orders.jsonl", "fills.csv", "equity.csv", "summary.json"]


def test_grid_specs_become_dotted_keys_with_typed_values() -> None:
    params = parse_grid(["step=0.0005,0.001", "levels_below=3,5,8", "risk.jump_pct=0.01"])
    assert params == [
        Param("grid.step", ("0.0005", "0.001")),  # decimals stay exact text
        Param("grid.levels_below", (3, 5, 8)),
        Param("risk.jump_pct", ("0.01",)),
    ]


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("step", "expected KEY=V1,V2"),
        ("=1,2", "expected KEY=V1,V2"),
        ("step=0.001,,0.002", "empty value"),
        ("step=0.001,0.001", "given twice"),
        ("a.b.c=1", "is not a config key"),
    ],
)
def test_a_malformed_grid_spec_is_named(spec: str, message: str) -> None:
    with pytest.raises(UsageError, match=message) as info:
        parse_grid([spec])
    assert repr(spec) in str(info.value)


def test_unknown_keys_and_bad_values_are_refused_before_any_work(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key grid.stepp"):
        plan({}, parse_grid(["stepp=0.001"]), [RECORDING])
    with pytest.raises(ConfigError, match=r"grid\.levels_below = 'x'"):
        plan({}, parse_grid(["levels_below=3,x"]), [RECORDING])
    with pytest.raises(ConfigError, match="unknown key nosuch"):
        plan({}, parse_grid(["nosuch.key=1"]), [RECORDING])
    assert list(tmp_path.iterdir()) == []


def test_trials_combine_every_value_on_the_base_config() -> None:
    base = {"grid": {"mode": "long"}, "venue": {"seed": 3}}
    trials = plan(base, parse_grid(["step=0.001,0.002", "levels_below=3,5"]), [RECORDING])
    assert [t.params for t in trials] == [
        {"grid.step": s, "grid.levels_below": n} for s in ("0.001", "0.002") for n in (3, 5)
    ]
    assert trials[0].config == {
        "grid": {"mode": "long", "step": "0.001", "levels_below": 3},
        "venue": {"seed": 3},
    }
    assert base == {"grid": {"mode": "long"}, "venue": {"seed": 3}}  # not changed
    assert len({t.id for t in trials}) == 4
    # the id is the config's and the recordings': a new base gives new trials
    again = plan(base, parse_grid(["step=0.001,0.002", "levels_below=3,5"]), [RECORDING])
    assert [t.id for t in again] == [t.id for t in trials]
    other = plan({"venue": {"seed": 4}}, parse_grid(["step=0.001"]), [RECORDING])
    assert other[0].id not in {t.id for t in trials}


def test_a_random_sample_is_a_seeded_subset() -> None:
    params = parse_grid(["step=0.001,0.002,0.003", "levels_below=3,5,8"])
    every = {t.id for t in plan({}, params, [RECORDING])}
    a = plan({}, params, [RECORDING], trials=4, seed=1)
    b = plan({}, params, [RECORDING], trials=4, seed=1)
    assert [t.id for t in a] == [t.id for t in b] and len(a) == 4
    assert {t.id for t in a} <= every
    with pytest.raises(UsageError, match="--trials"):
        plan({}, params, [RECORDING], trials=0)


def test_with_params_refuses_a_key_under_a_value() -> None:
    with pytest.raises(ConfigError, match="grid is not a table"):
        with_params({"grid": 1}, {"grid.step": "0.1"})


def _outcome(step: str, n: int, pnl: str | None, sharpe: float | None) -> Outcome:
    params = {"grid.step": step, "grid.levels_below": n}
    result = None if pnl is None else {"pnl": pnl, "sharpe": sharpe}
    return Outcome(Trial(f"{step}-{n}", params, {}), result, "" if result else "boom")


def test_ranking_puts_the_best_first_and_the_undefined_last() -> None:
    outs = [
        _outcome("0.001", 3, "1.5", None),
        _outcome("0.001", 5, "-2", 3.0),
        _outcome("0.002", 3, None, None),  # failed
        _outcome("0.002", 5, "4", 1.0),
    ]
    assert [o.trial.id for o in rank(outs, "pnl")] == ["0.002-5", "0.001-3", "0.001-5", "0.002-3"]
    assert [o.trial.id for o in rank(outs, "sharpe")][:2] == ["0.001-5", "0.002-5"]


def test_the_heat_map_shows_the_best_over_the_other_parameters() -> None:
    params = [
        Param("grid.step", ("0.001", "0.002")),
        Param("grid.levels_below", (3, 5)),
        Param("grid.levels_above", (1, 2)),
    ]
    outs = []
    for step, n, above, pnl in [("0.001", 3, 1, "1"), ("0.001", 3, 2, "7"),
                                ("0.002", 5, 1, "-1"), ("0.002", 5, 2, "-3")]:  # fmt: skip
        o = _outcome(step, n, pnl, None)
        o.trial.params["grid.levels_above"] = above
        outs.append(o)
    x, y = heatmap_axes(params, "step,levels_below")
    fig = heatmap(outs, params, x, y, "pnl")
    assert list(fig.data[0].z) == [[7.0, None], [None, -1.0]]  # rows: levels_below 3, 5
    with pytest.raises(UsageError, match="--heatmap"):
        heatmap_axes(params, "step,step")
    with pytest.raises(UsageError, match="--heatmap"):
        heatmap_axes(params, "step,nosuch")


# --------------------------------------------------------------------------- end to end


def mm_trio_cmd() -> list[str]:
    exe = shutil.which("mm-trio", path=str(Path(sys.executable).parent)) or shutil.which("mm-trio")
    return [exe] if exe else [sys.executable, "-m", "mm_trio.cli"]


def mm_trio(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mm_trio_cmd() + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )


SWEEP_ARGS = [
    "sweep",
    str(RECORDING.relative_to(ROOT)),
    "--grid",
    "step=0.001,0.002",
    "--grid",
    "levels_below=3",
]


@pytest.fixture(scope="module")
def swept(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    out = tmp_path_factory.mktemp("sweep") / "sw"
    proc = mm_trio([*SWEEP_ARGS, "--jobs", "2", "--out", str(out), "--objective", "pnl"])
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""  # no progress bar drawn into a pipe
    return out, proc.stdout


@pytest.mark.slow
def test_a_sweep_ranks_its_trials_and_each_is_a_replay(
    swept: tuple[Path, str], tmp_path: Path
) -> None:
    out, stdout = swept
    assert "2 trials over btcusdt-synth.gz; 0 already done, 2 run on 2 worker" in stdout
    with (out / "results.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["grid.step"] for r in rows] and len(rows) == 2
    pnls = [float(r["pnl"]) for r in rows]
    assert pnls == sorted(pnls, reverse=True)
    page = (out / "sweep.html").read_text()
    assert 'id="heat"' in page and "plotly.js v" in page
    # byte-identity: each trial is what `mm-trio replay` gives with its config
    for row in rows:
        trial = out / "trials" / row["trial"]
        single = tmp_path / f"single-{row['trial']}"
        proc = mm_trio(
            [
                "replay",
                str(RECORDING.relative_to(ROOT)),
                "--config",
                str(trial / "config.toml"),
                "--out",
                str(single),
                "--no-progress",
            ]  # fmt: skip
        )
        assert proc.returncode == 0, proc.stderr
        for name in OUTPUTS:
            assert (trial / name).read_bytes() == (single / name).read_bytes(), name


@pytest.mark.slow
def test_the_heat_map_renders_in_a_real_browser(swept: tuple[Path, str], tmp_path: Path) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    from tests.test_cli_report import PAGE_LOAD_TIMEOUT_S, _browser

    browser = _browser(tmp_path)
    try:
        browser.get((swept[0] / "sweep.html").as_uri())
        WebDriverWait(browser, PAGE_LOAD_TIMEOUT_S).until(
            lambda b: b.execute_script("const d = document.getElementById('heat');"
                                       "return d !== null && d._fullLayout !== undefined;")
        )  # fmt: skip
        trace = browser.execute_script(
            "const d = document.getElementById('heat');"
            "return {type: d.data[0].type, x: d.data[0].x, drawn:"
            " d.querySelectorAll('.hm, .heatmaplayer image, .heatmaplayer .hm').length};"
        )
        errors = [e for e in browser.get_log("browser") if e["level"] == "SEVERE"]
        rows = browser.find_elements("css selector", "table.metrics tbody tr")
    finally:
        browser.quit()
    assert errors == []
    assert trace["type"] == "heatmap" and trace["x"] == ["0.001", "0.002"]
    assert trace["drawn"] >= 1
    assert len(rows) == 2


@pytest.mark.slow
def test_an_interrupted_sweep_resumes_where_it_stopped(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    steps = "step=0.001,0.0015,0.002,0.003,0.004,0.005"
    args = [*mm_trio_cmd(), "sweep", str(RECORDING), "--grid", steps,
            "--jobs", "1", "--out", str(out), "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(
        args,
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # as from a terminal: a shell's background job would inherit SIGINT ignored
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(f"trials/*/{RESULT_FILE}")):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no trial finished"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert b"rerun the same command to resume" in err and b"Traceback" not in err
    done = {p.parent.name: p.stat().st_mtime_ns for p in out.glob(f"trials/*/{RESULT_FILE}")}
    assert 1 <= len(done) < 6
    rerun = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"6 trials over btcusdt-synth.gz; {len(done)} already done" in rerun.stdout
    for trial, mtime in done.items():  # finished trials were not redone
        assert (out / "trials" / trial / RESULT_FILE).stat().st_mtime_ns == mtime
    assert len(list(out.glob(f"trials/*/{RESULT_FILE}"))) == 6


@pytest.mark.slow
def test_a_bad_grid_exits_2_before_any_work(tmp_path: Path) -> None:
    out = tmp_path / "sw"
    proc = mm_trio(["sweep", str(RECORDING), "--grid", "stepp=0.001", "--out", str(out)])
    assert proc.returncode == 2
    assert "unknown key grid.stepp" in proc.stderr and "Traceback" not in proc.stderr
    assert not out.exists()
    proc = mm_trio(["sweep", str(RECORDING), "--grid", "step=1", "--out", str(out),
                    "--objective", "money"])  # fmt: skip
    assert proc.returncode == 2 and "--objective" in proc.stderr
    assert not os.path.exists(out)


def test_bad_arguments_are_refused_before_any_work(tmp_path: Path) -> None:
    from mm_trio.apps.sweep import sweep

    a_file = tmp_path / "taken"
    a_file.write_text("")
    with pytest.raises(UsageError, match="is not a directory"):
        sweep([RECORDING], ["step=0.001"], a_file, base={}, progress=None)
    with pytest.raises(UsageError, match="does not exist"):
        sweep([tmp_path / "none.gz"], ["step=0.001"], tmp_path / "o", base={}, progress=None)
    with pytest.raises(UsageError, match="--jobs"):
        sweep([RECORDING], ["step=0.001"], tmp_path / "o", base={}, jobs=0, progress=None)
    with pytest.raises(UsageError, match="--objective"):
        sweep([RECORDING], ["step=0.001"], tmp_path / "o", base={}, objective="x", progress=None)
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_the_progress_bar_is_drawn_on_a_terminal_only(tmp_path: Path) -> None:
    master, slave = os.openpty()
    try:
        proc = subprocess.Popen(
            [
                *mm_trio_cmd(),
                "sweep",
                str(RECORDING),
                "--grid",
                "step=0.001,0.002",
                "--out",
                str(tmp_path / "sw"),
            ],  # fmt: skip
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=slave,
        )
        os.close(slave)
        drawn = b""
        while True:  # read while it draws, so a full terminal buffer never blocks it
            try:
                chunk = os.read(master, 65536)
            except OSError:  # every writer closed the terminal: all read
                break
            if not chunk:
                break
            drawn += chunk
        stdout, _ = proc.communicate(timeout=300)
    finally:
        os.close(master)
    assert proc.returncode == 0
    assert b"sweep" in drawn and b"2/2" in drawn
    assert b"2/2" not in stdout  # the table goes to stdout, the bar to the terminal


@pytest.mark.slow
def test_tpe_picks_k_distinct_trials_reproducibly_and_resumes(tmp_path: Path) -> None:
    pytest.importorskip("optuna")
    from mm_trio.apps.sweep import sweep

    grid = ["step=0.001,0.002,0.003", "levels_below=3,5"]

    def picked(out: Path, k: int) -> tuple[list[str], str]:
        text, ranked = sweep([RECORDING], grid, out, base={}, jobs=1, trials=k,
                             sampler="tpe", seed=5, progress=None)  # fmt: skip
        return sorted(o.trial.id for o in ranked), text

    first, text = picked(tmp_path / "a", 3)
    assert len(set(first)) == 3 and "3 trials over" in text
    every = {t.id for t in plan({}, parse_grid(grid), [RECORDING])}
    assert set(first) <= every
    again, _ = picked(tmp_path / "b", 3)
    assert again == first  # one worker: the same seed makes the same choices
    more, text = picked(tmp_path / "a", 4)  # the three are told to TPE and not redone
    assert set(first) < set(more) and "4 trials over btcusdt-synth.gz; 3 already done" in text
