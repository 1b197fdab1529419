"""Strict input: labels have a character set, numbers a sane range, and no body can cause a 500 or a hang."""
from __future__ import annotations

import time

import pytest

from tests.conftest import SECRET


@pytest.fixture
def bot(start_bot):
    return start_bot("paper", cooldown_seconds=0)


def post_raw(bot, body: bytes):
    return bot.http.post("/webhook", content=body, headers={"content-type": "application/json"})


@pytest.mark.parametrize("strategy, timeframe", [
    ("EMA cross 9/21", "4h"),
    ("RSI(14) + MACD [LuxAlgo]", "1D"),
    ("breakout_v2.1 #3", "15"),
    ("Stratégie 50%, long & short", "1W"),
])
def test_normal_strategy_and_timeframe_names_are_accepted(bot, strategy, timeframe) -> None:
    answer = bot.send(strategy=strategy, timeframe=timeframe, price=50000)
    assert answer.status_code == 200, answer.text
    assert answer.json()["signal"]["strategy"] == strategy
    assert (bot.signals()[0]["Strategy"], bot.signals()[0]["TimeFrame"]) == (strategy, timeframe)


@pytest.mark.parametrize("text", ["=1+1", "@SUM(A1)", "a;b", "<script>", "x\u202ey", "tab\there", "quote\"d",
                                  "cmd|' /C calc'!A0"])
def test_strategy_and_timeframe_outside_the_character_set_are_400(bot, text) -> None:
    for field in ("strategy", "timeframe"):
        answer = bot.send(price=50000, **{field: text})
        assert answer.status_code == 400
        assert answer.json()["error"].startswith(f"{field}: may contain only")
    assert not bot.settings.trades_csv.exists()


@pytest.mark.parametrize("fields, named", [
    ({"price": "1e-999999"}, "price"),
    ({"price": 1e-300}, "price"),
    ({"price": "0.0000000000000000001"}, "price"),
    ({"amount_usdt": "1e-999999"}, "amount_usdt"),
    ({"confidence": "1e-30"}, "confidence"),
    ({"price": "1e16"}, "price"),
    ({"price": "-0"}, "price"),
])
def test_numbers_out_of_range_are_400_not_500(bot, fields, named) -> None:
    answer = bot.send(**({"price": 50000} | fields))
    assert answer.status_code == 400, answer.text
    assert answer.json()["error"].startswith(f"{named}:")


@pytest.mark.parametrize("number", [
    b"1" * 10000,               # Python refuses int() of more than 4300 digits with a ValueError
    b"1" * 4000,                # accepted by int(), but far longer than any price
    b"-" + b"9" * 5000,
    b"1e999999",                # a float literal: inf
    b"1." + b"5" * 20000,
    b"1" * 20000 + b".5",
    b"-1E+400",
], ids=["10000-digit-int", "4000-digit-int", "5000-digit-negative", "1e999999", "20000-decimals",
        "20000-digit-float", "-1E+400"])
def test_huge_json_numbers_are_a_quick_400(bot, number) -> None:
    for field in ("confidence", "price", "unused"):
        body = b'{"secret": "%s", "symbol": "BTCUSDT", "action": "buy", "confidence": 80, "%s": %s}' % (
            SECRET.encode(), field.encode(), number)
        started = time.monotonic()
        answer = post_raw(bot, body)
        assert answer.status_code == 400, (field, answer.text)
        assert answer.json()["error"].startswith(("body:", f"{field}:"))
        assert time.monotonic() - started < 1
    assert not bot.settings.trades_csv.exists()


@pytest.mark.parametrize("body", [
    b"[" * 30000 + b"]" * 30000,
    b'{"a":' * 10000 + b"1" + b"}" * 10000,
    ('{"secret": "%s", "a": [[[[1]]]]}' % SECRET).encode(),
], ids=["30000-lists", "10000-objects", "4-levels"])
def test_deep_nesting_is_400(bot, body) -> None:
    answer = post_raw(bot, body)
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("body:")
