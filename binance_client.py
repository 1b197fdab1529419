"""Execution: a thin wrapper over python-binance (testnet/live) and a paper twin with the same interface.

Every exchange failure becomes one of a few typed errors, translated in one place (`Gateway.call`),
one per thing the caller does next: `ExchangeRejected` (Binance said no; nothing happened; its
`ProtectionGone` case: nothing was left to cancel), `OutcomeUnknown` (the order, OCO or cancel may or
may not have happened: look it up), `RateLimited` (429/418; we wait out Retry-After) and
`ExchangeUnreachable` (never sent). Symbol rules, balances and last prices are cached and kept current
by fills, so an order in steady state costs one REST call: the order itself.
"""
from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import replace
from decimal import ROUND_DOWN, ROUND_UP, Decimal
from typing import Any, Protocol

import requests
from binance.client import Client
from binance.exceptions import BinanceAPIException, BinanceRequestException

from config import Settings
from money import PRICE_PLACES, floor_to_step, plain
from orders import (Fill, LegState, OrderPlan, OrderRefused, Protection, SymbolRules, check_protection,
                    protection_levels)
from signals import symbol_candidates

log = logging.getLogger("exchange")

# rest-api.md "Timing security": a request is executed only while serverTime - timestamp <= recvWindow,
# and Binance recommends 5000 or less. python-binance signs every request with its own 10000 otherwise.
RECV_WINDOW_MS = 5000
# After that window (plus this margin for clock error) an order Binance does not know was never placed.
NOT_FOUND_MARGIN_SECONDS = 5
MARKET_DATA_RETRY_SECONDS = 5
SYMBOLS_MAX_AGE_SECONDS = 3600
BALANCE_REFRESH_SECONDS = 2
MAX_REMEMBERED_PRICES = 1000
CONNECTION_POOL_SIZE = 40  # as many as FastAPI's worker threads, so parallel orders never wait for a connection
LOOKUP_ATTEMPTS = 4
LOOKUP_PAUSE_SECONDS = 0.4
PAPER_FEE_RATE = Decimal("0.001")
PAPER_SLIPPAGE = Decimal("0.0005")
MAX_MESSAGE_LENGTH = 200
MAX_PAPER_PROTECTIONS = 1000

# errors.md
TIMESTAMP_OUTSIDE_RECV_WINDOW = -1021
EXECUTION_STATUS_UNKNOWN = (-1006, -1007)  # "Execution status unknown", "Send status unknown; execution status unknown"
UNKNOWN_ORDER = -2011                       # a cancel found no such open order (or order list)
NO_SUCH_ORDER = -2013
ORDER_ARCHIVED = -2026                      # "canceled or expired with no executed qty over 90 days ago"


class ExchangeError(Exception):
    """Base of the ways an exchange call can fail; str() is a human reason, never a secret."""


class ExchangeRejected(ExchangeError):
    """Binance refused the request: nothing happened."""

    def __init__(self, code: int | None, message: str) -> None:
        super().__init__(f"Binance rejected the request: {code} {message}"[:MAX_MESSAGE_LENGTH])
        self.code = code


class ProtectionGone(ExchangeRejected):
    """A cancel found none of the protective orders open any more: they filled, expired or were canceled."""


class OutcomeUnknown(ExchangeError):
    """The request may or may not have been carried out: look it up, never send it again."""


class RateLimited(ExchangeError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class ExchangeUnreachable(ExchangeError):
    """The request never reached Binance (or it was a read that changes nothing)."""


class Exchange(Protocol):
    """What the trader, the protector and start-up need from an exchange, live or paper."""
    mode: str
    not_found_final_after: float

    def warm_up(self) -> None: ...
    def resolve(self, raw_symbol: str) -> SymbolRules | None: ...
    def free_balance(self, asset: str, fresh: bool = False) -> Decimal: ...
    def forget_balances(self) -> None: ...
    def last_price(self, symbol: str) -> Decimal | None: ...
    def price(self, symbol: str) -> Decimal: ...
    def note_price(self, symbol: str, price: Decimal) -> bool: ...
    def refresh_market(self, symbols: list[str]) -> None: ...
    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan: ...
    def plan_buy_quantity(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan: ...
    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None,
                  unlocking: Decimal = Decimal(0)) -> OrderPlan: ...
    def place(self, plan: OrderPlan, client_order_id: str) -> Fill: ...
    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None: ...
    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                seed: str) -> Protection: ...
    def restore_protection(self, rules: SymbolRules, protection: Protection) -> None: ...
    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> list[LegState]: ...
    def leg_states(self, rules: SymbolRules, protection: Protection) -> dict[str, LegState | None]: ...
    def open_orders(self) -> dict[str, LegState]: ...
    def adopt_balances(self, balances: Balances) -> None: ...


def make_client(settings: Settings) -> Client:
    """A python-binance client with no network call yet, pointed at BINANCE_API_URL if set. A proxy set in
    the environment (HTTPS_PROXY, ...) is read at start-up."""
    key = settings.binance_api_key.get_secret_value() if settings.binance_api_key else None
    secret = settings.binance_api_secret.get_secret_value() if settings.binance_api_secret else None
    client = Client(key, secret, ping=False, testnet=settings.trading_mode == "testnet",
                    requests_params={"timeout": settings.binance_timeout_seconds,
                                     "proxies": requests.utils.get_environ_proxies("https://api.binance.com")})
    client.REQUEST_RECVWINDOW = RECV_WINDOW_MS
    client.session.trust_env = False  # requests re-read every *_PROXY variable per call; read once above
    if settings.binance_api_url:
        client.API_URL = client.API_TESTNET_URL = settings.binance_api_url.rstrip("/")
    pool = requests.adapters.HTTPAdapter(pool_maxsize=CONNECTION_POOL_SIZE)
    client.session.mount("https://", pool)
    client.session.mount("http://", pool)
    return client


class Gateway:
    """The one place where python-binance is called and its failures are translated.

    `changes_exchange`: the call places or cancels something, so an unclear answer (HTTP 5XX, -1006,
    -1007, a timeout or a dropped connection) means "it may have happened" (rest-api.md, "HTTP Return
    Codes": "the execution status is UNKNOWN and could have been a success").
    """

    def __init__(self, client: Client) -> None:
        self.client = client
        self._resume_at = 0.0

    def call(self, method: str, *, changes_exchange: bool = False, **params: Any) -> Any:
        try:
            return self._call_once(method, changes_exchange, params)
        except ExchangeRejected as error:
            if error.code != TIMESTAMP_OUTSIDE_RECV_WINDOW:
                raise
            self.sync_time()
            return self._call_once(method, changes_exchange, params)

    def sync_time(self) -> None:
        """Measure the offset to Binance's clock (python-binance applies it to every timestamp)."""
        server = self._call_once("get_server_time", False, {})["serverTime"]
        self.client.timestamp_offset = server - int(time.time() * 1000)

    def _call_once(self, method: str, changes_exchange: bool, params: dict[str, Any]) -> Any:
        wait = self._resume_at - time.monotonic()
        if wait > 0:
            raise RateLimited(f"Binance rate limit: waiting {wait:.0f}s more before the next call", wait)
        try:
            return getattr(self.client, method)(**params)
        except BinanceAPIException as error:
            raise self._api_error(error, changes_exchange) from None
        except BinanceRequestException:
            raise self._unclear("Binance answered with something that is not JSON", changes_exchange) from None
        except requests.RequestException as error:
            raise self._network_error(error, changes_exchange) from None

    def _api_error(self, error: BinanceAPIException, changes_exchange: bool) -> ExchangeError:
        if error.status_code in (418, 429):
            retry_after = float(error.response.headers.get("Retry-After", "60") or 60)
            self._resume_at = time.monotonic() + retry_after
            kind = "IP banned (418)" if error.status_code == 418 else "rate limited (429)"
            return RateLimited(f"Binance {kind}: retry after {retry_after:.0f}s", retry_after)
        if error.status_code >= 500 or error.code in EXECUTION_STATUS_UNKNOWN:
            return self._unclear(f"Binance answered HTTP {error.status_code} ({error.code})", changes_exchange)
        if error.code == UNKNOWN_ORDER:
            return ProtectionGone(error.code, str(error.message))
        return ExchangeRejected(error.code, str(error.message))

    def _network_error(self, error: requests.RequestException, changes_exchange: bool) -> ExchangeError:
        never_sent = isinstance(error, requests.ConnectTimeout) or (
            isinstance(error, requests.ConnectionError) and "NewConnectionError" in repr(error))
        if never_sent:
            return ExchangeUnreachable("Binance is unreachable (could not connect)")
        kind = "no reply in time" if isinstance(error, requests.Timeout) else "connection lost"
        return self._unclear(f"Binance {kind}", changes_exchange)

    @staticmethod
    def _unclear(message: str, changes_exchange: bool) -> ExchangeError:
        if changes_exchange:
            return OutcomeUnknown(f"{message}: it may or may not have been carried out")
        return ExchangeUnreachable(message)


class MarketData:
    """Public market data: the symbol list (cached, refreshed hourly by the monitor) and last prices."""

    def __init__(self, gateway: Gateway, quote_asset: str) -> None:
        self.gateway = gateway
        self.quote_asset = quote_asset
        self._symbols: dict[str, SymbolRules] | None = None
        self._symbols_read_at = 0.0
        self._retry_at = 0.0
        self._lock = threading.Lock()
        self._last_prices: OrderedDict[str, Decimal] = OrderedDict()

    def symbols(self) -> dict[str, SymbolRules]:
        with self._lock:
            if self._symbols is None:
                self._symbols = self._download_symbols()
            return self._symbols

    def refresh_symbols(self) -> None:
        """New listings, status and filter changes (e.g. a symbol in CANCEL_ONLY) without a restart."""
        if time.monotonic() - self._symbols_read_at > SYMBOLS_MAX_AGE_SECONDS:
            symbols = self._download_symbols()
            with self._lock:
                self._symbols = symbols

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        """The symbol the user means, preferring one quoted in QUOTE_ASSET; a symbol quoted in another asset
        is returned too, for the caller to refuse by name."""
        known = self.symbols()
        found = [known[candidate] for candidate in symbol_candidates(raw_symbol, self.quote_asset)
                 if candidate in known]
        return next((rules for rules in found if rules.quote_asset == self.quote_asset), found[0] if found else None)

    def price(self, symbol: str) -> Decimal:
        price = Decimal(self.gateway.call("get_symbol_ticker", symbol=symbol)["price"])
        self.note_price(symbol, price)
        return price

    def refresh_prices(self, symbols: list[str]) -> None:
        """Last prices of several symbols in one call, into the cache."""
        if symbols:
            quotes = self.gateway.call("get_symbol_ticker", symbols=json.dumps(sorted(symbols), separators=(",", ":")))
            for quote in quotes:
                self.note_price(quote["symbol"], Decimal(quote["price"]))

    def note_price(self, symbol: str, price: Decimal) -> None:
        """Remember a last price (bounded: the least recently noted symbol is forgotten first)."""
        with self._lock:
            self._last_prices[symbol] = price
            self._last_prices.move_to_end(symbol)
            while len(self._last_prices) > MAX_REMEMBERED_PRICES:
                self._last_prices.popitem(last=False)

    def cached_price(self, symbol: str) -> Decimal | None:
        return self._last_prices.get(symbol)

    def forget_price(self, symbol: str) -> None:
        """Binance refused an order checked at this price: read it afresh next time."""
        with self._lock:
            self._last_prices.pop(symbol, None)

    def _download_symbols(self) -> dict[str, SymbolRules]:
        if time.monotonic() < self._retry_at:
            raise ExchangeUnreachable("Binance's symbol list is unavailable right now")
        try:
            info = self.gateway.call("get_exchange_info")
        except ExchangeError:
            self._retry_at = time.monotonic() + MARKET_DATA_RETRY_SECONDS
            raise
        self._symbols_read_at = time.monotonic()
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

    def lock(self, asset: str, amount: Decimal) -> None:
        """Resting orders hold `amount` (negative: they let it go)."""
        with self._lock:
            self._add(asset, -amount)

    def _add(self, asset: str, amount: Decimal) -> None:
        self.free[asset] = self.free.get(asset, Decimal(0)) + amount


def executed_or_rejected(fill: Fill) -> Fill:
    """A market order that executed nothing (EXPIRED, REJECTED) is a failure, not a trade."""
    if fill.quantity <= 0:
        raise ExchangeRejected(None, f"order {fill.client_order_id} ended {fill.status} with nothing executed")
    return fill


def leg_state_of(reply: dict[str, Any], client_id_key: str = "clientOrderId") -> LegState:
    """An order as GET /api/v3/order, openOrders or a cancel's orderReports show it."""
    fill = Fill.from_order(reply)
    return LegState(reply[client_id_key], reply.get("status", ""), replace(fill, client_order_id=reply[client_id_key]),
                    None if reply.get("orderListId", -1) == -1 else str(reply["orderListId"]))


def valued(market: MarketData, rules: SymbolRules, fill: Fill) -> Fill:
    """Commission paid in another asset (BNB) valued in the quote asset at its last price
    (faqs/commission_faq.md: with the BNB discount on, the fee is taken in BNB while it lasts)."""
    value = Decimal(0)
    for asset in fill.other_fee_assets(rules):
        symbol = asset + rules.quote_asset
        try:
            price = market.cached_price(symbol) or market.price(symbol)
        except ExchangeError as error:
            log.warning("fee of %s %s not valued: no %s price (%s)", plain(fill.fees[asset]), asset, symbol, error)
            continue
        value += (fill.fees[asset] * price).quantize(PRICE_PLACES)
    return replace(fill, other_fees_value=value) if value else fill


class MarketPrices:
    """Last prices, as both twins read them: from the cache kept by fills, the monitor and alerts, or the ticker."""
    market: MarketData

    def last_price(self, symbol: str) -> Decimal | None:
        return self.market.cached_price(symbol)

    def price(self, symbol: str) -> Decimal:
        return self.market.price(symbol)


class BinanceExchange(MarketPrices):
    """Testnet or live Binance through python-binance."""

    not_found_final_after = RECV_WINDOW_MS / 1000 + NOT_FOUND_MARGIN_SECONDS

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.mode = settings.trading_mode
        self.stop_limit_gap = settings.stop_limit_gap_percent
        self.gateway = Gateway(client or make_client(settings))
        self.market = MarketData(self.gateway, settings.quote_asset)
        self._balances: Balances | None = None
        self._balances_read_at = 0.0
        self._lock = threading.Lock()

    def warm_up(self) -> None:
        self.gateway.sync_time()
        self.market.symbols()
        self._account()

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        return self.market.resolve(raw_symbol)

    def free_balance(self, asset: str, fresh: bool = False) -> Decimal:
        """From the cache; `fresh` re-reads the account first unless it was read in the last few seconds
        (a deposit is usable at once, a flood of refusals costs no weight)."""
        if fresh and time.monotonic() - self._balances_read_at > BALANCE_REFRESH_SECONDS:
            self.forget_balances()
        return self._account().get(asset)

    def forget_balances(self) -> None:
        with self._lock:
            self._balances = None

    def note_price(self, symbol: str, price: Decimal) -> bool:
        """Remember it; True when it moved resting protective orders (Binance's move on their own: never)."""
        self.market.note_price(symbol, price)
        return False

    def refresh_market(self, symbols: list[str]) -> None:
        self.market.refresh_prices(symbols)
        self.market.refresh_symbols()

    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan:
        amount = rules.quote_amount(amount)
        problem = rules.buy_problem(amount, price_hint or self.last_price(rules.symbol))
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "BUY", amount=amount)

    def plan_buy_quantity(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan:
        """A MARKET BUY of a base quantity (rounded down to the step), checked at the last known price."""
        price = price_hint or self.last_price(rules.symbol) or self.price(rules.symbol)
        return OrderPlan.of_quantity(rules, "BUY", rules.market_quantity(quantity), price)

    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None,
                  unlocking: Decimal = Decimal(0)) -> OrderPlan:
        """What the account holds (the cached balance, plus what lifting the protection frees), checked at the
        last known price: no REST call in steady state. If Binance still refuses, the cache is read again."""
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset) + unlocking)
        price = price_hint or self.last_price(rules.symbol) or self.price(rules.symbol)
        return OrderPlan.of_quantity(rules, "SELL", quantity, price)

    def place(self, plan: OrderPlan, client_order_id: str) -> Fill:
        """Send the order once. An unclear answer is resolved by looking the order up, never by resending."""
        size = {"quoteOrderQty": plain(plan.amount)} if plan.amount else {"quantity": plain(plan.quantity)}
        balances = self._account()
        try:
            reply = self.gateway.call("create_order", changes_exchange=True, symbol=plan.rules.symbol,
                                      side=plan.side, type="MARKET", newClientOrderId=client_order_id,
                                      newOrderRespType="FULL", **size)
        except OutcomeUnknown as unclear:
            return executed_or_rejected(self._find_after_unclear_answer(plan.rules, client_order_id, unclear))
        except ExchangeRejected:
            self.forget_balances()
            self.market.forget_price(plan.rules.symbol)
            raise
        fill = valued(self.market, plan.rules, executed_or_rejected(Fill.from_order(reply)))
        balances.apply(plan.rules, fill)
        self.note_price(plan.rules.symbol, fill.price)
        return fill

    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None:
        """What Binance knows of our market order: its fill with the exact fees, None if Binance has no such
        order. Raises OutcomeUnknown when Binance cannot be asked, or the order is not final yet."""
        state = self._order_state(rules, client_order_id)
        if state is None:
            return None
        if state.is_open:
            raise OutcomeUnknown(f"order {client_order_id} is still {state.status} on Binance")
        self.forget_balances()
        return state.fill

    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                seed: str) -> Protection:
        """Place the stop-loss and/or take-profit for `quantity` (both: one SELL OCO). An unclear answer is
        settled by finding the order list (or the order) by its client id; OutcomeUnknown if it cannot be."""
        quantity = floor_to_step(min(quantity, self.free_balance(rules.base_asset)), rules.step_size)
        protection = Protection(seed, quantity, *protection_levels(rules, stop, target, self.stop_limit_gap))
        check_protection(rules, protection)
        try:
            protection = self._send_protection(rules, protection)
        except OutcomeUnknown as unclear:
            self.forget_balances()
            return self._find_after_unclear_protection(rules, protection, unclear)
        self._hold_in_cache(rules.base_asset, protection.quantity)
        return protection

    def restore_protection(self, rules: SymbolRules, protection: Protection) -> None:
        """Binance keeps resting orders across our restarts: nothing to do."""

    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> list[LegState]:
        """Lift the protective orders; the legs as they ended (a leg may have traded part before). Raises
        ProtectionGone when none was open, OutcomeUnknown when it cannot be told whether they still are."""
        try:
            if len(protection.legs) == 2:
                reference = ({"orderListId": int(protection.list_id)} if protection.list_id
                             else {"listClientOrderId": protection.client_id})
                reports = self.gateway.call("v3_delete_order_list", changes_exchange=True, symbol=rules.symbol,
                                            **reference)["orderReports"]
            else:
                reports = [self.gateway.call("cancel_order", changes_exchange=True, symbol=rules.symbol,
                                             origClientOrderId=protection.client_id)]
        except OutcomeUnknown as unclear:
            self.forget_balances()
            return self._legs_after_unclear_cancel(rules, protection, unclear)
        legs = [leg_state_of(report, "origClientOrderId") for report in reports]
        if any(leg.fill.quantity > 0 for leg in legs):
            self.forget_balances()
            return [self._order_state(rules, leg.client_id) or leg if leg.fill.quantity > 0 else leg for leg in legs]
        self._hold_in_cache(rules.base_asset, -protection.quantity)
        return legs

    def leg_states(self, rules: SymbolRules, protection: Protection) -> dict[str, LegState | None]:
        """Each leg by client id, with fees; None for a leg Binance does not know."""
        return {client_id: self._order_state(rules, client_id) for client_id in protection.legs.values()}

    def open_orders(self) -> dict[str, LegState]:
        """Every open order by client id, in one call (weight 80): how the monitor watches all protections."""
        return {order["clientOrderId"]: leg_state_of(order) for order in self.gateway.call("get_open_orders")}

    def adopt_balances(self, balances: Balances) -> None:
        """Binance keeps the balances: nothing to adopt."""

    def _account(self) -> Balances:
        with self._lock:
            if self._balances is None:
                account = self.gateway.call("get_account")
                self._balances = Balances({b["asset"]: Decimal(b["free"]) for b in account["balances"]})
                self._balances_read_at = time.monotonic()
            return self._balances

    def _hold_in_cache(self, asset: str, amount: Decimal) -> None:
        """Resting orders took (or, negative, gave back) `amount` of the free balance: keep the cache true."""
        with self._lock:
            if self._balances is not None:
                self._balances.lock(asset, amount)

    def _send_protection(self, rules: SymbolRules, protection: Protection) -> Protection:
        legs, quantity = protection.legs, plain(protection.quantity)
        if len(legs) == 2:
            reply = self.gateway.call(
                "create_oco_order", changes_exchange=True, symbol=rules.symbol, side="SELL", quantity=quantity,
                listClientOrderId=protection.client_id, aboveType="LIMIT_MAKER",
                abovePrice=plain(protection.target), aboveClientOrderId=legs["take_profit"],
                belowType="STOP_LOSS_LIMIT", belowStopPrice=plain(protection.stop),
                belowPrice=plain(protection.stop_limit), belowTimeInForce="GTC", belowClientOrderId=legs["stop_loss"])
            return replace(protection, list_id=str(reply["orderListId"]))
        if protection.stop is not None:
            self.gateway.call("create_order", changes_exchange=True, symbol=rules.symbol, side="SELL",
                              type="STOP_LOSS_LIMIT", quantity=quantity, stopPrice=plain(protection.stop),
                              price=plain(protection.stop_limit), timeInForce="GTC", newClientOrderId=legs["stop_loss"])
        else:
            self.gateway.call("create_order", changes_exchange=True, symbol=rules.symbol, side="SELL",
                              type="LIMIT_MAKER", quantity=quantity, price=plain(protection.target),
                              newClientOrderId=legs["take_profit"])
        return protection

    def _find_after_unclear_protection(self, rules: SymbolRules, protection: Protection,
                                       unclear: OutcomeUnknown) -> Protection:
        """The OCO by its listClientOrderId (rest-api.md "Query Order list"), or the single leg by its id."""
        for attempt in range(LOOKUP_ATTEMPTS):
            time.sleep(LOOKUP_PAUSE_SECONDS * attempt)
            try:
                if len(protection.legs) == 2:
                    found = self.gateway.call("v3_get_order_list", origClientOrderId=protection.client_id)
                    return replace(protection, list_id=str(found["orderListId"]))
                if self._order_state(rules, protection.client_id) is not None:
                    return protection
            except ExchangeRejected as error:
                if error.code != NO_SUCH_ORDER:
                    raise OutcomeUnknown(f"{unclear}; cannot look the protective orders up: {error}") from None
            except ExchangeError as error:
                raise OutcomeUnknown(f"{unclear}; cannot look the protective orders up: {error}") from None
        raise OutcomeUnknown(f"{unclear}; Binance does not show the protective orders yet")

    def _legs_after_unclear_cancel(self, rules: SymbolRules, protection: Protection,
                                   unclear: OutcomeUnknown) -> list[LegState]:
        """A cancel whose answer was lost: the legs tell whether it went through."""
        states = self.leg_states(rules, protection)
        if any(state is None or state.is_open for state in states.values()):
            raise OutcomeUnknown(f"{unclear}; the protective orders are still open")
        return [state for state in states.values() if state is not None]

    def _order_state(self, rules: SymbolRules, client_order_id: str) -> LegState | None:
        """GET /api/v3/order by client id, with the trades' fees when it executed; None on -2013."""
        try:
            reply = self.gateway.call("get_order", symbol=rules.symbol, origClientOrderId=client_order_id)
            if Decimal(reply.get("executedQty", "0")) > 0:
                reply["fills"] = self.gateway.call("get_my_trades", symbol=rules.symbol, orderId=reply["orderId"])
        except ExchangeRejected as error:
            if error.code == NO_SUCH_ORDER:
                return None
            if error.code == ORDER_ARCHIVED:
                return LegState(client_order_id, "ARCHIVED", Fill("", client_order_id, "ARCHIVED", "", Decimal(0),
                                                                   Decimal(0)))
            raise OutcomeUnknown(f"cannot look up order {client_order_id}: {error}") from None
        except ExchangeError as error:
            raise OutcomeUnknown(f"cannot look up order {client_order_id}: {error}") from None
        state = leg_state_of(reply)
        return replace(state, fill=valued(self.market, rules, state.fill))

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


class PaperExchange(MarketPrices):
    """Simulated fills with Binance's fee and a little slippage; real public prices when reachable.

    Protective orders rest inside the bot and behave as Binance's do: the target fills at its price once
    reached; the stop, once triggered, expires the target and fills at the last price if that is still at
    or above its limit, else rests until the price comes back up to its limit.
    """

    mode = "paper"
    not_found_final_after = 0.0

    def __init__(self, settings: Settings, client: Client | None = None) -> None:
        self.quote_asset = settings.quote_asset
        self.stop_limit_gap = settings.stop_limit_gap_percent
        self.market = MarketData(Gateway(client or make_client(settings)), settings.quote_asset)
        self.balances = Balances({settings.quote_asset: settings.paper_balance_usdt})
        self._resting: OrderedDict[str, PaperProtection] = OrderedDict()
        self._lock = threading.RLock()

    def warm_up(self) -> None:
        self.market.symbols()

    def resolve(self, raw_symbol: str) -> SymbolRules | None:
        """Binance's symbol list when it answers; otherwise (no network, a region Binance blocks with
        HTTP 451, ...) paper mode goes on with offline rules."""
        try:
            return self.market.resolve(raw_symbol)
        except ExchangeError:
            return self._offline_rules(raw_symbol)

    def free_balance(self, asset: str, fresh: bool = False) -> Decimal:
        return self.balances.get(asset)

    def forget_balances(self) -> None:
        """The paper balances are the truth: nothing to re-read."""

    def note_price(self, symbol: str, price: Decimal) -> bool:
        """A new last price (from an alert or the ticker) moves the resting protective orders it crosses;
        True when it did."""
        self.market.note_price(symbol, price)
        with self._lock:
            moved = [resting.match(price, self._fill) for resting in self._resting.values()
                     if resting.rules.symbol == symbol]
        return any(moved)

    def refresh_market(self, symbols: list[str]) -> None:
        self.market.refresh_prices(symbols)
        for symbol in symbols:
            price = self.last_price(symbol)
            if price is not None:
                self.note_price(symbol, price)

    def plan_buy(self, rules: SymbolRules, amount: Decimal, price_hint: Decimal | None) -> OrderPlan:
        amount = rules.quote_amount(amount)
        price = self._price(rules, price_hint) * (1 + PAPER_SLIPPAGE)
        quantity = floor_to_step(amount / price, rules.step_size)
        problem = rules.buy_problem(amount, price)
        if problem:
            raise OrderRefused(problem)
        return OrderPlan(rules, "BUY", amount=amount, quantity=quantity, price=price)

    def plan_buy_quantity(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None) -> OrderPlan:
        price = self._price(rules, price_hint) * (1 + PAPER_SLIPPAGE)
        return OrderPlan.of_quantity(rules, "BUY", rules.market_quantity(quantity), price)

    def plan_sell(self, rules: SymbolRules, quantity: Decimal, price_hint: Decimal | None,
                  unlocking: Decimal = Decimal(0)) -> OrderPlan:
        quantity = rules.sellable(quantity, self.free_balance(rules.base_asset) + unlocking)
        price = self._price(rules, price_hint) * (1 - PAPER_SLIPPAGE)
        return OrderPlan.of_quantity(rules, "SELL", quantity, price)

    def place(self, plan: OrderPlan, client_order_id: str) -> Fill:
        """Fill at the plan's price, with Binance's commission taken from what is received."""
        with self._lock:
            return self._fill(plan.rules, client_order_id, plan.side, plan.quantity, plan.price)

    def look_up(self, rules: SymbolRules, client_order_id: str) -> Fill | None:
        """Paper orders complete inside the bot: one without a recorded outcome never happened."""
        return None

    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                seed: str) -> Protection:
        quantity = floor_to_step(min(quantity, self.free_balance(rules.base_asset)), rules.step_size)
        protection = Protection(seed, quantity, *protection_levels(rules, stop, target, self.stop_limit_gap))
        check_protection(rules, protection)
        self.restore_protection(rules, protection)
        return protection

    def restore_protection(self, rules: SymbolRules, protection: Protection) -> None:
        """Rest the protective orders (again, after a restart: they live in this process)."""
        with self._lock:
            self.balances.lock(rules.base_asset, protection.quantity)
            self._resting[protection.client_id] = PaperProtection(rules, protection)
            while len(self._resting) > MAX_PAPER_PROTECTIONS:
                self._resting.popitem(last=False)
            price = self.last_price(rules.symbol)
            if price is not None:
                self._resting[protection.client_id].match(price, self._fill)

    def cancel_protection(self, rules: SymbolRules, protection: Protection) -> list[LegState]:
        with self._lock:
            resting = self._resting.get(protection.client_id)
            if resting is None or not resting.is_open:
                raise ProtectionGone(None, "no protective order is open any more")
            unexecuted = protection.quantity - resting.executed
            resting.cancel()
            self.balances.lock(rules.base_asset, -unexecuted)
            return list(resting.states.values())

    def leg_states(self, rules: SymbolRules, protection: Protection) -> dict[str, LegState | None]:
        with self._lock:
            resting = self._resting.get(protection.client_id)
            return {client_id: resting.states[client_id] if resting else None
                    for client_id in protection.legs.values()}

    def open_orders(self) -> dict[str, LegState]:
        with self._lock:
            return {state.client_id: state for resting in self._resting.values()
                    for state in resting.states.values() if state.is_open}

    def adopt_balances(self, balances: Balances) -> None:
        """The paper balances the journal gives (PAPER_BALANCE_USDT and every fill since), at start-up."""
        self.balances = balances

    def _fill(self, rules: SymbolRules, client_order_id: str, side: str, quantity: Decimal, price: Decimal,
              resting: bool = False) -> Fill:
        """Move the paper balances for one trade; a resting order's base was already set aside."""
        if side == "BUY":
            cost = self._quote(rules, quantity * price, ROUND_UP)
            self._require(rules.quote_asset, cost)
            fee = (quantity * PAPER_FEE_RATE).quantize(PRICE_PLACES, rounding=ROUND_UP)
            fill = Fill(f"paper-{uuid.uuid4().hex[:12]}", client_order_id, "FILLED", side, quantity, cost,
                        {rules.base_asset: fee})
        else:
            if resting:
                self.balances.lock(rules.base_asset, -quantity)
            self._require(rules.base_asset, quantity)
            proceeds = self._quote(rules, quantity * price, ROUND_DOWN)
            fee = self._quote(rules, proceeds * PAPER_FEE_RATE, ROUND_UP)
            fill = Fill(f"paper-{uuid.uuid4().hex[:12]}", client_order_id, "FILLED", side, quantity, proceeds,
                        {rules.quote_asset: fee})
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


class PaperProtection:
    """One paper protection's legs, moved by prices as Binance moves resting orders."""

    def __init__(self, rules: SymbolRules, protection: Protection) -> None:
        self.rules = rules
        self.protection = protection
        self.triggered = False
        empty = Fill("", "", "NEW", "SELL", Decimal(0), Decimal(0))
        self.states = {client_id: LegState(client_id, "NEW", replace(empty, client_order_id=client_id))
                       for client_id in protection.legs.values()}

    @property
    def is_open(self) -> bool:
        return any(state.is_open for state in self.states.values())

    @property
    def executed(self) -> Decimal:
        return sum((state.fill.quantity for state in self.states.values()), Decimal(0))

    def match(self, last: Decimal, fill: Any) -> bool:
        """Fill or trigger the legs `last` crosses; `fill` is the paper exchange's trade. True if it did."""
        protection, legs = self.protection, self.protection.legs
        if not self.is_open:
            return False
        limit = protection.stop_limit or protection.stop
        if protection.target is not None and not self.triggered and last >= protection.target:
            self._execute(legs["take_profit"], protection.target, fill)
        elif protection.stop is not None and not self.triggered and last <= protection.stop:
            self.triggered = True
            self._end_others(legs["stop_loss"], "EXPIRED")
            if last >= limit:
                self._execute(legs["stop_loss"], last, fill)
        elif self.triggered and limit is not None and last >= limit:
            self._execute(legs["stop_loss"], limit, fill)
        else:
            return False
        return True

    def cancel(self) -> None:
        self._end_others(None, "CANCELED")

    def _execute(self, client_id: str, price: Decimal, fill: Any) -> None:
        done = fill(self.rules, client_id, "SELL", self.protection.quantity, price, resting=True)
        self.states[client_id] = LegState(client_id, "FILLED", done)
        self._end_others(client_id, "EXPIRED")

    def _end_others(self, keep: str | None, status: str) -> None:
        for client_id, state in self.states.items():
            if client_id != keep and state.is_open:
                self.states[client_id] = replace(state, status=status)


def make_exchange(settings: Settings) -> Exchange:
    return PaperExchange(settings) if settings.is_paper else BinanceExchange(settings)
