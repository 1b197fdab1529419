"""Start-up: rebuild the state from the journal before the first alert is taken.

Filled trades give back the positions, today's counts, the cooldowns, the realized PnL and (paper) the
balances; protection rows give back the stop-losses and take-profits to watch; intents without a recorded
outcome are the orders that were in flight when the bot stopped, held until they are settled with Binance.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

from binance_client import Exchange
from config import Settings
from csv_logger import PAUSE_MARKER, Intent, Journal, closes_as_journalled, fill_of
from orders import (FINAL_STATUSES, PROTECTION_SUFFIXES, Order, OrderStatus, Protection, SymbolRules, TradeRecord,
                    entry_id_of)
from protection import Protector, is_leg_id
from risk import RiskEngine

log = logging.getLogger("bot")


@dataclass(frozen=True)
class Rebuilt:
    filled: int
    in_flight: list[Order]


def rebuild(settings: Settings, journal: Journal, risk: RiskEngine, exchange: Exchange,
            protector: Protector) -> Rebuilt:
    risk.set_paused((settings.logs_dir / PAUSE_MARKER).exists())
    outcomes = replay_trades(settings, journal, risk, exchange, protector)
    for symbol, protection, _ in risk.watch_list():
        exchange.restore_protection(SymbolRules.bare(symbol, settings.quote_asset), protection)
    in_flight = []
    for intent in journal.intent_records():
        unsettled = outcomes.get(intent.client_order_id) not in FINAL_STATUSES
        if unsettled:
            in_flight.append(in_flight_order(intent, risk, settings.quote_asset))
        else:
            risk.remember_alert(intent.alert_id, intent.at)
    return Rebuilt(sum(1 for status in outcomes.values() if status == OrderStatus.FILLED), in_flight)


def replay_trades(settings: Settings, journal: Journal, risk: RiskEngine, exchange: Exchange,
                  protector: Protector) -> dict[str, OrderStatus]:
    """Re-apply every filled trade and protection row; returns each order's last recorded status."""
    outcomes: dict[str, OrderStatus] = {}
    for record in journal.trade_records():
        outcomes[record.client_order_id] = record.status
        restore_protection(risk, record)
        if record.status != OrderStatus.FILLED:
            continue
        rules, fill = fill_of(record, settings.quote_asset)
        risk.restore_fill(rules, fill, record.at, closes_as_journalled(record))
        exchange.replay(rules, fill)
        if is_leg_id(record.client_order_id):
            protector.note_booked(fill)
    return outcomes


def restore_protection(risk: RiskEngine, record: TradeRecord) -> None:
    """A journalled protective order (OPEN), its cancellation, or its refusal (FAILED `...pr`)."""
    if record.status == OrderStatus.OPEN:
        protection = Protection(entry_id_of(record.client_order_id), record.quantity or 0, stop=record.stop_loss,
                                stop_limit=record.price, target=record.take_profit, list_id=record.order_id)
        risk.set_protection(record.symbol, protection)
    elif record.status == OrderStatus.CANCELED:
        risk.set_protection(record.symbol, None)
    elif record.status == OrderStatus.FAILED and record.client_order_id.endswith(PROTECTION_SUFFIXES["refused"]):
        risk.set_protection(record.symbol, None, record.reason)


def in_flight_order(intent: Intent, risk: RiskEngine, quote_asset: str) -> Order:
    """An order sent before a crash with no recorded outcome: its slot is held until it is settled, and a
    protected BUY keeps its levels, to be protected when it turns out filled."""
    rules = SymbolRules.bare(intent.symbol, quote_asset)
    log.warning("order %s (%s %s) was in flight when the bot stopped: settling it with Binance",
                intent.client_order_id, intent.action, intent.symbol)
    return Order(intent.client_order_id, rules, intent.action, intent.at, intent.at.timestamp(),
                 risk.hold(intent.symbol, intent.action, intent.alert_id, intent.at), amount=intent.amount,
                 quantity=intent.quantity, alert_id=intent.alert_id, stop_loss=intent.stop_loss,
                 take_profit=intent.take_profit, status=OrderStatus.UNKNOWN)
