"""The log stays clean: no query string (a secret put in the URL by mistake) in `python app.py`'s access
log, no control character in any line, and a warning repeated in a loop does not flood it."""
from __future__ import annotations

import io
import logging
import os
from pathlib import Path

import requests

from security import log_handler
from tests.conftest import SECRET, closed_port_url
from tests.loopback import free_port
from tests.test_crash_recovery import BotProcess

ADMIN = "admin-secret-for-logs-Hv7Ns2Qx"


def test_the_access_log_never_shows_a_query_string(tmp_path: Path) -> None:
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BINANCE_", "TRADING_"))}
    environment |= {"WEBHOOK_SECRET_KEY": SECRET, "ADMIN_SECRET_KEY": ADMIN, "BINANCE_API_URL": closed_port_url(),
                    "PORT": str(free_port()), "HOST": "127.0.0.1", "LOGS_DIR": str(tmp_path / "logs")}
    bot = BotProcess(environment, tmp_path / "bot.log").start()
    try:
        assert requests.post(f"{bot.url}/webhook?secret={SECRET}", json={"symbol": "BTCUSDT"}).status_code == 401
        assert requests.post(f"{bot.url}/pause?token={ADMIN}&x=%1b%5b2J").status_code == 401
        assert requests.get(f"{bot.url}/health?secret={SECRET}").status_code == 200
    finally:
        bot.stop()
    log = (tmp_path / "bot.log").read_text()
    access = [line for line in log.splitlines() if " INFO uvicorn.access: " in line]
    assert [line.split('"')[1] for line in access[-3:]] == ["POST /webhook HTTP/1.1", "POST /pause HTTP/1.1",
                                                            "GET /health HTTP/1.1"]  # after start-up's checks
    assert SECRET not in log and ADMIN not in log


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


def test_a_line_echoing_what_a_caller_sent_stays_one_harmless_line() -> None:
    hostile = ["\x1b[2J\x1b[1;1H\x1b[32mINFO bot: all good\x1b[0m", "BTC\nINFO bot: fake", "x\x85y\u2028z\u202e",
               "\ud800", "tab\there\rcarriage\x00nul\x7fdel"]
    lines = log_lines(*[(logging.WARNING, "%s locked out (symbol %r)", (text, text)) for text in hostile])
    assert len(lines) == len(hostile)
    for line in lines:
        assert line.isprintable() and " WARNING tests.log_hygiene: " in line
    assert "\\x1b[2J\\x1b[1;1H\\x1b[32mINFO bot: all good" in lines[0]


def test_a_traceback_keeps_its_lines_but_not_its_control_characters() -> None:
    lines = log_lines(exception=ValueError("bad value \x1b[31mred\x1b[0m"))
    assert lines[0].endswith(" ERROR tests.log_hygiene: failed while handling an alert")
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-1] == "ValueError: bad value \\x1b[31mred\\x1b[0m"


def test_a_warning_repeated_in_a_loop_is_logged_ten_times_a_minute_and_then_said_so() -> None:
    lines = log_lines(*[(logging.ERROR, "socket.accept() out of system resource (%d)", (n,)) for n in range(5000)],
                      *[(logging.INFO, "BUY %s rejected", (f"COIN{n}USDT",)) for n in range(30)])
    errors = [line for line in lines if " ERROR " in line]
    assert len(errors) == 11
    assert errors[-1].endswith("(10) [repeated too often: more like this are dropped for up to a minute]")
    assert len(lines) == 11 + 30  # INFO lines (every decision) are never dropped
