"""The risk engine: decides whether a signal may trade, and holds the state those decisions need.

Each rule is one small function given the proposed trade, the current state and the limits; it
returns None to allow or a `Refusal` with a human reason. Rules run in the order of the lists
below and the first refusal is the answer. Checking and reserving happen under one lock, so
parallel signals can never overshoot a limit; a reservation is released if its order fails.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Callable

from config import Settings
from money import PRICE_PLACES, plain
from signals import Signal


@dataclass(frozen=True)
class Refusal:
    rule: str
    reason: str


@dataclass(frozen=True)
class Proposal:
    """A signal about to trade, with what the rules need to judge it."""
    signal: Signal
    amount_usdt: Decimal
    balance: Decimal
    now: datetime


@dataclass
class Position:
    """What the bot holds in one symbol: base quantity net of fees, and the quote it cost."""
    symbol: str
    quantity: Decimal
    cost: Decimal
    entries: int
    opened_at: datetime

    @property
    def entry_price(self) -> Decimal:
        return (self.cost / self.quantity).quantize(PRICE_PLACES) if self.quantity else Decimal(0)


@dataclass
class RiskState:
    day: date
    positions: dict[str, Position] = field(default_factory=dict)
    pending_entries: int = 0
    trades_today: int = 0
    last_trade_at: dict[tuple[str, str], datetime] = field(default_factory=dict)
    closing: set[str] = field(default_factory=set)

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


def min_confidence(p: Proposal, state: RiskState, limits: Settings) -> Refusal | None:
    if p.signal.confidence < limits.min_confidence:
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


ENTRY_RULES: list[Rule] = [min_confidence, min_balance, max_risk_per_trade,
                           max_open_trades, max_trades_per_day, cooldown]
EXIT_RULES: list[Rule] = [has_open_position, cooldown]


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
            if refusal is not None:
                return refusal
            key = (signal.symbol, signal.action)
            ticket = Ticket(signal, proposal.now, self.state.last_trade_at.get(key),
                            None if signal.is_entry else self.state.positions[signal.symbol])
            self.state.last_trade_at[key] = proposal.now
            if signal.is_entry:
                self.state.pending_entries += 1
                self.state.trades_today += 1
            else:
                self.state.closing.add(signal.symbol)
            return ticket

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
            return self._add_to_position(ticket.signal.symbol, quantity, cost, ticket.reserved_at)

    def confirm_exit(self, ticket: Ticket) -> Position:
        """The position is sold: it is closed (dust below the lot step stays on the account)."""
        with self._lock:
            self._end_reservation(ticket)
            return self.state.positions.pop(ticket.signal.symbol)

    def restore_fill(self, symbol: str, action: str, quantity: Decimal, cost: Decimal, at: datetime) -> None:
        """Replay one filled trade from the journal at start-up."""
        with self._lock:
            self.state.last_trade_at[(symbol, action)] = at
            if action == "BUY":
                self.state.trades_today += at.date() == self.state.day
                self._add_to_position(symbol, quantity, cost, at)
            else:
                self.state.positions.pop(symbol, None)

    def position(self, symbol: str) -> Position | None:
        with self._lock:
            return self.state.positions.get(symbol)

    def snapshot(self, now: datetime) -> dict[str, object]:
        with self._lock:
            self._roll_day(now)
            return {
                "open_trades": self.state.open_trades,
                "trades_today": self.state.trades_today,
                "positions": {s: {"quantity": plain(p.quantity), "cost": plain(p.cost),
                                  "entry_price": plain(p.entry_price), "entries": p.entries,
                                  "opened_at": p.opened_at.isoformat(timespec="seconds")}
                              for s, p in self.state.positions.items()},
            }

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

    def _add_to_position(self, symbol: str, quantity: Decimal, cost: Decimal, at: datetime) -> Position:
        held = self.state.positions.get(symbol)
        if held is None:
            held = self.state.positions[symbol] = Position(symbol, Decimal(0), Decimal(0), 0, at)
        held.quantity += quantity
        held.cost += cost
        held.entries += 1
        return held

    def _roll_day(self, now: datetime) -> None:
        if now.date() > self.state.day:
            self.state.day = now.date()
            self.state.trades_today = 0
