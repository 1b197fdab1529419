"""Running it as Railway does: the Procfile command on $PORT, railway.json, the start-up log, /example,
and the warnings when the journal would not survive a deploy."""
from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from tests.conftest import SECRET, closed_port_url, wait_until
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent
START_SECONDS = 30


def procfile_web_command() -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        kind, _, command = line.partition(":")
        if kind.strip() == "web":
            return command.strip()
    raise AssertionError("Procfile has no web: line")


def env_example_defaults() -> dict[str, str]:
    """Every setting at its documented default, so a developer's own .env cannot change the run."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#"))


def wait_for_health(url: str, process: subprocess.Popen) -> requests.Response:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, "the Procfile command exited"
        try:
            return requests.get(url, timeout=1)
        except requests.ConnectionError:
            time.sleep(0.1)
    raise AssertionError(f"no answer on {url} within {START_SECONDS}s")


def test_the_procfile_command_serves_health_on_port(tmp_path: Path) -> None:
    port = free_port()
    environment = {**os.environ, **env_example_defaults(),
                   "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                   "PORT": str(port), "HOST": "127.0.0.1", "WEBHOOK_SECRET_KEY": SECRET,
                   "LOGS_DIR": str(tmp_path / "logs"), "BINANCE_API_URL": closed_port_url()}
    process = subprocess.Popen(["/bin/sh", "-c", procfile_web_command()], cwd=ROOT, env=environment,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        health = wait_for_health(f"http://127.0.0.1:{port}/health", process)
        example = requests.get(f"http://127.0.0.1:{port}/example", timeout=5)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=20)
    assert health.status_code == 200 and health.json() == {"status": "ok", "mode": "paper"}
    assert example.status_code == 200
    assert "start-up: mode paper" in stdout and "Application startup complete" in stdout
    assert "Traceback" not in stdout + stderr and SECRET not in stdout + stderr
    for line in stdout.splitlines():
        assert any(f" {level} " in line for level in ("INFO", "WARNING", "ERROR")), line


def test_railway_json_starts_the_procfile_command_and_checks_health(start_bot) -> None:
    deploy = json.loads((ROOT / "railway.json").read_text())["deploy"]
    assert deploy["startCommand"] == procfile_web_command()
    assert start_bot("paper").http.get(deploy["healthcheckPath"]).status_code == 200
    assert deploy["restartPolicyType"] == "ON_FAILURE"
    for name in ("healthcheckTimeout", "restartPolicyMaxRetries", "drainingSeconds"):
        assert isinstance(deploy[name], int), f"{name} must be a JSON number (Railway refuses a string)"


def test_python_version_file_names_a_supported_python() -> None:
    major, minor = (int(part) for part in (ROOT / ".python-version").read_text().strip().split("."))
    assert (major, minor) >= (3, 11)


def test_example_is_a_ready_alert_with_a_placeholder_secret(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    answer = bot.http.get("/example")
    assert answer.status_code == 200 and SECRET not in answer.text
    payload = answer.json()
    assert payload["secret"] == "YOUR_WEBHOOK_SECRET_KEY"
    assert {"symbol", "action", "confidence", "alert_id", "time"} <= payload.keys()
    assert bot.http.post("/webhook", json=payload).status_code == 401
    filled = bot.http.post("/webhook", json=payload | {"secret": SECRET}).json()
    assert filled["decision"] == "ACCEPTED" and filled["trade"]["status"] == "FILLED"


def test_start_up_log_says_mode_limits_journal_and_what_was_rebuilt(start_bot, caplog) -> None:
    first = start_bot("paper", cooldown_seconds=60)
    first.send(price="50000")
    first.stop()
    with caplog.at_level(logging.INFO):
        bot = start_bot("paper", cooldown_seconds=60)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("start-up: ")]
    assert lines[0] == "start-up: mode paper, quote asset USDT"
    assert lines[1] == ("start-up: limits: 10 USDT per BUY, confidence >= 50, free balance >= 10 USDT, "
                        "at most 10 USDT per trade, 3 open trades, 10 BUYs per UTC day, cooldown 60s, "
                        "daily loss limit off")
    assert lines[2] == f"start-up: journal: {bot.settings.logs_dir.resolve()}"
    assert lines[3].startswith("start-up: rebuilt from trades.csv: 1 filled trade(s); open positions: "
                               "BTCUSDT 0.0001997 (cost 9.9999975 USDT); BUYs today: 1; "
                               "cooldowns running: BTCUSDT BUY; orders still unsettled: 0; paused: no; "
                               "paper balance 990.0000025 USDT")
    assert lines[4] == "start-up: telegram alerts: off"
    assert SECRET not in caplog.text


def test_webhook_url_is_logged_when_railway_gives_a_domain(start_bot, caplog) -> None:
    with caplog.at_level(logging.INFO):
        start_bot("paper", railway_public_domain="my-bot.up.railway.app")
    assert "start-up: TradingView webhook URL: https://my-bot.up.railway.app/webhook" in caplog.text


def test_journal_outside_the_railway_volume_is_warned_in_log_and_status(start_bot, tmp_path, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        bot = start_bot("paper", railway_environment_name="production",
                        railway_volume_mount_path=str(tmp_path / "volume"))
    assert "start-up: LOGS_DIR is" in caplog.text and "erased on every deploy" in caplog.text
    journal = bot.status()["journal"]
    assert journal["persistent"] is False and "outside the Railway volume" in journal["warning"]


@pytest.mark.parametrize("where", ["volume", "volume/logs"])
def test_journal_on_the_railway_volume_is_not_warned(start_bot, tmp_path, caplog, where) -> None:
    with caplog.at_level(logging.WARNING):
        bot = start_bot("paper", railway_environment_name="production",
                        railway_volume_mount_path=str(tmp_path / "volume"), logs_dir=tmp_path / where)
    assert "erased on every deploy" not in caplog.text
    assert bot.status()["journal"] == {"path": str((tmp_path / where).resolve()), "persistent": True,
                                       "warning": None}


def test_each_decision_is_one_log_line_with_its_level(start_bot, fake, caplog) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    with caplog.at_level(logging.INFO, logger="bot"):
        bot.send()
        bot.send(confidence=10)
        fake.inject("POST", "/api/v3/order", status=400, code=-2010,
                    msg="Account has insufficient balance for requested action.")
        bot.send()
    lines = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "bot"]
    order = fake.orders[0]["clientOrderId"]
    assert ("INFO", f"BUY BTCUSDT filled: 0.0002 at 50000 for 10 USDT, order {order}") in lines
    assert any(level == "INFO" and text.startswith("BUY BTCUSDT rejected: confidence 10")
               for level, text in lines)
    [failed] = [text for level, text in lines if level == "WARNING"]
    assert failed.startswith("order tv") and failed.endswith(
        "for BUY BTCUSDT failed: Binance rejected the request: -2010 Account has insufficient balance for "
        "requested action.")
    assert all("\n" not in text and SECRET not in text for _, text in lines)


def test_paper_mode_says_it_goes_on_offline_when_binance_is_unreachable(start_bot, caplog) -> None:
    with caplog.at_level(logging.WARNING):
        bot = start_bot("paper")
        wait_until(lambda: "paper mode goes on offline" in caplog.text)
    assert bot.send(price="50000").json()["trade"]["status"] == "FILLED"
