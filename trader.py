"""One alert's order lifecycle: decide, send once, record the outcome; settle unknown outcomes later.

`Trader` takes one alert from decision to order; `Settler` is where every outcome ends, whoever meets it
(an alert, the reconcile thread settling an unclear answer, the monitor finding what a stop-loss or
take-profit executed): `Settler.finish` ends the risk reservation (confirmed with the fill, released, or
kept while the outcome is unknown), writes the journal, notifies, and puts protection on what needs it.
A reservation cannot be forgotten: until an order's intent is on disk it is held by `risk.holding`, which
releases it on any way out; from then on the order record owns it, and the order stays in `open_orders`
until `finish` ends it.
"""
from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import ROUND_DOWN, Decimal
from typing import Any, Callable

from binance_client import Exchange, ExchangeError, OutcomeUnknown
from config import Settings
from csv_logger import PAUSE_MARKER, Intent, Journal
from money import PRICE_PLACES, plain
from orders import (Failed, Fill, Filled, Order, OrderPlan, OrderRefused, OrderStatus, Outcome, Protection,
                    SymbolRules, TradeRecord, Unknown, client_order_id_for, protection_id)
from protection import Check, LegFill, Protector
from risk import Proposal, Refusal, RiskEngine, Slot, Ticket, closes_position
from signals import Amount, AmountUnit, Signal
from telegram import (TelegramNotifier, exit_message, order_failed_message, order_filled_message, paused_message,
                      resumed_message, unprotected_message)

log = logging.getLogger("bot")
Clock = Callable[[], datetime]
EXIT_TRIGGERS = {"stop_loss": "stop-loss", "take_profit": "take-profit"}
# The `trade` part of the JSON answer: its names, and the TradeRecord field each comes from.
ANSWER_FIELDS = {"status": "status", "order_id": "order_id", "client_order_id": "client_order_id",
                 "quantity": "quantity", "price": "price", "amount_usdt": "amount", "fee": "fee",
                 "fee_asset": "fee_asset", "realized_pnl": "realized_pnl", "entry_price": "entry_price",
                 "reason": "reason"}


@dataclass(frozen=True)
class Decision:
    """What the bot decided about one alert: the answer's body and signals.csv's row come from it."""
    signal: Signal
    accepted: bool
    reason: str
    trade: TradeRecord | None = None
    amount: Decimal | None = None  # what a BUY was judged to spend, in the quote asset

    def answer(self) -> dict[str, Any]:
        return {"decision": "ACCEPTED" if self.accepted else "REJECTED", "reason": self.reason,
                "signal": self.signal.as_dict(), "trade": trade_answer(self.trade) if self.trade else None}


def buy_amount(amount: Amount | None, default: Decimal, balance: Decimal, price: Decimal | None) -> Decimal:
    """What a BUY spends in the quote asset: the alert's amount in its unit, or TRADE_AMOUNT_USDT."""
    if amount is None:
        return default
    if amount.unit is AmountUnit.PERCENT:
        return (balance * amount.value / 100).quantize(PRICE_PLACES, rounding=ROUND_DOWN)
    if amount.unit is AmountUnit.BASE:
        return (amount.value * price).quantize(PRICE_PLACES) if price else default
    return amount.value


def sell_quantity(amount: Amount | None, held: Decimal, price: Decimal | None) -> tuple[Decimal, bool]:
    """What a SELL sells of a position of `held`: what the alert asks, never more; and whether that is the
    whole position (no amount, or all of it)."""
    if amount is None:
        return held, True
    if amount.unit is AmountUnit.PERCENT:
        wanted = held * amount.value / 100
    elif amount.unit is AmountUnit.BASE:
        wanted = amount.value
    else:
        wanted = amount.value / price if price else Decimal(0)
    return min(wanted, held), wanted >= held


def needs_price(signal: Signal) -> bool:
    """A base quantity on a BUY, or a quote amount on a SELL, is valued at the current price."""
    unit = signal.amount.unit if signal.amount else None
    return unit is (AmountUnit.BASE if signal.is_entry else AmountUnit.QUOTE)


def trade_answer(record: TradeRecord) -> dict[str, str | None]:
    answer = {}
    for name, field_name in ANSWER_FIELDS.items():
        value = getattr(record, field_name)
        answer[name] = plain(value) if isinstance(value, Decimal) else value
    return answer


class Trader:
    """Turns one valid signal into a decision, an order if allowed, and journal rows."""

    def __init__(self, settings: Settings, exchange: Exchange, journal: Journal, notifier: TelegramNotifier,
                 clock: Clock) -> None:
        self.settings = settings
        self.exchange = exchange
        self.journal = journal
        self.notifier = notifier
        self.clock = clock
        self.risk = RiskEngine(settings.risk_limits, clock().date())
        self.protector = Protector(exchange)
        self.settler = Settler(settings, exchange, journal, notifier, clock, self.risk, self.protector)
        self._sending: dict[str, Order] = {}  # orders of the alerts being handled, for `_after_internal_error`
        self._lock = threading.Lock()
        self._pause_marker = settings.logs_dir / PAUSE_MARKER

    def handle(self, signal: Signal, client_order_id: str) -> dict[str, Any]:
        """Never raises, and records exactly one decision: once a signal is valid, the caller always gets an
        answer to return with HTTP 200."""
        now = self.clock()
        try:
            decision = self._decide(signal, client_order_id, now)
        except Exception:
            log.exception("unexpected error while handling a %s %s signal", signal.action, signal.symbol)
            decision = self._after_internal_error(signal, client_order_id)
        finally:
            with self._lock:
                self._sending.pop(client_order_id, None)
        self.settler.count("accepted" if decision.accepted else "rejected")
        if not decision.accepted:
            log.info("%s %s rejected: %s", decision.signal.action, decision.signal.symbol, decision.reason)
        order_id = decision.trade.client_order_id if decision.trade else None
        self.journal.record_decision(now, decision.signal, "ACCEPTED" if decision.accepted else "REJECTED",
                                     decision.reason, order_id, decision.amount or decision.signal.amount_usdt)
        return decision.answer()

    def pending_answer(self, signal: Signal, client_order_id: str) -> dict[str, Any]:
        """The answer when Binance is slower than TradingView waits: the work goes on in the background."""
        trade = dict.fromkeys(ANSWER_FIELDS)
        return {"decision": "ACCEPTED", "signal": signal.as_dict(),
                "trade": trade | {"status": OrderStatus.PENDING, "client_order_id": client_order_id},
                "reason": "still in progress: the outcome will be in trades.csv and /status"}

    def record_invalid(self, labels: dict[str, str], error: Exception) -> None:
        """An authenticated but malformed alert still leaves a trace, to help fix the alert message."""
        self.settler.count("rejected")
        self.journal.record_invalid(self.clock(), labels, f"invalid signal: {error}")

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

    def _decide(self, signal: Signal, client_order_id: str, now: datetime) -> Decision:
        try:
            rules = self.exchange.resolve(signal.symbol)
        except ExchangeError as error:
            return Decision(signal, False, f"cannot check the symbol with Binance: {error}")
        quote = self.settings.quote_asset
        if rules is None:
            return Decision(signal, False, f"{signal.symbol} does not trade on Binance spot (against {quote})")
        signal = replace(signal, symbol=rules.symbol)
        if rules.quote_asset != quote:
            return Decision(signal, False, f"{rules.symbol} is quoted in {rules.quote_asset}: this bot trades only "
                                           f"pairs quoted in {quote} (QUOTE_ASSET), so amounts stay in {quote}")
        if signal.price is not None:
            self._note_price(rules.symbol, signal.price)
        try:
            proposal = self._proposal(signal, rules, now)
        except ExchangeError as error:
            return Decision(signal, False, f"cannot read the balance or price from Binance: {error}")
        verdict = self.risk.reserve(proposal)
        if isinstance(verdict, Refusal):
            return Decision(signal, False, verdict.reason, amount=proposal.amount_usdt)
        with self.risk.holding(verdict) as slot:
            return self._execute(slot, rules, proposal, client_order_id)

    def _proposal(self, signal: Signal, rules: SymbolRules, now: datetime) -> Proposal:
        """What the rules judge: a BUY's amount in the quote asset, whatever unit the alert used. A BUY refused
        for balance is judged again on a fresh balance (a deposit counts at once; the exchange re-reads at most
        every few seconds)."""
        price = signal.price
        if price is None and (signal.wants_protection or needs_price(signal)):
            price = self.exchange.last_price(rules.symbol) or self.exchange.price(rules.symbol)
        if not signal.is_entry:
            return Proposal(signal, Decimal(0), Decimal(0), now, price)
        quote, default = self.settings.quote_asset, self.settings.trade_amount_usdt
        balance = self.exchange.free_balance(quote)
        amount = buy_amount(signal.amount, default, balance, price)
        if balance < max(self.settings.min_balance_usdt, amount):
            balance = self.exchange.free_balance(quote, fresh=True)
            amount = buy_amount(signal.amount, default, balance, price)
        return Proposal(signal, amount, balance, now, price)

    def _execute(self, slot: Slot, rules: SymbolRules, proposal: Proposal, client_order_id: str) -> Decision:
        ticket, signal, lifted = slot.ticket, proposal.signal, None
        try:
            if signal.is_entry:
                plan = self._plan_buy(rules, proposal)
                whole = True
            else:
                quantity, whole = sell_quantity(signal.amount, ticket.quantity, proposal.price)
                protection = ticket.protection
                unlocking = self.protector.unexecuted(protection) if protection else Decimal(0)
                plan = self.exchange.plan_sell(rules, quantity, proposal.price, unlocking)
                if protection is not None:
                    lifted_or_done = self._lift(slot, rules, protection, signal, plan)
                    if isinstance(lifted_or_done, Decision):
                        return lifted_or_done
                    plan, lifted = lifted_or_done, protection
        except (OrderRefused, ExchangeError) as refused:
            return Decision(signal, False, str(refused), amount=proposal.amount_usdt)
        order = Order(client_order_id, rules, signal.action, self.clock(), time.time(), ticket,
                      amount=plan.amount or None if signal.is_entry else None,
                      quantity=plan.quantity if plan.quantity and not plan.amount else None,
                      alert_id=signal.alert_id, stop_loss=signal.stop_loss, take_profit=signal.take_profit,
                      lifted=lifted, whole=whole)
        with self._lock:
            self._sending[client_order_id] = order
        self.settler.register(order)
        slot.keep()
        record = self.settler.finish(order, self._send(order, plan))
        return Decision(signal, True, record.reason, record, proposal.amount_usdt)

    def _plan_buy(self, rules: SymbolRules, proposal: Proposal) -> OrderPlan:
        """A quote amount is spent with quoteOrderQty; a base quantity is bought as a quantity."""
        amount = proposal.signal.amount
        if amount is not None and amount.unit is AmountUnit.BASE:
            return self.exchange.plan_buy_quantity(rules, amount.value, proposal.price)
        return self.exchange.plan_buy(rules, proposal.amount_usdt, proposal.price)

    def _lift(self, slot: Slot, rules: SymbolRules, protection: Protection, signal: Signal,
              plan: OrderPlan) -> Decision | OrderPlan:
        """Before a SELL (already planned): cancel the protection. What its legs executed before is booked;
        if one had completed, that was the exit (the answer). Otherwise the plan, sized to what is left."""
        try:
            lift = self.protector.lift(rules, protection)
        except ExchangeError as error:
            return Decision(signal, False, f"cannot cancel the protective orders: {error}")
        sold = sum((leg.fill.quantity for leg in lift.fills), Decimal(0))
        if lift.complete:
            slot.keep()
            record = self.settler.book_legs(rules, lift.fills, slot.ticket)
            self.protector.forget([protection])
            return Decision(signal, True, f"already closed on the exchange by its {record.reason.replace('_', '-')}",
                            record)
        if lift.fills:
            self.settler.book_legs(rules, lift.fills, None)
        self.protector.forget([protection])
        self.risk.set_protection(rules.symbol, None)
        self.settler.journal_protection(rules, OrderStatus.CANCELED, "protective orders canceled before selling",
                                        protection)
        quantity = rules.sellable(min(plan.quantity, slot.ticket.quantity - sold), plan.quantity)
        try:
            return OrderPlan.of_quantity(rules, "SELL", quantity, plan.price)
        except OrderRefused as refused:
            placed = self.settler.protect_again(rules, protection)
            return Decision(signal, False, f"{refused}; {placed or 'nothing left to protect'}")

    def _send(self, order: Order, plan: OrderPlan) -> Outcome:
        """Send once; an unclear answer is looked up by the exchange adapter and stays Unknown if it cannot tell."""
        try:
            return Filled(self.exchange.place(plan, order.client_order_id))
        except OutcomeUnknown as unclear:
            return Unknown(str(unclear))
        except ExchangeError as error:
            return Failed(str(error))
        except Exception:
            log.exception("unexpected error while sending order %s", order.client_order_id)
            return Unknown("unexpected error while sending the order: it will be looked up")

    def _after_internal_error(self, signal: Signal, client_order_id: str) -> Decision:
        """A bug after validation: the answer says what became of the order, if one was sent; one still in
        flight is settled with Binance like any unclear answer."""
        with self._lock:
            order = self._sending.get(client_order_id)
        if order is None:
            return Decision(signal, False, "internal error before any order was sent (see the bot's log)")
        if order.record is None:
            order.record = self.settler.finish(order, Unknown("internal error (see the bot's log): it will be "
                                                              "looked up"))
        return Decision(signal, True, f"{order.record.reason}; then an internal error (see the bot's log)",
                        order.record)

    def _note_price(self, symbol: str, price: Decimal) -> None:
        """A price from an alert: protective orders it moved (paper mode's) are booked at once."""
        if self.exchange.note_price(symbol, price):
            self.settler.watch_protection()


class Settler:
    """Where every order's outcome ends (`finish`), and the background work that meets outcomes: settling
    unclear answers (`reconcile`) and watching protective orders (`monitor`)."""

    def __init__(self, settings: Settings, exchange: Exchange, journal: Journal, notifier: TelegramNotifier,
                 clock: Clock, risk: RiskEngine, protector: Protector) -> None:
        self.settings = settings
        self.exchange = exchange
        self.journal = journal
        self.notifier = notifier
        self.clock = clock
        self.risk = risk
        self.protector = protector
        self.counters = {"accepted": 0, "rejected": 0, "filled": 0, "failed": 0, "unknown": 0}
        self.open_orders: dict[str, Order] = {}
        self._lock = threading.Lock()  # open_orders and counters: webhook, reconcile and monitor threads
        self._watch_lock = threading.Lock()  # one reader of the protective orders at a time

    def activity(self) -> tuple[dict[str, int], list[dict[str, str]]]:
        """The counters and the orders still in flight, for /status."""
        with self._lock:
            return dict(self.counters), [order.as_dict() for order in self.open_orders.values()]

    def adopt(self, in_flight: list[Order]) -> None:
        """Orders found in flight at start-up: settled like any unknown outcome."""
        with self._lock:
            self.open_orders.update({order.client_order_id: order for order in in_flight})

    def register(self, order: Order) -> None:
        """Written (and synced) before the order is sent: a crash can never hide an order."""
        with self._lock:
            self.open_orders[order.client_order_id] = order
        self.journal.record_intent(Intent(order.sent_at, order.rules.symbol, order.side, order.client_order_id,
                                          order.amount, order.quantity, order.alert_id, self.settings.trading_mode,
                                          order.stop_loss if order.is_entry else None,
                                          order.take_profit if order.is_entry else None))

    def finish(self, order: Order, outcome: Outcome, settled: bool = False) -> TradeRecord:
        """The one place an order's outcome is recorded: reservation, journal, notification, protection."""
        prefix = "settled: " if settled else ""
        if isinstance(outcome, Filled):
            record = self._record_fill(order, outcome.fill, prefix)
            if order.wants_protection:
                placed = self.protect(self.rules_of(order.rules.symbol), outcome.fill.received_base(order.rules),
                                       order.stop_loss, order.take_profit, order.client_order_id)
                order.record = replace(record, reason=f"{record.reason}; {placed}")
        elif isinstance(outcome, Failed):
            if order.ticket is not None:
                self.risk.release(order.ticket)
            self._forget_order(order)
            self._record_failure(order, OrderStatus.FAILED, prefix + outcome.reason)
            log.warning("order %s for %s %s failed: %s", order.client_order_id, order.side, order.rules.symbol,
                        outcome.reason)
        else:
            log.error("order %s (%s %s): outcome unknown: %s", order.client_order_id, order.side, order.rules.symbol,
                      outcome.reason)
            with self._lock:
                order.status = OrderStatus.UNKNOWN
            return self._record_failure(order, OrderStatus.UNKNOWN, f"order outcome unknown: {outcome.reason}")
        if order.lifted is not None:
            self.protect_again(order.rules, order.lifted)
        assert order.record is not None, "_record_fill and _record_failure keep the record as they journal it"
        return order.record

    def _record_fill(self, order: Order, fill: Fill, prefix: str, kind: str | None = None) -> TradeRecord:
        rules, now = order.rules, self.clock()
        closes = not order.is_entry and closes_position(fill, order.whole)
        booking = (self.risk.confirm(order.ticket, rules, fill, now, closes) if order.ticket
                   else self.risk.book_exit(rules, fill, now))
        self._forget_order(order)
        record = TradeRecord(
            now, rules.symbol, order.side, OrderStatus.FILLED, fill.client_order_id,
            kind or prefix + describe_fill(order, fill, rules), amount=fill.quote_amount, price=fill.price,
            order_id=fill.order_id, quantity=fill.quantity,
            net_quantity=fill.received_base(rules) if order.is_entry else fill.quantity, fee=fill.fee,
            fee_asset=fill.fee_asset, realized_pnl=booking.realized_pnl, entry_price=booking.entry_price,
            position_left=booking.position_left,
            exchange_status=fill.status, fees=fill.fees_text, fee_in_quote=fill.fee_in_quote(rules),
            mode=self.settings.trading_mode)
        self.journal.record_trade(record)
        order.record = record
        if kind is not None:
            self.protector.note_booked(fill)
        log.info("%s: %s at %s for %s %s, order %s", record.reason, plain(fill.quantity), plain(fill.price),
                 plain(fill.quote_amount), self.settings.quote_asset, fill.client_order_id)
        quote = self.settings.quote_asset
        if self.notifier.enabled:
            self.notifier.notify(exit_message(record, quote, EXIT_TRIGGERS[kind]) if kind
                                 else order_filled_message(record, quote))
        self.count("filled")
        return record

    def _record_failure(self, order: Order, status: OrderStatus, reason: str) -> TradeRecord:
        record = TradeRecord(self.clock(), order.rules.symbol, order.side, status, order.client_order_id, reason,
                             amount=order.amount, stop_loss=order.stop_loss, take_profit=order.take_profit,
                             mode=self.settings.trading_mode)
        self.journal.record_trade(record)
        order.record = record
        if self.notifier.enabled:
            self.notifier.notify(order_failed_message(record))
        self.count(status.lower())
        return record

    def protect(self, rules: SymbolRules, quantity: Decimal, stop: Decimal | None, target: Decimal | None,
                 seed: str) -> str:
        """Place the stop-loss/take-profit on the exchange. If refused, the position stays recorded and the
        failure is journalled, logged, notified and shown in /status: it is never silently unprotected."""
        try:
            protection = self.exchange.protect(rules, quantity, stop, target, seed)
        except OutcomeUnknown as unclear:
            return self._unprotected(rules, f"protective orders may not be in place ({unclear}); the position "
                                            f"may NOT be protected: check Binance", stop, target, seed)
        except (OrderRefused, ExchangeError) as refused:
            return self._unprotected(rules, f"protective order refused: {refused}; the position is NOT protected",
                                     stop, target, seed)
        except Exception:
            log.exception("unexpected error while protecting %s", rules.symbol)
            return self._unprotected(rules, "protective orders not placed (internal error, see the bot's log); the "
                                            "position is NOT protected", stop, target, seed)
        self.risk.set_protection(rules.symbol, protection)
        description = f"protected by {protection.describe()}"
        self.journal_protection(rules, OrderStatus.OPEN, description, protection)
        return description

    def protect_again(self, rules: SymbolRules, lifted: Protection) -> str | None:
        """A SELL that lifted the protection did not sell everything: protect what is left."""
        left = self.risk.position_quantity(rules.symbol)
        if left <= 0:
            return None
        placed = self.protect(rules, left, lifted.stop, lifted.target, client_order_id_for(None))
        log.warning("%s: the SELL left %s unsold: %s", rules.symbol, plain(left), placed)
        return placed

    def _unprotected(self, rules: SymbolRules, problem: str, stop: Decimal | None, target: Decimal | None,
                     seed: str) -> str:
        log.error("%s %s", rules.symbol, problem)
        self.risk.set_protection(rules.symbol, None, problem)
        self.journal.record_trade(TradeRecord(self.clock(), rules.symbol, "SELL", OrderStatus.FAILED,
                                              protection_id(seed, "refused"), problem, stop_loss=stop,
                                              take_profit=target, mode=self.settings.trading_mode))
        self.notifier.notify(unprotected_message(self.settings.trading_mode, rules.symbol, problem))
        return problem

    def journal_protection(self, rules: SymbolRules, status: OrderStatus, reason: str, protection: Protection) -> None:
        self.journal.record_trade(TradeRecord(
            self.clock(), rules.symbol, "SELL", status, protection.client_id, reason, order_id=protection.list_id,
            quantity=protection.quantity if status == OrderStatus.OPEN else None,
            price=protection.stop_limit if status == OrderStatus.OPEN else None,
            stop_loss=protection.stop, take_profit=protection.target, mode=self.settings.trading_mode))

    def book_legs(self, rules: SymbolRules, fills: list[LegFill], ticket: Ticket | None) -> TradeRecord:
        """Book what protective legs executed; the last one confirms `ticket` when it closes the position."""
        self.exchange.forget_balances()
        records = [self._record_fill(Order(leg.fill.client_order_id, rules, "SELL", self.clock(), time.time(),
                                           ticket if number == len(fills) - 1 else None), leg.fill, "", kind=leg.kind)
                   for number, leg in enumerate(fills)]
        return records[-1]

    def reconcile(self) -> None:
        """Settle orders whose outcome is unknown, and write journal rows the disk refused earlier."""
        self.journal.retry_backlogs()
        with self._lock:
            unknown = [order for order in self.open_orders.values() if order.status == OrderStatus.UNKNOWN]
        for order in unknown:
            self._settle(order)

    def monitor(self) -> None:
        """One pass of the background monitor: fresh market data, then the protective orders."""
        try:
            self.exchange.refresh_market(self.risk.position_symbols())
        except ExchangeError as error:
            log.info("prices not refreshed: %s", error)
        self.watch_protection()

    def watch_protection(self) -> None:
        """Book what stop-losses and take-profits executed on the exchange; say when one is gone."""
        with self._watch_lock:
            watched = self.risk.watch_list()
            if not watched:
                return
            open_orders = self.exchange.open_orders()
            for symbol, protection, _ in watched:
                rules = self.rules_of(symbol)
                try:
                    check = self.protector.check(rules, protection, open_orders)
                except ExchangeError as error:
                    log.warning("%s: cannot check its protective orders now (%s)", symbol, error)
                    continue
                self._apply(rules, protection, check)

    def _apply(self, rules: SymbolRules, protection: Protection, check: Check) -> None:
        if check.fills:
            ticket = self.risk.claim_exit(rules.symbol, self.clock())
            if ticket is None:
                return
            with self.risk.holding(ticket) as slot:
                if check.complete:
                    slot.keep()
                self.book_legs(rules, check.fills, ticket if check.complete else None)
                if check.complete:
                    self.protector.forget([protection])
                    log.info("%s closed by its %s", rules.symbol, check.fills[-1].kind)
        if check.still_open or check.complete:
            return
        if not check.found:
            problem = "protective orders are not on Binance; the position is NOT protected"
        elif check.executed:
            problem = "protective orders ended after selling part of the position; the rest is NOT protected"
        else:
            problem = "protective orders were canceled outside the bot; the position is NOT protected"
        self.protector.forget([protection])
        self._unprotected(rules, problem, protection.stop, protection.target, protection.entry_id)

    def _settle(self, order: Order) -> None:
        try:
            fill = self.exchange.look_up(order.rules, order.client_order_id)
        except OutcomeUnknown as still_unclear:
            log.info("order %s still unsettled: %s", order.client_order_id, still_unclear)
            return
        if fill is None:
            if time.time() < order.sent_epoch + self.exchange.not_found_final_after:
                return
            outcome: Outcome = Failed(f"order {order.client_order_id} is not on Binance: it was never placed")
        elif fill.quantity <= 0:
            outcome = Failed(f"order {order.client_order_id} ended {fill.status} with nothing executed")
        else:
            outcome = Filled(fill)
        self.finish(order, outcome, settled=True)
        log.info("order %s settled", order.client_order_id)

    def rules_of(self, symbol: str) -> SymbolRules:
        try:
            rules = self.exchange.resolve(symbol)
        except ExchangeError:
            rules = None
        return rules or SymbolRules.bare(symbol, self.settings.quote_asset)

    def _forget_order(self, order: Order) -> None:
        with self._lock:
            self.open_orders.pop(order.client_order_id, None)

    def count(self, name: str) -> None:
        with self._lock:
            self.counters[name] += 1


def describe_fill(order: Order, fill: Fill, rules: SymbolRules) -> str:
    """The journal's reason for a fill: all of it, or the part Binance executed before ending the order."""
    what = f"{order.side} {rules.symbol}"
    if fill.status in ("FILLED", ""):
        return f"{what} filled"
    return (f"{what} partly filled: Binance ended the order {fill.status} after {plain(fill.quantity)} "
            f"{rules.base_asset}")
