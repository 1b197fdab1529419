"""The bot: receives TradingView alerts over HTTP, asks the risk engine, trades, and journals it all.

Run `python app.py` (uvicorn on $PORT, one worker: the risk state lives in this process).
"""
from __future__ import annotations

import hmac
import logging
import sys
import threading
import uuid
from contextlib import asynccontextmanager
from dataclasses import replace
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from binance_client import (Exchange, ExchangeError, Fill, OrderRefused, OutcomeUnknown, PaperExchange,
                            SymbolRules, make_exchange)
from config import ConfigError, Settings, load_settings
from csv_logger import Journal, parse_decimal, parse_time
from money import plain
from risk import Proposal, Refusal, RiskEngine, Ticket
from security import SERVER_OPTIONS, install_security
from signals import WEBHOOK_OPENAPI, InvalidSignal, Signal, parse_json_object, parse_signal

MAX_BODY_BYTES = 64 * 1024
log = logging.getLogger("bot")
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def new_client_order_id() -> str:
    return f"tvbot-{uuid.uuid4().hex[:24]}"


class Bot:
    """Turns one valid signal into a decision, an order if allowed, and journal rows."""

    def __init__(self, settings: Settings, exchange: Exchange, journal: Journal, clock: Clock = utc_now) -> None:
        self.settings = settings
        self.exchange = exchange
        self.journal = journal
        self.clock = clock
        self.risk = RiskEngine(settings, clock().date())
        self.counters = {"accepted": 0, "rejected": 0, "filled": 0, "failed": 0, "unknown": 0}
        self._counter_lock = threading.Lock()

    def handle(self, signal: Signal) -> dict[str, Any]:
        now = self.clock()
        try:
            rules = self.exchange.resolve(signal.symbol)
        except ExchangeError as error:
            return self._reject(signal, now, f"cannot check the symbol with Binance: {error}")
        if rules is None:
            return self._reject(signal, now, f"{signal.symbol} does not trade on Binance spot "
                                             f"(against {self.settings.quote_asset})")
        signal = replace(signal, symbol=rules.symbol)
        amount = signal.amount_usdt or self.settings.trade_amount_usdt
        try:
            balance = self.exchange.free_balance(self.settings.quote_asset)
        except ExchangeError as error:
            return self._reject(signal, now, f"cannot read the balance from Binance: {error}")
        verdict = self.risk.reserve(Proposal(signal, amount, balance, now))
        if isinstance(verdict, Refusal):
            return self._reject(signal, now, verdict.reason)
        return self._execute(verdict, rules, amount, now)

    def record_invalid(self, payload: dict[str, Any], error: InvalidSignal) -> None:
        """An authenticated but malformed alert still leaves a trace, to help fix the alert message."""
        self._count("rejected")
        self.journal.record_signal({
            "DateTime": self.clock(), "TradingPair": _text(payload.get("symbol", payload.get("ticker"))),
            "Action": _text(payload.get("action", payload.get("side"))), "Strategy": _text(payload.get("strategy")),
            "TimeFrame": _text(payload.get("timeframe")), "Confidence": _text(payload.get("confidence")),
            "Decision": "REJECTED", "Reason": f"invalid signal: {error}", "Mode": self.settings.trading_mode})

    def restore(self) -> int:
        """Rebuild positions, today's count, cooldowns (and the paper balance) from trades.csv."""
        restored = 0
        for row in self.journal.trade_rows():
            if row.get("Status") != "FILLED" or row.get("Mode") != self.settings.trading_mode:
                continue
            try:
                rules, fill, at = self._fill_from_row(row)
            except (KeyError, ValueError):
                log.warning("trades.csv: skipping an unreadable row from %s", row.get("DateTime"))
                continue
            self.risk.restore_fill(rules.symbol, fill.side, fill.received_base(rules), fill.quote_cost(rules), at)
            if isinstance(self.exchange, PaperExchange):
                self.exchange.replay(rules, fill)
            restored += 1
        return restored

    def status(self) -> dict[str, Any]:
        try:
            balance: str | None = plain(self.exchange.free_balance(self.settings.quote_asset))
        except ExchangeError:
            balance = None
        limits = self.settings.model_dump(include={
            "trade_amount_usdt", "min_confidence", "min_balance_usdt", "max_risk_per_trade",
            "max_open_trades", "max_trades_per_day", "cooldown_seconds"}, mode="json")
        with self._counter_lock:
            counters = dict(self.counters)
        return {"mode": self.settings.trading_mode, "quote_asset": self.settings.quote_asset,
                "balance": balance, **self.risk.snapshot(self.clock()), "limits": limits, "counters": counters}

    def _execute(self, ticket: Ticket, rules: SymbolRules, amount: Decimal, now: datetime) -> dict[str, Any]:
        signal = ticket.signal
        client_order_id = new_client_order_id()
        try:
            if signal.is_entry:
                fill = self.exchange.market_buy(rules, amount, client_order_id, signal.price)
            else:
                assert ticket.position is not None
                fill = self.exchange.market_sell(rules, ticket.position.quantity, client_order_id, signal.price)
        except OrderRefused as refused:
            self.risk.release(ticket)
            return self._reject(signal, now, str(refused))
        except OutcomeUnknown as unclear:
            log.error("order %s for %s: outcome unknown (%s); its slot stays reserved", client_order_id,
                      signal.symbol, unclear)
            return self._order_failed(signal, now, client_order_id, amount, "UNKNOWN", str(unclear))
        except ExchangeError as error:
            self.risk.release(ticket)
            return self._order_failed(signal, now, client_order_id, amount, "FAILED", str(error))
        return self._order_filled(ticket, rules, fill, now)

    def _order_filled(self, ticket: Ticket, rules: SymbolRules, fill: Fill, now: datetime) -> dict[str, Any]:
        signal = ticket.signal
        pnl = entry_price = None
        if signal.is_entry:
            self.risk.confirm_entry(ticket, fill.received_base(rules), fill.quote_cost(rules))
        else:
            closed = self.risk.confirm_exit(ticket)
            pnl, entry_price = fill.quote_proceeds(rules) - closed.cost, closed.entry_price
        reason = f"{signal.action} {rules.symbol} filled"
        row = self._trade_row(signal, now, "FILLED", reason, fill.client_order_id) | {
            "TradeAmount": fill.quote_amount, "Price": fill.price, "OrderID": fill.order_id,
            "Quantity": fill.quantity, "NetQuantity": fill.received_base(rules) if signal.is_entry else fill.quantity,
            "Fee": fill.fee, "FeeAsset": fill.fee_asset, "RealizedPnL": pnl, "EntryPrice": entry_price}
        self.journal.record_trade(row)
        self._count("filled")
        return self._accept(signal, now, reason, trade_answer(row))

    def _order_failed(self, signal: Signal, now: datetime, client_order_id: str, amount: Decimal,
                      status: str, reason: str) -> dict[str, Any]:
        row = self._trade_row(signal, now, status, reason, client_order_id) | {
            "TradeAmount": amount if signal.is_entry else None}
        self.journal.record_trade(row)
        self._count(status.lower())
        return self._accept(signal, now, f"order {status.lower()}: {reason}", trade_answer(row))

    def _trade_row(self, signal: Signal, now: datetime, status: str, reason: str,
                   client_order_id: str) -> dict[str, Any]:
        return {"DateTime": now, "TradingPair": signal.symbol, "Action": signal.action, "Status": status,
                "ClientOrderID": client_order_id, "Mode": self.settings.trading_mode, "Reason": reason}

    def _fill_from_row(self, row: dict[str, str]) -> tuple[SymbolRules, Fill, datetime]:
        quote = self.settings.quote_asset
        symbol = row["TradingPair"]
        rules = SymbolRules(symbol=symbol, base_asset=symbol.removesuffix(quote), quote_asset=quote)
        fees = {row["FeeAsset"]: parse_decimal(row["Fee"])} if row.get("FeeAsset") else {}
        fill = Fill(order_id=row["OrderID"], client_order_id=row["ClientOrderID"], status="FILLED",
                    side=row["Action"], quantity=parse_decimal(row["Quantity"]),
                    quote_amount=parse_decimal(row["TradeAmount"]), fees=fees)
        if fill.side not in ("BUY", "SELL"):
            raise ValueError(f"unknown action {fill.side!r}")
        return rules, fill, parse_time(row["DateTime"])

    def _accept(self, signal: Signal, now: datetime, reason: str, trade: dict[str, Any]) -> dict[str, Any]:
        self._count("accepted")
        self._record_decision(signal, now, "ACCEPTED", reason, trade["client_order_id"])
        return {"decision": "ACCEPTED", "reason": reason, "signal": signal.as_dict(), "trade": trade}

    def _reject(self, signal: Signal, now: datetime, reason: str) -> dict[str, Any]:
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
        with self._counter_lock:
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


def bearer_token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def secret_matches(candidate: object, settings: Settings) -> bool:
    """Constant-time comparison, so the answer's timing does not leak the secret."""
    if not isinstance(candidate, str):
        return False
    expected = settings.webhook_secret_key.get_secret_value().encode()
    return hmac.compare_digest(candidate.encode(), expected)


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
        log.warning("Binance not reachable at start-up (%s); each signal will try again", problem)


def create_app(settings: Settings, exchange: Exchange | None = None, clock: Clock = utc_now) -> FastAPI:
    bot = Bot(settings, exchange or make_exchange(settings), Journal(settings.logs_dir), clock)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        restored = bot.restore()
        if settings.trading_mode == "live":
            log.warning("LIVE TRADING: orders use real money on Binance")
        log.info("mode=%s journal=%s restored %d filled trades; open positions: %s", settings.trading_mode,
                 settings.logs_dir.resolve(), restored, ", ".join(bot.risk.state.positions) or "none")
        threading.Thread(target=warm_up, args=(bot.exchange,), name="warm-up", daemon=True).start()
        yield

    docs = "/docs" if settings.is_paper else None
    app = FastAPI(title="TradingView to Binance bot", lifespan=lifespan, docs_url=docs, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_paper else None)
    app.state.bot = bot
    guard = install_security(app, settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "mode": settings.trading_mode}

    @app.get("/status")
    def status(request: Request) -> Any:
        if not secret_matches(bearer_token(request), settings):
            return error(401, "missing or wrong secret (send Authorization: Bearer <WEBHOOK_SECRET_KEY>)")
        return bot.status()

    @app.post("/webhook", openapi_extra=WEBHOOK_OPENAPI)
    async def webhook(request: Request) -> Any:
        if not guard.allows(request):
            return error(403, "forbidden")
        body = await read_body(request)
        if body is None:
            return error(413, f"body larger than {MAX_BODY_BYTES // 1024} KiB")
        if not guard.signature_matches(request, body):
            return error(401, "missing or wrong signature")
        try:
            payload = parse_json_object(body)
        except InvalidSignal as invalid:
            return error(400, str(invalid))
        if not (secret_matches(payload.get("secret"), settings) or secret_matches(bearer_token(request), settings)):
            return error(401, "missing or wrong secret")
        try:
            signal = parse_signal(payload, settings.quote_asset)
        except InvalidSignal as invalid:
            await run_in_threadpool(bot.record_invalid, payload, invalid)
            return error(400, str(invalid))
        return await run_in_threadpool(bot.handle, signal)

    return app


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
    except ConfigError as problem:
        sys.exit(str(problem))
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, workers=1,
                log_level="info", **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
