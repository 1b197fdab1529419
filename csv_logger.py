"""The journal: append-only CSV files that open cleanly in Excel and are the bot's memory.

`signals.csv` has one row per authenticated signal decision, `trades.csv` one row per order
attempt (failures included). UTF-8 with BOM, UTC times as `YYYY-MM-DD HH:MM:SS`, plain decimals.
Text that came from a request is neutralised so a spreadsheet never runs it as a formula.
"""
from __future__ import annotations

import csv
import io
import logging
import os
import re
import threading
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Iterator, Mapping

from money import plain

log = logging.getLogger("journal")

SIGNAL_FIELDS = ["DateTime", "TradingPair", "Action", "Strategy", "TimeFrame", "Confidence",
                 "Decision", "Reason", "Price", "AmountUSDT", "AlertID", "ClientOrderID", "Mode"]
TRADE_FIELDS = ["DateTime", "TradingPair", "Action", "TradeAmount", "Price", "OrderID", "Status",
                "Quantity", "NetQuantity", "Fee", "FeeAsset", "ClientOrderID", "Mode", "Reason",
                "RealizedPnL", "EntryPrice"]
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_CELL_LENGTH = 300
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_AFTER_SEMICOLON = re.compile(r"(;\s*)(?=[=+\-@])")
BOM = "\ufeff"

Cell = str | Decimal | int | datetime | None


def format_cell(value: Cell) -> str:
    """How a value is written: decimals plain (never 1E-5), times in UTC, text made inert."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value) if value.is_finite() else ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime(TIME_FORMAT)
    if isinstance(value, int):
        return str(value)
    return safe_text(value)


def safe_text(text: str) -> str:
    """Remove control characters, cap the length, and stop Excel or LibreOffice reading the cell as a formula.

    A leading `'` makes the cell plain text. Excel in locales whose list separator is `;` splits a
    comma-separated file's cells at `;`, so a formula character right after one is quoted too.
    """
    cleaned = "".join(c for c in text if c.isprintable())[:MAX_CELL_LENGTH]
    cleaned = FORMULA_AFTER_SEMICOLON.sub(r"\1'", cleaned)
    if text.startswith(FORMULA_STARTS) or cleaned.lstrip().startswith(FORMULA_STARTS):
        cleaned = "'" + cleaned
    return cleaned


def parse_time(text: str) -> datetime:
    return datetime.strptime(text, TIME_FORMAT).replace(tzinfo=timezone.utc)


def parse_decimal(text: str) -> Decimal:
    try:
        return Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


class CsvFile:
    """One CSV file: header written once, rows appended whole under a lock, flushed to disk."""

    def __init__(self, path: Path, fields: list[str], durable: bool) -> None:
        self.path = path
        self.fields = fields
        self.durable = durable
        self._lock = threading.Lock()
        self._tail_checked = False

    def append(self, row: Mapping[str, Cell]) -> None:
        line = self._encode([format_cell(row.get(name)) for name in self.fields])
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            if not self._tail_checked:
                line = self._line_break_after_crash() + line
                self._tail_checked = True
            with open(self.path, "a", encoding="utf-8", newline="") as handle:
                if handle.tell() == 0:
                    handle.write(BOM + self._encode(self.fields))
                handle.write(line)
                handle.flush()
                if self.durable:
                    os.fsync(handle.fileno())

    def rows(self) -> Iterator[dict[str, str]]:
        """The rows written so far; a half-written last line (from a crash) is reported and skipped."""
        if not self.path.exists():
            return
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            text = handle.read()
        complete, _, partial = text.rpartition("\n")
        if partial:
            log.warning("%s: ignoring an incomplete last line (the bot was stopped mid-write)", self.path.name)
        for row in csv.DictReader(io.StringIO(complete + "\n" if complete else "")):
            yield row

    def _line_break_after_crash(self) -> str:
        """A crash mid-write leaves a last line without its end: start the next row on a line of its own."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return ""
        with open(self.path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return "" if handle.read(1) == b"\n" else "\r\n"

    @staticmethod
    def _encode(cells: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        return buffer.getvalue()


class Journal:
    def __init__(self, logs_dir: Path) -> None:
        self.signals = CsvFile(logs_dir / "signals.csv", SIGNAL_FIELDS, durable=False)
        self.trades = CsvFile(logs_dir / "trades.csv", TRADE_FIELDS, durable=True)

    def record_signal(self, row: Mapping[str, Cell]) -> None:
        self.signals.append(row)

    def record_trade(self, row: Mapping[str, Cell]) -> None:
        self.trades.append(row)

    def trade_rows(self) -> Iterator[dict[str, str]]:
        return self.trades.rows()
