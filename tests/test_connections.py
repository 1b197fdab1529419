"""Slow and idle connections cannot starve the bot: a real uvicorn (tests/live_server.py, with short
timeouts) and a real `python app.py` under a low file-descriptor limit."""
from __future__ import annotations

import json
import logging
import os
import re
import resource
import socket
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Iterator
from urllib.parse import urlsplit

import httpx2
import requests

from app import create_app
from tests.conftest import SECRET, closed_port_url, wait_until
from tests.live_server import serve
from tests.loopback import free_port
from tests.test_crash_recovery import BotProcess

ALERT = {"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "confidence": 80, "price": 50000}
PARTIAL_HEADERS = b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Type: application/json\r\n"
GENEROUS = 20  # seconds: how long a test waits for what the server does within a second or so


@contextmanager
def bot_server(make_settings, **options) -> Iterator[tuple[str, int]]:
    with serve(create_app(make_settings("paper", cooldown_seconds=0)), **options) as url:
        yield url, urlsplit(url).port


def connect(port: int, send: bytes = b"") -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    connection.settimeout(GENEROUS)
    if send:
        connection.sendall(send)
    return connection


def closed_by_server(connection: socket.socket) -> bool:
    """True once the server closed it (after any answer it sent); False if it is still open after GENEROUS s."""
    try:
        while connection.recv(65536):
            pass
        return True
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def answer_on(connection: socket.socket) -> bytes:
    """One whole answer (headers and a Content-Length body) read from a kept-alive connection."""
    answer = b""
    while not (match := re.search(rb"content-length: (\d+)\r\n.*?\r\n\r\n", answer, re.I | re.S)) or \
            len(answer) < match.end() + int(match.group(1)):
        chunk = connection.recv(65536)
        if not chunk:
            break
        answer += chunk
    return answer


def closed_unanswered(connection: socket.socket) -> bool:
    try:
        return connection.recv(65536) == b""
    except ConnectionResetError:  # closed with our request unread
        return True


def still_open(connection: socket.socket) -> bool:
    connection.settimeout(0.2)
    try:
        return connection.recv(1) != b""
    except TimeoutError:
        return True
    except ConnectionResetError:
        return False
    finally:
        connection.settimeout(GENEROUS)


def raw_alert(body: dict) -> bytes:
    content = json.dumps(body).encode()
    return PARTIAL_HEADERS + b"Content-Length: %d\r\n\r\n" % len(content) + content


def test_headers_must_arrive_in_time_and_idle_connections_are_closed(make_settings, caplog) -> None:
    with caplog.at_level(logging.INFO), bot_server(make_settings, header_timeout=0.5) as (url, port):
        silent, slow = connect(port), connect(port, PARTIAL_HEADERS)
        kept_alive = connect(port, b"GET /health HTTP/1.1\r\nHost: bot\r\n\r\n")
        assert closed_by_server(silent) and closed_by_server(slow)
        assert closed_by_server(kept_alive)  # after answering /health, once idle
        assert httpx2.get(f"{url}/health").status_code == 200
    closed = [record.getMessage() for record in caplog.records if "closed a connection" in record.getMessage()]
    assert len(closed) == 1 and "its request headers did not arrive within 0.5 s" in closed[0]  # not the idle ones


def test_a_body_that_does_not_arrive_in_time_is_cut_off_quietly(make_settings, caplog) -> None:
    with caplog.at_level(logging.INFO), bot_server(make_settings, body_timeout=0.5) as (url, port):
        dripping = connect(port, PARTIAL_HEADERS + b"Content-Length: 100\r\n\r\n{\"secret\": ")
        assert closed_by_server(dripping)
        answer = httpx2.post(f"{url}/webhook", json=ALERT)
        assert answer.json()["decision"] == "ACCEPTED"
    assert "its request body did not arrive within 0.5 s" in caplog.text
    assert "Traceback" not in caplog.text and "Exception in ASGI application" not in caplog.text


def test_the_longest_idle_connection_makes_room_for_a_new_one(make_settings) -> None:
    with bot_server(make_settings, max_connections=4, header_timeout=60) as (url, port), ExitStack() as stack:
        idle = [stack.enter_context(connect(port, PARTIAL_HEADERS)) for _ in range(4)]
        assert all(still_open(connection) for connection in idle)
        alert = stack.enter_context(connect(port, raw_alert(ALERT)))
        assert b'"decision":"ACCEPTED"' in answer_on(alert)
        assert closed_by_server(idle[0])
        assert all(still_open(connection) for connection in idle[1:])


def test_when_every_connection_is_busy_a_new_one_is_refused(make_settings) -> None:
    with bot_server(make_settings, max_connections=2, body_timeout=60) as (url, port), ExitStack() as stack:
        busy = [stack.enter_context(connect(port, PARTIAL_HEADERS + b"Content-Length: 100\r\n\r\n"))
                for _ in range(2)]
        assert all(still_open(connection) for connection in busy)
        assert closed_unanswered(stack.enter_context(connect(port, raw_alert(ALERT))))
        busy[0].close()
        wait_until(lambda: accepts_alerts(url))


def accepts_alerts(url: str) -> bool:
    try:
        return httpx2.post(f"{url}/webhook", json=ALERT).json()["decision"] == "ACCEPTED"
    except httpx2.HTTPError:
        return False


def test_a_bot_at_its_file_descriptor_limit_still_answers_the_owner(tmp_path: Path) -> None:
    """300 idle connections against a bot allowed 256 open files: the alert is still answered, and the
    log stays small (asyncio would otherwise log each failed accept(): thousands of tracebacks a second)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 1024:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))
    environment = {key: value for key, value in os.environ.items() if not key.startswith(("BINANCE_", "TRADING_"))}
    environment |= {"WEBHOOK_SECRET_KEY": SECRET, "TRADING_MODE": "paper", "BINANCE_API_URL": closed_port_url(),
                    "PORT": str(free_port()), "HOST": "127.0.0.1", "LOGS_DIR": str(tmp_path / "logs")}
    log_path = tmp_path / "bot.log"
    bot = BotProcess(environment, log_path,
                     preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (256, 256))).start()
    port = int(environment["PORT"])
    try:
        with ExitStack() as stack:
            for n in range(300):
                stack.enter_context(connect(port, PARTIAL_HEADERS if n % 2 else b""))
            answer = requests.post(f"{bot.url}/webhook", json=ALERT, timeout=30)
            assert answer.status_code == 200 and answer.json()["decision"] == "ACCEPTED"
    finally:
        bot.stop()
    lines = log_path.read_text().splitlines()
    assert not [line for line in lines if "Too many open files" in line or "out of system resource" in line]
    assert any("at most 96 connections at once: the file-descriptor limit (ulimit -n) allows no more" in line
               for line in lines)
    assert len(lines) < 60, "\n".join(lines)
