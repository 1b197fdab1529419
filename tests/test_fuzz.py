"""Fuzzing, bounded and deterministic: the payload parser with hypothesis, the HTTP API with schemathesis.

No input may cause a 5xx or a crash, and nothing trades without the right secret. Seeds are fixed
(derandomize) and no example database is written, so every run tries the same inputs.
"""
from __future__ import annotations

import json
from datetime import timedelta
import math
import string
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from signals import (LABEL_PUNCTUATION, MAX_ALERT_ID_LENGTH, MAX_DECIMAL_PLACES, MAX_TEXT_LENGTH, InvalidSignal,
                     Signal, parse_body, parse_signal)
from tests.conftest import SECRET

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=150,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.filter_too_much, HealthCheck.data_too_large])
HTTP_FUZZ = settings(FUZZ, max_examples=80)
NO_LIMITS = {"rate_limit_per_minute": 10**9, "auth_failure_limit": 10**9}
FIELDS = ["secret", "symbol", "ticker", "action", "side", "strategy", "timeframe", "confidence", "price",
          "amount_usdt", "alert_id", "time", "stop_loss", "take_profit"]

json_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False, allow_infinity=False),
                         st.text(max_size=80))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
extreme_numbers = st.sampled_from(["1e999999", "-1e999999", "1e-999999", "1e-300", 1e-300, 5e-324, "NaN", "-0",
                                   "0x10", "1_000", " 5 ", "٣", "1e16", "9" * 41, "0." + "0" * 30 + "1", 1e308,
                                   "Infinity", "", 0, -1, True])
numbers = st.one_of(extreme_numbers, st.integers(-10, 10**16), st.floats(allow_nan=False, allow_infinity=False),
                    st.decimals(allow_nan=True, allow_infinity=True).map(str),
                    st.integers(min_value=-(10**45), max_value=10**45).map(str))
labels = st.one_of(st.sampled_from(["EMA cross 9/21", "4h", "1D", "", "=1+1", "@SUM(A1)", "-2+3", "\t=1", "a;=1"]),
                   st.text(max_size=70))
field_values = st.one_of(json_values, numbers, labels, st.text(alphabet=string.printable, max_size=70))
symbols = st.sampled_from(["BTCUSDT", "btc", "BINANCE:ETHUSDT", "BTC/USDT", "BNBUSDT", "LUNAUSDT", "NOPEUSDT"])
alerts = st.fixed_dictionaries(
    {"secret": st.just(SECRET), "symbol": symbols, "action": st.sampled_from(["buy", "sell", "BUY", " Sell "]),
     "confidence": st.one_of(st.integers(0, 100), st.decimals(0, 100, places=3).map(str))},
    optional={"strategy": labels, "timeframe": labels, "price": numbers, "amount_usdt": numbers,
              "alert_id": st.one_of(labels, st.text(max_size=140)), "stop_loss": numbers, "take_profit": numbers,
              "time": st.one_of(labels, st.datetimes().map(lambda moment: moment.isoformat() + "Z"),
                                st.datetimes(timezones=st.timezones()).map(lambda moment: moment.isoformat()))})
payloads = st.builds(lambda alert, changes: alert | changes, alerts,
                     st.dictionaries(st.sampled_from(FIELDS), field_values, max_size=2))
digits = st.one_of(st.integers(1, 45), st.integers(4000, 6000)).map(lambda n: "7" * n)
number_literals = st.builds(lambda sign, whole, fraction, exponent: sign + whole + fraction + exponent,
                            st.sampled_from(["", "-"]), digits, st.sampled_from(["", ".5", "." + "3" * 5000]),
                            st.sampled_from(["", "e999999", "E-999999", "e+308", "e-320", "e7"]))
real_symbols = st.sampled_from(["BTCUSDT", None, "ETH", "BINANCE:BNBUSDT", "LUNAUSDT"])  # a real one first: drawn most


def assert_valid(signal: Signal) -> None:
    """What every parsed Signal guarantees, whatever the input was."""
    assert 0 < len(signal.symbol) <= MAX_TEXT_LENGTH and signal.symbol == signal.symbol.upper()
    assert all(c.isascii() and (c.isalnum() or c in ":/-_.") for c in signal.symbol)
    assert signal.action in ("BUY", "SELL")
    for label in (signal.strategy, signal.timeframe):
        assert len(label) <= MAX_TEXT_LENGTH and all(c.isalnum() or c in LABEL_PUNCTUATION for c in label)
    assert signal.confidence is None or (signal.confidence.is_finite() and 0 <= signal.confidence <= 100)
    assert signal.time is None or signal.time.utcoffset() == timedelta(0)
    for amount in (signal.price, signal.amount_usdt, signal.stop_loss, signal.take_profit):
        assert amount is None or (amount.is_finite() and 0 < amount <= Decimal("1e15")
                                  and amount.normalize().as_tuple().exponent >= -MAX_DECIMAL_PLACES)
    assert signal.alert_id is None or (len(signal.alert_id) <= MAX_ALERT_ID_LENGTH
                                       and signal.alert_id.isprintable())


# ----- the parser ------------------------------------------------------------------------------

@FUZZ
@given(body=st.one_of(st.binary(max_size=300), st.text(max_size=300).map(str.encode)))
def test_any_bytes_are_an_object_or_invalid_signal(body: bytes) -> None:
    try:
        assert isinstance(parse_body(body), dict)
    except InvalidSignal as invalid:
        assert str(invalid).startswith(invalid.field + ":")


@FUZZ
@given(value=json_values, number=number_literals)
def test_any_json_text_is_an_object_or_invalid_signal(value: Any, number: str) -> None:
    text = '{"secret": "%s", "value": %s, "number": %s}' % (SECRET, json.dumps(value), number)
    try:
        payload = parse_body(text.encode())
    except InvalidSignal as invalid:
        assert str(invalid).startswith(invalid.field + ":") and SECRET not in str(invalid)
        return
    assert len(number.lstrip("-")) <= 40
    assert not isinstance(payload["number"], float) or math.isfinite(payload["number"])


@FUZZ
@given(payload=payloads)
def test_any_payload_is_a_valid_signal_or_invalid_signal_naming_a_field(payload: dict[str, Any]) -> None:
    try:
        signal = parse_signal(payload, "USDT")
    except InvalidSignal as invalid:
        assert invalid.field in FIELDS and str(invalid).startswith(invalid.field + ":")
        assert SECRET not in str(invalid)
        return
    assert_valid(signal)


@FUZZ
@given(field=st.sampled_from(["confidence", "price", "amount_usdt"]), number=numbers)
def test_any_number_is_finite_and_in_range_or_refused(field: str, number: Any) -> None:
    try:
        signal = parse_signal({"symbol": "BTCUSDT", "action": "buy", "confidence": 50, field: number}, "USDT")
    except InvalidSignal as invalid:
        assert invalid.field == field
        return
    assert_valid(signal)


# ----- the HTTP API --------------------------------------------------------------------------------

@pytest.fixture
def bot(start_bot, fake):
    """A testnet bot on the fake exchange, with limits that let the fuzzing reach the exchange."""
    return start_bot("testnet", fake, cooldown_seconds=0, max_open_trades=1000, max_trades_per_day=10**6,
                     rate_limit_per_minute=10**9, auth_failure_limit=10**9, max_signal_age_seconds=0,
                     min_confidence=0)


def orders_and_rows(bot, fake) -> tuple[int, int]:
    rows = sum(len(read()) for path, read in ((bot.settings.signals_csv, bot.signals),
                                               (bot.settings.trades_csv, bot.trades)) if path.exists())
    return fake.count("/api/v3/order"), rows


def send_case(bot, case: Any) -> Any:
    """Send a schemathesis case through the bot's own test client (its lifespan is already running)."""
    request = case.as_transport_kwargs(base_url="http://testserver")
    body = {"json": request["json"]} if "json" in request else {"content": request.get("data", b"")}
    return bot.http.request(request["method"], request["url"], headers=request["headers"],
                            params=request["params"], **body)


def test_schemathesis_no_5xx_and_no_trade_without_the_secret(bot, fake) -> None:
    """Every case from the app's OpenAPI schema, valid and invalid, is sent as generated (a stranger:
    no secret) and again with the secret and a real symbol (the owner). Valid alerts are drawn more often
    than one case in six endpoints and two media types would be, so that the owner's cases reach the exchange."""
    schema = schemathesis.openapi.from_dict(bot.app.openapi())
    alerts = schema.include(path="/webhook", method="POST").as_strategy(media_type="application/json")
    cases = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE), alerts)

    @HTTP_FUZZ
    @given(case=cases, symbol=real_symbols)
    def check(case: Any, symbol: str | None) -> None:
        before = orders_and_rows(bot, fake)
        answer = send_case(bot, case)
        assert answer.status_code < 500, answer.text
        assert orders_and_rows(bot, fake) == before
        if case.path == "/webhook" and isinstance(case.body, dict):
            case.body["secret"] = SECRET
            if symbol is not None:
                case.body["symbol"] = symbol
            answer = send_case(bot, case)
            assert answer.status_code in (200, 400), answer.text

    check()
    assert fake.count("/api/v3/order") > 0  # the owner's cases reached the exchange, not only the parser


def test_hypothesis_bodies_no_5xx_and_no_trade_without_the_secret(start_bot, fake) -> None:
    """Paper mode on the fake's prices: the alert's own price is used in the arithmetic there."""
    bot = start_bot("paper", fake, cooldown_seconds=0, max_open_trades=1000, max_trades_per_day=10**6,
                    rate_limit_per_minute=10**9, auth_failure_limit=10**9, max_signal_age_seconds=0,
                    min_confidence=0)

    @HTTP_FUZZ
    @given(payload=payloads)
    def check(payload: dict[str, Any]) -> None:
        before = orders_and_rows(bot, fake)
        stranger = payload | {"secret": "x" + str(payload.get("secret"))}
        answer = bot.http.post("/webhook", content=json.dumps(stranger).encode())
        assert answer.status_code in (400, 401), answer.text
        assert orders_and_rows(bot, fake) == before
        answer = bot.http.post("/webhook", content=json.dumps(payload).encode())
        assert answer.status_code in (200, 400, 401), answer.text

    check()
    assert any(trade["Status"] == "FILLED" for trade in bot.trades())
