"""The journal: append-only CSV files that open cleanly in Excel and are the bot's memory.

`signals.csv` has one row per authenticated signal decision, `trades.csv` one row per order
attempt (failures included), `intents.csv` one row per order about to be sent (written and synced
to disk first, so a crash can never hide an order). UTF-8 with BOM, UTC times as
`YYYY-MM-DD HH:MM:SS`, plain decimals. Text that came from a request is neutralised so a
spreadsheet never runs it as a formula. A file that cannot be written (disk full, locked by
Excel) keeps its rows in memory and writes them when it can.
"""
from __future__ import annotations

import csv
import fcntl
import io
import logging
import os
import re
import threading
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Iterator, Mapping

from orders import Fill, SymbolRules
from money import plain

log = logging.getLogger("journal")

SIGNAL_FIELDS = ["DateTime", "TradingPair", "Action", "Strategy", "TimeFrame", "Confidence",
                 "Decision", "Reason", "Price", "AmountUSDT", "AlertID", "ClientOrderID", "Mode",
                 "StopLoss", "TakeProfit"]
TRADE_FIELDS = ["DateTime", "TradingPair", "Action", "TradeAmount", "Price", "OrderID", "Status",
                "Quantity", "NetQuantity", "Fee", "FeeAsset", "ClientOrderID", "Mode", "Reason",
                "RealizedPnL", "EntryPrice", "StopLoss", "TakeProfit"]
INTENT_FIELDS = ["DateTime", "TradingPair", "Action", "ClientOrderID", "AmountUSDT", "Quantity", "AlertID", "Mode"]
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
    """A journal time (`YYYY-MM-DD HH:MM:SS`, UTC); fromisoformat reads it many times faster than strptime."""
    return datetime.fromisoformat(text).replace(tzinfo=timezone.utc)


def parse_decimal(text: str) -> Decimal:
    try:
        return Decimal(text) if text else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


class JournalInUse(Exception):
    """Another bot process already writes this journal."""


class CsvFile:
    """One CSV file: header written once, rows appended whole under a lock, flushed to disk."""

    def __init__(self, path: Path, fields: list[str], durable: bool) -> None:
        self.path = path
        self.fields = fields
        self.durable = durable
        self._lock = threading.Lock()
        self._tail_checked = False
        self._backlog: list[str] = []

    def append(self, row: Mapping[str, Cell]) -> None:
        """Write the row (synced to disk for a durable file) before returning; if the file cannot be
        written now, keep it, and later ones, for the next try."""
        line = self._encode([format_cell(row.get(name)) for name in self.fields])
        with self._lock:
            self._backlog.append(line)
            written = self._write_backlog()
        if written is not None:
            self._sync_and_close(written)

    def retry_backlog(self) -> None:
        with self._lock:
            written = self._write_backlog() if self._backlog else None
        if written is not None:
            self._sync_and_close(written)

    @property
    def unwritten(self) -> int:
        return len(self._backlog)

    def _write_backlog(self) -> IO[str] | None:
        """Append the kept rows, in order, under the lock; returns the open file for the caller to sync."""
        try:
            text = "".join(self._backlog)
            if not self._tail_checked:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                text = self._line_break_after_crash() + text
            handle = open(self.path, "a", encoding="utf-8", newline="")
            try:
                if handle.tell() == 0:
                    text = BOM + self._encode(self.fields) + text.lstrip("\r\n")
                handle.write(text)
                handle.flush()
            except OSError:
                handle.close()
                raise
        except OSError as error:
            self._tail_checked = False
            log.warning("%s cannot be written (%s): %d row(s) kept in memory, retried on the next write",
                        self.path.name, error.strerror or type(error).__name__, len(self._backlog))
            return None
        self._backlog.clear()
        self._tail_checked = True
        return handle

    def _sync_and_close(self, handle: IO[str]) -> None:
        """fsync outside the lock: parallel writers share the disk's flush instead of queueing for it."""
        with handle:
            if self.durable:
                try:
                    os.fsync(handle.fileno())
                except OSError as error:
                    log.warning("%s: written but not synced to disk (%s)", self.path.name, error.strerror)

    def rows(self) -> Iterator[dict[str, str]]:
        """The rows written so far, streamed. A half-written last line (from a crash) and a row with
        missing cells are reported and skipped."""
        if not self.path.exists():
            return
        last_line_complete = self._line_break_after_crash() == ""
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])
            previous: list[str] | None = None
            for cells in reader:
                if previous is not None:
                    yield from self._whole_row(header, previous)
                previous = cells
        if previous is not None and last_line_complete:
            yield from self._whole_row(header, previous)
        elif previous is not None:
            log.warning("%s: ignoring an incomplete last line (the bot was stopped mid-write)", self.path.name)

    def _whole_row(self, header: list[str], cells: list[str]) -> Iterator[dict[str, str]]:
        if len(cells) == len(header):
            yield dict(zip(header, cells))
        else:
            log.warning("%s: ignoring an incomplete row from %s", self.path.name, cells[0] if cells else "?")

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
    """Only intents are synced to disk row by row: they are what makes every order recoverable. A
    trade row lost with the machine (power cut) has its intent, so start-up looks the order up on
    Binance and records its outcome again; a process crash loses nothing that was flushed."""

    def __init__(self, logs_dir: Path) -> None:
        self.signals = CsvFile(logs_dir / "signals.csv", SIGNAL_FIELDS, durable=False)
        self.trades = CsvFile(logs_dir / "trades.csv", TRADE_FIELDS, durable=False)
        self.intents = CsvFile(logs_dir / "intents.csv", INTENT_FIELDS, durable=True)

    def record_signal(self, row: Mapping[str, Cell]) -> None:
        self.signals.append(row)

    def record_trade(self, row: Mapping[str, Cell]) -> None:
        self.trades.append(row)

    def record_intent(self, row: Mapping[str, Cell]) -> None:
        self.intents.append(row)

    def retry_backlogs(self) -> None:
        for file in (self.intents, self.trades, self.signals):
            file.retry_backlog()

    @property
    def unwritten_rows(self) -> int:
        return self.intents.unwritten + self.trades.unwritten + self.signals.unwritten


class JournalLock:
    """One bot per journal: a second process on the same LOGS_DIR would double every order."""

    def __init__(self, logs_dir: Path) -> None:
        self.path = logs_dir / ".bot.lock"
        self._handle: IO[str] | None = None

    def acquire(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            raise JournalInUse(f"another bot is already running with LOGS_DIR={self.path.parent}: "
                               f"stop it first (two bots on one journal would double every order)") from None
        self._handle = handle

    def release(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None



def fill_from_row(row: Mapping[str, str], quote_asset: str) -> tuple[SymbolRules, Fill, datetime]:
    """A FILLED trades.csv row read back as the exchange's fill, for replay (ValueError if unreadable)."""
    rules = SymbolRules.bare(row["TradingPair"], quote_asset)
    fees = {row["FeeAsset"]: parse_decimal(row["Fee"])} if row["FeeAsset"] else {}
    fill = Fill(order_id=row["OrderID"], client_order_id=row["ClientOrderID"], status="FILLED",
                side=row["Action"], quantity=parse_decimal(row["Quantity"]),
                quote_amount=parse_decimal(row["TradeAmount"]), fees=fees)
    if fill.side not in ("BUY", "SELL"):
        raise ValueError(f"unknown action {fill.side!r}")
    return rules, fill, parse_time(row["DateTime"])
