"""Stop-loss and take-profit on the exchange, exits by the exchange, realized PnL, the daily loss limit
and the score, each checked against the fake exchange's balances."""
from __future__ import annotations

import subprocess
from concurrent.futures import ThreadPoolExecutor
import sys
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import wait_until

D = Decimal
ROOT = Path(__file__).resolve().parent.parent
FAST_MONITOR = {"monitor_interval_seconds": 0.1, "cooldown_seconds": 0}


def answer_of(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def protected_buy(bot, **fields) -> dict:
    answer = answer_of(bot.send(**({"stop_loss": "48000", "take_profit": "55000"} | fields)))
    assert answer["trade"]["status"] == "FILLED", answer
    return answer


def exits(bot) -> list[dict]:
    return [t for t in bot.trades() if t["Action"] == "SELL" and t["Status"] == "FILLED"]


def test_buy_with_stop_and_target_places_one_oco_for_what_the_account_holds(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    answer = protected_buy(bot, stop_loss="48000.004", take_profit="54999.996")
    stop_leg, target_leg = [o for o in fake.orders if o["type"] != "MARKET"]
    assert (stop_leg["type"], D(stop_leg["stopPrice"]), D(stop_leg["price"])) == ("STOP_LOSS_LIMIT", D(48000), D(47760))
    assert (target_leg["type"], D(target_leg["price"])) == ("LIMIT_MAKER", D(55000))
    assert D(stop_leg["origQty"]) == D("0.00019")
    assert fake.locked("BTC") == D("0.00019")
    assert "protected by OCO stop-loss 48000 (limit 47760) and take-profit 55000" in answer["reason"]
    position = bot.status()["positions"]["BTCUSDT"]
    assert position["protection"].startswith("OCO stop-loss 48000") and position["protection_error"] is None
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "OPEN"]


@pytest.mark.parametrize("levels, order_type", [({"stop_loss": "48000"}, "STOP_LOSS_LIMIT"),
                                                ({"take_profit": "55000"}, "LIMIT_MAKER")])
def test_a_single_level_places_a_single_order(start_bot, fake, levels, order_type) -> None:
    bot = start_bot("testnet", fake)
    assert answer_of(bot.send(**levels))["trade"]["status"] == "FILLED"
    assert [o["type"] for o in fake.orders] == ["MARKET", order_type]


@pytest.mark.parametrize("price, kind", [("56000", "take_profit"), ("47900", "stop_loss")])
def test_exit_by_the_exchange_is_recorded_with_pnl_matching_the_balances(start_bot, fake, price, kind) -> None:
    bot = start_bot("testnet", fake, **FAST_MONITOR)
    protected_buy(bot)
    fake.set_price("BTCUSDT", D(price))
    wait_until(lambda: len(exits(bot)) == 1)
    [closing] = exits(bot)
    assert closing["Reason"] == kind
    assert fake.balance("USDT") == D(10000) + D(closing["RealizedPnL"]) - bot.tied_up()
    assert D(closing["EntryPrice"]) == (D(10) / (D("0.0002") - D("0.0000002"))).quantize(D("0.00000001"))
    status = bot.status()
    assert status["positions"] == {} and status["open_trades"] == 0
    assert D(status["performance"]["realized_pnl_total"]) == D(closing["RealizedPnL"])


def test_monitor_costs_one_call_per_pass_however_many_positions(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **(FAST_MONITOR | {"monitor_interval_seconds": 0.2}))
    protected_buy(bot)
    protected_buy(bot, symbol="ETHUSDT", stop_loss="2900", take_profit="3300")
    fake.reset_counts()
    wait_until(lambda: fake.count("/api/v3/openOrders") >= 3)
    assert fake.count("/api/v3/order", "GET") == 0
    assert fake.count() <= 2 * fake.count("/api/v3/openOrders") + 2


def test_sell_signal_cancels_the_protection_then_sells(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    protected_buy(bot)
    sell = answer_of(bot.send(action="sell"))
    assert sell["trade"]["status"] == "FILLED"
    assert sorted(o["status"] for o in fake.orders if o["type"] != "MARKET") == ["CANCELED", "CANCELED"]
    assert fake.locked("BTC") == 0
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "OPEN", "CANCELED", "FILLED"]
    assert fake.balance("USDT") == D(10000) + D(sell["trade"]["realized_pnl"]) - bot.tied_up()


def test_sell_signal_after_the_exchange_already_exited_records_that_exit(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, monitor_interval_seconds=3600)
    protected_buy(bot)
    fake.set_price("BTCUSDT", D("56000"))
    answer = answer_of(bot.send(action="sell"))
    assert answer["reason"] == "already closed on the exchange by its take-profit"
    assert answer["trade"]["status"] == "FILLED"
    assert [o["type"] for o in fake.orders if o["status"] == "FILLED"] == ["MARKET", "LIMIT_MAKER"]
    assert [t["Reason"] for t in exits(bot)] == ["take_profit"]


def test_protected_position_is_still_watched_after_a_restart(start_bot, fake) -> None:
    first = start_bot("testnet", fake, monitor_interval_seconds=3600)
    protected_buy(first)
    first.stop()
    second = start_bot("testnet", fake, **FAST_MONITOR)
    assert second.status()["positions"]["BTCUSDT"]["protection"].startswith("OCO stop-loss 48000")
    fake.set_price("BTCUSDT", D("47900"))
    wait_until(lambda: len(exits(second)) == 1)
    assert exits(second)[0]["Reason"] == "stop_loss"
    assert fake.balance("USDT") == D(10000) + D(exits(second)[0]["RealizedPnL"]) - second.tied_up()


@pytest.mark.parametrize("levels, problem", [
    ({"stop_loss": "50000"}, "stop_loss 50000 must be below the entry price 50000"),
    ({"stop_loss": "51000", "take_profit": "55000"}, "stop_loss 51000 must be below the entry price 50000"),
    ({"take_profit": "49999"}, "take_profit 49999 must be above the entry price 50000"),
])
def test_inconsistent_levels_are_rejected_before_any_order(start_bot, fake, levels, problem) -> None:
    bot = start_bot("testnet", fake)
    answer = answer_of(bot.send(**levels))
    assert (answer["decision"], answer["reason"]) == ("REJECTED", problem)
    assert fake.orders == []


def test_risk_reward_below_the_minimum_is_rejected(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, min_risk_reward="2.5", cooldown_seconds=0)
    low = answer_of(bot.send(price="50000", stop_loss="49000", take_profit="52000"))
    assert (low["decision"], low["reason"]) == ("REJECTED", "risk/reward 2.00 is below MIN_RISK_REWARD 2.5")
    assert fake.orders == []
    assert answer_of(bot.send(price="50000", stop_loss="49000", take_profit="52500"))["decision"] == "ACCEPTED"


@pytest.mark.parametrize("amount, stop, refused_by_exchange", [("5.5", "40000", False), ("10", "48000", True)])
def test_refused_protection_keeps_the_entry_and_says_so(start_bot, fake, amount, stop, refused_by_exchange) -> None:
    bot = start_bot("testnet", fake, trade_amount_usdt=amount)
    if refused_by_exchange:
        fake.inject("POST", "/api/v3/orderList/oco", status=400, code=-2010,
                    msg="The relationship of the prices for the orders is not correct.")
    answer = answer_of(bot.send(stop_loss=stop, take_profit="55000"))
    assert answer["trade"]["status"] == "FILLED"
    assert "the position is NOT protected" in answer["reason"]
    position = bot.status()["positions"]["BTCUSDT"]
    assert position["protection"] is None and "NOT protected" in position["protection_error"]
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "FAILED"]
    assert len(fake.orders) == 1


def test_adding_to_a_protected_position_is_rejected(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    protected_buy(bot)
    assert "already open" in answer_of(bot.send())["reason"]


class Clock:
    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now


def test_daily_loss_limit_stops_entries_until_midnight_and_survives_a_restart(start_bot) -> None:
    clock = Clock(datetime(2026, 11, 22, 20, 0, tzinfo=timezone.utc))
    settings = {"max_daily_loss_usdt": "1.5", "cooldown_seconds": 0, "clock": clock}
    bot = start_bot("paper", **settings)
    bot.send(price="50000")
    loss = answer_of(bot.send(action="sell", price="42000"))["trade"]["realized_pnl"]
    assert D(loss) < D("-1.5")
    refused = answer_of(bot.send(symbol="ETHUSDT", price="3000"))["reason"]
    assert refused == f"today's realized loss {D(loss).copy_negate()} USDT has reached MAX_DAILY_LOSS_USDT 1.5 " \
                      f"(until UTC midnight)"
    bot.stop()
    bot = start_bot("paper", **settings)
    assert answer_of(bot.send(symbol="ETHUSDT", price="3000"))["decision"] == "REJECTED"
    clock.now += timedelta(hours=4)
    assert answer_of(bot.send(symbol="ETHUSDT", price="3000"))["decision"] == "ACCEPTED"


def test_paper_protection_follows_the_prices_of_incoming_alerts(start_bot) -> None:
    bot = start_bot("paper", cooldown_seconds=0, monitor_interval_seconds=3600)
    answer = protected_buy(bot, price="50000")
    assert "protected by OCO stop-loss 48000" in answer["reason"]
    bot.send(symbol="BTCUSDT", action="sell", price="56000", confidence=90)
    [closing] = exits(bot)
    assert (closing["Reason"], D(closing["Price"])) == ("take_profit", D(55000))
    assert D(bot.status()["balance"]) == D(1000) + D(closing["RealizedPnL"])


def test_paper_protection_follows_the_public_ticker(start_bot, fake) -> None:
    bot = start_bot("paper", fake, **FAST_MONITOR)
    protected_buy(bot, price="50000")
    fake.set_price("BTCUSDT", D("47900"))
    wait_until(lambda: len(exits(bot)) == 1)
    assert (exits(bot)[0]["Reason"], D(exits(bot)[0]["Price"])) == ("stop_loss", D(47900))


def test_the_score_matches_the_balances_and_the_offline_report(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    results = []
    for exit_price in ("52000", "49000", "51000"):
        fake.set_price("BTCUSDT", D(50000))
        bot.send()
        fake.set_price("BTCUSDT", D(exit_price))
        results.append(D(answer_of(bot.send(action="sell"))["trade"]["realized_pnl"]))
    fake.set_price("BTCUSDT", D(50000))
    bot.send()
    fake.set_price("BTCUSDT", D(50500))
    bot.app.state.trader.settler.monitor()
    score = bot.status()["performance"]
    assert D(score["realized_pnl_total"]) == sum(results)
    assert fake.balance("USDT") == D(10000) + sum(results) - bot.tied_up()
    assert bot.status()["dust"] == {}
    assert (score["closed_trades"], score["win_rate_percent"]) == (3, "66.67")
    assert D(score["average_win"]) == ((results[0] + results[2]) / 2).quantize(D("0.00000001"))
    assert D(score["average_loss"]) == results[1]
    assert D(score["max_drawdown"]) == -results[1]
    position = bot.status()["positions"]["BTCUSDT"]
    assert D(position["unrealized_pnl"]) == D(position["quantity"]) * D(50500) - D(position["cost"])
    report = subprocess.run([sys.executable, str(ROOT / "report.py"), str(bot.settings.logs_dir)],
                            capture_output=True, text=True, timeout=30).stdout
    for name, value in score.items():
        assert f"  {name.replace('_', ' ')}: {value}" in report
    assert f"open: BTCUSDT {position['quantity']} at {position['entry_price']}" in report


def test_paper_exit_is_recorded_once_when_alerts_and_the_monitor_race(start_bot, fake) -> None:
    bot = start_bot("paper", fake, monitor_interval_seconds=0.01, cooldown_seconds=0)
    protected_buy(bot, price="50000")
    fake.set_price("BTCUSDT", D("56000"))
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda _: bot.send(symbol="ETHUSDT", action="sell", price="3000"), range(8)))
        list(pool.map(lambda _: bot.send(symbol="BTCUSDT", action="sell", price="56000"), range(8)))
    wait_until(lambda: len(exits(bot)) == 1)
    assert len(exits(bot)) == 1 and exits(bot)[0]["Reason"] == "take_profit"
    assert D(bot.status()["balance"]) == D(1000) + D(exits(bot)[0]["RealizedPnL"]) - bot.tied_up()
