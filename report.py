"""`python report.py [LOGS_DIR]`: the score /status shows, read from trades.csv alone, so a user can audit
the bot without it running."""
from __future__ import annotations

import argparse
import sys
from datetime import date, datetime, timezone
from pathlib import Path

from csv_logger import closes_as_journalled, fill_of, read_trade_records, trades_file
from money import plain
from orders import OrderStatus
from risk import Ledger


def replay_journal(logs_dir: Path, quote_asset: str) -> dict[str, Ledger]:
    """Every filled trade in trades.csv, through the same ledger rule the bot keeps, one ledger per mode."""
    ledgers: dict[str, Ledger] = {}
    for record in read_trade_records(trades_file(logs_dir)):
        if record.status == OrderStatus.FILLED:
            rules, fill = fill_of(record, quote_asset)
            ledgers.setdefault(record.mode or "", Ledger()).apply(rules, fill, record.at, closes_as_journalled(record))
    return ledgers


def report(logs_dir: Path, quote_asset: str, today: date) -> str:
    lines = [f"Journal: {logs_dir.resolve()}"]
    for mode, ledger in sorted(replay_journal(logs_dir, quote_asset).items()):
        lines.append(f"\n[{mode}]")
        lines += [f"  {name.replace('_', ' ')}: {'-' if value is None else value}"
                  for name, value in ledger.score.summary(today).items()]
        lines += [f"  open: {symbol} {plain(p.quantity)} at {plain(p.entry_price)} (cost {plain(p.cost)})"
                  for symbol, p in sorted(ledger.positions.items())]
    return "\n".join(lines)


def main(arguments: list[str]) -> int:
    parser = argparse.ArgumentParser(description="Print the bot's score from its CSV journal.")
    parser.add_argument("logs_dir", nargs="?", default="logs", help="the LOGS_DIR of the bot (default ./logs)")
    parser.add_argument("--quote", default="USDT", help="the QUOTE_ASSET of the bot (default USDT)")
    options = parser.parse_args(arguments)
    logs_dir = Path(options.logs_dir)
    problem = journal_problem(logs_dir)
    if problem:
        print(f"report.py: {problem}", file=sys.stderr)
        return 2
    print(report(logs_dir, options.quote.upper(), datetime.now(timezone.utc).date()))
    return 0


def journal_problem(logs_dir: Path) -> str | None:
    """Why there is no journal to read there, in words (None: there is one)."""
    if not logs_dir.is_dir():
        return f"no folder {logs_dir}: give the bot's LOGS_DIR (default ./logs)"
    trades = trades_file(logs_dir)
    if not trades.path.exists() and not trades.rolled_paths():
        return (f"no {trades.path.name} in {logs_dir.resolve()}: is it the bot's LOGS_DIR? "
                f"(the bot writes it at its first order)")
    return None


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
