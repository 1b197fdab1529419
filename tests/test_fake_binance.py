"""The fake Binance, driven through python-binance as the bot drives the real one."""
from __future__ import annotations

import hashlib
import hmac
import time
from decimal import Decimal
from typing import Any, Callable, Iterator

import pytest
import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.fake_binance import FakeBinance

D = Decimal


def connect(fake: FakeBinance, key: str | None = None, secret: str | None = None, **kwargs: Any) -> Client:
    """A python-binance client pointed at the fake (key/secret default to the fake's)."""
    client = Client(fake.api_key if key is None else key, secret or fake.api_secret, ping=False, **kwargs)
    client.API_URL = client.API_TESTNET_URL = fake.url
    return client


def api_error(call: Callable[..., Any], **params: Any) -> BinanceAPIException:
    with pytest.raises(BinanceAPIException) as raised:
        call(**params)
    return raised.value


def signed_request(fake: FakeBinance, method: str, path: str, query: str, body: str,
                   signature: str | None = None) -> requests.Response:
    """A hand-made signed request: `signature` defaults to HMAC(query + body) and goes in the body."""
    if signature is None:
        signature = hmac.new(fake.api_secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest()
    return requests.request(method, f"{fake.url}{path}?{query}", data=f"{body}&signature={signature}",
                            headers={"X-MBX-APIKEY": fake.api_key,
                                     "Content-Type": "application/x-www-form-urlencoded"}, timeout=5)


def now_ms() -> int:
    return int(time.time() * 1000)


@pytest.fixture
def client(fake: FakeBinance) -> Client:
    return connect(fake)


def test_server_time_ping_and_unknown_path(fake: FakeBinance, client: Client) -> None:
    assert client.ping() == {}
    assert abs(client.get_server_time()["serverTime"] - now_ms()) < 1000
    fake.clock_offset_ms = 60_000
    assert client.get_server_time()["serverTime"] - now_ms() > 59_000
    assert requests.get(f"{fake.url}/v3/nothing", timeout=5).status_code == 404


def test_a_stopped_fake_answers_and_executes_nothing() -> None:
    fake = FakeBinance().start()
    kept_alive = connect(fake)
    kept_alive.ping()
    fake.stop()
    with pytest.raises(requests.ConnectionError):  # connection lost mid-request
        kept_alive.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100")
    with pytest.raises(requests.ConnectionError):  # refused
        connect(fake).ping()
    assert fake.orders == [] and fake.balance("USDT") == D(10000)


def test_exchange_info_has_binance_filters(client: Client) -> None:
    info = client.get_exchange_info()
    symbols = {s["symbol"]: s for s in info["symbols"]}
    assert {"BTCUSDT", "ETHUSDT", "BNBUSDT", "LUNAUSDT"} <= set(symbols)
    btc = symbols["BTCUSDT"]
    assert (btc["baseAsset"], btc["quoteAsset"], btc["status"]) == ("BTC", "USDT", "TRADING")
    assert (btc["baseAssetPrecision"], btc["quoteAssetPrecision"], btc["quotePrecision"]) == (8, 8, 8)
    filters = {f["filterType"]: f for f in btc["filters"]}
    assert filters["LOT_SIZE"] == {"filterType": "LOT_SIZE", "minQty": "0.00001000",
                                   "maxQty": "9000.00000000", "stepSize": "0.00001000"}
    assert filters["PRICE_FILTER"]["tickSize"] == "0.01000000"
    assert filters["MARKET_LOT_SIZE"]["maxQty"] == "0.00000000"
    assert filters["NOTIONAL"]["minNotional"] == "5.00000000" and filters["NOTIONAL"]["applyMinToMarket"]
    bnb = {f["filterType"]: f for f in symbols["BNBUSDT"]["filters"]}
    assert "NOTIONAL" not in bnb and bnb["MIN_NOTIONAL"]["applyToMarket"] is True
    assert symbols["LUNAUSDT"]["status"] == "BREAK"


def test_exchange_info_for_some_symbols(client: Client) -> None:
    one = client._get("exchangeInfo", data={"symbol": "ETHUSDT"})
    assert [s["symbol"] for s in one["symbols"]] == ["ETHUSDT"]
    two = client._get("exchangeInfo", data={"symbols": '["BTCUSDT","BNBUSDT"]'})
    assert [s["symbol"] for s in two["symbols"]] == ["BTCUSDT", "BNBUSDT"]
    error = api_error(client._get, path="exchangeInfo", data={"symbol": "NOPEUSDT"})
    assert (error.status_code, error.code, error.message) == (400, -1121, "Invalid symbol.")


def test_ticker_price(fake: FakeBinance, client: Client) -> None:
    fake.set_price("ETHUSDT", "3123.45")
    assert client.get_symbol_ticker(symbol="ETHUSDT") == {"symbol": "ETHUSDT", "price": "3123.45000000"}
    assert {"symbol": "BTCUSDT", "price": "50000.00000000"} in client.get_symbol_ticker()


def test_market_buy_by_quote_quantity_moves_exact_balances(fake: FakeBinance, client: Client) -> None:
    order = client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="123.45", newClientOrderId="buy-1")
    # 123.45 / 50000 = 0.002469 -> 0.00246 (rounded down to the step); commission 0.1% in BTC.
    assert order["status"] == "FILLED" and order["type"] == "MARKET" and order["side"] == "BUY"
    assert (order["origQty"], order["executedQty"]) == ("0.00246000", "0.00246000")
    assert (order["cummulativeQuoteQty"], order["origQuoteOrderQty"]) == ("123.00000000", "123.45000000")
    assert (order["price"], order["orderListId"], order["clientOrderId"]) == ("0.00000000", -1, "buy-1")
    assert order["fills"] == [{"price": "50000.00000000", "qty": "0.00246000", "commission": "0.00000246",
                               "commissionAsset": "BTC", "tradeId": 1}]
    assert fake.balance("BTC") == D("0.00245754")
    assert fake.balance("USDT") == D("9877.00")
    assert client.get_asset_balance(asset="BTC") == {"asset": "BTC", "free": "0.00245754", "locked": "0.00000000"}


def test_market_sell_pays_commission_in_quote(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    order = client.order_market_sell(symbol="BTCUSDT", quantity="0.005")
    assert (order["status"], order["executedQty"], order["cummulativeQuoteQty"]) == (
        "FILLED", "0.00500000", "250.00000000")
    assert order["fills"][0]["commission"] == "0.25000000" and order["fills"][0]["commissionAsset"] == "USDT"
    assert fake.balance("BTC") == D("0.005")
    assert fake.balance("USDT") == D("10249.75")


@pytest.mark.parametrize(("side", "amount", "liquidity", "executed", "quote"), [
    ("SELL", {"quantity": "0.01"}, "0.004", "0.00400000", "200.00000000"),
    ("BUY", {"quoteOrderQty": "100"}, "0.001", "0.00100000", "50.00000000"),
    ("BUY", {"quoteOrderQty": "100"}, "0", "0.00000000", "0.00000000"),
])
def test_market_order_in_a_thin_book_fills_what_it_can_and_expires(
        fake: FakeBinance, client: Client, side: str, amount: dict[str, str], liquidity: str, executed: str,
        quote: str) -> None:
    fake.set_balance("BTC", "0.01")
    fake.limit_liquidity("BTCUSDT", liquidity)
    order = client.create_order(symbol="BTCUSDT", side=side, type="MARKET", **amount)
    assert (order["status"], order["expiryReason"]) == ("EXPIRED", "INSUFFICIENT_LIQUIDITY")
    assert (order["executedQty"], order["cummulativeQuoteQty"]) == (executed, quote)
    assert D(order["executedQty"]) < D(order["origQty"])
    assert sum(D(fill["qty"]) for fill in order["fills"]) == D(executed)
    looked_up = client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert (looked_up["status"], looked_up["executedQty"], looked_up["expiryReason"]) == (
        "EXPIRED", executed, "INSUFFICIENT_LIQUIDITY")
    sign = 1 if side == "BUY" else -1
    commission = sum((D(fill["commission"]) for fill in order["fills"]), D(0))
    base_fee, quote_fee = (commission, D(0)) if side == "BUY" else (D(0), commission)
    assert fake.balance("BTC") == D("0.01") + sign * D(executed) - base_fee
    assert fake.balance("USDT") == D(10000) - sign * D(quote) - quote_fee
    assert fake.locked("BTC") == fake.locked("USDT") == 0
    assert client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="10")["status"] == "FILLED"  # times=1


def test_unfilled_ioc_limit_order_expires_with_its_reason(fake: FakeBinance, client: Client) -> None:
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="49000", timeInForce="IOC")
    assert (order["status"], order["expiryReason"], order["executedQty"]) == (
        "EXPIRED", "UNFILLED_IOC_QUANTITY_EXPIRED", "0.00000000")
    ack = client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="49000", timeInForce="FOK",
                                 newOrderRespType="ACK")
    assert "expiryReason" not in ack and "status" not in ack  # CHANGELOG.md 2026-03-09: not in ACK replies
    assert client.get_order(symbol="BTCUSDT", orderId=ack["orderId"])["expiryReason"] == "UNFILLED_FOK_ORDER_EXPIRED"
    assert fake.balance("USDT") == D(10000) and fake.locked("USDT") == 0


def test_commission_in_bnb_while_the_bnb_lasts(fake: FakeBinance, client: Client) -> None:
    fake.pay_fees_in_bnb = True
    fake.set_balance("BTC", "0.02")
    fake.set_balance("BNB", "0.001")
    order = client.order_limit_sell(symbol="BTCUSDT", quantity="0.02", price="51000")
    fake.set_price("BTCUSDT", "51000", volume="0.01")
    fake.set_price("BTCUSDT", "51000")
    fills = client.get_my_trades(symbol="BTCUSDT", orderId=order["orderId"])
    # 0.51 USDT of commission = 0.00085 BNB at 600, less the 25% discount; then the BNB runs short.
    assert [(f["commission"], f["commissionAsset"]) for f in fills] == [
        ("0.00063750", "BNB"), ("0.51000000", "USDT")]
    assert fake.balance("BNB") == D("0.0003625")
    assert fake.balance("USDT") == D(10000) + D(1020) - D("0.51")


def test_commission_rates_are_configurable(fake: FakeBinance, client: Client) -> None:
    fake.pay_fees_in_bnb = True
    fake.commission_rate, fake.bnb_discount = D("0.002"), D("0.75")
    fake.set_balance("BNB", "1")
    order = client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100")
    # 0.000004 BTC of commission = 0.2 USDT at 50000 = 0.00033333 BNB at 600, a quarter of it paid.
    assert (order["fills"][0]["commission"], order["fills"][0]["commissionAsset"]) == ("0.00008333", "BNB")
    assert (fake.balance("BTC"), fake.balance("BNB")) == (D("0.002"), D("0.99991667"))
    assert client.get_account()["commissionRates"]["taker"] == "0.00200000"


INVALID_ORDERS = [
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.000015"},
     -1013, "Filter failure: LOT_SIZE"),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.00001"},
     -1013, "Filter failure: NOTIONAL"),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "4.99"},
     -1013, "Filter failure: NOTIONAL"),
    ({"symbol": "BNBUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001"},
     -1013, "Filter failure: MIN_NOTIONAL"),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "quantity": "0.001",
      "price": "40000.005"}, -1013, "Filter failure: PRICE_FILTER"),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": 0.00001},  # str() gives "1e-05"
     -1100, "Illegal characters found in parameter 'quantity'; legal range is "
            "'^([0-9]{1,20})(\\.[0-9]{1,20})?$'."),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quoteOrderQty": "20000"},
     -2010, "Account has insufficient balance for requested action."),
    ({"symbol": "BTCUSDT", "side": "SELL", "type": "MARKET", "quantity": "0.001"},
     -2010, "Account has insufficient balance for requested action."),
    ({"symbol": "XYZUSDT", "side": "BUY", "type": "MARKET", "quantity": "1"}, -1121, "Invalid symbol."),
    ({"symbol": "LUNAUSDT", "side": "BUY", "type": "MARKET", "quantity": "100"}, -2010, "Market is closed."),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "LIMIT", "timeInForce": "GTC", "price": "40000"},
     -1102, "Mandatory parameter 'quantity' was not sent, was empty/null, or malformed."),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET"},
     -1102, "Param 'quantity' or 'quoteOrderQty' must be sent, but both were empty/null!"),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "price": "50000"},
     -1106, "Parameter 'price' sent when not required."),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "foo": "1"},
     -1104, "Not all sent parameters were read; read '8' parameter(s) but was sent '9'."),
    ({"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET", "quantity": "0.001", "newClientOrderId": "tv.order"},
     -1100, "Illegal characters found in parameter 'newClientOrderId'; legal range is "
            "'^[a-zA-Z0-9-_]{1,36}$'."),
    ({"symbol": "BTCUSDT", "side": "SELL", "type": "LIMIT_MAKER", "quantity": "0.001", "price": "49000"},
     -2010, "Order would immediately match and take."),
    ({"symbol": "BTCUSDT", "side": "SELL", "type": "STOP_LOSS_LIMIT", "timeInForce": "GTC", "quantity": "0.001",
      "price": "50900", "stopPrice": "51000"}, -2010, "Order would trigger immediately."),
]


@pytest.mark.parametrize(("params", "code", "message"), INVALID_ORDERS)
def test_invalid_orders_get_binance_errors(fake: FakeBinance, client: Client, params: dict[str, Any],
                                           code: int, message: str) -> None:
    error = api_error(client.create_order, **params)
    assert (error.status_code, error.code, error.message) == (400, code, message)
    assert fake.orders == [] and fake.balance("USDT") == D(10000)


ETHBTC_ORDERS = [  # ETHBTC at 0.2: LOT_SIZE 0.0001..100, MARKET_LOT_SIZE 0.001..10 step 0.001, maxNotional 1
    ({"type": "MARKET", "quantity": "0.0015"}, "Filter failure: MARKET_LOT_SIZE"),
    ({"type": "MARKET", "quantity": "11"}, "Filter failure: MARKET_LOT_SIZE"),
    ({"type": "MARKET", "quantity": "101"}, "Filter failure: LOT_SIZE"),
    ({"type": "MARKET", "quantity": "6"}, "Filter failure: NOTIONAL"),  # 1.2 BTC, applyMaxToMarket
    ({"type": "MARKET", "quoteOrderQty": "1.2"}, "Filter failure: NOTIONAL"),
    ({"type": "LIMIT", "timeInForce": "GTC", "quantity": "11", "price": "0.1"}, "Filter failure: NOTIONAL"),
]


def test_market_lot_size_and_max_notional(fake: FakeBinance, client: Client) -> None:
    fake.add_symbol("ETHBTC", "ETH", "BTC", step="0.0001", min_qty="0.0001", max_qty="100", tick="0.00001",
                    min_notional="0.0001", market_min_qty="0.001", market_max_qty="10", market_step="0.001",
                    max_notional="1", apply_max_to_market=True)
    fake.set_price("ETHBTC", "0.2")
    fake.set_balance("BTC", "10")
    filters = {f["filterType"]: f for f in client.get_symbol_info("ETHBTC")["filters"]}
    assert filters["MARKET_LOT_SIZE"] == {"filterType": "MARKET_LOT_SIZE", "minQty": "0.00100000",
                                          "maxQty": "10.00000000", "stepSize": "0.00100000"}
    assert (filters["NOTIONAL"]["maxNotional"], filters["NOTIONAL"]["applyMaxToMarket"]) == ("1.00000000", True)
    for params, message in ETHBTC_ORDERS:
        error = api_error(client.create_order, symbol="ETHBTC", side="BUY", **params)
        assert (error.code, error.message) == (-1013, message), params
    # MARKET_LOT_SIZE leaves a LIMIT order alone: 10.5 ETH at 0.09 is 0.945 BTC.
    assert client.order_limit_buy(symbol="ETHBTC", quantity="10.5", price="0.09")["status"] == "NEW"
    assert client.order_market_buy(symbol="ETHBTC", quantity="4")["status"] == "FILLED"
    assert (fake.balance("BTC"), fake.locked("BTC"), fake.balance("ETH")) == (D("8.255"), D("0.945"), D("3.996"))


def test_unknown_orders(fake: FakeBinance, client: Client) -> None:
    error = api_error(client.get_order, symbol="BTCUSDT", origClientOrderId="never-sent")
    assert (error.status_code, error.code, error.message) == (400, -2013, "Order does not exist.")
    error = api_error(client.cancel_order, symbol="BTCUSDT", orderId=12345)
    assert (error.status_code, error.code, error.message) == (400, -2011, "Unknown order sent.")
    filled = client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="10")
    assert api_error(client.cancel_order, symbol="BTCUSDT", orderId=filled["orderId"]).code == -2011


def test_client_order_id_is_unique_among_open_orders_only(fake: FakeBinance, client: Client) -> None:
    client.order_limit_buy(symbol="BTCUSDT", quantity="0.001", price="40000", newClientOrderId="dup-1")
    error = api_error(client.order_limit_buy, symbol="BTCUSDT", quantity="0.001", price="41000",
                      newClientOrderId="dup-1")
    assert (error.code, error.message) == (-2010, "Duplicate order sent.")
    first = client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="10", newClientOrderId="again")
    second = client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="10", newClientOrderId="again")
    looked_up = client.get_order(symbol="BTCUSDT", origClientOrderId="again")
    assert looked_up["orderId"] == second["orderId"] > first["orderId"]


def test_generated_client_order_id(fake: FakeBinance, client: Client) -> None:
    order = client._post("order", True, data={"symbol": "BTCUSDT", "side": "BUY", "type": "MARKET",
                                               "quoteOrderQty": "10"})
    assert len(order["clientOrderId"]) == 22
    assert client.get_order(symbol="BTCUSDT", origClientOrderId=order["clientOrderId"])["status"] == "FILLED"


def test_limit_order_rests_locks_and_fills_when_price_crosses(fake: FakeBinance, client: Client) -> None:
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="49000")
    assert order["status"] == "NEW" and order["fills"] == []
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(9510), D(490))
    assert [o["orderId"] for o in client.get_open_orders(symbol="BTCUSDT")] == [order["orderId"]]
    fake.set_price("BTCUSDT", "49500")
    assert client.get_order(symbol="BTCUSDT", orderId=order["orderId"])["status"] == "NEW"
    fake.set_price("BTCUSDT", "48000")
    filled = client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert (filled["status"], filled["executedQty"], filled["cummulativeQuoteQty"]) == (
        "FILLED", "0.01000000", "490.00000000")
    assert (fake.balance("USDT"), fake.locked("USDT"), fake.balance("BTC")) == (D(9510), D(0), D("0.00999"))
    assert client.get_open_orders() == []


def test_resting_order_fills_in_parts_as_volume_trades(fake: FakeBinance, client: Client) -> None:
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="49000")
    fake.set_price("BTCUSDT", "49000", volume="0.004")
    part = client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert (part["status"], part["executedQty"], part["cummulativeQuoteQty"]) == (
        "PARTIALLY_FILLED", "0.00400000", "196.00000000")
    assert [o["status"] for o in client.get_open_orders(symbol="BTCUSDT")] == ["PARTIALLY_FILLED"]
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(9510), D(294))
    fake.set_price("BTCUSDT", "48900", volume="0")
    assert client.get_order(symbol="BTCUSDT", orderId=order["orderId"])["executedQty"] == "0.00400000"
    fake.set_price("BTCUSDT", "48800")
    filled = client.get_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert (filled["status"], filled["executedQty"], filled["cummulativeQuoteQty"]) == (
        "FILLED", "0.01000000", "490.00000000")
    trades = client.get_my_trades(symbol="BTCUSDT", orderId=order["orderId"])
    assert [t["qty"] for t in trades] == ["0.00400000", "0.00600000"]
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(9510), D(0))
    assert fake.balance("BTC") == D("0.01") - sum(D(t["commission"]) for t in trades)
    assert client.get_open_orders() == []


def test_volume_is_shared_by_the_crossed_orders_oldest_first(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.02")
    first = client.order_limit_sell(symbol="BTCUSDT", quantity="0.01", price="51000")
    second = client.order_limit_sell(symbol="BTCUSDT", quantity="0.01", price="50500")
    fake.set_price("BTCUSDT", "51000", volume="0.015")
    assert [(o["orderId"], o["status"], o["executedQty"]) for o in client.get_open_orders(symbol="BTCUSDT")] == [
        (second["orderId"], "PARTIALLY_FILLED", "0.00500000")]
    assert client.get_order(symbol="BTCUSDT", orderId=first["orderId"])["status"] == "FILLED"
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D("0.005"))


def test_cancel_unlocks(fake: FakeBinance, client: Client) -> None:
    order = client.order_limit_buy(symbol="ETHUSDT", quantity="1", price="2500")
    canceled = client.cancel_order(symbol="ETHUSDT", origClientOrderId=order["clientOrderId"])
    assert (canceled["status"], canceled["origClientOrderId"]) == ("CANCELED", order["clientOrderId"])
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(10000), D(0))
    assert api_error(client.cancel_order, symbol="ETHUSDT", orderId=order["orderId"]).code == -2011


def test_cancel_restrictions(fake: FakeBinance, client: Client) -> None:
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="49000")
    fake.set_price("BTCUSDT", "49000", volume="0.004")
    error = api_error(client.cancel_order, symbol="BTCUSDT", orderId=order["orderId"], cancelRestrictions="ONLY_NEW")
    assert (error.code, error.message) == (-2011, "Order was not canceled due to cancel restrictions.")
    error = api_error(client.cancel_order, symbol="BTCUSDT", orderId=order["orderId"], cancelRestrictions="NEVER")
    assert (error.code, error.message) == (-1145, "Invalid cancelRestrictions")
    canceled = client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"],
                                   cancelRestrictions="ONLY_PARTIALLY_FILLED")
    assert (canceled["status"], canceled["executedQty"]) == ("CANCELED", "0.00400000")
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(10000) - D(196), D(0))


def test_bad_signature(fake: FakeBinance) -> None:
    error = api_error(connect(fake, secret="not-the-secret").get_account)
    assert (error.status_code, error.code, error.message) == (400, -1022, "Signature for this request is not valid.")


def test_signature_covers_query_string_then_body(fake: FakeBinance) -> None:
    query = "symbol=BTCUSDT&side=BUY&type=MARKET"
    body = f"quoteOrderQty=10&recvWindow=5000&timestamp={now_ms()}"
    assert signed_request(fake, "POST", "/v3/order", query, body).status_code == 200
    upper = hmac.new(fake.api_secret.encode(), (query + body).encode(), hashlib.sha256).hexdigest().upper()
    assert signed_request(fake, "POST", "/v3/order", query, body, upper).status_code == 200
    joined_with_ampersand = hmac.new(fake.api_secret.encode(), f"{query}&{body}".encode(),
                                     hashlib.sha256).hexdigest()
    answer = signed_request(fake, "POST", "/v3/order", query, body, joined_with_ampersand)
    assert (answer.status_code, answer.json()["code"]) == (400, -1022)


def test_api_key_missing_or_wrong(fake: FakeBinance) -> None:
    missing = api_error(connect(fake, key="").get_account)
    assert (missing.status_code, missing.code, missing.message) == (401, -2014, "API-key format invalid.")
    wrong = api_error(connect(fake, key="someone-else").get_account)
    assert (wrong.status_code, wrong.code, wrong.message) == (
        401, -2015, "Invalid API-key, IP, or permissions for action.")


@pytest.mark.parametrize("offset_ms", [20_000, -20_000])
def test_clock_skew_gives_1021_until_the_offset_is_applied(fake: FakeBinance, client: Client,
                                                           offset_ms: int) -> None:
    fake.clock_offset_ms = offset_ms
    error = api_error(client.get_account)
    assert (error.status_code, error.code) == (400, -1021)
    client.timestamp_offset = client.get_server_time()["serverTime"] - now_ms()
    assert client.get_account()["canTrade"] is True


def test_inject_503_after_execute_leaves_the_order_in_place(fake: FakeBinance, client: Client) -> None:
    lose_answer(fake, "inject", "POST", "/api/v3/order")
    error = api_error(client.order_market_buy, symbol="BTCUSDT", quoteOrderQty="100", newClientOrderId="lost")
    assert (error.status_code, error.code) == (503, -1007)
    order = client.get_order(symbol="BTCUSDT", origClientOrderId="lost")
    assert (order["status"], order["executedQty"]) == ("FILLED", "0.00200000")
    assert fake.balance("USDT") == D(9900)


def test_inject_before_execute_places_nothing(fake: FakeBinance, client: Client) -> None:
    fake.inject("POST", "/api/v3/order", status=502, msg="<html>Bad Gateway</html>")
    error = api_error(client.order_market_buy, symbol="BTCUSDT", quoteOrderQty="100")
    assert error.status_code == 502 and fake.orders == []


def test_inject_429_passes_retry_after(fake: FakeBinance, client: Client) -> None:
    fake.inject("GET", "/api/v3/account", status=429, code=-1003, headers={"Retry-After": "7"},
                msg="Too much request weight used; current limit is 6000 request weight per 1 MINUTE.")
    error = api_error(client.get_account)
    assert (error.status_code, error.code) == (429, -1003)
    assert error.response.headers["Retry-After"] == "7"
    assert client.get_account()["canTrade"] is True  # times=1: only the next request


@pytest.mark.parametrize("after_execute", [False, True])
def test_hang_is_a_read_timeout(fake: FakeBinance, after_execute: bool) -> None:
    client = connect(fake, requests_params={"timeout": 0.5})
    fake.hang("POST", "/api/v3/order", seconds=5, after_execute=after_execute)
    with pytest.raises(requests.ReadTimeout):
        client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100", newClientOrderId="slow")
    assert len(fake.orders) == int(after_execute)
    assert client.get_account()["canTrade"] is True


@pytest.mark.parametrize("after_execute", [False, True])
def test_drop_is_a_connection_error(fake: FakeBinance, client: Client, after_execute: bool) -> None:
    fake.drop("POST", "/api/v3/order", after_execute=after_execute)
    with pytest.raises(requests.ConnectionError):
        client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100")
    assert fake.count("/api/v3/order", "POST") == 1
    assert [o["status"] for o in fake.orders] == (["FILLED"] if after_execute else [])


def test_execute_late_within_the_recv_window(fake: FakeBinance) -> None:
    client = connect(fake, requests_params={"timeout": 0.2})  # python-binance sends recvWindow=10000
    fake.execute_late("POST", "/api/v3/order", seconds=1)
    sent = time.monotonic()
    with pytest.raises(requests.ReadTimeout):
        client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100", newClientOrderId="late")
    assert api_error(client.get_order, symbol="BTCUSDT", origClientOrderId="late").code == -2013
    assert fake.balance("USDT") == D(10000)
    while fake.orders == []:
        assert time.monotonic() - sent < 5, "never executed"
        time.sleep(0.05)
    assert time.monotonic() - sent >= 1
    assert client.get_order(symbol="BTCUSDT", origClientOrderId="late")["status"] == "FILLED"
    assert fake.balance("USDT") == D(9900)


def test_execute_late_after_the_recv_window_is_dropped(fake: FakeBinance, client: Client) -> None:
    client.REQUEST_RECVWINDOW = 300
    fake.execute_late("POST", "/api/v3/order", seconds=0.6)
    with pytest.raises(requests.ConnectionError):  # held 0.6 s, then closed without a reply
        client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100", newClientOrderId="late")
    assert api_error(client.get_order, symbol="BTCUSDT", origClientOrderId="late").code == -2013
    assert fake.orders == [] and fake.balance("USDT") == D(10000)


def test_order_lookup_delay(fake: FakeBinance, client: Client) -> None:
    fake.order_lookup_delay_s = 0.3
    client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="100", newClientOrderId="fresh")
    assert api_error(client.get_order, symbol="BTCUSDT", origClientOrderId="fresh").code == -2013
    time.sleep(0.35)
    assert client.get_order(symbol="BTCUSDT", origClientOrderId="fresh")["status"] == "FILLED"


def test_latency(fake: FakeBinance, client: Client) -> None:
    fake.latency_ms = 200
    started = time.monotonic()
    client.ping()
    assert time.monotonic() - started >= 0.2


def oco(client: Client, **overrides: Any) -> dict[str, Any]:
    params = {"symbol": "BTCUSDT", "side": "SELL", "quantity": "0.01", "aboveType": "LIMIT_MAKER",
              "abovePrice": "55000", "belowType": "STOP_LOSS_LIMIT", "belowStopPrice": "45000",
              "belowPrice": "44900", "belowTimeInForce": "GTC", "listClientOrderId": "exit-1",
              "aboveClientOrderId": "tp-1", "belowClientOrderId": "sl-1"}
    return client.create_oco_order(**(params | overrides))


def statuses(client: Client) -> tuple[str, str]:
    take_profit = client.get_order(symbol="BTCUSDT", origClientOrderId="tp-1")["status"]
    stop_loss = client.get_order(symbol="BTCUSDT", origClientOrderId="sl-1")["status"]
    return take_profit, stop_loss


def test_oco_take_profit_fills_and_stop_expires(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    reply = oco(client)
    assert (reply["contingencyType"], reply["listStatusType"], reply["listOrderStatus"]) == (
        "OCO", "EXEC_STARTED", "EXECUTING")
    assert [o["clientOrderId"] for o in reply["orders"]] == ["sl-1", "tp-1"]
    assert [r["type"] for r in reply["orderReports"]] == ["STOP_LOSS_LIMIT", "LIMIT_MAKER"]
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D("0.01"))
    assert len(client.get_open_orders(symbol="BTCUSDT")) == 2
    fake.set_price("BTCUSDT", "55000")
    assert statuses(client) == ("FILLED", "EXPIRED")
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D(0))
    assert fake.balance("USDT") == D(10000) + D(550) - D("0.55")
    order_list = client.v3_get_order_list(orderListId=reply["orderListId"])
    assert order_list["listStatusType"] == "ALL_DONE"


def test_oco_stop_loss_triggers_and_fills(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    oco(client)
    fake.set_price("BTCUSDT", "44950")
    assert statuses(client) == ("EXPIRED", "FILLED")
    assert fake.balance("USDT") == D(10000) + D("449.5") - D("0.4495")


def test_oco_stop_loss_below_its_limit_waits(fake: FakeBinance, client: Client) -> None:
    """A price gap under the stop-limit's limit leaves it triggered but unfilled, as on Binance."""
    fake.set_balance("BTC", "0.01")
    reply = oco(client)
    fake.set_price("BTCUSDT", "44000")
    assert statuses(client) == ("EXPIRED", "NEW")
    take_profit = client.get_order(symbol="BTCUSDT", origClientOrderId="tp-1")
    assert take_profit["expiryReason"] == "OCO_TRIGGER"
    stop_loss = client.get_order(symbol="BTCUSDT", origClientOrderId="sl-1")
    assert (stop_loss["isWorking"], stop_loss["executedQty"]) == (True, "0.00000000")
    assert [o["clientOrderId"] for o in client.get_open_orders(symbol="BTCUSDT")] == ["sl-1"]
    assert client.v3_get_order_list(orderListId=reply["orderListId"])["listOrderStatus"] == "EXECUTING"
    assert fake.locked("BTC") == D("0.01")
    fake.set_price("BTCUSDT", "44900")
    assert statuses(client) == ("EXPIRED", "FILLED")
    assert fake.locked("BTC") == D(0)


def test_oco_stop_expires_take_profit_before_it_trades(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    oco(client)
    fake.set_price("BTCUSDT", "44950", volume="0")
    assert statuses(client) == ("EXPIRED", "NEW")
    fake.set_price("BTCUSDT", "44950", volume="0.004")
    stop_loss = client.get_order(symbol="BTCUSDT", origClientOrderId="sl-1")
    assert (stop_loss["status"], stop_loss["executedQty"]) == ("PARTIALLY_FILLED", "0.00400000")
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D("0.006"))
    fake.set_price("BTCUSDT", "44900")
    assert statuses(client) == ("EXPIRED", "FILLED")
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D(0))


def test_oco_take_profit_partly_filled_then_canceled(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    reply = oco(client)
    fake.set_price("BTCUSDT", "55000", volume="0.004")
    take_profit = client.get_order(symbol="BTCUSDT", origClientOrderId="tp-1")
    assert (take_profit["status"], take_profit["executedQty"]) == ("PARTIALLY_FILLED", "0.00400000")
    stop_loss = client.get_order(symbol="BTCUSDT", origClientOrderId="sl-1")
    assert (stop_loss["status"], stop_loss["expiryReason"], stop_loss["executedQty"]) == (
        "EXPIRED", "OCO_TRIGGER", "0.00000000")
    assert [o["clientOrderId"] for o in client.get_open_orders(symbol="BTCUSDT")] == ["tp-1"]
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D("0.006"))
    by_client_id = client.v3_get_order_list(origClientOrderId="exit-1")
    assert by_client_id == client.v3_get_order_list(orderListId=reply["orderListId"])
    assert (by_client_id["listStatusType"], by_client_id["listOrderStatus"]) == ("EXEC_STARTED", "EXECUTING")
    assert [ol["listClientOrderId"] for ol in client.get_open_oco_orders()] == ["exit-1"]
    canceled = client.v3_delete_order_list(symbol="BTCUSDT", listClientOrderId="exit-1")
    reports = {r["origClientOrderId"]: r for r in canceled["orderReports"]}
    assert (reports["tp-1"]["status"], reports["tp-1"]["executedQty"]) == ("CANCELED", "0.00400000")
    assert (reports["sl-1"]["status"], reports["sl-1"]["expiryReason"]) == ("EXPIRED", "OCO_TRIGGER")
    assert canceled["listOrderStatus"] == "ALL_DONE" and client.get_open_oco_orders() == []
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D("0.006"), D(0))
    assert fake.balance("USDT") == D(10000) + D(220) - D("0.22")


def test_order_list_lookup_delay(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    fake.order_lookup_delay_s = 0.3
    reply = oco(client)
    assert api_error(client.v3_get_order_list, orderListId=reply["orderListId"]).code == -2013
    assert client.get_open_oco_orders() == []
    time.sleep(0.35)
    assert client.v3_get_order_list(origClientOrderId="exit-1")["orderListId"] == reply["orderListId"]
    assert len(client.get_open_oco_orders()) == 1


def test_oco_price_relationship_and_cancel(fake: FakeBinance, client: Client) -> None:
    fake.set_balance("BTC", "0.01")
    error = api_error(oco, client=client, abovePrice="49000")
    assert (error.code, error.message) == (-2010, "The relationship of the prices for the orders is not correct.")
    reply = oco(client)
    canceled = client.v3_delete_order_list(symbol="BTCUSDT", orderListId=reply["orderListId"])
    assert [r["status"] for r in canceled["orderReports"]] == ["CANCELED", "CANCELED"]
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D("0.01"), D(0))
    assert client.get_open_orders() == []


LOST_ANSWER_ERRORS = (BinanceAPIException, requests.ConnectionError)


def lose_answer(fake: FakeBinance, how: str, method: str, path: str) -> None:
    """The next `method path` is carried out, then answered 503 -1007 ("inject") or not at all ("drop")."""
    if how == "inject":
        fake.inject(method, path, status=503, code=-1007, after_execute=True,
                    msg="Timeout waiting for response from backend server. Send status unknown; "
                        "execution status unknown.")
    else:
        fake.drop(method, path, after_execute=True)


@pytest.mark.parametrize("how", ["inject", "drop"])
def test_oco_placed_although_its_answer_was_lost(fake: FakeBinance, client: Client, how: str) -> None:
    fake.set_balance("BTC", "0.01")
    lose_answer(fake, how, "POST", "/api/v3/orderList/oco")
    with pytest.raises(LOST_ANSWER_ERRORS):
        oco(client)
    assert client.v3_get_order_list(origClientOrderId="exit-1")["listOrderStatus"] == "EXECUTING"
    assert statuses(client) == ("NEW", "NEW")
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D(0), D("0.01"))


@pytest.mark.parametrize("how", ["inject", "drop"])
def test_order_canceled_although_the_answer_was_lost(fake: FakeBinance, client: Client, how: str) -> None:
    order = client.order_limit_buy(symbol="BTCUSDT", quantity="0.01", price="49000")
    lose_answer(fake, how, "DELETE", "/api/v3/order")
    with pytest.raises(LOST_ANSWER_ERRORS):
        client.cancel_order(symbol="BTCUSDT", orderId=order["orderId"])
    assert client.get_order(symbol="BTCUSDT", orderId=order["orderId"])["status"] == "CANCELED"
    assert (fake.balance("USDT"), fake.locked("USDT")) == (D(10000), D(0))


@pytest.mark.parametrize("how", ["inject", "drop"])
def test_oco_canceled_although_the_answer_was_lost(fake: FakeBinance, client: Client, how: str) -> None:
    fake.set_balance("BTC", "0.01")
    reply = oco(client)
    lose_answer(fake, how, "DELETE", "/api/v3/orderList")
    with pytest.raises(LOST_ANSWER_ERRORS):
        client.v3_delete_order_list(symbol="BTCUSDT", orderListId=reply["orderListId"])
    assert statuses(client) == ("CANCELED", "CANCELED")
    assert client.v3_get_order_list(orderListId=reply["orderListId"])["listOrderStatus"] == "ALL_DONE"
    assert (fake.balance("BTC"), fake.locked("BTC")) == (D("0.01"), D(0))


def test_call_counts(fake: FakeBinance, client: Client) -> None:
    client.ping()
    fake.reset_counts()
    client.get_account()
    client.order_market_buy(symbol="BTCUSDT", quoteOrderQty="10")
    api_error(client.order_market_buy, symbol="BTCUSDT", quoteOrderQty="1")
    assert fake.count() == 3
    assert fake.count("/api/v3/order", "POST") == 2
    assert fake.count(method="GET") == 1
    assert fake.calls == [("GET", "/api/v3/account"), ("POST", "/api/v3/order"), ("POST", "/api/v3/order")]


@pytest.fixture(scope="module")
def shared_fake() -> Iterator[FakeBinance]:
    with FakeBinance() as exchange:
        yield exchange


@settings(max_examples=25, deadline=None)
@given(cents=st.integers(min_value=500, max_value=1_000_000),
       price_cents=st.integers(min_value=1_000_000, max_value=10_000_000))
def test_quote_quantity_buys_round_down_and_balance_exactly(shared_fake: FakeBinance, cents: int,
                                                           price_cents: int) -> None:
    fake, quote, price = shared_fake, D(cents) / 100, D(price_cents) / 100
    fake.set_balance("USDT", "10000")
    fake.set_balance("BTC", "0")
    fake.set_price("BTCUSDT", price)
    order = connect(fake).order_market_buy(symbol="BTCUSDT", quoteOrderQty=format(quote, "f"))
    quantity, spent = D(order["executedQty"]), D(order["cummulativeQuoteQty"])
    assert quantity % D("0.00001") == 0
    assert spent == quantity * price <= quote < (quantity + D("0.00001")) * price
    assert fake.balance("USDT") == D(10000) - spent
    assert fake.balance("BTC") == quantity - D(order["fills"][0]["commission"])
