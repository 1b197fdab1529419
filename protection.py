"""Stop-loss and take-profit on the exchange: lift them before a SELL, and find what they executed.

Binance's OCO rules (CHANGELOG.md, the OCO entries; user-data-stream.md `OCO_TRIGGER`): when the
take-profit is touched it executes first, perhaps in parts, and the stop-loss leg expires; when the
stop triggers, the take-profit expires first and the stop-limit executes, or rests as an open order
if the price gapped through its limit. So the legs are read one by one: what each executed since it
was last looked at is booked, a leg still open means "still protecting", and "canceled outside the
bot" is concluded only when no leg is open and none executed.

This file returns values and never journals or notifies: the trader does that, in one place.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Iterable

from binance_client import Exchange, ProtectionGone
from orders import PROTECTION_SUFFIXES, Fill, LegState, Protection, SymbolRules


@dataclass(frozen=True)
class LegFill:
    """What one leg executed since it was last booked (`fill.status`: the leg's status now)."""
    kind: str
    fill: Fill


@dataclass(frozen=True)
class Check:
    """One protection as the exchange shows it now."""
    fills: list[LegFill]
    still_open: bool
    found: bool
    executed: bool

    @property
    def complete(self) -> bool:
        """A leg executed all it was asked to: the position is closed by it."""
        return any(leg.fill.status == "FILLED" for leg in self.fills)


@dataclass(frozen=True)
class Lift:
    """The protection after a cancel: what its legs executed before it, and whether one had completed."""
    fills: list[LegFill]
    complete: bool


class Protector:
    """Reads protective orders for the trader; remembers how much of each leg is already booked."""

    def __init__(self, exchange: Exchange) -> None:
        self.exchange = exchange
        self._booked: dict[str, Fill] = {}
        self._lock = threading.Lock()

    def check(self, rules: SymbolRules, protection: Protection, open_orders: dict[str, LegState]) -> Check:
        """Compare with the open orders (one call for all positions); only when a leg is gone or has
        traded are its details asked for, leg by leg."""
        seen = [open_orders.get(client_id) for client_id in protection.legs.values()]
        if all(state is not None and state.fill.quantity <= self.booked(state.client_id) for state in seen):
            return Check([], still_open=True, found=True, executed=False)
        states = [state for state in self.exchange.leg_states(rules, protection).values() if state is not None]
        return Check(self._since_booked(protection, states), still_open=any(s.is_open for s in states),
                     found=bool(states), executed=any(s.fill.quantity > 0 for s in states))

    def lift(self, rules: SymbolRules, protection: Protection) -> Lift:
        """Cancel the protection before a SELL. If nothing was open any more, the legs tell why."""
        try:
            states = self.exchange.cancel_protection(rules, protection)
        except ProtectionGone:
            states = [state for state in self.exchange.leg_states(rules, protection).values() if state is not None]
        return Lift(self._since_booked(protection, states), any(state.status == "FILLED" for state in states))

    def unexecuted(self, protection: Protection) -> Decimal:
        """What the protection still holds on the exchange, as far as the bot has booked."""
        return protection.quantity - sum((self.booked(client_id) for client_id in protection.legs.values()),
                                         Decimal(0))

    def booked(self, client_id: str) -> Decimal:
        with self._lock:
            booked = self._booked.get(client_id)
            return booked.quantity if booked else Decimal(0)

    def note_booked(self, fill: Fill) -> None:
        """A leg's execution was journalled."""
        with self._lock:
            add_booked(self._booked, fill)

    def adopt(self, booked: dict[str, Fill]) -> None:
        """What the journal says the legs have executed so far (at start-up)."""
        with self._lock:
            self._booked = dict(booked)

    def forget(self, protections: Iterable[Protection]) -> None:
        """Protections that ended: their legs need no more bookkeeping."""
        with self._lock:
            for protection in protections:
                for client_id in protection.legs.values():
                    self._booked.pop(client_id, None)

    def _since_booked(self, protection: Protection, states: list[LegState]) -> list[LegFill]:
        kinds = {client_id: kind for kind, client_id in protection.legs.items()}
        fills = []
        for state in states:
            with self._lock:
                earlier = self._booked.get(state.client_id)
            new = state.fill.minus(earlier) if earlier else state.fill
            if new.quantity > 0:
                fills.append(LegFill(kinds[state.client_id], replace(new, status=state.status, side="SELL")))
        return fills


def add_booked(booked: dict[str, Fill], fill: Fill) -> None:
    """Count a part of a leg's execution into what is booked for that leg."""
    earlier = booked.get(fill.client_order_id)
    booked[fill.client_order_id] = earlier.plus(fill) if earlier else fill


def is_leg_id(client_id: str) -> bool:
    """A protective leg's client id (a stop-loss or take-profit), as opposed to an entry or a SELL."""
    return client_id.endswith((PROTECTION_SUFFIXES["stop_loss"], PROTECTION_SUFFIXES["take_profit"]))
