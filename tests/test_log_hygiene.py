"""The log stays readable: a warning repeated in a loop does not flood it."""
from __future__ import annotations

import io
import logging

from security import log_handler


def log_lines(*records: tuple[int, str, tuple], exception: BaseException | None = None) -> list[str]:
    """What the bot's log handler writes for these (level, template, args) records."""
    stream = io.StringIO()
    logger = logging.getLogger("tests.log_hygiene")
    logger.propagate, logger.level = False, logging.DEBUG
    handler = log_handler(stream)
    logger.addHandler(handler)
    try:
        for level, template, args in records:
            logger.log(level, template, *args)
        if exception is not None:
            try:
                raise exception
            except type(exception):
                logger.exception("failed while handling %s", "an alert")
    finally:
        logger.removeHandler(handler)
    return stream.getvalue().splitlines()


def test_a_warning_repeated_in_a_loop_is_logged_ten_times_a_minute_and_then_said_so() -> None:
    lines = log_lines(*[(logging.ERROR, "socket.accept() out of system resource (%d)", (n,)) for n in range(5000)],
                      *[(logging.INFO, "BUY %s rejected", (f"COIN{n}USDT",)) for n in range(30)])
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 11
    assert errors[-1].endswith("(10) [repeated too often: more like this are dropped for up to a minute]")
    assert len(lines) == 11 + 30  # INFO lines (every decision) are never dropped
