"""The risk engine: decides whether a signal may trade, and holds the state those decisions need.

Each rule is one small function given the proposed trade, the current state and the limits; it
returns None to allow or a `Refusal` with a human reason. Rules run in the order of the lists
below and the first refusal is the answer. Checking and reserving happen under one lock, so
parallel signals can never overshoot a limit; a reservation is released if its order fails.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Callable

from binance_client import Protection
from config import Settings
from money import PRICE_PLACES, plain
from signals import Signal

MAX_REMEMBERED_ALERTS = 100_000


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


@dataclass(frozen=True)
class ClosedTrade:
    symbol: str
    closed_at: datetime
    realized_pnl: Decimal


@dataclass
class Ledger:
    """Positions, the dust a sale leaves below the lot step, and the realized PnL of closed trades.

    Plain bookkeeping without a lock: the RiskEngine calls it under its lock, and the offline report
    replays the journal through it, so both count the same way.
    """
    positions: dict[str, Position] = field(default_factory=dict)
    dust: dict[str, tuple[Decimal, Decimal]] = field(default_factory=dict)
    closed: list[ClosedTrade] = field(default_factory=list)

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

    def close(self, symbol: str, sold: Decimal, proceeds: Decimal, at: datetime) -> tuple[Position, Decimal]:
        """A filled SELL closes the position. Realized PnL is on what was sold: what it brought in after
        fees, less its share of the cost; the unsold rest (dust) keeps its share for the next entry."""
        closed = self.positions.pop(symbol)
        left = max(closed.quantity - sold, Decimal(0))
        left_cost = (closed.cost * left / closed.quantity).quantize(PRICE_PLACES) if closed.quantity else Decimal(0)
        if left > 0:
            self.dust[symbol] = (left, left_cost)
        pnl = proceeds - (closed.cost - left_cost)
        self.closed.append(ClosedTrade(symbol, at, pnl))
        return closed, pnl


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
    """A reserved slot: confirm it with the fill, or release it if the order fails."""
    signal: Signal
    reserved_at: datetime
    previous_trade_at: datetime | None
    position: Position | None = None


Rule = Callable[[Proposal, RiskState, Settings], "Refusal | None"]


def not_stale(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.signal.time is None or not limits.max_signal_age_seconds:
        return None
    age = (p.now - p.signal.time).total_seconds()
    if age > limits.max_signal_age_seconds:
        return Refusal("stale", f"stale alert: sent {int(age)}s ago, MAX_SIGNAL_AGE_SECONDS is "
                                f"{limits.max_signal_age_seconds}")
    return None


def not_duplicate(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    first_seen = state.seen_alerts.get(p.signal.alert_id or "")
    if first_seen is not None:
        return Refusal("duplicate", f"duplicate alert {p.signal.alert_id!r}: already handled at "
                                    f"{first_seen:%Y-%m-%d %H:%M:%S} UTC")
    return None


def not_paused(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if state.paused:
        return Refusal("paused", "trading paused: entries are refused until POST /resume (exits still work)")
    return None


def max_daily_loss(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    loss = -state.realized_today
    if limits.max_daily_loss_usdt and loss >= limits.max_daily_loss_usdt:
        return Refusal("max_daily_loss", f"today's realized loss {plain(loss)} {limits.quote_asset} has reached "
                                         f"MAX_DAILY_LOSS_USDT {limits.max_daily_loss_usdt} (until UTC midnight)")
    return None


def protective_levels_make_sense(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    stop, target, entry = p.signal.stop_loss, p.signal.take_profit, p.price
    if entry is None or not p.signal.wants_protection:
        return None
    if stop is not None and stop >= entry:
        return Refusal("protective_levels", f"stop_loss {stop} must be below the entry price {plain(entry)}")
    if target is not None and target <= entry:
        return Refusal("protective_levels", f"take_profit {target} must be above the entry price {plain(entry)}")
    return None


def min_risk_reward(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    stop, target, entry = p.signal.stop_loss, p.signal.take_profit, p.price
    if not limits.min_risk_reward or stop is None or target is None or entry is None:
        return None
    ratio = (target - entry) / (entry - stop)
    if ratio < limits.min_risk_reward:
        return Refusal("min_risk_reward", f"risk/reward {ratio:.2f} is below MIN_RISK_REWARD {limits.min_risk_reward}")
    return None


def one_entry_per_protected_position(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    """Protective orders guard one entry's quantity: a protected position is never added to."""
    held = state.positions.get(p.signal.symbol)
    if held is not None and (held.protection is not None or p.signal.wants_protection):
        return Refusal("protected_position", f"a position in {p.signal.symbol} is already open; a position with "
                                             f"stop_loss/take_profit is one entry (sell it first)")
    return None


def min_confidence(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.signal.confidence is not None and p.signal.confidence < limits.min_confidence:  # optional in the alert
        return Refusal("min_confidence", f"confidence {p.signal.confidence} is below "
                                         f"MIN_CONFIDENCE {limits.min_confidence}")
    return None


def min_balance(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.balance < limits.min_balance_usdt:
        return Refusal("min_balance", f"balance {p.balance} {limits.quote_asset} is below "
                                      f"MIN_BALANCE_USDT {limits.min_balance_usdt}")
    return None


def max_risk_per_trade(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.amount_usdt > limits.max_risk_per_trade:
        return Refusal("max_risk_per_trade", f"trade amount {p.amount_usdt} {limits.quote_asset} is above "
                                             f"MAX_RISK_PER_TRADE {limits.max_risk_per_trade}")
    return None


def max_open_trades(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if state.open_trades >= limits.max_open_trades:
        return Refusal("max_open_trades", f"{state.open_trades} trades open, "
                                          f"MAX_OPEN_TRADES is {limits.max_open_trades}")
    return None


def max_trades_per_day(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if state.trades_today >= limits.max_trades_per_day:
        return Refusal("max_trades_per_day", f"{state.trades_today} trades today (UTC), "
                                             f"MAX_TRADES_PER_DAY is {limits.max_trades_per_day}")
    return None


def cooldown(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    last = state.last_trade_at.get((p.signal.symbol, p.signal.action))
    if last is None:
        return None
    elapsed = max((p.now - last).total_seconds(), 0)  # a parallel trade stamped after p.now: just now
    if elapsed < limits.cooldown_seconds:
        return Refusal("cooldown", f"cooldown: last {p.signal.action} {p.signal.symbol} was {int(elapsed)}s ago, "
                                   f"COOLDOWN_SECONDS is {limits.cooldown_seconds}")
    return None


def has_open_position(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.signal.symbol not in state.positions:
        return Refusal("no_position", f"no open position in {p.signal.symbol} to sell (spot only: no shorting)")
    if p.signal.symbol in state.closing:
        return Refusal("no_position", f"the position in {p.signal.symbol} is already being sold")
    return None


ENTRY_RULES: list[Rule] = [not_stale, not_duplicate, not_paused, max_daily_loss, protective_levels_make_sense,
                           min_risk_reward, one_entry_per_protected_position, min_confidence, min_balance,
                           max_risk_per_trade, max_open_trades, max_trades_per_day, cooldown]
EXIT_RULES: list[Rule] = [not_stale, not_duplicate, has_open_position, cooldown]


def first_refusal(rules: list[Rule], proposal: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    for rule in rules:
        refusal = rule(proposal, state, limits)
        if refusal is not None:
            return refusal
    return None


class RiskEngine:
    """Thread-safe owner of the risk state. Counters roll over at UTC midnight."""

    def __init__(self, limits: Settings, today: date) -> None:
        self.limits = limits
        self.state = RiskState(day=today)
        self._lock = threading.Lock()

    def reserve(self, proposal: Proposal) -> Ticket | Refusal:
        """Check the rules and, if they allow, reserve the slot in the same atomic step."""
        signal = proposal.signal
        with self._lock:
            self._roll_day(proposal.now)
            rules = ENTRY_RULES if signal.is_entry else EXIT_RULES
            refusal = first_refusal(rules, proposal, self.state, self.limits)
            if refusal is None or refusal.rule != "duplicate":
                self._remember_alert(signal.alert_id, proposal.now)
            return refusal or self._take_slot(signal, proposal.now)

    def hold(self, signal: Signal, at: datetime) -> Ticket:
        """Reserve a slot without checks: for an order found in flight at start-up."""
        with self._lock:
            self._remember_alert(signal.alert_id, at)
            return self._take_slot(signal, at)

    def remember_alert(self, alert_id: str | None, at: datetime) -> None:
        with self._lock:
            self._remember_alert(alert_id, at)

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self.state.paused = paused

    def release(self, ticket: Ticket) -> None:
        """The order did not happen: give back the slot, the day's count and the cooldown."""
        signal = ticket.signal
        with self._lock:
            self._end_reservation(ticket)
            key = (signal.symbol, signal.action)
            if self.state.last_trade_at.get(key) == ticket.reserved_at:
                self._restore_cooldown(key, ticket.previous_trade_at)
            if signal.is_entry and ticket.reserved_at.date() == self.state.day:
                self.state.trades_today -= 1

    def confirm_entry(self, ticket: Ticket, quantity: Decimal, cost: Decimal) -> Position:
        with self._lock:
            self._end_reservation(ticket)
            return self.state.ledger.add_entry(ticket.signal.symbol, quantity, cost, ticket.reserved_at)

    def confirm_exit(self, ticket: Ticket, sold: Decimal, proceeds: Decimal, at: datetime) -> tuple[Position, Decimal]:
        """The position is sold and closed; returns it with the realized PnL (see Ledger.close)."""
        with self._lock:
            self._end_reservation(ticket)
            return self._close(ticket.signal.symbol, sold, proceeds, at)

    def claim_exit(self, symbol: str, at: datetime) -> Ticket | None:
        """Reserve the exit of a position the exchange closed (stop or target); None if a SELL is under way."""
        with self._lock:
            if symbol not in self.state.positions or symbol in self.state.closing:
                return None
            return self._take_slot(Signal(symbol, "SELL", "protection", "", Decimal(0)), at)

    def set_protection(self, symbol: str, protection: Protection | None, error: str | None = None) -> None:
        with self._lock:
            held = self.state.positions.get(symbol)
            if held is not None:
                held.protection, held.protection_error = protection, error

    def protected_positions(self) -> list[Position]:
        with self._lock:
            return [p for p in self.state.positions.values()
                    if p.protection is not None and p.symbol not in self.state.closing]

    def restore_fill(self, symbol: str, action: str, quantity: Decimal, quote: Decimal, at: datetime) -> None:
        """Replay one filled trade from the journal at start-up (`quote`: a BUY's cost, a SELL's proceeds)."""
        with self._lock:
            self._roll_day(at)
            self.state.last_trade_at[(symbol, action)] = at
            if action == "BUY":
                self.state.trades_today += at.date() == self.state.day
                self.state.ledger.add_entry(symbol, quantity, quote, at)
            elif symbol in self.state.positions:
                self._close(symbol, quantity, quote, at)

    def closed_trades(self) -> list[tuple[datetime, Decimal]]:
        with self._lock:
            return [(trade.closed_at, trade.realized_pnl) for trade in self.state.ledger.closed]

    def snapshot(self, now: datetime) -> dict[str, object]:
        with self._lock:
            self._roll_day(now)
            return {
                "paused": self.state.paused,
                "open_trades": self.state.open_trades,
                "trades_today": self.state.trades_today,
                "positions": {s: {"quantity": plain(p.quantity), "cost": plain(p.cost),
                                  "entry_price": plain(p.entry_price), "entries": p.entries,
                                  "opened_at": p.opened_at.isoformat(timespec="seconds"),
                                  "protection": p.protection.describe() if p.protection else None,
                                  "protection_error": p.protection_error}
                              for s, p in self.state.positions.items()},
                "dust": {s: {"quantity": plain(q), "cost": plain(c)} for s, (q, c) in self.state.ledger.dust.items()},
            }

    def _close(self, symbol: str, sold: Decimal, proceeds: Decimal, at: datetime) -> tuple[Position, Decimal]:
        closed, pnl = self.state.ledger.close(symbol, sold, proceeds, at)
        if at.date() == self.state.day:
            self.state.realized_today += pnl
        return closed, pnl

    def _take_slot(self, signal: Signal, now: datetime) -> Ticket:
        key = (signal.symbol, signal.action)
        ticket = Ticket(signal, now, self.state.last_trade_at.get(key), self.state.positions.get(signal.symbol))
        self.state.last_trade_at[key] = now
        if signal.is_entry:
            self.state.pending_entries += 1
            self.state.trades_today += now.date() == self.state.day
        else:
            self.state.closing.add(signal.symbol)
        return ticket

    def _remember_alert(self, alert_id: str | None, at: datetime) -> None:
        if not alert_id:
            return
        self.state.seen_alerts[alert_id] = at
        if len(self.state.seen_alerts) > MAX_REMEMBERED_ALERTS:
            self.state.seen_alerts.popitem(last=False)

    def _end_reservation(self, ticket: Ticket) -> None:
        if ticket.signal.is_entry:
            self.state.pending_entries -= 1
        else:
            self.state.closing.discard(ticket.signal.symbol)

    def _restore_cooldown(self, key: tuple[str, str], previous: datetime | None) -> None:
        if previous is None:
            self.state.last_trade_at.pop(key, None)
        else:
            self.state.last_trade_at[key] = previous

    def _roll_day(self, now: datetime) -> None:
        if now.date() > self.state.day:
            self.state.day = now.date()
            self.state.trades_today = 0
            self.state.realized_today = Decimal(0)
