"""Each risk rule refuses when it should, in the documented order, atomically under parallel load."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest

from risk import Proposal, RiskState, cooldown
from signals import Signal


class Clock:
    """A settable UTC clock for the bot, to cross midnight and cooldowns without waiting."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


def decision(answer) -> tuple[str, str]:
    assert answer.status_code == 200, answer.text
    result = answer.json()
    return result["decision"], result["reason"]


def test_confidence_below_minimum_is_rejected(start_bot) -> None:
    bot = start_bot(min_confidence=60)
    assert decision(bot.send(confidence=59.9, price=50000)) == (
        "REJECTED", "confidence 59.9 is below MIN_CONFIDENCE 60")
    assert decision(bot.send(confidence=60, price=50000))[0] == "ACCEPTED"


def test_balance_below_minimum_is_rejected(start_bot) -> None:
    bot = start_bot(paper_balance_usdt=9.99, min_balance_usdt=10, trade_amount_usdt=5)
    assert decision(bot.send(price=50000)) == ("REJECTED", "balance 9.99 USDT is below MIN_BALANCE_USDT 10")


def test_amount_above_risk_per_trade_is_rejected(start_bot) -> None:
    bot = start_bot(max_risk_per_trade=10)
    assert decision(bot.send(amount_usdt="10.01", price=50000)) == (
        "REJECTED", "trade amount 10.01 USDT is above MAX_RISK_PER_TRADE 10")
    assert decision(bot.send(amount_usdt="10", price=50000))[0] == "ACCEPTED"


def test_default_trade_amount_above_risk_per_trade_is_rejected(start_bot) -> None:
    bot = start_bot(trade_amount_usdt=20, max_risk_per_trade=15)
    assert "MAX_RISK_PER_TRADE 15" in decision(bot.send(price=50000))[1]


def test_open_trades_at_maximum_is_rejected(start_bot) -> None:
    bot = start_bot(max_open_trades=2, cooldown_seconds=0)
    assert decision(bot.send(symbol="BTCUSDT", price=50000))[0] == "ACCEPTED"
    assert decision(bot.send(symbol="ETHUSDT", price=3000))[0] == "ACCEPTED"
    assert decision(bot.send(symbol="BNBUSDT", price=600)) == (
        "REJECTED", "2 trades open, MAX_OPEN_TRADES is 2")


def test_trades_per_day_at_maximum_is_rejected(start_bot) -> None:
    bot = start_bot(max_trades_per_day=2, cooldown_seconds=0)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    assert decision(bot.send(action="sell", price=50000))[0] == "ACCEPTED"
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    assert decision(bot.send(symbol="ETHUSDT", price=3000)) == (
        "REJECTED", "2 trades today (UTC), MAX_TRADES_PER_DAY is 2")


def test_same_symbol_and_action_within_cooldown_is_rejected(start_bot) -> None:
    clock = Clock(datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc))
    bot = start_bot(cooldown_seconds=300, clock=clock)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    clock.advance(299)
    assert decision(bot.send(price=50000)) == (
        "REJECTED", "cooldown: last BUY BTCUSDT was 299s ago, COOLDOWN_SECONDS is 300")
    assert decision(bot.send(symbol="ETHUSDT", price=3000))[0] == "ACCEPTED"
    clock.advance(1)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"


def test_sell_within_cooldown_is_rejected(start_bot) -> None:
    clock = Clock(datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc))
    bot = start_bot(cooldown_seconds=60, clock=clock)
    bot.send(price=50000)
    clock.advance(1)
    assert decision(bot.send(action="sell", price=50000))[0] == "ACCEPTED"
    clock.advance(59)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    clock.advance(0.5)
    assert decision(bot.send(action="sell", price=50000)) == (
        "REJECTED", "cooldown: last SELL BTCUSDT was 59s ago, COOLDOWN_SECONDS is 60")


@pytest.mark.parametrize("cooldown_seconds, refused", [(0, False), (300, True)])
def test_cooldown_counts_a_parallel_trade_reserved_after_the_signal_read_the_clock_as_just_now(
        make_settings, cooldown_seconds, refused) -> None:
    """A signal reads the clock before it waits for the risk lock, so a parallel trade may be stamped later."""
    at = datetime(2026, 11, 22, 12, 0, tzinfo=timezone.utc)
    state = RiskState(day=at.date(), last_trade_at={("BTCUSDT", "BUY"): at + timedelta(milliseconds=5)})
    signal = Signal(symbol="BTCUSDT", action="BUY", strategy="test", timeframe="15", confidence=Decimal(80))
    refusal = cooldown(Proposal(signal, Decimal(10), Decimal(1000), at), state,
                       make_settings(cooldown_seconds=cooldown_seconds))
    assert (refusal is not None) == refused


@pytest.mark.parametrize("relaxed, expected_rule", [
    ({}, "MIN_CONFIDENCE"),
    ({"min_confidence": 0}, "MIN_BALANCE_USDT"),
    ({"min_confidence": 0, "min_balance_usdt": 0}, "MAX_RISK_PER_TRADE"),
    ({"min_confidence": 0, "min_balance_usdt": 0, "max_risk_per_trade": 100}, "MAX_OPEN_TRADES"),
    ({"min_confidence": 0, "min_balance_usdt": 0, "max_risk_per_trade": 100, "max_open_trades": 9},
     "MAX_TRADES_PER_DAY"),
    ({"min_confidence": 0, "min_balance_usdt": 0, "max_risk_per_trade": 100, "max_open_trades": 9,
      "max_trades_per_day": 9}, "COOLDOWN_SECONDS"),
])
def test_the_first_failing_check_is_the_reason(start_bot, relaxed, expected_rule) -> None:
    """One BUY is open; the next BUY fails every check that `relaxed` does not loosen."""
    strict = {"min_confidence": 90, "min_balance_usdt": 995, "max_risk_per_trade": 20, "max_open_trades": 1,
              "max_trades_per_day": 1, "cooldown_seconds": 300}
    bot = start_bot(**(strict | {"min_confidence": 0, "min_balance_usdt": 0}))
    assert decision(bot.send(price=50000, confidence=95))[0] == "ACCEPTED"
    bot.stop()
    bot = start_bot(**(strict | relaxed))
    assert expected_rule in decision(bot.send(price=50000, confidence=80, amount_usdt=50))[1]


def test_sell_is_not_blocked_by_entry_limits(start_bot) -> None:
    bot = start_bot(max_open_trades=1, max_trades_per_day=1, min_confidence=50, cooldown_seconds=0)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    assert decision(bot.send(symbol="ETHUSDT", price=3000))[0] == "REJECTED"
    assert decision(bot.send(action="sell", confidence=1, price=50000))[0] == "ACCEPTED"


def test_sell_without_open_position_is_rejected(start_bot) -> None:
    bot = start_bot()
    assert decision(bot.send(action="sell", price=50000)) == (
        "REJECTED", "no open position in BTCUSDT to sell (spot only: no shorting)")


def test_daily_count_resets_at_utc_midnight(start_bot) -> None:
    clock = Clock(datetime(2026, 11, 22, 23, 59, 50, tzinfo=timezone.utc))
    bot = start_bot(max_trades_per_day=1, cooldown_seconds=0, clock=clock)
    assert decision(bot.send(price=50000))[0] == "ACCEPTED"
    assert "MAX_TRADES_PER_DAY" in decision(bot.send(symbol="ETHUSDT", price=3000))[1]
    clock.advance(15)
    assert decision(bot.send(symbol="ETHUSDT", price=3000))[0] == "ACCEPTED"
    assert bot.status()["trades_today"] == 1


def test_failed_order_releases_its_slot(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, max_open_trades=1, max_trades_per_day=1, cooldown_seconds=300)
    fake.inject("POST", "/api/v3/order", status=400, code=-2010,
                msg="Account has insufficient balance for requested action.")
    answer = bot.send().json()
    assert answer["trade"]["status"] == "FAILED"
    status = bot.status()
    assert (status["open_trades"], status["trades_today"]) == (0, 0)
    assert bot.send().json()["trade"]["status"] == "FILLED"


def test_parallel_buys_never_exceed_max_open_trades(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, max_open_trades=3, max_trades_per_day=100, cooldown_seconds=0)
    bot.status()
    fake.latency_ms = 30
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: bot.send().json(), range(20)))
    accepted = [a for a in answers if a["decision"] == "ACCEPTED"]
    assert len(accepted) == 3
    assert all(a["reason"] == "3 trades open, MAX_OPEN_TRADES is 3" for a in answers if a not in accepted)
    assert fake.count("/api/v3/order", "POST") == 3
    assert bot.status()["open_trades"] == 3
    assert len([t for t in bot.trades() if t["Status"] == "FILLED"]) == 3
