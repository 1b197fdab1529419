"""The alert language (issue 12) and the parser's limits (issue 11: numbers, nesting, surrogates, UTF-8, labels).

Most tests call the parser directly; a few go through HTTP in paper mode to show the bot reads the same
messages end to end. The messages are written here, in the shapes traders copy from other bridges.
"""
from __future__ import annotations

import json
import time
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from signals import (MAX_TEXT_LENGTH, WEBHOOK_BODY_SCHEMA, Amount, AmountUnit, InvalidSignal, Signal, alert_labels,
                     body_secret, parse_body, parse_signal, symbol_candidates)
from tests.conftest import SECRET

D = Decimal

QUOTE, BASE, PERCENT = AmountUnit.QUOTE, AmountUnit.BASE, AmountUnit.PERCENT

TUTORIAL = """{
    "passphrase": "%s",
    "time": "2026-03-01T10:15:00Z",
    "exchange": "BINANCE",
    "ticker": "%s",
    "bar": {"time": "2026-03-01T10:00:00Z", "open": 50010.5, "high": 50100, "low": 49900, "close": 50050.25,
            "volume": 1234.5678},
    "strategy": {
        "position_size": 0.0015,
        "order_action": "%s",
        "order_contracts": %s,
        "order_price": 50050.25,
        "order_id": "Long Entry",
        "market_position": "long",
        "market_position_size": 0.0015,
        "prev_market_position": "flat",
        "prev_market_position_size": 0
    }
}"""


def tutorial(action: str = "buy", contracts: str = "0.0015", ticker: str = "BTCUSDT") -> str:
    return TUTORIAL % (SECRET, ticker, action, contracts)


def three_commas(action: str, amount: Any, currency_type: str, instrument: str = "ETHUSDT") -> str:
    return json.dumps({"secret": SECRET, "max_lag": "300", "timestamp": "2026-03-01T10:15:00Z",
                       "trigger_price": "3001.5", "tv_exchange": "BINANCE", "tv_instrument": instrument,
                       "action": action, "bot_uuid": "6f1c2a4e-0000-4000-8000-000000000000",
                       "order": {"amount": amount, "currency_type": currency_type, "order_type": "market"}})


def current(**fields: Any) -> str:
    """Today's documented message."""
    return json.dumps({"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "strategy": "ema",
                       "timeframe": "15", "confidence": 80, "price": "50000"} | fields)


def read(body: str | bytes, quote: str = "USDT") -> Signal:
    return parse_signal(parse_body(body.encode() if isinstance(body, str) else body), quote)


def refusal(body: str | bytes) -> InvalidSignal:
    with pytest.raises(InvalidSignal) as caught:
        read(body)
    return caught.value


# ----- what each dialect must produce --------------------------------------------------------------

@pytest.mark.parametrize("body, symbol, action, amount", [
    # the famous tutorial
    (tutorial(), "BTCUSDT", "BUY", Amount(Decimal("0.0015"), BASE)),
    (tutorial("sell", "0.0015"), "BTCUSDT", "SELL", Amount(Decimal("0.0015"), BASE)),
    (tutorial("BUY", "2", "BINANCE:ETHUSDT"), "ETHUSDT", "BUY", Amount(Decimal(2), BASE)),
    # 3Commas-style signal bots
    (three_commas("enter_long", 150, "quote"), "ETHUSDT", "BUY", Amount(Decimal(150), QUOTE)),
    (three_commas("enter_long", "0.05", "base"), "ETHUSDT", "BUY", Amount(Decimal("0.05"), BASE)),
    (three_commas("exit_long", 100, "position_percent"), "ETHUSDT", "SELL", Amount(Decimal(100), PERCENT)),
    (three_commas("exit_long", "50", "position_percent", "BINANCE:SOLUSDT"), "SOLUSDT", "SELL",
     Amount(Decimal(50), PERCENT)),
    # KEY=VALUE text
    (f"SYMBOL=BTCUSDT\nSIGNAL=BUY\nQTY=0.01\nSECRET={SECRET}\n", "BTCUSDT", "BUY", Amount(Decimal("0.01"), BASE)),
    (f"ticker=BTC/USDT; side=long; amount=$25; secret={SECRET}", "BTCUSDT", "BUY", Amount(Decimal(25), QUOTE)),
    (f"pair=USDT_ETH,action=LONG_OPEN,amount_usdt=12.5,passphrase={SECRET}", "ETHUSDT", "BUY",
     Amount(Decimal("12.5"), QUOTE)),
    ("symbol=ETHUSDT action=exit_all", "ETHUSDT", "SELL", None),
    ("Symbol=btcusdt.p Direction=Flat Size=50%", "BTCUSDT", "SELL", Amount(Decimal(50), PERCENT)),
    # the short form
    ("buy BTCUSDT qty=0.01", "BTCUSDT", "BUY", Amount(Decimal("0.01"), BASE)),
    (f"buy BTCUSDT qty=0.01 secret={SECRET}", "BTCUSDT", "BUY", Amount(Decimal("0.01"), BASE)),
    ("SELL binance:ethusdt amount=25%", "ETHUSDT", "SELL", Amount(Decimal(25), PERCENT)),
    ("close BTCUSDT", "BTCUSDT", "SELL", None),
    ("Long_Open SOL-USDT amount_usdt=20", "SOLUSDT", "BUY", Amount(Decimal(20), QUOTE)),
    ("exit-long BTCUSDT.P", "BTCUSDT", "SELL", None),
    ("buy btc amount=20USDT", "BTC", "BUY", Amount(Decimal(20), QUOTE)),
    ("long symbol=BTCUSDT", "BTCUSDT", "BUY", None),
    # today's format
    (current(), "BTCUSDT", "BUY", None),
    (current(amount_usdt="15"), "BTCUSDT", "BUY", Amount(Decimal(15), QUOTE)),
    (current(action="SELL", symbol="BINANCE:BTCUSDT"), "BTCUSDT", "SELL", None),
    (current(symbol="btc"), "BTC", "BUY", None),
    # JSON whatever the spelling of its names, and whitespace before it
    ('\n  {"SYMBOL": "BTCUSDT", "Action": "Buy", "Amount_USDT": 30}', "BTCUSDT", "BUY", Amount(Decimal(30), QUOTE)),
    ('{"symbol": "BTCUSDT", "orderAction": "entry", "amountUsdt": "30"}', "BTCUSDT", "BUY",
     Amount(Decimal(30), QUOTE)),
    ('{"instrument": "BTC-USDT", "market": "BTCUSDT", "side": "buy", "signal": "LONG"}', "BTCUSDT", "BUY", None),
    ('{"symbol": "BTCUSDT", "action": "buy", "contracts": "0.5", "position_size": 3, "volume": 99}', "BTCUSDT",
     "BUY", Amount(Decimal("0.5"), BASE)),
    ('{"symbol": "BTCUSDT", "action": "buy", "quantity": 0.5, "qty": "0.50"}', "BTCUSDT", "BUY",
     Amount(Decimal("0.5"), BASE)),
    ('{"symbol": "BTCUSDT", "order": "buy", "leverage": "1x", "order_type": "MARKET"}', "BTCUSDT", "BUY", None),
], ids=["tutorial-buy", "tutorial-sell", "tutorial-prefixed", "3c-quote", "3c-base", "3c-exit-all", "3c-exit-half",
        "kv-lines", "kv-semicolons", "kv-commas-quote-first", "kv-exit-all", "kv-perp-flat-percent", "short-qty",
        "short-secret", "short-percent", "short-close", "short-dash-pair", "short-perp", "short-bare-base",
        "short-then-symbol-key", "current", "current-amount", "current-sell-prefixed", "current-bare-base",
        "json-case", "json-camel", "json-aliases-agree", "json-not-amounts-ignored", "json-same-amount-twice",
        "json-order-word"])
def test_each_dialect_is_read_as_meant(body: str, symbol: str, action: str, amount: Amount | None) -> None:
    signal = read(body)
    assert (signal.symbol, signal.action, signal.amount) == (symbol, action, amount)


def test_the_tutorial_keeps_its_price_and_time_and_no_label_from_the_strategy_object() -> None:
    signal = read(tutorial())
    assert signal.price == Decimal("50050.25")  # strategy.order_price, not bar.close
    assert signal.time is not None and signal.time.isoformat() == "2026-03-01T10:15:00+00:00"
    assert (signal.strategy, signal.confidence, signal.alert_id) == ("manual", None, None)  # order_id is not unique


def test_todays_alert_reads_exactly_as_before() -> None:
    body = current(price="50000.10", amount_usdt="20", alert_id="tv-1", time="2026-03-01T10:15:00Z",
                   stop_loss="48000", take_profit=52000, confidence="75.5")
    assert read(body).as_dict() == {
        "symbol": "BTCUSDT", "action": "BUY", "strategy": "ema", "timeframe": "15", "confidence": "75.5",
        "price": "50000.10", "amount_usdt": "20", "amount": "20", "amount_unit": "quote", "alert_id": "tv-1",
        "time": "2026-03-01T10:15:00Z", "stop_loss": "48000", "take_profit": "52000"}


@pytest.mark.parametrize("word", ["buy", "BUY", "long", "Entry", "enter_long", "enter-long", "enterlong",
                                  "long_entry", "open_long", "LONG_OPEN", "long-open"])
def test_buy_words(word: str) -> None:
    assert read(current(action=word)).action == "BUY"


@pytest.mark.parametrize("word", ["sell", "close", "EXIT", "flat", "exit_long", "close-long", "long_close",
                                  "LongExit", "exit_all", "close_all"])
def test_sell_words(word: str) -> None:
    assert read(current(action=word)).action == "SELL"


@pytest.mark.parametrize("spelling", ["BTCUSDT", "btcusdt", "BINANCE:BTCUSDT", "BTC/USDT", "btc-usdt", "BTC_USDT",
                                      "USDT_BTC", "usdt/btc", "BTCUSDT.P", "binance:btcusdt.p"])
def test_symbol_spellings(spelling: str) -> None:
    assert read(current(symbol=spelling)).symbol == "BTCUSDT"
    assert symbol_candidates(spelling, "USDT")[0] == "BTCUSDT"


def test_symbol_candidates_as_before() -> None:
    assert symbol_candidates("BTC", "USDT") == ["BTC", "BTCUSDT"]
    assert symbol_candidates("ETHBTC", "USDT") == ["ETHBTC", "ETHBTCUSDT"]
    assert symbol_candidates("USDT_BTC", "USDT") == ["BTCUSDT"]


@pytest.mark.parametrize("field, value, amount", [
    ("amount", "$20", Amount(Decimal(20), QUOTE)),
    ("amount", "20$", Amount(Decimal(20), QUOTE)),
    ("amount", "20 USDT", Amount(Decimal(20), QUOTE)),
    ("size", "20usdt", Amount(Decimal(20), QUOTE)),
    ("amount", "@0.0015", Amount(Decimal("0.0015"), BASE)),
    ("amount", "0.0015 BTC", Amount(Decimal("0.0015"), BASE)),
    ("size", "25%", Amount(Decimal(25), PERCENT)),
    ("amount_usdt", "20 USDT", Amount(Decimal(20), QUOTE)),
    ("amount_usdt", "$20", Amount(Decimal(20), QUOTE)),
    ("qty", "0.0015 BTC", Amount(Decimal("0.0015"), BASE)),
    ("qty", "@0.0015", Amount(Decimal("0.0015"), BASE)),
    ("contracts", 1, Amount(Decimal(1), BASE)),
])
def test_amount_units_written_in_the_value(field: str, value: Any, amount: Amount) -> None:
    assert read(current(**{field: value})).amount == amount


@pytest.mark.parametrize("currency_type, unit", [("quote", QUOTE), ("base", BASE), ("position_percent", PERCENT),
                                                 ("QUOTE", QUOTE), ("Position-Percent", PERCENT)])
def test_currency_type_gives_amount_its_unit(currency_type: str, unit: AmountUnit) -> None:
    assert read(current(amount=20, currency_type=currency_type)).amount == Amount(Decimal(20), unit)


def test_confidence_is_optional_and_still_checked_when_given() -> None:
    assert read('{"symbol": "BTCUSDT", "action": "buy"}').confidence is None
    assert read(current(confidence="0")).confidence == 0
    assert refusal(current(confidence=101)).field == "confidence"


def test_the_answer_shows_how_the_message_was_read() -> None:
    answer = read("buy BINANCE:ETHUSDT qty=0.25").as_dict()
    assert (answer["symbol"], answer["action"], answer["amount"], answer["amount_unit"], answer["amount_usdt"]) == (
        "ETHUSDT", "BUY", "0.25", "base", None)
    assert Signal("BTCUSDT", "BUY", confidence=Decimal(80)).as_dict()["amount_unit"] is None


# ----- what must be refused, and the words that say what to change -------------------------------

@pytest.mark.parametrize("body, field, words", [
    # spot has no shorts and no leverage
    ("short BTCUSDT", "action", "no shorts"),
    (current(action="open_short"), "action", "no shorts"),
    (current(action="sell_short"), "action", "no shorts"),
    (current(action="SHORT_OPEN"), "action", "no shorts"),
    (current(action="short_close"), "action", "no shorts"),
    (current(action="cover"), "action", "no shorts"),
    (three_commas("enter_short", 150, "quote"), "action", "no shorts"),
    (tutorial("short"), "strategy.order_action", "no shorts"),
    (current(leverage=3), "leverage", "no leverage"),
    (current(leverage="5x"), "leverage", "no leverage"),
    (current(leverage={"type": "cross", "value": 2}), "leverage", "no leverage"),
    # what the bot cannot place is refused, not ignored
    (current(order_type="limit"), "order_type", "market orders only"),
    (three_commas("enter_long", 150, "quote").replace('"market"', '"limit"'), "order.order_type", "market"),
    (current(stop_loss={"price": 48000}), "stop_loss", "is an object"),
    (current(stop_loss="2%"), "stop_loss", "is a percentage"),
    (current(take_profit=" 5 %"), "take_profit", "is a percentage"),
    (current(sl=48000), "sl", "give stop_loss and take_profit as prices"),
    (current(tp="3%"), "tp", "give stop_loss and take_profit as prices"),
    (current(stop_loss_percent=2), "stop_loss_percent", "as prices"),
    (current(trailing_stop=1), "trailing_stop", "as prices"),
    # an amount is never guessed
    (current(amount=20), "amount", "use amount_usdt for USDT to spend or qty"),
    (current(size="0.5"), "size", "use amount_usdt for USDT to spend or qty"),
    (current(volume=12.5), "volume", "never read as an amount"),
    (current(position_size=1), "position_size", "never read as an amount"),
    (current(market_position_size=1), "market_position_size", "never read as an amount"),
    (current(qty="0.01", amount_usdt=20), "qty", "two amounts: give only one"),
    (current(qty="0.01", contracts="0.02"), "contracts", "send only one of them"),
    (current(qty="$20"), "qty", "put that value in amount_usdt"),
    (current(amount_usdt="0.01 BTC"), "amount_usdt", "put that value in qty"),
    (current(amount="0.1 ETH"), "amount", "neither USDT nor the base asset"),
    (current(amount="150%"), "amount", "at most 100"),
    (current(amount="0%"), "amount", "greater than 0"),
    (current(amount="$20", currency_type="base"), "amount", "make currency_type agree"),
    (current(qty="0.01", currency_type="quote"), "qty", "currency_type says quote"),
    (current(amount=20, currency_type="margin"), "currency_type", "quote, base or position_percent"),
    # names that disagree, or a name given twice
    (current(signal="sell"), "signal", "says SELL but action says BUY"),
    (current(ticker="ETHUSDT"), "ticker", "says ETHUSDT but symbol says BTCUSDT"),
    (current(close=51000), "close", "says 51000 but price says 50000"),
    (tutorial("sell").replace('"exchange"', '"action": "buy", "exchange"'), "strategy.order_action",
     "says SELL but action says BUY"),
    ('{"symbol": "BTCUSDT", "Symbol": "BTCUSDT", "action": "buy"}', "Symbol", "is given twice"),
    ('{"symbol": "BTCUSDT", "action": "buy", "stop_loss": 1, "stopLoss": 1}', "stopLoss", "is given twice"),
    ("buy BTCUSDT action=buy", "action", "is given twice"),
    # required
    ('{"symbol": "BTCUSDT"}', "action", "is required"),
    ('{"action": "buy", "exchange": "BINANCE"}', "symbol", "is required"),
    (current(action="hold"), "action", "must be buy or sell"),
    (current(order=5), "order", "must be buy or sell, or an object"),
    (current(symbol="BTC/USDT/X"), "symbol", "must look like BTCUSDT"),
    # spreadsheet-safe texts
    (current(alert_id='x;"=2+3;y'), "alert_id", "semicolon or quote"),
    (current(alert_id="it's"), "alert_id", "semicolon or quote"),
    (current(alert_id="a`b"), "alert_id", "semicolon or quote"),
    (current(strategy="a;b"), "strategy", "may contain only"),
    (current(timeframe="'15"), "timeframe", "may contain only"),
])
def test_ambiguous_or_unsafe_alerts_are_refused_with_a_fix(body: str, field: str, words: str) -> None:
    invalid = refusal(body)
    assert invalid.field == field, str(invalid)
    assert words in str(invalid)
    assert SECRET not in str(invalid)


@pytest.mark.parametrize("body, words", [
    ('{\n  "symbol": {{ticker}},\n  "action": "buy"\n}', "line 2, column 14: an unquoted {{placeholder}}"),
    ('{\n  "symbol": BTCUSDT,\n  "action": "buy"\n}', "line 2, column 13: an unquoted text"),
    ('{"symbol": "BTCUSDT", "action": {{strategy.order.action}}}', "an unquoted {{placeholder}}"),
    ('{"symbol": "BTCUSDT", // the pair\n "action": "buy"}', "line 1, column 23: a comment"),
    ('{"symbol": "BTCUSDT", /* x */ "action": "buy"}', "a comment"),
    ('{"symbol": "BTCUSDT",\n "action": "buy",\n}', "line 3, column 1: a trailing comma"),
    ('{"symbol": "BTCUSDT"\n "action": "buy"}', "line 2, column 2: a missing comma"),
    ("{'symbol': 'BTCUSDT'}", "single quotes"),
    ('{"symbol": "BTCUSDT", "action": "buy"} {"symbol": "ETHUSDT"}', "one JSON object per message"),
    ('[{"symbol": "BTCUSDT", "action": "buy"}]', "is a JSON array: send one alert per message"),
    ('  [1, 2]', "is a JSON array"),
    ("", "is empty"),
    (" \n\t ", "is empty"),
    (" ;, \n;", "is empty"),
    ("BTCUSDT buy", "the first word is not KEY=VALUE nor buy/sell"),
    ("Order buy @ 0.01 filled on BTCUSDT. New strategy position is 0.01", "the first word is not KEY=VALUE"),
    ("SYMBOL = BTCUSDT", "the first word is not KEY=VALUE nor buy/sell (no spaces around =)"),
    ("buy BTCUSDT QTY =0.01", "word 3 is not KEY=VALUE: write a name of letters, digits, _ and - then = and the "
                              "value, with no spaces around ="),
    ("buy BTCUSDT 0.01", "word 3 is not KEY=VALUE"),
    ("SYMBOL=BTCUSDT SIDE=BUY QTY=0,01", "word 4 is not KEY=VALUE"),
    ("symbol=BTCUSDT order.amount=5", "word 2 is not KEY=VALUE"),
])
def test_bodies_that_are_not_one_alert_are_refused_with_a_fix(body: str, words: str) -> None:
    with pytest.raises(InvalidSignal) as caught:
        parse_body(body.encode())
    assert caught.value.field == "body"
    assert words in str(caught.value)


def test_a_body_starting_with_a_brace_is_json_whatever_else_it_looks_like() -> None:
    with pytest.raises(InvalidSignal, match="not valid JSON"):
        parse_body(b"{symbol=BTCUSDT action=buy}")


def test_unknown_keys_are_ignored_in_text_as_in_json() -> None:
    assert read("buy BTCUSDT note=hello comment=from-pine").symbol == "BTCUSDT"
    assert read(current(comment="from pine", extra={"a": [1, 2]})).symbol == "BTCUSDT"


# ----- the secret and the journal labels --------------------------------------------------------

@pytest.mark.parametrize("payload, secret", [
    ({"secret": "a", "passphrase": "b"}, "a"),
    ({"passphrase": "b", "password": "c", "token": "d", "key": "e"}, "b"),
    ({"key": "e", "token": "d"}, "d"),
    ({"Passphrase": "b"}, "b"),
    ({"SECRET": 12}, 12),
    ({"symbol": "BTCUSDT"}, None),
    ({"strategy": {"secret": "nested"}}, None),
    ({"secret": "a", "Secret": "b"}, None),  # ambiguous: only a Bearer header can authenticate
])
def test_body_secret_is_the_first_secret_name_present(payload: dict[str, Any], secret: object) -> None:
    assert body_secret(payload) == secret


@pytest.mark.parametrize("payload", [{"symbol": "BTCUSDT", "Symbol": "BTCUSDT", "action": "buy"},
                                     {"symbol": "BTCUSDT", "action": "buy", "strategy": {"qty": 1, "QTY": 1}}])
def test_a_field_given_twice_in_a_dict_is_refused_too(payload: dict[str, Any]) -> None:
    with pytest.raises(InvalidSignal, match="is given twice"):
        parse_signal(payload, "USDT")


def test_body_secret_from_text_and_the_other_names_are_then_ignored() -> None:
    payload = parse_body(f"buy BTCUSDT passphrase={SECRET} token=BTC key=x".encode())
    assert body_secret(payload) == SECRET
    assert read(f"buy BTCUSDT passphrase={SECRET} token=BTC key=x").symbol == "BTCUSDT"


def test_alert_labels_are_short_harmless_and_never_the_secret() -> None:
    payload = {"secret": SECRET, "Ticker": 'x;"=HYPERLINK(1)' + "y" * 100, "strategy": {"order_action": "Long\x1b"},
               "timeframe": SECRET, "confidence": "1e-999999999", "symbol": f"my {SECRET} pair"}
    labels = alert_labels(payload)
    assert set(labels) == {"symbol", "action", "strategy", "timeframe", "confidence"}
    assert labels["symbol"] == ""  # the secret inside it
    assert labels["action"] == "Long" and labels["strategy"] == "" and labels["timeframe"] == ""
    assert labels["confidence"] == "1e-999999999"
    for text in labels.values():
        assert len(text) <= MAX_TEXT_LENGTH and text.isprintable() and not set(text) & set(";'\"`")
    assert alert_labels({"ticker": 'x;"=HYPERLINK(1)'})["symbol"] == "x=HYPERLINK(1)"


def test_alert_labels_read_the_same_names_leniently() -> None:
    payload = parse_body(tutorial().encode())
    assert alert_labels(payload) == {"symbol": "BTCUSDT", "action": "buy", "strategy": "", "timeframe": "",
                                     "confidence": ""}
    assert alert_labels({"pair": ["BTC"], "side": 10**5000, "Symbol": "a", "symbol": "b"})["symbol"] == "a"
    assert alert_labels({"side": 10**5000})["action"] == "(a long number)"


# ----- issue 11: numbers, nesting, surrogates, bad UTF-8 ----------------------------------------

NUMERIC_FIELDS = ["confidence", "price", "close", "order_price", "trigger_price", "entry", "amount_usdt", "qty",
                  "quantity", "contracts", "order_contracts", "stop_loss", "take_profit", "leverage"]
EXTREME_TEXTS = ["1e-999999999", "1E+999999999", "0E-999999999999999999", "1e-999999", "-1e-999999999",
                 "1e" + "9" * 30, "1e-" + "9" * 30,  # past what Decimal() itself accepts
                 "9" * 41, "1." + "5" * 40, "1e16", "1e-19"]
EXTREME_LITERALS = ["1e-999999999", "1E+999999999", "0E-999999999999999999", "1e-300", "1e308", "7" * 4000,
                    "1e" + "9" * 30,
                    "1." + "3" * 5000, "-1E+400"]


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_extreme_numbers_are_refused_in_every_numeric_field_before_any_arithmetic(field: str) -> None:
    nested = {"qty": "amount"}  # also inside the order object, with its currency_type
    for text in EXTREME_TEXTS:
        for payload in ({field: text}, {"order": {nested.get(field, field): text, "currency_type": "base"}}):
            started = time.monotonic()
            with pytest.raises(InvalidSignal) as caught:
                parse_signal({"symbol": "BTCUSDT", "action": "buy"} | payload, "USDT")
            assert time.monotonic() - started < 0.05, (field, text)
            assert len(str(caught.value)) < 300
    for literal in EXTREME_LITERALS:
        body = '{"symbol": "BTCUSDT", "action": "buy", "%s": %s}' % (field, literal)
        started = time.monotonic()
        with pytest.raises(InvalidSignal) as caught:
            read(body)
        assert time.monotonic() - started < 0.05, (field, literal[:20])
        assert caught.value.field in ("body", field) and len(str(caught.value)) < 300


def test_extreme_numbers_also_in_the_strategy_object_and_in_unknown_fields() -> None:
    for body in ('{"symbol": "BTCUSDT", "strategy": {"order_action": "buy", "order_contracts": 1e-999999999}}',
                 '{"symbol": "BTCUSDT", "action": "buy", "bar": {"volume": 1E+999999999}}',
                 '{"symbol": "BTCUSDT", "action": "buy", "unused": [1, 2, 0E-99999999]}'):
        with pytest.raises(InvalidSignal, match="out of range"):
            read(body)


@pytest.mark.parametrize("value, expected", [("50000.10", "50000.10"), ("5E+4", "50000"), ("0.000000000000000001",
                                             "0.000000000000000001"), ("1.50000000000000000000000", "1.50000000000000000000000"),
                                            (" 80 ", "80")])
def test_sane_numbers_keep_their_digits_and_answers_stay_small(value: str, expected: str) -> None:
    assert read(current(price=value)).as_dict()["price"] == expected


@pytest.mark.parametrize("body", [
    '{"a":' * 1000 + "1" + "}" * 1000,
    '{"a":' * 100000 + "1" + "}" * 100000,
    '{"a": ' + "[" * 1000 + "]" * 1000 + "}",
    '{"a": ' + "[" * 100000 + "]" * 100000 + "}",
    '{"a": ' + '[{"b":' * 50000 + "1" + "}]" * 50000 + "}",
    "[" * 100000,
    '{"a": "' + "[" * 5000 + '", "b": {"c": 1}}',  # brackets inside a text are not nesting
], ids=["1000-objects", "100000-objects", "1000-lists", "100000-lists", "100000-mixed", "100000-open", "in-text"])
def test_deep_nesting_is_a_clean_refusal(body: str) -> None:
    started = time.monotonic()
    try:
        payload = parse_body(body.encode())
    except InvalidSignal as invalid:
        assert invalid.field == "body" and ("nested too deeply" in str(invalid) or "array" in str(invalid))
    else:
        assert payload["b"] == {"c": 1}
    assert time.monotonic() - started < 1


@pytest.mark.parametrize("body", [
    '{"symbol": "\\ud800", "action": "buy"}',
    '{"\\ud800": 1, "symbol": "BTCUSDT", "action": "buy"}',
    '{"secret": "\\udfff"}',
    '{"secret": "abc\\ud800def"}',
    '{"strategy": {"order_action": "\\udc00buy"}}',
    '{"a": ["x", ["\\ud83d"]]}',
    '{"a": {"\\udbff": "x"}}',
    '{"a": "\\ude00\\ud83d"}',  # a low surrogate before a high one is not a pair
])
def test_lone_surrogates_anywhere_are_a_clean_refusal(body: str) -> None:
    with pytest.raises(InvalidSignal, match="lone surrogate") as caught:
        parse_body(body.encode())
    assert caught.value.field == "body"


def test_a_surrogate_pair_is_a_character() -> None:
    assert parse_body(b'{"note": "\\ud83d\\ude00"}') == {"note": "\U0001F600"}


@pytest.mark.parametrize("body", [b"\xff", b'{"symbol": "\xc3\x28"}', b'{"secret": "\xed\xa0\x80"}', b"\xc0\xaf",
                                  b"buy BTCUSDT qty=0.01 secret=\xe2\x82", b"\xfe\xff\x00{"])
def test_invalid_utf8_is_a_clean_refusal(body: bytes) -> None:
    with pytest.raises(InvalidSignal, match="not UTF-8"):
        parse_body(body)


def test_a_utf8_bom_is_skipped() -> None:
    assert read(b"\xef\xbb\xbf" + current().encode()).symbol == "BTCUSDT"


@pytest.mark.parametrize("value", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"])
def test_times_out_of_range_are_refused_not_overflowed(value: str) -> None:
    assert refusal(current(time=value)).field == "time"


def test_the_schema_lists_the_fields_read_at_the_top_level() -> None:
    assert {"symbol", "action", "confidence", "amount_usdt", "stop_loss", "take_profit"} <= set(
        WEBHOOK_BODY_SCHEMA["properties"])
    assert "confidence" not in WEBHOOK_BODY_SCHEMA["required"]


# ----- end to end, paper mode ---------------------------------------------------------------------

@pytest.fixture
def bot(start_bot):
    return start_bot("paper", cooldown_seconds=0)


def post(bot, body: str | bytes, content_type: str = "text/plain", **headers: str):
    return bot.http.post("/webhook", content=body, headers={"content-type": content_type, **headers})


def test_text_plain_key_value_alert_trades_end_to_end(bot) -> None:
    answer = post(bot, f"SYMBOL=BTCUSDT\nSIDE=BUY\nAMOUNT_USDT=8\nPRICE=50000\nSECRET={SECRET}\n")
    assert answer.status_code == 200, answer.text
    result = answer.json()
    assert result["decision"] == "ACCEPTED" and result["trade"]["status"] == "FILLED"
    assert (result["signal"]["symbol"], result["signal"]["amount"], result["signal"]["amount_unit"]) == (
        "BTCUSDT", "8", "quote")
    assert bot.signals()[0]["AmountUSDT"] == "8"


def test_short_form_text_alert_buys_and_sells_end_to_end(bot) -> None:
    assert post(bot, f"buy BTCUSDT price=50000 secret={SECRET}").json()["decision"] == "ACCEPTED"
    answer = post(bot, f"close BINANCE:BTCUSDT price=51000 secret={SECRET}", "application/x-www-form-urlencoded")
    assert answer.json()["decision"] == "ACCEPTED" and answer.json()["signal"]["action"] == "SELL"
    assert [trade["Action"] for trade in bot.trades()] == ["BUY", "SELL"]


def test_json_with_a_passphrase_trades_end_to_end(bot) -> None:
    body = json.dumps({"passphrase": SECRET, "ticker": "BINANCE:BTCUSDT",
                       "strategy": {"order_action": "buy", "order_price": 50000}})
    answer = post(bot, body, "application/json")
    assert answer.status_code == 200, answer.text
    assert answer.json()["decision"] == "ACCEPTED" and answer.json()["signal"]["confidence"] is None
    assert bot.signals()[0]["Confidence"] == ""


@pytest.mark.parametrize("body", [
    json.dumps({"passphrase": "wrong", "symbol": "BTCUSDT", "action": "buy", "price": 50000}),
    json.dumps({"secret": "wrong", "passphrase": SECRET, "symbol": "BTCUSDT", "action": "buy", "price": 50000}),
    f"buy BTCUSDT price=50000 token={SECRET}x",
])
def test_the_first_secret_name_present_decides(bot, body: str) -> None:
    assert post(bot, body).status_code == 401
    assert not bot.settings.signals_csv.exists()


def test_a_base_quantity_is_bought_as_a_quantity_and_judged_at_its_value(start_bot, fake) -> None:
    """The tutorial's order_contracts: a MARKET BUY with `quantity` (not quoteOrderQty), whose value the
    risk rules judge at the alert's price (0.0015 BTC is 75 USDT, above MAX_RISK_PER_TRADE 10)."""
    bot = start_bot("testnet", fake, max_signal_age_seconds=0, cooldown_seconds=0)
    refused = post(bot, tutorial(contracts="0.0015"), "application/json").json()
    assert refused["reason"] == "trade amount 75.075375 USDT is above MAX_RISK_PER_TRADE 10"
    bought = post(bot, tutorial(contracts="0.000199"), "application/json").json()
    assert bought["trade"]["status"] == "FILLED", bought
    [order] = fake.orders
    assert (D(order["origQty"]), D(order["origQuoteOrderQty"])) == (D("0.00019"), D(0))
    assert bot.signals()[-1]["AmountUSDT"] == "9.95999975"


def test_a_percentage_buys_that_share_of_the_free_quote_balance(start_bot) -> None:
    bot = start_bot("paper", max_risk_per_trade=1000, cooldown_seconds=0)
    answer = post(bot, f"buy BTCUSDT amount=25% price=50000 secret={SECRET}").json()
    assert answer["trade"]["status"] == "FILLED" and answer["signal"]["amount_unit"] == "percent"
    assert D(answer["trade"]["amount_usdt"]) <= D(250) and D(answer["trade"]["amount_usdt"]) > D("249.9")


@pytest.mark.parametrize("asked, sold, left_open", [
    ("qty=0.0001", "0.0001", True), ("amount=50%", "0.00019", True), ("amount_usdt=5.1", "0.0001", True),
    ("qty=1", "0.00039", False), ("amount=100%", "0.00039", False)])
def test_a_sell_sells_what_the_alert_asks_never_more_than_the_position(start_bot, fake, asked, sold,
                                                                        left_open) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0, trade_amount_usdt=20, max_risk_per_trade=20)
    assert post(bot, f"buy BTCUSDT secret={SECRET}").json()["trade"]["status"] == "FILLED"
    answer = post(bot, f"sell BTCUSDT {asked} secret={SECRET}").json()
    assert answer["trade"]["status"] == "FILLED", answer
    assert D(answer["trade"]["quantity"]) == D(sold)
    position = bot.status()["positions"].get("BTCUSDT")
    assert (position is not None) == left_open
    if left_open:
        assert D(position["quantity"]) == D("0.0003996") - D(sold)
        assert D(bot.trades()[-1]["PositionLeft"]) == D(position["quantity"])
        assert post(bot, f"flat BTCUSDT secret={SECRET}").json()["trade"]["status"] == "FILLED"
    assert bot.status()["positions"] == {} and bot.trades()[-1]["PositionLeft"] == "0"


def test_a_refused_dialect_is_journalled_with_readable_labels(bot) -> None:
    answer = post(bot, f"short BTCUSDT secret={SECRET}")
    assert answer.status_code == 400 and "no shorts" in answer.json()["error"]
    [row] = bot.signals()
    assert (row["TradingPair"], row["Action"], row["Decision"]) == ("BTCUSDT", "short", "REJECTED")


@pytest.mark.parametrize("field", NUMERIC_FIELDS)
def test_extreme_numbers_are_a_fast_small_400_over_http(bot, field: str) -> None:
    for value in ("1e-999999999", "0E-999999999999999999", "1E+999999999"):
        for body in (current(**{field: value}), current().replace('"price": "50000"', f'"{field}": {value}')):
            started = time.monotonic()
            answer = post(bot, body, "application/json")
            assert answer.status_code == 400, answer.text
            assert len(answer.content) < 300 and time.monotonic() - started < 1
    assert not bot.settings.trades_csv.exists()


@pytest.mark.parametrize("body", [
    b'{"a":' * 1000 + b"1" + b"}" * 1000,
    b'{"a":' * 10000 + b"1" + b"}" * 10000,
    b"[" * 1000 + b"]" * 1000,
    b'{"a": ' + b"[" * 60000 + b"}",
    ('{"secret": "%s", "symbol": "BTCUSDT", "action": "buy", "x": %s}' % (SECRET, "[" * 600 + "]" * 600)).encode(),
], ids=["1000-objects", "10000-objects", "1000-lists", "60000-lists", "600-deep-authenticated"])
def test_deep_nesting_is_400_over_http(bot, body: bytes) -> None:
    for headers in ({}, {"Authorization": f"Bearer {SECRET}"}):
        answer = post(bot, body, "application/json", **headers)
        assert answer.status_code == 400 and answer.json()["error"].startswith("body:")


def test_nesting_past_the_body_limit_is_refused_never_5xx(bot) -> None:
    answer = post(bot, b'{"a":' * 100000 + b"1" + b"}" * 100000, "application/json")
    assert answer.status_code in (400, 413)


@pytest.mark.parametrize("body", [
    b'{"secret": "\\ud800", "symbol": "BTCUSDT", "action": "buy", "price": 50000}',
    b'{"passphrase": "\\udfff", "symbol": "BTCUSDT", "action": "buy", "price": 50000}',
    b'{"\\ud800": 1, "symbol": "BTCUSDT", "action": "buy", "price": 50000}',
    b'{"symbol": "BTC\\ud800", "action": "buy", "price": 50000}',
    b'{"symbol": "BTCUSDT", "action": "buy", "price": 50000, "alert_id": "\\udc00"}',
], ids=["secret", "passphrase", "key", "symbol", "alert_id"])
def test_lone_surrogates_are_400_with_or_without_a_valid_bearer(bot, body: bytes) -> None:
    for headers in ({}, {"Authorization": f"Bearer {SECRET}"}, {"Authorization": "Bearer wrong"}):
        answer = post(bot, body, "application/json", **headers)
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"].startswith("body: contains a lone surrogate")
    assert not bot.settings.trades_csv.exists()


@pytest.mark.parametrize("body", [b"\xff\xfe", b'{"secret": "\xed\xa0\x80"}', b"buy BTCUSDT qty=\xc0\xaf"])
def test_invalid_utf8_is_400_with_or_without_a_valid_bearer(bot, body: bytes) -> None:
    for headers in ({}, {"Authorization": f"Bearer {SECRET}"}):
        answer = post(bot, body, **headers)
        assert answer.status_code == 400 and "not UTF-8" in answer.json()["error"]


# ----- fuzzing the text form and the labels -----------------------------------------------------

FUZZ = settings(derandomize=True, database=None, deadline=None, max_examples=300,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])
NAMES = ["symbol", "TICKER", "pair", "side", "action", "signal", "qty", "amount", "size", "amount_usdt", "price",
         "close", "currency_type", "leverage", "order_type", "stop_loss", "sl", "volume", "confidence", "alert_id",
         "time", "strategy", "timeframe", "secret", "key", "note"]
VALUES = st.one_of(st.sampled_from(["buy", "SELL", "long", "short", "BTCUSDT", "USDT_BTC", "btc", "0.01", "$20",
                                    "20USDT", "25%", "150%", "1e-999999999", "0E-99", "base", "quote", "market",
                                    "limit", "1x", "-0", "", "2026-03-01T10:15:00Z", "=1+1", "a'b"]),
                   st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters=" \t\n\r,;"),
                           max_size=12))
words = st.one_of(st.builds("{}={}".format, st.sampled_from(NAMES), VALUES), VALUES)
separators = st.sampled_from([" ", "\n", ",", ";", "\r\n", " ; "])


@FUZZ
@given(tokens=st.lists(words, max_size=8), separator=separators)
def test_any_text_alert_is_a_signal_or_a_refusal_naming_a_field(tokens: list[str], separator: str) -> None:
    body = separator.join(tokens).encode()
    try:
        signal = parse_signal(parse_body(body), "USDT")
    except InvalidSignal as invalid:
        assert str(invalid).startswith(invalid.field + ":") and len(str(invalid)) < 400
        assert invalid.field == "body" or invalid.field.lower() in [*map(str.lower, NAMES), "order"]
        return
    assert signal.action in ("BUY", "SELL") and signal.symbol.isalnum() and signal.symbol.isupper()
    assert signal.amount is None or 0 < signal.amount.value <= Decimal("1e15")
    assert set(signal.as_dict()) >= {"symbol", "action", "amount", "amount_unit", "amount_usdt"}


json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-(10**60), 10**60), st.floats(), st.text(max_size=20),
              st.decimals(allow_nan=False).map(str)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(NAMES), inner, max_size=3)),
    max_leaves=8)


@FUZZ
@given(payload=st.dictionaries(st.one_of(st.sampled_from(NAMES + ["Symbol", "order", "strategy"]), st.text(max_size=8)),
                               json_values, max_size=6))
def test_labels_and_secret_of_any_payload_never_raise(payload: dict[str, Any]) -> None:
    labels = alert_labels(payload)
    for text in labels.values():
        assert len(text) <= MAX_TEXT_LENGTH and text.isprintable() and not set(text) & set(";'\"`")
    body_secret(payload)
    try:
        parse_signal(payload, "USDT")
    except InvalidSignal as invalid:
        assert str(invalid).startswith(invalid.field + ":")
