"""The shipped ``examples/`` configs: every one validates, the README refers to each, and the
command written at its top (``mm-trio run --config examples/X.toml --symbols ...``) trades
on the embedded simulated venue for a second and exits 0."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path

import pytest

from mm_trio import cli
from mm_trio.apps.config_file import load_config

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.toml"))
MODES = {"long", "neutral", "per-symbol", "conservative"}
COMMAND_RE = re.compile(r"^#\s+(mm-trio run --config examples/\S+\.toml .*)$", re.M)


def _command(path: Path) -> list[str]:
    match = COMMAND_RE.search(path.read_text())
    assert match, f"{path.name} names no 'mm-trio run --config {path.name} ...' command"
    argv = shlex.split(match.group(1))[1:]  # without the program name
    assert argv[argv.index("--config") + 1] == f"examples/{path.name}"
    return argv


def test_an_example_for_each_mode() -> None:
    assert {p.stem for p in EXAMPLES} >= MODES


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_validates_and_is_commented(path: Path) -> None:
    config = load_config(path)
    text = path.read_text()
    assert sum(line.lstrip().startswith("#") or " # " in line for line in text.splitlines()) >= 5
    symbols = _command(path)[_command(path).index("--symbols") + 1].split(",")
    for symbol in symbols:
        config.grid_for(symbol)  # every symbol's grid (with its overrides) is valid
    for symbol in config.symbols:
        assert symbol in symbols, f"{path.name} overrides {symbol} but does not trade it"


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_readme_refers_to_example(path: Path) -> None:
    assert f"examples/{path.name}" in (ROOT / "README.md").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_example_runs_on_the_sim(
    path: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(ROOT)  # the command names examples/ relative to the project root
    summary = tmp_path / "summary.json"
    argv = _command(path) + ["--duration", "1", "--summary-json", str(summary)]
    rc = cli.main(argv)
    out, err = capsys.readouterr()
    assert rc == 0, err
    assert "Traceback" not in err
    data = json.loads(summary.read_text())
    symbols = argv[argv.index("--symbols") + 1].split(",")
    assert sorted(data["symbols"]) == sorted(symbols)
    for s in data["symbols"].values():
        assert s["final_state"] == "STOPPED (duration)", s
        assert s["open_orders_at_exit"] == 0
    assert "TOTAL" in out
