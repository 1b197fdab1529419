"""Telegram alerts: sent for fills and failures through the real webhook flow, never slowing a webhook,
retried briefly, dropped with a log line, and never carrying or logging a secret."""
from __future__ import annotations

import logging
import time
from typing import Iterator

import pytest

import telegram as telegram_module
from telegram import REDACTED, TelegramNotifier
from tests.conftest import SECRET, closed_port_url
from tests.fake_telegram import FakeTelegram

QUICK_SECONDS = 1.0


@pytest.fixture
def telegram() -> Iterator[FakeTelegram]:
    with FakeTelegram() as fake:
        yield fake


@pytest.fixture
def notifier(make_settings, telegram) -> Iterator[TelegramNotifier]:
    """A notifier on its own, talking HTTP to the fake Telegram."""
    sender = TelegramNotifier(make_settings("paper", **telegram.settings()), queue_size=2)
    sender.start()
    yield sender
    sender.stop()


def timed_send(bot, **fields) -> tuple[float, dict]:
    started = time.monotonic()
    answer = bot.send(**fields)
    elapsed = time.monotonic() - started
    assert answer.status_code == 200, answer.text
    return elapsed, answer.json()


def assert_no_secret(texts: list[str], *secrets: str) -> None:
    for text in texts:
        for secret in secrets:
            assert secret not in text


def test_start_up_and_paper_fills_are_announced(start_bot, telegram) -> None:
    bot = start_bot("paper", cooldown_seconds=0, **telegram.settings())
    assert bot.send(price="50000").json()["trade"]["status"] == "FILLED"
    assert bot.send(action="sell", price="51000").json()["trade"]["status"] == "FILLED"
    start_up, buy, sell = telegram.wait_for_messages(3)
    assert start_up.startswith("[paper] 🟢 bot started")
    assert "limits: 10 USDT per BUY" in start_up and "telegram alerts: on" in start_up
    assert buy.startswith("[paper] ✅ BUY BTCUSDT filled\nbought 0.0001999 at 50025 for 9.9999975 USDT")
    assert sell.startswith("[paper] ✅ SELL BTCUSDT filled\nsold 0.0001997 at 50974.5")
    row = bot.trades()[-1]
    assert f"P&L +{row['RealizedPnL']} USDT (entry price {row['EntryPrice']})" in sell
    assert {m["chat_id"] for m in telegram.messages} == {telegram.chat_id}
    assert_no_secret(telegram.texts, SECRET, telegram.token)


def test_testnet_fills_and_failures_are_announced_without_secrets(start_bot, fake, telegram) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, **telegram.settings())
    assert bot.send().json()["trade"]["status"] == "FILLED"
    fake.inject("POST", "/api/v3/order", status=400, code=-2010,
                msg="Account has insufficient balance for requested action.")
    assert bot.send().json()["trade"]["status"] == "FAILED"
    _, filled, failed = telegram.wait_for_messages(3)
    assert filled.startswith("[testnet] ✅ BUY BTCUSDT filled")
    assert failed.startswith("[testnet] ❌ BUY BTCUSDT failed\n")
    assert "-2010 Account has insufficient balance" in failed
    assert bot.trades()[-1]["ClientOrderID"] in failed
    assert_no_secret(telegram.texts, SECRET, telegram.token, fake.api_key, fake.api_secret)


def test_unknown_outcome_is_announced(start_bot, fake, telegram) -> None:
    bot = start_bot("testnet", fake, **telegram.settings())
    bot.status()
    fake.stop()
    assert bot.send().json()["trade"]["status"] == "UNKNOWN"
    unknown = telegram.wait_for_messages(2)[-1]
    assert unknown.startswith("[testnet] ⚠️ BUY BTCUSDT: outcome unknown, check the order on Binance")


def test_webhooks_answer_quickly_while_telegram_hangs(start_bot, telegram) -> None:
    telegram.hang()
    bot = start_bot("paper", cooldown_seconds=0, max_open_trades=10, **telegram.settings())
    telegram.wait_for_waiting(1)  # the start-up message is stuck in Telegram
    for symbol in ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT"]:
        elapsed, answer = timed_send(bot, symbol=symbol, price="100")
        assert answer["trade"]["status"] == "FILLED"
        assert elapsed < QUICK_SECONDS, f"webhook took {elapsed:.2f}s while Telegram hung"
    assert telegram.texts == []
    telegram.release()
    texts = telegram.wait_for_messages(6)
    assert [t.splitlines()[0] for t in texts[1:]] == [
        f"[paper] ✅ BUY {s} filled" for s in ["BTCUSDT", "ETHUSDT", "BNBUSDT", "SOLUSDT", "XRPUSDT"]]


def test_webhooks_answer_quickly_while_telegram_is_down_and_the_token_stays_out_of_the_logs(
        start_bot, caplog: pytest.LogCaptureFixture) -> None:
    token = FakeTelegram().token
    with caplog.at_level(logging.DEBUG):
        bot = start_bot("paper", telegram_bot_token=token, telegram_chat_id="42",
                        telegram_api_url=closed_port_url().removesuffix("/api"))
        elapsed, answer = timed_send(bot, price="50000")
        assert answer["trade"]["status"] == "FILLED" and elapsed < QUICK_SECONDS
        deadline = time.monotonic() + 15
        while "telegram: message dropped" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.05)
    assert "telegram: message dropped after 3 tries: cannot reach Telegram: ConnectionError" in caplog.text
    assert REDACTED in caplog.text
    assert token not in caplog.text and token.split(":")[1] not in caplog.text


def test_a_server_error_is_retried_and_urllib3_debug_lines_hide_the_token(notifier, telegram, caplog) -> None:
    telegram.fail(500, times=1)
    with caplog.at_level(logging.DEBUG):
        assert notifier.notify("hello")
        assert telegram.wait_for_messages(1) == ["hello"]
    assert telegram.requests == 2
    assert f'"POST /bot{REDACTED}/sendMessage HTTP/1.1" 500' in caplog.text
    assert telegram.token not in caplog.text


def test_a_short_retry_after_is_honoured(notifier, telegram) -> None:
    telegram.fail(429, retry_after=1, times=1)
    started = time.monotonic()
    notifier.notify("after the pause")
    assert telegram.wait_for_messages(1) == ["after the pause"]
    assert time.monotonic() - started >= 1.0


def test_a_long_retry_after_drops_the_message_with_a_log_line(notifier, telegram, caplog) -> None:
    telegram.fail(429, retry_after=60, times=1)
    with caplog.at_level(logging.WARNING, logger="telegram"):
        notifier.notify("too soon")
        notifier.notify("next one")
        assert telegram.wait_for_messages(1) == ["next one"]
    assert ("message dropped after 1 try: Telegram answered 429: Too Many Requests: retry after 60 "
            "(asks to wait 60s, more than 10s)") in caplog.text
    assert telegram.requests == 2


def test_a_wrong_token_is_not_retried_and_never_logged(make_settings, telegram, caplog) -> None:
    wrong = "987654321:AAE-wrong-token-that-must-not-be-logged"
    sender = TelegramNotifier(make_settings("paper", **(telegram.settings() | {"telegram_bot_token": wrong})))
    sender.start()
    with caplog.at_level(logging.DEBUG):
        sender.notify("hello")
        telegram.wait_for_requests(1)
        sender.stop()
    assert "message dropped after 1 try: Telegram answered 401: Unauthorized" in caplog.text
    assert telegram.requests == 1 and telegram.texts == []
    assert wrong not in caplog.text


def test_a_full_queue_drops_messages_with_a_log_line(notifier, telegram, caplog) -> None:
    telegram.hang()
    notifier.notify("first")
    telegram.wait_for_waiting(1)
    with caplog.at_level(logging.WARNING, logger="telegram"):
        assert notifier.notify("second") and notifier.notify("third")
        started = time.monotonic()
        assert not notifier.notify("fourth")
        assert time.monotonic() - started < 0.1
    assert "telegram: message dropped: 2 messages already waiting" in caplog.text
    telegram.release()
    assert telegram.wait_for_messages(3) == ["first", "second", "third"]


def test_stopping_does_not_wait_long_for_a_hanging_telegram(notifier, telegram, monkeypatch, caplog) -> None:
    monkeypatch.setattr(telegram_module, "STOP_GRACE_SECONDS", 0.3)
    telegram.hang()
    notifier.notify("stuck")
    telegram.wait_for_waiting(1)
    started = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="telegram"):
        notifier.stop()
    assert time.monotonic() - started < 1.0
    assert "stopping with 1 message(s) unsent" in caplog.text
    assert not notifier.notify("after stop")


def test_without_telegram_settings_nothing_is_sent(start_bot, telegram) -> None:
    bot = start_bot("paper")
    assert bot.send(price="50000").json()["trade"]["status"] == "FILLED"
    assert bot.status()["telegram_alerts"] is False
    assert telegram.requests == 0


def test_pause_resume_and_exits_by_stop_or_target_are_announced(start_bot, fake, telegram) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, monitor_interval_seconds=0.1, **telegram.settings())
    bearer = {"Authorization": f"Bearer {SECRET}"}
    bot.http.post("/pause", headers=bearer)
    bot.http.post("/resume", headers=bearer)
    assert bot.send(stop_loss="48000", take_profit="55000").json()["trade"]["status"] == "FILLED"
    fake.set_price("BTCUSDT", "47900")
    _, paused, resumed, _, stopped = telegram.wait_for_messages(5)
    assert paused.startswith("[testnet] ⏸ trading paused\nentries are refused until POST /resume")
    assert resumed == "[testnet] ▶️ trading resumed"
    assert stopped.startswith("[testnet] 🛑 stop-loss hit: SELL BTCUSDT filled\nsold 0.00019 at 47900")
    assert_no_secret(telegram.texts, SECRET, telegram.token, fake.api_key, fake.api_secret)
