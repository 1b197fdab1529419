"""Secrets stay secret: a whole session, and not one output carries a secret."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

import httpx2
import pytest

from app import create_app
from tests.conftest import SECRET
from tests.fake_binance import FakeBinance
from tests.live_server import serve

API_KEY = "api-key-7Hq2Xv9Lp4Rt8Wz1Nc6Bm3"
API_SECRET = "api-secret-K5fD0sJ7gA2yU9eQ4iO1"
HMAC_KEY = "hmac-key-Zx8Cv6Bn4Mq2Wr0Ty7Ui5"
ADMIN_KEY = "admin-key-Pw3Ks8Dj1Hf6Gl0Ax4Ev9"
SECRETS = {"WEBHOOK_SECRET_KEY": SECRET, "WEBHOOK_HMAC_KEY": HMAC_KEY, "BINANCE_API_KEY": API_KEY,
           "BINANCE_API_SECRET": API_SECRET, "ADMIN_SECRET_KEY": ADMIN_KEY}
LOGGERS = ["", "bot", "journal", "security", "binance", "urllib3", "requests", "uvicorn", "uvicorn.error",
           "uvicorn.access", "uvicorn.asgi", "httpx2", "httpcore2", "asyncio", "fastapi", "starlette"]


class Session:
    """Requests to the bot; keeps every answer (status line, headers, body) to search afterwards."""

    def __init__(self, url: str) -> None:
        self.http = httpx2.Client(base_url=url)
        self.answers: list[str] = []

    def request(self, method: str, path: str, **kwargs) -> httpx2.Response:
        answer = self.http.request(method, path, **kwargs)
        self.answers.append(f"{answer.status_code} {answer.headers} {answer.text}")
        return answer

    def alert(self, *, signed: bool = True, signature: str | None = None, raw: bytes | None = None, **fields):
        body = raw if raw is not None else json.dumps(
            {"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "confidence": 80, **fields}).encode()
        stamp = str(int(time.time()) - len(self.answers))  # each request its own (replays are refused)
        headers = {"content-type": "application/json"}
        if signed:
            headers["x-timestamp"] = stamp
            headers["x-signature"] = signature or "sha256=" + hmac.new(HMAC_KEY.encode(), f"{stamp}.".encode() + body,
                                                                       hashlib.sha256).hexdigest()
        return self.request("POST", "/webhook", content=body, headers=headers)


def play_a_session(session: Session, fake: FakeBinance) -> None:
    assert session.alert().json()["trade"]["status"] == "FILLED"
    assert session.alert(symbol="ETHUSDT", confidence=10).json()["decision"] == "REJECTED"
    fake.inject("POST", "/api/v3/order", status=400, code=-2010, msg="Account has insufficient balance for "
                                                                     "requested action.")
    assert session.alert(symbol="ETHUSDT").json()["trade"]["status"] == "FAILED"
    fake.inject("POST", "/api/v3/order", status=503, msg="Service Unavailable", after_execute=True)
    assert session.alert(symbol="ETHUSDT").json()["trade"]["status"] == "FILLED"  # found by looking it up
    fake.inject("POST", "/api/v3/order", status=400, code=-1021, msg="Timestamp for this request is outside "
                                                                     "of the recvWindow.")
    assert session.alert(symbol="BNBUSDT").json()["trade"]["status"] == "FILLED"  # after a clock re-sync
    fake.inject("POST", "/api/v3/order", status=429, code=-1003, msg="Too many requests.",
                headers={"Retry-After": "0"})
    assert session.alert(action="sell").json()["trade"]["status"] == "FAILED"
    assert session.alert(action="sell").json()["trade"]["status"] == "FILLED"

    assert session.alert(confidence="high").status_code == 400                      # malformed, authenticated
    assert session.alert(raw=b'{"secret": "%s", "confidence": NaN}' % SECRET.encode()).status_code == 400
    assert session.alert(raw=b'{"secret": "%s", "n": %s}' % (SECRET.encode(), b"9" * 5000)).status_code == 400
    assert session.alert(signed=False).status_code == 401                             # unauthorised
    assert session.alert(signature="sha256=" + "0" * 64).status_code == 401
    assert session.alert(secret="not-the-secret").status_code == 401
    assert session.alert(secret=HMAC_KEY).status_code == 401
    assert session.alert(secret=None).status_code == 401
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": f"Bearer {API_KEY}"},
                    {"Authorization": f"Bearer {HMAC_KEY}"}, {"Authorization": f"Bearer {SECRET}"}):
        assert session.request("GET", "/status", headers=headers).status_code == 401
    assert session.request("GET", "/status", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).status_code == 200
    assert session.alert(secret=ADMIN_KEY).status_code == 401
    assert session.request("GET", "/health").status_code == 200
    assert session.request("GET", "/openapi.json").status_code == 404
    assert session.request("PUT", "/webhook").status_code == 405


def test_no_secret_reaches_any_answer_csv_cell_log_record_or_console(make_settings, caplog: pytest.LogCaptureFixture,
                                                                     capfd: pytest.CaptureFixture[str]) -> None:
    for name in LOGGERS:
        caplog.set_level(logging.DEBUG, logger=name)
    with FakeBinance(api_key=API_KEY, api_secret=API_SECRET) as fake:
        settings = make_settings("testnet", fake, webhook_hmac_key=HMAC_KEY, admin_secret_key=ADMIN_KEY,
                                 cooldown_seconds=0, max_open_trades=10, auth_failure_limit=100)
        with serve(create_app(settings), log_level="debug") as url:
            session = Session(url)
            play_a_session(session, fake)
            session.http.close()
    console = capfd.readouterr()

    names = {record.name for record in caplog.records}
    assert {"urllib3.connectionpool", "uvicorn.access", "uvicorn.error", "bot"} <= names, names
    outputs = {
        "answers": "\n".join(session.answers),
        "signals.csv": settings.signals_csv.read_text(encoding="utf-8-sig"),
        "trades.csv": settings.trades_csv.read_text(encoding="utf-8-sig"),
        "log text": caplog.text,
        "log records": "\n".join(repr(vars(record)) for record in caplog.records),
        "stdout": console.out,
        "stderr": console.err,
    }
    for where, text in outputs.items():
        for name, secret in SECRETS.items():
            assert secret not in text, f"{name} found in {where}"
