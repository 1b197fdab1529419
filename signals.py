"""The webhook body: TradingView's alert message, read into a validated `Signal`, or refused with a fix.

TradingView sends the alert text as the body, as `application/json` only when it is valid JSON, so the
body is read whatever the Content-Type says: JSON when its first non-blank character is `{` or `[`,
otherwise text. Numbers may arrive as strings.

The alert language
------------------
- Field names ignore case, `_` and `-` (`Symbol`, `ORDER_ACTION`, `orderAction`, `stop-loss` all work).
- Fields are read at the top level and inside the objects `strategy` (the famous tutorial's
  `"strategy": {"order_action": ..., "order_contracts": ...}`) and `order` (`"order": {"amount": 150,
  "currency_type": "quote"}`), with the same names everywhere; nothing else is looked into.
- symbol: `symbol`, `ticker`, `pair`, `instrument`, `tv_instrument`, `market`.
- side: `action`, `side`, `signal`, `direction`, `order_action`, `order` (when a word).
- price: `price`, `close`, `order_price`, `trigger_price`, `entry`.
- amount: `amount_usdt` (quote asset); `quantity`, `qty`, `contracts`, `order_contracts` (base asset);
  `amount`, `size` only with a unit: `currency_type` (quote, base, position_percent) or one in the value
  (`"$20"`, `"20$"`, `"20 USDT"`, `"@0.0015"`, `"0.0015 BTC"`, `"25%"`). `position_size`,
  `market_position_size` and `volume` are never an amount.
- secret: `secret`, `passphrase`, `password`, `token`, `key` (top level).
- Plain text: `KEY=VALUE` pairs separated by newlines, spaces, commas or semicolons, and the short form
  `buy BTCUSDT qty=0.01`.

Precedence (one rule for every field)
-------------------------------------
The secret is the first of `secret`, `passphrase`, `password`, `token`, `key` present; the others are
then ignored (the Bearer header is an alternative to it). For everything else no name outranks
another: every name given for the same thing is read (top level first, then `strategy`, then `order`)
and they must say the same thing after normalising (`BTC/USDT` = `BTCUSDT`, `long` = `buy`, `20` =
`20.0`). If they disagree the alert is refused, naming both fields; a field given twice (`symbol` and
`Symbol`) is refused too. Two amounts in different units (`qty` and `amount_usdt`) are always refused.

Refused, never ignored: a short (`short`, `open_short`, `sell_short`, `cover`, ...), `leverage` other
than 1, an `order_type` other than market, a stop-loss or take-profit the bot cannot place as given (an
object, a percentage, or another name such as `sl`, `tp`, `trailing_stop`), a bare `amount`/`size`
without a unit, a `position_size`/`market_position_size`/`volume` when no amount is given, and a
JSON array (one alert per message).
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal
from enum import StrEnum
from typing import Any, Callable, Iterable

MAX_TEXT_LENGTH = 64
MAX_ALERT_ID_LENGTH = 128
MAX_JSON_DEPTH = 3
MAX_NUMBER_LENGTH = 40
MAX_EXPONENT = 60          # of any number anywhere in the body, checked before any arithmetic
MAX_NUMBER = Decimal("1e15")
MAX_DECIMAL_PLACES = 18
LABEL_PUNCTUATION = " _-./:()[]+#%,&"
LABEL_PATTERN = r"^[\w ./:()\[\]+#%,&-]*$"  # \w: what str.isalnum() accepts, and _
FORBIDDEN_IN_TEXT = ";'\"`"  # a `;`-separated spreadsheet must not find a formula after a quote

SECRET_NAMES = ("secret", "passphrase", "password", "token", "key")
SYMBOL_NAMES = ("symbol", "ticker", "pair", "instrument", "tv_instrument", "market")
SIDE_NAMES = ("action", "side", "signal", "direction", "order_action", "order")
PRICE_NAMES = ("price", "close", "order_price", "trigger_price", "entry")
QUOTE_AMOUNT_NAMES = ("amount_usdt",)
BASE_AMOUNT_NAMES = ("quantity", "qty", "contracts", "order_contracts")
UNIT_AMOUNT_NAMES = ("amount", "size")
NOT_AMOUNT_NAMES = ("position_size", "market_position_size", "volume")
GROUP_NAMES = ("strategy", "order")
OTHER_NAMES = ("timeframe", "confidence", "alert_id", "time", "stop_loss", "take_profit", "currency_type",
               "leverage", "order_type")

BUY_WORDS = {"buy", "long", "entry", "enterlong", "longentry", "openlong", "longopen"}
SELL_WORDS = {"sell", "close", "exit", "flat", "exitlong", "closelong", "longclose", "longexit", "exitall",
              "closeall"}
SHORT_WORDS = {"cover"}  # and every word containing "short"
CURRENCY_TYPES = {"quote": "quote", "base": "base", "positionpercent": "percent"}


class AmountUnit(StrEnum):
    QUOTE = "quote"      # this much of the quote asset (USDT) to spend (BUY) or receive (SELL)
    BASE = "base"        # this quantity of the base asset
    PERCENT = "percent"  # 0 < value <= 100: share of the free quote balance (BUY) or of the position (SELL)


_label = {"type": "string", "maxLength": MAX_TEXT_LENGTH, "pattern": LABEL_PATTERN}
_positive = {"type": "number", "minimum": 10 ** -MAX_DECIMAL_PLACES, "maximum": int(MAX_NUMBER),
             "description": f"a number (or the same as a string), at most {MAX_DECIMAL_PLACES} decimal places"}
# The alert message in its own words, for the API page and the schema-driven fuzz tests; parse_signal is the
# authority. The other names and dialects (module docstring) cannot be said in a schema without allowing
# two names that disagree, which the bot refuses; the description lists them.
WEBHOOK_BODY_SCHEMA: dict[str, Any] = {
    "type": "object",
    "description": "Field names ignore case, _ and -. Also understood: symbol as ticker, pair, instrument, "
                   "tv_instrument or market; action as side, signal, direction, order_action or order; price as "
                   "close, order_price, trigger_price or entry; a base quantity as quantity, qty, contracts or "
                   "order_contracts; amount or size with currency_type or a unit (\"$20\", \"0.01 BTC\", "
                   "\"25%\"); the secret as passphrase, password, token or key; the objects strategy {order_action, "
                   "order_contracts, order_price} and order {amount, currency_type}. Names for the same thing must "
                   "agree. A text/plain body is KEY=VALUE pairs or the short form: buy BTCUSDT amount_usdt=20",
    "required": ["symbol", "action"],
    "properties": {
        "secret": {"type": "string", "description": "WEBHOOK_SECRET_KEY (or send Authorization: Bearer)"},
        "symbol": {"type": "string", "maxLength": MAX_TEXT_LENGTH,
                   "pattern": "^([A-Za-z0-9]+:)?[A-Za-z0-9]+([/_-][A-Za-z0-9]+)?(\\.[Pp])?$",
                   "description": "BTCUSDT, BINANCE:BTCUSDT, BTC/USDT, BTC-USDT, USDT_BTC, BTCUSDT.P, BTC, ..."},
        "action": {"type": "string", "enum": ["buy", "sell"],
                   "description": "any case; also long, entry, enter_long, long_entry, open_long, long_open (BUY) "
                                  "and close, exit, flat, exit_long, close_long, long_close, long_exit, exit_all, "
                                  "close_all (SELL), with - or _ or nothing between the words. Shorts are refused"},
        "confidence": {"type": "number", "minimum": 0, "maximum": 100, "description": "optional"},
        "strategy": _label,
        "timeframe": _label,
        "price": _positive,
        "amount_usdt": {**_positive, "description": "quote asset to spend (BUY) or receive (SELL)"},
        "alert_id": {"type": "string", "maxLength": MAX_ALERT_ID_LENGTH,
                     "pattern": "^[^;'\"`\\u0000-\\u001f\\u007f-\\u009f]*$"},
        "time": {"type": "string", "format": "date-time", "description": "{{timenow}}: stale alerts are refused"},
        "stop_loss": {**_positive, "description": "BUY: stop price placed on Binance (a price, not a percentage)"},
        "take_profit": {**_positive, "description": "BUY: target placed on Binance (a price, not a percentage)"},
        "leverage": {"enum": [1, "1", "1x"], "description": "spot has no leverage: 1 or absent"},
        "order_type": {"type": "string", "enum": ["market"], "description": "market or absent"},
    },
}
WEBHOOK_TEXT_EXAMPLE = "buy BTCUSDT amount_usdt=20 secret=YOUR_WEBHOOK_SECRET_KEY"
WEBHOOK_OPENAPI = {"requestBody": {"required": True, "content": {
    "application/json": {"schema": WEBHOOK_BODY_SCHEMA},
    "text/plain": {"schema": {"type": "string", "maxLength": 65536, "example": WEBHOOK_TEXT_EXAMPLE,
                              "description": "KEY=VALUE pairs (SYMBOL=BTCUSDT SIDE=BUY AMOUNT_USDT=20 SECRET=...) "
                                             "or the short form: buy BTCUSDT amount_usdt=20 secret=..."}}}}}


class InvalidSignal(ValueError):
    """The payload cannot be a signal; the message names the field and never echoes a secret."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field = field


@dataclass(frozen=True)
class Amount:
    value: Decimal
    unit: AmountUnit

    def __str__(self) -> str:
        return {AmountUnit.QUOTE: "{} quote", AmountUnit.BASE: "{} base",
                AmountUnit.PERCENT: "{}%"}[self.unit].format(_plain(self.value))


@dataclass(frozen=True)
class Signal:
    symbol: str
    action: str
    strategy: str = "manual"
    timeframe: str = ""
    confidence: Decimal | None = None
    price: Decimal | None = None
    amount: Amount | None = None
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

    @property
    def amount_usdt(self) -> Decimal | None:
        """The amount when it is in the quote asset (USDT), else None."""
        return self.amount.value if self.amount is not None and self.amount.unit is AmountUnit.QUOTE else None

    def as_dict(self) -> dict[str, object]:
        """The normalised signal for the JSON answer (no secret, money as plain strings)."""
        fields = {name: _answer_value(value) for name, value in self.__dict__.items() if name != "amount"}
        amount = {"amount_usdt": _answer_value(self.amount_usdt),
                  "amount": None if self.amount is None else _answer_value(self.amount.value),
                  "amount_unit": None if self.amount is None else str(self.amount.unit)}
        order = [*list(fields)[:6], *amount, *list(fields)[6:]]
        return {name: (fields | amount)[name] for name in order}


# ----- the body ------------------------------------------------------------------------------------

def parse_body(body: bytes) -> dict[str, Any]:
    """The body as one alert: a JSON object, `KEY=VALUE` text or the short form `buy BTCUSDT qty=0.01`.

    Raises InvalidSignal for anything else, with the field "body" (or the field holding a number out of
    range): bad UTF-8, an array, malformed JSON (with its line, column and usual cause), nesting beyond
    MAX_JSON_DEPTH, a lone surrogate, a field given twice, or a word that is not KEY=VALUE."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise InvalidSignal("body", f"is not UTF-8 text (byte {error.start + 1}): save the message as UTF-8") \
            from None
    text = text.removeprefix("\ufeff")
    start = text.lstrip()[:1]
    if not start:
        raise InvalidSignal("body", "is empty: send the alert message, JSON or KEY=VALUE text")
    if start == "[":
        raise InvalidSignal("body", "is a JSON array: send one alert per message, as one JSON object {...}")
    if start == "{":
        return _parse_json(text)  # the text as sent, so that line and column numbers are right
    return _parse_text(text)


def _parse_json(text: str) -> dict[str, Any]:
    _check_depth(text)
    try:
        payload = json.loads(text, object_pairs_hook=_json_object, parse_constant=_reject_constant,
                             parse_int=_json_int, parse_float=_json_float)
    except json.JSONDecodeError as error:
        raise InvalidSignal("body", f"is not valid JSON: line {error.lineno}, column {error.colno}: "
                                    f"{_json_problem(text, error)}") from None
    except RecursionError:  # cannot happen after _check_depth, but never let it escape
        raise InvalidSignal("body", f"is nested too deeply (at most {MAX_JSON_DEPTH} levels)") from None
    if not isinstance(payload, dict):
        raise InvalidSignal("body", "must be one JSON object {...}")
    return payload


def _check_depth(text: str) -> None:
    """Nesting is measured on the text, without recursion, before the parser sees it."""
    depth = 0
    for match in re.finditer(r'"(?:[^"\\]|\\.)*"?|[\[\]{}]', text):
        token = match.group()
        if token in "[{":
            depth += 1
            if depth > MAX_JSON_DEPTH:
                raise InvalidSignal("body", f"is nested too deeply (at most {MAX_JSON_DEPTH} levels)")
        elif token in "]}":
            depth -= 1


def _json_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    for key, value in pairs:
        if isinstance(value, _BadNumber):
            raise InvalidSignal(key if _NAME_AS_WRITTEN.fullmatch(key) else "body", value.problem)
        for item in (key, value) if isinstance(value, str) else (key, *_items_in(value)):
            if isinstance(item, _BadNumber):
                raise InvalidSignal("body", f"contains a number that {item.problem}")
            if isinstance(item, str) and _SURROGATE.search(item):
                raise InvalidSignal("body", "contains a lone surrogate escape (\\ud800 to \\udfff), which is not "
                                            "a character: remove it")
    _check_duplicates(key for key, _ in pairs)
    return dict(pairs)


_SURROGATE = re.compile("[\ud800-\udfff]")


def _items_in(value: Any) -> Iterable[Any]:
    """The strings and numbers in a list (objects check their own); the depth is already bounded."""
    if isinstance(value, list):
        for item in value:
            yield item
            yield from _items_in(item)


class _BadNumber:
    """A JSON number refused before any arithmetic; the object holding it names its field."""

    def __init__(self, problem: str) -> None:
        self.problem = problem


def _check_duplicates(keys: Iterable[str]) -> None:
    seen: dict[str, str] = {}
    for key in keys:
        name = _fold_name(key)
        if name in _KNOWN and name in seen:
            raise InvalidSignal(_display(key, name), f"is given twice (as {_display(seen[name], name)} and "
                                                     f"{_display(key, name)}): keep one")
        seen.setdefault(name, key)


def _reject_constant(name: str) -> None:
    raise InvalidSignal("body", f"{name} is not a number")


def _json_int(text: str) -> int | _BadNumber:
    """Refuse digit strings before int() sees them: converting thousands of digits is slow, and
    Python refuses more than 4300 with a ValueError."""
    if len(text) > MAX_NUMBER_LENGTH:
        return _BadNumber(f"is longer than {MAX_NUMBER_LENGTH} characters")
    return int(text)


def _json_float(text: str) -> Decimal | _BadNumber:
    """Kept as the Decimal written (no float rounding); 1e-999999999 is refused, before any arithmetic."""
    if len(text) > MAX_NUMBER_LENGTH:
        return _BadNumber(f"is longer than {MAX_NUMBER_LENGTH} characters")
    number = _sane_decimal(text)
    if number is None:
        return _BadNumber(f"is out of range (an exponent beyond +-{MAX_EXPONENT})")
    return number


def _json_problem(text: str, error: json.JSONDecodeError) -> str:
    """The usual cause of a JSON error, in words."""
    pos, message = error.pos, error.msg
    here = text[pos:pos + 1]
    before = text[:pos].rstrip()
    if text.startswith(("//", "/*"), pos) or here == "#":
        return "a comment: JSON has no comments, remove it"
    if "{{" in text[max(pos - 2, 0):pos + 2]:
        return "an unquoted {{placeholder}}: put it in double quotes, like \"{{ticker}}\""
    if here in "}]" and here and before.endswith(","):
        return "a trailing comma before the closing bracket: remove the last comma"
    if message.startswith("Expecting ',' delimiter"):
        return "a missing comma between two fields (or an unquoted text after a value)"
    if here == "'":
        return "single quotes: JSON needs double quotes around names and texts"
    if message.startswith("Expecting value") and (here.isalpha() or here == "$"):
        return ("an unquoted text: a {{placeholder}} that becomes text, like {{ticker}} or "
                "{{strategy.order.action}}, must be in double quotes")
    return next((cause for start, cause in _JSON_CAUSES if message.startswith(start)),
                "the JSON is malformed (check the brackets and quotes)")


_JSON_CAUSES = [
    ("Expecting property name", "a field name without double quotes"),
    ("Expecting ':' delimiter", "a missing : between a field name and its value"),
    ("Unterminated string", "a text without its closing double quote"),
    ("Invalid control character", "a line break or tab inside a text in double quotes"),
    ("Invalid \\escape", "a backslash that starts no JSON escape: write \\\\"),
    ("Extra data", "more after the closing }: send one JSON object per message"),
]


_TOKEN_SEPARATORS = re.compile(r"[\s,;]+")
_TEXT_KEY = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")


def _parse_text(text: str) -> dict[str, Any]:
    """`KEY=VALUE` pairs, or the short form `buy BTCUSDT` followed by `KEY=VALUE` pairs."""
    words = [word for word in _TOKEN_SEPARATORS.split(text) if word]
    if not words:
        raise InvalidSignal("body", "is empty: send the alert message, JSON or KEY=VALUE text")
    pairs: list[tuple[str, str]] = []
    start = 0
    if "=" not in words[0]:
        if _side_word(words[0]) is None:
            spaced = any(word.startswith("=") for word in words)
            raise InvalidSignal("body", "is neither a JSON object nor alert text: the first word is not KEY=VALUE "
                                        f"nor buy/sell{' (no spaces around =)' if spaced else ''}. Write "
                                        "SYMBOL=BTCUSDT SIDE=BUY AMOUNT_USDT=20, or buy BTCUSDT amount_usdt=20")
        pairs.append(("action", words[0]))
        start = 1
        if len(words) > 1 and "=" not in words[1]:
            pairs.append(("symbol", words[1]))
            start = 2
    for number, word in enumerate(words[start:], start + 1):
        key, equals, value = word.partition("=")
        if not equals or not _TEXT_KEY.fullmatch(key):
            raise InvalidSignal("body", f"word {number} is not KEY=VALUE: write a name of letters, digits, _ and - "
                                        f"then = and the value, with no spaces around =")
        pairs.append((key, value))
    _check_duplicates(key for key, _ in pairs)
    return dict(pairs)


# ----- the secret and the journal labels --------------------------------------------------------

def body_secret(payload: dict[str, Any]) -> object | None:
    """The first of secret, passphrase, password, token, key present (any case); None if none, or if that
    one is given twice (then only a Bearer header can authenticate)."""
    given: dict[str, list[Any]] = {}
    for key, value in payload.items():
        if isinstance(key, str) and _fold_name(key) in _SECRETS:
            given.setdefault(_fold_name(key), []).append(value)
    for name in map(_fold_name, SECRET_NAMES):
        if name in given:
            return given[name][0] if len(given[name]) == 1 else None
    return None


def alert_labels(payload: dict[str, Any]) -> dict[str, str]:
    """Short, printable, harmless texts for the journal row of an alert that is not a valid signal."""
    fields = _Fields(payload, strict=False)
    secrets = [value for name in SECRET_NAMES if isinstance(value := fields.top_value(name), str) and value]

    def label(names: tuple[str, ...]) -> str:
        found = [value for _, value in fields.all(names) if not isinstance(value, (dict, list))]
        return _harmless(found[0], secrets) if found else ""

    strategy = fields.top_value("strategy")
    return {"symbol": label(SYMBOL_NAMES), "action": label(SIDE_NAMES),
            "strategy": "" if isinstance(strategy, (dict, list)) else _harmless(strategy, secrets),
            "timeframe": _harmless(fields.top_value("timeframe"), secrets),
            "confidence": label(("confidence",))}


def _harmless(value: Any, secrets: list[str]) -> str:
    if value is None or isinstance(value, (dict, list)):
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 200:
        return "(a long number)"
    text = str(value)[:10 * MAX_TEXT_LENGTH]
    if any(secret in text for secret in secrets):
        return ""
    text = "".join(c for c in text if c.isprintable() and c not in FORBIDDEN_IN_TEXT)
    return text.strip()[:MAX_TEXT_LENGTH].strip()


# ----- the signal ----------------------------------------------------------------------------------

def parse_signal(payload: dict[str, Any], quote_asset: str) -> Signal:
    """A Signal from one alert (see the module docstring); raises InvalidSignal naming the first bad field."""
    fields = _Fields(payload, strict=True)
    symbol = _agreed(fields.all(SYMBOL_NAMES), lambda name, value: _symbol(name, value, quote_asset),
                     required="symbol")
    action = _agreed(fields.all(SIDE_NAMES), _action, required="action")
    _refuse_what_spot_cannot_do(fields)
    return Signal(
        symbol=symbol,
        action=action,
        strategy=_label(*fields.top("strategy"), default="manual"),
        timeframe=_label(*fields.top("timeframe"), default=""),
        confidence=_agreed(fields.all(("confidence",)), _confidence),
        price=_agreed(fields.all(PRICE_NAMES), _positive),
        amount=_amount(fields, symbol, quote_asset.upper()),
        alert_id=_agreed(fields.all(("alert_id",)), _alert_id),
        time=_agreed(fields.all(("time",)), _time),
        stop_loss=_agreed(fields.all(("stop_loss",)), _protective_price),
        take_profit=_agreed(fields.all(("take_profit",)), _protective_price),
    )


def symbol_candidates(raw: str, quote_asset: str) -> list[str]:
    """Exchange symbols the user may mean, most specific first: `BINANCE:BTCUSDT`, `BTC/USDT`, `USDT_BTC`,
    `BTCUSDT.P`, `BTC`, ..."""
    try:
        symbol = _normalise_symbol(raw, quote_asset.upper())
    except InvalidSignal:
        symbol = raw.split(":")[-1].upper().removesuffix(".P")
        symbol = symbol.replace("/", "").replace("-", "").replace("_", "")
    candidates = [symbol]
    if not symbol.endswith(quote_asset):
        candidates.append(symbol + quote_asset)
    return candidates


def _fold_name(key: str) -> str:
    return key.lower().replace("_", "").replace("-", "")


_KNOWN = {_fold_name(name) for name in (*SECRET_NAMES, *SYMBOL_NAMES, *SIDE_NAMES, *PRICE_NAMES,
                                        *QUOTE_AMOUNT_NAMES, *BASE_AMOUNT_NAMES, *UNIT_AMOUNT_NAMES,
                                        *NOT_AMOUNT_NAMES, *GROUP_NAMES, *OTHER_NAMES)}
_SECRETS = {_fold_name(name) for name in SECRET_NAMES}
_NAME_AS_WRITTEN = re.compile(r"[A-Za-z0-9_-]{1,40}")


def _display(key: str, name: str) -> str:
    """The field as the user wrote it when that is a plain name, for error messages (never other text)."""
    if _NAME_AS_WRITTEN.fullmatch(key):
        return key
    return name if name in _KNOWN else "a field"


def _fold(payload: dict[str, Any], prefix: str, strict: bool) -> dict[str, tuple[str, Any]]:
    """{folded name: (name as written, value)}; a known field given twice is refused (strict) or the
    first one kept."""
    fields: dict[str, tuple[str, Any]] = {}
    for key, value in payload.items():
        if not isinstance(key, str):
            continue
        name = _fold_name(key)
        if name in fields:
            if strict and name in _KNOWN:
                raise InvalidSignal(prefix + _display(key, name),
                                    f"is given twice (as {prefix + fields[name][0]} and "
                                    f"{prefix + _display(key, name)}): keep one")
            continue
        fields[name] = (prefix + _display(key, name), value)
    return fields


class _Fields:
    """The alert's fields by folded name: the top level, then the `strategy` and `order` objects."""

    def __init__(self, payload: dict[str, Any], *, strict: bool) -> None:
        if not isinstance(payload, dict):
            raise InvalidSignal("body", "must be one JSON object {...}")
        self.groups = [_fold(payload, "", strict)]
        for group in GROUP_NAMES:
            name, value = self.groups[0].get(group, ("", None))
            if isinstance(value, dict):
                self.groups.append(_fold(value, name + ".", strict))

    def top(self, name: str) -> tuple[str, Any]:
        return self.groups[0].get(_fold_name(name), (name, None))

    def top_value(self, name: str) -> Any:
        return self.top(name)[1]

    def all(self, names: Iterable[str]) -> list[tuple[str, Any]]:
        """Every (name as written, value) given for these names, in the precedence order; an empty text is
        absent, and so are the secret names and objects in a nested group, and the `strategy`/`order`
        objects themselves."""
        found = []
        for folded in map(_fold_name, names):
            for level, group in enumerate(self.groups):
                name, value = group.get(folded, ("", None))
                if value is None or value == "" or (level and folded in _SECRETS):
                    continue
                if folded in GROUP_NAMES and (isinstance(value, dict) or level):
                    continue
                found.append((name, value))
        return found


def _agreed(found: list[tuple[str, Any]], read: Callable[[str, Any], Any], required: str = "") -> Any:
    """The value all the given names agree on; None when none is given (or InvalidSignal when required)."""
    if not found:
        if required:
            raise InvalidSignal(required, "is required")
        return None
    first_name, first = found[0][0], read(*found[0])
    for name, value in found[1:]:
        other = read(name, value)
        if other != first:
            raise InvalidSignal(name, f"says {_shown(other)} but {first_name} says {_shown(first)}: "
                                      f"send only one of them")
    return first


def _shown(value: Any) -> str:
    return _plain(value) if isinstance(value, Decimal) else str(_answer_value(value))


def _normalise_symbol(value: str, quote: str) -> str:
    """BINANCE:BTCUSDT, btcusdt, BTCUSDT.P -> BTCUSDT; BTC/USDT, BTC-USDT, BTC_USDT, USDT_BTC -> BTCUSDT."""
    exchange, colon, symbol = value.strip().upper().rpartition(":")
    if colon and not (exchange.isascii() and exchange.isalnum()):
        raise InvalidSignal("symbol", "must look like BTCUSDT, BINANCE:BTCUSDT, BTC/USDT or BTC")
    symbol = symbol.removesuffix(".P")
    parts = re.split(r"[/_-]", symbol)
    if len(parts) > 2 or not all(part.isascii() and part.isalnum() for part in parts):
        raise InvalidSignal("symbol", "must look like BTCUSDT, BINANCE:BTCUSDT, BTC/USDT or BTC")
    if len(parts) == 2 and parts[0] == quote and parts[1] != quote:
        parts.reverse()  # USDT_BTC: quote first
    return "".join(parts)


def _symbol(name: str, value: Any, quote: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidSignal(name, f"must be a text of at most {MAX_TEXT_LENGTH} characters, like BTCUSDT")
    cleaned = value.strip()
    if not cleaned:
        raise InvalidSignal(name, "is required")
    if not all(c.isascii() and (c.isalnum() or c in ":/-_.") for c in cleaned):
        raise InvalidSignal(name, "may contain only letters, digits and : / - _ .")
    try:
        return _normalise_symbol(cleaned, quote.upper())
    except InvalidSignal as invalid:
        raise InvalidSignal(name, str(invalid).removeprefix("symbol: ")) from None


def _side_word(value: Any) -> str | None:
    """BUY, SELL, SHORT, or None for a word that is neither."""
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        return None
    word = re.sub(r"[\s_-]", "", value.lower())
    if word in BUY_WORDS:
        return "BUY"
    if word in SELL_WORDS:
        return "SELL"
    if "short" in word or word in SHORT_WORDS:
        return "SHORT"
    return None


def _action(name: str, value: Any) -> str:
    side = _side_word(value)
    if side == "SHORT":
        raise InvalidSignal(name, "opens or closes a short, and Binance spot has no shorts: send buy to open a "
                                  "long and sell to close it")
    if side is None:
        if name.lower() == "order" and not isinstance(value, str):
            raise InvalidSignal(name, "must be buy or sell, or an object like {\"amount\": 20, \"currency_type\": "
                                      "\"quote\"}")
        raise InvalidSignal(name, "must be buy or sell (also understood: long, entry, enter_long, open_long, "
                                  "close, exit, flat, exit_long, close_long, close_all)")
    return side


def _refuse_what_spot_cannot_do(fields: _Fields) -> None:
    for name, value in fields.all(("leverage",)):
        text = str(value).strip().lower().strip("x") if isinstance(value, (str, int, float, Decimal)) else ""
        if isinstance(value, bool) or _sane_decimal(text) != 1:
            raise InvalidSignal(name, "must be 1: Binance spot has no leverage (remove it or set it to 1)")
    for name, value in fields.all(("order_type",)):
        if not isinstance(value, str) or value.strip().lower() != "market":
            raise InvalidSignal(name, "must be market: the bot sends market orders only (remove it or set it to "
                                      "market)")
    for group in fields.groups:
        for folded, (name, _) in group.items():
            if folded not in _KNOWN and (folded in ("sl", "tp") or any(
                    part in folded for part in ("stop", "profit", "trailing"))):
                raise InvalidSignal(name, "is not understood, and the bot does not ignore protection: give "
                                          "stop_loss and take_profit as prices, or remove it")
    amounts = (*QUOTE_AMOUNT_NAMES, *BASE_AMOUNT_NAMES, *UNIT_AMOUNT_NAMES)
    never = fields.all(NOT_AMOUNT_NAMES)
    if never and not fields.all(amounts):
        raise InvalidSignal(never[0][0], "is never read as an amount (TradingView's {{volume}} is the bar's "
                                         "volume): set the amount with amount_usdt or qty, or remove it to "
                                         "trade the default amount")


def _amount(fields: _Fields, symbol: str, quote: str) -> Amount | None:
    currency = _agreed(fields.all(("currency_type",)), _currency_type)
    base = symbol.removesuffix(quote) if symbol.endswith(quote) and symbol != quote else None
    read: list[tuple[str, Amount]] = []
    for names, unit in ((QUOTE_AMOUNT_NAMES, AmountUnit.QUOTE), (BASE_AMOUNT_NAMES, AmountUnit.BASE),
                        (UNIT_AMOUNT_NAMES, currency)):
        for name, value in fields.all(names):
            read.append((name, _amount_value(name, value, unit, symbol, base, quote)))
    if not read:
        return None
    first_name, first = read[0]
    for name, amount in read[1:]:
        if amount.unit != first.unit:
            raise InvalidSignal(name, f"and {first_name} are two amounts: give only one")
        if amount != first:
            raise InvalidSignal(name, f"says {amount} but {first_name} says {first}: send only one of them")
    if currency is not None and first.unit != currency:
        raise InvalidSignal(first_name, f"is an amount in {first.unit} but currency_type says {currency}: "
                                        f"make them agree")
    return first


def _currency_type(name: str, value: Any) -> AmountUnit:
    unit = CURRENCY_TYPES.get(_fold_name(value.strip())) if isinstance(value, str) else None
    if unit is None:
        raise InvalidSignal(name, "must be quote, base or position_percent")
    return AmountUnit(unit)


_AMOUNT_WITH_ASSET = re.compile(r"(.*?[0-9.])\s*([A-Za-z][A-Za-z0-9]*)")


def _amount_value(name: str, value: Any, unit: AmountUnit | None, symbol: str, base: str | None,
                  quote: str) -> Amount:
    """A number in the field's unit, or a text with its own unit ("$20", "20 USDT", "0.01 BTC", "@0.01",
    "25%"), which must agree with the field's."""
    written: AmountUnit | None = None
    number: Any = value
    if isinstance(value, str):
        text = value.strip()
        if text[:1] in "$@" and len(text) > 1:
            written, number = (AmountUnit.QUOTE if text[0] == "$" else AmountUnit.BASE), text[1:]
        elif text and text[-1] in "$%":
            written, number = (AmountUnit.QUOTE if text[-1] == "$" else AmountUnit.PERCENT), text[:-1]
        elif (match := _AMOUNT_WITH_ASSET.fullmatch(text)) and _sane_decimal(text) is None:
            number, asset = match.group(1), match.group(2).upper()
            if asset == quote:
                written = AmountUnit.QUOTE
            elif asset in (base, symbol):
                written = AmountUnit.BASE
            else:
                raise InvalidSignal(name, f"is in {asset[:12]}, which is neither {quote} nor the base asset of "
                                          f"{symbol}: use {quote} or qty")
    if written is not None and unit is not None and written != unit:
        units = {AmountUnit.QUOTE: quote, AmountUnit.BASE: "the base asset", AmountUnit.PERCENT: "percent"}
        field = {AmountUnit.QUOTE: "amount_usdt", AmountUnit.BASE: "qty", AmountUnit.PERCENT: "amount"}[written]
        raise InvalidSignal(name, f"counts in {units[unit]} but its value is written in {units[written]}: put "
                                  f"that value in {field}, or make currency_type agree")
    unit = written or unit
    if unit is None:
        raise InvalidSignal(name, f"has no unit: use amount_usdt for {quote} to spend or qty for a quantity of the "
                                  f"base asset, or write the unit: \"20 {quote}\", \"0.001 BTC\", \"25%\"")
    amount = _positive(name, number)
    if unit is AmountUnit.PERCENT and amount > 100:
        raise InvalidSignal(name, "must be a percentage greater than 0 and at most 100")
    return Amount(amount, unit)


def _label(name: str, value: Any, *, default: str) -> str:
    if value is None or value == "" or isinstance(value, dict) and name.lower() == "strategy":
        return default
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        value = _number_text(value)
    if not isinstance(value, str) or len(value) > MAX_TEXT_LENGTH:
        raise InvalidSignal(name, f"must be a text of at most {MAX_TEXT_LENGTH} characters")
    label = value.strip()
    if not all(c.isalnum() or c in LABEL_PUNCTUATION for c in label):
        raise InvalidSignal(name, "may contain only letters, digits, spaces and _ - . / : ( ) [ ] + # % , &")
    return label


def _alert_id(name: str, value: Any) -> str:
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        value = _number_text(value)
    if not isinstance(value, str) or len(value) > MAX_ALERT_ID_LENGTH:
        raise InvalidSignal(name, f"must be a text of at most {MAX_ALERT_ID_LENGTH} characters")
    if any(not c.isprintable() for c in value):
        raise InvalidSignal(name, "must not contain control characters")
    if any(c in FORBIDDEN_IN_TEXT for c in value):
        raise InvalidSignal(name, "must not contain a semicolon or quote characters (' \" `)")
    return value.strip()


def _number_text(value: int | float | Decimal) -> str | None:
    """A number used as a text (a label or an id), as written; None (refused) when it is very long."""
    if isinstance(value, int) and value.bit_length() > 4 * MAX_NUMBER_LENGTH:
        return None
    return str(value)


def _time(name: str, value: Any) -> datetime:
    """TradingView's `{{timenow}}`, e.g. `2026-11-22T09:56:00Z`; a time without zone is UTC."""
    problem = "must be an ISO 8601 UTC time like 2026-11-22T09:56:00Z"
    if not isinstance(value, str) or len(value) > 40:
        raise InvalidSignal(name, problem)
    try:
        moment = datetime.fromisoformat(value.strip())
        moment = moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
    except (ValueError, OverflowError):  # 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        raise InvalidSignal(name, problem) from None
    return moment


def _confidence(name: str, value: Any) -> Decimal:
    number = _decimal(name, value)
    if not 0 <= number <= 100:
        raise InvalidSignal(name, "must be between 0 and 100")
    return number


def _positive(name: str, value: Any) -> Decimal:
    number = _decimal(name, value)
    if number <= 0:
        raise InvalidSignal(name, "must be greater than 0")
    return number


def _protective_price(name: str, value: Any) -> Decimal:
    if isinstance(value, (dict, list)):
        raise InvalidSignal(name, "is an object, which the bot cannot place: give the price, like 48000")
    if isinstance(value, str) and value.strip().endswith("%"):
        raise InvalidSignal(name, "is a percentage, which the bot cannot place: give the price, like 48000")
    return _positive(name, value)


_NUMBER = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?([0-9]+))?")


def _sane_decimal(text: str) -> Decimal | None:
    """The number written in plain ASCII digits, if its exponent is within +-MAX_EXPONENT (checked on the
    digits as written, before any arithmetic that could take a gigabyte); else None."""
    match = _NUMBER.fullmatch(text)
    if len(text) > MAX_NUMBER_LENGTH or not match or len(match.group(1) or "") > 4:
        return None
    number = Decimal(text)
    exponent = number.as_tuple().exponent
    if not isinstance(exponent, int) or abs(exponent) > MAX_EXPONENT:
        return None
    return number


def _decimal(name: str, value: Any) -> Decimal:
    """A number between -MAX_NUMBER and MAX_NUMBER with at most MAX_DECIMAL_PLACES places, from a JSON number or
    a text (ASCII digits, a dot, an exponent); -0 is 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str, Decimal)):
        raise InvalidSignal(name, "must be a number")
    if isinstance(value, int) and value.bit_length() > 4 * MAX_NUMBER_LENGTH:
        raise InvalidSignal(name, f"is longer than {MAX_NUMBER_LENGTH} digits")
    text = (repr(value) if isinstance(value, float) else str(value)).strip()
    if len(text) > MAX_NUMBER_LENGTH:
        raise InvalidSignal(name, f"is longer than {MAX_NUMBER_LENGTH} characters")
    if not _NUMBER.fullmatch(text):
        raise InvalidSignal(name, "must be a number written with digits 0-9 and a dot")
    number = _sane_decimal(text)
    if number is None:
        raise InvalidSignal(name, f"is out of range (at most {MAX_DECIMAL_PLACES} decimal places and at most "
                                  f"{MAX_NUMBER:f})")
    sign, digits, exponent = number.as_tuple()
    assert isinstance(exponent, int)
    if not any(digits):
        return Decimal(0)
    places = -exponent - (len(digits) - len("".join(map(str, digits)).rstrip("0")))
    if places > MAX_DECIMAL_PLACES:
        raise InvalidSignal(name, f"must have at most {MAX_DECIMAL_PLACES} decimal places")
    if abs(number) > MAX_NUMBER:
        raise InvalidSignal(name, f"must be at most {MAX_NUMBER:f}")
    return number


def _plain(value: Decimal) -> str:
    """Plain digits, never `1E-5`; bounded, even for a Decimal built by hand with a huge exponent."""
    exponent = value.as_tuple().exponent
    return format(value, "f") if isinstance(exponent, int) and abs(exponent) <= 2 * MAX_EXPONENT else str(value)


def _answer_value(value: object) -> object:
    if isinstance(value, Decimal):
        return _plain(value)
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value
