"""``mm-trio paper`` is the paper venue's command; ``mm-trio venue`` stays an alias of it."""

from __future__ import annotations

import os
import re
import subprocess

import httpx
import pytest

from mm_trio.apps.paper.config import ADMIN_TOKEN_ENV
from mm_trio.cli import _build_parser, main
from tests.test_cli_e2e import ROOT, mm_trio_cmd


@pytest.mark.parametrize("name", ["paper", "venue"])
def test_both_names_take_the_same_options(name: str) -> None:
    args = _build_parser().parse_args([name, "--port", "0", "--seed", "3", "--api-key", "k"])
    assert (args.command, args.port, args.seed, args.api_key) == (name, 0, 3, "k")


@pytest.mark.parametrize("name", ["paper", "venue"])
def test_both_names_run_the_paper_command(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([name, "--port", "70000"]) == 2
    assert "mm-trio: error: --port: must be 0..65535, got 70000" in capsys.readouterr().err


def test_paper_serves_the_binance_api() -> None:
    env = {k: v for k, v in os.environ.items() if k != ADMIN_TOKEN_ENV}
    proc = subprocess.Popen(
        mm_trio_cmd() + ["paper", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        cwd=ROOT,
        env={**env, "PYTHONPATH": str(ROOT)},
    )
    try:
        assert proc.stdout is not None
        banner = proc.stdout.readline()
        match = re.match(r"mm-trio paper: Binance spot API on (http://127\.0\.0\.1:\d+) ", banner)
        assert match, banner
        r = httpx.get(f"{match.group(1)}/api/v3/ping", timeout=10)
        assert (r.status_code, r.json()) == (200, {})
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
