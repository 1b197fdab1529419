"""Money is Decimal from the payload to the CSV: these are the few helpers every file shares."""
from __future__ import annotations

from decimal import ROUND_DOWN, Decimal

PRICE_PLACES = Decimal("0.00000001")


def plain(value: Decimal) -> str:
    """A Decimal as Binance and Excel want it: plain digits, no trailing zeros, never `1E-5`."""
    return format(value.normalize(), "f")


def floor_to_step(value: Decimal, step: Decimal) -> Decimal:
    """Round down to a multiple of the exchange's step (0 means no step)."""
    if step <= 0:
        return value
    return (value / step).to_integral_value(rounding=ROUND_DOWN) * step
