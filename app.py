"""The bot's HTTP side: receives TradingView alerts, hands each valid one to the trader, answers.

Run `python app.py` (uvicorn on $PORT, one worker: the risk state lives in this process).

Every order is accounted for: its intent is written to disk before it is sent, its outcome after;
an unclear answer from Binance is settled by looking the order up (never by sending it again),
at once, in the background, and at the next start-up after a crash (see trader.py).
"""
from __future__ import annotations

import asyncio
import logging
import sys
import threading
from contextlib import asynccontextmanager
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, AsyncIterator, Callable

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse

from binance_client import Exchange, ExchangeError, make_exchange
from config import ConfigError, Settings, journal_storage, load_settings
from csv_logger import Journal, JournalInUse, JournalLock
from money import plain
from orders import client_order_id_for
from recovery import CheckpointKeeper, rebuild
from security import authenticate, configure_logging, install_security, require_admin, server_options
from signals import WEBHOOK_OPENAPI, InvalidSignal, alert_labels, body_secret, parse_body, parse_signal
from status import announce_start_up, status_body
from telegram import TelegramNotifier
from trader import Clock, Trader

MAX_BODY_BYTES = 64 * 1024
ANSWER_DEADLINE_SECONDS = 2.5
CHECKPOINT_INTERVAL_SECONDS = 600
SECRET_PLACEHOLDER = "YOUR_WEBHOOK_SECRET_KEY"
EXAMPLE_BASE_ASSET = "ETH"
PAPER_EXAMPLE_PRICE = Decimal("3000")
log = logging.getLogger("bot")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


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


def warm_up(exchange: Exchange, paper: bool) -> None:
    try:
        exchange.warm_up()
        log.info("exchange ready: symbol list and balances cached")
    except ExchangeError as problem:
        if paper:
            log.warning("Binance's public prices are not reachable (%s): paper mode goes on offline; alerts "
                        "need a price, and symbols are not checked against Binance's list", problem)
        else:
            log.warning("Binance not reachable at start-up (%s); each signal will try again", problem)


def example_alert(settings: Settings, now: datetime, last_price: Decimal | None) -> dict[str, Any]:
    """A ready-to-send alert for curl, fresh ids each time; the secret is a placeholder, never the real one.

    It buys ETH, which the README's own BUY and SELL of BTC leave out of cooldown; in paper mode it carries
    a price (the last one known, else an illustrative one), so that it fills even with no network."""
    stamp = now.strftime("%Y-%m-%dT%H:%M:%SZ")
    symbol = f"{EXAMPLE_BASE_ASSET}{settings.quote_asset}"
    alert = {"secret": SECRET_PLACEHOLDER, "symbol": symbol, "action": "buy", "strategy": "example",
             "timeframe": "15", "confidence": 100, "alert_id": f"example-{stamp}", "time": stamp}
    if settings.is_paper:
        alert["price"] = plain(last_price or PAPER_EXAMPLE_PRICE)
    return alert


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
        checkpoints = CheckpointKeeper(settings, trader.journal, rebuilt.journal_at)
        settler.reconcile()
        if settings.trading_mode == "live":
            log.warning("LIVE TRADING: orders use real money on Binance")
        announce_start_up(trader, rebuilt, storage)
        stop = threading.Event()
        workers = [threading.Thread(target=repeat, args=(task, interval, stop), name=task.__name__, daemon=True)
                   for task, interval in ((settler.reconcile, settings.reconcile_interval_seconds),
                                          (settler.monitor, settings.monitor_interval_seconds),
                                          (checkpoints.refresh, CHECKPOINT_INTERVAL_SECONDS))]
        for worker in workers:
            worker.start()
        threading.Thread(target=warm_up, args=(trader.exchange, settings.is_paper), name="warm-up", daemon=True).start()
        threading.Thread(target=trader.journal.prepare, name="journal", daemon=True).start()
        try:
            yield
        finally:
            stop.set()
            for worker in workers:
                worker.join()
            checkpoints.refresh()
            notifier.stop()
            journal_lock.release()

    docs = "/docs" if settings.is_paper else None
    app = FastAPI(title="TradingView to Binance bot", lifespan=lifespan, docs_url=docs, redoc_url=None,
                  openapi_url="/openapi.json" if settings.is_paper else None)
    app.state.trader = trader
    install_security(app, settings)

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok", "mode": settings.trading_mode}

    @app.get("/status", dependencies=[Depends(require_admin)])
    def status() -> Any:
        return status_body(trader, storage)

    @app.get("/example")
    def example() -> dict[str, Any]:
        return example_alert(settings, clock(),
                             trader.exchange.last_price(f"{EXAMPLE_BASE_ASSET}{settings.quote_asset}"))

    def switch_pause(paused: bool) -> Any:
        trader.set_paused(paused)
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
            payload = parse_body(body)
        except InvalidSignal as invalid:
            return error(400, str(invalid))
        refused = authenticate(request, body, body_secret(payload))
        if refused is not None:
            return refused
        try:
            signal = parse_signal(payload, settings.quote_asset)
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
