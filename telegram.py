"""Telegram alerts: filled and failed orders, exits by stop or target, pause/resume, start-up.

`notify(text)` only puts the text on a bounded queue and returns: a background thread sends it,
so a webhook never waits for Telegram. A message is tried a few times (honouring a short 429
`retry_after`) and then dropped with a log line; so is a message that finds the queue full.
The Bot API carries the token in the URL path, and `requests` puts that URL in its exceptions
(urllib3 in its debug lines): every text that reaches a log line goes through `redact`.
Messages are plain text (no parse_mode), so nothing from an alert can break their markup.
"""
from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from decimal import Decimal
from urllib.parse import quote

import requests

from config import Settings
from money import plain
from orders import OrderStatus, TradeRecord

log = logging.getLogger("telegram")

QUEUE_SIZE = 100
ATTEMPTS = 3
BACKOFF_SECONDS = (1.0, 2.0)
MAX_RETRY_AFTER_SECONDS = 10.0
TIMEOUT_SECONDS = (3.05, 10.0)
STOP_GRACE_SECONDS = 5.0
POLL_SECONDS = 0.1
MAX_TEXT_LENGTH = 4096
MAX_PROBLEM_LENGTH = 300
REDACTED = "<telegram-token>"
URLLIB3_LOGGERS = ("urllib3.connectionpool", "urllib3.util.retry")


@dataclass(frozen=True)
class Attempt:
    """One try at sending: sent, or why not, whether to try again, and after how long if Telegram said."""
    sent: bool
    problem: str = ""
    retryable: bool = False
    retry_after: float | None = None


class RedactFilter(logging.Filter):
    """Rewrites a log record whose text contains the token (urllib3 logs request URLs at DEBUG)."""

    def __init__(self, notifier: TelegramNotifier) -> None:
        super().__init__()
        self.notifier = notifier

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = self.notifier.redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class TelegramNotifier:
    """Sends texts to one Telegram chat from a worker thread; silent when Telegram is not configured."""

    def __init__(self, settings: Settings, queue_size: int = QUEUE_SIZE) -> None:
        token = settings.telegram_bot_token.get_secret_value() if settings.telegram_bot_token else ""
        self.enabled = settings.telegram_enabled
        self._token = token
        self._chat_id = settings.telegram_chat_id
        self._url = f"{settings.telegram_api_url}/bot{token}/sendMessage"
        self._queue: queue.Queue[str] = queue.Queue(maxsize=queue_size)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._session = requests.Session()
        self._log_filter = RedactFilter(self)

    def start(self) -> None:
        if not self.enabled or self._thread is not None:
            return
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).addFilter(self._log_filter)
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name="telegram", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Send what is queued for up to STOP_GRACE_SECONDS (no more retries), then let go."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join(STOP_GRACE_SECONDS)
        if self._thread.is_alive():
            log.warning("telegram: stopping with %d message(s) unsent", self._queue.qsize() + 1)
        self._thread = None
        self._session.close()
        for name in URLLIB3_LOGGERS:
            logging.getLogger(name).removeFilter(self._log_filter)

    def notify(self, text: str) -> bool:
        """Queue a message and return at once; False (and a log line) when it is dropped."""
        if not self.enabled:
            return False
        if self._stopping.is_set():
            log.warning("telegram: message dropped: the bot is stopping")
            return False
        try:
            self._queue.put_nowait(text[:MAX_TEXT_LENGTH])
        except queue.Full:
            log.warning("telegram: message dropped: %d messages already waiting (Telegram slow or down)",
                        self._queue.maxsize)
            return False
        return True

    def redact(self, text: str) -> str:
        if not self._token:
            return text
        return text.replace(self._token, REDACTED).replace(quote(self._token, safe=""), REDACTED)

    def _run(self) -> None:
        while not (self._stopping.is_set() and self._queue.empty()):
            try:
                text = self._queue.get(timeout=POLL_SECONDS)
            except queue.Empty:
                continue
            try:
                self._deliver(text)
            except Exception as error:  # the worker must outlive any surprise
                log.error("telegram: message dropped: unexpected %s: %s", type(error).__name__,
                          self.redact(str(error))[:MAX_PROBLEM_LENGTH])

    def _deliver(self, text: str) -> None:
        for number in range(1, ATTEMPTS + 1):
            attempt = self._send(text)
            if attempt.sent:
                return
            if not attempt.retryable or number == ATTEMPTS:
                break
            pause = attempt.retry_after if attempt.retry_after is not None else BACKOFF_SECONDS[number - 1]
            if self._stopping.wait(pause):
                break
        log.warning("telegram: message dropped after %d tr%s: %s", number, "y" if number == 1 else "ies",
                    attempt.problem)

    def _send(self, text: str) -> Attempt:
        try:
            reply = self._session.post(self._url, timeout=TIMEOUT_SECONDS, json={
                "chat_id": self._chat_id, "text": text, "disable_web_page_preview": True})
        except requests.Timeout:
            return Attempt(False, f"no answer from Telegram within {TIMEOUT_SECONDS[1]:g}s", retryable=True)
        except requests.RequestException as error:
            problem = self.redact(f"cannot reach Telegram: {type(error).__name__}: {error}")
            return Attempt(False, problem[:MAX_PROBLEM_LENGTH], retryable=True)
        if reply.status_code == 200:
            return Attempt(True)
        return self._refusal(reply)

    def _refusal(self, reply: requests.Response) -> Attempt:
        """429: wait what Telegram asks if short; 5xx: try again; anything else (bad token, chat) is final."""
        description, retry_after = telegram_error(reply)
        problem = self.redact(f"Telegram answered {reply.status_code}: {description}")[:MAX_PROBLEM_LENGTH]
        if reply.status_code == 429:
            if retry_after is not None and retry_after > MAX_RETRY_AFTER_SECONDS:
                return Attempt(False, f"{problem} (asks to wait {retry_after:g}s, more than "
                                      f"{MAX_RETRY_AFTER_SECONDS:g}s)")
            return Attempt(False, problem, retryable=True, retry_after=retry_after)
        return Attempt(False, problem, retryable=reply.status_code >= 500)


def telegram_error(reply: requests.Response) -> tuple[str, float | None]:
    """The Bot API's `description` and `parameters.retry_after` from an error answer, when present."""
    try:
        body = reply.json()
    except ValueError:
        return reply.reason or "no description", None
    if not isinstance(body, dict):
        return reply.reason or "no description", None
    parameters = body.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if not isinstance(retry_after, (int, float)) or isinstance(retry_after, bool) or retry_after < 0:
        retry_after = None
    return str(body.get("description") or reply.reason or "no description"), retry_after


def order_filled_message(record: TradeRecord, quote_asset: str) -> str:
    """A filled BUY or SELL (all of it, or the part Binance executed)."""
    return _message(record.mode, "✅", record.reason, _fill_lines(record, quote_asset))


def order_failed_message(record: TradeRecord) -> str:
    """A FAILED order (Binance said no, or could not be reached) or an UNKNOWN one (check Binance)."""
    order = f"{record.action} {record.symbol}"
    if record.status == OrderStatus.UNKNOWN:
        icon, headline = "⚠️", f"{order}: outcome unknown, check the order on Binance"
    else:
        icon, headline = "❌", f"{order} failed"
    return _message(record.mode, icon, headline, [_show(record.reason), f"order {_show(record.client_order_id)}"])


def exit_message(record: TradeRecord, quote_asset: str, trigger: str) -> str:
    """A sale by a protective order; `trigger` names it, e.g. "stop-loss" or "take-profit"."""
    icon = "🛑" if "stop" in trigger.lower() else "🎯"
    part = "" if record.exchange_status in (None, "FILLED") else f" (part, {record.exchange_status})"
    headline = f"{trigger} hit: {record.action} {record.symbol} filled{part}"
    return _message(record.mode, icon, headline, _fill_lines(record, quote_asset))


def unprotected_message(mode: str, symbol: str, problem: str) -> str:
    """A position left without its stop-loss/take-profit on the exchange: the owner must look."""
    return _message(mode, "🚨", f"{symbol}: position NOT protected", [problem])


def paused_message(mode: str, reason: str) -> str:
    return _message(mode, "⏸", "trading paused", [reason] if reason else [])


def resumed_message(mode: str) -> str:
    return _message(mode, "▶️", "trading resumed", [])


def start_up_message(mode: str, details: list[str]) -> str:
    return _message(mode, "🟢", "bot started", details)


def _message(mode: object, icon: str, headline: str, details: list[str]) -> str:
    return "\n".join([f"[{_show(mode)}] {icon} {headline}", *details])[:MAX_TEXT_LENGTH]


def _fill_lines(record: TradeRecord, quote_asset: str) -> list[str]:
    verb = "bought" if record.action == "BUY" else "sold"
    lines = [f"{verb} {_show(record.quantity)} at {_show(record.price)} for {_show(record.amount)} {quote_asset}"]
    if record.fees:
        lines.append(f"fee {record.fees}")
    if record.realized_pnl is not None:
        lines.append(f"P&L {_signed(record.realized_pnl)} {quote_asset} (entry price {_show(record.entry_price)})")
    lines.append(f"order {_show(record.client_order_id)}")
    return lines


def _show(value: object) -> str:
    if value is None or value == "":
        return "?"
    return plain(value) if isinstance(value, Decimal) else str(value)


def _signed(value: object) -> str:
    text = _show(value)
    return f"+{text}" if text[:1].isdigit() and text.strip("0.") else text
