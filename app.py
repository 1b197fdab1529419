"""The bot's HTTP side: receives TradingView alerts, hands each valid one to the trader, answers.

Run `python app.py` (uvicorn on $PORT, one worker: the risk state lives in this process).

Every order is accounted for: its intent is written to disk before it is sent, its outcome after;
an unclear answer from Binance is settled by looking the order up (never by sending it again),
at once, in the background, and at the next start-up after a crash (see trader.py).
"""
from __future__ import annotations

import asyncio
import hmac
import logging
import sys
import threading
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from binance_client import Exchange, ExchangeError, make_exchange
from config import ConfigError, Settings, journal_storage, load_settings
from csv_logger import Journal, JournalInUse, JournalLock
from orders import client_order_id_for
from recovery import rebuild
from security import SERVER_OPTIONS, install_security
from signals import (WEBHOOK_OPENAPI, AmountUnit, InvalidSignal, Signal, alert_labels, body_secret, parse_body,
                     parse_signal)
from status import announce_start_up, status_body
from telegram import TelegramNotifier
from trader import Clock, Trader

MAX_BODY_BYTES = 64 * 1024
ANSWER_DEADLINE_SECONDS = 2.5
SECRET_PLACEHOLDER = "YOUR_WEBHOOK_SECRET_KEY"
log = logging.getLogger("bot")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def refuse_amounts_not_traded_yet(signal: Signal) -> None:
    """Stopgap until the order code sizes them: a base quantity or a percentage is read from the alert, and so is
    an amount on a SELL, but orders are sized only by a quote amount on a BUY (a SELL sells the whole position).
    Refused, so that such an alert is never traded at another size."""
    amount = signal.amount
    if amount is None or (signal.is_entry and amount.unit is AmountUnit.QUOTE) or (
            not signal.is_entry and amount.unit is AmountUnit.PERCENT and amount.value == 100):
        return
    raise InvalidSignal("amount", f"read as {amount}, but this version trades only amount_usdt on a BUY and the "
                                  f"whole position on a SELL: use amount_usdt, or leave the amount out")


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
        if exchange.is_paper:
            log.warning("Binance's public prices are not reachable (%s): paper mode goes on offline; alerts "
                        "need a price, and symbols are not checked against Binance's list", problem)
        else:
            log.warning("Binance not reachable at start-up (%s); each signal will try again", problem)


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
    trader = Trader(settings, exchange or make_exchange(settings), Journal(settings.logs_dir, settings.trading_mode),
                    notifier, clock)
    settler = trader.settler
    storage = journal_storage(settings)
    background: set[asyncio.Future[Any]] = set()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        notifier.start()
        rebuilt = rebuild(settings, trader.journal, trader.risk, trader.exchange, trader.protector)
        settler.adopt(rebuilt.in_flight)
        settler.reconcile()
        if settings.trading_mode == "live":
            log.warning("LIVE TRADING: orders use real money on Binance")
        announce_start_up(trader, rebuilt, storage)
        stop = threading.Event()
        workers = [threading.Thread(target=repeat, args=(task, interval, stop), name=task.__name__, daemon=True)
                   for task, interval in ((settler.reconcile, settings.reconcile_interval_seconds),
                                          (settler.monitor, settings.monitor_interval_seconds))]
        for worker in workers:
            worker.start()
        threading.Thread(target=warm_up, args=(trader.exchange,), name="warm-up", daemon=True).start()
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
    app.state.trader = trader
    guard = install_security(app, settings)

    def authorised(request: Request) -> bool:
        return secret_matches(bearer_token(request), settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "mode": settings.trading_mode}

    @app.get("/status")
    def status(request: Request) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong secret (send Authorization: Bearer <WEBHOOK_SECRET_KEY>)")
        return status_body(trader, storage)

    @app.get("/example")
    def example() -> dict[str, Any]:
        return example_alert(settings, clock())

    def switch_pause(request: Request, paused: bool) -> Any:
        if not authorised(request):
            return error(401, "missing or wrong secret")
        trader.set_paused(paused)
        return {"paused": paused}

    @app.post("/pause")
    def pause(request: Request) -> Any:
        return switch_pause(request, True)

    @app.post("/resume")
    def resume(request: Request) -> Any:
        return switch_pause(request, False)

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
            payload = parse_body(body)
        except InvalidSignal as invalid:
            return error(400, str(invalid))
        if not (secret_matches(body_secret(payload), settings) or authorised(request)):
            return error(401, "missing or wrong secret")
        try:
            signal = parse_signal(payload, settings.quote_asset)
            refuse_amounts_not_traded_yet(signal)
        except InvalidSignal as invalid:
            await run_in_threadpool(trader.record_invalid, alert_labels(payload), invalid)
            return error(400, str(invalid))
        client_order_id = client_order_id_for(signal.alert_id)
        work = asyncio.ensure_future(run_in_threadpool(trader.handle, signal, client_order_id))
        background.add(work)
        work.add_done_callback(background.discard)
        done, _ = await asyncio.wait({work}, timeout=ANSWER_DEADLINE_SECONDS)
        return work.result() if done else trader.pending_answer(signal, client_order_id)

    return app


def main() -> None:
    # One line per event with its level, on stdout (Railway shows every stderr line as an error);
    # log_config=None lets uvicorn's own lines use this format too.
    logging.basicConfig(level=logging.INFO, stream=sys.stdout,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        app = create_app(settings)
    except (ConfigError, JournalInUse) as problem:
        sys.exit(str(problem))
    uvicorn.run(app, host=settings.host, port=settings.port, workers=1, log_level="info", log_config=None,
                **SERVER_OPTIONS)


if __name__ == "__main__":
    main()
