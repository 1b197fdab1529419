"""Start-up: rebuild the state from the journal before the first alert is taken.

Filled trades give back the positions, today's counts, the cooldowns, the realized PnL and (paper) the
balances; protection rows give back the stop-losses and take-profits to watch; intents without a recorded
outcome are the orders that were in flight when the bot stopped, held until they are settled with Binance.

Start-up takes the same time whatever the history: it reads the checkpoint (checkpoint.py) and replays only
the rows written after it, then writes a new one. The checkpoint is also brought up to date in the
background and when the bot stops. Without a usable checkpoint, the whole journal is replayed.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date

import checkpoint
from binance_client import Balances, Exchange
from checkpoint import Journalled, Stamp
from config import Settings
from csv_logger import (CHECKPOINT_FILE, PAUSE_MARKER, Bookmark, Intent, Journal, StaleBookmark,
                        closes_as_journalled, fill_of)
from orders import (FINAL_STATUSES, PROTECTION_SUFFIXES, Order, OrderStatus, Protection, SymbolRules, TradeRecord,
                    entry_id_of)
from protection import Protector, add_booked, is_leg_id
from risk import RiskEngine, RiskState

log = logging.getLogger("bot")


JournalEnds = tuple[Bookmark | None, Bookmark | None]  # trades.csv's and intents.csv's


@dataclass(frozen=True)
class Rebuilt:
    filled: int
    in_flight: list[Order]
    journal_at: JournalEnds  # where the checkpoint now stands


def rebuild(settings: Settings, journal: Journal, risk: RiskEngine, exchange: Exchange,
            protector: Protector) -> Rebuilt:
    """The journal's state, handed to the trader's parts; the orders in flight, held until settled."""
    state, grown = replay(settings, journal)
    if grown:
        save(settings, state)
    risk.adopt_state(state.risk)
    risk.set_paused((settings.logs_dir / PAUSE_MARKER).exists())
    protector.adopt(state.booked)
    exchange.adopt_balances(Balances(state.balances))
    for symbol, protection, _ in risk.watch_list():
        exchange.restore_protection(SymbolRules.bare(symbol, settings.quote_asset), protection)
    in_flight = [in_flight_order(intent, risk, settings.quote_asset) for intent in state.unsettled.values()]
    return Rebuilt(state.filled, in_flight, (state.trades_at, state.intents_at))


class CheckpointKeeper:
    """Brings the checkpoint up to the journal's last rows (in the background, and when the bot stops); a
    journal that has not grown since the checkpoint is left alone: nothing read, nothing written."""

    def __init__(self, settings: Settings, journal: Journal, saved_at: JournalEnds) -> None:
        self.settings = settings
        self.journal = journal
        self.saved_at = saved_at

    def refresh(self) -> None:
        if (self.journal.trades.end(), self.journal.intents.end()) == self.saved_at:
            return
        state, _ = replay(self.settings, self.journal)
        save(self.settings, state)
        self.saved_at = (state.trades_at, state.intents_at)


def replay(settings: Settings, journal: Journal) -> tuple[Journalled, bool]:
    """The checkpoint and the rows after it; or, without a usable checkpoint, every row. True when that
    read rows the checkpoint did not hold."""
    state = checkpoint.load(settings.logs_dir / CHECKPOINT_FILE, stamp(settings))
    if state is not None:
        saved_at = (state.trades_at, state.intents_at)
        try:
            state = catch_up(settings, journal, state)
            return state, (state.trades_at, state.intents_at) != saved_at
        except StaleBookmark as stale:
            log.warning("checkpoint not used (%s): replaying the whole journal", stale)
    fresh = Journalled(RiskState(day=date.min),
                       balances={settings.quote_asset: settings.paper_balance_usdt} if settings.is_paper else {})
    return catch_up(settings, journal, fresh), True


def catch_up(settings: Settings, journal: Journal, state: Journalled) -> Journalled:
    """Feed the rows written after the state's bookmarks into it, up to the journal's end now."""
    trades_end, intents_end = journal.trades.end(), journal.intents.end()
    risk = RiskEngine(settings.risk_limits, state.risk.day)
    risk.adopt_state(state.risk)
    balances = Balances(state.balances)
    settled: set[str] = set()
    for record in journal.trade_records(after=state.trades_at, until=trades_end):
        if record.status in FINAL_STATUSES:
            settled.add(record.client_order_id)
        restore_protection(risk, record)
        if record.status == OrderStatus.FILLED:
            replay_fill(settings, state, risk, balances, record)
    for intent in journal.intent_records(after=state.intents_at, until=intents_end):
        risk.remember_alert(intent.alert_id, intent.at)
        if intent.client_order_id not in settled:
            state.unsettled[intent.client_order_id] = intent
    for client_order_id in settled:
        state.unsettled.pop(client_order_id, None)
    state.risk, state.trades_at, state.intents_at = risk.durable_state(), trades_end, intents_end
    open_legs = {client_id for _, protection, _ in risk.watch_list() for client_id in protection.legs.values()}
    state.booked = {client_id: fill for client_id, fill in state.booked.items() if client_id in open_legs}
    state.balances = balances.free if settings.is_paper else {}
    return state


def replay_fill(settings: Settings, state: Journalled, risk: RiskEngine, balances: Balances,
                record: TradeRecord) -> None:
    rules, fill = fill_of(record, settings.quote_asset)
    risk.restore_fill(rules, fill, record.at, closes_as_journalled(record))
    if settings.is_paper:
        balances.apply(rules, fill)
    if is_leg_id(record.client_order_id):
        add_booked(state.booked, fill)
    state.filled += 1


def save(settings: Settings, state: Journalled) -> None:
    try:
        checkpoint.save(settings.logs_dir / CHECKPOINT_FILE, stamp(settings), state)
    except OSError as error:
        log.warning("checkpoint not written (%s): the next start replays more of the journal", error.strerror)


def stamp(settings: Settings) -> Stamp:
    return Stamp(checkpoint.VERSION, settings.trading_mode, settings.quote_asset)


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
