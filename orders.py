"""What an order is: a symbol's trading rules, a checked plan, a fill, protective orders, statuses and ids.

Pure data and arithmetic, no I/O: the exchange adapter, the risk engine, the journal and the trader all
speak these types, and none of them needs another to do so.
"""
from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import Any

from money import PRICE_PLACES, floor_to_step, plain


class OrderStatus(StrEnum):
    """Our word for an order's state; the value is what trades.csv's Status column says."""
    PENDING = "PENDING"    # sent, no answer yet (only in /status)
    UNKNOWN = "UNKNOWN"    # the answer was unclear: it is being looked up
    FILLED = "FILLED"      # executed (all or part: the row's ExchangeStatus says which)
    FAILED = "FAILED"      # certainly not executed
    OPEN = "OPEN"          # protective orders resting on the exchange
    CANCELED = "CANCELED"  # protective orders lifted by the bot


FINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.FAILED)
PROTECTION_STATUSES = (OrderStatus.OPEN, OrderStatus.CANCELED, OrderStatus.FAILED)


class OrderRefused(Exception):
    """We refused to send the order (too small for the exchange's filters, no price, ...)."""


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's trading filters, from exchangeInfo."""
    symbol: str
    base_asset: str
    quote_asset: str
    step_size: Decimal = Decimal("0.00000001")
    min_qty: Decimal = Decimal(0)
    max_qty: Decimal = Decimal(0)
    tick_size: Decimal = Decimal("0.00000001")
    min_notional: Decimal = Decimal(0)
    min_notional_applies_to_market: bool = True
    quote_precision: int = 8

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def bare(cls, symbol: str, quote_asset: str) -> SymbolRules:
        """Only the assets, with permissive filters: enough to replay the journal without Binance."""
        return cls(symbol=symbol, base_asset=symbol.removesuffix(quote_asset), quote_asset=quote_asset)

    @classmethod
    def from_exchange_info(cls, info: dict[str, Any]) -> SymbolRules:
        filters = {f["filterType"]: f for f in info.get("filters", [])}
        lot = filters.get("LOT_SIZE", {})
        notional = filters.get("NOTIONAL") or filters.get("MIN_NOTIONAL") or {}
        applies = notional.get("applyMinToMarket", notional.get("applyToMarket", True))
        return cls(
            symbol=info["symbol"], base_asset=info["baseAsset"], quote_asset=info["quoteAsset"],
            step_size=Decimal(lot.get("stepSize", "0")), min_qty=Decimal(lot.get("minQty", "0")),
            max_qty=Decimal(lot.get("maxQty", "0")),
            tick_size=Decimal(filters.get("PRICE_FILTER", {}).get("tickSize", "0")),
            min_notional=Decimal(notional.get("minNotional", "0")),
            min_notional_applies_to_market=bool(applies),
            quote_precision=int(info.get("quoteAssetPrecision", info.get("quotePrecision", 8))),
        )

    def sellable(self, quantity: Decimal, held: Decimal) -> Decimal:
        """What can be sold of `quantity`: capped by what the account holds, rounded down to the lot step."""
        return floor_to_step(min(quantity, held), self.step_size)

    def round_price(self, price: Decimal, rounding: str) -> Decimal:
        if self.tick_size <= 0:
            return price
        return (price / self.tick_size).to_integral_value(rounding=rounding) * self.tick_size

    def quote_amount(self, amount: Decimal) -> Decimal:
        return amount.quantize(Decimal(1).scaleb(-self.quote_precision), rounding=ROUND_DOWN)

    def buy_problem(self, amount: Decimal) -> str | None:
        if self.min_notional_applies_to_market and amount < self.min_notional:
            return (f"amount {plain(amount)} {self.quote_asset} is below Binance's minimum order "
                    f"(NOTIONAL {plain(self.min_notional)}) for {self.symbol}")
        return None

    def sell_problem(self, quantity: Decimal, price: Decimal) -> str | None:
        if quantity <= 0 or quantity < self.min_qty:
            return (f"quantity {plain(quantity)} {self.base_asset} is below Binance's minimum "
                    f"(LOT_SIZE minQty {plain(self.min_qty)}) for {self.symbol}")
        if self.min_notional_applies_to_market and quantity * price < self.min_notional:
            return (f"value {plain(quantity * price)} {self.quote_asset} is below Binance's minimum order "
                    f"(NOTIONAL {plain(self.min_notional)}) for {self.symbol}")
        return None


@dataclass(frozen=True)
class Fill:
    """What an executed order did, as Binance reported it."""
    order_id: str
    client_order_id: str
    status: str
    side: str
    quantity: Decimal
    quote_amount: Decimal
    fees: dict[str, Decimal] = field(default_factory=dict)

    @property
    def price(self) -> Decimal:
        """Average fill price, to 8 decimal places."""
        return (self.quote_amount / self.quantity).quantize(PRICE_PLACES) if self.quantity else Decimal(0)

    @property
    def fee_asset(self) -> str:
        return next(iter(self.fees), "")

    @property
    def fee(self) -> Decimal:
        return self.fees.get(self.fee_asset, Decimal(0))

    @classmethod
    def from_order(cls, reply: dict[str, Any]) -> Fill:
        fees: dict[str, Decimal] = {}
        for part in reply.get("fills", []):
            asset = part["commissionAsset"]
            fees[asset] = fees.get(asset, Decimal(0)) + Decimal(part["commission"])
        return cls(order_id=str(reply["orderId"]), client_order_id=reply.get("clientOrderId", ""),
                   status=reply.get("status", ""), side=reply.get("side", ""),
                   quantity=Decimal(reply.get("executedQty", "0")),
                   quote_amount=Decimal(reply.get("cummulativeQuoteQty", "0")), fees=fees)

    def received_base(self, rules: SymbolRules) -> Decimal:
        """Base asset that reached the account: Binance takes a BUY's commission from it."""
        return self.quantity - self.fees.get(rules.base_asset, Decimal(0))

    def quote_cost(self, rules: SymbolRules) -> Decimal:
        return self.quote_amount + self.fees.get(rules.quote_asset, Decimal(0))

    def quote_proceeds(self, rules: SymbolRules) -> Decimal:
        return self.quote_amount - self.fees.get(rules.quote_asset, Decimal(0))


PROTECTION_SUFFIXES = {"stop_loss": "sl", "take_profit": "tp", "list": "oc", "refused": "pr"}


def client_order_id_for(alert_id: str | None) -> str:
    """Our id for the order (Binance's newClientOrderId): derived from the alert id when there is one."""
    seed = alert_id or uuid.uuid4().hex
    return "tv" + hashlib.sha256(seed.encode()).hexdigest()[:30]


def protection_id(entry_id: str, kind: str) -> str:
    """A protective order's client id: the entry's id and a two-letter suffix for its kind."""
    return entry_id + PROTECTION_SUFFIXES[kind]


def entry_id_of(protection_client_id: str) -> str:
    return protection_client_id[:-len(PROTECTION_SUFFIXES["list"])]


@dataclass(frozen=True)
class Protection:
    """Resting SELL orders that guard a position on the exchange: a stop-loss, a take-profit, or both (OCO).

    The legs' client order ids derive from the entry's, so they can be found again after a restart.
    """
    entry_id: str
    quantity: Decimal
    stop: Decimal | None
    stop_limit: Decimal | None
    target: Decimal | None
    list_id: str | None = None

    @property
    def legs(self) -> dict[str, str]:
        """Client order id of each leg, by kind (`stop_loss`, `take_profit`)."""
        kinds = [kind for kind, level in (("stop_loss", self.stop), ("take_profit", self.target)) if level is not None]
        return {kind: protection_id(self.entry_id, kind) for kind in kinds}

    @property
    def client_id(self) -> str:
        """The id the journal files it under: the OCO's list id, or its single leg's."""
        if len(self.legs) == 2:
            return protection_id(self.entry_id, "list")
        return next(iter(self.legs.values()))

    def describe(self) -> str:
        parts = []
        if self.stop is not None:
            parts.append(f"stop-loss {plain(self.stop)} (limit {plain(self.stop_limit or self.stop)})")
        if self.target is not None:
            parts.append(f"take-profit {plain(self.target)}")
        kind = "OCO " if len(parts) == 2 else ""
        return f"{kind}{' and '.join(parts)} for {plain(self.quantity)}"


def protection_levels(rules: SymbolRules, stop: Decimal | None, target: Decimal | None,
                      gap_percent: Decimal) -> tuple[Decimal | None, Decimal | None, Decimal | None]:
    """Stop rounded down and target up to the tick; the stop's limit `gap_percent` below the stop."""
    if stop is None:
        rounded_stop = stop_limit = None
    else:
        rounded_stop = rules.round_price(stop, ROUND_FLOOR)
        stop_limit = rules.round_price(rounded_stop * (1 - gap_percent / 100), ROUND_FLOOR)
    rounded_target = None if target is None else rules.round_price(target, ROUND_CEILING)
    return rounded_stop, stop_limit, rounded_target


def check_protection(rules: SymbolRules, protection: Protection) -> None:
    """Each protective leg must be an order Binance accepts: refuse before sending if it is too small."""
    for price in (protection.stop_limit, protection.target):
        problem = price is not None and rules.sell_problem(protection.quantity, price)
        if problem:
            raise OrderRefused(problem)


@dataclass(frozen=True)
class OrderPlan:
    """A market order checked against the symbol's filters, ready to send.

    A BUY spends `amount` of the quote asset; a SELL sells `quantity`. `price` is the reference
    price the checks used (paper mode fills at it).
    """
    rules: SymbolRules
    side: str
    amount: Decimal = Decimal(0)
    quantity: Decimal = Decimal(0)
    price: Decimal = Decimal(0)


@dataclass
class Order:
    """An order the bot sent (or is about to send) whose outcome is not recorded yet."""
    client_order_id: str
    rules: SymbolRules
    side: str
    sent_at: datetime
    amount: Decimal | None = None
    quantity: Decimal | None = None
    alert_id: str | None = None
    status: OrderStatus = OrderStatus.PENDING

    def as_dict(self) -> dict[str, str]:
        return {"client_order_id": self.client_order_id, "symbol": self.rules.symbol,
                "action": self.side, "status": self.status,
                "since": self.sent_at.isoformat(timespec="seconds")}
