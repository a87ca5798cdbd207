"""Bad input to the ``mm-trio`` command never shows a traceback: one line naming what was
wrong, exit status 2, nothing started (in process, through ``cli.main``). Also the logging
options (``--log-level`` after the subcommand, ``--json-logs``)."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest

from mm_trio import cli
from mm_trio.apps.logs import JsonFormatter, record_symbol, setup_logging
from tests.test_replay import BTC

EXIT_USAGE = 2


def _main(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    try:
        rc = cli.main(argv)
    except SystemExit as exc:  # argparse
        rc = int(exc.code or 0)
    out, err = capsys.readouterr()
    return rc, out, err


def _one_line_error(rc: int, err: str, *needles: str) -> None:
    assert rc == EXIT_USAGE, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    binary = tmp_path / "binary.toml"
    binary.write_bytes(bytes(range(256)) * 4)
    directory = tmp_path / "a-dir"
    directory.mkdir()
    existing = tmp_path / "existing.txt"
    existing.write_text("keep me\n")
    return {"binary": binary, "dir": directory, "file": existing, "tmp": tmp_path}


RUN = ["run", "--symbols", "BTC/USDT"]


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--config", "{binary}"], ["binary.toml", "not a text file"]),
        (["--config", "{dir}"], ["a-dir", "Is a directory"]),
        (["--config", "{tmp}/missing.toml"], ["missing.toml", "No such file"]),
        (["--duration", "nan"], ["--duration", "finite", "nan"]),
        (["--duration", "inf"], ["--duration", "finite", "inf"]),
        (["--duration=-1"], ["--duration", "-1"]),
        (["--duration", "0"], ["--duration", "> 0"]),
        (["--duration", "soon"], ["--duration", "invalid float value: 'soon'"]),
        (["--status-interval", "0"], ["--status-interval", "> 0"]),
        (["--status-interval", "inf"], ["--status-interval", "finite"]),
        (["--summary-json", "{dir}"], ["--summary-json", "a-dir", "is a directory"]),
        (["--summary-json", "{tmp}/no/such/dir/s.json"], ["--summary-json", "does not exist"]),
        (["--log-level", "LOUD"], ["--log-level", "LOUD"]),
        (["--seed", "x"], ["--seed", "'x'"]),
        (["--venue", "nasdaq"], ["--venue", "nasdaq"]),
    ],
)
def test_run_refuses_bad_input_in_one_line(
    args: list[str],
    needles: list[str],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = RUN + [a.format(**files) for a in args]
    rc, out, err = _main(argv, capsys)
    _one_line_error(rc, err, *needles)
    assert "trading" not in out


def test_summary_json_is_checked_before_trading_and_not_left_behind(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "s.json"
    rc, out, err = _main(RUN + ["--summary-json", str(tmp_path / "x" / "s.json")], capsys)
    _one_line_error(rc, err, "--summary-json")
    # the writability probe of a new file removes what it made
    from mm_trio.apps.output_paths import check_output_file

    check_output_file("--summary-json", target)
    assert not target.exists()


@pytest.mark.parametrize(
    ("args", "needles"),
    [
        (["--out", "{file}"], ["--out", "existing.txt", "not a directory"]),
        (["--speed", "0"], ["--speed", "'0'"]),
        (["--speed", "-2"], ["--speed"]),
        (["--speed", "nan"], ["--speed"]),
        (["--config", "{binary}"], ["binary.toml", "not a text file"]),
        (["--state", "{file}"], ["--state", "exists"]),
    ],
)
def test_replay_refuses_bad_input_in_one_line(
    args: list[str],
    needles: list[str],
    files: dict[str, Path],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = ["replay", str(BTC), "--no-progress"] + [a.format(**files) for a in args]
    rc, out, err = _main(argv, capsys)
    _one_line_error(rc, err, *needles)
    assert files["file"].read_text() == "keep me\n"  # nothing overwritten


@pytest.mark.parametrize("what", ["{dir}", "{binary}", "{tmp}/missing.gz"])
def test_replay_of_a_file_that_is_no_recording(
    what: str, files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    rc, _, err = _main(["replay", what.format(**files), "--no-progress"], capsys)
    _one_line_error(rc, err)


@pytest.mark.parametrize(
    "args",
    [
        ["--duration", "nan"],
        ["--duration", "0"],
        ["--out", "{file}"],
    ],
)
def test_record_refuses_bad_input_in_one_line(
    args: list[str], files: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["record", "--symbols", "BTC/USDT"] + [a.format(**files) for a in args]
    if "--out" not in args:
        argv += ["--out", str(files["tmp"] / "r.gz")]
    rc, _, err = _main(argv, capsys)
    _one_line_error(rc, err)


# --------------------------------------------------------------------------- logging


@pytest.mark.parametrize(
    "argv",
    [
        ["--log-level", "INFO", "run", "--symbols", "BTC/USDT"],
        ["run", "--log-level", "INFO", "--symbols", "BTC/USDT"],
        ["run", "--symbols", "BTC/USDT", "--log-level", "info"],
        ["--log-level", "ERROR", "run", "--symbols", "BTC/USDT", "--log-level", "INFO"],
    ],
)
def test_log_level_before_or_after_the_subcommand(argv: list[str]) -> None:
    args = cli._build_parser().parse_args(argv)
    assert args.log_level == "INFO"
    assert args.json_logs is False


@pytest.mark.parametrize("command", ["run", "replay", "record", "paper", "venue", "trades"])
def test_every_subcommand_takes_the_logging_options(command: str) -> None:
    required = {
        "run": ["--symbols", "A/B"],
        "replay": ["f.gz"],
        "record": ["--symbols", "A/B", "--out", "x.gz"],
        "trades": ["--state", "s.db"],
    }.get(command, [])
    args = cli._build_parser().parse_args(
        [command, *required, "--json-logs", "--log-level", "DEBUG"]
    )
    assert (args.log_level, args.json_logs) == ("DEBUG", True)


def test_json_logs_are_one_object_per_line_with_the_symbol(
    tmp_path: Path,
) -> None:
    path = tmp_path / "log.jsonl"
    with path.open("w") as stream:
        setup_logging("INFO", json_lines=True, stream=stream)
        log = logging.getLogger("mm_trio.engine.manager")
        log.warning("%s breaker %s TRIPPED: %s", "BTC/USDT", "jump", "3% in 5 s\nsecond line")
        log.info("no symbol here: %d", 5)
        log.debug("below the level")
        try:
            raise KeyError("x")
        except KeyError:
            log.exception("%s FAILED", "ETH/USDT")
        setup_logging("WARNING", json_lines=False)  # restores stderr, replaces ours
    lines = path.read_text().splitlines()
    objs = [json.loads(line) for line in lines]
    assert len(objs) == 3
    assert set(objs[0]) == {"ts", "level", "logger", "message", "symbol"}
    assert objs[0]["symbol"] == "BTC/USDT" and objs[0]["level"] == "WARNING"
    assert objs[0]["message"].endswith("second line")  # the newline is escaped, one line
    assert objs[0]["logger"] == "mm_trio.engine.manager"
    assert "symbol" not in objs[1]
    assert objs[2]["symbol"] == "ETH/USDT" and "KeyError" in objs[2]["exc"]
    assert objs[0]["ts"].endswith("+00:00")


def test_symbol_from_extra_wins() -> None:
    record = logging.LogRecord("x", logging.INFO, "f", 1, "%s", ("BTC/USDT",), None)
    record.symbol = "SOL/USDT"
    assert record_symbol(record) == "SOL/USDT"
    plain = logging.LogRecord("x", logging.INFO, "f", 1, "%s apples", ("many",), None)
    assert record_symbol(plain) is None
    assert json.loads(JsonFormatter().format(plain))["message"] == "many apples"


def test_a_bug_is_one_line_with_the_traceback_in_a_file(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    async def broken(*args: object, **kw: object) -> int:
        raise KeyError("oops")

    monkeypatch.setattr(cli, "run_command", broken)
    rc, _, err = _main(RUN + ["--duration", "1"], capsys)
    assert rc == 1
    line = err.strip()
    assert "\n" not in line and "Traceback" not in line
    assert line.startswith("mm-trio: internal error: KeyError: 'oops' (a bug: please report it")
    crash = Path(line.split("the traceback is in ")[1].rstrip(")"))
    assert crash.parent == tmp_path
    assert "Traceback" in crash.read_text() and "KeyError: 'oops'" in crash.read_text()


def test_ctrl_c_before_a_command_listens_is_exit_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(path: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "load_config", interrupted)
    rc, _, err = _main(RUN, capsys)
    assert rc == 130
    assert err.strip() == "mm-trio: interrupted"
