"""The bot: receives TradingView alerts over HTTP, asks the risk engine, trades, and journals it all.

Run `python app.py` (uvicorn on $PORT, one worker: the risk state lives in this process).

Every order is accounted for: its intent is written to disk before it is sent, its outcome after;
an unclear answer from Binance is settled by looking the order up (never by sending it again),
at once, in the background, and at the next start-up after a crash.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging
import sys
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from binance_client import (Exchange, ExchangeError, ExchangeRejected, Fill, OrderPlan, OrderRefused,
                            OutcomeUnknown, PaperExchange, PROTECTION_SUFFIXES, Protection, SymbolRules, entry_id_of,
                            make_exchange, protection_id)
from config import ConfigError, JournalStorage, Settings, journal_storage, load_settings
from csv_logger import Journal, JournalInUse, JournalLock, fill_from_row, parse_decimal, parse_time
from money import PRICE_PLACES, plain
from report import performance
from risk import Proposal, Refusal, RiskEngine, Ticket
from security import authenticate, configure_logging, install_security, require_admin, server_options
from signals import WEBHOOK_OPENAPI, InvalidSignal, Signal, parse_json_object, parse_signal
from telegram import (TelegramNotifier, exit_message, order_failed_message, order_filled_message, paused_message,
                      resumed_message, start_up_message)

MAX_BODY_BYTES = 64 * 1024
ANSWER_DEADLINE_SECONDS = 2.5
NOT_FOUND_GRACE_SECONDS = 3
FINAL_STATUSES = ("FILLED", "FAILED")
EXIT_TRIGGERS = {"stop_loss": "stop-loss", "take_profit": "take-profit"}
PROTECTION_STATUSES = ("OPEN", "CANCELED", "FAILED")
SECRET_PLACEHOLDER = "YOUR_WEBHOOK_SECRET_KEY"
log = logging.getLogger("bot")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def client_order_id_for(signal: Signal) -> str:
    """Our id for the order (Binance's newClientOrderId): derived from the alert id when there is one."""
    seed = signal.alert_id or uuid.uuid4().hex
    return "tv" + hashlib.sha256(seed.encode()).hexdigest()[:30]


@dataclass
class OpenOrder:
    """An order sent to the exchange whose outcome is not recorded yet."""
    ticket: Ticket
    rules: SymbolRules
    client_order_id: str
    amount: Decimal | None
    sent_at: datetime
    status: str = "PENDING"

    def as_dict(self) -> dict[str, str]:
        return {"client_order_id": self.client_order_id, "symbol": self.rules.symbol,
                "action": self.ticket.signal.action, "status": self.status,
                "since": self.sent_at.isoformat(timespec="seconds")}


class Bot:
    """Turns one valid signal into a decision, an order if allowed, and journal rows."""

    def __init__(self, settings: Settings, exchange: Exchange, journal: Journal, notifier: TelegramNotifier,
                 clock: Clock = utc_now) -> None:
        self.settings = settings
        self.exchange = exchange
        self.journal = journal
        self.notifier = notifier
        self.clock = clock
        self.risk = RiskEngine(settings, clock().date())
        self.counters = {"accepted": 0, "rejected": 0, "filled": 0, "failed": 0, "unknown": 0}
        self.open_orders: dict[str, OpenOrder] = {}
        self._lock = threading.Lock()
        self._pause_marker = settings.logs_dir / "PAUSED"

    def handle(self, signal: Signal, client_order_id: str) -> dict[str, Any]:
        """Never raises: once a signal is valid the caller always gets an answer to return with HTTP 200."""
        now = self.clock()
        try:
            return self._decide_and_trade(signal, client_order_id, now)
        except Exception:
            log.exception("unexpected error while handling a %s %s signal", signal.action, signal.symbol)
            return self._reject(signal, now, "internal error (see the bot's log); an order sent before it is "
                                             "in intents.csv and is settled with Binance at the next start")

    def pending_answer(self, signal: Signal, client_order_id: str) -> dict[str, Any]:
        """The answer when Binance is slower than TradingView waits: the work goes on in the background."""
        trade = {name: None for name in TRADE_ANSWER_FIELDS} | {"status": "PENDING",
                                                                "client_order_id": client_order_id}
        return {"decision": "ACCEPTED", "signal": signal.as_dict(), "trade": trade,
                "reason": f"still in progress after {ANSWER_DEADLINE_SECONDS}s: the outcome will be in "
                          f"trades.csv and /status"}

    def record_invalid(self, payload: dict[str, Any], error: InvalidSignal) -> None:
        """An authenticated but malformed alert still leaves a trace, to help fix the alert message."""
        self._count("rejected")
        self.journal.record_signal({
            "DateTime": self.clock(), "TradingPair": _text(payload.get("symbol", payload.get("ticker"))),
            "Action": _text(payload.get("action", payload.get("side"))), "Strategy": _text(payload.get("strategy")),
            "TimeFrame": _text(payload.get("timeframe")), "Confidence": _text(payload.get("confidence")),
            "Decision": "REJECTED", "Reason": f"invalid signal: {error}", "Mode": self.settings.trading_mode})

    def set_paused(self, paused: bool) -> None:
        """Emergency stop for entries; exits still work. Kept on disk so it survives a restart."""
        if paused:
            self._pause_marker.parent.mkdir(parents=True, exist_ok=True)
            self._pause_marker.touch()
        else:
            self._pause_marker.unlink(missing_ok=True)
        self.risk.set_paused(paused)
        log.warning("trading %s", "PAUSED: entries are refused until POST /resume" if paused else "resumed")
        mode = self.settings.trading_mode
        self.notifier.notify(paused_message(mode, "entries are refused until POST /resume; exits still work")
                             if paused else resumed_message(mode))

    def restore(self) -> int:
        """Rebuild the state from the journal: filled trades, alert ids, pause, and orders left in flight."""
        self.risk.set_paused(self._pause_marker.exists())
        outcomes = self._replay_trades()
        for intent in self.journal.intents.rows():
            in_flight = outcomes.get(intent["ClientOrderID"]) not in FINAL_STATUSES
            if intent["Mode"] != self.settings.trading_mode or not (intent["AlertID"] or in_flight):
                continue
            at = parse_time(intent["DateTime"])
            self.risk.remember_alert(intent["AlertID"] or None, at)
            if in_flight:
                self._hold_in_flight(intent, at)
        return sum(1 for status in outcomes.values() if status == "FILLED")

    def reconcile(self) -> None:
        """Settle orders whose outcome is unknown, and write journal rows the disk refused earlier."""
        self.journal.retry_backlogs()
        with self._lock:
            unknown = [order for order in self.open_orders.values() if order.status == "UNKNOWN"]
        for order in unknown:
            self._settle(order)

    def status(self) -> dict[str, Any]:
        try:
            balance: str | None = plain(self.exchange.free_balance(self.settings.quote_asset))
        except ExchangeError:
            balance = None
        limits = self.settings.model_dump(include={
            "trade_amount_usdt", "min_confidence", "min_balance_usdt", "max_risk_per_trade",
            "max_open_trades", "max_trades_per_day", "cooldown_seconds", "max_signal_age_seconds",
            "min_risk_reward", "max_daily_loss_usdt"}, mode="json")
        with self._lock:
            counters = dict(self.counters)
            open_orders = [order.as_dict() for order in self.open_orders.values()]
        now = self.clock()
        snapshot = self.risk.snapshot(now)
        for symbol, position in snapshot["positions"].items():
            position |= self._valuation(symbol, Decimal(position["quantity"]), Decimal(position["cost"]))
        return {"mode": self.settings.trading_mode, "quote_asset": self.settings.quote_asset,
                "balance": balance, **snapshot, "open_orders": open_orders,
                "performance": performance(self.risk.closed_trades(), now.date()),
                "unwritten_journal_rows": self.journal.unwritten_rows, "limits": limits, "counters": counters}

    def _valuation(self, symbol: str, quantity: Decimal, cost: Decimal) -> dict[str, str | None]:
        """Current price (cached by the monitor, never fetched per request) and unrealized PnL."""
        price = self.exchange.market.cached_price(symbol)
        if price is None:
            return {"current_price": None, "unrealized_pnl": None}
        unrealized = (quantity * price - cost).quantize(PRICE_PLACES)
        return {"current_price": plain(price), "unrealized_pnl": plain(unrealized)}

    def _decide_and_trade(self, signal: Signal, client_order_id: str, now: datetime) -> dict[str, Any]:
        try:
            rules = self.exchange.resolve(signal.symbol)
        except ExchangeError as error:
            return self._reject(signal, now, f"cannot check the symbol with Binance: {error}")
        if rules is None:
            return self._reject(signal, now, f"{signal.symbol} does not trade on Binance spot "
                                             f"(against {self.settings.quote_asset})")
        signal = replace(signal, symbol=rules.symbol)
        if signal.price is not None:
            self._note_price(rules.symbol, signal.price)
        amount = signal.amount_usdt or self.settings.trade_amount_usdt
        try:
            balance = self.exchange.free_balance(self.settings.quote_asset)
            entry_price = signal.price
            if entry_price is None and signal.is_entry and signal.wants_protection:
                entry_price = self.exchange.market.price(rules.symbol)
        except ExchangeError as error:
            return self._reject(signal, now, f"cannot read the balance or price from Binance: {error}")
        verdict = self.risk.reserve(Proposal(signal, amount, balance, now, entry_price))
        if isinstance(verdict, Refusal):
            return self._reject(signal, now, verdict.reason)
        return self._execute(verdict, rules, amount, client_order_id, now)

    def _execute(self, ticket: Ticket, rules: SymbolRules, amount: Decimal, client_order_id: str,
                 now: datetime) -> dict[str, Any]:
        signal = ticket.signal
        if ticket.position is not None and ticket.position.protection is not None:
            closed_by_exchange = self._lift_protection(ticket, rules, now)
            if closed_by_exchange is not None:
                return closed_by_exchange
        try:
            plan = self._plan(ticket, rules, amount)
        except (OrderRefused, ExchangeError) as refused:
            self.risk.release(ticket)
            return self._reject(signal, now, str(refused))
        order = OpenOrder(ticket, rules, client_order_id, plan.amount if signal.is_entry else None, now)
        self._record_intent(order, plan)
        try:
            fill = self.exchange.place(plan, client_order_id)
        except OutcomeUnknown as unclear:
            return self._order_unknown(order, str(unclear))
        except ExchangeError as error:
            self._forget_order(client_order_id)
            self.risk.release(ticket)
            log.warning("order %s for %s %s failed: %s", client_order_id, signal.action, signal.symbol, error)
            row = self._record_failure(order, now, "FAILED", str(error))
            return self._accept(signal, now, f"order failed: {error}", client_order_id, row)
        except Exception:
            log.exception("unexpected error while sending order %s", client_order_id)
            return self._order_unknown(order, "unexpected error while sending the order: it will be looked up")
        self._forget_order(client_order_id)
        row = self._record_fill(ticket, rules, fill, now)
        reason = row["Reason"]
        if signal.is_entry and signal.wants_protection:
            reason += "; " + self._protect(signal, rules, fill, now)
        return self._accept(signal, now, reason, client_order_id, row)

    def _protect(self, signal: Signal, rules: SymbolRules, fill: Fill, now: datetime) -> str:
        """Place the stop-loss/take-profit on the exchange. If refused, the position stays recorded and
        the failure is journalled and shown in /status: it is never silently unprotected."""
        try:
            protection = self.exchange.protect(rules, fill.received_base(rules), signal.stop_loss, signal.take_profit,
                                               fill.client_order_id)
        except (OrderRefused, ExchangeError) as refused:
            problem = f"protective order refused: {refused}; the position is NOT protected"
            log.error("%s %s", rules.symbol, problem)
            self.risk.set_protection(rules.symbol, None, problem)
            refused_id = protection_id(fill.client_order_id, "refused")
            self.journal.record_trade(self._trade_row(signal, now, "FAILED", problem, refused_id) | {
                "Action": "SELL", "StopLoss": signal.stop_loss, "TakeProfit": signal.take_profit})
            return problem
        self.risk.set_protection(rules.symbol, protection)
        description = f"protected by {protection.describe()}"
        self.journal.record_trade(self._trade_row(signal, now, "OPEN", description, protection.client_id) | {
            "Action": "SELL", "OrderID": protection.list_id, "Quantity": protection.quantity,
            "Price": protection.stop_limit, "StopLoss": protection.stop, "TakeProfit": protection.target})
        return description

    def _lift_protection(self, ticket: Ticket, rules: SymbolRules, now: datetime) -> dict[str, Any] | None:
        """Before a SELL: cancel the protective orders. If one has already filled, that was the exit:
        record it instead of selling twice (the answer), else None and the SELL goes on."""
        assert ticket.position is not None and ticket.position.protection is not None
        protection, signal = ticket.position.protection, ticket.signal
        try:
            self.exchange.cancel_protection(rules, protection)
        except ExchangeRejected as refused:
            if refused.code != -2011:
                self.risk.release(ticket)
                return self._reject(signal, now, f"cannot cancel the protective orders: {refused}")
            exit_by_exchange = self.exchange.protection_exit(rules, protection)
            if exit_by_exchange is not None:
                kind, fill = exit_by_exchange
                row = self._record_fill(ticket, rules, fill, now, reason=kind)
                return self._accept(signal, now, f"already closed on the exchange by its {kind.replace('_', '-')}",
                                    fill.client_order_id, row)
        except ExchangeError as error:
            self.risk.release(ticket)
            return self._reject(signal, now, f"cannot cancel the protective orders: {error}")
        self.risk.set_protection(rules.symbol, None)
        self.journal.record_trade(self._trade_row(signal, now, "CANCELED", "protective orders canceled before selling",
                                                  protection.client_id) | {"OrderID": protection.list_id})
        return None

    def watch_protection(self) -> None:
        """Record exits the exchange made by a stop-loss or take-profit, and protection lifted by hand."""
        positions = self.risk.protected_positions()
        if not positions:
            return
        open_ids = self.exchange.open_order_ids()
        for position in positions:
            assert position.protection is not None
            if open_ids is not None and set(position.protection.legs.values()) <= open_ids:
                continue
            try:
                rules = SymbolRules.bare(position.symbol, self.settings.quote_asset)
                self._record_exit_by_exchange(position.protection, rules, legs_gone=open_ids is not None)
            except ExchangeError as error:
                log.warning("%s: cannot check its protective orders now (%s)", position.symbol, error)

    def monitor(self) -> None:
        """One pass of the background monitor: fresh prices for open positions, then the protective orders."""
        try:
            self.exchange.market.refresh_prices(list(self.risk.state.positions))
        except ExchangeError as error:
            log.info("prices not refreshed: %s", error)
        self.watch_protection()

    def _record_exit_by_exchange(self, protection: Protection, rules: SymbolRules, legs_gone: bool) -> None:
        """Claim the exit first, so the monitor and an alert's price check can never both close a position."""
        now = self.clock()
        ticket = self.risk.claim_exit(rules.symbol, now)
        if ticket is None:
            return
        try:
            exit_by_exchange = self.exchange.protection_exit(rules, protection)
        except ExchangeError:
            self.risk.release(ticket)
            raise
        if exit_by_exchange is None:
            self.risk.release(ticket)
            if legs_gone:
                problem = "protective orders were canceled outside the bot; the position is NOT protected"
                log.error("%s: %s", rules.symbol, problem)
                self.risk.set_protection(rules.symbol, None, problem)
            return
        kind, fill = exit_by_exchange
        self._record_fill(ticket, rules, fill, now, reason=kind)
        log.info("%s closed by its %s at %s", rules.symbol, kind, plain(fill.price))

    def _note_price(self, symbol: str, price: Decimal) -> None:
        """A price from an alert: paper mode checks its protective orders against it at once."""
        self.exchange.market.note_price(symbol, price)
        if isinstance(self.exchange, PaperExchange):
            self.watch_protection()

    def _plan(self, ticket: Ticket, rules: SymbolRules, amount: Decimal) -> OrderPlan:
        if ticket.signal.is_entry:
            return self.exchange.plan_buy(rules, amount, ticket.signal.price)
        assert ticket.position is not None, "an exit always has the position it closes"
        return self.exchange.plan_sell(rules, ticket.position.quantity, ticket.signal.price)

    def _record_intent(self, order: OpenOrder, plan: OrderPlan) -> None:
        """Written (and synced) before the order is sent: a crash can never hide an order."""
        with self._lock:
            self.open_orders[order.client_order_id] = order
        signal = order.ticket.signal
        self.journal.record_intent({
            "DateTime": order.sent_at, "TradingPair": signal.symbol, "Action": signal.action,
            "ClientOrderID": order.client_order_id, "AmountUSDT": order.amount,
            "Quantity": None if signal.is_entry else plan.quantity, "AlertID": signal.alert_id,
            "Mode": self.settings.trading_mode})

    def _order_unknown(self, order: OpenOrder, reason: str) -> dict[str, Any]:
        """The order may exist: keep its slot (the position counts as possibly open) until it is settled."""
        log.error("order %s (%s %s): outcome unknown: %s", order.client_order_id, order.ticket.signal.action,
                  order.rules.symbol, reason)
        with self._lock:
            order.status = "UNKNOWN"
        row = self._record_failure(order, self.clock(), "UNKNOWN", reason)
        return self._accept(order.ticket.signal, order.sent_at, f"order outcome unknown: {reason}",
                            order.client_order_id, row)

    def _settle(self, order: OpenOrder) -> None:
        try:
            fill = self.exchange.look_up(order.rules, order.client_order_id)
        except OutcomeUnknown as still_unclear:
            log.info("order %s still unsettled: %s", order.client_order_id, still_unclear)
            return
        now = self.clock()
        if fill is None and (now - order.sent_at).total_seconds() < NOT_FOUND_GRACE_SECONDS:
            return
        self._forget_order(order.client_order_id)
        if fill is None or fill.quantity <= 0:
            self.risk.release(order.ticket)
            outcome = f"ended {fill.status}" if fill else "is not on Binance: it was never placed"
            self._record_failure(order, now, "FAILED", f"settled: order {order.client_order_id} {outcome}")
            return
        self._record_fill(order.ticket, order.rules, fill, now,
                          reason=f"settled: {order.ticket.signal.action} {order.rules.symbol} filled")
        log.info("order %s settled: %s", order.client_order_id, fill.status)

    def _record_fill(self, ticket: Ticket, rules: SymbolRules, fill: Fill, now: datetime,
                     reason: str | None = None) -> dict[str, Any]:
        signal = ticket.signal
        pnl = entry_price = None
        if signal.is_entry:
            self.risk.confirm_entry(ticket, fill.received_base(rules), fill.quote_cost(rules))
        else:
            closed, pnl = self.risk.confirm_exit(ticket, fill.quantity, fill.quote_proceeds(rules), now)
            entry_price = closed.entry_price
        row = self._trade_row(signal, now, "FILLED", reason or f"{signal.action} {rules.symbol} filled",
                              fill.client_order_id) | {
            "TradeAmount": fill.quote_amount, "Price": fill.price, "OrderID": fill.order_id,
            "Quantity": fill.quantity, "NetQuantity": fill.received_base(rules) if signal.is_entry else fill.quantity,
            "Fee": fill.fee, "FeeAsset": fill.fee_asset, "RealizedPnL": pnl, "EntryPrice": entry_price}
        self.journal.record_trade(row)
        log.info("%s: %s at %s for %s %s, order %s", row["Reason"], plain(fill.quantity), plain(fill.price),
                 plain(fill.quote_amount), self.settings.quote_asset, fill.client_order_id)
        quote = self.settings.quote_asset
        self.notifier.notify(exit_message(row, quote, EXIT_TRIGGERS[reason]) if reason in EXIT_TRIGGERS
                             else order_filled_message(row, quote))
        self._count("filled")
        return row

    def _record_failure(self, order: OpenOrder, now: datetime, status: str, reason: str) -> dict[str, Any]:
        row = self._trade_row(order.ticket.signal, now, status, reason, order.client_order_id) | {
            "TradeAmount": order.amount}
        self.journal.record_trade(row)
        self.notifier.notify(order_failed_message(row))
        self._count(status.lower())
        return row

    def _trade_row(self, signal: Signal, now: datetime, status: str, reason: str,
                   client_order_id: str) -> dict[str, Any]:
        return {"DateTime": now, "TradingPair": signal.symbol, "Action": signal.action, "Status": status,
                "ClientOrderID": client_order_id, "Mode": self.settings.trading_mode, "Reason": reason}

    def _replay_trades(self) -> dict[str, str]:
        """Re-apply every filled trade; returns each order's last recorded status."""
        outcomes: dict[str, str] = {}
        for row in self.journal.trades.rows():
            if row["Mode"] != self.settings.trading_mode:
                continue
            outcomes[row["ClientOrderID"]] = row["Status"]
            if row["Status"] in PROTECTION_STATUSES:
                self._restore_protection(row)
            if row["Status"] != "FILLED":
                continue
            try:
                rules, fill, at = fill_from_row(row, self.settings.quote_asset)
            except ValueError:
                log.warning("trades.csv: skipping an unreadable row from %s", row["DateTime"])
                continue
            quote = fill.quote_cost(rules) if fill.side == "BUY" else fill.quote_proceeds(rules)
            self.risk.restore_fill(rules.symbol, fill.side, fill.received_base(rules), quote, at)
            if isinstance(self.exchange, PaperExchange):
                self.exchange.replay(rules, fill)
        return outcomes

    def _restore_protection(self, row: dict[str, str]) -> None:
        """A journalled protective order (OPEN), its cancellation, or its refusal (FAILED `...pr`)."""
        symbol = row["TradingPair"]
        if row["Status"] == "OPEN":
            protection = Protection(entry_id_of(row["ClientOrderID"]), parse_decimal(row["Quantity"]),
                                    stop=parse_decimal(row["StopLoss"]) or None,
                                    stop_limit=parse_decimal(row["Price"]) or None,
                                    target=parse_decimal(row["TakeProfit"]) or None, list_id=row["OrderID"] or None)
            self.risk.set_protection(symbol, protection)
        elif row["Status"] == "CANCELED":
            self.risk.set_protection(symbol, None)
        elif row["ClientOrderID"].endswith(PROTECTION_SUFFIXES["refused"]):
            self.risk.set_protection(symbol, None, row["Reason"])

    def _hold_in_flight(self, intent: dict[str, str], at: datetime) -> None:
        """An order sent before a crash with no recorded outcome: hold its slot until it is settled."""
        rules = SymbolRules.bare(intent["TradingPair"], self.settings.quote_asset)
        signal = Signal(symbol=rules.symbol, action=intent["Action"], strategy="recovered", timeframe="",
                        confidence=Decimal(0), alert_id=intent["AlertID"] or None)
        order = OpenOrder(self.risk.hold(signal, at), rules, intent["ClientOrderID"],
                          parse_decimal(intent["AmountUSDT"]) or None, at, status="UNKNOWN")
        with self._lock:
            self.open_orders[order.client_order_id] = order
        log.warning("order %s (%s %s) was in flight when the bot stopped: settling it with %s",
                    order.client_order_id, signal.action, rules.symbol, self.settings.trading_mode)

    def _forget_order(self, client_order_id: str) -> None:
        with self._lock:
            self.open_orders.pop(client_order_id, None)

    def _accept(self, signal: Signal, now: datetime, reason: str, client_order_id: str,
                row: dict[str, Any]) -> dict[str, Any]:
        self._count("accepted")
        self._record_decision(signal, now, "ACCEPTED", reason, client_order_id)
        return {"decision": "ACCEPTED", "reason": reason, "signal": signal.as_dict(), "trade": trade_answer(row)}

    def _reject(self, signal: Signal, now: datetime, reason: str) -> dict[str, Any]:
        log.info("%s %s rejected: %s", signal.action, signal.symbol, reason)
        self._count("rejected")
        self._record_decision(signal, now, "REJECTED", reason, None)
        return {"decision": "REJECTED", "reason": reason, "signal": signal.as_dict(), "trade": None}

    def _record_decision(self, signal: Signal, now: datetime, decision: str, reason: str,
                         client_order_id: str | None) -> None:
        self.journal.record_signal({
            "DateTime": now, "TradingPair": signal.symbol, "Action": signal.action, "Strategy": signal.strategy,
            "TimeFrame": signal.timeframe, "Confidence": signal.confidence, "Decision": decision,
            "Reason": reason, "Price": signal.price,
            "AmountUSDT": signal.amount_usdt or (self.settings.trade_amount_usdt if signal.is_entry else None),
            "AlertID": signal.alert_id, "ClientOrderID": client_order_id, "Mode": self.settings.trading_mode})

    def _count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1


TRADE_ANSWER_FIELDS = {"status": "Status", "order_id": "OrderID", "client_order_id": "ClientOrderID",
                       "quantity": "Quantity", "price": "Price", "amount_usdt": "TradeAmount", "fee": "Fee",
                       "fee_asset": "FeeAsset", "realized_pnl": "RealizedPnL", "entry_price": "EntryPrice",
                       "reason": "Reason"}


def trade_answer(row: dict[str, Any]) -> dict[str, str | None]:
    """The `trade` part of the JSON answer: the journal row under the documented names."""
    answer = {}
    for name, column in TRADE_ANSWER_FIELDS.items():
        value = row.get(column)
        answer[name] = plain(value) if isinstance(value, Decimal) else value
    return answer


def _text(value: Any) -> str:
    return "" if value is None else str(value)[:64]


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


async def read_body(request: Request) -> bytes | None:
    """The request body, or None once it grows past MAX_BODY_BYTES (read no further)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY_BYTES:
        return None
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return None
    return bytes(body)


def warm_up(exchange: Exchange) -> None:
    try:
        exchange.warm_up()
        log.info("exchange ready: symbol list and balances cached")
    except ExchangeError as problem:
        if isinstance(exchange, PaperExchange):
            log.warning("Binance's public prices are not reachable (%s): paper mode goes on offline; alerts "
                        "need a price, and symbols are not checked against Binance's list", problem)
        else:
            log.warning("Binance not reachable at start-up (%s); each signal will try again", problem)


def describe_limits(settings: Settings) -> str:
    quote = settings.quote_asset
    return (f"{plain(settings.trade_amount_usdt)} {quote} per BUY, "
            f"confidence >= {plain(settings.min_confidence)}, "
            f"free balance >= {plain(settings.min_balance_usdt)} {quote}, "
            f"at most {plain(settings.max_risk_per_trade)} {quote} per trade, "
            f"{settings.max_open_trades} open trades, {settings.max_trades_per_day} BUYs per UTC day, "
            f"cooldown {settings.cooldown_seconds}s, daily loss limit "
            f"{plain(settings.max_daily_loss_usdt) + ' ' + quote if settings.max_daily_loss_usdt else 'off'}")


def describe_rebuilt(bot: Bot, restored: int) -> str:
    """What the journal replay gave back: positions, today's count, running cooldowns, orders in flight."""
    settings, now, quote = bot.settings, bot.clock(), bot.settings.quote_asset
    positions = ", ".join(f"{symbol} {plain(p.quantity)} (cost {plain(p.cost)} {quote})"
                          for symbol, p in bot.risk.state.positions.items()) or "none"
    cooling = [f"{symbol} {action}" for (symbol, action), at in bot.risk.state.last_trade_at.items()
               if (now - at).total_seconds() < settings.cooldown_seconds]
    text = (f"rebuilt from trades.csv: {restored} filled trade(s); open positions: {positions}; "
            f"BUYs today: {bot.risk.state.trades_today}; cooldowns running: {', '.join(cooling) or 'none'}; "
            f"orders still unsettled: {len(bot.open_orders)}; paused: {'yes' if bot.risk.state.paused else 'no'}")
    if isinstance(bot.exchange, PaperExchange):
        text += f"; paper balance {plain(bot.exchange.free_balance(quote))} {quote}"
    return text


def announce_start_up(bot: Bot, restored: int, storage: JournalStorage) -> None:
    """Log what the bot starts with, one line per topic (never a secret), and send it to Telegram."""
    settings = bot.settings
    report = [f"mode {settings.trading_mode}, quote asset {settings.quote_asset}",
              f"limits: {describe_limits(settings)}",
              f"journal: {storage.path}", describe_rebuilt(bot, restored),
              f"telegram alerts: {'on' if settings.telegram_enabled else 'off'}"]
    if settings.railway_public_domain:
        report.append(f"TradingView webhook URL: https://{settings.railway_public_domain}/webhook")
    for line in report:
        log.info("start-up: %s", line)
    if storage.warning:
        log.warning("start-up: %s", storage.warning)
        report.append(f"WARNING: {storage.warning}")
    bot.notifier.notify(start_up_message(settings.trading_mode, report))


def example_alert(settings: Settings, now: datetime) -> dict[str, Any]:
    """A ready-to-send alert for curl, fresh ids each time; the secret is a placeholder, never the real one."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"secret": SECRET_PLACEHOLDER, "symbol": f"BTC{settings.quote_asset}", "action": "buy",
            "strategy": "example", "timeframe": "15", "confidence": 100,
            "alert_id": f"example-{stamp}", "time": stamp}


def repeat(task: Callable[[], None], interval: float, stop: threading.Event) -> None:
    """Run a background task every `interval` seconds until `stop`; a failed pass is logged, never fatal."""
    while not stop.wait(interval):
        try:
            task()
        except Exception:
            log.exception("%s failed; trying again in %ss", task.__name__, interval)


def create_app(settings: Settings, exchange: Exchange | None = None, clock: Clock = utc_now) -> FastAPI:
    """The app; takes the journal's lock at once (JournalInUse if another bot holds it)."""
    journal_lock = JournalLock(settings.logs_dir)
    journal_lock.acquire()
    notifier = TelegramNotifier(settings)
    bot = Bot(settings, exchange or make_exchange(settings), Journal(settings.logs_dir), notifier, clock)
    storage = journal_storage(settings)
    background: set[asyncio.Future[Any]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.start()
        restored = bot.restore()
        bot.reconcile()
        if settings.trading_mode == "live":
            log.warning("LIVE TRADING: orders use real money on Binance")
        announce_start_up(bot, restored, storage)
        stop = threading.Event()
        workers = [threading.Thread(target=repeat, args=(task, interval, stop), name=task.__name__, daemon=True)
                   for task, interval in ((bot.reconcile, settings.reconcile_interval_seconds),
                                          (bot.monitor, settings.monitor_interval_seconds))]
        for worker in workers:
            worker.start()
        threading.Thread(target=warm_up, args=(bot.exchange,), name="warm-up", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join()
            notifier.stop()
            journal_lock.release()

    docs = "/docs" if settings.is_paper else None
    app = FastAPI(title="TradingView to Binance bot", lifespan=lifespan, docs_url=docs, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_paper else None)
    app.state.bot = bot
    install_security(app, settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "mode": settings.trading_mode}

    @app.get("/status", dependencies=[Depends(require_admin)])
    def status() -> Any:
        journal = {"path": str(storage.path), "persistent": storage.persistent, "warning": storage.warning}
        return bot.status() | {"journal": journal, "telegram_alerts": settings.telegram_enabled}

    @app.get("/example")
    def example() -> dict[str, Any]:
        return example_alert(settings, clock())

    def switch_pause(paused: bool) -> Any:
        bot.set_paused(paused)
        return {"paused": paused}

    @app.post("/pause", dependencies=[Depends(require_admin)])
    def pause() -> Any:
        return switch_pause(True)

    @app.post("/resume", dependencies=[Depends(require_admin)])
    def resume() -> Any:
        return switch_pause(False)

    @app.post("/webhook", openapi_extra=WEBHOOK_OPENAPI)
    async def webhook(request: Request) -> Any:
        body = await read_body(request)
        if body is None:
            return error(413, f"body larger than {MAX_BODY_BYTES // 1024} KiB")
        try:
            payload = parse_json_object(body)
        except InvalidSignal as invalid:
            return error(400, str(invalid))
        refused = authenticate(request, body, payload.get("secret"))
        if refused is not None:
            return refused
        try:
            signal = parse_signal(payload, settings.quote_asset)
        except InvalidSignal as invalid:
            await run_in_threadpool(bot.record_invalid, payload, invalid)
            return error(400, str(invalid))
        client_order_id = client_order_id_for(signal)
        work = asyncio.ensure_future(run_in_threadpool(bot.handle, signal, client_order_id))
        background.add(work)
        work.add_done_callback(background.discard)
        done, _ = await asyncio.wait({work}, timeout=ANSWER_DEADLINE_SECONDS)
        return work.result() if done else bot.pending_answer(signal, client_order_id)

    return app


def main() -> None:
    configure_logging()
    try:
        settings = load_settings()
        app = create_app(settings)
    except (ConfigError, JournalInUse) as problem:
        sys.exit(str(problem))
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1, log_level="info", log_config=None,
                **server_options())


if __name__ == "__main__":
    main()
