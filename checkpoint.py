"""A checkpoint: the state the journal gives, written beside it, so start-up need not replay all history.

`checkpoint.json` holds what replaying trades.csv and intents.csv up to a bookmark gave (positions, counts,
cooldowns, remembered alert ids, the score, booked protective fills, paper balances, orders in flight) and
the bookmarks themselves. Start-up reads it and replays only the rows after the bookmarks; a missing,
unreadable or foreign checkpoint, or one whose bookmarks do not match the files, means a full replay.
Values are stored as JSON text: Decimals as strings, times in ISO 8601.
"""
from __future__ import annotations

import functools
import json
import os
import types
import typing
from collections import OrderedDict
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any, Callable

from csv_logger import Bookmark, Intent
from orders import Fill
from risk import RiskState

VERSION = 1


@dataclass
class Journalled:
    """What the journal says up to two bookmarks: the state the bot starts from."""
    risk: RiskState
    booked: dict[str, Fill] = field(default_factory=dict)
    balances: dict[str, Decimal] = field(default_factory=dict)
    unsettled: dict[str, Intent] = field(default_factory=dict)
    filled: int = 0
    trades_at: Bookmark | None = None
    intents_at: Bookmark | None = None


@dataclass(frozen=True)
class Stamp:
    """Whose journal the checkpoint is: another mode or quote asset never reuses it."""
    version: int
    mode: str
    quote_asset: str


def save(path: Path, stamp: Stamp, state: Journalled) -> None:
    """Written to a side file, synced, then renamed over the old one: a crash leaves one whole checkpoint."""
    text = json.dumps({"stamp": plain(stamp), "state": plain(state)}, separators=(",", ":"))
    partial = path.with_name(path.name + ".new")
    with open(partial, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def load(path: Path, stamp: Stamp) -> Journalled | None:
    """The checkpoint, or None when there is none this bot can use."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data["stamp"] != plain(stamp):
            return None
        return decoder(Journalled)(data["state"])
    except (OSError, ValueError, KeyError, TypeError, ArithmeticError):
        return None


def plain(value: Any) -> Any:
    """JSON-ready: dataclasses as objects, mappings as lists of pairs (their keys may be tuples)."""
    if is_dataclass(value):
        return {item.name: plain(getattr(value, item.name)) for item in fields(value)}
    if isinstance(value, dict):
        return [[plain(key), plain(item)] for key, item in value.items()]
    if isinstance(value, (list, tuple, set)):
        return [plain(item) for item in value]
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (Decimal, datetime, date)):
        return str(value) if isinstance(value, Decimal) else value.isoformat()
    return value


@functools.cache
def decoder(hint: Any) -> Callable[[Any], Any]:
    """A function that turns plain JSON back into `hint` (a type, as the dataclasses annotate it)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        inner = decoder(next(argument for argument in arguments if argument is not type(None)))
        return lambda value: None if value is None else inner(value)
    if origin in (dict, OrderedDict):
        key, item = decoder(arguments[0]), decoder(arguments[1])
        return lambda value: origin((key(k), item(v)) for k, v in value)
    if origin in (tuple, set, list):
        parts = [decoder(argument) for argument in arguments]
        if origin is tuple:
            return lambda value: tuple(part(item) for part, item in zip(parts, value))
        return lambda value: origin(parts[0](item) for item in value)
    if is_dataclass(hint):
        hints = typing.get_type_hints(hint)
        parts = {item.name: decoder(hints[item.name]) for item in fields(hint)}
        return lambda value: hint(**{name: part(value[name]) for name, part in parts.items()})
    return SCALARS.get(hint, hint)


SCALARS: dict[Any, Callable[[Any], Any]] = {Decimal: Decimal, datetime: datetime.fromisoformat,
                                             date: date.fromisoformat, int: int, str: str, bool: bool}
