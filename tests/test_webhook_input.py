"""What the webhook accepts: the secret, the body, every bad input, and symbol spellings."""
from __future__ import annotations

import json

import pytest

from tests.conftest import SECRET


@pytest.fixture
def bot(start_bot):
    return start_bot("paper", cooldown_seconds=0)


def post_raw(bot, body: bytes | str, content_type: str = "application/json", **headers: str):
    return bot.http.post("/webhook", content=body, headers={"content-type": content_type, **headers})


def test_text_plain_json_from_tradingview_is_accepted(bot) -> None:
    body = json.dumps({"secret": SECRET, "ticker": "BTCUSDT", "side": "BUY", "strategy": "ema",
                       "timeframe": "60", "confidence": "75.5", "price": "50000.10"})
    answer = post_raw(bot, body, "text/plain; charset=utf-8")
    assert answer.status_code == 200
    result = answer.json()
    assert result["decision"] == "ACCEPTED"
    assert result["signal"] == {"symbol": "BTCUSDT", "action": "BUY", "strategy": "ema", "timeframe": "60",
                                "confidence": "75.5", "price": "50000.10", "amount_usdt": None, "amount": None,
                                "amount_unit": None, "alert_id": None,
                                "time": None, "stop_loss": None, "take_profit": None}
    assert result["trade"]["status"] == "FILLED"


def test_unknown_fields_are_ignored_and_no_secret_is_echoed(bot) -> None:
    answer = bot.send(action="Buy", price=50000, comment="from pine", extra={"a": 1})
    assert answer.status_code == 200 and answer.json()["decision"] == "ACCEPTED"
    assert SECRET not in answer.text


def test_bearer_header_works_instead_of_the_body_secret(bot) -> None:
    answer = bot.send(secret=None, price=50000, headers={"Authorization": f"Bearer {SECRET}"})
    assert answer.status_code == 200 and answer.json()["decision"] == "ACCEPTED"


@pytest.mark.parametrize("secret, headers", [
    (None, {}),
    ("wrong-secret", {}),
    ("", {}),
    (12345, {}),
    (None, {"Authorization": "Bearer wrong"}),
    (None, {"Authorization": SECRET}),
    (SECRET[:-1], {}),
])
def test_missing_or_wrong_secret_is_401_and_nothing_is_recorded(bot, secret, headers) -> None:
    answer = bot.send(secret=secret, price=50000, headers=headers)
    assert answer.status_code == 401
    assert SECRET not in answer.text
    assert not bot.settings.signals_csv.exists() and not bot.settings.trades_csv.exists()


@pytest.mark.parametrize("fields, named", [
    ({"symbol": None}, "symbol"),
    ({"symbol": ""}, "symbol"),
    ({"symbol": 42}, "symbol"),
    ({"symbol": "BTC USDT"}, "symbol"),
    ({"symbol": "B" * 65}, "symbol"),
    ({"action": None}, "action"),
    ({"action": "hold"}, "action"),
    ({"action": 1}, "action"),
    ({"confidence": "high"}, "confidence"),
    ({"confidence": 101}, "confidence"),
    ({"confidence": -1}, "confidence"),
    ({"confidence": "NaN"}, "confidence"),
    ({"confidence": "Infinity"}, "confidence"),
    ({"confidence": True}, "confidence"),
    ({"price": "0"}, "price"),
    ({"price": "-3"}, "price"),
    ({"price": "1e400"}, "price"),
    ({"price": "abc"}, "price"),
    ({"amount_usdt": "-10"}, "amount_usdt"),
    ({"amount_usdt": [10]}, "amount_usdt"),
    ({"strategy": "x" * 65}, "strategy"),
    ({"timeframe": {"a": 1}}, "timeframe"),
    ({"alert_id": "line\nbreak"}, "alert_id"),
])
def test_bad_field_is_400_naming_the_field(bot, fields, named) -> None:
    answer = bot.send(**({"price": 50000} | fields))
    assert answer.status_code == 400
    assert answer.json()["error"].startswith(f"{named}:")
    assert "Traceback" not in answer.text
    assert not bot.settings.trades_csv.exists()


def test_authenticated_bad_signal_leaves_a_rejected_row_to_help_fix_the_alert(bot) -> None:
    bot.send(confidence="high")
    [row] = bot.signals()
    assert row["Decision"] == "REJECTED"
    assert row["Reason"].startswith("invalid signal: confidence")


@pytest.mark.parametrize("body", [
    b"not json",
    b"{\"secret\": ",
    b"[1, 2, 3]",
    b"\xff\xfe\x00",
    b"",
    ('{"secret": "%s", "confidence": NaN}' % SECRET).encode(),
    ('{"secret": "%s", "confidence": Infinity}' % SECRET).encode(),
    ('{"secret": "%s", "a": {"b": {"c": {"d": 1}}}}' % SECRET).encode(),
    b"[" * 100000 + b"]" * 100000,
])
def test_body_that_is_not_a_json_object_is_400(bot, body) -> None:
    answer = post_raw(bot, body[:65536])
    assert answer.status_code == 400
    assert answer.json()["error"].startswith("body:")


def test_body_over_64_kib_is_413(bot) -> None:
    body = json.dumps({"secret": SECRET, "padding": "x" * 70000})
    assert post_raw(bot, body).status_code == 413


def test_body_over_64_kib_without_content_length_is_413(bot) -> None:
    chunks = (b"x" * 8192 for _ in range(10))
    answer = bot.http.post("/webhook", content=chunks, headers={"content-type": "application/json"})
    assert answer.status_code == 413


def test_health_needs_no_secret_and_status_does(bot) -> None:
    assert bot.http.get("/health").json() == {"status": "ok", "mode": "paper"}
    assert bot.http.get("/status").status_code == 401
    assert bot.http.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert bot.status()["mode"] == "paper"


@pytest.mark.parametrize("spelling", ["BTCUSDT", "btcusdt", "BINANCE:BTCUSDT", "BTC/USDT", "BTC-USDT",
                                      "BTCUSDT.P", "BTC", "btc"])
def test_symbol_spellings_resolve_against_the_exchange_list(start_bot, fake, spelling) -> None:
    bot = start_bot("paper", fake)
    answer = bot.send(symbol=spelling, price=50000).json()
    assert answer["decision"] == "ACCEPTED", answer
    assert answer["signal"]["symbol"] == "BTCUSDT"
    assert bot.signals()[-1]["TradingPair"] == "BTCUSDT"


@pytest.mark.parametrize("symbol", ["DOGEBTC", "NOPEUSDT", "LUNAUSDT"])
def test_symbol_that_does_not_trade_on_binance_is_rejected(start_bot, fake, symbol) -> None:
    bot = start_bot("testnet", fake)
    answer = bot.send(symbol=symbol).json()
    assert answer["decision"] == "REJECTED"
    assert "does not trade on Binance" in answer["reason"]
    assert fake.count("/api/v3/order") == 0
