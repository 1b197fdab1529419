"""What an order is: a symbol's trading rules, a checked plan, a fill, protective orders, statuses and ids.

Pure data and arithmetic, no I/O: the exchange adapter, the risk engine, the journal and the trader all
speak these types, and none of them needs another to do so.
"""
from __future__ import annotations

import functools
import hashlib
import uuid
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import ROUND_CEILING, ROUND_DOWN, ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from money import PRICE_PLACES, floor_to_step, plain

if TYPE_CHECKING:
    from risk import Ticket


class OrderStatus(StrEnum):
    """Our word for an order's state; the value is what trades.csv's Status column says."""
    PENDING = "PENDING"    # sent, no answer yet (only in /status)
    UNKNOWN = "UNKNOWN"    # the answer was unclear: it is being looked up
    FILLED = "FILLED"      # executed (all or part: the row's ExchangeStatus says which)
    FAILED = "FAILED"      # certainly not executed
    OPEN = "OPEN"          # protective orders resting on the exchange
    CANCELED = "CANCELED"  # protective orders lifted by the bot


FINAL_STATUSES = (OrderStatus.FILLED, OrderStatus.FAILED)


class OrderRefused(Exception):
    """We refused to send the order (too small for the exchange's filters, no price, ...)."""


@dataclass(frozen=True)
class SymbolRules:
    """A symbol's trading filters, from exchangeInfo (filters.md). A zero means "no such limit"."""
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
    market_step_size: Decimal = Decimal(0)
    market_min_qty: Decimal = Decimal(0)
    market_max_qty: Decimal = Decimal(0)
    max_notional: Decimal = Decimal(0)
    max_notional_applies_to_market: bool = False

    @classmethod
    @functools.lru_cache(maxsize=1024)
    def bare(cls, symbol: str, quote_asset: str) -> SymbolRules:
        """Only the assets, with permissive filters: enough to replay the journal without Binance."""
        return cls(symbol=symbol, base_asset=symbol.removesuffix(quote_asset), quote_asset=quote_asset)

    @classmethod
    def from_exchange_info(cls, info: dict[str, Any]) -> SymbolRules:
        filters = {f["filterType"]: f for f in info.get("filters", [])}
        lot, market_lot = filters.get("LOT_SIZE", {}), filters.get("MARKET_LOT_SIZE", {})
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
            market_step_size=Decimal(market_lot.get("stepSize", "0")),
            market_min_qty=Decimal(market_lot.get("minQty", "0")),
            market_max_qty=Decimal(market_lot.get("maxQty", "0")),
            max_notional=Decimal(notional.get("maxNotional", "0")),
            max_notional_applies_to_market=bool(notional.get("applyMaxToMarket", False)),
        )

    def sellable(self, quantity: Decimal, held: Decimal) -> Decimal:
        """What a market order can sell of `quantity`: capped by what the account holds, rounded down."""
        return self.market_quantity(min(quantity, held))

    def market_quantity(self, quantity: Decimal) -> Decimal:
        """Rounded down to the lot step (and MARKET_LOT_SIZE's, when it sets one)."""
        return floor_to_step(floor_to_step(quantity, self.step_size), self.market_step_size)

    def round_price(self, price: Decimal, rounding: str) -> Decimal:
        if self.tick_size <= 0:
            return price
        return (price / self.tick_size).to_integral_value(rounding=rounding) * self.tick_size

    def quote_amount(self, amount: Decimal) -> Decimal:
        return amount.quantize(Decimal(1).scaleb(-self.quote_precision), rounding=ROUND_DOWN)

    def buy_problem(self, amount: Decimal, price: Decimal | None) -> str | None:
        """A MARKET BUY spending `amount`: NOTIONAL (as the market applies it), and at `price` when known,
        the quantity it buys against LOT_SIZE and MARKET_LOT_SIZE."""
        return (self._notional_problem(amount, market=True)
                or (self._quantity_problem(floor_to_step(amount / price, self.step_size), market=True)
                    if price else None))

    def market_order_problem(self, quantity: Decimal, price: Decimal) -> str | None:
        """A MARKET order for `quantity` priced at `price` (the last known price)."""
        return self._quantity_problem(quantity, market=True) or self._notional_problem(quantity * price, market=True)

    def leg_problem(self, quantity: Decimal, price: Decimal) -> str | None:
        """A resting protective leg: LOT_SIZE, and NOTIONAL's minimum and maximum always apply to it."""
        return self._quantity_problem(quantity, market=False) or self._notional_problem(quantity * price, market=False)

    def _quantity_problem(self, quantity: Decimal, market: bool) -> str | None:
        low = max(self.min_qty, self.market_min_qty if market else Decimal(0))
        highs = [limit for limit in (self.max_qty, self.market_max_qty if market else Decimal(0)) if limit > 0]
        if quantity <= 0 or quantity < low:
            filter_name = "MARKET_LOT_SIZE" if market and self.market_min_qty > self.min_qty else "LOT_SIZE"
            return (f"quantity {plain(quantity)} {self.base_asset} is below Binance's minimum "
                    f"({filter_name} minQty {plain(low)}) for {self.symbol}")
        if highs and quantity > min(highs):
            return (f"quantity {plain(quantity)} {self.base_asset} is above Binance's maximum "
                    f"(maxQty {plain(min(highs))}) for {self.symbol}: sell it in parts with `quantity`")
        return None

    def _notional_problem(self, value: Decimal, market: bool) -> str | None:
        if (self.min_notional_applies_to_market or not market) and value < self.min_notional:
            return (f"value {plain(value)} {self.quote_asset} is below Binance's minimum order "
                    f"(NOTIONAL {plain(self.min_notional)}) for {self.symbol}")
        if self.max_notional > 0 and (self.max_notional_applies_to_market or not market) and value > self.max_notional:
            return (f"value {plain(value)} {self.quote_asset} is above Binance's maximum order "
                    f"(NOTIONAL maxNotional {plain(self.max_notional)}) for {self.symbol}")
        return None


@dataclass(frozen=True)
class Fill:
    """What an executed order did, as Binance reported it (cumulative over the order's trades).

    `other_fees_value`: commission paid in an asset that is neither the base nor the quote (BNB with
    Binance's fee discount), valued in the quote asset at the fill's time.
    """
    order_id: str
    client_order_id: str
    status: str
    side: str
    quantity: Decimal
    quote_amount: Decimal
    fees: dict[str, Decimal] = field(default_factory=dict)
    other_fees_value: Decimal = Decimal(0)

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

    @property
    def fees_text(self) -> str:
        """Every fee asset: `0.0000002 BTC + 0.0000375 BNB`."""
        return " + ".join(f"{plain(amount)} {asset}" for asset, amount in self.fees.items())

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

    def other_fee_assets(self, rules: SymbolRules) -> list[str]:
        return [asset for asset in self.fees if asset not in (rules.base_asset, rules.quote_asset)]

    def received_base(self, rules: SymbolRules) -> Decimal:
        """Base asset that reached the account: Binance takes a BUY's commission from it (unless in BNB)."""
        return self.quantity - self.fees.get(rules.base_asset, Decimal(0))

    def quote_cost(self, rules: SymbolRules) -> Decimal:
        return self.quote_amount + self.fees.get(rules.quote_asset, Decimal(0)) + self.other_fees_value

    def quote_proceeds(self, rules: SymbolRules) -> Decimal:
        return self.quote_amount - self.fees.get(rules.quote_asset, Decimal(0)) - self.other_fees_value

    def fee_in_quote(self, rules: SymbolRules) -> Decimal:
        """Every fee valued in the quote asset: the base asset's at the fill price, other assets' at theirs."""
        base_fee = (self.fees.get(rules.base_asset, Decimal(0)) * self.price).quantize(PRICE_PLACES)
        return self.fees.get(rules.quote_asset, Decimal(0)) + base_fee + self.other_fees_value

    def minus(self, earlier: Fill) -> Fill:
        """What executed since `earlier` (an earlier look at the same order)."""
        fees = {asset: amount - earlier.fees.get(asset, Decimal(0)) for asset, amount in self.fees.items()}
        return replace(self, quantity=self.quantity - earlier.quantity,
                       quote_amount=self.quote_amount - earlier.quote_amount,
                       fees={asset: amount for asset, amount in fees.items() if amount},
                       other_fees_value=self.other_fees_value - earlier.other_fees_value)

    def plus(self, later: Fill) -> Fill:
        """This fill and a later part of the same order, together."""
        fees = dict(self.fees)
        for asset, amount in later.fees.items():
            fees[asset] = fees.get(asset, Decimal(0)) + amount
        return replace(later, quantity=self.quantity + later.quantity,
                       quote_amount=self.quote_amount + later.quote_amount, fees=fees,
                       other_fees_value=self.other_fees_value + later.other_fees_value)


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
    """Each protective leg must be an order Binance accepts: refuse before sending if it is not."""
    for price in (protection.stop_limit, protection.target):
        problem = price is not None and rules.leg_problem(protection.quantity, price)
        if problem:
            raise OrderRefused(problem)


@dataclass(frozen=True)
class OrderPlan:
    """A market order checked against the symbol's filters, ready to send.

    A BUY spends `amount` of the quote asset, or buys `quantity`; a SELL sells `quantity`. `price` is the
    reference price the checks used (paper mode fills at it).
    """
    rules: SymbolRules
    side: str
    amount: Decimal = Decimal(0)
    quantity: Decimal = Decimal(0)
    price: Decimal = Decimal(0)

    @classmethod
    def of_quantity(cls, rules: SymbolRules, side: str, quantity: Decimal, price: Decimal) -> OrderPlan:
        """A MARKET order for `quantity`, checked at `price`; OrderRefused if Binance's filters would refuse it."""
        problem = rules.market_order_problem(quantity, price)
        if problem:
            raise OrderRefused(problem)
        return cls(rules, side, quantity=quantity, price=price)


OPEN_ORDER_STATUSES = ("NEW", "PENDING_NEW", "PARTIALLY_FILLED")


@dataclass(frozen=True)
class LegState:
    """One protective order as the exchange shows it: its Binance status and what it executed so far."""
    client_id: str
    status: str
    fill: Fill
    list_id: str | None = None

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_ORDER_STATUSES


@dataclass(frozen=True)
class Filled:
    """The order executed (all of it, or part: `fill.status` says which)."""
    fill: Fill


@dataclass(frozen=True)
class Failed:
    """Certainly nothing executed."""
    reason: str


@dataclass(frozen=True)
class Unknown:
    """The order may or may not exist: it is looked up until that is certain."""
    reason: str


Outcome = Filled | Failed | Unknown


@dataclass
class Order:
    """An order the bot sends, from its intent to its outcome.

    `sent_epoch` is when it was signed (seconds since the epoch): Binance may still execute it until
    that time plus the request's recvWindow, so "never placed" is concluded only after that.
    `lifted` is the protection a SELL took off its position first, to put back if the SELL fails.
    `ticket` is its risk reservation (None for part of a protective order that leaves the position open).
    `whole`: a SELL for the whole position (not a part the alert asked for), which FILLED closes.
    """
    client_order_id: str
    rules: SymbolRules
    side: str
    sent_at: datetime
    sent_epoch: float
    ticket: Ticket | None
    amount: Decimal | None = None
    quantity: Decimal | None = None
    alert_id: str | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    lifted: Protection | None = None
    whole: bool = True
    status: OrderStatus = OrderStatus.PENDING
    record: TradeRecord | None = None

    @property
    def is_entry(self) -> bool:
        return self.side == "BUY"

    @property
    def wants_protection(self) -> bool:
        return self.is_entry and (self.stop_loss is not None or self.take_profit is not None)

    def as_dict(self) -> dict[str, str]:
        return {"client_order_id": self.client_order_id, "symbol": self.rules.symbol,
                "action": self.side, "status": self.status,
                "since": self.sent_at.isoformat(timespec="seconds")}


@dataclass(frozen=True)
class TradeRecord:
    """One order attempt as journalled in trades.csv and reported in answers and Telegram messages."""
    at: datetime
    symbol: str
    action: str
    status: OrderStatus
    client_order_id: str
    reason: str
    amount: Decimal | None = None
    price: Decimal | None = None
    order_id: str | None = None
    quantity: Decimal | None = None
    net_quantity: Decimal | None = None
    fee: Decimal | None = None
    fee_asset: str | None = None
    realized_pnl: Decimal | None = None
    entry_price: Decimal | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None
    exchange_status: str | None = None
    fees: str | None = None
    fee_in_quote: Decimal | None = None
    position_left: Decimal | None = None
    mode: str | None = None
