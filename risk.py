"""The risk engine: decides whether a signal may trade, and holds the state those decisions need.

Each rule is one small function given the proposed trade, the current state and the limits; it
returns None to allow or a `Refusal` with a human reason. Rules run in the order of the lists
below and the first refusal is the answer. Checking and reserving happen under one lock, so
parallel signals can never overshoot a limit. A reservation ends itself: `holding(ticket)` releases
it on the way out unless it was confirmed with a fill or kept for an order whose outcome is pending.
"""
from __future__ import annotations

import copy
import threading
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Callable, Iterator

from config import RiskLimits
from money import PRICE_PLACES, plain
from orders import Fill, Protection, SymbolRules
from signals import Signal

MAX_REMEMBERED_ALERTS = 100_000
MAX_SECONDS_AHEAD = 60


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str


@dataclass(frozen=True)
class Proposal:
    """A signal about to trade, with what the rules need to judge it (`price`: the expected entry)."""
    signal: Signal
    amount_usdt: Decimal
    balance: Decimal
    now: datetime
    price: Decimal | None = None


@dataclass
class Position:
    """What the bot holds in one symbol: base quantity net of fees, and the quote it cost."""
    symbol: str
    quantity: Decimal
    cost: Decimal
    entries: int
    opened_at: datetime
    protection: Protection | None = None
    protection_error: str | None = None

    @property
    def entry_price(self) -> Decimal:
        return (self.cost / self.quantity).quantize(PRICE_PLACES) if self.quantity else Decimal(0)


@dataclass
class Score:
    """The realized PnL of every sale, summed as it comes (quote asset, after fees): the figures /status
    and report.py show, in constant memory however long the history."""
    sales: int = 0
    wins: int = 0
    won: Decimal = Decimal(0)
    losses: int = 0
    lost: Decimal = Decimal(0)
    peak: Decimal = Decimal(0)
    max_drawdown: Decimal = Decimal(0)
    day: date | None = None
    day_total: Decimal = Decimal(0)

    @property
    def total(self) -> Decimal:
        return self.won + self.lost

    def add(self, at: datetime, pnl: Decimal) -> None:
        """One sale. Max drawdown is the largest fall of cumulative realized PnL from its previous peak."""
        self.sales += 1
        if pnl > 0:
            self.wins, self.won = self.wins + 1, self.won + pnl
        elif pnl < 0:
            self.losses, self.lost = self.losses + 1, self.lost + pnl
        self.peak = max(self.peak, self.total)
        self.max_drawdown = max(self.max_drawdown, self.peak - self.total)
        if self.day != at.date():
            self.day, self.day_total = at.date(), Decimal(0)
        self.day_total += pnl

    def summary(self, today: date) -> dict[str, str | int | None]:
        return {
            "closed_trades": self.sales,
            "realized_pnl_total": plain(self.total),
            "realized_pnl_today": plain(self.day_total if self.day == today else Decimal(0)),
            "win_rate_percent": plain((Decimal(100 * self.wins) / self.sales).quantize(Decimal("0.01")))
            if self.sales else None,
            "average_win": plain((self.won / self.wins).quantize(PRICE_PLACES)) if self.wins else None,
            "average_loss": plain((self.lost / self.losses).quantize(PRICE_PLACES)) if self.losses else None,
            "max_drawdown": plain(self.max_drawdown),
        }


@dataclass(frozen=True)
class Booking:
    """What a fill did to the ledger: the realized PnL and entry price of a sale (None for a BUY), and the
    quantity still held as an open position afterwards (0 once it is closed)."""
    position_left: Decimal
    realized_pnl: Decimal | None = None
    entry_price: Decimal | None = None


def closes_position(fill: Fill, whole: bool) -> bool:
    """A SELL asked to sell the whole position (an alert without an amount, or a protective order) that
    Binance reports FILLED closes it: what is left below the lot step is dust. Any other sale (EXPIRED after
    a partial fill, a leg still PARTIALLY_FILLED or CANCELED after trading part, an alert selling a part)
    only reduces it."""
    return whole and fill.status == "FILLED"


@dataclass
class Ledger:
    """Positions, the dust a sale leaves below the lot step, and the realized PnL of sales.

    Plain bookkeeping without a lock: the RiskEngine calls it under its lock, and the offline report
    replays the journal through it, so both count the same way.
    """
    positions: dict[str, Position] = field(default_factory=dict)
    dust: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    score: Score = field(default_factory=Score)

    def apply(self, rules: SymbolRules, fill: Fill, at: datetime, closes: bool) -> Booking:
        """The one rule for what a fill does: a BUY adds what reached the account at what it cost (fees in
        any asset included); a SELL takes what it sold at what it brought in, after fees, and closes the
        position when `closes` (see closes_position)."""
        if fill.side == "BUY":
            return Booking(self.add_entry(rules.symbol, fill.received_base(rules), fill.quote_cost(rules), at).quantity)
        if rules.symbol not in self.positions:
            return Booking(Decimal(0))
        entry_price = self.positions[rules.symbol].entry_price
        pnl = self.sell(rules.symbol, fill.quantity, fill.quote_proceeds(rules), at, closes)
        held = self.positions.get(rules.symbol)
        return Booking(held.quantity if held else Decimal(0), pnl, entry_price)

    def add_entry(self, symbol: str, quantity: Decimal, cost: Decimal, at: datetime) -> Position:
        """A filled BUY; a new position takes over the dust (and its cost) an earlier sale left."""
        held = self.positions.get(symbol)
        if held is None:
            dust_quantity, dust_cost = self.dust.pop(symbol, (Decimal(0), Decimal(0)))
            held = self.positions[symbol] = Position(symbol, dust_quantity, dust_cost, 0, at)
        held.quantity += quantity
        held.cost += cost
        held.entries += 1
        return held

    def sell(self, symbol: str, sold: Decimal, proceeds: Decimal, at: datetime, closes: bool) -> Decimal:
        """Realized PnL on what was sold: what it brought in after fees, less its share of the cost. A
        closing sale leaves the unsold rest (dust) with its share of the cost for the next entry; a
        partial one leaves it an open position."""
        held = self.positions[symbol]
        left = max(held.quantity - sold, Decimal(0))
        left_cost = (held.cost * left / held.quantity).quantize(PRICE_PLACES) if held.quantity else Decimal(0)
        pnl = proceeds - (held.cost - left_cost)
        if closes or left <= 0:
            del self.positions[symbol]
            if left > 0:
                self.dust[symbol] = (left, left_cost)
        else:
            held.quantity, held.cost = left, left_cost
        self.score.add(at, pnl)
        return pnl


@dataclass
class RiskState:
    day: date
    ledger: Ledger = field(default_factory=Ledger)
    pending_entries: int = 0
    trades_today: int = 0
    last_trade_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    closing: set[str] = field(default_factory=set)
    seen_alerts: OrderedDict[str, datetime] = field(default_factory=OrderedDict)
    paused: bool = False
    realized_today: Decimal = Decimal(0)

    @property
    def positions(self) -> dict[str, Position]:
        return self.ledger.positions

    @property
    def open_trades(self) -> int:
        return sum(p.entries for p in self.positions.values()) + self.pending_entries


@dataclass(frozen=True)
class Ticket:
    """A reserved slot for one order. `quantity` is the position's size when a SELL reserved it (a copy:
    the live position is only ever read under the engine's lock)."""
    symbol: str
    action: str
    reserved_at: datetime
    previous_trade_at: datetime | None
    quantity: Decimal = Decimal(0)
    protection: Protection | None = None

    @property
    def is_entry(self) -> bool:
        return self.action == "BUY"


@dataclass
class Slot:
    """A ticket held by `RiskEngine.holding`: leave the block confirmed or kept, or it is released."""
    ticket: Ticket
    settled: bool = False

    def keep(self) -> None:
        """An order may now exist: only its outcome (through the trader's _finish) ends the reservation."""
        self.settled = True


Rule = Callable[[Proposal, RiskState, RiskLimits], "Refusal | None"]


def not_stale(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    """Too old, or from the future (a clock far off, or a message kept to be replayed later): refused."""
    if p.signal.time is None:
        return None
    age = (p.now - p.signal.time).total_seconds()
    if age < -MAX_SECONDS_AHEAD:
        return Refusal("not_stale", f"alert from the future: its time is {int(-age)}s ahead of the bot's clock "
                                    f"(at most {MAX_SECONDS_AHEAD}s is allowed)")
    if limits.max_signal_age_seconds and age > limits.max_signal_age_seconds:
        return Refusal("not_stale", f"stale alert: sent {int(age)}s ago, MAX_SIGNAL_AGE_SECONDS is "
                                    f"{limits.max_signal_age_seconds}")
    return None


def not_duplicate(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    first_seen = state.seen_alerts.get(p.signal.alert_id or "")
    if first_seen is not None:
        return Refusal("not_duplicate", f"duplicate alert {p.signal.alert_id!r}: already handled at "
                                        f"{first_seen:%Y-%m-%d %H:%M:%S} UTC")
    return None


def not_paused(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if state.paused:
        return Refusal("not_paused", "trading paused: entries are refused until POST /resume (exits still work)")
    return None


def max_daily_loss(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    loss = -state.realized_today
    if limits.max_daily_loss_usdt and loss >= limits.max_daily_loss_usdt:
        return Refusal("max_daily_loss", f"today's realized loss {plain(loss)} {limits.quote_asset} has reached "
                                         f"MAX_DAILY_LOSS_USDT {limits.max_daily_loss_usdt} (until UTC midnight)")
    return None


def protective_levels_make_sense(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    stop, target, entry = p.signal.stop_loss, p.signal.take_profit, p.price
    if entry is None or not p.signal.wants_protection:
        return None
    if stop is not None and stop >= entry:
        return Refusal("protective_levels_make_sense", f"stop_loss {stop} must be below the entry price {plain(entry)}")
    if target is not None and target <= entry:
        return Refusal("protective_levels_make_sense",
                       f"take_profit {target} must be above the entry price {plain(entry)}")
    return None


def min_risk_reward(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    stop, target, entry = p.signal.stop_loss, p.signal.take_profit, p.price
    if not limits.min_risk_reward or stop is None or target is None or entry is None:
        return None
    ratio = (target - entry) / (entry - stop)
    if ratio < limits.min_risk_reward:
        return Refusal("min_risk_reward", f"risk/reward {ratio:.2f} is below MIN_RISK_REWARD {limits.min_risk_reward}")
    return None


def one_entry_per_protected_position(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    """Protective orders guard one entry's quantity: a protected position is never added to."""
    held = state.positions.get(p.signal.symbol)
    if held is not None and (held.protection is not None or p.signal.wants_protection):
        return Refusal("one_entry_per_protected_position",
                       f"a position in {p.signal.symbol} is already open; a position with "
                       f"stop_loss/take_profit is one entry (sell it first)")
    return None


def not_being_sold(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    """A BUY never adds to a position whose SELL is in flight: the SELL's size was taken before it."""
    if p.signal.symbol in state.closing:
        return Refusal("not_being_sold", f"the position in {p.signal.symbol} is being sold right now")
    return None


def min_confidence(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if p.signal.confidence is not None and p.signal.confidence < limits.min_confidence:
        return Refusal("min_confidence", f"confidence {p.signal.confidence} is below "
                                         f"MIN_CONFIDENCE {limits.min_confidence}")
    return None


def min_balance(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if p.balance < limits.min_balance_usdt:
        return Refusal("min_balance", f"balance {p.balance} {limits.quote_asset} is below "
                                      f"MIN_BALANCE_USDT {limits.min_balance_usdt}")
    return None


def max_risk_per_trade(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if p.amount_usdt > limits.max_risk_per_trade:
        return Refusal("max_risk_per_trade", f"trade amount {plain(p.amount_usdt)} {limits.quote_asset} is above "
                                             f"MAX_RISK_PER_TRADE {limits.max_risk_per_trade}")
    return None


def max_open_trades(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if state.open_trades >= limits.max_open_trades:
        return Refusal("max_open_trades", f"{state.open_trades} trades open, "
                                          f"MAX_OPEN_TRADES is {limits.max_open_trades}")
    return None


def max_trades_per_day(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if state.trades_today >= limits.max_trades_per_day:
        return Refusal("max_trades_per_day", f"{state.trades_today} trades today (UTC), "
                                             f"MAX_TRADES_PER_DAY is {limits.max_trades_per_day}")
    return None


def cooldown(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    last = state.last_trade_at.get((p.signal.symbol, p.signal.action))
    if last is None:
        return None
    elapsed = max((p.now - last).total_seconds(), 0)  # a parallel trade stamped after p.now: just now
    if elapsed < limits.cooldown_seconds:
        return Refusal("cooldown", f"cooldown: last {p.signal.action} {p.signal.symbol} was {int(elapsed)}s ago, "
                                   f"COOLDOWN_SECONDS is {limits.cooldown_seconds}")
    return None


def has_open_position(p: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    if p.signal.symbol not in state.positions:
        return Refusal("has_open_position", f"no open position in {p.signal.symbol} to sell (spot only: no shorting)")
    if p.signal.symbol in state.closing:
        return Refusal("has_open_position", f"the position in {p.signal.symbol} is already being sold")
    return None


ENTRY_RULES: list[Rule] = [not_stale, not_duplicate, not_paused, max_daily_loss, protective_levels_make_sense,
                           min_risk_reward, one_entry_per_protected_position, not_being_sold, min_confidence,
                           min_balance, max_risk_per_trade, max_open_trades, max_trades_per_day, cooldown]
EXIT_RULES: list[Rule] = [not_stale, not_duplicate, has_open_position, cooldown]


def first_refusal(rules: list[Rule], proposal: Proposal, state: RiskState, limits: RiskLimits) -> Refusal | None:
    for rule in rules:
        refusal = rule(proposal, state, limits)
        if refusal is not None:
            return refusal
    return None


class RiskEngine:
    """Thread-safe owner of the risk state. Counters roll over at UTC midnight.

    One lock: webhook threads (BUY and SELL), the monitor thread (exits by the exchange) and the
    reconcile thread (settled orders) all change the same positions and counters.
    """

    def __init__(self, limits: RiskLimits, today: date) -> None:
        self.limits = limits
        self._state = RiskState(day=today)
        self._lock = threading.Lock()

    def reserve(self, proposal: Proposal) -> Ticket | Refusal:
        """Check the rules and, if they allow, reserve the slot in the same atomic step."""
        signal = proposal.signal
        with self._lock:
            self._roll_day(proposal.now)
            rules = ENTRY_RULES if signal.is_entry else EXIT_RULES
            refusal = first_refusal(rules, proposal, self._state, self.limits)
            if refusal is None or refusal.rule != not_duplicate.__name__:
                self._remember_alert(signal.alert_id, proposal.now)
            return refusal or self._take_slot(signal.symbol, signal.action, proposal.now)

    @contextmanager
    def holding(self, ticket: Ticket) -> Iterator[Slot]:
        """The block's reservation: released on the way out unless `confirm` or `slot.keep()` settled it,
        so no path (a refusal, an exception) can leave a slot taken."""
        slot = Slot(ticket)
        try:
            yield slot
        finally:
            if not slot.settled:
                self.release(ticket)

    def hold(self, symbol: str, action: str, alert_id: str | None, at: datetime) -> Ticket:
        """Reserve a slot without checks: for an order found in flight at start-up."""
        with self._lock:
            self._remember_alert(alert_id, at)
            return self._take_slot(symbol, action, at)

    def claim_exit(self, symbol: str, at: datetime) -> Ticket | None:
        """Reserve the exit of a position the exchange is closing (stop or target); None if a SELL is under way."""
        with self._lock:
            if symbol not in self._state.positions or symbol in self._state.closing:
                return None
            return self._take_slot(symbol, "SELL", at)

    def remember_alert(self, alert_id: str | None, at: datetime) -> None:
        with self._lock:
            self._remember_alert(alert_id, at)

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._state.paused = paused

    def release(self, ticket: Ticket) -> None:
        """The order did not happen: give back the slot, the day's count and the cooldown."""
        with self._lock:
            self._end_reservation(ticket)
            key = (ticket.symbol, ticket.action)
            if self._state.last_trade_at.get(key) == ticket.reserved_at:
                self._restore_cooldown(key, ticket.previous_trade_at)
            if ticket.is_entry and ticket.reserved_at.date() == self._state.day:
                self._state.trades_today -= 1

    def confirm(self, ticket: Ticket, rules: SymbolRules, fill: Fill, at: datetime, closes: bool) -> Booking:
        """The order executed (all or part): book the fill and end the reservation."""
        with self._lock:
            self._end_reservation(ticket)
            return self._book(rules, fill, at, closes)

    def book_exit(self, rules: SymbolRules, fill: Fill, at: datetime) -> Booking:
        """Part of a protective order executed while its position stays open (no reservation to end)."""
        with self._lock:
            return self._book(rules, fill, at, closes=False)

    def restore_fill(self, rules: SymbolRules, fill: Fill, at: datetime, closes: bool) -> None:
        """Replay one filled trade from the journal at start-up."""
        with self._lock:
            self._roll_day(at)
            self._state.last_trade_at[(rules.symbol, fill.side)] = at
            if fill.side == "BUY":
                self._state.trades_today += at.date() == self._state.day
            self._book(rules, fill, at, closes)

    def set_protection(self, symbol: str, protection: Protection | None, error: str | None = None) -> None:
        with self._lock:
            held = self._state.positions.get(symbol)
            if held is not None:
                held.protection, held.protection_error = protection, error

    def watch_list(self) -> list[tuple[str, Protection, Decimal]]:
        """(symbol, protection, position quantity) of each protected position no SELL is closing now."""
        with self._lock:
            return [(p.symbol, p.protection, p.quantity) for p in self._state.positions.values()
                    if p.protection is not None and p.symbol not in self._state.closing]

    def durable_state(self) -> RiskState:
        """A copy of what the journal determines (no reservation in flight, no pause): for a checkpoint."""
        with self._lock:
            state = copy.deepcopy(self._state)
        state.pending_entries, state.closing, state.paused = 0, set(), False
        return state

    def adopt_state(self, state: RiskState) -> None:
        """Start from a checkpoint's state (before anything is reserved)."""
        with self._lock:
            self._state = replace(state, paused=self._state.paused)

    def position_quantity(self, symbol: str) -> Decimal:
        with self._lock:
            held = self._state.positions.get(symbol)
            return held.quantity if held else Decimal(0)

    def position_symbols(self) -> list[str]:
        with self._lock:
            return list(self._state.positions)

    def performance(self, today: date) -> dict[str, str | int | None]:
        with self._lock:
            return self._state.ledger.score.summary(today)

    def summary(self, now: datetime) -> dict[str, object]:
        """Read-only figures for the start-up report."""
        with self._lock:
            self._roll_day(now)
            state = self._state
            return {"positions": {s: (p.quantity, p.cost) for s, p in state.positions.items()},
                    "trades_today": state.trades_today, "paused": state.paused,
                    "cooling": [f"{symbol} {action}" for (symbol, action), at in state.last_trade_at.items()
                                if (now - at).total_seconds() < self.limits.cooldown_seconds]}

    def snapshot(self, now: datetime) -> dict[str, object]:
        with self._lock:
            self._roll_day(now)
            return {
                "paused": self._state.paused,
                "open_trades": self._state.open_trades,
                "trades_today": self._state.trades_today,
                "positions": {s: {"quantity": plain(p.quantity), "cost": plain(p.cost),
                                  "entry_price": plain(p.entry_price), "entries": p.entries,
                                  "opened_at": p.opened_at.isoformat(timespec="seconds"),
                                  "protection": p.protection.describe() if p.protection else None,
                                  "protection_error": p.protection_error}
                              for s, p in self._state.positions.items()},
                "dust": {s: {"quantity": plain(q), "cost": plain(c)}
                         for s, (q, c) in self._state.ledger.dust.items()},
            }

    def _book(self, rules: SymbolRules, fill: Fill, at: datetime, closes: bool) -> Booking:
        booking = self._state.ledger.apply(rules, fill, at, closes)
        if booking.realized_pnl is not None and at.date() == self._state.day:
            self._state.realized_today += booking.realized_pnl
        return booking

    def _take_slot(self, symbol: str, action: str, now: datetime) -> Ticket:
        key = (symbol, action)
        held = self._state.positions.get(symbol)
        ticket = Ticket(symbol, action, now, self._state.last_trade_at.get(key))
        if held is not None and action == "SELL":
            ticket = replace(ticket, quantity=held.quantity, protection=held.protection)
        self._state.last_trade_at[key] = now
        if ticket.is_entry:
            self._state.pending_entries += 1
            self._state.trades_today += now.date() == self._state.day
        else:
            self._state.closing.add(symbol)
        return ticket

    def _remember_alert(self, alert_id: str | None, at: datetime) -> None:
        if not alert_id:
            return
        self._state.seen_alerts[alert_id] = at
        if len(self._state.seen_alerts) > MAX_REMEMBERED_ALERTS:
            self._state.seen_alerts.popitem(last=False)

    def _end_reservation(self, ticket: Ticket) -> None:
        if ticket.is_entry:
            self._state.pending_entries -= 1
        else:
            self._state.closing.discard(ticket.symbol)

    def _restore_cooldown(self, key: tuple[str, str], previous: datetime | None) -> None:
        if previous is None:
            self._state.last_trade_at.pop(key, None)
        else:
            self._state.last_trade_at[key] = previous

    def _roll_day(self, now: datetime) -> None:
        if now.date() > self._state.day:
            self._state.day = now.date()
            self._state.trades_today = 0
            self._state.realized_today = Decimal(0)
