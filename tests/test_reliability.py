"""Exactly-once orders: duplicates, stale alerts, unclear answers, slow replies, clock drift, rate limits,
an exchange that is down, a journal that cannot be written, and the emergency stop."""
from __future__ import annotations

import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from app import create_app
from csv_logger import JournalInUse
from orders import client_order_id_for
from tests.conftest import SECRET, read_csv, wait_until

D = Decimal


def answer_of(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def assert_journal_matches_exchange(bot, fake) -> None:
    """Every order the exchange executed is in trades.csv exactly once as FILLED, and nothing else is."""
    executed = sorted(str(o["orderId"]) for o in fake.orders if Decimal(o["executedQty"]) > 0)
    journalled = sorted(t["OrderID"] for t in bot.trades() if t["Status"] == "FILLED")
    assert journalled == executed


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_parallel_copies_of_one_alert_place_one_order(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, max_open_trades=20, max_trades_per_day=50)
    bot.status()
    fake.latency_ms = 20
    with ThreadPoolExecutor(max_workers=10) as pool:
        answers = list(pool.map(lambda _: answer_of(bot.send(alert_id="ema-1-2026-11-22T10:00:00Z")), range(10)))
    assert sorted(a["decision"] for a in answers) == ["ACCEPTED"] + ["REJECTED"] * 9
    assert all(a["reason"].startswith("duplicate alert 'ema-1-2026-11-22T10:00:00Z'")
               for a in answers if a["decision"] == "REJECTED")
    assert len(fake.orders) == 1
    assert [t["Status"] for t in bot.trades()] == ["FILLED"]
    assert len(bot.signals()) == 10
    assert_journal_matches_exchange(bot, fake)


def test_copy_after_a_restart_is_a_duplicate(start_bot, fake) -> None:
    first = start_bot("testnet", fake, cooldown_seconds=0)
    assert answer_of(first.send(alert_id="a-7"))["trade"]["status"] == "FILLED"
    first.stop()
    second = start_bot("testnet", fake, cooldown_seconds=0)
    assert answer_of(second.send(alert_id="a-7"))["reason"].startswith("duplicate alert 'a-7'")
    assert len(fake.orders) == 1


def test_order_identity_is_derived_from_the_alert_and_recorded_before_sending(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    bot.status()
    fake.hang("POST", "/api/v3/order", seconds=1.5, after_execute=True)
    sender = threading.Thread(target=bot.send, kwargs={"alert_id": "x-1"})
    sender.start()
    wait_until(lambda: len(fake.orders) == 1)
    expected = client_order_id_for("x-1")
    assert fake.orders[0]["clientOrderId"] == expected
    assert [i["ClientOrderID"] for i in read_csv(bot.settings.intents_csv)] == [expected]
    assert not bot.settings.trades_csv.exists()
    sender.join()
    assert bot.trades()[0]["ClientOrderID"] == expected


def test_stale_alert_is_rejected(start_bot) -> None:
    bot = start_bot("paper", max_signal_age_seconds=60, cooldown_seconds=0)
    now = datetime.now(timezone.utc)
    old = answer_of(bot.send(price=50000, time=iso(now - timedelta(seconds=125))))
    assert old["decision"] == "REJECTED"
    assert old["reason"].startswith("stale alert: sent 12") and old["reason"].endswith("MAX_SIGNAL_AGE_SECONDS is 60")
    assert answer_of(bot.send(price=50000, time=iso(now)))["decision"] == "ACCEPTED"
    assert bot.send(price=50000, time="yesterday").json()["error"].startswith("time:")


def test_stale_check_can_be_turned_off(start_bot) -> None:
    bot = start_bot("paper", max_signal_age_seconds=0)
    assert answer_of(bot.send(price=50000, time="2020-01-01T00:00:00Z"))["decision"] == "ACCEPTED"


@pytest.mark.parametrize("status, code, msg", [
    (503, None, "Service Unavailable"),
    (500, -1007, "Timeout waiting for response from backend server. Send status unknown; execution status unknown."),
    (200, None, "<html>proxy error</html>"),
])
def test_unclear_answer_after_execution_is_looked_up_not_resent(start_bot, fake, status, code, msg) -> None:
    bot = start_bot("testnet", fake)
    bot.status()
    fake.order_lookup_delay_s = 0.5
    fake.inject("POST", "/api/v3/order", status=status, code=code, msg=msg, after_execute=True)
    trade = answer_of(bot.send())["trade"]
    assert trade["status"] == "FILLED"
    assert D(trade["fee"]) == D("0.0000002") and trade["fee_asset"] == "BTC"
    assert fake.count("/api/v3/order", "POST") == 1
    assert_journal_matches_exchange(bot, fake)


def test_order_that_never_reached_binance_is_unknown_then_settled_as_failed(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, reconcile_interval_seconds=0.5, max_open_trades=1)
    bot.status()
    fake.inject("POST", "/api/v3/order", status=500, code=-1007,
                msg="Timeout waiting for response from backend server. Send status unknown; execution status unknown.")
    answer = answer_of(bot.send())
    assert answer["trade"]["status"] == "UNKNOWN"
    assert bot.status()["open_trades"] == 1
    assert "MAX_OPEN_TRADES" in answer_of(bot.send(symbol="ETHUSDT"))["reason"]
    wait_until(lambda: bot.status()["open_orders"] == [], seconds=25, every=0.5)
    assert [t["Status"] for t in bot.trades()] == ["UNKNOWN", "FAILED"]
    assert "it was never placed" in bot.trades()[1]["Reason"]
    assert bot.status()["open_trades"] == 0
    assert fake.orders == []


def test_reply_that_never_comes_is_settled_by_looking_the_order_up(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, binance_timeout_seconds=0.5)
    bot.status()
    fake.hang("POST", "/api/v3/order", seconds=3, after_execute=True)
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"
    assert fake.count("/api/v3/order", "POST") == 1
    assert_journal_matches_exchange(bot, fake)


def test_slow_exchange_gets_a_pending_answer_within_the_deadline(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, binance_timeout_seconds=10)
    bot.status()
    fake.latency_ms = 3500
    started = time.monotonic()
    answer = answer_of(bot.send(alert_id="slow-1"))
    assert time.monotonic() - started < 2.9
    assert (answer["decision"], answer["trade"]["status"]) == ("ACCEPTED", "PENDING")
    assert bot.status()["open_orders"][0]["client_order_id"] == answer["trade"]["client_order_id"]
    wait_until(lambda: bot.settings.trades_csv.exists())
    [row] = bot.trades()
    assert (row["Status"], row["ClientOrderID"]) == ("FILLED", answer["trade"]["client_order_id"])
    assert bot.status()["open_orders"] == []
    assert_journal_matches_exchange(bot, fake)


def test_clock_drift_is_measured_at_start_up(start_bot, fake) -> None:
    fake.clock_offset_ms = -4000
    bot = start_bot("testnet", fake)
    wait_until(lambda: fake.count("/api/v3/account") == 1)
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"
    assert fake.count("/api/v3/order", "POST") == 1


def test_clock_drift_during_the_day_is_fixed_and_the_order_retried_once(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    bot.status()
    times_asked = fake.count("/api/v3/time")
    fake.clock_offset_ms = -4000
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"
    assert fake.count("/api/v3/time") == times_asked + 1
    assert fake.count("/api/v3/order", "POST") == 2
    assert len(fake.orders) == 1


def test_ip_ban_fails_the_trade_and_is_honoured(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    bot.status()
    fake.inject("POST", "/api/v3/order", status=418, code=-1003, msg="Way too much request weight used; IP banned.",
                headers={"Retry-After": "120"})
    assert "IP banned (418): retry after 120s" in answer_of(bot.send())["reason"]
    calls = fake.count()
    assert answer_of(bot.send())["trade"]["status"] == "FAILED"
    assert fake.count() == calls


def test_exchange_down_at_start_up_then_back(start_bot, fake) -> None:
    fake.stop()
    bot = start_bot("testnet", fake)
    assert bot.http.get("/health").json()["status"] == "ok"
    assert answer_of(bot.send())["reason"].startswith("cannot check the symbol with Binance")
    fake.start()
    time.sleep(5.2)
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"


def test_a_second_bot_on_the_same_journal_is_refused(start_bot, make_settings) -> None:
    bot = start_bot("paper")
    with pytest.raises(JournalInUse, match="another bot is already running with LOGS_DIR="):
        create_app(bot.settings)


def test_pause_refuses_entries_keeps_exits_and_survives_a_restart(start_bot) -> None:
    bot = start_bot("paper", cooldown_seconds=0)
    bot.send(price=50000)
    assert bot.http.post("/pause").status_code == 401
    assert bot.http.post("/pause", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert bot.http.post("/pause", headers={"Authorization": f"Bearer {SECRET}"}).json() == {"paused": True}
    assert answer_of(bot.send(symbol="ETHUSDT", price=3000))["reason"].startswith("trading paused")
    bot.stop()
    bot = start_bot("paper", cooldown_seconds=0)
    assert bot.status()["paused"] is True
    assert answer_of(bot.send(action="sell", price=50000))["trade"]["status"] == "FILLED"
    assert bot.http.post("/resume", headers={"Authorization": f"Bearer {SECRET}"}).json() == {"paused": False}
    assert answer_of(bot.send(price=50000))["decision"] == "ACCEPTED"


def test_journal_that_cannot_be_written_loses_no_row(start_bot, caplog: pytest.LogCaptureFixture) -> None:
    bot = start_bot("paper", cooldown_seconds=0, max_open_trades=10)
    bot.send(price=50000, strategy="first")
    signals_csv = bot.settings.signals_csv
    saved = signals_csv.read_bytes()
    signals_csv.unlink()
    signals_csv.mkdir()
    with caplog.at_level(logging.WARNING):
        assert answer_of(bot.send(symbol="ETHUSDT", price=3000, strategy="second"))["decision"] == "ACCEPTED"
        assert answer_of(bot.send(symbol="BNBUSDT", price=600, strategy="third"))["decision"] == "ACCEPTED"
    assert "signals.csv cannot be written" in caplog.text
    assert bot.status()["unwritten_journal_rows"] == 2
    signals_csv.rmdir()
    signals_csv.write_bytes(saved)
    bot.send(action="sell", price=50000, strategy="fourth")
    assert [s["Strategy"] for s in bot.signals()] == ["first", "second", "third", "fourth"]
    assert bot.status()["unwritten_journal_rows"] == 0
