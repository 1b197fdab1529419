"""Orders: paper and testnet round trips, exchange filters, exchange faults, and REST call counts."""
from __future__ import annotations

from decimal import Decimal

import pytest

D = Decimal


def filled(answer) -> dict:
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["decision"] == "ACCEPTED", result
    assert result["trade"]["status"] == "FILLED", result
    return result["trade"]


def test_paper_round_trip_without_network(start_bot) -> None:
    bot = start_bot("paper", paper_balance_usdt=1000)
    buy = filled(bot.send(price="50000"))
    assert D(buy["price"]) == D("50025")
    assert D(buy["quantity"]) == D("0.0001999")
    assert (D(buy["fee"]), buy["fee_asset"]) == (D("0.0000002"), "BTC")
    sell = filled(bot.send(action="sell", price="51000"))
    assert D(sell["quantity"]) == D("0.0001997")
    assert D(sell["price"]) == D("50974.5")
    cost, proceeds = D(buy["amount_usdt"]), D(sell["amount_usdt"]) - D(sell["fee"])
    assert D(sell["realized_pnl"]) == proceeds - cost
    assert D(bot.status()["balance"]) == D(1000) - cost + proceeds
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "FILLED"]


def test_paper_mode_goes_on_offline_when_binance_blocks_the_region(start_bot, fake) -> None:
    fake.inject("GET", "/api/v3/exchangeInfo", status=451, msg="Service unavailable from a restricted location",
                times=5)
    trade = filled(start_bot("paper", fake).send(price="50000"))
    assert D(trade["price"]) == D("50025")


def test_paper_buy_without_price_and_without_network_is_rejected(start_bot) -> None:
    answer = start_bot("paper").send().json()
    assert answer["decision"] == "REJECTED"
    assert answer["reason"].startswith("no price for BTCUSDT")


def test_paper_uses_the_public_ticker_when_the_signal_has_no_price(start_bot, fake) -> None:
    fake.set_price("ETHUSDT", D("2000"))
    trade = filled(start_bot("paper", fake).send(symbol="ETHUSDT"))
    assert D(trade["price"]) == D("2001")
    assert fake.count("/api/v3/order") == 0


def test_testnet_round_trip_matches_the_exchange(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    buy = filled(bot.send(price="49000"))
    [order] = fake.orders
    assert (order["side"], order["type"], D(order["origQuoteOrderQty"])) == ("BUY", "MARKET", D(10))
    assert buy["order_id"] == str(order["orderId"]) and buy["client_order_id"] == order["clientOrderId"]
    assert D(buy["quantity"]) == D("0.0002") and D(buy["price"]) == D("50000")
    held = fake.balance("BTC")
    assert held == D("0.0002") - D(buy["fee"])
    fake.set_price("BTCUSDT", D("52000"))
    sell = filled(bot.send(action="sell"))
    sold = D(sell["quantity"])
    assert sold == D("0.00019") and sold <= held
    assert fake.balance("BTC") == held - sold
    proceeds = D(sell["amount_usdt"]) - D(sell["fee"])
    assert fake.balance("USDT") == D(10000) - D(buy["amount_usdt"]) + proceeds
    dust = bot.status()["dust"]["BTCUSDT"]
    assert D(dust["quantity"]) == held - sold
    assert D(dust["cost"]) == (D(buy["amount_usdt"]) * (held - sold) / held).quantize(D("0.00000001"))
    assert D(sell["realized_pnl"]) == proceeds - (D(buy["amount_usdt"]) - D(dust["cost"]))
    assert fake.balance("USDT") == D(10000) + D(sell["realized_pnl"]) - bot.tied_up()
    rows = bot.trades()
    assert [r["OrderID"] for r in rows] == [str(o["orderId"]) for o in fake.orders]
    assert D(bot.status()["balance"]) == fake.balance("USDT")


@pytest.mark.parametrize("symbol, amount", [("BTCUSDT", "4.99"), ("BNBUSDT", "4")])
def test_buy_below_minimum_notional_is_rejected_before_sending(start_bot, fake, symbol, amount) -> None:
    bot = start_bot("testnet", fake)
    answer = bot.send(symbol=symbol, amount_usdt=amount).json()
    assert answer["decision"] == "REJECTED"
    assert "below Binance's minimum order (NOTIONAL 5)" in answer["reason"]
    assert fake.count("/api/v3/order") == 0
    assert bot.status()["open_trades"] == 0


@pytest.mark.parametrize("known_price", ["alert", "monitor"])
def test_sell_below_minimum_notional_is_rejected_and_the_position_stays(start_bot, fake, known_price) -> None:
    bot = start_bot("testnet", fake, trade_amount_usdt=6, cooldown_seconds=0)
    filled(bot.send())
    fake.set_price("BTCUSDT", D("25000"))
    if known_price == "monitor":
        bot.app.state.trader.settler.monitor()
    answer = bot.send(action="sell", price="25000" if known_price == "alert" else None).json()
    assert answer["decision"] == "REJECTED" and "NOTIONAL 5" in answer["reason"]
    assert fake.count("/api/v3/order", "POST") == 1
    assert "BTCUSDT" in bot.status()["positions"]


def test_sell_refused_by_binance_at_a_price_the_bot_did_not_know_is_journalled_then_the_price_is_read_again(
        start_bot, fake) -> None:
    bot = start_bot("testnet", fake, trade_amount_usdt=6, cooldown_seconds=0)
    filled(bot.send())
    fake.set_price("BTCUSDT", D("25000"))
    failed = bot.send(action="sell").json()
    assert failed["trade"]["status"] == "FAILED" and "-1013 Filter failure: NOTIONAL" in failed["reason"]
    refused = bot.send(action="sell").json()
    assert refused["decision"] == "REJECTED" and "NOTIONAL 5" in refused["reason"]
    assert fake.count("/api/v3/order", "POST") == 2
    assert [t["Status"] for t in bot.trades()] == ["FILLED", "FAILED"]
    assert "BTCUSDT" in bot.status()["positions"]


def test_sell_quantity_is_rounded_down_to_the_step_and_capped_by_the_balance_binance_reports(start_bot, fake) -> None:
    """The balance is cached and kept current by fills; a change made outside the bot is seen when Binance
    refuses the SELL, and the next SELL sells what is really held."""
    bot = start_bot("testnet", fake, trade_amount_usdt=10, cooldown_seconds=0)
    filled(bot.send(symbol="ETHUSDT"))
    fake.set_balance("ETH", D("0.0021"))
    refused = bot.send(symbol="ETHUSDT", action="sell").json()
    assert refused["trade"]["status"] == "FAILED" and "-2010" in refused["reason"]
    sell = filled(bot.send(symbol="ETHUSDT", action="sell"))
    assert D(sell["quantity"]) == D("0.0021")
    assert fake.orders[-1]["origQty"].rstrip("0").rstrip(".") == "0.0021"


def test_rejection_by_the_exchange_is_a_failed_trade_with_code_and_message(start_bot, fake) -> None:
    fake.set_balance("USDT", D("8"))
    bot = start_bot("testnet", fake, min_balance_usdt=5)
    answer = bot.send().json()
    assert answer["decision"] == "ACCEPTED"
    assert answer["trade"]["status"] == "FAILED"
    assert "-2010 Account has insufficient balance for requested action." in answer["reason"]
    [row] = bot.trades()
    assert row["Status"] == "FAILED" and "-2010" in row["Reason"]
    assert bot.http.get("/health").status_code == 200


def test_rate_limit_fails_the_trade_and_the_bot_waits_before_calling_again(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    bot.status()
    fake.inject("POST", "/api/v3/order", status=429, code=-1003, msg="Too much request weight used.",
                headers={"Retry-After": "30"})
    first = bot.send().json()
    assert first["trade"]["status"] == "FAILED" and "rate limited (429): retry after 30s" in first["reason"]
    calls = fake.count()
    second = bot.send().json()
    assert second["trade"]["status"] == "FAILED" and "waiting" in second["reason"]
    assert fake.count() == calls


def test_unclear_answer_is_resolved_by_looking_the_order_up(start_bot, fake) -> None:
    bot = start_bot("testnet", fake)
    bot.status()
    fake.inject("POST", "/api/v3/order", status=503, msg="Service Unavailable", after_execute=True)
    trade = filled(bot.send())
    assert len(fake.orders) == 1 and trade["order_id"] == str(fake.orders[0]["orderId"])
    assert fake.count("/api/v3/order", "POST") == 1
    assert fake.count("/api/v3/order", "GET") >= 1


def test_exchange_down_rejects_signals_with_the_reason(start_bot) -> None:
    bot = start_bot("testnet")
    assert bot.http.get("/health").status_code == 200
    answer = bot.send().json()
    assert answer["decision"] == "REJECTED"
    assert answer["reason"] == "cannot check the symbol with Binance: Binance is unreachable (could not connect)"


def test_exchange_gone_mid_order_is_unknown_and_keeps_the_slot(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, max_open_trades=2)
    filled(bot.send(symbol="ETHUSDT"))
    fake.stop()
    answer = bot.send().json()
    assert answer["trade"]["status"] == "UNKNOWN"
    assert answer["reason"].startswith("order outcome unknown: Binance connection lost: it may or may not have been "
                                       "carried out; cannot look up order")
    assert bot.status()["open_trades"] == 2
    assert bot.trades()[-1]["Status"] == "UNKNOWN"


def test_steady_state_buy_and_sell_cost_one_rest_call_each(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, monitor_interval_seconds=3600)
    filled(bot.send())
    fake.reset_counts()
    filled(bot.send(symbol="ETHUSDT"))
    assert fake.calls == [("POST", "/api/v3/order")]
    fake.reset_counts()
    filled(bot.send(symbol="ETHUSDT", action="sell"))
    assert fake.calls == [("POST", "/api/v3/order")]


def test_a_protected_buy_costs_two_calls_and_its_sell_two(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, monitor_interval_seconds=3600)
    filled(bot.send(symbol="ETHUSDT"))
    filled(bot.send(symbol="BTCUSDT"))
    filled(bot.send(symbol="BTCUSDT", action="sell"))
    fake.reset_counts()
    filled(bot.send(stop_loss="48000", take_profit="55000"))
    assert fake.calls == [("POST", "/api/v3/order"), ("POST", "/api/v3/orderList/oco")]
    fake.reset_counts()
    filled(bot.send(action="sell"))
    assert fake.calls == [("DELETE", "/api/v3/orderList"), ("POST", "/api/v3/order")]
    fake.reset_counts()
    filled(bot.send(symbol="ETHUSDT", action="sell"))
    assert fake.calls == [("POST", "/api/v3/order")]


def test_dust_left_by_a_sale_is_sold_with_the_next_position(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    filled(bot.send())
    filled(bot.send(action="sell"))
    dust = D(bot.status()["dust"]["BTCUSDT"]["quantity"])
    assert dust == fake.balance("BTC") > 0
    filled(bot.send())
    status = bot.status()
    assert status["dust"] == {}
    assert D(status["positions"]["BTCUSDT"]["quantity"]) == fake.balance("BTC")
    sell = filled(bot.send(action="sell"))
    assert D(sell["quantity"]) == D("0.0002")
    assert D(bot.status()["dust"]["BTCUSDT"]["quantity"]) == fake.balance("BTC") == D("0.0000096")
    assert fake.balance("USDT") == D(10000) + sum(D(t["RealizedPnL"]) for t in bot.trades() if t["RealizedPnL"]) \
        - bot.tied_up()
