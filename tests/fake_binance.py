"""A fake Binance spot REST API on 127.0.0.1, for driving python-binance in tests.

    with FakeBinance() as fake:
        client = Client(fake.api_key, fake.api_secret, ping=False)
        client.API_URL = client.API_TESTNET_URL = fake.url

It checks API keys, timestamps and HMAC signatures the way Binance does, validates orders
against the symbol filters with Binance's error codes and messages, fills MARKET orders at the
price given to `set_price`, fills resting orders when a later `set_price` crosses them, and
moves balances exactly (Decimal, `commission_rate` 0.1% of what you receive). Faults (`inject`,
`hang`, `drop`), latency and clock skew can be provoked; with `after_execute=True` a fault hits
the answer of a request already carried out, on any endpoint (an order, an OCO, a cancel): 5xx and
-1007 mean "execution status unknown" (rest-api.md "HTTP Return Codes"). Any other Binance error,
e.g. -2026 ORDER_ARCHIVED on a look-up, is an `inject`.

Knobs for Binance's less friendly behaviour (each follows the Binance document named beside it
in the code; by default the book is deep enough for every order):

- `limit_liquidity(symbol, quantity, times=1)`: the next MARKET order(s) find at most `quantity`
  base in the book; the rest expires (status EXPIRED, expiryReason INSUFFICIENT_LIQUIDITY).
- `set_price(symbol, price, volume=None)`: with `volume`, the resting orders the price crosses
  trade at most that much base in all, oldest first; one left short stays PARTIALLY_FILLED (open,
  its hold reduced) until a later `set_price` fills it.
- `execute_late(method, path, seconds=...)`: the request gets no answer and is carried out
  `seconds` later if its recvWindow still allows it (rest-api.md "Timing security"), else never;
  until then a look-up does not find it.
- `pay_fees_in_bnb = True` (and `bnb_discount`, default 0.25): each fill's commission is paid in BNB,
  valued at the BNB<quote> price and discounted, while the free BNB suffices; otherwise from what
  is received (faqs/commission_faq.md). One order can so have fees in two assets.
- `add_symbol(..., market_min_qty, market_max_qty, market_step, max_notional, apply_max_to_market)`:
  MARKET_LOT_SIZE (all 0 by default: a 0 disables its rule) and NOTIONAL's maximum,
  enforced as filters.md says (-1013 "Filter failure: ..."). The default markets are all quoted
  in USDT; a test that wants another quote asset adds one, e.g. add_symbol("ETHBTC", "ETH", "BTC").
- `order_lookup_delay_s`: GET /api/v3/order and /api/v3/orderList answer -2013, and
  /api/v3/openOrderList leaves out, an order (list) younger than this.

OCO legs follow CHANGELOG.md's "Execution Order": a take-profit that trades (even partly) makes
the stop leg EXPIRED (expiryReason OCO_TRIGGER); a triggered stop makes the take-profit EXPIRED
before it trades, and rests unfilled (NEW, isWorking) while the price is beyond its limit.

Every EXPIRED order carries Binance's `expiryReason` in its RESULT/FULL reply and its look-ups.

Simplifications: one last price per symbol and no order book, no rate limiting, and OCO only as
SELL with LIMIT_MAKER above and STOP_LOSS_LIMIT below.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import re
import secrets
import string
import threading
import time
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qsl, urlsplit

from tests.loopback import serve_in_background, shut_down

Number = Decimal | str | int | float
Json = dict[str, Any]

COMMISSION_RATE = Decimal("0.001")
BNB_DISCOUNT = Decimal("0.25")
DEFAULT_RECV_WINDOW = 5000
MAX_RECV_WINDOW = 60000
MAX_PRICE = Decimal("1000000")
MAX_NOTIONAL = Decimal("9000000")
ZERO = Decimal(0)
_EIGHT_PLACES = Decimal("0.00000001")

DECIMAL_PATTERN = r"^([0-9]{1,20})(\.[0-9]{1,20})?$"
INTEGER_PATTERN = r"^[0-9]{1,20}$"
SYMBOL_PATTERN = r"^[A-Z0-9-_.]{1,20}$"
CLIENT_ID_PATTERN = r"^[a-zA-Z0-9-_]{1,36}$"
SYMBOLS_PATTERN = r'^\[("[A-Z0-9-_.]{1,20}"(,"[A-Z0-9-_.]{1,20}"){0,}){0,1}\]$'

SIDES = ("BUY", "SELL")
TIME_IN_FORCE = ("GTC", "IOC", "FOK")
RESPONSE_TYPES = ("ACK", "RESULT", "FULL")
ORDER_TYPES = ("LIMIT", "LIMIT_MAKER", "MARKET", "STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT",
               "TAKE_PROFIT_LIMIT")
OCO_ABOVE_TYPES = ("STOP_LOSS_LIMIT", "STOP_LOSS", "LIMIT_MAKER", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
OCO_BELOW_TYPES = ("STOP_LOSS", "STOP_LOSS_LIMIT", "TAKE_PROFIT", "TAKE_PROFIT_LIMIT")
STP_MODE = "EXPIRE_MAKER"
OPEN_STATUSES = ("NEW", "PARTIALLY_FILLED")
CANCEL_RESTRICTIONS = {"ONLY_NEW": "NEW", "ONLY_PARTIALLY_FILLED": "PARTIALLY_FILLED"}
# enums.md "Expiry Reasons"; rest-api.md "Conditional fields in Order Responses": `expiryReason`
# appears "When an order has expired".
INSUFFICIENT_LIQUIDITY = "INSUFFICIENT_LIQUIDITY"
OCO_TRIGGER = "OCO_TRIGGER"
UNFILLED_EXPIRY = {"IOC": "UNFILLED_IOC_QUANTITY_EXPIRED", "FOK": "UNFILLED_FOK_ORDER_EXPIRED"}

# Per order type: (mandatory parameters, parameters Binance refuses with -1106).
ORDER_TYPE_RULES: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "MARKET": ((), ("price", "stopPrice")),
    "LIMIT": (("timeInForce", "quantity", "price"), ("quoteOrderQty", "stopPrice")),
    "LIMIT_MAKER": (("quantity", "price"), ("quoteOrderQty", "stopPrice")),
    "STOP_LOSS_LIMIT": (("timeInForce", "quantity", "price", "stopPrice"), ("quoteOrderQty",)),
}
ORDER_PARAMS = {"symbol", "side", "type", "timeInForce", "quantity", "quoteOrderQty", "price",
                "newClientOrderId", "strategyId", "strategyType", "stopPrice", "trailingDelta",
                "icebergQty", "newOrderRespType", "selfTradePreventionMode"}
OCO_PARAMS = {"symbol", "listClientOrderId", "side", "quantity", "aboveType", "aboveClientOrderId",
              "abovePrice", "aboveStopPrice", "aboveTrailingDelta", "aboveTimeInForce",
              "aboveIcebergQty", "aboveStrategyId", "aboveStrategyType", "belowType",
              "belowClientOrderId", "belowPrice", "belowStopPrice", "belowTrailingDelta",
              "belowTimeInForce", "belowIcebergQty", "belowStrategyId", "belowStrategyType",
              "newOrderRespType", "selfTradePreventionMode"}
SIGNATURE_PARAMS = {"timestamp", "recvWindow", "signature"}

INSUFFICIENT_BALANCE = "Account has insufficient balance for requested action."


class ApiError(Exception):
    """A Binance error reply: an HTTP status and a {"code", "msg"} body."""

    def __init__(self, status: int, code: int, msg: str) -> None:
        super().__init__(msg)
        self.status, self.code, self.msg = status, code, msg


def bad_request(code: int, msg: str) -> ApiError:
    return ApiError(400, code, msg)


def mandatory(name: str) -> ApiError:
    return bad_request(-1102, f"Mandatory parameter '{name}' was not sent, was empty/null, or malformed.")


def illegal(name: str, pattern: str) -> ApiError:
    return bad_request(-1100, f"Illegal characters found in parameter '{name}'; legal range is '{pattern}'.")


def filter_failure(name: str) -> ApiError:
    return bad_request(-1013, f"Filter failure: {name}")


def rejected(msg: str) -> ApiError:
    return bad_request(-2010, msg)


def unknown_order() -> ApiError:
    return bad_request(-2011, "Unknown order sent.")


def unsupported(what: str) -> ApiError:
    """A valid Binance request this fake does not implement: loud, never mistaken for Binance."""
    return bad_request(-1000, f"fake_binance does not support {what}.")


def to_decimal(value: Number) -> Decimal:
    """Decimal from Decimal, str or int; a float goes through repr, so 0.1 stays 0.1."""
    return Decimal(repr(value)) if isinstance(value, float) else Decimal(value)


def commission_amount(value: Decimal) -> Decimal:
    """A commission to 8 places (the docs give no rounding rule; half up here)."""
    return value.quantize(_EIGHT_PLACES, ROUND_HALF_UP)


def fmt(value: Decimal) -> str:
    """Binance's decimal strings: 8 places, plain notation ("0.00020000")."""
    return format(value.quantize(_EIGHT_PLACES), "f")


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def random_client_id() -> str:
    alphabet = string.ascii_letters + string.digits
    return "".join(secrets.choice(alphabet) for _ in range(22))


def marketable(side: str, limit: Decimal, last: Decimal) -> bool:
    """Whether a limit order would trade at the last price."""
    return last <= limit if side == "BUY" else last >= limit


def stop_reached(side: str, stop: Decimal, last: Decimal) -> bool:
    return last >= stop if side == "BUY" else last <= stop


def without_signature(raw: str) -> str:
    return "&".join(part for part in raw.split("&") if not part.startswith("signature="))


class Params:
    """A request's parameters with Binance's parameter checks.

    Query string and body are merged; a name sent in both takes the query string's value
    (as Binance documents), a name repeated within one of them is -1101.
    """

    def __init__(self, query: str, body: str) -> None:
        body_values = self._parse(body)
        self._values = body_values | self._parse(query)

    @staticmethod
    def _parse(raw: str) -> dict[str, str]:
        values: dict[str, str] = {}
        for name, value in parse_qsl(raw, keep_blank_values=True):
            if name in values:
                raise bad_request(-1101, "Duplicate values for a parameter detected.")
            values[name] = value
        return values

    def allow(self, names: set[str]) -> None:
        """Binance refuses parameters an endpoint does not read (-1104)."""
        unread = set(self._values) - names - SIGNATURE_PARAMS
        if unread:
            sent = len(self._values)
            raise bad_request(-1104, f"Not all sent parameters were read; read '{sent - len(unread)}' "
                                     f"parameter(s) but was sent '{sent}'.")

    def has(self, name: str) -> bool:
        return self._values.get(name, "") != ""

    def text(self, name: str, *, required: bool = False, pattern: str | None = None) -> str | None:
        if not self.has(name):
            if required:
                raise mandatory(name)
            return None
        value = self._values[name]
        if pattern and not re.fullmatch(pattern, value):
            raise illegal(name, pattern)
        return value

    def decimal(self, name: str, *, required: bool = False) -> Decimal | None:
        value = self.text(name, required=required, pattern=DECIMAL_PATTERN)
        return None if value is None else Decimal(value)

    def integer(self, name: str, *, required: bool = False) -> int | None:
        value = self.text(name, required=required, pattern=INTEGER_PATTERN)
        return None if value is None else int(value)

    def choice(self, name: str, options: Iterable[str], error: ApiError, *,
               required: bool = True) -> str | None:
        value = self.text(name, required=required)
        if value is not None and value not in options:
            raise error
        return value

    def forbid(self, names: Iterable[str]) -> None:
        for name in names:
            if self.has(name):
                raise bad_request(-1106, f"Parameter '{name}' sent when not required.")

    def one_of(self, first: str, second: str) -> None:
        if not self.has(first) and not self.has(second):
            raise bad_request(-1102, f"Param '{first}' or '{second}' must be sent, but both were empty/null!")


@dataclass(frozen=True)
class Lot:
    """A LOT_SIZE or MARKET_LOT_SIZE filter (filters.md): quantity >= minQty, quantity <= maxQty,
    quantity % stepSize == 0."""

    min_qty: Decimal
    max_qty: Decimal
    step: Decimal

    def allows(self, quantity: Decimal) -> bool:
        """A 0 disables its rule. filters.md says so of PRICE_FILTER only; for MARKET_LOT_SIZE it is
        silent, but live symbols publish a stepSize of 0 there, which no quantity is a multiple of."""
        return (quantity >= self.min_qty and (not self.max_qty or quantity <= self.max_qty)
                and (not self.step or quantity % self.step == 0))

    def json(self, filter_type: str) -> Json:
        return {"filterType": filter_type, "minQty": fmt(self.min_qty), "maxQty": fmt(self.max_qty),
                "stepSize": fmt(self.step)}


@dataclass
class Symbol:
    name: str
    base: str
    quote: str
    lot: Lot
    market_lot: Lot
    tick: Decimal
    min_notional: Decimal
    max_notional: Decimal
    apply_max_to_market: bool
    legacy_min_notional: bool
    apply_min_to_market: bool
    status: str
    price: Decimal | None = None

    def check_price(self, price: Decimal) -> None:
        if price < self.tick or price > MAX_PRICE or (price - self.tick) % self.tick:
            raise filter_failure("PRICE_FILTER")

    def check_quantity(self, quantity: Decimal, *, market: bool) -> None:
        if not self.lot.allows(quantity):
            raise filter_failure("LOT_SIZE")
        # filters.md: MARKET_LOT_SIZE "defines the quantity ... rules for MARKET orders".
        if market and not self.market_lot.allows(quantity):
            raise filter_failure("MARKET_LOT_SIZE")

    def check_notional(self, notional: Decimal, *, market: bool) -> None:
        """filters.md: NOTIONAL's `applyMinToMarket` and `applyMaxToMarket` say whether MARKET orders
        are held to minNotional and maxNotional (other orders always are); MIN_NOTIONAL's
        `applyToMarket` is always true here."""
        if self.legacy_min_notional:
            if notional < self.min_notional:
                raise filter_failure("MIN_NOTIONAL")
        elif (notional < self.min_notional and (not market or self.apply_min_to_market)) or (
                notional > self.max_notional and (not market or self.apply_max_to_market)):
            raise filter_failure("NOTIONAL")

    def floor_to_step(self, quantity: Decimal) -> Decimal:
        return (quantity / self.lot.step).to_integral_value(ROUND_DOWN) * self.lot.step

    def info(self) -> Json:
        return {
            "symbol": self.name, "status": self.status,
            "baseAsset": self.base, "baseAssetPrecision": 8,
            "quoteAsset": self.quote, "quotePrecision": 8, "quoteAssetPrecision": 8,
            "baseCommissionPrecision": 8, "quoteCommissionPrecision": 8,
            "orderTypes": list(ORDER_TYPES),
            "icebergAllowed": True, "ocoAllowed": True, "otoAllowed": True,
            "quoteOrderQtyMarketAllowed": True, "allowTrailingStop": True, "cancelReplaceAllowed": True,
            "isSpotTradingAllowed": True, "isMarginTradingAllowed": False,
            "filters": self._filters(),
            "permissions": [], "permissionSets": [["SPOT"]],
            "defaultSelfTradePreventionMode": STP_MODE,
            "allowedSelfTradePreventionModes": ["EXPIRE_TAKER", "EXPIRE_MAKER", "EXPIRE_BOTH"],
        }

    def _filters(self) -> list[Json]:
        if self.legacy_min_notional:
            notional: Json = {"filterType": "MIN_NOTIONAL", "minNotional": fmt(self.min_notional),
                              "applyToMarket": True, "avgPriceMins": 5}
        else:
            notional = {"filterType": "NOTIONAL", "minNotional": fmt(self.min_notional),
                        "applyMinToMarket": self.apply_min_to_market, "maxNotional": fmt(self.max_notional),
                        "applyMaxToMarket": self.apply_max_to_market, "avgPriceMins": 5}
        return [
            {"filterType": "PRICE_FILTER", "minPrice": fmt(self.tick), "maxPrice": fmt(MAX_PRICE),
             "tickSize": fmt(self.tick)},
            self.lot.json("LOT_SIZE"),
            {"filterType": "ICEBERG_PARTS", "limit": 10},
            self.market_lot.json("MARKET_LOT_SIZE"),
            notional,
            {"filterType": "MAX_NUM_ORDERS", "maxNumOrders": 200},
            {"filterType": "MAX_NUM_ALGO_ORDERS", "maxNumAlgoOrders": 5},
        ]


@dataclass
class Balance:
    free: Decimal = ZERO
    locked: Decimal = ZERO


class Volume:
    """The base quantity the book offers to one match; None is unlimited (the fake's default)."""

    def __init__(self, amount: Decimal | None = None) -> None:
        self.left = amount

    def covers(self, wanted: Decimal) -> bool:
        return self.left is None or self.left >= wanted

    def take(self, wanted: Decimal) -> Decimal:
        """As much of `wanted` as is left, and use it up."""
        if self.left is None:
            return wanted
        got = min(wanted, self.left)
        self.left -= got
        return got


@dataclass
class Hold:
    """Funds locked for resting orders; the two legs of an OCO share one."""

    asset: str
    amount: Decimal


@dataclass
class OrderRequest:
    """A validated new order."""

    symbol: Symbol
    side: str
    type: str
    quantity: Decimal
    price: Decimal = ZERO
    stop_price: Decimal = ZERO
    quote_quantity: Decimal | None = None
    time_in_force: str = "GTC"
    client_id: str | None = None
    response_type: str = "FULL"


@dataclass
class Order:
    symbol: str
    order_id: int
    client_id: str
    side: str
    type: str
    time_in_force: str
    quantity: Decimal
    price: Decimal
    stop_price: Decimal
    quote_quantity: Decimal
    time: int
    working_time: int
    created: float = field(default_factory=time.monotonic)
    list_id: int = -1
    status: str = "NEW"
    executed: Decimal = ZERO
    cumulative_quote: Decimal = ZERO
    update_time: int = 0
    hold: Hold | None = None
    fills: list[Json] = field(default_factory=list)
    expiry_reason: str | None = None

    @property
    def is_open(self) -> bool:
        """NEW or PARTIALLY_FILLED: on the book (or waiting for its stop), cancelable."""
        return self.status in OPEN_STATUSES

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.executed

    @property
    def is_working(self) -> bool:
        """False for a stop order whose stop price has not been reached yet."""
        return self.working_time != -1

    def query_json(self) -> Json:
        """The shape of GET /api/v3/order and /api/v3/openOrders."""
        return {
            "symbol": self.symbol, "orderId": self.order_id, "orderListId": self.list_id,
            "clientOrderId": self.client_id, "price": fmt(self.price), "origQty": fmt(self.quantity),
            "executedQty": fmt(self.executed), "cummulativeQuoteQty": fmt(self.cumulative_quote),
            "status": self.status, "timeInForce": self.time_in_force, "type": self.type, "side": self.side,
            "stopPrice": fmt(self.stop_price), "icebergQty": fmt(ZERO), "time": self.time,
            "updateTime": self.update_time, "isWorking": self.is_working, "workingTime": self.working_time,
            "origQuoteOrderQty": fmt(self.quote_quantity), "selfTradePreventionMode": STP_MODE,
            **self._expiry_json(),
        }

    def reply_json(self, response_type: str) -> Json:
        """The reply to POST /api/v3/order (ACK, RESULT or FULL) and an OCO's orderReports."""
        reply: Json = {"symbol": self.symbol, "orderId": self.order_id, "orderListId": self.list_id,
                       "clientOrderId": self.client_id, "transactTime": self.time}
        if response_type == "ACK":
            return reply
        reply |= self._amounts_json()
        reply |= {"workingTime": self.working_time, "selfTradePreventionMode": STP_MODE}
        if response_type == "FULL":
            reply["fills"] = list(self.fills)
        return reply

    def cancel_json(self, cancel_client_id: str, transact_time: int) -> Json:
        return {"symbol": self.symbol, "origClientOrderId": self.client_id, "orderId": self.order_id,
                "orderListId": self.list_id, "clientOrderId": cancel_client_id, "transactTime": transact_time,
                **self._amounts_json(), "selfTradePreventionMode": STP_MODE}

    def _amounts_json(self) -> Json:
        amounts = {"price": fmt(self.price), "origQty": fmt(self.quantity), "executedQty": fmt(self.executed),
                   "origQuoteOrderQty": fmt(self.quote_quantity),
                   "cummulativeQuoteQty": fmt(self.cumulative_quote), "status": self.status,
                   "timeInForce": self.time_in_force, "type": self.type, "side": self.side}
        if self.stop_price:
            amounts["stopPrice"] = fmt(self.stop_price)
        return amounts | self._expiry_json()

    def _expiry_json(self) -> Json:
        """CHANGELOG.md 2026-03-09 and 2026-05-06: `expiryReason` is in the RESULT/FULL replies and
        the order queries "only for expired orders" (an ACK reply never has it)."""
        return {"expiryReason": self.expiry_reason} if self.status == "EXPIRED" and self.expiry_reason else {}


@dataclass
class OrderList:
    list_id: int
    client_id: str
    symbol: str
    time: int
    legs: list[Order]
    created: float = field(default_factory=time.monotonic)

    @property
    def is_open(self) -> bool:
        return any(leg.is_open for leg in self.legs)

    def json(self, transaction_time: int) -> Json:
        """enums.md: ALL_DONE once "the order list has finished executing and thus is no longer
        active". The docs say nothing of a triggered stop leg resting unfilled, or of a partly
        filled take-profit: the list is still active then (EXEC_STARTED, EXECUTING)."""
        status = ("EXEC_STARTED", "EXECUTING") if self.is_open else ("ALL_DONE", "ALL_DONE")
        return {"orderListId": self.list_id, "contingencyType": "OCO", "listStatusType": status[0],
                "listOrderStatus": status[1], "listClientOrderId": self.client_id,
                "transactionTime": transaction_time, "symbol": self.symbol,
                "orders": [{"symbol": leg.symbol, "orderId": leg.order_id, "clientOrderId": leg.client_id}
                           for leg in self.legs]}


@dataclass
class Reply:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> Reply:
        return cls(status, json.dumps(payload).encode(),
                   {"Content-Type": "application/json;charset=UTF-8", **(headers or {})})


@dataclass
class Fault:
    method: str
    path: str
    after_execute: bool
    times: int
    reply: Reply | None = None      # inject: answer this instead
    hang_seconds: float | None = None  # hang: wait this long; drop when neither is set
    late_seconds: float | None = None  # execute_late: forward to the "Matching Engine" this late


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeBinance


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like Binance, for requests.Session
    disable_nagle_algorithm = True  # headers and body are separate writes: avoid 40 ms delayed-ACK stalls
    server: _Server

    def do_GET(self) -> None:
        self.server.fake._serve(self)

    do_POST = do_PUT = do_DELETE = do_GET

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class FakeBinance:
    """A Binance spot REST API on 127.0.0.1; see the module docstring."""

    def __init__(self, api_key: str = "test-key-0123456789", api_secret: str = "test-secret-0123456789",
                 latency_ms: float = 0) -> None:
        self.api_key = api_key
        self.api_secret = api_secret
        self.latency_ms = latency_ms
        self.clock_offset_ms = 0
        self.order_lookup_delay_s = 0.0
        self.commission_rate = COMMISSION_RATE
        self.pay_fees_in_bnb = False
        self.bnb_discount = BNB_DISCOUNT
        self.url = ""
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._calls: list[tuple[str, str]] = []
        self._faults: list[Fault] = []
        self._symbols: dict[str, Symbol] = {}
        self._balances: dict[str, Balance] = {}
        self._orders: list[Order] = []
        self._lists: list[OrderList] = []
        self._next_order_id = 1
        self._next_trade_id = 1
        self._liquidity: dict[str, list[Decimal]] = {}
        self._routes: dict[tuple[str, str], tuple[Callable[[Params], Any], bool]] = {
            ("GET", "/api/v3/ping"): (self._ping, False),
            ("GET", "/api/v3/time"): (self._time, False),
            ("GET", "/api/v3/exchangeInfo"): (self._exchange_info, False),
            ("GET", "/api/v3/ticker/price"): (self._ticker_price, False),
            ("GET", "/api/v3/account"): (self._account, True),
            ("POST", "/api/v3/order"): (self._new_order, True),
            ("POST", "/api/v3/order/test"): (self._test_order, True),
            ("GET", "/api/v3/order"): (self._query_order, True),
            ("DELETE", "/api/v3/order"): (self._cancel_order, True),
            ("GET", "/api/v3/openOrders"): (self._open_orders, True),
            ("GET", "/api/v3/myTrades"): (self._my_trades, True),
            ("POST", "/api/v3/orderList/oco"): (self._new_oco, True),
            ("GET", "/api/v3/orderList"): (self._query_order_list, True),
            ("GET", "/api/v3/openOrderList"): (self._open_order_lists, True),
            ("DELETE", "/api/v3/orderList"): (self._cancel_order_list, True),
        }
        self._add_default_markets()

    def _add_default_markets(self) -> None:
        self.add_symbol("BTCUSDT", "BTC", "USDT", step="0.00001", min_qty="0.00001", tick="0.01")
        self.add_symbol("ETHUSDT", "ETH", "USDT", step="0.0001", min_qty="0.0001", tick="0.01")
        self.add_symbol("BNBUSDT", "BNB", "USDT", step="0.001", min_qty="0.001", tick="0.1",
                        legacy_min_notional=True)
        self.add_symbol("LUNAUSDT", "LUNA", "USDT", step="0.01", min_qty="0.01", tick="0.0001", status="BREAK")
        for symbol, price in (("BTCUSDT", "50000"), ("ETHUSDT", "3000"), ("BNBUSDT", "600"),
                              ("LUNAUSDT", "0.5")):
            self.set_price(symbol, price)
        for asset, free in (("USDT", "10000"), ("BTC", "0"), ("ETH", "0"), ("BNB", "0")):
            self.set_balance(asset, free)

    # ----- lifecycle -------------------------------------------------------------------------

    def start(self) -> FakeBinance:
        """Serve on a free port; after `stop()`, on the same port again, with the same state."""
        self._stopping.clear()
        port = int(urlsplit(self.url).port or 0) if self.url else 0
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.fake = self
        self._thread = serve_in_background(self._server, "fake-binance")
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/api"
        return self

    def stop(self) -> None:
        """Stop serving: new connections are refused; a request arriving on a connection kept
        alive from before, or held by `hang` or latency, gets no reply and is not executed."""
        self._stopping.set()
        shut_down(self._server, self._thread)
        self._server = self._thread = None

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ----- market state ----------------------------------------------------------------------

    def add_symbol(self, symbol: str, base: str, quote: str, *, step: Number = "0.00001",
                   min_qty: Number = "0.00001", max_qty: Number = "9000", tick: Number = "0.01",
                   min_notional: Number = "5", legacy_min_notional: bool = False, status: str = "TRADING",
                   market_min_qty: Number = 0, market_max_qty: Number = 0, market_step: Number = 0,
                   max_notional: Number = MAX_NOTIONAL, apply_max_to_market: bool = False,
                   apply_min_to_market: bool = True) -> None:
        """A new market, without a price until `set_price`. LOT_SIZE is step/min_qty/max_qty,
        MARKET_LOT_SIZE the market_* ones (0 disables a rule: off by default), NOTIONAL
        min_notional/max_notional (or legacy MIN_NOTIONAL), with minNotional and maxNotional held
        against MARKET orders only if apply_min_to_market / apply_max_to_market."""
        with self._lock:
            self._symbols[symbol] = Symbol(
                name=symbol, base=base, quote=quote,
                lot=Lot(to_decimal(min_qty), to_decimal(max_qty), to_decimal(step)),
                market_lot=Lot(to_decimal(market_min_qty), to_decimal(market_max_qty), to_decimal(market_step)),
                tick=to_decimal(tick), min_notional=to_decimal(min_notional), max_notional=to_decimal(max_notional),
                apply_max_to_market=apply_max_to_market, legacy_min_notional=legacy_min_notional,
                apply_min_to_market=apply_min_to_market, status=status)

    def set_price(self, symbol: str, price: Number, volume: Number | None = None) -> None:
        """Set the last price; resting orders it crosses fill (or trigger) now, oldest first.
        With `volume`, those orders trade at most that much base in all (0: stops trigger, nothing
        trades); an order left short stays PARTIALLY_FILLED and open, and a later call can fill it."""
        with self._lock:
            market = self._symbols[symbol]
            market.price = to_decimal(price)
            self._match(market, Volume(None if volume is None else to_decimal(volume)))

    def limit_liquidity(self, symbol: str, quantity: Number, *, times: int = 1) -> None:
        """The next `times` MARKET orders on `symbol` each find at most `quantity` base in the
        book (0: none): the rest of the order expires (EXPIRED, expiryReason INSUFFICIENT_LIQUIDITY)."""
        with self._lock:
            market = self._symbols[symbol]
            self._liquidity.setdefault(symbol, []).extend([market.floor_to_step(to_decimal(quantity))] * times)

    def set_balance(self, asset: str, free: Number) -> None:
        with self._lock:
            self._balance(asset).free = to_decimal(free)

    def balance(self, asset: str) -> Decimal:
        """The free balance."""
        with self._lock:
            return self._balance(asset).free

    def locked(self, asset: str) -> Decimal:
        """The balance locked by open orders."""
        with self._lock:
            return self._balance(asset).locked

    @property
    def orders(self) -> list[Json]:
        """Every accepted order, oldest first, as GET /api/v3/order shows it plus its `fills`."""
        with self._lock:
            return [order.query_json() | {"fills": list(order.fills)} for order in self._orders]

    # ----- call counting ---------------------------------------------------------------------

    @property
    def calls(self) -> list[tuple[str, str]]:
        """(METHOD, path) of every request received, in order."""
        with self._lock:
            return list(self._calls)

    def count(self, path: str | None = None, method: str | None = None) -> int:
        with self._lock:
            return sum(1 for call_method, call_path in self._calls
                       if (path is None or call_path == path) and (method is None or call_method == method))

    def reset_counts(self) -> None:
        with self._lock:
            self._calls.clear()

    # ----- faults ----------------------------------------------------------------------------

    def inject(self, method: str, path: str, *, status: int, code: int | None = None, msg: str = "",
               headers: dict[str, str] | None = None, after_execute: bool = False, times: int = 1) -> None:
        """The next `times` matching requests get this answer: {"code", "msg"} as JSON, or `msg`
        as plain text when `code` is None. With after_execute the request is carried out first."""
        if code is None:
            reply = Reply(status, msg.encode(), {"Content-Type": "text/plain", **(headers or {})})
        else:
            reply = Reply.json(status, {"code": code, "msg": msg}, headers)
        self._add_fault(Fault(method, path, after_execute, times, reply=reply))

    def hang(self, method: str, path: str, *, seconds: float, after_execute: bool = False,
             times: int = 1) -> None:
        """The next matching requests wait `seconds`. Without after_execute the request is then
        dropped unexecuted; with it, it is carried out at once and its real reply sent late."""
        self._add_fault(Fault(method, path, after_execute, times, hang_seconds=seconds))

    def drop(self, method: str, path: str, *, after_execute: bool = False, times: int = 1) -> None:
        """The next matching requests get their connection closed without any reply."""
        self._add_fault(Fault(method, path, after_execute, times))

    def execute_late(self, method: str, path: str, *, seconds: float, times: int = 1) -> None:
        """The next matching requests pass the gateway's checks on arrival, then wait `seconds`
        before reaching the "Matching Engine": meanwhile nothing is done (an order is not found,
        -2013). Then they are carried out if the request's recvWindow (default 5000 ms) has not
        run out, else dropped (the -1021 goes to nobody). Either way the connection is then
        closed without a reply, unless the client gave up earlier."""
        self._add_fault(Fault(method, path, False, times, late_seconds=seconds))

    def _add_fault(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, method: str, path: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method and fault.path == path:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    # ----- HTTP ------------------------------------------------------------------------------

    def _serve(self, handler: _Handler) -> None:
        if self._stopping.is_set():  # stopped: the exchange is gone
            handler.close_connection = True
            return
        url = urlsplit(handler.path)
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length).decode() if length else ""
        with self._lock:
            self._calls.append((handler.command, url.path))
            fault = self._take_fault(handler.command, url.path)
        request = (handler.command, url.path, url.query, body, handler.headers.get("X-MBX-APIKEY"))
        if fault is not None and fault.late_seconds is not None:
            self._execute_late(handler, request, fault.late_seconds)
            return
        if fault is not None and not fault.after_execute:
            self._answer_fault(handler, fault, None)
            return
        reply = self._dispatch(*request)
        if fault is None:
            self._send(handler, reply)
        else:
            self._answer_fault(handler, fault, reply)

    def _execute_late(self, handler: _Handler, request: tuple[str, str, str, str, str | None],
                      seconds: float) -> None:
        """rest-api.md "Timing security": the gateway checks `serverTime - timestamp <= recvWindow`
        when the request arrives (a failure is answered at once) and again before it will
        "forward request to Matching Engine"; `_dispatch` makes that second check again."""
        on_arrival = self._dispatch(*request, execute=False)
        if on_arrival.status != 200:
            self._send(handler, on_arrival)
            return
        if not self._stopping.wait(seconds):
            self._dispatch(*request)
        handler.close_connection = True  # the answer is lost

    def _answer_fault(self, handler: _Handler, fault: Fault, reply: Reply | None) -> None:
        """`reply` is the real answer when the request was executed first, else None."""
        if fault.reply is not None:
            self._send(handler, fault.reply)
            return
        if fault.hang_seconds is not None:
            stopped = self._stopping.wait(fault.hang_seconds)
            if reply is not None and not stopped:
                self._send(handler, reply)
                return
        handler.close_connection = True  # no reply at all

    def _send(self, handler: _Handler, reply: Reply) -> None:
        if self._stopping.wait(self.latency_ms / 1000):
            handler.close_connection = True
            return
        try:
            handler.send_response(reply.status)
            for name, value in reply.headers.items():
                handler.send_header(name, value)
            handler.send_header("Content-Length", str(len(reply.body)))
            handler.end_headers()
            handler.wfile.write(reply.body)
        except OSError:  # the client gave up (e.g. its timeout) before the answer
            handler.close_connection = True

    def _dispatch(self, method: str, path: str, query: str, body: str, api_key: str | None, *,
                  execute: bool = True) -> Reply:
        """The endpoint's reply; without `execute`, only the gateway's checks are made (an empty
        200 reply when they pass)."""
        route = self._routes.get((method, path))
        if route is None:
            return Reply(404, b"", {"Content-Type": "text/html"})
        endpoint, signed = route
        try:
            with self._lock:
                params = Params(query, body)
                if signed:
                    self._authenticate(params, api_key, query, body)
                return Reply.json(200, endpoint(params) if execute else {})
        except ApiError as error:
            return Reply.json(error.status, {"code": error.code, "msg": error.msg})

    def _authenticate(self, params: Params, api_key: str | None, query: str, body: str) -> None:
        """Binance's checks for SIGNED endpoints, in its order: key, timestamp, signature."""
        if not api_key:
            raise ApiError(401, -2014, "API-key format invalid.")
        if not hmac.compare_digest(api_key.encode(), self.api_key.encode()):
            raise ApiError(401, -2015, "Invalid API-key, IP, or permissions for action.")
        timestamp = params.integer("timestamp", required=True)
        window = params.integer("recvWindow")
        window = DEFAULT_RECV_WINDOW if window is None else window
        if window > MAX_RECV_WINDOW:
            raise bad_request(-1102, f"'recvWindow' contains unexpected value. Cannot be greater than "
                                     f"'{MAX_RECV_WINDOW}'.")
        now = self._now_ms()
        if timestamp >= now + 1000:
            raise bad_request(-1021, "Timestamp for this request was 1000ms ahead of the server's time.")
        if now - timestamp > window:
            raise bad_request(-1021, "Timestamp for this request is outside of the recvWindow.")
        signature = params.text("signature", required=True) or ""
        total_params = without_signature(query) + without_signature(body)
        expected = hmac.new(self.api_secret.encode(), total_params.encode(), hashlib.sha256).hexdigest()
        if not hmac.compare_digest(signature.lower().encode(), expected.encode()):
            raise bad_request(-1022, "Signature for this request is not valid.")

    def _now_ms(self) -> int:
        return int(time.time() * 1000) + self.clock_offset_ms

    # ----- public endpoints ------------------------------------------------------------------

    def _ping(self, params: Params) -> Json:
        params.allow(set())
        return {}

    def _time(self, params: Params) -> Json:
        params.allow(set())
        return {"serverTime": self._now_ms()}

    def _exchange_info(self, params: Params) -> Json:
        params.allow({"symbol", "symbols", "permissions", "showPermissionSets", "symbolStatus"})
        return {"timezone": "UTC", "serverTime": self._now_ms(), "rateLimits": [], "exchangeFilters": [],
                "symbols": [market.info() for market in self._requested_symbols(params)]}

    def _ticker_price(self, params: Params) -> Json | list[Json]:
        params.allow({"symbol", "symbols", "symbolStatus"})
        if params.has("symbol"):
            market = self._symbol(params)
            return {"symbol": market.name, "price": fmt(self._last_price(market))}
        return [{"symbol": market.name, "price": fmt(market.price)}
                for market in self._requested_symbols(params) if market.price is not None]

    def _requested_symbols(self, params: Params) -> list[Symbol]:
        """`symbol=X`, `symbols=["X","Y"]`, or every symbol."""
        if params.has("symbol"):
            return [self._symbol(params)]
        raw = params.text("symbols", pattern=SYMBOLS_PATTERN)
        if raw is None:
            return list(self._symbols.values())
        names = json.loads(raw)
        if any(name not in self._symbols for name in names):
            raise bad_request(-1121, "Invalid symbol.")
        return [self._symbols[name] for name in names]

    def _symbol(self, params: Params, name: str = "symbol") -> Symbol:
        value = params.text(name, required=True, pattern=SYMBOL_PATTERN) or ""
        if value not in self._symbols:
            raise bad_request(-1121, "Invalid symbol.")
        return self._symbols[value]

    @staticmethod
    def _last_price(market: Symbol) -> Decimal:
        if market.price is None:
            raise bad_request(-1000, f"fake_binance has no price for {market.name}: call set_price() first.")
        return market.price

    # ----- account ---------------------------------------------------------------------------

    def _account(self, params: Params) -> Json:
        params.allow({"omitZeroBalances"})
        omit_zero = params.text("omitZeroBalances") == "true"
        balances = [{"asset": asset, "free": fmt(b.free), "locked": fmt(b.locked)}
                    for asset, b in self._balances.items() if not (omit_zero and not b.free and not b.locked)]
        basis_points = int(self.commission_rate * 10000)
        return {"makerCommission": basis_points, "takerCommission": basis_points, "buyerCommission": 0,
                "sellerCommission": 0,
                "commissionRates": {"maker": fmt(self.commission_rate), "taker": fmt(self.commission_rate),
                                    "buyer": fmt(ZERO), "seller": fmt(ZERO)},
                "canTrade": True, "canWithdraw": True, "canDeposit": True, "brokered": False,
                "requireSelfTradePrevention": False, "preventSor": False, "updateTime": self._now_ms(),
                "accountType": "SPOT", "balances": balances, "permissions": ["SPOT"], "uid": 354937868}

    def _balance(self, asset: str) -> Balance:
        return self._balances.setdefault(asset, Balance())

    def _hold(self, asset: str, amount: Decimal) -> Hold:
        balance = self._balance(asset)
        balance.free -= amount
        balance.locked += amount
        return Hold(asset, amount)

    def _release(self, hold: Hold, amount: Decimal) -> None:
        balance = self._balance(hold.asset)
        balance.locked -= amount
        balance.free += amount
        hold.amount -= amount

    def _require_funds(self, asset: str, amount: Decimal) -> None:
        if self._balance(asset).free < amount:
            raise rejected(INSUFFICIENT_BALANCE)

    # ----- new orders ------------------------------------------------------------------------

    def _new_order(self, params: Params) -> Json:
        request = self._parse_order(params)
        self._require_unique(request.symbol, [request.client_id])
        order = self._place(request)
        return order.reply_json(request.response_type)

    def _test_order(self, params: Params) -> Json:
        """POST /api/v3/order/test: validated like a real order, never placed."""
        self._parse_order(params)
        return {}

    def _parse_order(self, params: Params) -> OrderRequest:
        params.allow(ORDER_PARAMS)
        market = self._symbol(params)
        side = params.choice("side", SIDES, bad_request(-1117, "Invalid side.")) or ""
        order_type = params.choice("type", ORDER_TYPES, bad_request(-1116, "Invalid orderType.")) or ""
        if order_type not in ORDER_TYPE_RULES:
            raise unsupported(f"{order_type} orders")
        if params.has("icebergQty") or params.has("trailingDelta"):
            raise unsupported("icebergQty or trailingDelta")
        quantity = params.decimal("quantity")
        quote_quantity = params.decimal("quoteOrderQty")
        price = params.decimal("price")
        stop_price = params.decimal("stopPrice")
        client_id = params.text("newClientOrderId", pattern=CLIENT_ID_PATTERN)
        time_in_force = params.choice("timeInForce", TIME_IN_FORCE, bad_request(-1115, "Invalid timeInForce."),
                                      required=False)
        response_type = params.choice("newOrderRespType", RESPONSE_TYPES, bad_request(
            -1130, "Data sent for parameter 'newOrderRespType' is not valid."), required=False)
        required, not_allowed = ORDER_TYPE_RULES[order_type]
        for name in required:
            params.text(name, required=True)
        params.forbid(not_allowed)
        if order_type == "MARKET":
            params.one_of("quantity", "quoteOrderQty")
            if quantity is not None:
                params.forbid(["quoteOrderQty"])
        if time_in_force is not None and order_type in ("MARKET", "LIMIT_MAKER"):
            raise bad_request(-1114, "TimeInForce parameter sent when not required.")
        self._check_trading(market)
        for name in ("quantity", "quoteOrderQty", "price", "stopPrice"):
            self._check_precision(params, name)
        last = self._last_price(market)
        if quote_quantity is not None:
            market.check_notional(quote_quantity, market=True)
            quantity = market.floor_to_step(quote_quantity / last)
        request = OrderRequest(symbol=market, side=side, type=order_type, quantity=quantity or ZERO,
                               price=price or ZERO, stop_price=stop_price or ZERO, quote_quantity=quote_quantity,
                               time_in_force=time_in_force or "GTC", client_id=client_id,
                               response_type=response_type or "FULL")
        self._check_filters(request, last)
        return request

    @staticmethod
    def _check_trading(market: Symbol) -> None:
        if market.status != "TRADING":
            raise rejected("Market is closed.")

    @staticmethod
    def _check_precision(params: Params, name: str) -> None:
        value = params.decimal(name)
        if value is not None and decimal_places(value) > 8:
            raise bad_request(-1111, f"Parameter '{name}' has too much precision.")

    @staticmethod
    def _check_filters(request: OrderRequest, last: Decimal) -> None:
        market = request.symbol
        for price in (request.price, request.stop_price):
            if price:
                market.check_price(price)
        # rest-api.md: a quoteOrderQty order "will not break LOT_SIZE filter rules"; of MARKET_LOT_SIZE
        # it says nothing, so the quantity derived from quoteOrderQty is checked against both.
        market.check_quantity(request.quantity, market=request.type == "MARKET")
        if request.quote_quantity is None:
            reference = last if request.type == "MARKET" else request.price
            market.check_notional(request.quantity * reference, market=request.type == "MARKET")
        if request.type == "LIMIT_MAKER" and marketable(request.side, request.price, last):
            raise rejected("Order would immediately match and take.")
        if request.type == "STOP_LOSS_LIMIT" and stop_reached(request.side, request.stop_price, last):
            raise rejected("Order would trigger immediately.")

    def _require_unique(self, market: Symbol, client_ids: list[str | None]) -> None:
        """A client order id must not be used by an open order (nor twice in one request)."""
        given = [client_id for client_id in client_ids if client_id is not None]
        open_ids = {order.client_id for order in self._orders if order.symbol == market.name and order.is_open}
        if len(set(given)) < len(given) or open_ids.intersection(given):
            raise rejected("Duplicate order sent.")

    def _funds_needed(self, request: OrderRequest, last: Decimal) -> tuple[str, Decimal]:
        market = request.symbol
        if request.side == "SELL":
            return market.base, request.quantity
        if request.quote_quantity is not None:
            return market.quote, request.quote_quantity
        price = last if request.type == "MARKET" else request.price
        return market.quote, request.quantity * price

    def _place(self, request: OrderRequest) -> Order:
        last = self._last_price(request.symbol)
        asset, amount = self._funds_needed(request, last)
        # faqs/market_orders_faq.md: "If you do not have sufficient balance for the order to be
        # completely filled, the order will be rejected."
        self._require_funds(asset, amount)
        order = self._create(request)
        if request.type == "MARKET":
            self._execute_market(order, last)
        elif request.type == "LIMIT" and marketable(order.side, order.price, last):
            self._take(order, last, Volume())
        elif request.type == "LIMIT" and order.time_in_force != "GTC":
            self._close(order, "EXPIRED", UNFILLED_EXPIRY[order.time_in_force])
        else:
            order.hold = self._hold(asset, amount)
        return order

    def _execute_market(self, order: Order, last: Decimal) -> None:
        """faqs/market_orders_faq.md: "If the exchange does not have enough liquidity to fill the
        order, your MARKET order will be partially filled to the extent of available liquidity, and
        the remaining quantity will expire." (status EXPIRED; the reason is enums.md's
        INSUFFICIENT_LIQUIDITY, the example of rest-api.md "Conditional fields in Order Responses").
        errors.md also has -1112 "No orders on book for symbol." but says nowhere when it is used:
        an empty book here is an EXPIRED order with executedQty 0, as the FAQ describes."""
        limits = self._liquidity.get(order.symbol)
        self._take(order, last, Volume(limits.pop(0) if limits else None))
        if order.is_open:
            self._close(order, "EXPIRED", INSUFFICIENT_LIQUIDITY)

    def _create(self, request: OrderRequest, list_id: int = -1) -> Order:
        now = self._now_ms()
        quote_quantity = request.quote_quantity or ZERO
        order = Order(symbol=request.symbol.name, order_id=self._next_order_id,
                      client_id=request.client_id or random_client_id(), side=request.side, type=request.type,
                      time_in_force=request.time_in_force, quantity=request.quantity, price=request.price,
                      stop_price=request.stop_price, quote_quantity=quote_quantity, time=now,
                      working_time=-1 if request.type == "STOP_LOSS_LIMIT" else now, list_id=list_id,
                      update_time=now)
        self._next_order_id += 1
        self._orders.append(order)
        return order

    # ----- matching --------------------------------------------------------------------------

    def _match(self, market: Symbol, volume: Volume) -> None:
        """Fill or trigger the open orders of `market` that its new last price crosses, oldest
        first, while `volume` lasts."""
        last = self._last_price(market)
        for order in [o for o in self._orders if o.symbol == market.name and o.is_open]:
            if not order.is_open:  # closed meanwhile as the other leg of an OCO
                continue
            if not order.is_working:
                if stop_reached(order.side, order.stop_price, last):
                    self._trigger(order, last, volume)
            elif marketable(order.side, order.price, last):
                self._take(order, order.price, volume)

    def _trigger(self, order: Order, last: Decimal, volume: Volume) -> None:
        """A stop-limit order whose stop was reached becomes a limit order: it trades now (as a
        taker, at the last price) as far as its limit and `volume` allow; the rest rests on the
        book (GTC) or expires (IOC, FOK).

        CHANGELOG.md 2019-08-15 "Execution Order": "if the Market Price moves such that the
        STOP_LOSS or STOP_LOSS_LIMIT will trigger, the Limit Maker leg will be canceled BEFORE
        executing the STOP_LOSS Leg", whether or not the stop leg can trade now."""
        order.working_time = order.update_time = self._now_ms()
        self._expire_other_legs(order)
        # enums.md: FOK "will expire if the full order cannot be filled upon execution".
        if marketable(order.side, order.price, last) and (order.time_in_force != "FOK"
                                                          or volume.covers(order.remaining)):
            self._take(order, last, volume)
        if order.is_open and order.time_in_force != "GTC":
            self._close(order, "EXPIRED", UNFILLED_EXPIRY[order.time_in_force])

    def _take(self, order: Order, price: Decimal, volume: Volume) -> bool:
        """Trade as much of the order's remaining quantity as `volume` offers; whether any traded."""
        quantity = volume.take(order.remaining)
        if not quantity:
            return False
        if order.hold is not None:
            self._release(order.hold, quantity if order.side == "SELL" else quantity * order.price)
        order.fills.append(self._settle(self._symbols[order.symbol], order.side, quantity, price))
        order.executed += quantity
        order.cumulative_quote += quantity * price
        order.status = "FILLED" if order.remaining == 0 else "PARTIALLY_FILLED"
        order.update_time = self._now_ms()
        # CHANGELOG.md 2019-08-15 "Execution Order": "If the LIMIT_MAKER is touched, the limit maker
        # leg will be executed first BEFORE canceling the Stop Loss Leg" (a partial execution too:
        # CHANGELOG.md 2020-05-01, once the LIMIT order is touched "the other order is canceled").
        self._expire_other_legs(order)
        return True

    def _settle(self, market: Symbol, side: str, quantity: Decimal, price: Decimal) -> Json:
        """Move balances for one trade; the commission is taken from what is received, or paid in BNB."""
        quote_amount = quantity * price
        if side == "BUY":
            self._balance(market.quote).free -= quote_amount
            received, received_asset = quantity, market.base
        else:
            self._balance(market.base).free -= quantity
            received, received_asset = quote_amount, market.quote
        commission, commission_asset = commission_amount(received * self.commission_rate), received_asset
        in_bnb = self._commission_in_bnb(market, received_asset, commission, price)
        # faqs/commission_faq.md: "If you do not have enough BNB to pay the discounted commission, the
        # full commission will be taken out of your received amount ... instead."
        if in_bnb is not None and self._balance("BNB").free >= in_bnb:
            commission, commission_asset = in_bnb, "BNB"
        self._balance(commission_asset).free -= commission
        self._balance(received_asset).free += received
        trade_id = self._next_trade_id
        self._next_trade_id += 1
        return {"price": fmt(price), "qty": fmt(quantity), "commission": fmt(commission),
                "commissionAsset": commission_asset, "tradeId": trade_id}

    def _commission_in_bnb(self, market: Symbol, asset: str, commission: Decimal, price: Decimal) -> Decimal | None:
        """With `pay_fees_in_bnb`, the commission in BNB (faqs/commission_faq.md: "the commission will
        be paid in BNB assuming you have a sufficient balance"; it is "converted into BNB based on the
        exchange rate", here the last price of BNB<quote>, and the standard commission "reduced based
        on the discount"). rest-api.md "Test new order" says of `discount`: "Standard commission is
        reduced by this rate", so 0.25 means 75% is paid; the FAQ's worked example multiplies by the
        discount instead (25% paid): set bnb_discount to 0.75 for that arithmetic.
        None when off, or when there is no BNB price in the quote asset (the docs are silent)."""
        if not self.pay_fees_in_bnb:
            return None
        in_quote = commission * price if asset == market.base else commission
        if asset == "BNB":
            in_bnb = commission
        elif market.quote == "BNB":
            in_bnb = in_quote
        else:
            bnb_market = self._symbols.get("BNB" + market.quote)
            if bnb_market is None or bnb_market.price is None:
                return None
            in_bnb = in_quote / bnb_market.price
        return commission_amount(in_bnb * (1 - self.bnb_discount))

    def _close(self, order: Order, status: str, expiry_reason: str | None = None) -> None:
        order.status, order.expiry_reason = status, expiry_reason
        order.update_time = self._now_ms()
        if order.hold is not None:
            self._release(order.hold, order.hold.amount)

    def _expire_other_legs(self, order: Order) -> None:
        """When one leg of an OCO trades or triggers, Binance expires the other, with enums.md's
        expiry reason OCO_TRIGGER. The shared hold stays with the leg that is still working."""
        order_list = self._order_list_of(order)
        for leg in order_list.legs if order_list else []:
            if leg is not order and leg.is_open:
                leg.status, leg.expiry_reason = "EXPIRED", OCO_TRIGGER
                leg.update_time = self._now_ms()

    # ----- queries and cancels ---------------------------------------------------------------

    def _query_order(self, params: Params) -> Json:
        params.allow({"symbol", "orderId", "origClientOrderId"})
        not_found = bad_request(-2013, "Order does not exist.")
        order = self._find_order(params, not_found)
        if self._not_stored_yet(order.created):
            raise not_found
        return order.query_json()

    def _not_stored_yet(self, created: float) -> bool:
        """rest-api.md "Data Sources": GET /api/v3/order reads "Memory => Database", GET
        /api/v3/orderList and /api/v3/openOrderList read the "Database", the source "with potential
        delays in updates": an order (list) younger than `order_lookup_delay_s` is not found yet."""
        return time.monotonic() - created < self.order_lookup_delay_s

    def _my_trades(self, params: Params) -> list[Json]:
        """The account's trades in a symbol (optionally of one order), as Binance lists them."""
        params.allow({"symbol", "orderId", "startTime", "endTime", "fromId", "limit"})
        market = self._symbol(params)
        order_id = params.integer("orderId")
        return [{"symbol": order.symbol, "id": fill["tradeId"], "orderId": order.order_id,
                 "orderListId": order.list_id, "price": fill["price"], "qty": fill["qty"],
                 "quoteQty": fmt(Decimal(fill["price"]) * Decimal(fill["qty"])),
                 "commission": fill["commission"], "commissionAsset": fill["commissionAsset"],
                 "time": order.update_time, "isBuyer": order.side == "BUY", "isMaker": False, "isBestMatch": True}
                for order in self._orders
                if order.symbol == market.name and order_id in (None, order.order_id) for fill in order.fills]

    def _cancel_order(self, params: Params) -> Json:
        params.allow({"symbol", "orderId", "origClientOrderId", "newClientOrderId", "cancelRestrictions"})
        unknown = unknown_order()
        restriction = params.choice("cancelRestrictions", CANCEL_RESTRICTIONS,
                                    bad_request(-1145, "Invalid cancelRestrictions"), required=False)
        order = self._find_order(params, unknown)
        if not order.is_open:
            raise unknown
        # rest-api.md "Regarding cancelRestrictions": ONLY_NEW / ONLY_PARTIALLY_FILLED cancel only an
        # order with that status.
        if restriction is not None and CANCEL_RESTRICTIONS[restriction] != order.status:
            raise bad_request(-2011, "Order was not canceled due to cancel restrictions.")
        cancel_id = params.text("newClientOrderId", pattern=CLIENT_ID_PATTERN) or random_client_id()
        order_list = self._order_list_of(order)
        for leg in order_list.legs if order_list else [order]:
            if leg.is_open:
                self._close(leg, "CANCELED")
        return order.cancel_json(cancel_id, self._now_ms())

    def _find_order(self, params: Params, not_found: ApiError) -> Order:
        """By orderId, else the newest order with origClientOrderId."""
        market = self._symbol(params)
        order_id = params.integer("orderId")
        client_id = params.text("origClientOrderId")
        params.one_of("origClientOrderId", "orderId")
        matches = [order for order in self._orders if order.symbol == market.name
                   and (order_id is None or order.order_id == order_id)
                   and (client_id is None or order.client_id == client_id)]
        if not matches:
            raise not_found
        return matches[-1]

    def _open_orders(self, params: Params) -> list[Json]:
        params.allow({"symbol"})
        name = self._symbol(params).name if params.has("symbol") else None
        return [order.query_json() for order in self._orders
                if order.is_open and (name is None or order.symbol == name)]

    # ----- OCO -------------------------------------------------------------------------------

    def _new_oco(self, params: Params) -> Json:
        above, below, list_client_id = self._parse_oco(params)
        market = above.symbol
        self._require_unique(market, [above.client_id, below.client_id])
        if list_client_id in {ol.client_id for ol in self._lists if ol.symbol == market.name and ol.is_open}:
            raise rejected("Duplicate order sent.")
        self._require_funds(market.base, above.quantity)
        order_list = OrderList(list_id=len(self._lists), client_id=list_client_id or random_client_id(),
                               symbol=market.name, time=self._now_ms(), legs=[])
        hold = self._hold(market.base, above.quantity)
        for request in (below, above):  # Binance lists the stop leg first
            leg = self._create(request, order_list.list_id)
            leg.hold = hold
            order_list.legs.append(leg)
        self._lists.append(order_list)
        reports = [leg.reply_json("RESULT") for leg in order_list.legs]
        return order_list.json(order_list.time) | {"orderReports": reports}

    def _parse_oco(self, params: Params) -> tuple[OrderRequest, OrderRequest, str | None]:
        """SELL OCO: a LIMIT_MAKER take-profit above the price, a STOP_LOSS_LIMIT below."""
        params.allow(OCO_PARAMS)
        market = self._symbol(params)
        side = params.choice("side", SIDES, bad_request(-1117, "Invalid side.")) or ""
        quantity = params.decimal("quantity", required=True) or ZERO
        invalid_type = bad_request(-1158, "Order type not supported in OCO.")
        above_type = params.choice("aboveType", OCO_ABOVE_TYPES, invalid_type)
        below_type = params.choice("belowType", OCO_BELOW_TYPES, invalid_type)
        if side != "SELL" or above_type != "LIMIT_MAKER" or below_type != "STOP_LOSS_LIMIT":
            raise unsupported("OCO orders other than SELL with LIMIT_MAKER above and STOP_LOSS_LIMIT below")
        above_price = params.decimal("abovePrice", required=True) or ZERO
        below_stop = params.decimal("belowStopPrice", required=True) or ZERO
        below_price = params.decimal("belowPrice", required=True) or ZERO
        below_tif = params.choice("belowTimeInForce", TIME_IN_FORCE, bad_request(-1115, "Invalid timeInForce."))
        ids = [params.text(name, pattern=CLIENT_ID_PATTERN)
               for name in ("listClientOrderId", "aboveClientOrderId", "belowClientOrderId")]
        self._check_trading(market)
        for name in ("quantity", "abovePrice", "belowStopPrice", "belowPrice"):
            self._check_precision(params, name)
        above = OrderRequest(symbol=market, side=side, type="LIMIT_MAKER", quantity=quantity, price=above_price,
                             client_id=ids[1])
        below = OrderRequest(symbol=market, side=side, type="STOP_LOSS_LIMIT", quantity=quantity,
                             price=below_price, stop_price=below_stop, time_in_force=below_tif or "GTC",
                             client_id=ids[2])
        last = self._last_price(market)
        if not above_price > last > below_stop:
            raise rejected("The relationship of the prices for the orders is not correct.")
        for request in (above, below):
            self._check_filters(request, last)
        return above, below, ids[0]

    def _query_order_list(self, params: Params) -> Json:
        """The list status and its legs' ids; the docs do not give the error for an unknown list,
        so it is GET /api/v3/order's."""
        params.allow({"orderListId", "origClientOrderId"})
        not_found = bad_request(-2013, "Order does not exist.")
        order_list = self._find_order_list(params, "origClientOrderId", not_found)
        if self._not_stored_yet(order_list.created):
            raise not_found
        return order_list.json(order_list.time)

    def _open_order_lists(self, params: Params) -> list[Json]:
        """GET /api/v3/openOrderList: takes no parameter but recvWindow and timestamp."""
        params.allow(set())
        return [order_list.json(order_list.time) for order_list in self._lists
                if order_list.is_open and not self._not_stored_yet(order_list.created)]

    def _cancel_order_list(self, params: Params) -> Json:
        params.allow({"symbol", "orderListId", "listClientOrderId", "newClientOrderId"})
        market = self._symbol(params)
        unknown = unknown_order()
        order_list = self._find_order_list(params, "listClientOrderId", unknown)
        if order_list.symbol != market.name or not order_list.is_open:
            raise unknown
        now = self._now_ms()
        for leg in order_list.legs:
            if leg.is_open:
                self._close(leg, "CANCELED")
        # rest-api.md "Cancel Order list" shows both legs CANCELED; it does not show a list whose
        # other leg had already expired (OCO_TRIGGER): both legs are reported, each as it is.
        reports = [leg.cancel_json(random_client_id(), now) for leg in order_list.legs]
        return order_list.json(now) | {"orderReports": reports}

    def _find_order_list(self, params: Params, client_id_param: str, not_found: ApiError) -> OrderList:
        list_id = params.integer("orderListId")
        client_id = params.text(client_id_param)
        params.one_of("orderListId", client_id_param)
        matches = [ol for ol in self._lists if (list_id is None or ol.list_id == list_id)
                   and (client_id is None or ol.client_id == client_id)]
        if not matches:
            raise not_found
        return matches[-1]

    def _order_list_of(self, order: Order) -> OrderList | None:
        return self._lists[order.list_id] if order.list_id != -1 else None
