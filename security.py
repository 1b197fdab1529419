"""Webhook security: who may call, how often, and what an error answer may reveal.

`install_security(app, settings)` puts a guard in front of every request: a per-address request
budget (RATE_LIMIT_PER_MINUTE) and a lockout after repeated failed authentications (any 401
answer counts). Errors are answered with JSON that names no path, class or stack. The webhook
handler asks the returned Guard two more things: may this address send alerts (ALLOWED_IPS), and
is the body signed (WEBHOOK_HMAC_KEY).
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from config import TRADINGVIEW_ADDRESSES, Network, Settings

log = logging.getLogger("security")

MAX_TRACKED_CLIENTS = 10_000
IPV6_CLIENT_PREFIX = 64
MAX_KEY_LENGTH = 64
SIGNATURE_SCHEME = "sha256"
TRADINGVIEW = frozenset(ip_address(address) for address in TRADINGVIEW_ADDRESSES)
# uvicorn would otherwise replace the socket peer with X-Forwarded-For's value on connections from
# 127.0.0.1, and name itself in a Server header; the bot reads that header itself (TRUST_PROXY_HEADERS).
SERVER_OPTIONS: dict[str, Any] = {"proxy_headers": False, "server_header": False}

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Client:
    """The caller: its IP address (None when the peer is not one, like the test client) and its budget's key."""
    address: Address | None
    key: str


@dataclass
class Budget:
    tokens: float
    refilled: float
    failures: int = 0
    failures_since: float = 0.0
    locked_until: float = 0.0


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


class ClientLimiter:
    """A token bucket per client (`per_minute` requests a minute, bursts up to that many) and a
    lockout of `lockout_seconds` after `failure_limit` failed authentications within that time.

    Memory stays bounded: at most `max_clients` are remembered, the least recently seen forgotten
    first. A caller with more addresses than that is beyond what a per-address limit can stop.
    """

    def __init__(self, per_minute: int, failure_limit: int, lockout_seconds: int,
                 max_clients: int = MAX_TRACKED_CLIENTS) -> None:
        self.burst = per_minute
        self.per_second = per_minute / 60
        self.failure_limit = failure_limit
        self.lockout_seconds = lockout_seconds
        self.max_clients = max_clients
        self._budgets: OrderedDict[str, Budget] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._budgets)

    def admit(self, key: str) -> Wait | None:
        """Take one request from the client's budget; a Wait when it must not go on."""
        now = time.monotonic()
        with self._lock:
            budget = self._budget(key, now)
            if budget.locked_until > now:
                return Wait(budget.locked_until - now, "too many failed authentications")
            budget.tokens = min(self.burst, budget.tokens + (now - budget.refilled) * self.per_second)
            budget.refilled = now
            if budget.tokens < 1:
                return Wait((1 - budget.tokens) / self.per_second, "too many requests")
            budget.tokens -= 1
            return None

    def record_failure(self, key: str) -> bool:
        """Count a failed authentication; True when this one locks the client out."""
        now = time.monotonic()
        with self._lock:
            budget = self._budget(key, now)
            if now - budget.failures_since > self.lockout_seconds:
                budget.failures, budget.failures_since = 0, now
            budget.failures += 1
            if budget.failures < self.failure_limit:
                return False
            budget.failures, budget.locked_until = 0, now + self.lockout_seconds
            return True

    def _budget(self, key: str, now: float) -> Budget:
        budget = self._budgets.get(key)
        if budget is not None:
            self._budgets.move_to_end(key)
            return budget
        budget = self._budgets[key] = Budget(tokens=self.burst, refilled=now, failures_since=now)
        while len(self._budgets) > self.max_clients:
            self._budgets.popitem(last=False)
        return budget


class Guard:
    """The security settings applied to one request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = ClientLimiter(settings.rate_limit_per_minute, settings.auth_failure_limit,
                                     settings.auth_lockout_seconds)

    def identify(self, scope: Scope) -> Client:
        """The socket peer, or with TRUST_PROXY_HEADERS the address the platform's proxy forwarded."""
        forwarded = last_forwarded_for(scope) if self.settings.trust_proxy_headers else None
        text = forwarded or (scope["client"][0] if scope.get("client") else "")
        address = parse_address(text)
        return Client(address, limiter_key(address, text))

    def allows(self, request: Request) -> bool:
        """ALLOWED_IPS: empty lets every address send alerts (they still need the secret)."""
        return not self.settings.allowed_ips or is_listed(self.identify(request.scope).address,
                                                          self.settings.allowed_ips)

    def signature_matches(self, request: Request, body: bytes) -> bool:
        """WEBHOOK_HMAC_KEY: `X-Signature: sha256=<hex HMAC-SHA256 of the raw body>`, compared in constant time."""
        key = self.settings.webhook_hmac_key
        if key is None or self.may_send_unsigned(self.identify(request.scope)):
            return True
        scheme, _, given = request.headers.get("x-signature", "").partition("=")
        expected = hmac.new(key.get_secret_value().encode(), body, hashlib.sha256).hexdigest().encode()
        given_bytes = given.strip().encode("latin-1").lower()  # header text is latin-1 decoded
        return hmac.compare_digest(given_bytes, expected) and scheme.strip().lower() == SIGNATURE_SCHEME

    def may_send_unsigned(self, client: Client) -> bool:
        """TradingView cannot sign: its addresses may send unsigned alerts, but only when ALLOWED_IPS names them."""
        return client.address in TRADINGVIEW and is_listed(client.address, self.settings.allowed_ips)

    def failed_authentication(self, client: Client) -> None:
        """Count towards a lockout, except for ALLOWED_IPS addresses: TradingView's are shared by all
        its users, so a stranger's failing alerts from them would otherwise lock out the owner's."""
        if is_listed(client.address, self.settings.allowed_ips):
            return
        if self.limiter.record_failure(client.key):
            log.warning("%s locked out for %d s after %d failed authentications", client.key,
                        self.settings.auth_lockout_seconds, self.settings.auth_failure_limit)


class GuardMiddleware:
    """Before every endpoint: a 429 for an address that is locked out or over its budget.
    After it: a 401 answer counts as a failed authentication."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = self.guard.identify(scope)
        wait = self.guard.limiter.admit(client.key)
        if wait is not None:
            await too_many_requests(wait)(scope, receive, send)
            return

        async def send_and_count_failures(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 401:
                self.guard.failed_authentication(client)
            await send(message)

        await self.app(scope, receive, send_and_count_failures)


def install_security(app: FastAPI, settings: Settings) -> Guard:
    """The guard in front of every request, and error answers that reveal nothing."""
    guard = Guard(settings)
    app.add_middleware(GuardMiddleware, guard=guard)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    return guard


def last_forwarded_for(scope: Scope) -> str | None:
    """The right-most X-Forwarded-For entry: the one the platform's proxy appended. Entries to its
    left are whatever the caller sent, so any of them could be forged."""
    values = [value.decode("latin-1") for name, value in scope["headers"] if name == b"x-forwarded-for"]
    entries = [entry.strip() for entry in ",".join(values).split(",") if entry.strip()]
    return entries[-1] if entries else None


def parse_address(text: str) -> Address | None:
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def limiter_key(address: Address | None, text: str) -> str:
    """IPv6 callers are counted by their /64: one subscriber usually holds a whole /64."""
    if isinstance(address, IPv6Address):
        return str(IPv6Network((int(address), IPV6_CLIENT_PREFIX), strict=False))
    return str(address) if address is not None else text[:MAX_KEY_LENGTH]


def is_listed(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def too_many_requests(wait: Wait) -> JSONResponse:
    seconds = max(1, math.ceil(wait.seconds))
    return JSONResponse({"error": f"{wait.reason}: try again in {seconds} s"}, status_code=429,
                        headers={"Retry-After": str(seconds)})


async def http_error(request: Request, error: HTTPException) -> JSONResponse:
    """404, 405, ...: the status's name, never the framework's detail."""
    try:
        name = HTTPStatus(error.status_code).phrase.lower()
    except ValueError:
        name = "error"
    return JSONResponse({"error": name}, status_code=error.status_code, headers=error.headers)


async def internal_error(request: Request, error: Exception) -> JSONResponse:
    """Anything unexpected: a generic 500. The traceback goes to the server's log, never to the caller."""
    return JSONResponse({"error": "internal error"}, status_code=500)
