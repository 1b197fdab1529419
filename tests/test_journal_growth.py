"""Start-up independent of history (a checkpoint beside the journal, verified against it), and journal files
that roll over by month and before Excel's row limit, read across by restart, /status and report.py."""
from __future__ import annotations

import os
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import csv_logger
from tests.conftest import read_csv

ROOT = Path(__file__).resolve().parent.parent
D = Decimal


def round_trips(bot, count: int, symbol: str = "BTCUSDT", price: str = "50000") -> None:
    for _ in range(count):
        assert bot.send(symbol=symbol, price=price).json()["trade"]["status"] == "FILLED"
        assert bot.send(symbol=symbol, action="sell", price=price).json()["trade"]["status"] == "FILLED"


def remembered(bot) -> dict:
    """What the journal determines (not the last prices, which a restart reads again)."""
    status = bot.status()
    positions = {symbol: {k: v for k, v in position.items() if k not in ("current_price", "unrealized_pnl")}
                 for symbol, position in status["positions"].items()}
    return {"positions": positions} | {key: status[key] for key in ("dust", "trades_today", "balance", "performance")}


def stopped_with_history(start_bot, trips: int):
    """A paper bot that made `trips` BTC round trips and holds ETH, stopped; and what it remembered."""
    bot = start_bot("paper", cooldown_seconds=0)
    round_trips(bot, trips)
    bot.send(symbol="ETHUSDT", price="3000")
    before = remembered(bot)
    bot.stop()
    return bot, before


def count_parsed_rows(monkeypatch) -> list[int]:
    parsed = [0]
    original = csv_logger.trade_record_of

    def counting(row):
        parsed[0] += 1
        return original(row)
    monkeypatch.setattr(csv_logger, "trade_record_of", counting)
    return parsed


def test_a_restart_replays_only_the_rows_written_after_the_checkpoint(start_bot, monkeypatch) -> None:
    settings = {"cooldown_seconds": 0, "max_trades_per_day": 100}
    first = start_bot("paper", **settings)
    round_trips(first, 10)
    first.stop()
    assert (first.settings.logs_dir / "checkpoint.json").exists()
    parsed = count_parsed_rows(monkeypatch)
    second = start_bot("paper", **settings)
    assert parsed[0] == 0
    round_trips(second, 1)
    second.send(symbol="ETHUSDT", price="3000")
    before = remembered(second)
    second.app.state.trader.settler.monitor()
    os.replace(second.settings.logs_dir / "checkpoint.json", second.settings.logs_dir / "kept.json")
    second.stop()
    os.replace(second.settings.logs_dir / "kept.json", second.settings.logs_dir / "checkpoint.json")
    parsed[0] = 0
    third = start_bot("paper", **settings)
    assert parsed[0] == 3
    assert remembered(third) == before


def test_the_checkpoint_is_written_again_only_when_the_journal_has_grown(start_bot) -> None:
    first = start_bot("paper", cooldown_seconds=0)
    round_trips(first, 1)
    first.stop()
    saved = first.settings.logs_dir / "checkpoint.json"
    written = saved.stat().st_mtime_ns
    start_bot("paper", cooldown_seconds=0).stop()
    assert saved.stat().st_mtime_ns == written
    third = start_bot("paper", cooldown_seconds=0)
    round_trips(third, 1)
    third.stop()
    assert saved.stat().st_mtime_ns != written


def test_a_checkpoint_that_does_not_match_the_journal_is_not_used(start_bot, caplog) -> None:
    first, before = stopped_with_history(start_bot, 2)
    trades = first.settings.trades_csv
    text = trades.read_text(encoding="utf-8-sig")
    trades.write_text(text.replace("SELL BTCUSDT filled", "SELL BTCUSDT  filled", 1), encoding="utf-8-sig")
    second = start_bot("paper", cooldown_seconds=0)
    assert "checkpoint not used" in caplog.text
    assert remembered(second) == before


def test_a_checkpoint_of_another_mode_is_not_used(start_bot, fake) -> None:
    paper = start_bot("paper")
    paper.send(price="50000")
    paper.stop()
    assert start_bot("testnet", fake).status()["positions"] == {}


def test_files_roll_over_when_the_month_changes_and_every_reader_reads_across(start_bot) -> None:
    first, before = stopped_with_history(start_bot, 1)
    logs = first.settings.logs_dir
    last_month = time.time() - 40 * 24 * 3600
    for name in ("signals.csv", "trades.csv", "intents.csv"):
        os.utime(logs / name, (last_month, last_month))
    (logs / "checkpoint.json").unlink()
    second = start_bot("paper", cooldown_seconds=0)
    assert remembered(second) == before
    round_trips(second, 1, symbol="BNBUSDT", price="600")
    month = time.strftime("%Y-%m", time.gmtime(last_month))
    assert sorted(path.name for path in logs.glob("*.csv")) == sorted(
        [f"intents-{month}.csv", "intents.csv", f"signals-{month}.csv", "signals.csv", f"trades-{month}.csv",
         "trades.csv"])
    assert [t["TradingPair"] for t in second.trades()] == ["BNBUSDT", "BNBUSDT"]
    report = subprocess.run([sys.executable, str(ROOT / "report.py"), str(logs)], capture_output=True, text=True,
                            timeout=30).stdout
    assert "closed trades: 2" in report and "open: ETHUSDT" in report
    assert second.status()["performance"]["closed_trades"] == 2


def test_a_file_rolls_over_before_excels_row_limit(start_bot, monkeypatch) -> None:
    monkeypatch.setattr(csv_logger, "MAX_ROWS_PER_FILE", 3)
    bot = start_bot("paper", cooldown_seconds=0, max_trades_per_day=100)
    round_trips(bot, 4)
    logs = bot.settings.logs_dir
    month = time.strftime("%Y-%m", time.gmtime())
    assert sorted(path.name for path in logs.glob("trades*.csv")) == [f"trades-{month}-2.csv", f"trades-{month}.csv",
                                                                     "trades.csv"]
    assert all(len(read_csv(path)) <= 3 for path in logs.glob("*.csv"))
    bot.stop()
    (logs / "checkpoint.json").unlink()
    again = start_bot("paper", cooldown_seconds=0, max_trades_per_day=100)
    assert again.status()["performance"]["closed_trades"] == 4 and again.status()["positions"] == {}
