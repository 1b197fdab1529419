"""Webhook security: rate limit, lockout, client address, allow-list, signatures, and a small surface."""
from __future__ import annotations

import hashlib
import hmac
import json
import time
from ipaddress import ip_address
from pathlib import Path

import httpx2
import pytest
from fastapi.testclient import TestClient

from app import create_app
from config import TRADINGVIEW_ADDRESSES, ConfigError, load_settings
from security import MAX_TRACKED_CLIENTS, ClientLimiter
from tests.conftest import SECRET
from tests.live_server import serve

HMAC_KEY = "hmac-key-for-tests-5c1d9e"
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


def sign(body: bytes, key: str = HMAC_KEY) -> str:
    return "sha256=" + hmac.new(key.encode(), body, hashlib.sha256).hexdigest()


def post_signed(http, signature: str | bytes | None = None, **fields):
    body = json.dumps(alert(**fields)).encode()
    headers = {"content-type": "application/json"}
    if signature is not False:
        headers["x-signature"] = sign(body) if signature is None else signature
    return http.post("/webhook", content=body, headers=headers)


# ----- rate limit -------------------------------------------------------------------------------

def test_requests_over_the_rate_limit_get_429_with_retry_after(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=3, cooldown_seconds=0)
    http = client_at(bot, STRANGER)
    assert [http.get("/health").status_code for _ in range(2)] == [200, 200]
    assert post(http).json()["decision"] == "ACCEPTED"
    refused = post(http)
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "20"  # one request back every 60 / 3 seconds
    assert refused.json() == {"error": "too many requests: try again in 20 s"}
    assert http.get("/status", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 429
    assert len(bot.trades()) == 1
    assert post(client_at(bot, "198.51.100.24")).status_code == 200  # another address has its own budget


def test_failed_authentications_use_up_the_rate_limit_too(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=3, auth_failure_limit=100)
    http = client_at(bot, STRANGER)
    assert [post(http, secret="guess-%d" % i).status_code for i in range(3)] == [401, 401, 401]
    assert post(http).status_code == 429
    assert not bot.settings.trades_csv.exists()


def test_the_budget_refills_over_the_minute(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=120)
    http = bot.http
    limited = next(answer for answer in (http.get("/health") for _ in range(300)) if answer.status_code == 429)
    assert limited.headers["retry-after"] == "1"
    time.sleep(0.55)
    assert http.get("/health").status_code == 200


def test_ipv6_callers_are_limited_by_their_64_prefix(start_bot) -> None:
    bot = start_bot("paper", rate_limit_per_minute=1)
    assert client_at(bot, "2001:db8:1:2::1").get("/health").status_code == 200
    assert client_at(bot, "2001:db8:1:2:ffff::9").get("/health").status_code == 429
    assert client_at(bot, "2001:db8:1:3::1").get("/health").status_code == 200
    assert client_at(bot, "::ffff:203.0.113.5").get("/health").status_code == 200
    assert client_at(bot, "203.0.113.5").get("/health").status_code == 429  # the same IPv4 address


def test_the_limiter_memory_stays_bounded_however_many_addresses_call() -> None:
    limiter = ClientLimiter(per_minute=2, failure_limit=1, lockout_seconds=900)
    attacker = "203.0.113.66"
    limiter.record_failure(attacker)
    for n in range(3 * MAX_TRACKED_CLIENTS):
        limiter.admit(str(ip_address("10.0.0.0") + n) if n % 2 else f"2001:db8:{n:x}::1")
        if n % 1000 == 0:
            assert limiter.admit(attacker) is not None  # still locked out: recently seen, not forgotten
        assert len(limiter) <= MAX_TRACKED_CLIENTS
    assert len(limiter) == MAX_TRACKED_CLIENTS


# ----- lockout after failed authentications ---------------------------------------------------------

def test_repeated_failed_authentications_lock_the_address_out_for_a_while(start_bot) -> None:
    bot = start_bot("paper", auth_failure_limit=3, auth_lockout_seconds=1, cooldown_seconds=0)
    http, owner = client_at(bot, STRANGER), client_at(bot, "198.51.100.24")
    assert [post(owner, secret="typo").status_code for _ in range(2)] == [401, 401]
    assert [post(http, secret="guess-%d" % i).status_code for i in range(3)] == [401, 401, 401]
    locked = post(http)  # even with the right secret
    assert locked.status_code == 429 and locked.headers["retry-after"] == "1"
    assert locked.json()["error"].startswith("too many failed authentications")
    assert http.get("/health").status_code == 429
    assert not bot.settings.trades_csv.exists()
    assert post(owner).status_code == 200
    time.sleep(1.05)
    assert post(http).json()["decision"] == "ACCEPTED"
    assert post(owner, secret="typo").status_code == 401  # its two earlier failures have aged out
    assert post(owner).status_code == 200


def test_wrong_bearer_on_status_counts_as_a_failed_authentication(start_bot) -> None:
    bot = start_bot("paper", auth_failure_limit=2)
    http = client_at(bot, STRANGER)
    assert http.get("/status", headers={"Authorization": "Bearer nope"}).status_code == 401
    assert http.get("/status").status_code == 401
    assert http.get("/status", headers={"Authorization": f"Bearer {SECRET}"}).status_code == 429


def test_allow_listed_addresses_are_never_locked_out(start_bot) -> None:
    """TradingView's addresses are shared by all its users: a stranger's failing alerts must not block ours."""
    bot = start_bot("paper", allowed_ips="tradingview", auth_failure_limit=2)
    http = client_at(bot, TRADINGVIEW)
    assert [post(http, secret="stranger").status_code for _ in range(5)] == [401] * 5
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

@pytest.mark.parametrize("signature", [
    False,                                              # no header
    "",
    "sha256=",
    "sha256=" + "0" * 64,
    "sha1=" + "0" * 40,
    "md5=whatever",
    "sha256=é".encode("latin-1") + b"0" * 63,           # not ASCII: refused, not a 500
], ids=["missing", "empty", "no-hex", "wrong-hex", "sha1", "md5", "non-ascii"])
def test_unsigned_or_wrongly_signed_requests_are_401_when_a_key_is_set(start_bot, fake, signature) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY)
    answer = post_signed(bot.http, signature)
    assert answer.status_code == 401 and answer.json() == {"error": "missing or wrong signature"}
    assert fake.count("/api/v3/order") == 0 and not bot.settings.signals_csv.exists()


def test_signature_must_cover_this_very_body(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY)
    other = sign(json.dumps(alert(amount_usdt=5)).encode())
    assert post_signed(bot.http, other).status_code == 401
    assert post_signed(bot.http, sign(json.dumps(alert()).encode(), key=HMAC_KEY + "x")).status_code == 401
    assert fake.count("/api/v3/order") == 0


def test_correctly_signed_requests_trade(start_bot, fake) -> None:
    bot = start_bot("testnet", fake, webhook_hmac_key=HMAC_KEY, cooldown_seconds=0)
    assert post_signed(bot.http).json()["decision"] == "ACCEPTED"
    body = json.dumps(alert(action="sell")).encode()
    upper = "SHA256=" + sign(body).removeprefix("sha256=").upper()
    assert bot.http.post("/webhook", content=body, headers={"x-signature": upper}).json()["decision"] == "ACCEPTED"
    assert fake.count("/api/v3/order") == 2


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


def test_wrong_signatures_count_towards_the_lockout(start_bot) -> None:
    bot = start_bot("paper", webhook_hmac_key=HMAC_KEY, auth_failure_limit=2)
    http = client_at(bot, STRANGER)
    assert [post_signed(http, "sha256=" + "0" * 64).status_code for _ in range(2)] == [401, 401]
    assert post_signed(http).status_code == 429


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
