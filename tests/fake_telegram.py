"""A fake Telegram Bot API on 127.0.0.1 (standard library only), for the alert tests.

    with FakeTelegram() as telegram:
        start_bot("paper", **telegram.settings())

`POST /bot<token>/sendMessage` with a JSON body `{"chat_id", "text", ...}` is recorded and answered
the way Telegram does (`{"ok": true, "result": {...}}`); a wrong token gets 401 "Unauthorized" and
another chat 400 "Bad Request: chat not found". Faults: `fail(status, ...)` answers the next
requests with a Bot API error (429 with `parameters.retry_after` when given), `hang()` holds every
request until `release()` (then answers it) or `stop()` (then closes it unanswered).
"""
from __future__ import annotations

import json
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.loopback import serve_in_background, shut_down

TOKEN = "123456789:AAE-fake-telegram-token_0123456789abc"
CHAT_ID = "-1001234567890"
PATH = re.compile(r"^/bot(?P<token>[^/]+)/(?P<method>[A-Za-z]+)$")
MAX_HANG_SECONDS = 60.0


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None
    times: int


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeTelegram


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        answer = self.server.fake._answer(self.path, body)
        if answer is None:
            self.close_connection = True
            return
        status, payload = answer
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet."""


class FakeTelegram:
    def __init__(self, token: str = TOKEN, chat_id: str = CHAT_ID) -> None:
        self.token = token
        self.chat_id = chat_id
        self.url = ""
        self.requests = 0
        self.waiting = 0
        self._messages: list[dict[str, Any]] = []
        self._failures: list[Failure] = []
        self._hanging = False
        self._released = threading.Event()
        self._stopped = threading.Event()
        self._changed = threading.Condition()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def settings(self) -> dict[str, str]:
        """The bot settings that point its alerts here."""
        return {"telegram_bot_token": self.token, "telegram_chat_id": self.chat_id, "telegram_api_url": self.url}

    def start(self) -> FakeTelegram:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.fake = self
        self._thread = serve_in_background(self._server, "fake-telegram")
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        return self

    def stop(self) -> None:
        self._stopped.set()
        self._released.set()
        shut_down(self._server, self._thread)
        self._server = self._thread = None

    def __enter__(self) -> FakeTelegram:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    @property
    def texts(self) -> list[str]:
        with self._changed:
            return [m["text"] for m in self._messages]

    @property
    def messages(self) -> list[dict[str, Any]]:
        with self._changed:
            return list(self._messages)

    def fail(self, status: int, description: str = "", *, retry_after: int | None = None, times: int = 1) -> None:
        description = description or {429: f"Too Many Requests: retry after {retry_after}",
                                       500: "Internal Server Error"}.get(status, "Bad Request")
        with self._changed:
            self._failures.append(Failure(status, description, retry_after, times))

    def hang(self) -> None:
        self._released.clear()
        self._hanging = True

    def release(self) -> None:
        self._hanging = False
        self._released.set()

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[str]:
        self._wait(lambda: len(self._messages) >= count, timeout)
        return self.texts

    def wait_for_waiting(self, count: int = 1, timeout: float = 10.0) -> None:
        """Until `count` requests are held by `hang`."""
        self._wait(lambda: self.waiting >= count, timeout)

    def wait_for_requests(self, count: int, timeout: float = 10.0) -> None:
        self._wait(lambda: self.requests >= count, timeout)

    def _wait(self, done: Any, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        with self._changed:
            while not done():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"fake Telegram: still waiting after {timeout}s "
                                         f"({self.requests} requests, {len(self._messages)} messages)")
                self._changed.wait(left)

    def _answer(self, path: str, body: bytes) -> tuple[int, dict[str, Any]] | None:
        with self._changed:
            self.requests += 1
            self._changed.notify_all()
        if self._hanging and not self._hold():
            return None
        match = PATH.match(path)
        if not match or match["token"] != self.token:
            return 401 if match else 404, {"ok": False, "error_code": 401 if match else 404,
                                           "description": "Unauthorized" if match else "Not Found"}
        if match["method"] != "sendMessage":
            return 404, {"ok": False, "error_code": 404, "description": "Not Found: method not found"}
        failure = self._take_failure()
        if failure is not None:
            return failure
        return self._send_message(body)

    def _hold(self) -> bool:
        """Hold the request until released (True: answer it) or stopped (False: close it unanswered)."""
        with self._changed:
            self.waiting += 1
            self._changed.notify_all()
        self._released.wait(MAX_HANG_SECONDS)
        with self._changed:
            self.waiting -= 1
        return not self._stopped.is_set()

    def _take_failure(self) -> tuple[int, dict[str, Any]] | None:
        with self._changed:
            if not self._failures:
                return None
            failure = self._failures[0]
            failure.times -= 1
            if failure.times <= 0:
                self._failures.pop(0)
        payload: dict[str, Any] = {"ok": False, "error_code": failure.status, "description": failure.description}
        if failure.retry_after is not None:
            payload["parameters"] = {"retry_after": failure.retry_after}
        return failure.status, payload

    def _send_message(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: can't parse JSON"}
        if str(request.get("chat_id")) != self.chat_id:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: chat not found"}
        text = request.get("text")
        if not isinstance(text, str) or not text.strip():
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message text is empty"}
        if len(text) > 4096:
            return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is too long"}
        with self._changed:
            self._messages.append(request)
            message_id = len(self._messages)
            self._changed.notify_all()
        return 200, {"ok": True, "result": {"message_id": message_id, "date": int(time.time()),
                                            "chat": {"id": int(self.chat_id)}, "text": text}}
