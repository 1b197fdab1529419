"""Webhook security: who is throttled (never the owner), client address, allow-list, signatures, the admin
secret, and a small surface."""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import socket
import time
from contextlib import ExitStack
from ipaddress import ip_address
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
import pytest
from fastapi.testclient import TestClient

import security
from app import create_app
from config import TRADINGVIEW_ADDRESSES, ConfigError, load_settings
from tests.conftest import SECRET
from tests.live_server import serve

HMAC_KEY = "hmac-key-for-tests-5c1d9e"
ADMIN = "admin-secret-for-tests-Qm4Zr8Lw2"
STRANGER = "198.51.100.23"
TRADINGVIEW = TRADINGVIEW_ADDRESSES[0]


def alert(**fields) -> dict:
    body = {"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "strategy": "test", "timeframe": "15",
            "confidence": 80, "price": 50000, **fields}
    return {k: v for k, v in body.items() if v is not None}


def client_at(bot, address: str) -> TestClient:
    """Requests to the running bot whose socket peer is `address`."""
    return TestClient(bot.app, client=(address, 40000))


def post(http, headers: dict[str, str] | None = None, **fields):
    return http.post("/webhook", content=json.dumps(alert(**fields)).encode(),
                     headers={"content-type": "application/json", **(headers or {})})


def sign(body: bytes, stamp: str, key: str = HMAC_KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), stamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def post_signed(http, signature: str | bytes | None | bool = None, stamp: str | None = None, **fields):
    """An alert with X-Timestamp (now, unless given) and X-Signature (correct, unless given; False: none)."""
    body = json.dumps(alert(**fields)).encode()
    stamp = str(int(time.time())) if stamp is None else stamp
    headers = {"content-type": "application/json"}
    if signature is not False:
        headers |= {"x-timestamp": stamp, "x-signature": sign(body, stamp) if signature is None else signature}
    return http.post("/webhook", content=body, headers=headers)


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


# ----- who is throttled ----------------------------------------------------------------------------

def test_requests_that_prove_nothing_are_throttled_per_address_with_retry_after(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=3, auth_failure_limit=100, cooldown_seconds=0)
    http = client_at(bot, STRANGER)
    assert [http.get("/example").status_code for _ in range(2)] == [200, 200]
    assert post(http, secret="guess").status_code == 401
    refused = post(http, secret="guess")
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # one request back every 60 / 3 seconds
    assert refused.json() == {"error": "too many requests: try again in 20 s"}
    assert http.get("/example").status_code == 429
    assert http.get("/nope").status_code == 429
    assert post(http, secret=None).status_code == 429
    assert http.post("/webhook", content=b"not json").status_code == 429  # answers before authentication too
    assert not bot.settings.signals_csv.exists()
    assert client_at(bot, "198.51.100.24").get("/example").status_code == 200  # another address: its own budget


def test_the_right_secret_is_always_judged_and_health_always_answers(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=1, auth_failure_limit=1, cooldown_seconds=0)
    http = client_at(bot, STRANGER)
    assert post(http, secret="guess").status_code == 401
    assert post(http, secret="guess").status_code == 429
    assert [post(http, symbol=symbol, price=1).json()["decision"] for symbol in ("ETHUSDT", "SOLUSDT", "BNBUSDT")
            ] == ["ACCEPTED"] * 3
    assert post(http, headers=bearer(SECRET), secret=None, symbol="XRPUSDT", price=1).status_code == 200
    assert post(http, confidence="high").status_code == 400  # judged: the alert is wrong, not the caller
    assert [http.get("/status", headers=bearer(SECRET)).status_code for _ in range(3)] == [200] * 3
    assert [http.get("/health").status_code for _ in range(50)] == [200] * 50


def test_the_budget_refills_over_the_minute(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=120)
    limited = next(answer for answer in (bot.http.get("/example") for _ in range(300)) if answer.status_code == 429)
    assert limited.headers["retry-after"] == "1"
    time.sleep(0.55)
    assert bot.http.get("/example").status_code == 200


def test_ipv6_callers_are_limited_by_their_64_prefix(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=1)
    assert client_at(bot, "2001:db8:1:2::1").get("/example").status_code == 200
    assert client_at(bot, "2001:db8:1:2:ffff::9").get("/example").status_code == 429
    assert client_at(bot, "2001:db8:1:3::1").get("/example").status_code == 200
    assert client_at(bot, "::ffff:203.0.113.5").get("/example").status_code == 200
    assert client_at(bot, "203.0.113.5").get("/example").status_code == 429  # the same IPv4 address


def test_memory_stays_bounded_and_other_callers_never_lift_a_lockout(start_bot, monkeypatch) -> None:
    monkeypatch.setattr(security, "MAX_TRACKED_CLIENTS", 20)
    monkeypatch.setattr(security, "MAX_REMEMBERED_SIGNATURES", 3)
    bot = start_bot("paper", auth_failure_limit=2, webhook_hmac_key=HMAC_KEY, cooldown_seconds=0)
    guard = bot.app.state.guard
    attacker, forged = client_at(bot, "203.0.113.66"), "sha256=" + "0" * 64
    assert [post_signed(attacker, forged, secret="guess").status_code for _ in range(3)] == [401, 401, 429]
    for n in range(60):
        address = str(ip_address("10.0.0.0") + n) if n % 2 else f"2001:db8:{n:x}::1"
        assert post_signed(client_at(bot, address), forged).status_code == 401  # one each: no lockout
        assert len(guard.limiter) <= 20
    assert post_signed(attacker, forged, secret="guess").status_code == 429  # still locked out
    assert [post_signed(attacker, symbol=symbol, price=1).status_code
            for symbol in ("ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT")] == [200] * 5
    assert len(guard.signatures) == 3


def test_parallel_wrong_guesses_get_no_more_than_the_failure_limit(make_settings) -> None:
    """Each failure is counted as it is answered: guesses that all wait for their body at once cannot slip past."""
    settings = make_settings("paper", auth_failure_limit=5, rate_limit_per_minute=1000)
    with serve(create_app(settings)) as url, ExitStack() as stack:
        guesses = []
        for n in range(30):
            body = json.dumps(alert(secret=f"guess-{n}")).encode()
            connection = stack.enter_context(socket.create_connection(("127.0.0.1", urlsplit(url).port), timeout=20))
            connection.sendall(b"POST /webhook HTTP/1.1\r\nHost: bot\r\nContent-Length: %d\r\n\r\n" % len(body))
            guesses.append((connection, body))
        time.sleep(0.5)  # every request has started, and waits for its body
        for connection, body in guesses:
            connection.sendall(body)
        statuses = [int(connection.recv(65536).split(b" ")[1]) for connection, _ in guesses]
        assert sorted(statuses) == [401] * 5 + [429] * 25
        assert httpx2.post(f"{url}/webhook", json=alert()).json()["decision"] == "ACCEPTED"


# ----- lockout after failed authentications ---------------------------------------------------------

def test_repeated_failed_authentications_lock_the_address_out_for_a_while(start_bot) -> None:
    bot = start_bot("paper", auth_failure_limit=3, auth_lockout_seconds=1, cooldown_seconds=0)
    http, owner = client_at(bot, STRANGER), client_at(bot, "198.51.100.24")
    assert [post(owner, secret="typo").status_code for _ in range(2)] == [401, 401]
    assert [post(http, secret="guess-%d" % i).status_code for i in range(3)] == [401, 401, 401]
    locked = post(http, secret="guess-3")
    assert locked.status_code == 429 and locked.headers["retry-after"] == "1"
    assert locked.json()["error"].startswith("too many failed authentications")
    assert http.get("/example").status_code == 429
    assert http.get("/status", headers=bearer("guess-4")).status_code == 429
    assert not bot.settings.signals_csv.exists()
    assert post(owner, secret="typo").status_code == 401  # another address
    time.sleep(1.05)
    assert post(http, secret="guess-5").status_code == 401
    assert post(owner, secret="typo").status_code == 401  # its earlier failures have aged out
    assert post(owner).status_code == 200


def test_wrong_bearer_on_status_counts_as_a_failed_authentication(start_bot) -> None:
    bot = start_bot("paper", auth_failure_limit=2)
    http = client_at(bot, STRANGER)
    assert http.get("/status", headers=bearer("nope")).status_code == 401
    assert http.get("/status").status_code == 401
    assert http.post("/pause", headers=bearer("nope")).status_code == 429
    assert http.get("/status", headers=bearer(SECRET)).status_code == 200


def test_strangers_on_tradingviews_shared_addresses_cannot_lock_the_owner_out(start_bot) -> None:
    """All TradingView users send from its four addresses: a stranger's failing alerts must not block ours."""
    bot = start_bot("paper", allowed_ips="tradingview", auth_failure_limit=2)
    http = client_at(bot, TRADINGVIEW)
    assert [post(http, secret="stranger").status_code for _ in range(5)] == [401, 401, 429, 429, 429]
    assert post(http).json()["decision"] == "ACCEPTED"


# ----- client address --------------------------------------------------------------------------------

def test_forwarding_header_is_ignored_unless_trusted(start_bot) -> None:
    bot = start_bot("paper", allowed_ips="tradingview")
    answer = post(client_at(bot, STRANGER), headers={"X-Forwarded-For": TRADINGVIEW})
    assert answer.status_code == 403


@pytest.mark.parametrize("forwarded, allowed", [
    ([TRADINGVIEW], True),
    ([f"{STRANGER}, {TRADINGVIEW}"], True),      # the caller wrote the left part, the proxy appended ours
    ([f"{TRADINGVIEW}, {STRANGER}"], False),     # the caller forged TradingView's address
    ([TRADINGVIEW, STRANGER], False),            # two header lines: the proxy's is the last
    ([STRANGER, TRADINGVIEW], True),
    (["not-an-address"], False),
    ([], False),                                 # no header: the socket peer, the proxy itself
])
def test_trusted_forwarding_header_uses_its_right_most_entry(start_bot, forwarded, allowed) -> None:
    bot = start_bot("paper", allowed_ips="tradingview", trust_proxy_headers=True)
    headers = [("content-type", "application/json")] + [("x-forwarded-for", value) for value in forwarded]
    answer = client_at(bot, "10.0.0.2").post("/webhook", content=json.dumps(alert()).encode(), headers=headers)
    assert answer.status_code == (200 if allowed else 403)


def test_real_server_takes_the_socket_peer_and_ignores_forwarding_headers(make_settings) -> None:
    """uvicorn would otherwise believe X-Forwarded-For on connections from 127.0.0.1."""
    settings = make_settings("paper", allowed_ips="tradingview")
    with serve(create_app(settings)) as url:
        answer = httpx2.post(f"{url}/webhook", json=alert(), headers={"X-Forwarded-For": TRADINGVIEW})
        assert answer.status_code == 403
        assert "server" not in answer.headers
    with serve(create_app(make_settings("paper", allowed_ips="127.0.0.1"))) as url:
        assert httpx2.post(f"{url}/webhook", json=alert()).status_code == 200


def test_on_railway_the_caller_is_the_address_railways_proxy_names(start_bot, caplog) -> None:
    """Every request reaches the bot from Railway's proxy, which names the caller in X-Real-IP."""
    with caplog.at_level(logging.INFO, logger="security"):
        bot = start_bot("paper", railway_environment_name="production", allowed_ips="tradingview")
    assert "client addresses: X-Real-IP, set by Railway's proxy" in caplog.text
    proxy = client_at(bot, "10.250.0.7")
    assert post(proxy, headers={"X-Real-IP": TRADINGVIEW}).json()["decision"] == "ACCEPTED"
    assert post(proxy, headers={"X-Real-IP": STRANGER}).status_code == 403
    assert post(proxy, headers={"X-Forwarded-For": TRADINGVIEW}).status_code == 403  # not Railway's header
    assert post(proxy, headers={"X-Real-IP": "not-an-address"}).status_code == 403   # the proxy itself, then


@pytest.mark.parametrize("variable", ["railway_environment_name", "railway_public_domain"])
def test_on_railway_wrong_secrets_are_throttled_per_real_caller(start_bot, variable) -> None:
    bot = start_bot("paper", auth_failure_limit=1, **{variable: "production"})
    proxy = client_at(bot, "10.250.0.7")
    assert post(proxy, headers={"X-Real-IP": STRANGER}, secret="guess").status_code == 401
    assert post(proxy, headers={"X-Real-IP": STRANGER}, secret="guess").status_code == 429
    assert post(proxy, headers={"X-Real-IP": "203.0.113.9"}, secret="typo").status_code == 401


def test_trust_proxy_headers_false_on_railway_is_warned(start_bot, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="security"):
        bot = start_bot("paper", railway_environment_name="production", trust_proxy_headers=False,
                        auth_failure_limit=1)
    assert "client addresses: the TCP connection's address (TRUST_PROXY_HEADERS=false)" in caplog.text
    assert "TRUST_PROXY_HEADERS=false on Railway: every caller has the address of Railway's proxy" in caplog.text
    proxy = client_at(bot, "10.250.0.7")
    assert post(proxy, headers={"X-Real-IP": STRANGER}, secret="guess").status_code == 401
    assert post(proxy, headers={"X-Real-IP": "203.0.113.9"}, secret="typo").status_code == 429
    assert post(proxy, headers={"X-Real-IP": "203.0.113.9"}).status_code == 200


def test_off_railway_the_address_source_is_logged(start_bot, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="security"):
        start_bot("paper").stop()
        start_bot("paper", trust_proxy_headers=True)
    assert "client addresses: the TCP connection's address (not on Railway, TRUST_PROXY_HEADERS not set)" in caplog.text
    assert "client addresses: the right-most X-Forwarded-For entry" in caplog.text


def test_a_forwarded_value_that_is_no_address_is_not_used_or_logged(start_bot, caplog) -> None:
    bot = start_bot("paper", trust_proxy_headers=True, auth_failure_limit=2)
    proxy = client_at(bot, "10.0.0.2")
    fake_line = "\x1b[2J\x1b[1;1H\x1b[32mINFO bot: all good\x1b[0m\x85".encode("latin-1")
    with caplog.at_level(logging.INFO):
        statuses = [post(proxy, headers={"X-Forwarded-For": fake_line + b"%d" % n}, secret="guess").status_code
                    for n in range(3)]
    assert statuses == [401, 401, 429]  # one caller: the proxy's own address
    assert "10.0.0.2 locked out" in caplog.text
    assert "\x1b" not in caplog.text and "all good" not in caplog.text


# ----- allow-list ----------------------------------------------------------------------------------

def test_only_allowed_addresses_may_send_alerts(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, allowed_ips="tradingview", cooldown_seconds=0, max_open_trades=4)
    refused = post(client_at(bot, STRANGER))
    assert refused.status_code == 403 and refused.json() == {"error": "forbidden"}
    assert post(bot.http).status_code == 403  # the test client's peer is not an IP address
    assert fake.count("/api/v3/order") == 0 and not bot.settings.signals_csv.exists()
    for address in TRADINGVIEW_ADDRESSES:
        assert post(client_at(bot, address)).json()["decision"] == "ACCEPTED"
    assert fake.count("/api/v3/order") == 4


def test_allow_list_takes_networks(start_bot) -> None:
    bot = start_bot("paper", allowed_ips=" 10.0.0.0/8 , 2001:db8::/32", cooldown_seconds=0)
    assert post(client_at(bot, "10.20.30.40")).status_code == 200
    assert post(client_at(bot, "2001:db8:5::1")).status_code == 200
    assert post(client_at(bot, "11.0.0.1")).status_code == 403


def test_allow_list_guards_the_webhook_not_status(start_bot) -> None:
    """The owner checks /status from anywhere with the Bearer secret; only alerts come from TradingView."""
    bot = start_bot("paper", allowed_ips="tradingview")
    http = client_at(bot, STRANGER)
    assert http.get("/status", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 200
    assert http.get("/health").status_code == 200


@pytest.mark.parametrize("value", ["1.2.3", "10.0.0.1/8", "tradingview.com", "52.89.214.238;1.1.1.1", "*"])
def test_bad_allow_list_entries_fail_start_up(value) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, webhook_secret_key=SECRET, allowed_ips=f"tradingview,{value}")
    message = str(raised.value)
    assert f"ALLOWED_IPS: not an IP address, a network like 10.0.0.0/8, or 'tradingview': {value}" in message


def test_new_settings_fail_start_up_in_the_one_message() -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, webhook_secret_key=SECRET, trust_proxy_headers="maybe",
                      webhook_hmac_key="short-key", rate_limit_per_minute=0, auth_failure_limit=0,
                      auth_lockout_seconds=-1)
    for name in ["TRUST_PROXY_HEADERS", "WEBHOOK_HMAC_KEY", "RATE_LIMIT_PER_MINUTE", "AUTH_FAILURE_LIMIT",
                 "AUTH_LOCKOUT_SECONDS"]:
        assert f"{name}:" in str(raised.value)
    assert "short-key" not in str(raised.value)


# ----- signed requests ---------------------------------------------------------------------------------

@pytest.mark.parametrize("signature, stamp, problem", [
    (False, None, "missing or malformed X-Timestamp"),  # no headers at all
    ("", None, "missing or wrong signature"),
    ("sha256=", None, "missing or wrong signature"),
    ("sha256=" + "0" * 64, None, "missing or wrong signature"),
    ("sha1=" + "0" * 40, None, "missing or wrong signature"),
    ("md5=whatever", None, "missing or wrong signature"),
    ("sha256=é".encode("latin-1") + b"0" * 63, None, "missing or wrong signature"),  # not ASCII: refused, not a 500
    (None, "", "missing or malformed X-Timestamp"),
    (None, "soon", "missing or malformed X-Timestamp"),
    (None, "1.7e9", "missing or malformed X-Timestamp"),
    (None, "-5", "missing or malformed X-Timestamp"),
    (None, "9" * 13, "missing or malformed X-Timestamp"),
    (None, "9" * 12, "X-Timestamp is more than 300 s away from the bot's clock"),
], ids=["missing", "empty", "no-hex", "wrong-hex", "sha1", "md5", "non-ascii", "no-stamp", "word-stamp",
        "float-stamp", "negative-stamp", "long-stamp", "far-future-stamp"])
def test_unsigned_or_wrongly_signed_requests_are_401_when_a_key_is_set(start_bot, fake, signature, stamp,
                                                                       problem) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY)
    answer = post_signed(bot.http, signature, stamp)
    assert answer.status_code == 401 and answer.json()["error"].startswith(problem)
    assert fake.count("/api/v3/order") == 0 and not bot.settings.signals_csv.exists()


def test_signature_must_cover_this_very_body_and_timestamp(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY)
    stamp = str(int(time.time()))
    body = json.dumps(alert()).encode()
    assert post_signed(bot.http, sign(json.dumps(alert(amount_usdt=5)).encode(), stamp), stamp).status_code == 401
    assert post_signed(bot.http, sign(body, stamp, key=HMAC_KEY + "x"), stamp).status_code == 401
    assert post_signed(bot.http, sign(body, str(int(stamp) - 1)), stamp).status_code == 401
    body_only = "sha256=" + hmac.new(HMAC_KEY.encode(), body, hashlib.sha256).hexdigest()  # the old contract
    assert post_signed(bot.http, body_only, stamp).status_code == 401
    assert fake.count("/api/v3/order") == 0


def test_correctly_signed_requests_trade(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY, cooldown_seconds=0)
    assert post_signed(bot.http).json()["decision"] == "ACCEPTED"
    body, stamp = json.dumps(alert(action="sell")).encode(), str(int(time.time()) - 200)
    upper = "SHA256=" + sign(body, stamp).removeprefix("sha256=").upper()
    answer = bot.http.post("/webhook", content=body, headers={"x-signature": upper, "x-timestamp": f" {stamp} "})
    assert answer.json()["decision"] == "ACCEPTED"
    assert fake.count("/api/v3/order") == 2


@pytest.mark.parametrize("offset", [-301, 301, -86400 * 365])
def test_a_timestamp_more_than_300_s_away_is_refused(start_bot, fake, offset) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY)
    answer = post_signed(bot.http, stamp=str(int(time.time()) + offset))
    assert answer.status_code == 401
    assert answer.json() == {"error": "X-Timestamp is more than 300 s away from the bot's clock"}
    assert fake.count("/api/v3/order") == 0


def test_a_signed_request_cannot_be_replayed(start_bot, fake) -> None:
    """No alert_id, no time, no cooldown: only the signature stops the same request trading twice."""
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY, cooldown_seconds=0, max_open_trades=5)
    body, stamp = json.dumps(alert()).encode(), str(int(time.time()))
    headers = {"x-timestamp": stamp, "x-signature": sign(body, stamp)}
    assert bot.http.post("/webhook", content=body, headers=headers).json()["decision"] == "ACCEPTED"
    replay = bot.http.post("/webhook", content=body, headers=headers)
    assert replay.status_code == 401 and replay.json()["error"].startswith("this signature was used already")
    assert fake.count("/api/v3/order") == 1


def test_a_signature_does_not_replace_the_secret(start_bot) -> None:
    bot = start_bot("paper", webhook_hmac_key=HMAC_KEY)
    assert post_signed(bot.http, secret="wrong").status_code == 401


def test_tradingview_may_send_unsigned_alerts_only_when_allow_listed(start_bot) -> None:
    bot = start_bot("paper", webhook_hmac_key=HMAC_KEY, allowed_ips="tradingview, 203.0.113.50")
    assert post_signed(client_at(bot, TRADINGVIEW), False).json()["decision"] == "ACCEPTED"
    script = client_at(bot, "203.0.113.50")
    assert post_signed(script, False).status_code == 401
    assert post_signed(script, symbol="ETHUSDT", price=3000).json()["decision"] == "ACCEPTED"
    bot.stop()

    open_bot = start_bot("paper", webhook_hmac_key=HMAC_KEY)
    assert post_signed(client_at(open_bot, TRADINGVIEW), False).status_code == 401


def test_wrong_signatures_count_towards_the_lockout_unless_the_secret_is_right(start_bot) -> None:
    bot = start_bot("paper", webhook_hmac_key=HMAC_KEY, auth_failure_limit=2)
    http = client_at(bot, STRANGER)
    assert [post_signed(http, "sha256=" + "0" * 64, secret="guess").status_code for _ in range(3)] == [401, 401, 429]
    assert post_signed(http, "sha256=" + "0" * 64).status_code == 401  # the right secret: judged, not throttled
    assert post_signed(http).json()["decision"] == "ACCEPTED"


# ----- the admin secret ----------------------------------------------------------------------------------

def test_admin_secret_guards_status_pause_and_resume_not_the_alert_secret(start_bot) -> None:
    bot = start_bot("paper", admin_secret_key=ADMIN, auth_failure_limit=100)
    refused = bot.http.get("/status", headers=bearer(SECRET))
    assert refused.status_code == 401 and "ADMIN_SECRET_KEY" in refused.json()["error"]
    assert bot.http.post("/pause", headers=bearer(SECRET)).status_code == 401
    assert bot.http.post("/resume", headers=bearer(SECRET)).status_code == 401
    assert bot.http.post("/pause", json={"secret": ADMIN}).status_code == 401  # a Bearer header only
    assert bot.http.get("/status", headers=bearer(ADMIN)).json()["paused"] is False
    assert bot.http.post("/pause", headers=bearer(ADMIN)).json() == {"paused": True}
    assert bot.http.get("/status", headers=bearer(ADMIN)).json()["paused"] is True
    assert bot.http.post("/resume", headers=bearer(ADMIN)).json() == {"paused": False}
    assert post(bot.http, secret=ADMIN).status_code == 401                        # not an alert secret
    assert post(bot.http, headers=bearer(ADMIN), secret=None).status_code == 401
    assert post(bot.http).json()["decision"] == "ACCEPTED"
    assert ADMIN not in json.dumps(bot.http.get("/status", headers=bearer(ADMIN)).json())


def test_without_an_admin_secret_the_webhook_secret_is_the_admin_secret(start_bot, caplog) -> None:
    with caplog.at_level(logging.INFO, logger="security"):
        bot = start_bot("paper")
    assert bot.http.get("/status", headers=bearer(SECRET)).status_code == 200
    assert bot.http.post("/pause", headers=bearer(SECRET)).json() == {"paused": True}
    assert "admin endpoints take the Bearer secret WEBHOOK_SECRET_KEY (set ADMIN_SECRET_KEY" in caplog.text


# ----- no redirects ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("method, path", [("POST", "/webhook/"), ("GET", "/status/"), ("POST", "/pause/")])
def test_a_trailing_slash_is_a_404_never_a_redirect(start_bot, method, path) -> None:
    """A 307 would send the client, and the body with its secret, to http://<Host>/... ."""
    bot = start_bot("paper")
    answer = bot.http.request(method, path, json=alert(), headers={"host": "bot.up.railway.app",
                                                                   **bearer(SECRET)}, follow_redirects=False)
    assert answer.status_code == 404 and "location" not in answer.headers
    assert not bot.settings.signals_csv.exists() and bot.status()["paused"] is False


# ----- small surface -------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_api_docs_are_off_outside_paper_mode(start_bot, fake, mode) -> None:
    bot = start_bot(mode, fake)
    for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
        answer = bot.http.get(path)
        assert answer.status_code == 404 and answer.json() == {"error": "not found"}


def test_api_docs_are_on_in_paper_mode(start_bot) -> None:
    bot = start_bot("paper")
    assert bot.http.get("/docs").status_code == 200
    schema = bot.http.get("/openapi.json").json()
    assert "confidence" in json.dumps(schema["paths"]["/webhook"]["post"]["requestBody"])


@pytest.mark.parametrize("method, path, status, message", [
    ("GET", "/nope", 404, "not found"),
    ("GET", "/../../etc/passwd", 404, "not found"),
    ("POST", "/status", 405, "method not allowed"),
    ("GET", "/webhook", 405, "method not allowed"),
    ("DELETE", "/status", 405, "method not allowed"),
])
def test_unknown_paths_and_methods_answer_json_that_reveals_nothing(start_bot, method, path, status,
                                                                       message) -> None:
    bot = start_bot("paper")
    answer = bot.http.request(method, path)
    assert answer.status_code == status
    assert answer.json() == {"error": message}


def test_unexpected_errors_are_a_generic_json_500(make_settings, tmp_path: Path) -> None:
    """A bug anywhere outside the trading path answers short JSON, never a path or a stack trace."""
    app = create_app(make_settings("paper"))

    def broken() -> None:
        raise RuntimeError(f"failed reading {tmp_path}/secret-file")
    app.add_api_route("/broken", broken)
    with TestClient(app, raise_server_exceptions=False) as http:
        answer = http.get("/broken")
    assert answer.status_code == 500
    assert answer.json() == {"error": "internal error"}
    assert str(tmp_path) not in answer.text and "Error" not in answer.text
