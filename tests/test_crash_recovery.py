"""Killed with SIGKILL mid-order, the bot settles the order with Binance at its next start.

These tests run the bot as users do, `python app.py` in its own process, against the fake exchange.
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest
import requests

from tests.conftest import SECRET, read_csv, wait_until
from tests.loopback import free_port

ROOT = Path(__file__).resolve().parent.parent


class BotProcess:
    def __init__(self, environment: dict[str, str], log_path: Path,
                 preexec_fn: Callable[[], None] | None = None) -> None:
        self.environment = environment
        self.url = f"http://127.0.0.1:{environment['PORT']}"
        self.log_path = log_path
        self.preexec_fn = preexec_fn  # runs in the child before app.py, e.g. to lower its limits
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "BotProcess":
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=self.environment,
                                            stdout=log, stderr=subprocess.STDOUT, preexec_fn=self.preexec_fn)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.process.poll() is None, self.log_path.read_text()
            try:
                requests.get(self.url + "/health", timeout=0.5)
                return self
            except requests.ConnectionError:
                time.sleep(0.05)
        raise AssertionError("the bot did not start:\n" + self.log_path.read_text())

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def status(self) -> dict:
        return requests.get(self.url + "/status", headers={"Authorization": f"Bearer {SECRET}"}, timeout=5).json()

    def send_in_background(self) -> threading.Thread:
        body = {"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "strategy": "crash", "timeframe": "1",
                "confidence": 90, "alert_id": "crash-1"}

        def post() -> None:
            try:
                requests.post(self.url + "/webhook", json=body, timeout=10)
            except requests.RequestException:
                pass
        sender = threading.Thread(target=post, daemon=True)
        sender.start()
        return sender


@pytest.fixture
def bot_process(fake, tmp_path: Path) -> Iterator[BotProcess]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BINANCE_", "TRADING_"))}
    environment |= {"WEBHOOK_SECRET_KEY": SECRET, "TRADING_MODE": "testnet", "BINANCE_API_KEY": fake.api_key,
                    "BINANCE_API_SECRET": fake.api_secret, "BINANCE_API_URL": fake.url, "PORT": str(free_port()),
                    "HOST": "127.0.0.1", "LOGS_DIR": str(tmp_path / "logs"), "RECONCILE_INTERVAL_SECONDS": "0.5"}
    bot = BotProcess(environment, tmp_path / "bot.log")
    yield bot
    bot.stop()


def test_killed_after_binance_executed_the_order(bot_process, fake, tmp_path: Path) -> None:
    bot_process.start()
    wait_until(lambda: fake.count("/api/v3/account") == 1)
    fake.hang("POST", "/api/v3/order", seconds=30, after_execute=True)
    bot_process.send_in_background()
    wait_until(lambda: len(fake.orders) == 1)
    bot_process.kill()
    logs = tmp_path / "logs"
    assert [i["AlertID"] for i in read_csv(logs / "intents.csv")] == ["crash-1"]
    assert not (logs / "trades.csv").exists()

    bot_process.start()
    status = bot_process.status()
    assert status["open_orders"] == [] and list(status["positions"]) == ["BTCUSDT"]
    [trade] = read_csv(logs / "trades.csv")
    assert (trade["Status"], trade["OrderID"]) == ("FILLED", str(fake.orders[0]["orderId"]))
    assert trade["Reason"] == "settled: BUY BTCUSDT filled"
    assert len(fake.orders) == 1


def test_killed_before_binance_executed_the_order(bot_process, fake, tmp_path: Path) -> None:
    bot_process.start()
    wait_until(lambda: fake.count("/api/v3/account") == 1)
    fake.hang("POST", "/api/v3/order", seconds=30)
    bot_process.send_in_background()
    wait_until(lambda: fake.count("/api/v3/order", "POST") == 1)
    bot_process.kill()

    bot_process.start()
    wait_until(lambda: bot_process.status()["open_orders"] == [], seconds=25, every=0.5)
    [trade] = read_csv(tmp_path / "logs" / "trades.csv")
    assert trade["Status"] == "FAILED" and "it was never placed" in trade["Reason"]
    assert bot_process.status()["open_trades"] == 0
    assert fake.orders == []


def test_a_second_process_on_the_same_journal_refuses_to_start(bot_process) -> None:
    bot_process.start()
    second = dict(bot_process.environment, PORT=str(free_port()))
    run = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=ROOT, env=second, capture_output=True,
                         text=True, timeout=30)
    assert run.returncode == 1
    assert "another bot is already running with LOGS_DIR=" in run.stderr


def test_paper_mode_recovers_from_its_own_records(start_bot) -> None:
    bot = start_bot("paper")
    bot.send(price="50000")
    balance = bot.status()["balance"]
    bot.stop()
    with open(bot.settings.intents_csv, "a", encoding="utf-8", newline="") as intents:
        intents.write("2026-01-01 00:00:00,ETHUSDT,BUY,tv-crashed-paper-order,10,,,paper,,\r\n")
    bot = start_bot("paper")
    status = bot.status()
    assert status["open_orders"] == [] and status["balance"] == balance and list(status["positions"]) == ["BTCUSDT"]
    assert [(t["ClientOrderID"], t["Status"]) for t in bot.trades()][-1] == ("tv-crashed-paper-order", "FAILED")
