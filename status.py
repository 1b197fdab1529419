"""What the bot tells its owner: the `/status` body and the start-up report (log lines and Telegram)."""
from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from binance_client import ExchangeError
from config import JournalStorage, RiskLimits
from money import PRICE_PLACES, plain
from recovery import Rebuilt
from telegram import start_up_message
from trader import Trader

log = logging.getLogger("bot")


def status_body(trader: Trader, storage: JournalStorage) -> dict[str, Any]:
    settings, now = trader.settings, trader.clock()
    try:
        balance: str | None = plain(trader.exchange.free_balance(settings.quote_asset))
    except ExchangeError:
        balance = None
    counters, open_orders = trader.settler.activity()
    snapshot = trader.risk.snapshot(now)
    for symbol, position in snapshot["positions"].items():
        position |= valuation(trader.exchange.last_price(symbol), Decimal(position["quantity"]),
                              Decimal(position["cost"]))
    unprotected = [symbol for symbol, position in snapshot["positions"].items() if position["protection_error"]]
    return {"mode": settings.trading_mode, "quote_asset": settings.quote_asset, "balance": balance, **snapshot,
            "unprotected": unprotected, "open_orders": open_orders,
            "performance": trader.risk.performance(now.date()),
            "unwritten_journal_rows": trader.journal.unwritten_rows, "limits": settings.risk_limits.shown(),
            "counters": counters,
            "journal": {"path": str(storage.path), "persistent": storage.persistent, "warning": storage.warning},
            "telegram_alerts": settings.telegram_enabled}


def valuation(price: Decimal | None, quantity: Decimal, cost: Decimal) -> dict[str, str | None]:
    """Current price (cached by the monitor, never fetched per request) and unrealized PnL."""
    if price is None:
        return {"current_price": None, "unrealized_pnl": None}
    return {"current_price": plain(price), "unrealized_pnl": plain((quantity * price - cost).quantize(PRICE_PLACES))}


def describe_limits(limits: RiskLimits) -> str:
    quote = limits.quote_asset
    return (f"{plain(limits.trade_amount_usdt)} {quote} per BUY, "
            f"confidence >= {plain(limits.min_confidence)}, "
            f"free balance >= {plain(limits.min_balance_usdt)} {quote}, "
            f"at most {plain(limits.max_risk_per_trade)} {quote} per trade, "
            f"{limits.max_open_trades} open trades, {limits.max_trades_per_day} BUYs per UTC day, "
            f"cooldown {limits.cooldown_seconds}s, daily loss limit "
            f"{plain(limits.max_daily_loss_usdt) + ' ' + quote if limits.max_daily_loss_usdt else 'off'}")


def describe_rebuilt(trader: Trader, rebuilt: Rebuilt) -> str:
    """What the journal replay gave back: positions, today's count, running cooldowns, orders in flight."""
    quote = trader.settings.quote_asset
    summary = trader.risk.summary(trader.clock())
    positions = ", ".join(f"{symbol} {plain(quantity)} (cost {plain(cost)} {quote})"
                          for symbol, (quantity, cost) in summary["positions"].items()) or "none"
    text = (f"rebuilt from trades.csv: {rebuilt.filled} filled trade(s); open positions: {positions}; "
            f"BUYs today: {summary['trades_today']}; cooldowns running: {', '.join(summary['cooling']) or 'none'}; "
            f"orders still unsettled: {len(rebuilt.in_flight)}; paused: {'yes' if summary['paused'] else 'no'}")
    if trader.settings.is_paper:
        text += f"; paper balance {plain(trader.exchange.free_balance(quote))} {quote}"
    return text


def announce_start_up(trader: Trader, rebuilt: Rebuilt, storage: JournalStorage) -> None:
    """Log what the bot starts with, one line per topic (never a secret), and send it to Telegram."""
    settings = trader.settings
    report = [f"mode {settings.trading_mode}, quote asset {settings.quote_asset}",
              f"limits: {describe_limits(settings.risk_limits)}",
              f"journal: {storage.path}", describe_rebuilt(trader, rebuilt),
              f"telegram alerts: {'on' if settings.telegram_enabled else 'off'}"]
    if settings.railway_public_domain:
        report.append(f"TradingView webhook URL: https://{settings.railway_public_domain}/webhook")
    for line in report:
        log.info("start-up: %s", line)
    if storage.warning:
        log.warning("start-up: %s", storage.warning)
        report.append(f"WARNING: {storage.warning}")
    trader.notifier.notify(start_up_message(settings.trading_mode, report))
