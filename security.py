"""Webhook security: who may call, how often, what an answer may reveal, how the server treats
slow and idle connections, and what reaches the log.

`install_security(app, settings)` puts a guard in front of every request. The routes ask it:
`authenticate(request, body, secret)` for an alert, `Depends(require_admin)` for /status, /pause and
/resume. A request with the right secret (or a valid signature) is always judged, never throttled;
requests that prove nothing are throttled per address (RATE_LIMIT_PER_MINUTE, and a lockout after
AUTH_FAILURE_LIMIT wrong secrets). `/health` is never throttled.

`server_options()` is how uvicorn must run the app (`python app.py` and the tests' live server), and
`configure_logging()` how the bot logs.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import math
import re
import sys
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from http import HTTPStatus
from ipaddress import IPv4Address, IPv6Address, IPv6Network, ip_address
from typing import Any, TextIO

import h11
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from uvicorn.protocols.http.h11_impl import H11Protocol

from config import MAKE_A_SECRET, TRADINGVIEW_ADDRESSES, Network, Settings, secret_weakness

log = logging.getLogger("security")

MAX_TRACKED_CLIENTS = 10_000
MAX_REMEMBERED_SIGNATURES = 10_000
IPV6_CLIENT_PREFIX = 64      # rate limit: one subscriber usually holds a whole /64
IPV6_LOCKOUT_PREFIX = 48     # lockout: coarser, so a /48's 65,536 /64s cannot take turns guessing
MAX_KEY_LENGTH = 64
NEVER_THROTTLED = frozenset({"/health"})
SIGNATURE_SCHEME = "sha256"
SIGNATURE_WINDOW_SECONDS = 300
TIMESTAMP_PATTERN = re.compile(rb"[0-9]{1,12}")
TRADINGVIEW = frozenset(ip_address(address) for address in TRADINGVIEW_ADDRESSES)
JUDGED = "security.judged"   # in the request's state: its answer came from authenticate() or require_admin
CLIENT = "security.client"
ADMIN_REFUSAL = ("missing or wrong admin secret (send Authorization: Bearer <ADMIN_SECRET_KEY>, or "
                 "<WEBHOOK_SECRET_KEY> when ADMIN_SECRET_KEY is not set)")

# The server (see server_options).
HEADER_TIMEOUT_SECONDS = 5   # a request's headers, from the connection's start or the previous answer
BODY_TIMEOUT_SECONDS = 10    # its body, from the end of its headers
MAX_CONNECTIONS = 500
LISTEN_BACKLOG = 32          # also how many connections asyncio accepts in one pass of its loop
# Accepted but not yet seen by connection_made, or closed but not yet released: asyncio takes three
# passes from accept() to releasing a connection that make_room closed.
ACCEPTED_UNSEEN = 3 * LISTEN_BACKLOG
FD_RESERVE = 64              # file descriptors kept for the journal, Binance, Telegram and the server itself
MAX_HEADER_BYTES = 16 * 1024

# The log (see configure_logging).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
REPEATS_PER_MINUTE = 10
MAX_LOG_TEMPLATES = 1_000
# C0, DEL, C1 (NEL), soft hyphen, invisible and bidirectional format characters, line and paragraph
# separators, BOM and lone surrogates: none belongs in a log line; each is shown as an escape.
CONTROL_CHARACTERS = re.compile("[\x00-\x1f\x7f-\x9f\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e"
                                "\u2060-\u206f\ufeff\ufff9-\ufffb\ud800-\udfff]")

Address = IPv4Address | IPv6Address


@dataclass(frozen=True)
class Client:
    """The caller: its IP address (None when the peer is not one, like the test client), the key of its
    request budget and the key its failed authentications are counted under."""
    address: Address | None
    key: str
    lockout_key: str


@dataclass
class Budget:
    tokens: float
    refilled: float


@dataclass
class Failures:
    count: int
    since: float


@dataclass
class Repeats:
    since: float
    count: int = 1
    dropped: int = 0


@dataclass(frozen=True)
class Wait:
    seconds: float
    reason: str


class ClientLimiter:
    """Requests that prove nothing: a token bucket per client (`per_minute` a minute, bursts up to that
    many), and a lockout of `lockout_seconds` after `failure_limit` failed authentications within that time.

    A failure is counted in the same step that answers it, so parallel guesses cannot pass the limit.
    Memory stays bounded: each table keeps at most `max_clients` entries. Budgets and failure counts
    forget the least recently seen first. Lockouts are a table of their own, so no number of other
    callers lifts one; only that many newer lockouts push out the one ending soonest.
    """

    def __init__(self, per_minute: int, failure_limit: int, lockout_seconds: int, max_clients: int) -> None:
        self.burst = per_minute
        self.per_second = per_minute / 60
        self.failure_limit = failure_limit
        self.lockout_seconds = lockout_seconds
        self.max_clients = max_clients
        self._budgets: OrderedDict[str, Budget] = OrderedDict()
        self._failures: OrderedDict[str, Failures] = OrderedDict()
        self._locked_until: OrderedDict[str, float] = OrderedDict()  # in order of expiry: one duration for all
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return max(len(self._budgets), len(self._failures), len(self._locked_until))

    def admit(self, client: Client) -> Wait | None:
        """Take one request from the client's budget; a Wait when it must not go on."""
        with self._lock:
            return self._spend(client, time.monotonic())

    def fail(self, client: Client) -> Wait | None:
        """A failed authentication: a Wait when the client is already locked out or over its budget, else
        None (answer 401) after counting it; the failure that reaches the limit starts the lockout."""
        now = time.monotonic()
        with self._lock:
            wait = self._spend(client, now)
            if wait is not None or not self._count_failure(client.lockout_key, now):
                return wait
        log.warning("%s locked out for %d s after %d failed authentications", client.lockout_key,
                    self.lockout_seconds, self.failure_limit)
        return None

    def _spend(self, client: Client, now: float) -> Wait | None:
        locked_until = self._locked_until.get(client.lockout_key)
        if locked_until is not None and locked_until > now:
            return Wait(locked_until - now, "too many failed authentications")
        budget = self._budgets.get(client.key)
        if budget is None:
            budget = self._budgets[client.key] = Budget(tokens=self.burst, refilled=now)
            _forget_oldest(self._budgets, self.max_clients)
        else:
            self._budgets.move_to_end(client.key)
        budget.tokens = min(self.burst, budget.tokens + (now - budget.refilled) * self.per_second)
        budget.refilled = now
        if budget.tokens < 1:
            return Wait((1 - budget.tokens) / self.per_second, "too many requests")
        budget.tokens -= 1
        return None

    def _count_failure(self, key: str, now: float) -> bool:
        """True when this failure locks `key` out."""
        failures = self._failures.get(key)
        if failures is None or now - failures.since > self.lockout_seconds:
            self._failures.pop(key, None)
            failures = self._failures[key] = Failures(0, now)
            _forget_oldest(self._failures, self.max_clients)
        else:
            self._failures.move_to_end(key)
        failures.count += 1
        if failures.count < self.failure_limit:
            return False
        del self._failures[key]
        while self._locked_until and next(iter(self._locked_until.values())) <= now:
            self._locked_until.popitem(last=False)
        self._locked_until.pop(key, None)
        self._locked_until[key] = now + self.lockout_seconds
        _forget_oldest(self._locked_until, self.max_clients)
        return True


class SeenSignatures:
    """Signatures already accepted, kept while their timestamp could still pass: a second use is a replay.
    At most `limit` are kept (the oldest go first); only correctly signed requests are added."""

    def __init__(self, window_seconds: int, limit: int) -> None:
        self.keep_seconds = 2 * window_seconds  # a timestamp up to the window ahead stays valid this long
        self.limit = limit
        self._seen: OrderedDict[bytes, float] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._seen)

    def first_use(self, signature: bytes) -> bool:
        now = time.monotonic()
        with self._lock:
            while self._seen and next(iter(self._seen.values())) <= now:
                self._seen.popitem(last=False)
            if signature in self._seen:
                return False
            self._seen[signature] = now + self.keep_seconds
            _forget_oldest(self._seen, self.limit)
            return True


class Refused(Exception):
    """Raised by a dependency (require_admin): answer with `response`."""

    def __init__(self, response: JSONResponse) -> None:
        super().__init__(response.status_code)
        self.response = response


class Guard:
    """The security settings applied to one request."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.limiter = ClientLimiter(settings.rate_limit_per_minute, settings.auth_failure_limit,
                                     settings.auth_lockout_seconds, MAX_TRACKED_CLIENTS)
        self.signatures = SeenSignatures(SIGNATURE_WINDOW_SECONDS, MAX_REMEMBERED_SIGNATURES)
        self.address_header, self.address_source = address_source(settings)
        self.admin_secret = settings.admin_secret_key or settings.webhook_secret_key

    def client(self, scope: Scope) -> Client:
        """Who sent the request (worked out once per request): the socket peer, or the address the
        platform's proxy put in its header when that header holds one."""
        state = scope.setdefault("state", {})
        if CLIENT not in state:
            peer = scope["client"][0] if scope.get("client") else ""
            forwarded = parse_address(last_entry(scope, self.address_header)) if self.address_header else None
            address = forwarded or parse_address(peer)
            state[CLIENT] = Client(address, *limiter_keys(address, peer))
        return state[CLIENT]

    def authenticate(self, request: Request, body: bytes, secret: object) -> JSONResponse | None:
        """An alert: None when it may be handled, else the answer (403, 401 or 429) to return."""
        client = self.client(request.scope)
        if self.settings.allowed_ips and not is_listed(client.address, self.settings.allowed_ips):
            return error(403, "forbidden")
        request.scope["state"][JUDGED] = True
        signed, signature_problem = self.check_signature(request, body, client)
        key = self.settings.webhook_secret_key
        right_secret = same_secret(secret, key) or same_secret(bearer_token(request.scope), key)
        if not (right_secret or signed):
            return self.refuse(client, signature_problem or "missing or wrong secret")
        if signature_problem or not right_secret:
            return error(401, signature_problem or "missing or wrong secret")
        return None

    def require_admin(self, request: Request) -> None:
        """/status, /pause, /resume: `Authorization: Bearer <ADMIN_SECRET_KEY>` (default: the webhook secret)."""
        request.scope.setdefault("state", {})[JUDGED] = True
        if not same_secret(bearer_token(request.scope), self.admin_secret):
            raise Refused(self.refuse(self.client(request.scope), ADMIN_REFUSAL))

    def check_signature(self, request: Request, body: bytes, client: Client) -> tuple[bool, str | None]:
        """WEBHOOK_HMAC_KEY: (a valid, fresh, first-used signature, the problem to answer with if any).
        `X-Signature: sha256=<hex HMAC-SHA256 of X-Timestamp + "." + body>`, compared in constant time."""
        key = self.settings.webhook_hmac_key
        if key is None or self.may_send_unsigned(client):
            return False, None
        headers = dict(request.scope["headers"][::-1])  # the first line of each wins
        stamp = headers.get(b"x-timestamp", b"").strip()
        scheme, _, given = headers.get(b"x-signature", b"").partition(b"=")
        if not TIMESTAMP_PATTERN.fullmatch(stamp):
            return False, "missing or malformed X-Timestamp (the time in unix seconds, signed with the body)"
        expected = hmac.new(key.get_secret_value().encode(), stamp + b"." + body, hashlib.sha256).hexdigest()
        if not (hmac.compare_digest(given.strip().lower(), expected.encode())
                and scheme.strip().lower() == SIGNATURE_SCHEME.encode()):
            return False, "missing or wrong signature"
        if abs(time.time() - int(stamp)) > SIGNATURE_WINDOW_SECONDS:
            return False, f"X-Timestamp is more than {SIGNATURE_WINDOW_SECONDS} s away from the bot's clock"
        if not self.signatures.first_use(expected.encode()):
            return False, "this signature was used already: sign each request with a new X-Timestamp"
        return True, None

    def may_send_unsigned(self, client: Client) -> bool:
        """TradingView cannot sign: its addresses may send unsigned alerts, but only when ALLOWED_IPS names them."""
        return client.address in TRADINGVIEW and is_listed(client.address, self.settings.allowed_ips)

    def refuse(self, client: Client, problem: str) -> JSONResponse:
        """A request that proved nothing: 401, or 429 once its address is over its budget or locked out."""
        wait = self.limiter.fail(client)
        return too_many_requests(wait) if wait is not None else error(401, problem)

    def start_up_report(self) -> list[tuple[int, str]]:
        """What the guard does, for the start-up log (never a secret)."""
        settings = self.settings
        report = [(logging.INFO, f"client addresses: {self.address_source}")]
        if settings.on_railway and settings.trust_proxy_headers is False:
            report.append((logging.WARNING, "TRUST_PROXY_HEADERS=false on Railway: every caller has the address "
                                            "of Railway's proxy, so all wrong secrets share one rate limit and "
                                            "lockout (alerts with the right secret still pass)"))
        admin = "ADMIN_SECRET_KEY" if settings.admin_secret_key else (
            "WEBHOOK_SECRET_KEY (set ADMIN_SECRET_KEY so that an alert message seen by others does not "
            "give away /status, /pause and /resume)")
        report.append((logging.INFO, f"admin endpoints take the Bearer secret {admin}"))
        for name, secret in (("WEBHOOK_SECRET_KEY", settings.webhook_secret_key),
                             ("ADMIN_SECRET_KEY", settings.admin_secret_key)):
            weakness = secret_weakness(secret) if secret is not None else None
            if weakness is not None:
                report.append((logging.WARNING, f"{name} {weakness}: accepted in paper mode only, testnet and "
                                                f"live refuse it; {MAKE_A_SECRET}"))
        return report


class GuardMiddleware:
    """Throttles every answer that authenticate() or require_admin did not give (they throttle their own):
    once the address is over its budget or locked out, the answer is a 429 instead. /health is exempt."""

    def __init__(self, app: ASGIApp, guard: Guard) -> None:
        self.app = app
        self.guard = guard

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in NEVER_THROTTLED:
            await self.app(scope, receive, send)
            return
        client = self.guard.client(scope)
        throttled = False

        async def send_unless_throttled(message: Message) -> None:
            nonlocal throttled
            if message["type"] == "http.response.start" and not scope["state"].get(JUDGED):
                wait = self.guard.limiter.admit(client)
                if wait is not None:
                    throttled = True
                    await too_many_requests(wait)(scope, receive, send)
            if not throttled:
                await send(message)

        await self.app(scope, receive, send_unless_throttled)


def install_security(app: FastAPI, settings: Settings) -> Guard:
    """The guard in front of every request, no redirects, and error answers that reveal nothing."""
    guard = Guard(settings)
    app.state.guard = guard
    # Starlette would answer /webhook/ with a 307 to http://<Host>/webhook (plain http behind a TLS proxy),
    # and the client would resend the body, secret included, there.
    app.router.redirect_slashes = False
    app.add_middleware(GuardMiddleware, guard=guard)
    app.add_exception_handler(Refused, refused)
    app.add_exception_handler(ClientDisconnect, client_gone)
    app.add_exception_handler(HTTPException, http_error)
    app.add_exception_handler(Exception, internal_error)
    for level, line in guard.start_up_report():
        log.log(level, line)
    return guard


def authenticate(request: Request, body: bytes, secret: object) -> JSONResponse | None:
    """For the webhook, once the body is read and parsed: None when the alert may be handled, else the
    answer to return. `secret` is the body's secret (or None); a Bearer header may carry it instead."""
    guard: Guard = request.app.state.guard
    return guard.authenticate(request, body, secret)


def require_admin(request: Request) -> None:
    """A FastAPI dependency for the admin endpoints: `dependencies=[Depends(require_admin)]`."""
    guard: Guard = request.app.state.guard
    guard.require_admin(request)


def address_source(settings: Settings) -> tuple[bytes | None, str]:
    """Which header names the caller (None: the socket peer), and how the start-up log describes it.
    On Railway every request comes through its proxy, which puts the caller's address in X-Real-IP."""
    if settings.trust_proxy_headers is False:
        return None, "the TCP connection's address (TRUST_PROXY_HEADERS=false)"
    if settings.on_railway:
        return b"x-real-ip", "X-Real-IP, set by Railway's proxy (running on Railway: RAILWAY_ variables are set)"
    if settings.trust_proxy_headers:
        return b"x-forwarded-for", ("the right-most X-Forwarded-For entry, the one your proxy appended "
                                    "(TRUST_PROXY_HEADERS=true)")
    return None, "the TCP connection's address (not on Railway, TRUST_PROXY_HEADERS not set)"


def last_entry(scope: Scope, name: bytes) -> str:
    """The right-most entry of a header: the one the platform's proxy appended. Entries to its left are
    whatever the caller sent, so any of them could be forged."""
    values = [value.decode("latin-1") for header, value in scope["headers"] if header == name]
    entries = [entry.strip() for entry in ",".join(values).split(",") if entry.strip()]
    return entries[-1] if entries else ""


def parse_address(text: str) -> Address | None:
    try:
        address = ip_address(text)
    except ValueError:
        return None
    if isinstance(address, IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def limiter_keys(address: Address | None, peer: str) -> tuple[str, str]:
    """(budget key, lockout key): an IPv4 address, an IPv6 /64 and /48, or the peer's name (test client)."""
    if isinstance(address, IPv6Address):
        budget, lockout = (IPv6Network((int(address), prefix), strict=False)
                           for prefix in (IPV6_CLIENT_PREFIX, IPV6_LOCKOUT_PREFIX))
        return str(budget), str(lockout)
    key = str(address) if address is not None else peer[:MAX_KEY_LENGTH]
    return key, key


def is_listed(address: Address | None, networks: tuple[Network, ...]) -> bool:
    return address is not None and any(address in network for network in networks)


def bearer_token(scope: Scope) -> bytes | None:
    """The token of the first Authorization header, as sent (bytes)."""
    header = next((value for name, value in scope["headers"] if name == b"authorization"), b"")
    scheme, _, token = header.partition(b" ")
    return token.strip() if scheme.lower() == b"bearer" and token.strip() else None


def same_secret(candidate: object, expected: Any) -> bool:
    """Constant time, whatever the lengths: the answer's timing does not leak the secret. A string that
    cannot be UTF-8 (a lone surrogate) is simply wrong."""
    if isinstance(candidate, str):
        candidate = candidate.encode("utf-8", "surrogatepass")
    if not isinstance(candidate, bytes) or expected is None:
        return False
    given = hashlib.sha256(candidate).digest()
    return hmac.compare_digest(given, hashlib.sha256(expected.get_secret_value().encode()).digest())


def _forget_oldest(table: OrderedDict[Any, Any], limit: int) -> None:
    while len(table) > limit:
        table.popitem(last=False)


def error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": message}, status_code=status)


def too_many_requests(wait: Wait) -> JSONResponse:
    seconds = max(1, math.ceil(wait.seconds))
    return JSONResponse({"error": f"{wait.reason}: try again in {seconds} s"}, status_code=429,
                        headers={"Retry-After": str(seconds)})


async def refused(request: Request, refusal: Refused) -> JSONResponse:
    return refusal.response


async def client_gone(request: Request, disconnect: ClientDisconnect) -> Response:
    """The caller went away (or the server closed a too slow request): nobody to answer, nothing to log."""
    return Response(status_code=400)


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


# ----- the server --------------------------------------------------------------------------------------

class GuardedH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol plus what it lacks against slow and idle callers.

    - A request's headers must arrive within `header_timeout` of the connection opening or of the
      previous answer (so an idle keep-alive connection is closed then too), and its body within
      `body_timeout` of its headers. Otherwise the connection is closed.
    - At most `max_connections` are open. One more makes room by closing the connection that has
      waited longest for a request; when every connection is busy with one, the new one is closed.
    """
    header_timeout: float = HEADER_TIMEOUT_SECONDS
    body_timeout: float = BODY_TIMEOUT_SECONDS
    max_connections: int = MAX_CONNECTIONS

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.deadline: asyncio.TimerHandle | None = None
        self.waiting_for: str | None = None  # "headers" or "body"
        self.waiting_since = 0.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.watch()
        if len(self.connections) > self.max_connections:
            self.make_room()

    def connection_lost(self, exc: Exception | None) -> None:
        self.set_deadline(None)
        super().connection_lost(exc)

    def handle_events(self) -> None:
        super().handle_events()
        self.watch()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self.watch()

    def watch(self) -> None:
        """Time what the connection waits for: the next request's headers, or this request's body."""
        state = self.conn.their_state
        waiting_for = "headers" if state is h11.IDLE else "body" if state is h11.SEND_BODY else None
        if waiting_for == self.waiting_for:
            return
        self.waiting_for, self.waiting_since = waiting_for, self.loop.time()
        timeout = {"headers": self.header_timeout, "body": self.body_timeout}.get(waiting_for or "")
        self.set_deadline(timeout)

    def set_deadline(self, seconds: float | None) -> None:
        if self.deadline is not None:
            self.deadline.cancel()
        self.deadline = None
        if seconds is not None and not self.transport.is_closing():
            self.deadline = self.loop.call_later(seconds, self.too_slow)

    def too_slow(self) -> None:
        self.deadline = None
        if self.transport.is_closing():
            return
        if self.waiting_for == "body" or self.conn.trailing_data[0]:  # a silent idle connection is routine
            timeout = self.body_timeout if self.waiting_for == "body" else self.header_timeout
            log.warning("closed a connection from %s: its request %s did not arrive within %s s",
                        peer_name(self.client), self.waiting_for, timeout)
        self.transport.close()

    def make_room(self) -> None:
        idle = [connection for connection in self.connections if isinstance(connection, GuardedH11Protocol)
                and connection is not self and connection.waiting_for == "headers"
                and not connection.transport.is_closing()]
        if not idle:
            log.warning("%d connections are busy: refused a new one from %s", self.max_connections,
                        peer_name(self.client))
            self.transport.close()
            return
        oldest = min(idle, key=lambda connection: connection.waiting_since)
        log.warning("%d connections are open: closed the longest idle one (from %s) to let a new one in",
                    self.max_connections, peer_name(oldest.client))
        oldest.transport.close()


def peer_name(peer: tuple[str, int] | None) -> str:
    return "%s:%d" % peer if peer else "an unknown address"


def connection_limit() -> int:
    """MAX_CONNECTIONS, or fewer when the file-descriptor limit (ulimit -n) would not allow that many."""
    try:
        import resource
    except ImportError:  # not on Linux or macOS
        return MAX_CONNECTIONS
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return MAX_CONNECTIONS
    return max(8, min(MAX_CONNECTIONS, soft - FD_RESERVE - ACCEPTED_UNSEEN))


def server_options(max_connections: int | None = None, header_timeout: float = HEADER_TIMEOUT_SECONDS,
                   body_timeout: float = BODY_TIMEOUT_SECONDS) -> dict[str, Any]:
    """uvicorn's options for the bot (`uvicorn.run(app, ..., **server_options())`).

    The socket peer is the caller (uvicorn would otherwise believe X-Forwarded-For on connections from
    127.0.0.1; the Guard reads that header itself), no Server header, the protocol above, and a listen
    backlog that keeps accepted-but-unseen connections well inside the file-descriptor reserve."""
    limit = connection_limit() if max_connections is None else max_connections
    if limit < MAX_CONNECTIONS:
        log.warning("at most %d connections at once: the file-descriptor limit (ulimit -n) allows no more; "
                    "raise it to %d or more for %d", limit, MAX_CONNECTIONS + FD_RESERVE + ACCEPTED_UNSEEN,
                    MAX_CONNECTIONS)
    protocol = type("GuardedH11Protocol", (GuardedH11Protocol,), {
        "max_connections": limit, "header_timeout": header_timeout, "body_timeout": body_timeout})
    return {"http": protocol, "proxy_headers": False, "server_header": False, "backlog": LISTEN_BACKLOG,
            "timeout_keep_alive": math.ceil(header_timeout), "h11_max_incomplete_event_size": MAX_HEADER_BYTES}


# ----- the log ------------------------------------------------------------------------------------------

def escape_controls(text: str, keep_newlines: bool = False) -> str:
    """Control and invisible characters as visible escapes (`\\x1b`, `\\u2028`), so nothing a caller sent
    can break a log line, fake one, or drive the terminal of whoever reads it."""
    def escape(match: re.Match[str]) -> str:
        character = match.group()
        if keep_newlines and character == "\n":
            return character
        code = ord(character)
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"
    return CONTROL_CHARACTERS.sub(escape, text)


class SafeFormatter(logging.Formatter):
    """One line per record: control characters in the message are escaped (a traceback keeps its lines)."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message.rstrip())
        return super().formatMessage(record)

    def formatException(self, exc_info: Any) -> str:
        return escape_controls(super().formatException(exc_info), keep_newlines=True)

    def formatStack(self, stack_info: str) -> str:
        return escape_controls(super().formatStack(stack_info), keep_newlines=True)


class RepeatLimit(logging.Filter):
    """At most `per_minute` WARNING-or-worse lines a minute with the same message template (so a stuck
    loop cannot flood the log); the first one dropped says so, and the next one let through says how many."""

    def __init__(self, per_minute: int = REPEATS_PER_MINUTE, max_templates: int = MAX_LOG_TEMPLATES) -> None:
        super().__init__()
        self.per_minute = per_minute
        self.max_templates = max_templates
        self._seen: OrderedDict[tuple[str, str], Repeats] = OrderedDict()
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, str(record.msg)[:200])
        now = time.monotonic()
        with self._lock:
            seen = self._seen.get(key)
            if seen is None or now - seen.since >= 60:
                self._seen.pop(key, None)
                self._seen[key] = Repeats(now)
                _forget_oldest(self._seen, self.max_templates)
                if seen is not None and seen.dropped:
                    record.msg = f"{record.msg} [{seen.dropped} more like this were not logged in the last minute]"
                return True
            seen.count += 1
            if seen.count <= self.per_minute:
                return True
            seen.dropped += 1
            if seen.dropped == 1:
                record.msg = f"{record.msg} [repeated too often: more like this are dropped for up to a minute]"
                return True
            return False


class WithoutQueryString(logging.Filter):
    """uvicorn's access log line without the query string: a secret put in the URL is never written."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):  # (client, method, path, ...)
            record.args = (*args[:2], args[2].partition("?")[0], *args[3:])
        return True


def log_handler(stream: TextIO) -> logging.Handler:
    """One line per event with its level, control characters escaped, repeated warnings limited."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(SafeFormatter(LOG_FORMAT))
    handler.addFilter(RepeatLimit())
    return handler


def configure_logging() -> None:
    """The bot's log: log_handler() on stdout (Railway shows every stderr line as an error), and no query
    strings in the access log. uvicorn runs with log_config=None, so its lines come through here too."""
    logging.basicConfig(level=logging.INFO, handlers=[log_handler(sys.stdout)], force=True)
    access = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, WithoutQueryString) for existing in access.filters):
        access.addFilter(WithoutQueryString())
