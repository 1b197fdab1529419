"""The CSV journal: Excel-friendly files, safe cells, parallel appends, and the bot's memory on restart."""
from __future__ import annotations

import logging
import re
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from csv_logger import SIGNAL_FIELDS, TRADE_FIELDS, CsvFile
from tests.conftest import read_csv

TIME = re.compile(r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
NUMBER = re.compile(r"^-?\d+(\.\d+)?$")


def test_csv_files_open_in_excel_and_read_back_with_the_csv_module(start_bot) -> None:
    bot = start_bot("paper", cooldown_seconds=0)
    bot.send(price="50000", amount_usdt="0.00001")
    bot.send(price="50000.5", amount_usdt="7.5", alert_id="a-1")
    bot.send(action="sell", price="50100")
    for path, prefix in [(bot.settings.signals_csv, "DateTime,TradingPair,Action,Strategy,TimeFrame,Confidence,"
                                                    "Decision,Reason"),
                         (bot.settings.trades_csv, "DateTime,TradingPair,Action,TradeAmount,Price,OrderID,Status")]:
        raw = path.read_bytes()
        assert raw.startswith(b"\xef\xbb\xbf" + prefix.encode())
        assert raw.count(prefix.encode()) == 1
    signals, trades = bot.signals(), bot.trades()
    assert list(signals[0]) == SIGNAL_FIELDS and list(trades[0]) == TRADE_FIELDS
    assert [s["Decision"] for s in signals] == ["REJECTED", "ACCEPTED", "ACCEPTED"]
    assert signals[0]["AmountUSDT"] == "0.00001"
    assert signals[1]["AlertID"] == "a-1"
    for row in signals + trades:
        assert TIME.match(row["DateTime"])
    for row in trades:
        for column in ("TradeAmount", "Price", "Quantity", "NetQuantity", "Fee"):
            assert NUMBER.match(row[column]), (column, row[column])
    assert NUMBER.match(trades[1]["RealizedPnL"]) and NUMBER.match(trades[1]["EntryPrice"])


@pytest.mark.parametrize("strategy", ["=HYPERLINK(\"http://x\",\"y\")", "+1+1", "-2+3", "@SUM(A1)"])
def test_request_text_never_becomes_a_formula(start_bot, strategy) -> None:
    bot = start_bot("paper")
    bot.send(price="50000", strategy=strategy)
    assert bot.signals()[0]["Strategy"] == "'" + strategy.replace('"', "")  # quotes are dropped from labels


def test_negative_numbers_stay_numbers(start_bot) -> None:
    bot = start_bot("paper", cooldown_seconds=0)
    bot.send(price="50000")
    bot.send(action="sell", price="40000")
    pnl = bot.trades()[1]["RealizedPnL"]
    assert pnl.startswith("-") and Decimal(pnl) < 0


def test_parallel_appends_never_interleave(tmp_path: Path) -> None:
    journal = CsvFile(tmp_path / "rows.csv", ["A", "B"], durable=False)
    text = "x" * 200
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda i: journal.append({"A": str(i), "B": text}), range(800)))
    rows = read_csv(tmp_path / "rows.csv")
    assert sorted(int(r["A"]) for r in rows) == list(range(800))
    assert all(r["B"] == text for r in rows)


def test_restart_keeps_the_limits_the_positions_and_the_paper_balance(start_bot) -> None:
    settings = {"max_trades_per_day": 2, "max_open_trades": 5, "cooldown_seconds": 300}
    first = start_bot("paper", **settings)
    first.send(price="50000")
    first.send(symbol="ETHUSDT", price="3000")
    before = first.status()
    first.stop()

    second = start_bot("paper", **settings)
    after = second.status()
    remembered = ("quantity", "cost", "entry_price", "entries", "opened_at", "protection", "protection_error")
    assert {s: {k: p[k] for k in remembered} for s, p in after["positions"].items()} == \
        {s: {k: p[k] for k in remembered} for s, p in before["positions"].items()}
    assert (after["trades_today"], after["open_trades"], after["balance"]) == (2, 2, before["balance"])
    assert "MAX_TRADES_PER_DAY" in second.send(symbol="BNBUSDT", price="600").json()["reason"]
    sell = second.send(symbol="ETHUSDT", action="sell", price="3000").json()
    assert sell["trade"]["quantity"] == before["positions"]["ETHUSDT"]["quantity"]


def test_restart_keeps_the_cooldown(start_bot) -> None:
    first = start_bot("paper")
    first.send(price="50000")
    first.stop()
    answer = start_bot("paper").send(price="50000").json()
    assert answer["reason"].startswith("cooldown: last BUY BTCUSDT")


def test_trades_of_another_mode_are_not_restored(start_bot, fake) -> None:
    paper = start_bot("paper")
    paper.send(price="50000")
    paper.stop()
    assert start_bot("testnet", fake).status()["positions"] == {}


def test_half_written_last_line_is_reported_not_fatal(start_bot, caplog: pytest.LogCaptureFixture) -> None:
    first = start_bot("paper")
    first.send(price="50000")
    first.stop()
    with open(first.settings.trades_csv, "a", encoding="utf-8") as handle:
        handle.write("2026-11-22 10:00:00,ETHUSDT,BUY,10,30")
    with caplog.at_level(logging.WARNING):
        second = start_bot("paper")
    assert "incomplete last line" in caplog.text
    assert list(second.status()["positions"]) == ["BTCUSDT"]
    second.send(symbol="ETHUSDT", price="3000")
    assert [(t["TradingPair"], t["Status"]) for t in second.trades()] == [
        ("BTCUSDT", "FILLED"), ("ETHUSDT", None), ("ETHUSDT", "FILLED")]
