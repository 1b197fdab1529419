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
import hashlib
import io
import itertools
import logging
import os
import re
import threading
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import IO, Iterator, Mapping

from money import plain
from orders import Fill, OrderStatus, SymbolRules, TradeRecord
from signals import Signal

log = logging.getLogger("journal")

SIGNAL_FIELDS = ["DateTime", "TradingPair", "Action", "Strategy", "TimeFrame", "Confidence",
                 "Decision", "Reason", "Price", "AmountUSDT", "AlertID", "ClientOrderID", "Mode",
                 "StopLoss", "TakeProfit"]
# TradeRecord's fields, in the order of trades.csv's columns, under the columns' names.
TRADE_COLUMNS = {"at": "DateTime", "symbol": "TradingPair", "action": "Action", "amount": "TradeAmount",
                 "price": "Price", "order_id": "OrderID", "status": "Status", "quantity": "Quantity",
                 "net_quantity": "NetQuantity", "fee": "Fee", "fee_asset": "FeeAsset",
                 "client_order_id": "ClientOrderID", "mode": "Mode", "reason": "Reason",
                 "realized_pnl": "RealizedPnL", "entry_price": "EntryPrice", "stop_loss": "StopLoss",
                 "take_profit": "TakeProfit", "exchange_status": "ExchangeStatus", "fees": "Fees",
                 "fee_in_quote": "FeeInQuote", "position_left": "PositionLeft"}
TRADE_FIELDS = list(TRADE_COLUMNS.values())
DECIMAL_FIELDS = ("amount", "price", "quantity", "net_quantity", "fee", "realized_pnl", "entry_price", "stop_loss",
                  "take_profit", "fee_in_quote", "position_left")
DECIMAL_COLUMNS = [(name, TRADE_COLUMNS[name]) for name in DECIMAL_FIELDS]
INTENT_FIELDS = ["DateTime", "TradingPair", "Action", "ClientOrderID", "AmountUSDT", "Quantity", "AlertID", "Mode",
                 "StopLoss", "TakeProfit"]
JOURNAL_FILES = {"signals": "signals.csv", "trades": "trades.csv", "intents": "intents.csv"}
CHECKPOINT_FILE = "checkpoint.json"  # the state the journal gives, up to a known row (recovery.py)
PAUSE_MARKER = "PAUSED"  # in LOGS_DIR while entries are paused (POST /pause)
MAX_CELL_LENGTH = 300
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
FORMULA_AFTER_SEMICOLON = re.compile(r"(;\s*)(?=[=+\-@])")
FORMULA_ESCAPED_AFTER_SEMICOLON = re.compile(r"(;\s*)'(?=[=+\-@])")
BOM = "\ufeff"
MAX_ROWS_PER_FILE = 1_048_575  # Excel's sheet holds 1,048,576 rows, the header included
ROLLED_NAME = re.compile(r"-(\d{4}-\d{2})(?:-(\d+))?")
TAIL_BYTES = 256

Cell = str | Decimal | int | datetime | None


def format_cell(value: Cell) -> str:
    """How a value is written: decimals plain (never 1E-5), times in UTC, text made inert."""
    if value is None:
        return ""
    if isinstance(value, Decimal):
        return plain(value) if value.is_finite() else ""
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).isoformat(" ", "seconds")[:19]
    if isinstance(value, int):
        return str(value)
    return safe_text(value)


def safe_text(text: str) -> str:
    """Remove control characters, cap the length, and stop Excel or LibreOffice reading the cell as a formula.

    A leading `'` makes the cell plain text. Excel in locales whose list separator is `;` splits a
    comma-separated file's cells at `;`, so a formula character right after one is quoted too.
    """
    if text.isprintable() and ";" not in text and not text.lstrip().startswith(FORMULA_STARTS):
        return text[:MAX_CELL_LENGTH]
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


@dataclass(frozen=True)
class Bookmark:
    """A place in a journal: after the first `offset` bytes of file `name`, whose last bytes hash to `tail`."""
    name: str
    offset: int
    tail: str


class StaleBookmark(Exception):
    """A position that does not match the files any more (a file edited, replaced or missing)."""


class CsvFile:
    """One CSV journal: header written once, rows appended whole under a lock, flushed to disk.

    So that every file opens whole in Excel (1,048,576 rows a sheet), the current file rolls over to
    `<name>-YYYY-MM.csv` (then `-YYYY-MM-2.csv`, ...) when a month ends or before the row limit; the
    current file keeps the documented name, and `rows()` reads the rolled files first.
    """

    def __init__(self, path: Path, fields: list[str], durable: bool) -> None:
        self.path = path
        self.fields = fields
        self.durable = durable
        self._lock = threading.Lock()
        self._prepared = False
        self._month: str | None = None
        self._rows = 0
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

    def prepare(self) -> None:
        """Look at the file once before the first row (run early, off an alert's path): its columns, its
        month, its row count, and a last line a crash may have left unfinished."""
        with self._lock:
            try:
                self._prepare()
            except OSError as error:
                log.warning("%s cannot be read (%s): retried on the next write", self.path.name,
                            error.strerror or type(error).__name__)

    @property
    def unwritten(self) -> int:
        return len(self._backlog)

    def end(self) -> Bookmark:
        """Where the rows written so far end (taken under the lock, so never inside a row)."""
        with self._lock:
            return self._bookmark(self.path, self.path.stat().st_size if self.path.exists() else 0)

    def rows(self, after: Bookmark | None = None, until: Bookmark | None = None) -> Iterator[dict[str, str]]:
        """The rows, oldest first across the rolled files (only those after `after` and up to `until`),
        streamed. A half-written last line (from a crash) and a row with missing cells are reported and
        skipped. StaleBookmark when `after` does not match the files."""
        paths = [*self.rolled_paths(), self.path]
        start, offset = 0, 0
        if after is not None and after.offset:
            start = next((index for index, path in enumerate(paths) if path.name == after.name), -1)
            if start < 0 or self._bookmark(paths[start], after.offset) != after:
                raise StaleBookmark(f"{after.name} does not match the checkpoint")
            offset = after.offset
        for number, path in enumerate(paths[start:]):
            stop = until.offset if until is not None and path.name == until.name else None
            yield from self._rows_of(path, offset if number == 0 else 0, stop)
            if stop is not None:
                return

    def rolled_paths(self) -> list[Path]:
        """Earlier files of this journal, oldest first."""
        rolled = [(match.group(1), int(match.group(2) or 1), path)
                  for path in self.path.parent.glob(f"{self.path.stem}-*{self.path.suffix}")
                  if (match := ROLLED_NAME.fullmatch(path.stem.removeprefix(self.path.stem)))]
        return [path for _, _, path in sorted(rolled)]

    def _write_backlog(self) -> IO[str] | None:
        """Append the kept rows, in order, under the lock; returns the open file for the caller to sync."""
        try:
            if not self._prepared:
                self._prepare()
            self._roll_if_due(len(self._backlog))
            handle = open(self.path, "a", encoding="utf-8", newline="")
            try:
                text = "".join(self._backlog)
                if handle.tell() == 0:
                    text = BOM + self._encode(self.fields) + text
                handle.write(text)
                handle.flush()
            except OSError:
                handle.close()
                raise
        except OSError as error:
            self._prepared = False
            log.warning("%s cannot be written (%s): %d row(s) kept in memory, retried on the next write",
                        self.path.name, error.strerror or type(error).__name__, len(self._backlog))
            return None
        self._rows += len(self._backlog)
        self._backlog.clear()
        return handle

    def _prepare(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._roll_if_old_header()
        if self.path.exists() and self.path.stat().st_size > 0:
            if self._line_break_after_crash(self.path):
                with open(self.path, "a", encoding="utf-8", newline="") as handle:
                    handle.write("\r\n")
            self._month, self._rows = self._month_and_rows()
        self._prepared = True

    def _roll_if_due(self, adding: int) -> None:
        """A new month, or a file that would pass Excel's row limit, starts a new file."""
        month = datetime.now(timezone.utc).strftime("%Y-%m")
        if self._rows and (self._month != month or self._rows + adding > MAX_ROWS_PER_FILE):
            self._roll(self._month or month)
            self._rows = 0
        if not self._rows:
            self._month = month

    def _month_and_rows(self) -> tuple[str, int]:
        """The month the file was last written in, and its number of rows (a fast count of line ends)."""
        lines = 0
        with open(self.path, "rb") as handle:
            while chunk := handle.read(1 << 20):
                lines += chunk.count(b"\n")
        modified = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)
        return modified.strftime("%Y-%m"), max(lines - 1, 0)

    def _sync_and_close(self, handle: IO[str]) -> None:
        """fsync outside the lock: parallel writers share the disk's flush instead of queueing for it."""
        with handle:
            if self.durable:
                try:
                    os.fsync(handle.fileno())
                except OSError as error:
                    log.warning("%s: written but not synced to disk (%s)", self.path.name, error.strerror)

    def _rows_of(self, path: Path, offset: int, stop: int | None) -> Iterator[dict[str, str]]:
        """One file's rows from byte `offset` to byte `stop` (a cell never holds a line break: one line, one row)."""
        if not path.exists():
            return
        with open(path, "rb") as handle:
            header = next(csv.reader([handle.readline().decode("utf-8-sig")]), [])
            if offset:
                handle.seek(offset)
            for cells in csv.reader(self._lines(handle, path, stop)):
                yield from self._whole_row(header, cells)

    @staticmethod
    def _lines(handle: IO[bytes], path: Path, stop: int | None) -> Iterator[str]:
        position = handle.tell()
        for raw in handle:
            position += len(raw)
            if stop is not None and position > stop:
                return
            if not raw.endswith(b"\n"):
                log.warning("%s: ignoring an incomplete last line (the bot was stopped mid-write)", path.name)
                return
            yield raw.decode("utf-8")

    @staticmethod
    def _bookmark(path: Path, offset: int) -> Bookmark:
        tail = b""
        if offset:
            with open(path, "rb") as handle:
                handle.seek(max(offset - TAIL_BYTES, 0))
                tail = handle.read(min(offset, TAIL_BYTES))
        return Bookmark(path.name, offset, hashlib.sha256(tail).hexdigest())

    def _roll(self, month: str) -> None:
        """Move the current file aside as `<name>-<month>.csv` (or `-<month>-<n>.csv`)."""
        taken = {path.name for path in self.rolled_paths()}
        number = next(n for n in itertools.count(1)
                      if self._rolled_name(month, n) not in taken)
        target = self.path.with_name(self._rolled_name(month, number))
        self.path.rename(target)
        log.info("%s: earlier rows are now in %s", self.path.name, target.name)

    def _rolled_name(self, month: str, number: int) -> str:
        suffix = "" if number == 1 else f"-{number}"
        return f"{self.path.stem}-{month}{suffix}{self.path.suffix}"

    def _roll_if_old_header(self) -> None:
        """A file written by an older version has other columns: keep it whole beside the new one."""
        if not self.path.exists() or self.path.stat().st_size == 0:
            return
        with open(self.path, encoding="utf-8-sig", newline="") as handle:
            header = next(csv.reader(handle), [])
        if header != self.fields:
            modified = datetime.fromtimestamp(self.path.stat().st_mtime, timezone.utc)
            self._roll(modified.strftime("%Y-%m"))

    def _whole_row(self, header: list[str], cells: list[str]) -> Iterator[dict[str, str]]:
        if len(cells) == len(header):
            yield dict(zip(header, cells))
        else:
            log.warning("%s: ignoring an incomplete row from %s", self.path.name, cells[0] if cells else "?")

    @staticmethod
    def _line_break_after_crash(path: Path) -> str:
        """A crash mid-write leaves a last line without its end: start the next row on a line of its own."""
        if not path.exists() or path.stat().st_size == 0:
            return ""
        with open(path, "rb") as handle:
            handle.seek(-1, os.SEEK_END)
            return "" if handle.read(1) == b"\n" else "\r\n"

    @staticmethod
    def _encode(cells: list[str]) -> str:
        buffer = io.StringIO()
        csv.writer(buffer, lineterminator="\r\n").writerow(cells)
        return buffer.getvalue()


@dataclass(frozen=True)
class Intent:
    """An intents.csv row: an order about to be sent, with what its outcome needs (the protective levels)."""
    at: datetime
    symbol: str
    action: str
    client_order_id: str
    amount: Decimal | None
    quantity: Decimal | None
    alert_id: str | None
    mode: str
    stop_loss: Decimal | None
    take_profit: Decimal | None


class Journal:
    """Only intents are synced to disk row by row: they are what makes every order recoverable. A
    trade row lost with the machine (power cut) has its intent, so start-up looks the order up on
    Binance and records its outcome again; a process crash loses nothing that was flushed."""

    def __init__(self, logs_dir: Path, mode: str) -> None:
        self.mode = mode
        self.signals = CsvFile(logs_dir / JOURNAL_FILES["signals"], SIGNAL_FIELDS, durable=False)
        self.trades = trades_file(logs_dir)
        self.intents = CsvFile(logs_dir / JOURNAL_FILES["intents"], INTENT_FIELDS, durable=True)

    def record_decision(self, at: datetime, signal: Signal, decision: str, reason: str,
                        client_order_id: str | None, amount: Decimal | None) -> None:
        self.signals.append({
            "DateTime": at, "TradingPair": signal.symbol, "Action": signal.action, "Strategy": signal.strategy,
            "TimeFrame": signal.timeframe, "Confidence": signal.confidence, "Decision": decision,
            "Reason": reason, "Price": signal.price, "AmountUSDT": amount, "AlertID": signal.alert_id,
            "ClientOrderID": client_order_id, "Mode": self.mode, "StopLoss": signal.stop_loss,
            "TakeProfit": signal.take_profit})

    def record_invalid(self, at: datetime, labels: Mapping[str, str], reason: str) -> None:
        """An authenticated alert that is not a valid signal: what could be read of it, and why."""
        self.signals.append({
            "DateTime": at, "TradingPair": labels.get("symbol"), "Action": labels.get("action"),
            "Strategy": labels.get("strategy"), "TimeFrame": labels.get("timeframe"),
            "Confidence": labels.get("confidence"), "Decision": "REJECTED", "Reason": reason, "Mode": self.mode})

    def record_intent(self, intent: Intent) -> None:
        self.intents.append({
            "DateTime": intent.at, "TradingPair": intent.symbol, "Action": intent.action,
            "ClientOrderID": intent.client_order_id, "AmountUSDT": intent.amount, "Quantity": intent.quantity,
            "AlertID": intent.alert_id, "Mode": self.mode, "StopLoss": intent.stop_loss,
            "TakeProfit": intent.take_profit})

    def record_trade(self, record: TradeRecord) -> None:
        row = {column: getattr(record, name) for name, column in TRADE_COLUMNS.items()}
        self.trades.append(row | {"Mode": self.mode})

    def trade_records(self, after: Bookmark | None = None, until: Bookmark | None = None) -> Iterator[TradeRecord]:
        """This mode's trades.csv rows, oldest first (see CsvFile.rows for the bookmarks)."""
        return (record for record in read_trade_records(self.trades, after, until) if record.mode == self.mode)

    def intent_records(self, after: Bookmark | None = None, until: Bookmark | None = None) -> Iterator[Intent]:
        for row in self.intents.rows(after, until):
            if row["Mode"] != self.mode:
                continue
            try:
                yield Intent(at=parse_time(row["DateTime"]), symbol=row["TradingPair"], action=row["Action"],
                             client_order_id=row["ClientOrderID"], amount=optional_decimal(row["AmountUSDT"]),
                             quantity=optional_decimal(row["Quantity"]),
                             alert_id=original_text(row["AlertID"]) or None, mode=row["Mode"],
                             stop_loss=optional_decimal(row.get("StopLoss", "")),
                             take_profit=optional_decimal(row.get("TakeProfit", "")))
            except ValueError:
                log.warning("intents.csv: skipping an unreadable row from %s", row.get("DateTime"))

    def retry_backlogs(self) -> None:
        for file in (self.intents, self.trades, self.signals):
            file.retry_backlog()

    def prepare(self) -> None:
        for file in (self.intents, self.trades, self.signals):
            file.prepare()

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


def read_trade_records(trades: CsvFile, after: Bookmark | None = None,
                       until: Bookmark | None = None) -> Iterator[TradeRecord]:
    """Every trades.csv row of every mode, oldest first; unreadable rows are reported and skipped."""
    for row in trades.rows(after, until):
        try:
            yield trade_record_of(row)
        except ValueError:
            log.warning("%s: skipping an unreadable row from %s", trades.path.name, row.get("DateTime"))


def trades_file(logs_dir: Path) -> CsvFile:
    return CsvFile(logs_dir / JOURNAL_FILES["trades"], TRADE_FIELDS, durable=False)


def original_text(cell: str) -> str:
    """A text cell as it was before `safe_text` made it inert: the bot compares values, not their display."""
    if "'" not in cell:
        return cell
    text = FORMULA_ESCAPED_AFTER_SEMICOLON.sub(r"\1", cell)
    if text.startswith("'") and text[1:].lstrip().startswith(FORMULA_STARTS):
        text = text[1:]
    return text


def optional_decimal(text: str) -> Decimal | None:
    return parse_decimal(text) if text else None


def trade_record_of(row: Mapping[str, str]) -> TradeRecord:
    """A trades.csv row read back (ValueError if it cannot be); rows of older versions lack the last columns."""
    decimals = {name: optional_decimal(row.get(column, "")) for name, column in DECIMAL_COLUMNS}
    if row["Action"] not in ("BUY", "SELL"):
        raise ValueError(f"unknown action {row['Action']!r}")
    return TradeRecord(at=parse_time(row["DateTime"]), symbol=row["TradingPair"], action=row["Action"],
                       status=OrderStatus(row["Status"]), client_order_id=row["ClientOrderID"],
                       reason=row["Reason"], order_id=row["OrderID"] or None, fee_asset=row["FeeAsset"] or None,
                       exchange_status=row.get("ExchangeStatus") or None, fees=row.get("Fees") or None,
                       mode=row["Mode"], **decimals)


def closes_as_journalled(record: TradeRecord) -> bool:
    """Whether a FILLED SELL row closed its position: its PositionLeft is 0 (rows of versions before that
    column: Binance's status FILLED)."""
    if record.position_left is not None:
        return record.position_left == 0
    return record.exchange_status in (None, "FILLED")


def fill_of(record: TradeRecord, quote_asset: str) -> tuple[SymbolRules, Fill]:
    """A FILLED trade record as the exchange's fill, for replay: its fees in every asset, and what the
    ones in other assets were worth."""
    rules = SymbolRules.bare(record.symbol, quote_asset)
    fees = parse_fees(record.fees) if record.fees else (
        {record.fee_asset: record.fee or Decimal(0)} if record.fee_asset else {})
    fill = Fill(order_id=record.order_id or "", client_order_id=record.client_order_id,
                status=record.exchange_status or "FILLED", side=record.action,
                quantity=record.quantity or Decimal(0), quote_amount=record.amount or Decimal(0), fees=fees)
    other = record.fee_in_quote - fill.fee_in_quote(rules) if record.fee_in_quote is not None else 0
    return rules, replace(fill, other_fees_value=other) if other else fill


def parse_fees(text: str) -> dict[str, Decimal]:
    """The Fees column (`0.0000002 BTC + 0.0000375 BNB`) back into amounts by asset."""
    fees: dict[str, Decimal] = {}
    for part in text.split("+"):
        amount, _, asset = part.strip().partition(" ")
        fees[asset] = parse_decimal(amount)
    return fees
