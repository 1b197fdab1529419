"""Issue 11's items that live in the order path: one decision and a 200 whatever fails after validation,
duplicates across restarts whatever the alert id's text, alerts from the future, bounded memory."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

import binance_client
from tests.conftest import read_csv
from tests.fake_telegram import FakeTelegram


def answer_of(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def test_a_failure_after_the_order_filled_is_still_a_200_with_one_decision(start_bot, fake, monkeypatch) -> None:
    def broken(*_: object) -> str:
        raise RuntimeError("a bug after the fill")
    monkeypatch.setattr("trader.order_filled_message", broken)
    with FakeTelegram() as telegram:
        bot = start_bot("testnet", fake, cooldown_seconds=0, **telegram.settings())
        answer = answer_of(bot.send())
        assert answer["decision"] == "ACCEPTED" and answer["trade"]["status"] == "FILLED"
        assert "then an internal error" in answer["reason"]
        assert [s["Decision"] for s in bot.signals()] == ["ACCEPTED"]
        assert len(fake.orders) == 1 and bot.status()["open_trades"] == 1
        bot.stop()


def test_a_failure_before_any_order_is_a_200_rejection_with_one_decision(start_bot, monkeypatch) -> None:
    bot = start_bot("paper")

    def broken(*_: object) -> None:
        raise RuntimeError("a bug before the order")
    monkeypatch.setattr("trader.buy_amount", broken)
    answer = answer_of(bot.send(price="50000"))
    assert (answer["decision"], answer["reason"]) == ("REJECTED", "internal error before any order was sent (see "
                                                                  "the bot's log)")
    assert [s["Decision"] for s in bot.signals()] == ["REJECTED"]


@pytest.mark.parametrize("stop_loss", ["0.00000001", "0.01", "1e-18"])
def test_a_tiny_stop_loss_fills_the_entry_and_answers_200(start_bot, fake, stop_loss) -> None:
    bot = start_bot("testnet", fake)
    answer = answer_of(bot.send(stop_loss=stop_loss))
    assert answer["trade"]["status"] == "FILLED" and "NOT protected" in answer["reason"]
    assert [s["Decision"] for s in bot.signals()] == ["ACCEPTED"]


@pytest.mark.parametrize("alert_id", ["=cmd|' /C calc'!A0", "+1-2", "-5", "@SUM(A1)", " =x"])
def test_an_alert_id_that_looks_like_a_formula_stays_a_duplicate_after_a_restart(start_bot, alert_id) -> None:
    alert_id = alert_id.replace("'", "").replace("|", "")
    first = start_bot("paper", cooldown_seconds=0)
    assert answer_of(first.send(price="50000", alert_id=alert_id))["trade"]["status"] == "FILLED"
    assert read_csv(first.settings.intents_csv)[0]["AlertID"].startswith("'")
    first.stop()
    second = start_bot("paper", cooldown_seconds=0)
    answer = answer_of(second.send(price="50000", alert_id=alert_id))
    assert answer["reason"].startswith("duplicate alert")


@pytest.mark.parametrize("ahead, refused", [(30, False), (90, True), (3600, True)])
def test_an_alert_from_the_future_is_refused(start_bot, ahead, refused) -> None:
    bot = start_bot("paper")
    moment = datetime.now(timezone.utc) + timedelta(seconds=ahead)
    answer = answer_of(bot.send(price="50000", time=iso(moment)))
    assert (answer["decision"] == "REJECTED") == refused
    if refused:
        assert answer["reason"].startswith("alert from the future")


def test_the_future_is_refused_even_with_the_stale_check_off(start_bot) -> None:
    bot = start_bot("paper", max_signal_age_seconds=0)
    answer = answer_of(bot.send(price="50000", time=iso(datetime.now(timezone.utc) + timedelta(hours=1))))
    assert answer["reason"].startswith("alert from the future")


def test_prices_of_the_symbols_callers_name_are_remembered_within_a_bound(start_bot, monkeypatch) -> None:
    """Paper mode offline accepts any <BASE>USDT symbol, and remembers each alert's price."""
    monkeypatch.setattr(binance_client, "MAX_REMEMBERED_PRICES", 5)
    bot = start_bot("paper", min_confidence=100)
    for number in range(30):
        bot.send(symbol=f"COIN{number}USDT", price="1.5")
    market = bot.app.state.trader.exchange.market
    assert len(market._last_prices) == 5 and market.cached_price("COIN29USDT") is not None
