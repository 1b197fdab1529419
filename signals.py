"""The webhook payload: TradingView's alert message, parsed into a validated `Signal`.

TradingView sends the alert text as the body, as `application/json` only when it is valid JSON,
so the raw body is parsed whatever the Content-Type says. Numbers may arrive as strings.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

MAX_TEXT_LENGTH = 64
MAX_ALERT_ID_LENGTH = 128
MAX_JSON_DEPTH = 3
MAX_NUMBER_LENGTH = 40
MAX_NUMBER = Decimal("1e15")
MAX_DECIMAL_PLACES = 18
LABEL_PUNCTUATION = " _-./:()[]+#%,&"
LABEL_PATTERN = r"^[\w ./:()\[\]+#%,&-]*$"  # \w: what str.isalnum() accepts, and _
ACTIONS = {"buy": "BUY", "sell": "SELL"}
# The alert message, for the API page and the schema-driven fuzz tests; parse_signal is the authority.
WEBHOOK_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["symbol", "action", "confidence"],
    "properties": {
        "secret": {"type": "string", "description": "WEBHOOK_SECRET_KEY (or send Authorization: Bearer)"},
        "symbol": {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": "^[A-Za-z0-9:/._-]+$",
                   "description": "or `ticker`: BTCUSDT, BINANCE:BTCUSDT, BTC/USDT, BTC, ..."},
        "action": {"type": "string", "enum": ["buy", "sell"], "description": "or `side`; any case"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 100},
        "strategy": {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": LABEL_PATTERN},
        "timeframe": {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": LABEL_PATTERN},
        "price": {"type": "number", "exclusiveMinimum": 0},
        "amount_usdt": {"type": "number", "exclusiveMinimum": 0},
        "alert_id": {"type": "string", "maxLength": MAX_ALERT_ID_LENGTH},
        "time": {"type": "string", "format": "date-time", "description": "{{timenow}}: stale alerts are refused"},
        "stop_loss": {"type": "number", "exclusiveMinimum": 0, "description": "BUY: stop price placed on Binance"},
        "take_profit": {"type": "number", "exclusiveMinimum": 0, "description": "BUY: target placed on Binance"},
    },
}
WEBHOOK_OPENAPI = {"requestBody": {"required": True,
                                   "content": {"application/json": {"schema": WEBHOOK_BODY_SCHEMA}}}}


class InvalidSignal(ValueError):
    """The payload cannot be a signal; the message names the field and never echoes a secret."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Signal:
    symbol: str
    action: str
    strategy: str
    timeframe: str
    confidence: Decimal
    price: Decimal | None = None
    amount_usdt: Decimal | None = None
    alert_id: str | None = None
    time: datetime | None = None
    stop_loss: Decimal | None = None
    take_profit: Decimal | None = None

    @property
    def is_entry(self) -> bool:
        return self.action == "BUY"

    @property
    def wants_protection(self) -> bool:
        return self.stop_loss is not None or self.take_profit is not None

    def as_dict(self) -> dict[str, str | None]:
        """The normalised signal for the JSON answer (no secret, money as plain strings)."""
        return {name: _answer_value(value) for name, value in self.__dict__.items()}


def parse_json_object(body: bytes) -> dict[str, Any]:
    """The body as a JSON object; rejects NaN/Infinity literals, overlong numbers and needless nesting."""
    try:
        payload = json.loads(body.decode("utf-8"), parse_constant=_reject_constant, parse_int=_short_int,
                             parse_float=_short_float)
    except InvalidSignal:
        raise
    except (ValueError, RecursionError):  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise InvalidSignal("body", "is not valid JSON") from None
    if not isinstance(payload, dict):
        raise InvalidSignal("body", "must be a JSON object")
    if _depth(payload) > MAX_JSON_DEPTH:
        raise InvalidSignal("body", "is nested too deeply")
    return payload


def parse_signal(payload: dict[str, Any], quote_asset: str) -> Signal:
    """A Signal from the decoded JSON object; raises InvalidSignal naming the first bad field."""
    return Signal(
        symbol=_symbol(_first(payload, "symbol", "ticker"), quote_asset),
        action=_action(_first(payload, "action", "side")),
        strategy=_text(payload, "strategy", default="manual"),
        timeframe=_text(payload, "timeframe", default=""),
        confidence=_number(payload, "confidence", required=True, low=Decimal(0), high=Decimal(100)),
        price=_number(payload, "price", low=Decimal(0), exclusive_low=True),
        amount_usdt=_number(payload, "amount_usdt", low=Decimal(0), exclusive_low=True),
        alert_id=_alert_id(payload.get("alert_id")),
        time=_time(payload.get("time")),
        stop_loss=_number(payload, "stop_loss", low=Decimal(0), exclusive_low=True),
        take_profit=_number(payload, "take_profit", low=Decimal(0), exclusive_low=True),
    )


def symbol_candidates(raw: str, quote_asset: str) -> list[str]:
    """Exchange symbols the user may mean: `BINANCE:BTCUSDT`, `BTC/USDT`, `BTCUSDT.P`, `BTC`, ..."""
    symbol = raw.split(":")[-1].upper()
    symbol = symbol.removesuffix(".P").replace("/", "").replace("-", "").replace("_", "")
    candidates = [symbol]
    if not symbol.endswith(quote_asset):
        candidates.append(symbol + quote_asset)
    return candidates


def _answer_value(value: object) -> object:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value


def _time(value: Any) -> datetime | None:
    """TradingView's `{{timenow}}`, e.g. `2026-11-22T09:56:00Z`; a time without zone is UTC."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidSignal("time", "must be an ISO 8601 UTC time like 2026-11-22T09:56:00Z")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidSignal("time", "must be an ISO 8601 UTC time like 2026-11-22T09:56:00Z") from None
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def _reject_constant(name: str) -> None:
    raise InvalidSignal("body", f"{name} is not a number")


def _short_int(text: str) -> int:
    """Refuse digit strings before int() sees them: converting thousands of digits is slow, and
    Python refuses more than 4300 with a ValueError."""
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidSignal("body", "contains a number that is too long")
    return int(text)


def _short_float(text: str) -> float:
    """Like _short_int; and 1e999999 would be infinity, which no field accepts."""
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidSignal("body", "contains a number that is too long")
    number = float(text)
    if math.isinf(number):
        raise InvalidSignal("body", "contains a number that is too large")
    return number


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max((_depth(v) for v in value.values()), default=0)
    if isinstance(value, list):
        return 1 + max((_depth(v) for v in value), default=0)
    return 0


def _first(payload: dict[str, Any], name: str, alias: str) -> tuple[str, Any]:
    return (name, payload[name]) if name in payload else (name, payload.get(alias))


def _symbol(field: tuple[str, Any], quote_asset: str) -> str:
    name, value = field
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InvalidSignal(name, "is required")
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidSignal(name, "must be a text of at most 64 characters")
    cleaned = value.strip()
    if not all(c.isascii() and (c.isalnum() or c in ":/-_.") for c in cleaned):
        raise InvalidSignal(name, "may contain only letters, digits and : / - _ .")
    return cleaned.upper()


def _action(field: tuple[str, Any]) -> str:
    name, value = field
    if value is None:
        raise InvalidSignal(name, "is required (buy or sell)")
    action = ACTIONS.get(str(value).strip().lower()) if isinstance(value, str) else None
    if action is None:
        raise InvalidSignal(name, "must be buy or sell")
    return action


def _text(payload: dict[str, Any], name: str, *, default: str) -> str:
    value = payload.get(name)
    if value is None or value == "":
        return default
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidSignal(name, "must be a text of at most 64 characters")
    label = value.strip()
    if not all(c.isalnum() or c in LABEL_PUNCTUATION for c in label):
        raise InvalidSignal(name, "may contain only letters, digits, spaces and _ - . / : ( ) [ ] + # % , &")
    return label


def _number(payload: dict[str, Any], name: str, *, required: bool = False, low: Decimal,
            high: Decimal | None = None, exclusive_low: bool = False) -> Decimal | None:
    value = payload.get(name)
    if value is None or value == "":
        if required:
            raise InvalidSignal(name, "is required")
        return None
    number = _decimal(name, value)
    too_low = number <= low if exclusive_low else number < low
    if too_low or (high is not None and number > high):
        bounds = f"greater than {low}" if exclusive_low else f"between {low} and {high}"
        raise InvalidSignal(name, f"must be {bounds}")
    return number


def _decimal(name: str, value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise InvalidSignal(name, "must be a number")
    text = str(value).strip()
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidSignal(name, "is too long to be a number")
    try:
        number = Decimal(text)
    except InvalidOperation:
        raise InvalidSignal(name, "must be a number") from None
    if not number.is_finite() or abs(number) > MAX_NUMBER:
        raise InvalidSignal(name, "must be a finite number")
    if _decimal_places(number) > MAX_DECIMAL_PLACES:
        raise InvalidSignal(name, f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    return number


def _decimal_places(number: Decimal) -> int:
    """1e-999999 is finite and small, but dividing by it overflows later: bound the exponent too."""
    exponent = number.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def _alert_id(value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or len(value) > MAX_ALERT_ID_LENGTH:
        raise InvalidSignal("alert_id", f"must be a text of at most {MAX_ALERT_ID_LENGTH} characters")
    if any(not c.isprintable() for c in value):
        raise InvalidSignal("alert_id", "must not contain control characters")
    return value.strip()
