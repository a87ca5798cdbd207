"""The CLI verbs against a real ``mm-trio run --control 127.0.0.1:0`` subprocess (real time):
on the embedded simulated venue and on the paper venue, with the token from the environment
or from the file the run writes; exit codes 0 / 1 / 2."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mm_trio.apps.control.token import DEFAULT_PORT, TOKEN_ENV
from mm_trio.apps.paper.testing import API_KEY_HEADER, signed_query
from tests.test_cli_e2e import LIVELY_TOML, ROOT, mm_trio_cmd

pytestmark = pytest.mark.slow  # subprocesses trading in real time

TOKEN = "cli-test-token-0123456789abcdefgh"
CONTROL_LINE = re.compile(r"mm-trio: control API on (http://127\.0\.0\.1:\d+) \((.*)\)")
BTC, ETH, SOL = "BTC/USDT", "ETH/USDT", "SOL/USDT"


def _env(tmp_path: Path, token: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in (TOKEN_ENV, "MM_TRIO_CONTROL_URL")}
    env.update(PYTHONPATH=str(ROOT), XDG_STATE_HOME=str(tmp_path / "state"))
    if token is not None:
        env[TOKEN_ENV] = token
    return env


@contextmanager
def running(
    tmp_path: Path, args: list[str], env: dict[str, str]
) -> Iterator[tuple[subprocess.Popen[str], str, str]]:
    """``mm-trio run ... --control 127.0.0.1:0``; yields (process, control URL, token note)."""
    cfg = tmp_path / "lively.toml"
    cfg.write_text(LIVELY_TOML)
    proc = subprocess.Popen(
        mm_trio_cmd()
        + ["run", "--config", str(cfg), "--control", "127.0.0.1:0", "--duration", "120"]
        + ["--status-interval", "1000", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        while first.startswith("mm-trio: recovery:"):  # a run with a state store recovers first
            first = proc.stdout.readline()
        assert first.startswith("mm-trio: trading"), first + (
            proc.stderr.read() if proc.stderr and proc.poll() is not None else ""
        )
        line = proc.stdout.readline()
        match = CONTROL_LINE.match(line)
        assert match, line + (proc.stderr.read() if proc.stderr and proc.poll() else "")
        yield proc, match.group(1), match.group(2)
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def verb(url: str, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mm_trio_cmd() + [*args, "--control", url],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=env,
    )


def status(url: str, env: dict[str, str]) -> dict[str, Any]:
    r = verb(url, env, "status", "--json")
    assert r.returncode == 0, r.stderr
    data: dict[str, Any] = json.loads(r.stdout)
    return data


def until(check: Callable[[], bool], limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.3)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stderr
    return r.stdout


def _scenario(url: str, env: dict[str, str], venue_orders: Callable[[str], int]) -> None:
    """The issue's "Done means", verb by verb."""
    st = status(url, env)
    assert list(st["symbols"]) == [BTC, ETH]
    assert "added SOL/USDT" in _ok(verb(url, env, "symbols", "add", SOL, "--set", "step=0.002"))
    until(lambda: status(url, env)["symbols"][SOL]["open_orders"] > 0)
    until(lambda: venue_orders(SOL) > 0)
    assert "removed ETH/USDT" in _ok(verb(url, env, "symbols", "remove", ETH))
    assert venue_orders(ETH) == 0
    assert ETH not in status(url, env)["symbols"]
    assert ETH not in _ok(verb(url, env, "symbols", "list"))
    assert "paused BTC/USDT" in _ok(verb(url, env, "pause", BTC))
    btc = status(url, env)["symbols"][BTC]
    assert btc["paused"] and btc["state"] == "HALTED"
    assert "KILLED" in _ok(verb(url, env, "kill", "--reason", "done-means check"))
    until(lambda: all(s["open_orders"] == 0 for s in status(url, env)["symbols"].values()))
    until(lambda: venue_orders(BTC) + venue_orders(SOL) == 0)
    st = status(url, env)
    assert st["killed"] and "done-means check" in st["kill_reason"]
    assert "kill switch lifted" in _ok(verb(url, env, "resume"))
    until(lambda: venue_orders(SOL) > 0 and venue_orders(BTC) > 0)
    assert not status(url, env)["killed"]


def test_verbs_on_the_simulated_venue_token_from_env(tmp_path: Path) -> None:
    env = _env(tmp_path, TOKEN)
    with running(tmp_path, ["--symbols", f"{BTC},{ETH}"], env) as (proc, url, note):
        assert note == f"token from {TOKEN_ENV}"
        auth = {"Authorization": f"Bearer {TOKEN}"}

        def venue_orders(symbol: str) -> int:  # the sim venue is in-process: ask the API
            sym = status(url, env)["symbols"].get(symbol)
            return 0 if sym is None else int(sym["open_orders"])

        _scenario(url, env, venue_orders)
        # bad input: exit 2 naming it, nothing changes
        before = status(url, env)["symbols"].keys()
        for args, needle in (
            (["symbols", "add", "SOLUSDT"], "SOLUSDT"),
            (["symbols", "add", "QQQ/USDT"], "QQQ/USDT"),
            (["symbols", "add", "XRP/USDT", "--set", "step=-1"], "step"),
            (["symbols", "add", "XRP/USDT", "--set", "nope=1"], "nope"),
            (["symbols", "remove", "DOGE/USDT"], "DOGE/USDT"),
            (["pause", "ADA/USDT"], "ADA/USDT"),
        ):
            r = verb(url, env, *args)
            assert r.returncode == 2, (args, r.stderr)
            assert needle in r.stderr and "Traceback" not in r.stderr, r.stderr
        # refused: exit 1, nothing changes
        wrong = {**env, TOKEN_ENV: "wrong-token-wrong-token-wrong"}
        r = verb(url, wrong, "kill")
        assert r.returncode == 1 and "401" in r.stderr
        r = httpx.post(f"{url}/api/kill", json={}, timeout=10)
        assert r.status_code == 401
        st = status(url, env)
        assert st["symbols"].keys() == before and not st["killed"]
        # metrics over HTTP, as curl would
        r = httpx.get(f"{url}/metrics", headers=auth, timeout=10)
        assert r.status_code == 200 and "mm_trio_open_orders" in r.text
        promtool = shutil.which("promtool")
        if promtool is not None:
            check = subprocess.run(
                [promtool, "check", "metrics"], input=r.text, capture_output=True, text=True
            )
            assert check.returncode == 0, check.stdout + check.stderr
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert "Traceback" not in err


def test_generated_token_file_is_private_found_and_removed(tmp_path: Path) -> None:
    env = _env(tmp_path, None)
    with running(tmp_path, ["--symbols", BTC], env) as (proc, url, note):
        assert note.startswith("token in ")
        path = Path(note.removeprefix("token in "))
        assert path.is_relative_to(tmp_path / "state")
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        token = json.loads(path.read_text())["token"]
        assert list(status(url, env)["symbols"]) == [BTC]  # the verb found the file
        localhost = url.replace("127.0.0.1", "localhost")
        assert list(status(localhost, env)["symbols"]) == [BTC]
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert token not in out and token not in err  # never printed
    assert not path.exists()


def test_unreachable_control_exits_1_and_bad_addresses_exit_2(tmp_path: Path) -> None:
    env = _env(tmp_path, TOKEN)
    r = verb("http://127.0.0.1:9", env, "status")
    assert r.returncode == 1 and "cannot reach" in r.stderr, r.stderr
    r = verb("not a url", env, "status")
    assert r.returncode == 2 and "--control" in r.stderr
    for control, needle in (
        ("0.0.0.0:0", "--control-allow-remote"),
        ("192.0.2.1:8766", "not a loopback"),
        ("127.0.0.1:99999", "HOST:PORT"),
        ("nonsense", "HOST:PORT"),
    ):
        r = subprocess.run(
            mm_trio_cmd() + ["run", "--symbols", BTC, "--control", control, "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        assert r.returncode == 2 and needle in r.stderr, (control, r.stderr)
    r = subprocess.run(
        mm_trio_cmd() + ["run", "--symbols", BTC, "--duration", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env={**env, TOKEN_ENV: "short"},
    )
    assert r.returncode == 2 and TOKEN_ENV in r.stderr and "short" not in r.stderr


def test_verbs_on_the_paper_venue(tmp_path: Path) -> None:
    env = _env(tmp_path, TOKEN)
    paper = subprocess.Popen(
        mm_trio_cmd() + ["paper", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env=env,
    )
    try:
        assert paper.stdout is not None
        match = re.match(
            r".*Binance spot API on (http://127\.0\.0\.1:\d+) ", paper.stdout.readline()
        )
        assert match
        venue = match.group(1)
        keys = {"MM_TRIO_API_KEY": "mmtrio-test-key", "MM_TRIO_API_SECRET": "mmtrio-test-secret"}
        run_env = {**env, **keys}
        args = ["--symbols", f"{BTC},{ETH}", "--venue", "binance", "--base-url", venue]

        def venue_orders(symbol: str) -> int:  # the paper venue's own book, over its REST API
            query = signed_query([("symbol", symbol.replace("/", ""))])
            r = httpx.get(f"{venue}/api/v3/openOrders?{query}", headers=API_KEY_HEADER, timeout=10)
            assert r.status_code == 200, r.text
            return sum(1 for o in r.json() if o["clientOrderId"].startswith("mmt_"))

        with running(tmp_path, args, run_env) as (proc, url, _):
            _scenario(url, env, venue_orders)
            proc.send_signal(signal.SIGINT)
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        paper.terminate()
        try:
            paper.wait(timeout=10)
        except subprocess.TimeoutExpired:
            paper.kill()
            paper.wait()


def test_a_taken_port_is_fatal_only_when_given(tmp_path: Path) -> None:
    env = _env(tmp_path, TOKEN)
    with socket.socket() as held:
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        r = subprocess.run(
            mm_trio_cmd()
            + ["run", "--symbols", BTC, "--control", f"127.0.0.1:{port}", "--duration", "1"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
        assert r.returncode == 2, r.stderr
        assert f"--control 127.0.0.1:{port}: cannot listen" in r.stderr
        assert "Traceback" not in r.stderr and "trading" not in r.stdout
    with socket.socket() as held:  # the default port: another run may hold it
        held.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            held.bind(("127.0.0.1", DEFAULT_PORT))
            held.listen()
        except OSError:
            pass  # already held by something else: the same situation
        r = subprocess.run(
            mm_trio_cmd() + ["run", "--symbols", BTC, "--duration", "2"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
            env=env,
        )
    assert r.returncode == 0, r.stderr
    assert "control API off" in r.stderr and "trading BTC/USDT" in r.stdout
