"""Execution: a thin wrapper over python-binance (testnet/live) and a paper twin with the same interface.

Every exchange failure becomes one of four typed errors, translated in one place (`Gateway.call`):
`ExchangeRejected` (Binance said no; nothing happened), `OutcomeUnknown` (the order may or may not
exist), `RateLimited` (429/418; we wait out Retry-After) and `ExchangeUnreachable`.
Exchange info and balances are cached, so a BUY in steady state costs one REST call: the order.
"""
from __future__ import annotations

import json
import threading
import time
import uuid
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, Protocol

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from config import Settings
from money import PRICE_PLACES, floor_to_step, plain
from orders import Fill, OrderPlan, OrderRefused, Protection, SymbolRules, check_protection, protection_levels
from signals import symbol_candidates

MARKET_DATA_RETRY_SECONDS = 5
CONNECTION_POOL_SIZE = 40  # as many as FastAPI's worker threads, so parallel orders never wait for a connection
LOOKUP_ATTEMPTS = 4
LOOKUP_PAUSE_SECONDS = 0.4
PAPER_FEE_RATE = Decimal("0.001")
PAPER_SLIPPAGE = Decimal("0.0005")
MAX_MESSAGE_LENGTH = 200


class ExchangeError(Exception):
    """Base of the four ways an exchange call can fail; str() is a human reason, never a secret."""


class ExchangeRejected(ExchangeError):
    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"Binance rejected the request: {code} {message}"[:MAX_MESSAGE_LENGTH])
        self.code = code


class OutcomeUnknown(ExchangeError):
    pass


class RateLimited(ExchangeError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeUnreachable(ExchangeError):
    pass


class Exchange(Protocol):
    mode: str
    market: MarketData

    def warm_up(self) -> None: ...
    def resolve(self, raw_symbol: str) -> SymbolRules | None: ...
    def free_balance(self, asset: str) -> Decimal: ...
    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan: ...
    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan: ...
    def place(self, plan: OrderPlan, client_order_id: str) -> Fill: ...
    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None: ...
    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                entry_id: str) -> Protection: ...
    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> None: ...
    def protection_exit(self, rules: SymbolRules, protection: Protection) -> tuple[str, Fill] | None: ...
    def open_order_ids(self) -> set[str] | None: ...


def make_client(settings: Settings) -> Client:
    """A python-binance client with no network call yet, pointed at BINANCE_API_URL if set."""
    key = settings.binance_api_key.get_secret_value() if settings.binance_api_key else None
    secret = settings.binance_api_secret.get_secret_value() if settings.binance_api_secret else None
    client = Client(key, secret, ping=False, testnet=settings.trading_mode == "testnet",
                    requests_params={"timeout": settings.binance_timeout_seconds})
    if settings.binance_api_url:
        client.API_URL = client.API_TESTNET_URL = settings.binance_api_url.rstrip("/")
    pool = requests.adapters.HTTPAdapter(pool_maxsize=CONNECTION_POOL_SIZE)
    client.session.mount("https://", pool)
    client.session.mount("http://", pool)
    return client


class Gateway:
    """The one place where python-binance is called and its failures are translated."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self._resume_at = 0.0

    def call(self, method: str, *, places_order: bool = False, **params: Any) -> Any:
        try:
            return self._call_once(method, places_order, params)
        except ExchangeRejected as error:
            if error.code != -1021:
                raise
            self.sync_time()
            return self._call_once(method, places_order, params)

    def sync_time(self) -> None:
        """Measure the offset to Binance's clock (python-binance applies it to every timestamp)."""
        server = self._call_once("get_server_time", False, {})["serverTime"]
        self.client.timestamp_offset = server - int(time.time() * 1000)

    def _call_once(self, method: str, places_order: bool, params: dict[str, Any]) -> Any:
        wait = self._resume_at - time.monotonic()
        if wait > 0:
            raise RateLimited(f"Binance rate limit: waiting {wait:.0f}s more before the next call", wait)
        try:
            return getattr(self.client, method)(**params)
        except BinanceAPIException as error:
            raise self._api_error(error, places_order) from None
        except BinanceRequestException:
            raise self._unclear("Binance answered with something that is not JSON", places_order) from None
        except requests.RequestException as error:
            raise self._network_error(error, places_order) from None

    def _api_error(self, error: BinanceAPIException, places_order: bool) -> ExchangeError:
        if error.status_code in (418, 429):
            retry_after = float(error.response.headers.get("Retry-After", "60") or 60)
            self._resume_at = time.monotonic() + retry_after
            kind = "IP banned (418)" if error.status_code == 418 else "rate limited (429)"
            return RateLimited(f"Binance {kind}: retry after {retry_after:.0f}s", retry_after)
        if error.status_code >= 500 or error.code == -1007:
            return self._unclear(f"Binance answered HTTP {error.status_code} ({error.code})", places_order)
        return ExchangeRejected(error.code, str(error.message))

    def _network_error(self, error: requests.RequestException, places_order: bool) -> ExchangeError:
        never_sent = isinstance(error, requests.ConnectTimeout) or (
            isinstance(error, requests.ConnectionError) and "NewConnectionError" in repr(error))
        if never_sent:
            return ExchangeUnreachable("Binance is unreachable (could not connect)")
        kind = "no reply in time" if isinstance(error, requests.Timeout) else "connection lost"
        return self._unclear(f"Binance {kind}", places_order)

    @staticmethod
    def _unclear(message: str, places_order: bool) -> ExchangeError:
        if places_order:
            return OutcomeUnknown(f"{message}: the order may or may not exist")
        return ExchangeUnreachable(message)


class MarketData:
    """Public market data: the symbol list (cached) and last prices."""

    def __init__(self, gateway: Gateway, quote_asset: str) -> None:
        self.gateway = gateway
        self.quote_asset = quote_asset
        self._symbols: dict[str, SymbolRules] | None = None
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._last_prices: dict[str, Decimal] = {}

    def symbols(self) -> dict[str, SymbolRules]:
        with self._lock:
            if self._symbols is None:
                self._symbols = self._download_symbols()
            return self._symbols

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        known = self.symbols()
        for candidate in symbol_candidates(raw_symbol, self.quote_asset):
            if candidate in known:
                return known[candidate]
        return None

    def price(self, symbol: str) -> Decimal:
        price = Decimal(self.gateway.call("get_symbol_ticker", symbol=symbol)["price"])
        self.note_price(symbol, price)
        return price

    def refresh_prices(self, symbols: list[str]) -> None:
        """Last prices of several symbols in one call, into the cache `/status` reads."""
        if symbols:
            quotes = self.gateway.call("get_symbol_ticker", symbols=json.dumps(sorted(symbols), separators=(",", ":")))
            for quote in quotes:
                self.note_price(quote["symbol"], Decimal(quote["price"]))

    def note_price(self, symbol: str, price: Decimal) -> None:
        self._last_prices[symbol] = price

    def cached_price(self, symbol: str) -> Decimal | None:
        return self._last_prices.get(symbol)

    def _download_symbols(self) -> dict[str, SymbolRules]:
        if time.monotonic() < self._retry_at:
            raise ExchangeUnreachable("Binance's symbol list is unavailable right now")
        try:
            info = self.gateway.call("get_exchange_info")
        except ExchangeError:
            self._retry_at = time.monotonic() + MARKET_DATA_RETRY_SECONDS
            raise
        return {s["symbol"]: SymbolRules.from_exchange_info(s)
                for s in info["symbols"] if s.get("status") == "TRADING"}


class Balances:
    """Free balances by asset, kept in step with each fill so they need not be fetched again."""

    def __init__(self, initial: dict[str, Decimal] | None = None) -> None:
        self.free: dict[str, Decimal] = dict(initial or {})
        self._lock = threading.Lock()

    def get(self, asset: str) -> Decimal:
        with self._lock:
            return self.free.get(asset, Decimal(0))

    def apply(self, rules: SymbolRules, fill: Fill) -> None:
        sign = 1 if fill.side == "BUY" else -1
        with self._lock:
            self._add(rules.base_asset, sign * fill.quantity)
            self._add(rules.quote_asset, -sign * fill.quote_amount)
            for asset, fee in fill.fees.items():
                self._add(asset, -fee)

    def _add(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, Decimal(0)) + amount


class BinanceExchange:
    """Testnet or live Binance through python-binance."""

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.mode = settings.trading_mode
        self.stop_limit_gap = settings.stop_limit_gap_percent
        self.gateway = Gateway(client or make_client(settings))
        self.market = MarketData(self.gateway, settings.quote_asset)
        self._balances: Balances | None = None
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.gateway.sync_time()
        self.market.symbols()
        self._account()

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        return self.market.resolve(raw_symbol)

    def free_balance(self, asset: str) -> Decimal:
        return self._account().get(asset)

    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan:
        amount = rules.quote_amount(amount)
        problem = rules.buy_problem(amount)
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "BUY", amount=amount)

    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan:
        """Sells what the account really holds: the balance is read fresh, not from the cache."""
        self._forget_account()
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset))
        price = price_hint or self.market.price(rules.symbol)
        problem = rules.sell_problem(quantity, price)
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "SELL", quantity=quantity, price=price)

    def place(self, plan: OrderPlan, client_order_id: str) -> Fill:
        """Send the order once. An unclear answer is resolved by looking the order up, never by resending."""
        size = {"quoteOrderQty": plain(plan.amount)} if plan.side == "BUY" else {"quantity": plain(plan.quantity)}
        balances = self._account()
        try:
            reply = self.gateway.call("create_order", places_order=True, symbol=plan.rules.symbol, side=plan.side,
                                      type="MARKET", newClientOrderId=client_order_id, newOrderRespType="FULL",
                                      **size)
        except OutcomeUnknown as unclear:
            return executed_or_rejected(self._find_after_unclear_answer(plan.rules, client_order_id, unclear))
        except ExchangeRejected:
            self._forget_account()
            raise
        fill = executed_or_rejected(Fill.from_order(reply))
        balances.apply(plan.rules, fill)
        return fill

    def _account(self) -> Balances:
        with self._lock:
            if self._balances is None:
                account = self.gateway.call("get_account")
                self._balances = Balances({b["asset"]: Decimal(b["free"]) for b in account["balances"]})
            return self._balances

    def _forget_account(self) -> None:
        with self._lock:
            self._balances = None

    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                entry_id: str) -> Protection:
        """Place the stop-loss and/or take-profit for what the entry delivered (both: one SELL OCO)."""
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset))
        protection = Protection(entry_id, quantity, *protection_levels(rules, stop, target, self.stop_limit_gap))
        check_protection(rules, protection)
        legs = protection.legs
        try:
            if len(legs) == 2:
                reply = self.gateway.call(
                    "create_oco_order", places_order=True, symbol=rules.symbol, side="SELL", quantity=plain(quantity),
                    listClientOrderId=protection.client_id, aboveType="LIMIT_MAKER",
                    abovePrice=plain(protection.target), aboveClientOrderId=legs["take_profit"],
                    belowType="STOP_LOSS_LIMIT", belowStopPrice=plain(protection.stop),
                    belowPrice=plain(protection.stop_limit), belowTimeInForce="GTC",
                    belowClientOrderId=legs["stop_loss"])
                protection = replace(protection, list_id=str(reply["orderListId"]))
            elif protection.stop is not None:
                self.gateway.call("create_order", places_order=True, symbol=rules.symbol, side="SELL",
                                  type="STOP_LOSS_LIMIT", quantity=plain(quantity), stopPrice=plain(protection.stop),
                                  price=plain(protection.stop_limit), timeInForce="GTC",
                                  newClientOrderId=legs["stop_loss"])
            else:
                self.gateway.call("create_order", places_order=True, symbol=rules.symbol, side="SELL",
                                  type="LIMIT_MAKER", quantity=plain(quantity), price=plain(protection.target),
                                  newClientOrderId=legs["take_profit"])
        except OutcomeUnknown:
            if not set(legs.values()) <= (self.open_order_ids() or set()):
                raise
        finally:
            self._forget_account()
        return protection

    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> None:
        """Lift the protective orders; ExchangeRejected -2011 when none is open any more (one has filled)."""
        if protection.list_id is not None:
            self.gateway.call("v3_delete_order_list", symbol=rules.symbol, orderListId=int(protection.list_id))
        else:
            self.gateway.call("cancel_order", symbol=rules.symbol, origClientOrderId=protection.client_id)
        self._forget_account()

    def protection_exit(self, rules: SymbolRules, protection: Protection) -> tuple[str, Fill] | None:
        """The leg that filled, if one did: (`stop_loss` or `take_profit`, its fill)."""
        for kind, client_id in protection.legs.items():
            fill = self.look_up(rules, client_id)
            if fill is not None and fill.quantity > 0:
                return kind, fill
        return None

    def open_order_ids(self) -> set[str] | None:
        """Client ids of every open order, in one call: how the monitor sees that a stop or target filled."""
        return {order["clientOrderId"] for order in self.gateway.call("get_open_orders")}

    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None:
        """What Binance knows of our order: its fill with the exact fees, or None if it has no such order.

        Raises OutcomeUnknown when Binance cannot be asked right now.
        """
        try:
            reply = self.gateway.call("get_order", symbol=rules.symbol, origClientOrderId=client_order_id)
            if Decimal(reply.get("executedQty", "0")) > 0 and not reply.get("fills"):
                reply["fills"] = self.gateway.call("get_my_trades", symbol=rules.symbol, orderId=reply["orderId"])
        except ExchangeRejected as error:
            if error.code == -2013:
                return None
            raise OutcomeUnknown(f"cannot look up order {client_order_id}: {error}") from None
        except ExchangeError as error:
            raise OutcomeUnknown(f"cannot look up order {client_order_id}: {error}") from None
        self._forget_account()
        return Fill.from_order(reply)

    def _find_after_unclear_answer(self, rules: SymbolRules, client_order_id: str,
                                   unclear: OutcomeUnknown) -> Fill:
        """Ask Binance what became of the order (never resend it), allowing for its brief -2013 after a fill."""
        for attempt in range(LOOKUP_ATTEMPTS):
            time.sleep(LOOKUP_PAUSE_SECONDS * attempt)
            try:
                fill = self.look_up(rules, client_order_id)
            except OutcomeUnknown as lookup_failed:
                raise OutcomeUnknown(f"{unclear}; {lookup_failed}; it will be looked up again") from None
            if fill is not None:
                return fill
        raise OutcomeUnknown(f"{unclear}; Binance does not show order {client_order_id} yet: "
                             f"it will be looked up again")


def executed_or_rejected(fill: Fill) -> Fill:
    """A market order that executed nothing (EXPIRED, REJECTED) is a failure, not a trade."""
    if fill.quantity <= 0:
        raise ExchangeRejected(None, f"order {fill.client_order_id} ended {fill.status} with nothing executed")
    return fill


class PaperExchange:
    """Simulated fills with Binance's fee and a little slippage; real public prices when reachable."""

    mode = "paper"

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.quote_asset = settings.quote_asset
        self.stop_limit_gap = settings.stop_limit_gap_percent
        self.market = MarketData(Gateway(client or make_client(settings)), settings.quote_asset)
        self.balances = Balances({settings.quote_asset: settings.paper_balance_usdt})
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.market.symbols()

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        """Binance's symbol list when it answers; otherwise (no network, a region Binance blocks with
        HTTP 451, ...) paper mode goes on with offline rules."""
        try:
            return self.market.resolve(raw_symbol)
        except ExchangeError:
            return self._offline_rules(raw_symbol)

    def free_balance(self, asset: str) -> Decimal:
        return self.balances.get(asset)

    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan:
        amount = rules.quote_amount(amount)
        price = self._price(rules, price_hint) * (1 + PAPER_SLIPPAGE)
        quantity = floor_to_step(amount / price, rules.step_size)
        problem = rules.buy_problem(amount) or rules.sell_problem(quantity, price)
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "BUY", amount=amount, quantity=quantity, price=price)

    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan:
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset))
        price = self._price(rules, price_hint) * (1 - PAPER_SLIPPAGE)
        problem = rules.sell_problem(quantity, price)
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "SELL", quantity=quantity, price=price)

    def place(self, plan: OrderPlan, client_order_id: str) -> Fill:
        """Fill at the plan's price, with Binance's commission taken from what is received."""
        rules = plan.rules
        with self._lock:
            if plan.side == "BUY":
                cost = self._quote(rules, plan.quantity * plan.price, ROUND_UP)
                self._require(rules.quote_asset, cost)
                fee = (plan.quantity * PAPER_FEE_RATE).quantize(PRICE_PLACES, rounding=ROUND_UP)
                return self._fill(rules, client_order_id, "BUY", plan.quantity, cost, {rules.base_asset: fee})
            self._require(rules.base_asset, plan.quantity)
            proceeds = self._quote(rules, plan.quantity * plan.price, ROUND_DOWN)
            fee = self._quote(rules, proceeds * PAPER_FEE_RATE, ROUND_UP)
            return self._fill(rules, client_order_id, "SELL", plan.quantity, proceeds, {rules.quote_asset: fee})

    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                entry_id: str) -> Protection:
        """Paper protective orders rest inside the bot: `protection_exit` fills them when the price crosses."""
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset))
        protection = Protection(entry_id, quantity, *protection_levels(rules, stop, target, self.stop_limit_gap))
        check_protection(rules, protection)
        return protection

    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> None:
        if self._triggered(rules, protection):
            raise ExchangeRejected(-2011, "Unknown order sent.")

    def protection_exit(self, rules: SymbolRules, protection: Protection) -> tuple[str, Fill] | None:
        triggered = self._triggered(rules, protection)
        if triggered is None:
            return None
        kind, fill_price = triggered
        plan = OrderPlan(rules, "SELL", quantity=min(protection.quantity, self.free_balance(rules.base_asset)),
                         price=fill_price)
        return kind, self.place(plan, protection.legs[kind])

    def _triggered(self, rules: SymbolRules, protection: Protection) -> tuple[str, Decimal] | None:
        """Like Binance: the target fills at its price once reached; the stop, once triggered, fills at
        the last price if that is still at or above its limit (a gap below the limit leaves it unfilled)."""
        price = self.market.cached_price(rules.symbol)
        if price is None:
            return None
        if protection.target is not None and price >= protection.target:
            return "take_profit", protection.target
        if protection.stop_limit is not None and protection.stop is not None and \
                protection.stop_limit <= price <= protection.stop:
            return "stop_loss", price
        return None

    def open_order_ids(self) -> set[str] | None:
        return None

    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None:
        """Paper orders complete inside the bot: one without a recorded outcome never happened."""
        return None

    def replay(self, rules: SymbolRules, fill: Fill) -> None:
        """Re-apply a fill from the journal, so the paper balance survives a restart."""
        self.balances.apply(rules, fill)

    def _fill(self, rules: SymbolRules, client_order_id: str, side: str, quantity: Decimal,
              quote_amount: Decimal, fees: dict[str, Decimal]) -> Fill:
        fill = Fill(order_id=f"paper-{uuid.uuid4().hex[:12]}", client_order_id=client_order_id,
                    status="FILLED", side=side, quantity=quantity, quote_amount=quote_amount, fees=fees)
        self.balances.apply(rules, fill)
        return fill

    def _require(self, asset: str, amount: Decimal) -> None:
        if self.balances.get(asset) < amount:
            raise ExchangeRejected(-2010, "Account has insufficient balance for requested action.")

    def _price(self, rules: SymbolRules, price_hint: Decimal | None) -> Decimal:
        if price_hint is not None:
            return price_hint
        try:
            return self.market.price(rules.symbol)
        except ExchangeError:
            raise OrderRefused(f"no price for {rules.symbol}: the signal has no `price` and "
                               f"Binance's public ticker is unreachable") from None

    @staticmethod
    def _quote(rules: SymbolRules, value: Decimal, rounding: str) -> Decimal:
        return value.quantize(Decimal(1).scaleb(-rules.quote_precision), rounding=rounding)

    def _offline_rules(self, raw_symbol: str) -> SymbolRules | None:
        """Without Binance's symbol list, paper mode accepts any `<BASE><QUOTE>` symbol."""
        symbol = symbol_candidates(raw_symbol, self.quote_asset)[-1]
        base = symbol.removesuffix(self.quote_asset)
        if not base.isalnum() or not 2 <= len(base) <= 12:
            return None
        return SymbolRules(symbol=symbol, base_asset=base, quote_asset=self.quote_asset,
                           min_notional=Decimal(5))


def make_exchange(settings: Settings) -> Exchange:
    return PaperExchange(settings) if settings.is_paper else BinanceExchange(settings)
