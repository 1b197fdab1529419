"""Orders as Binance really runs them: other quote assets, partial fills, OCO triggers and gaps, lost answers
on orders, OCOs and cancels, exits in a safe order, late execution, fees in BNB, fresh balances and filters.

Each test drives the bot over HTTP against the fake Binance, whose unkind behaviours follow Binance's docs.
"""
from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from decimal import Decimal

import pytest
from binance.client import Client

import binance_client
import risk
from risk import Proposal, RiskState, max_daily_loss
from signals import Signal
from tests.conftest import wait_until
from tests.fake_binance import FakeBinance
from tests.fake_telegram import FakeTelegram

D = Decimal
PROTECTED = {"stop_loss": "48000", "take_profit": "55000"}
QUIET = {"monitor_interval_seconds": 3600, "cooldown_seconds": 0}
UNAVAILABLE = {"status": 503, "msg": "Service Unavailable"}


def answer_of(response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def monitor(bot) -> None:
    bot.app.state.trader.settler.monitor()


def sells(bot) -> list[dict]:
    return [t for t in bot.trades() if t["Action"] == "SELL" and t["Status"] == "FILLED"]


def executed(fake: FakeBinance, side: str) -> Decimal:
    return sum((D(o["executedQty"]) for o in fake.orders if o["side"] == side), D(0))


def legs(fake: FakeBinance) -> list[dict]:
    return [o for o in fake.orders if o["type"] != "MARKET"]


def assert_pnl_matches_the_balances(bot, fake: FakeBinance, start: Decimal = D(10000)) -> None:
    realized = sum((D(t["RealizedPnL"]) for t in bot.trades() if t["RealizedPnL"]), D(0))
    assert fake.balance("USDT") == start + realized - bot.tied_up()


# ----- 1. only pairs quoted in QUOTE_ASSET ----------------------------------------------------------

@pytest.mark.parametrize("symbol, quote", [("ETHBTC", "BTC"), ("BTCUSDC", "USDC")])
def test_a_pair_quoted_in_another_asset_is_refused_before_any_order(start_bot, fake, symbol, quote) -> None:
    fake.add_symbol(symbol, symbol.removesuffix(quote), quote, step="0.0001", min_qty="0.0001", tick="0.000001",
                    min_notional="0.0001")
    fake.set_price(symbol, "0.05")
    fake.set_balance(quote, "20")
    bot = start_bot("testnet", fake)
    answer = answer_of(bot.send(symbol=symbol))
    assert answer["decision"] == "REJECTED"
    assert answer["reason"].startswith(f"{symbol} is quoted in {quote}: this bot trades only pairs quoted in USDT")
    assert fake.orders == [] and fake.balance(quote) == D(20)


# ----- 2. partial fills ------------------------------------------------------------------------------

def test_a_market_sell_that_expires_part_filled_keeps_the_rest_open_for_the_next_sell(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, trade_amount_usdt=20, max_risk_per_trade=20, **QUIET)
    answer_of(bot.send())
    fake.limit_liquidity("BTCUSDT", "0.0001")
    part = answer_of(bot.send(action="sell"))["trade"]
    assert (part["status"], D(part["quantity"])) == ("FILLED", D("0.0001"))
    assert "partly filled: Binance ended the order EXPIRED" in part["reason"]
    assert D(bot.status()["positions"]["BTCUSDT"]["quantity"]) == D("0.0003996") - D("0.0001")
    rest = answer_of(bot.send(action="sell"))["trade"]
    assert D(rest["quantity"]) == D("0.00029")
    assert [t["ExchangeStatus"] for t in sells(bot)] == ["EXPIRED", "FILLED"]
    assert sum(D(t["Quantity"]) for t in sells(bot)) == executed(fake, "SELL")
    assert bot.status()["positions"] == {}
    assert_pnl_matches_the_balances(bot, fake)


def test_a_market_order_that_expires_with_nothing_executed_is_a_failure_not_a_fill(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    fake.limit_liquidity("BTCUSDT", "0")
    answer = answer_of(bot.send())
    assert answer["trade"]["status"] == "FAILED" and "ended EXPIRED with nothing executed" in answer["reason"]
    status = bot.status()
    assert (status["positions"], status["open_trades"], status["trades_today"]) == ({}, 0, 0)
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"


def test_a_take_profit_filled_in_two_parts_is_booked_twice_and_watched_in_between(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.set_price("BTCUSDT", "55000", volume="0.0001")
    monitor(bot)
    [first] = sells(bot)
    assert (first["Reason"], first["ExchangeStatus"], D(first["Quantity"])) == ("take_profit", "PARTIALLY_FILLED",
                                                                               D("0.0001"))
    position = bot.status()["positions"]["BTCUSDT"]
    assert D(position["quantity"]) == D("0.0000998") and position["protection"] is not None
    fake.set_price("BTCUSDT", "55000")
    monitor(bot)
    assert [(t["Reason"], t["ExchangeStatus"]) for t in sells(bot)] == [("take_profit", "PARTIALLY_FILLED"),
                                                                        ("take_profit", "FILLED")]
    assert sum(D(t["Quantity"]) for t in sells(bot)) == executed(fake, "SELL") == D("0.00019")
    assert bot.status()["positions"] == {}
    assert_pnl_matches_the_balances(bot, fake)


def test_a_take_profit_part_booked_before_a_restart_is_not_booked_again_after_it(start_bot, fake) -> None:
    first = start_bot("testnet", fake, **QUIET)
    answer_of(first.send(**PROTECTED))
    fake.set_price("BTCUSDT", "55000", volume="0.0001")
    monitor(first)
    first.stop()
    second = start_bot("testnet", fake, **QUIET)
    fake.set_price("BTCUSDT", "55000")
    monitor(second)
    assert [D(t["Quantity"]) for t in sells(second)] == [D("0.0001"), D("0.00009")]
    assert second.status()["positions"] == {}
    assert_pnl_matches_the_balances(second, fake)


def test_what_a_leg_executed_before_the_cancel_is_booked_and_the_sell_sells_the_rest(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, trade_amount_usdt=20, max_risk_per_trade=20, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.set_price("BTCUSDT", "55000", volume="0.0001")
    sell = answer_of(bot.send(action="sell"))["trade"]
    assert sell["status"] == "FILLED" and D(sell["quantity"]) == D("0.00029")
    assert [(t["Status"], t["Reason"]) for t in bot.trades()][1:] == [
        ("OPEN", bot.trades()[1]["Reason"]), ("FILLED", "take_profit"),
        ("CANCELED", "protective orders canceled before selling"), ("FILLED", "SELL BTCUSDT filled")]
    assert sum(D(t["Quantity"]) for t in sells(bot)) == executed(fake, "SELL")
    assert_pnl_matches_the_balances(bot, fake)


# ----- 3. OCO semantics --------------------------------------------------------------------------------

def test_a_stop_that_gapped_through_its_limit_stays_watched_until_it_fills(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.set_price("BTCUSDT", "47000")
    monitor(bot)
    assert sorted(o["status"] for o in legs(fake)) == ["EXPIRED", "NEW"]
    position = bot.status()["positions"]["BTCUSDT"]
    assert position["protection"] is not None and position["protection_error"] is None
    assert sells(bot) == [] and bot.status()["unprotected"] == []
    fake.set_price("BTCUSDT", "47800")
    monitor(bot)
    [stop] = sells(bot)
    assert (stop["Reason"], D(stop["Price"])) == ("stop_loss", D("47760"))
    assert bot.status()["positions"] == {}
    assert_pnl_matches_the_balances(bot, fake)


def test_protection_canceled_by_hand_is_reported_once_no_leg_is_open_and_none_executed(start_bot, fake,
                                                                                         caplog) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    direct = Client(fake.api_key, fake.api_secret, ping=False)
    direct.API_URL = direct.API_TESTNET_URL = fake.url
    direct.v3_delete_order_list(symbol="BTCUSDT", orderListId=int(legs(fake)[0]["orderListId"]))
    with caplog.at_level(logging.ERROR):
        monitor(bot)
    status = bot.status()
    assert status["unprotected"] == ["BTCUSDT"]
    assert "canceled outside the bot; the position is NOT protected" in status["positions"]["BTCUSDT"][
        "protection_error"]
    assert "NOT protected" in caplog.text


def test_a_failed_look_up_after_the_protection_is_gone_leaves_no_reservation_behind(start_bot, fake) -> None:
    """The cancel finds nothing open (-2011) and the legs cannot be looked up: the SELL is refused, and the
    next one (Binance healthy again) records the take-profit the exchange made."""
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.set_price("BTCUSDT", "56000")
    fake.inject("GET", "/api/v3/order", status=503, code=-1008, msg="Server is currently overloaded.")
    assert "cannot cancel the protective orders" in answer_of(bot.send(action="sell"))["reason"]
    assert answer_of(bot.send(action="sell"))["reason"] == "already closed on the exchange by its take-profit"
    assert [t["Reason"] for t in sells(bot)] == ["take_profit"] and bot.status()["positions"] == {}


# ----- 4. unclear answers on every call that changes the exchange ------------------------------------

def test_an_oco_whose_answer_was_lost_is_found_by_its_list_id_and_later_canceled_by_it(start_bot, fake) -> None:
    fake.set_balance("BTC", "0.01")
    bot = start_bot("testnet", fake, **QUIET)
    fake.inject("POST", "/api/v3/orderList/oco", after_execute=True, **UNAVAILABLE)
    answer = answer_of(bot.send(**PROTECTED))
    assert "protected by OCO stop-loss 48000" in answer["reason"]
    opened = [t for t in bot.trades() if t["Status"] == "OPEN"]
    assert [t["OrderID"] for t in opened] == [str(legs(fake)[0]["orderListId"])]
    assert answer_of(bot.send(action="sell"))["trade"]["status"] == "FILLED"
    assert sorted(o["status"] for o in legs(fake)) == ["CANCELED", "CANCELED"]
    assert fake.balance("BTC") >= D("0.01") and fake.locked("BTC") == 0


@pytest.mark.parametrize("after_execute, sold", [(True, True), (False, False)])
def test_a_cancel_whose_answer_was_lost_is_checked_before_the_sell_goes_on(start_bot, fake, after_execute,
                                                                             sold) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.inject("DELETE", "/api/v3/orderList", after_execute=after_execute, **UNAVAILABLE)
    answer = answer_of(bot.send(action="sell"))
    if sold:
        assert answer["trade"]["status"] == "FILLED"
        assert sorted(o["status"] for o in legs(fake)) == ["CANCELED", "CANCELED"]
    else:
        assert answer["decision"] == "REJECTED" and "protective orders are still open" in answer["reason"]
        assert sorted(o["status"] for o in legs(fake)) == ["NEW", "NEW"]
        assert bot.status()["positions"]["BTCUSDT"]["protection"] is not None
    assert answer_of(bot.send(action="sell"))["decision"] == ("REJECTED" if sold else "ACCEPTED")


def test_execution_status_unknown_is_looked_up_not_taken_as_a_rejection(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    bot.status()
    fake.inject("POST", "/api/v3/order", status=400, code=-1006, after_execute=True,
                msg="An unexpected response was received from the message bus. Execution status unknown.")
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"
    assert fake.count("/api/v3/order", "POST") == 1


# ----- 5. exits in a safe order ----------------------------------------------------------------------

def test_a_sell_that_cannot_be_sent_does_not_lift_the_protection(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    answer = answer_of(bot.send(action="sell", price="20000"))
    assert answer["decision"] == "REJECTED" and "NOTIONAL" in answer["reason"]
    assert fake.count("/api/v3/orderList", "DELETE") == 0
    assert sorted(o["status"] for o in legs(fake)) == ["NEW", "NEW"]


def test_a_sell_that_fails_after_lifting_the_protection_puts_it_back(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.inject("POST", "/api/v3/order", status=400, code=-2010, msg="This action is disabled on this account.")
    answer = answer_of(bot.send(action="sell"))
    assert answer["trade"]["status"] == "FAILED"
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "OPEN", "CANCELED", "FAILED", "OPEN"]
    assert sorted(o["status"] for o in legs(fake)) == ["CANCELED", "CANCELED", "NEW", "NEW"]
    position = bot.status()["positions"]["BTCUSDT"]
    assert position["protection"].startswith("OCO stop-loss 48000") and position["protection_error"] is None
    assert answer_of(bot.send(action="sell"))["trade"]["status"] == "FILLED"
    assert fake.locked("BTC") == 0


def test_a_position_left_unsold_and_unprotected_is_said_in_status_log_and_telegram(start_bot, fake, caplog) -> None:
    with FakeTelegram() as telegram:
        bot = start_bot("testnet", fake, **QUIET, **telegram.settings())
        answer_of(bot.send(**PROTECTED))
        fake.inject("POST", "/api/v3/order", status=400, code=-2010, msg="This action is disabled on this account.")
        fake.inject("POST", "/api/v3/orderList/oco", status=400, code=-2010,
                    msg="This action is disabled on this account.")
        with caplog.at_level(logging.ERROR):
            answer_of(bot.send(action="sell"))
        assert bot.status()["unprotected"] == ["BTCUSDT"]
        assert "NOT protected" in caplog.text
        wait_until(lambda: any("position NOT protected" in text for text in telegram.texts))


# ----- 6. a protected BUY whose outcome was unclear ----------------------------------------------------

@pytest.mark.parametrize("restart", [False, True])
def test_a_protected_buy_settled_later_gets_its_protection(start_bot, fake, restart) -> None:
    settings = {"reconcile_interval_seconds": 3600 if restart else 0.3, **QUIET}
    bot = start_bot("testnet", fake, **settings)
    bot.status()
    fake.inject("POST", "/api/v3/order", after_execute=True, **UNAVAILABLE)
    fake.inject("GET", "/api/v3/order", **UNAVAILABLE)
    assert answer_of(bot.send(**PROTECTED))["trade"]["status"] == "UNKNOWN"
    if restart:
        bot.stop()
        bot = start_bot("testnet", fake, **settings)
    wait_until(lambda: [t["Status"] for t in bot.trades()][-2:] == ["FILLED", "OPEN"])
    assert sorted(o["type"] for o in legs(fake)) == ["LIMIT_MAKER", "STOP_LOSS_LIMIT"]
    assert bot.status()["positions"]["BTCUSDT"]["protection"].startswith("OCO stop-loss 48000")


# ----- 7. "never placed" only when it is certain -----------------------------------------------------

def test_an_order_executed_late_within_its_recv_window_is_recorded_filled(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, binance_timeout_seconds=1, reconcile_interval_seconds=0.3, **QUIET)
    bot.status()
    fake.execute_late("POST", "/api/v3/order", seconds=4.5)
    assert answer_of(bot.send())["trade"]["status"] in ("PENDING", "UNKNOWN")
    wait_until(lambda: bot.settings.trades_csv.exists() and bot.trades()[-1]["Status"] == "FILLED")
    assert [t["Status"] for t in bot.trades()] == ["UNKNOWN", "FILLED"]
    assert len(fake.orders) == 1 and "BTCUSDT" in bot.status()["positions"]


def test_an_order_briefly_not_found_is_not_declared_failed_too_early(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, reconcile_interval_seconds=0.3, **QUIET)
    bot.status()
    fake.order_lookup_delay_s = 2.8
    fake.inject("POST", "/api/v3/order", after_execute=True, **UNAVAILABLE)
    assert answer_of(bot.send())["trade"]["status"] == "UNKNOWN"
    wait_until(lambda: bot.trades()[-1]["Status"] == "FILLED")
    assert [t["Status"] for t in bot.trades()] == ["UNKNOWN", "FILLED"]


def test_the_recv_window_is_5000_ms_so_an_order_later_than_that_never_executes(start_bot, fake) -> None:
    """python-binance signs with recvWindow 10000 unless told: Binance would then execute this one."""
    bot = start_bot("testnet", fake, binance_timeout_seconds=1, reconcile_interval_seconds=0.5, **QUIET)
    bot.status()
    fake.execute_late("POST", "/api/v3/order", seconds=6)
    assert answer_of(bot.send())["trade"]["status"] in ("PENDING", "UNKNOWN")
    wait_until(lambda: bot.settings.trades_csv.exists() and bot.trades()[-1]["Status"] == "FAILED", seconds=25,
               every=0.3)
    assert "never placed" in bot.trades()[-1]["Reason"]
    assert fake.orders == [] and bot.status()["open_trades"] == 0


def test_an_archived_order_is_settled_as_never_executed_at_once(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, reconcile_interval_seconds=0.3, **QUIET)
    bot.status()
    fake.inject("POST", "/api/v3/order", **UNAVAILABLE)
    assert answer_of(bot.send())["trade"]["status"] == "UNKNOWN"
    fake.inject("GET", "/api/v3/order", status=400, code=-2026,
                msg="Order was canceled or expired with no executed qty over 90 days ago and has been archived.")
    wait_until(lambda: bot.trades()[-1]["Status"] == "FAILED", seconds=4)
    assert "ARCHIVED" in bot.trades()[-1]["Reason"]


# ----- 8. fees in any asset ----------------------------------------------------------------------------

def test_fees_paid_in_bnb_count_in_cost_proceeds_and_realized_pnl(start_bot, fake) -> None:
    fake.pay_fees_in_bnb = True
    fake.set_balance("BNB", "1")
    bot = start_bot("testnet", fake, **QUIET)
    buy = answer_of(bot.send())["trade"]
    assert buy["fee_asset"] == "BNB" and D(buy["quantity"]) == D("0.0002")
    fake.set_price("BTCUSDT", "52000")
    sell = answer_of(bot.send(action="sell"))["trade"]
    bnb_spent = D(1) - fake.balance("BNB")
    expected = fake.balance("USDT") - D(10000) - bnb_spent * D(600)
    assert D(sell["realized_pnl"]) == expected
    rows = bot.trades()
    assert [r["Fees"].split(" ")[1] for r in rows] == ["BNB", "BNB"]
    assert sum(D(r["FeeInQuote"]) for r in rows) == bnb_spent * D(600)
    assert bot.status()["positions"] == {} and bot.status()["dust"] == {}


def test_fees_split_between_bnb_and_the_received_asset_are_all_journalled(start_bot, fake) -> None:
    fake.pay_fees_in_bnb = True
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    fake.set_balance("BNB", "0.00001")
    fake.set_price("BTCUSDT", "55000", volume="0.0001")
    fake.set_price("BTCUSDT", "55000")
    monitor(bot)
    fees = [t["Fees"] for t in sells(bot)]
    assert "BNB" in " ".join(fees) and "USDT" in " ".join(fees)


# ----- 9. fresh enough state and the filters -----------------------------------------------------------

def test_a_deposit_is_usable_at_once_and_a_flood_of_refusals_reads_the_balance_once(start_bot, fake) -> None:
    fake.set_balance("USDT", "5")
    bot = start_bot("testnet", fake, **QUIET)
    bot.status()
    time.sleep(binance_client.BALANCE_REFRESH_SECONDS)
    fake.reset_counts()
    for _ in range(10):
        assert "MIN_BALANCE_USDT" in answer_of(bot.send())["reason"]
    assert fake.count("/api/v3/account") == 1
    fake.set_balance("USDT", "1000")
    time.sleep(binance_client.BALANCE_REFRESH_SECONDS)
    assert answer_of(bot.send())["trade"]["status"] == "FILLED"


def test_the_symbol_list_is_refreshed_by_the_monitor(start_bot, fake, monkeypatch) -> None:
    monkeypatch.setattr(binance_client, "SYMBOLS_MAX_AGE_SECONDS", 0)
    bot = start_bot("testnet", fake, **QUIET)
    assert "does not trade on Binance" in answer_of(bot.send(symbol="SOLUSDT"))["reason"]
    fake.add_symbol("SOLUSDT", "SOL", "USDT", step="0.001", min_qty="0.001")
    fake.set_price("SOLUSDT", "150")
    monitor(bot)
    assert answer_of(bot.send(symbol="SOLUSDT"))["trade"]["status"] == "FILLED"


@pytest.mark.parametrize("symbol, extra, problem", [
    ("DOGEUSDT", {"market_max_qty": "50"}, "above Binance's maximum (maxQty 50)"),
    ("DOGEUSDT", {"max_notional": "8", "apply_max_to_market": True}, "NOTIONAL maxNotional 8"),
])
def test_market_lot_size_and_max_notional_are_checked_before_sending(start_bot, fake, symbol, extra,
                                                                      problem) -> None:
    fake.add_symbol(symbol, "DOGE", "USDT", step="1", min_qty="1", tick="0.00001", **extra)
    fake.set_price(symbol, "0.1")
    bot = start_bot("testnet", fake, **QUIET)
    answer = answer_of(bot.send(symbol=symbol, price="0.1"))
    assert answer["decision"] == "REJECTED" and problem in answer["reason"]
    assert fake.count("/api/v3/order", "POST") == 0


def test_a_protective_leg_below_the_minimum_notional_is_refused_before_sending(start_bot, fake) -> None:
    fake.add_symbol("XRPUSDT", "XRP", "USDT", step="0.1", min_qty="0.1", tick="0.0001", apply_min_to_market=False)
    fake.set_price("XRPUSDT", "1")
    bot = start_bot("testnet", fake, trade_amount_usdt="5.5", **QUIET)
    answer = answer_of(bot.send(symbol="XRPUSDT", stop_loss="0.9", take_profit="1.2"))
    assert answer["trade"]["status"] == "FILLED" and "NOTIONAL 5" in answer["reason"]
    assert "NOT protected" in answer["reason"] and fake.count("/api/v3/orderList/oco") == 0


# ----- 10. signals.csv -----------------------------------------------------------------------------------

def test_signals_csv_keeps_the_stop_loss_and_take_profit_of_the_alert(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send(**PROTECTED))
    [row] = bot.signals()
    assert (row["StopLoss"], row["TakeProfit"]) == ("48000", "55000")


# ----- tests that bite: races and boundaries ---------------------------------------------------------------

def test_parallel_buys_through_a_slow_exchange_never_exceed_max_open_trades(start_bot, fake, monkeypatch) -> None:
    """A rule that takes 20 ms puts a real gap between checking and reserving: only the lock closes it."""
    def slow(proposal, state, limits):
        time.sleep(0.02)
    monkeypatch.setattr(risk, "ENTRY_RULES", [*risk.ENTRY_RULES, slow])
    bot = start_bot("testnet", fake, max_open_trades=3, max_trades_per_day=50, **QUIET)
    bot.status()
    fake.latency_ms = 100
    with ThreadPoolExecutor(max_workers=20) as pool:
        answers = list(pool.map(lambda _: answer_of(bot.send()), range(20)))
    assert sum(a["decision"] == "ACCEPTED" for a in answers) == 3
    assert fake.count("/api/v3/order", "POST") == 3


def test_two_parallel_sells_of_one_position_send_one_order(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, **QUIET)
    answer_of(bot.send())
    fake.latency_ms = 300
    with ThreadPoolExecutor(max_workers=2) as pool:
        answers = list(pool.map(lambda n: answer_of(bot.send(action="sell", alert_id=f"exit-{n}")), range(2)))
    assert sorted(a["decision"] for a in answers) == ["ACCEPTED", "REJECTED"]
    assert fake.count("/api/v3/order", "POST") == 2


def test_a_realized_loss_exactly_at_the_daily_limit_stops_entries(make_settings) -> None:
    now = datetime.now(timezone.utc)
    proposal = Proposal(Signal("BTCUSDT", "BUY", "test", "15", D(80)), D(10), D(1000), now)
    state = RiskState(day=now.date(), realized_today=D("-1.5"))
    refusal = max_daily_loss(proposal, state, make_settings(max_daily_loss_usdt="1.5").risk_limits)
    assert refusal is not None and "MAX_DAILY_LOSS_USDT 1.5" in refusal.reason


def test_a_balance_exactly_at_the_minimum_is_allowed(start_bot) -> None:
    bot = start_bot("paper", paper_balance_usdt=10, min_balance_usdt=10, trade_amount_usdt=5)
    assert answer_of(bot.send(price="50000"))["decision"] == "ACCEPTED"
