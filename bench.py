"""Benchmark: what an alert costs the bot, next to the least any webhook-to-Binance bot can cost.

    python bench.py            # the full run, about 5 minutes: writes bench_results.md
    python bench.py --quick    # fewer alerts and a smaller journal, about 1 minute: writes bench_results_quick.md

The bot runs as users run it: `python app.py` (uvicorn, one worker) in its own process, in testnet
mode, against the fake Binance of tests/fake_binance.py served from this process on 127.0.0.1,
first answering at once and then after a realistic 150 ms round trip. The load comes from this
process too, over keep-alive connections. Accepted alerts alternate BUY and SELL of the same symbol
(each client of a load trades its own symbol; cooldown 0), so that a SELL is measured as a BUY is.

The floor to compare with is a minimal forwarder written for the bench (`forwarder_app` below, not
the product): a few lines of FastAPI that send each alert straight to python-binance's create_order,
with no checks and no journal, served by uvicorn with one worker in its own process. In the same
run, on the same fake, it is sent the same alerts as the bot, in turn with it.

The figures are printed as Markdown tables and written to the output file; targets are measured
against (PASS/MISS), never asserted.
"""
from __future__ import annotations

import argparse
import csv
import functools
import itertools
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from http.client import HTTPConnection
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import uvicorn
from binance.client import Client
from fastapi import FastAPI

from config import Settings
from csv_logger import BOM, INTENT_FIELDS, SIGNAL_FIELDS, TRADE_FIELDS
from money import PRICE_PLACES, floor_to_step, plain
from tests.fake_binance import FakeBinance, Params, Reply
from tests.loopback import free_port

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
SECRET = "bench-secret-0123456789abcdef"
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
REALISTIC_ROUND_TRIP_MS = 150
MANY = 20
HTTP_TIMEOUT_SECONDS = 30
START_TIMEOUT_SECONDS = 120
STOP_TIMEOUT_SECONDS = 15
TRADE_AMOUNT = Decimal(10)
FEE_RATE = Decimal("0.001")
EIGHT_PLACES = Decimal("0.00000001")
OPEN_POSITIONS = 3
AMOUNT_VARIANTS = 3 * 41 * 7  # the cycles of trade_amounts: market, buy price, price move
MARKETS = (("BTCUSDT", "BTC", Decimal("50000"), Decimal("0.00001")),  # the generated journal's
           ("ETHUSDT", "ETH", Decimal("3000"), Decimal("0.0001")),
           ("BNBUSDT", "BNB", Decimal("600"), Decimal("0.001")))
LOAD_PRICE = Decimal(50000)  # every load symbol trades like BTCUSDT
LOAD_STEP = Decimal("0.00001")
AMPLE_BALANCE = "1000000000"  # of every asset in the fake account: no order is ever short of funds
SIDES = ("BUY", "SELL")

# Targets from issue 13 (the journal's growth: issue 7).
CALLS_PER_ACCEPTED_ALERT = 1
FLOOR_RATIO_LIMITS = {REALISTIC_ROUND_TRIP_MS: 1.05, 0: 2.0}  # exchange ms -> bot/forwarder median latency, c=1
REJECTED_PER_SECOND = 1000
IDLE_RSS_MB = 80
LARGE_JOURNAL_STARTUP_S = 1.0
JOURNAL_GROWTH_MARGIN = 1.25  # "no growth" with room for run-to-run noise

BUSY_MACHINE_SHARE = 0.10  # above this share of CPU used by other processes, the figures are disturbed


class BenchError(Exception):
    """The benchmark could not measure what it meant to (the bot failed, or answered otherwise)."""


@dataclass(frozen=True)
class Plan:
    """How much to send; quick mode is the same run, smaller. The floor's runs take the counts of the
    accepted loads at the same exchange latency and concurrency."""
    name: str
    one_by_one: int          # alerts per run at concurrency 1 (exchange at 0 ms; rejected at 150 ms)
    concurrent: int          # alerts per run at concurrency 20 (idem)
    slow_one_by_one: int     # accepted alerts at concurrency 1 with the exchange at 150 ms
    slow_concurrent: int     # accepted alerts at concurrency 20 with the exchange at 150 ms
    journal_signals: int
    journal_trades: int
    startup_runs: int
    run_seconds: float       # time bound of each load run
    warm_up_hold_seconds: float  # how long the fake holds the bot's warm-up, to catch a cold first BUY


FULL = Plan("full", one_by_one=1000, concurrent=4000, slow_one_by_one=300, slow_concurrent=2000,
            journal_signals=1_000_000, journal_trades=100_000, startup_runs=3, run_seconds=120,
            warm_up_hold_seconds=2)
QUICK = Plan("quick", one_by_one=200, concurrent=1000, slow_one_by_one=50, slow_concurrent=400,
             journal_signals=100_000, journal_trades=10_000, startup_runs=1, run_seconds=30,
             warm_up_hold_seconds=1)


@dataclass(frozen=True)
class Load:
    """One load run: `count` alerts at `concurrency`, the exchange answering after `exchange_ms`."""
    decision: str  # REJECTED (BUYs below MIN_CONFIDENCE) or ACCEPTED (BUY and SELL in turn)
    exchange_ms: int
    concurrency: int
    count: int


def trading_loads(plan: Plan) -> list[Load]:
    slow = REALISTIC_ROUND_TRIP_MS
    return [Load("REJECTED", 0, 1, plan.one_by_one), Load("ACCEPTED", 0, 1, plan.one_by_one),
            Load("REJECTED", 0, MANY, plan.concurrent), Load("ACCEPTED", 0, MANY, plan.concurrent),
            Load("REJECTED", slow, 1, plan.one_by_one), Load("ACCEPTED", slow, 1, plan.slow_one_by_one),
            Load("REJECTED", slow, MANY, plan.concurrent), Load("ACCEPTED", slow, MANY, plan.slow_concurrent)]


def floor_loads(plan: Plan) -> list[Load]:
    """Where the bot is compared with the forwarder: judged at c=1, shown at c=20 with the realistic exchange."""
    slow = REALISTIC_ROUND_TRIP_MS
    return [Load("ACCEPTED", 0, 1, plan.one_by_one), Load("ACCEPTED", slow, 1, plan.slow_one_by_one),
            Load("ACCEPTED", slow, MANY, plan.slow_concurrent)]


# ----- the alerts --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Alert:
    side: str
    symbol: str
    body: bytes


def make_alert(symbol: str, side: str, confidence: int) -> Alert:
    body = json.dumps({"secret": SECRET, "symbol": symbol, "action": side.lower(), "strategy": "bench",
                       "timeframe": "15", "confidence": confidence, "price": int(LOAD_PRICE)}).encode()
    return Alert(side, symbol, body)


def load_base(client: int) -> str:
    return f"BENCH{client:02d}"


def load_symbol(client: int) -> str:
    """Each client of a load trades its own symbol: its BUYs and SELLs alternate on a position no other touches."""
    return load_base(client) + "USDT"


def alert_stream(decision: str, symbol: str) -> Iterator[Alert]:
    """REJECTED: BUYs below MIN_CONFIDENCE 50; ACCEPTED: BUY, SELL, BUY, ... of the same symbol."""
    if decision == "REJECTED":
        return itertools.repeat(make_alert(symbol, "BUY", 10))
    return itertools.cycle([make_alert(symbol, "BUY", 80), make_alert(symbol, "SELL", 80)])


def client_streams(decision: str, concurrency: int) -> list[Iterator[Alert]]:
    return [alert_stream(decision, load_symbol(client)) for client in range(concurrency)]


# ----- the exchange ------------------------------------------------------------------------------

@dataclass(frozen=True)
class ExchangeCall:
    path: str
    arrived: float  # perf_counter when the fake began serving it (the bench's clock)
    seconds: float  # from the request's arrival to the end of the reply, latency included
    client_order_id: str | None
    symbol: str | None

    @property
    def name(self) -> str:
        return self.path.removeprefix("/api/v3/")

    @property
    def is_background(self) -> bool:
        """The monitor's, on its own clock: every position's price in one call, and the open orders."""
        return self.path == "/api/v3/openOrders" or (self.path == "/api/v3/ticker/price" and self.symbol is None)


class TimedFakeBinance(FakeBinance):
    """The test suite's fake Binance, timing each request it serves and noting whose order or symbol it names."""

    def __init__(self) -> None:
        super().__init__()
        self._served: list[ExchangeCall] = []
        self._request = threading.local()

    def forget_requests(self) -> None:
        """Start counting and timing afresh."""
        self.reset_counts()
        self.take_served()

    def take_served(self) -> list[ExchangeCall]:
        with self._lock:
            served, self._served = self._served, []
        return served

    def has_answered(self, path: str) -> bool:
        with self._lock:
            return any(call.path == path for call in self._served)

    def served_count(self) -> int:
        with self._lock:
            return len(self._served)

    def _serve(self, handler: Any) -> None:
        arrived = time.perf_counter()
        self._request.params = {}
        super()._serve(handler)
        params = self._request.params
        call = ExchangeCall(urlsplit(handler.path).path, arrived, time.perf_counter() - arrived,
                            params.get("newClientOrderId"), params.get("symbol"))
        with self._lock:
            self._served.append(call)

    def _dispatch(self, method: str, path: str, query: str, body: str, api_key: str | None, **options: Any) -> Reply:
        self._request.params = dict(parse_qsl(f"{query}&{body}"))
        return super()._dispatch(method, path, query, body, api_key, **options)

    def _new_order(self, params: Params) -> dict[str, Any]:
        """Filled MARKET orders are forgotten once answered: the fake's duplicate-id check scans every
        order it keeps, which over thousands of orders would take CPU from the bot being measured."""
        reply = super()._new_order(params)
        self._orders = [order for order in self._orders if order.is_open]
        return reply


def open_load_markets(fake: FakeBinance) -> None:
    """One symbol per client, priced and filtered like BTCUSDT, and ample balances of every asset."""
    for client in range(MANY):
        fake.add_symbol(load_symbol(client), load_base(client), "USDT", step=LOAD_STEP, min_qty=LOAD_STEP)
        fake.set_price(load_symbol(client), LOAD_PRICE)
    for asset in ("USDT", *(load_base(client) for client in range(MANY))):
        fake.set_balance(asset, AMPLE_BALANCE)


def settled_calls(fake: TimedFakeBinance) -> list[ExchangeCall]:
    """The calls since `forget_requests`, once the fake has finished answering every one it received."""
    received = fake.count()
    wait_until(lambda: fake.served_count() >= received, 10, "the fake's last replies")
    return fake.take_served()


# ----- the servers: the bot and the forwarder ----------------------------------------------------

def bot_environment(fake: FakeBinance, port: int, logs_dir: Path) -> dict[str, str]:
    """Only the bench's settings: none inherited from the shell (the bot runs in a directory without .env)."""
    inherited = {name: value for name, value in os.environ.items() if name.upper() not in SETTING_NAMES}
    return inherited | {
        "TRADING_MODE": "testnet", "WEBHOOK_SECRET_KEY": SECRET,
        "BINANCE_API_KEY": fake.api_key, "BINANCE_API_SECRET": fake.api_secret, "BINANCE_API_URL": fake.url,
        "HOST": LOOPBACK, "PORT": str(port), "LOGS_DIR": str(logs_dir),
        "TRADE_AMOUNT_USDT": str(TRADE_AMOUNT), "MAX_RISK_PER_TRADE": str(TRADE_AMOUNT), "MIN_CONFIDENCE": "50",
        "MIN_BALANCE_USDT": "10", "MAX_OPEN_TRADES": "1000000000", "MAX_TRADES_PER_DAY": "1000000000",
        "COOLDOWN_SECONDS": "0", "RATE_LIMIT_PER_MINUTE": "1000000000"}


def forwarder_app(client: Client, buy_amount: str, sell_quantity: str) -> FastAPI:
    """THE BENCH'S FLOOR, NOT THE PRODUCT: the alert goes straight to create_order, with no checks and no journal."""
    app = FastAPI()

    @app.post("/webhook")
    def webhook(alert: dict[str, Any]) -> Any:  # Any: no response model to validate, as in the bot
        side = alert["action"].upper()
        size = {"quoteOrderQty": buy_amount} if side == "BUY" else {"quantity": sell_quantity}
        return client.create_order(symbol=alert["symbol"], side=side, type="MARKET", **size)

    return app


def serve_forwarder() -> None:
    """The forwarder's process, set up by its environment (see forwarder_environment)."""
    client = Client(os.environ["FORWARDER_API_KEY"], os.environ["FORWARDER_API_SECRET"], ping=False, testnet=True)
    client.API_URL = client.API_TESTNET_URL = os.environ["FORWARDER_API_URL"]
    app = forwarder_app(client, os.environ["FORWARDER_BUY_AMOUNT"], os.environ["FORWARDER_SELL_QUANTITY"])
    uvicorn.run(app, host=LOOPBACK, port=int(os.environ["FORWARDER_PORT"]), workers=1)


def forwarder_environment(fake: FakeBinance, port: int) -> dict[str, str]:
    """A BUY spends TRADE_AMOUNT like the bot's; a SELL sells what such a BUY delivers, net of the fee."""
    sell_quantity = floor_to_step(TRADE_AMOUNT / LOAD_PRICE * (1 - FEE_RATE), LOAD_STEP)
    return os.environ | {
        "PYTHONPATH": str(HERE), "FORWARDER_PORT": str(port), "FORWARDER_API_KEY": fake.api_key,
        "FORWARDER_API_SECRET": fake.api_secret, "FORWARDER_API_URL": fake.url,
        "FORWARDER_BUY_AMOUNT": plain(TRADE_AMOUNT), "FORWARDER_SELL_QUANTITY": plain(sell_quantity)}


def answers(port: int, path: str) -> bool:
    connection = HTTPConnection(LOOPBACK, port, timeout=1)
    try:
        connection.request("GET", path)
        response = connection.getresponse()
        response.read()
        return response.status == 200
    except OSError:
        return False
    finally:
        connection.close()


def wait_until(condition: Callable[[], bool], seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise BenchError(f"gave up after {seconds:g}s waiting for {what}")
        time.sleep(0.005)


class ServerProcess:
    """A server in its own process, its output in a log file; `startup_seconds` runs from its start until
    `ready_path` answers."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], port: int, workdir: Path,
                 ready_path: str) -> None:
        self.name = name
        self.port = port
        self.ready_path = ready_path
        self.log_path = workdir / f"{name}-{port}.log"
        with open(self.log_path, "wb") as log_file:
            started = time.perf_counter()
            self.process = subprocess.Popen(command, env=env, cwd=workdir, stdout=log_file, stderr=subprocess.STDOUT)
        try:
            wait_until(self._ready, START_TIMEOUT_SECONDS, f"the {name}'s {ready_path}")
        except BenchError:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - started

    def rss_kb(self) -> int:
        return self._status_kb("VmRSS")

    def peak_rss_kb(self) -> int:
        return self._status_kb("VmHWM")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(STOP_TIMEOUT_SECONDS)

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise BenchError(f"the {self.name} exited with code {self.process.returncode}:\n{tail}")
        return answers(self.port, self.ready_path)

    def _status_kb(self, name: str) -> int:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith(f"{name}:"):
                return int(line.split()[1])
        raise BenchError(f"no {name} in /proc/{self.process.pid}/status")


@contextmanager
def serving(name: str, command: list[str], env: dict[str, str], port: int, workdir: Path,
            ready_path: str) -> Iterator[ServerProcess]:
    server = ServerProcess(name, command, env, port, workdir, ready_path)
    try:
        yield server
    finally:
        server.stop()


def running_bot(fake: FakeBinance, logs_dir: Path, workdir: Path) -> AbstractContextManager[ServerProcess]:
    port = free_port()
    return serving("bot", [sys.executable, str(HERE / "app.py")], bot_environment(fake, port, logs_dir), port,
                   workdir, "/health")


def running_forwarder(fake: FakeBinance, workdir: Path) -> AbstractContextManager[ServerProcess]:
    port = free_port()
    return serving("forwarder", [sys.executable, "-c", "import bench; bench.serve_forwarder()"],
                   forwarder_environment(fake, port), port, workdir, "/openapi.json")


# ----- the load ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Outcome:
    decision: str
    reason: str
    trade_status: str | None
    client_order_id: str | None


def bot_outcome(answer: dict[str, Any]) -> Outcome:
    trade = answer["trade"] or {}
    return Outcome(answer["decision"], answer["reason"], trade.get("status"), trade.get("client_order_id"))


def forwarder_outcome(answer: dict[str, Any]) -> Outcome:
    """The forwarder answers with Binance's reply to the order."""
    return Outcome("ACCEPTED", "sent to create_order", answer.get("status"), answer.get("clientOrderId"))


@dataclass(frozen=True)
class Target:
    """Where alerts go, and how its answer says what became of one."""
    port: int
    outcome: Callable[[dict[str, Any]], Outcome]


def bot_target(bot: ServerProcess) -> Target:
    return Target(bot.port, bot_outcome)


@dataclass(frozen=True)
class Sample:
    alert: Alert
    started: float  # perf_counter when the request was sent (the fake's clock too)
    seconds: float  # until the answer's last byte was read
    outcome: Outcome

    @property
    def ended(self) -> float:
        return self.started + self.seconds


class Tickets:
    """Hands out at most `count` sends and none after `seconds`: every load run ends by itself."""

    def __init__(self, count: int, seconds: float) -> None:
        self._left = count
        self._deadline = time.monotonic() + seconds
        self._lock = threading.Lock()

    def take(self) -> bool:
        with self._lock:
            if self._left <= 0 or time.monotonic() >= self._deadline:
                return False
            self._left -= 1
            return True

    def cancel(self) -> None:
        with self._lock:
            self._left = 0


def post_alert(connection: HTTPConnection, target: Target, alert: Alert) -> Sample:
    """One webhook round trip, timed from sending the request to reading the answer's last byte."""
    started = time.perf_counter()
    connection.request("POST", "/webhook", body=alert.body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    data = response.read()
    seconds = time.perf_counter() - started
    if response.status != 200:
        raise BenchError(f"the webhook answered HTTP {response.status}: {data[:300]!r}")
    return Sample(alert, started, seconds, target.outcome(json.loads(data)))


def keep_sending(targets: Sequence[Target], alerts: Iterator[Alert], tickets: Tickets,
                 samples: Sequence[list[Sample]]) -> None:
    """One client: a keep-alive connection to each target; per ticket, its next alert to every target in turn."""
    connections = [HTTPConnection(LOOPBACK, target.port, timeout=HTTP_TIMEOUT_SECONDS) for target in targets]
    try:
        while tickets.take():
            alert = next(alerts)
            for target, connection, bucket in zip(targets, connections, samples):
                bucket.append(post_alert(connection, target, alert))
    except BaseException:
        tickets.cancel()
        raise
    finally:
        for connection in connections:
            connection.close()


def send_load(targets: Sequence[Target], streams: Sequence[Iterator[Alert]], count: int,
              seconds: float) -> tuple[list[list[Sample]], float]:
    """`count` alerts from one client per stream, each alert sent to every target (stopping early after
    `seconds`): each target's samples, and the wall time."""
    tickets = Tickets(count, seconds)
    samples: list[list[Sample]] = [[] for _ in targets]
    started = time.perf_counter()
    with ThreadPoolExecutor(len(streams)) as pool:
        clients = [pool.submit(keep_sending, targets, stream, tickets, samples) for stream in streams]
        for client in clients:
            client.result()
    return samples, time.perf_counter() - started


def require_decision(samples: Iterable[Sample], decision: str) -> None:
    """Figures for the wrong outcome would mislead: an accepted run must really fill its orders."""
    for sample in samples:
        outcome = sample.outcome
        if outcome.decision != decision or (decision == "ACCEPTED" and outcome.trade_status != "FILLED"):
            raise BenchError(f"expected {decision} for a {sample.alert.side} {sample.alert.symbol}, the answer was "
                             f"{outcome.decision} ({outcome.trade_status}): {outcome.reason}")


@dataclass(frozen=True)
class Attribution:
    """A load's exchange calls, each given to the alert it was made for where that can be told."""
    by_sample: list[list[ExchangeCall]]  # aligned with the load's samples
    unattributed: list[ExchangeCall]
    background: list[ExchangeCall]


def attribute(calls: Iterable[ExchangeCall], samples: Sequence[Sample]) -> Attribution:
    """By client order id; otherwise to the one alert in flight when the call arrived (of the call's symbol,
    if it names one: each symbol's alerts come one at a time from one client)."""
    by_id = {s.outcome.client_order_id: index for index, s in enumerate(samples) if s.outcome.client_order_id}
    attribution = Attribution([[] for _ in samples], [], [])
    for call in calls:
        if call.is_background:
            attribution.background.append(call)
            continue
        index = by_id.get(call.client_order_id or "")
        if index is None:
            in_flight = [index for index, s in enumerate(samples) if s.started <= call.arrived <= s.ended
                         and call.symbol in (None, s.alert.symbol)]
            index = in_flight[0] if len(in_flight) == 1 else None
        if index is None:
            attribution.unattributed.append(call)
        else:
            attribution.by_sample[index].append(call)
    return attribution


@dataclass
class LoadResult:
    load: Load
    samples: list[Sample]
    seconds: float
    calls: Attribution

    @property
    def per_second(self) -> float:
        return len(self.samples) / self.seconds

    def indexes(self, side: str | None = None) -> list[int]:
        """The samples of one side (None: all)."""
        return [index for index, sample in enumerate(self.samples) if side in (None, sample.alert.side)]

    def latencies(self, side: str | None = None) -> list[float]:
        return [self.samples[index].seconds for index in self.indexes(side)]

    def alert_calls(self, side: str | None = None) -> list[ExchangeCall]:
        """The calls made for the alerts of one side; for all (None), those no alert could be given too."""
        given = [call for index in self.indexes(side) for call in self.calls.by_sample[index]]
        return given + (self.calls.unattributed if side is None else [])

    def overheads(self, side: str | None = None) -> list[float]:
        """Each alert's latency less the time the exchange held the calls made for it."""
        return [self.samples[index].seconds - sum(call.seconds for call in self.calls.by_sample[index])
                for index in self.indexes(side)]


def run_load(fake: TimedFakeBinance, bot: Target, load: Load, seconds: float) -> LoadResult:
    """Send the load to the bot alone, and give each exchange call to its alert."""
    fake.latency_ms = load.exchange_ms
    fake.forget_requests()
    log(f"{load.count} {load.decision.lower()} alerts, concurrency {load.concurrency}, exchange {load.exchange_ms} ms")
    [samples], elapsed = send_load([bot], client_streams(load.decision, load.concurrency), load.count, seconds)
    require_decision(samples, load.decision)
    return LoadResult(load, samples, elapsed, attribute(settled_calls(fake), samples))


@dataclass(frozen=True)
class FloorResult:
    """The same accepted alerts sent to the bot and to the forwarder in turn."""
    load: Load
    bot: list[float]
    forwarder: list[float]

    @property
    def ratio(self) -> float:
        return median(self.bot) / median(self.forwarder)


def run_floor(fake: TimedFakeBinance, bot: Target, forwarder: Target, load: Load, seconds: float) -> FloorResult:
    fake.latency_ms = load.exchange_ms
    fake.forget_requests()
    log(f"{load.count} accepted alerts to the bot and the forwarder in turn, concurrency {load.concurrency}, "
        f"exchange {load.exchange_ms} ms")
    pair, _ = send_load([bot, forwarder], client_streams(load.decision, load.concurrency), load.count, seconds)
    for samples in pair:
        require_decision(samples, load.decision)
    bot_samples, forwarder_samples = pair
    return FloorResult(load, [s.seconds for s in bot_samples], [s.seconds for s in forwarder_samples])


def calls_for_one(fake: FakeBinance, bot: Target, alert: Alert) -> list[str]:
    """The exchange endpoints one alert called, in order."""
    fake.reset_counts()
    connection = HTTPConnection(LOOPBACK, bot.port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        require_decision([post_alert(connection, bot, alert)], "ACCEPTED")
    finally:
        connection.close()
    return [path.removeprefix("/api/v3/") for _, path in fake.calls]


def reported_positions(port: int) -> dict[str, Decimal]:
    """The open positions the bot's /status reports, by symbol."""
    connection = HTTPConnection(LOOPBACK, port, timeout=HTTP_TIMEOUT_SECONDS)
    try:
        connection.request("GET", "/status", headers={"Authorization": f"Bearer {SECRET}"})
        response = connection.getresponse()
        data = response.read()
    finally:
        connection.close()
    if response.status != 200:
        raise BenchError(f"/status answered HTTP {response.status}: {data[:300]!r}")
    return {symbol: Decimal(position["quantity"]) for symbol, position in json.loads(data)["positions"].items()}


# ----- the journal -------------------------------------------------------------------------------

def write_csv(path: Path, fields: list[str], rows: Iterable[list[str]]) -> None:
    """The journal's own format: UTF-8 with a BOM, a header, CRLF line ends."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(BOM)
        writer = csv.writer(handle, lineterminator="\r\n")
        writer.writerow(fields)
        writer.writerows(rows)


def past_times(count: int) -> Iterator[str]:
    """`count` increasing times, whole seconds apart, spread over the year before yesterday."""
    step = timedelta(seconds=max(365 * 24 * 3600 // max(count, 1), 1))
    at = (datetime.now(timezone.utc) - timedelta(days=1) - step * count).replace(tzinfo=None, microsecond=0)
    for _ in range(count):
        yield at.isoformat(" ")  # the journal's time format, three times faster than strftime
        at += step


def signal_kinds() -> list[dict[str, str]]:
    """The rows the bot writes, by kind: one in four accepted, the others refused for low confidence."""
    kinds = []
    for index in range(len(MARKETS) * 4):
        symbol, accepted = MARKETS[index % len(MARKETS)][0], index % 4 == 0
        kinds.append({"TradingPair": symbol, "Action": "BUY" if index % 2 == 0 else "SELL", "Strategy": "bench",
                      "TimeFrame": "15", "Confidence": "80" if accepted else "30",
                      "Decision": "ACCEPTED" if accepted else "REJECTED",
                      "Reason": f"BUY {symbol} filled" if accepted else "confidence 30 is below MIN_CONFIDENCE 50",
                      "Price": "50000", "AmountUSDT": "10", "Mode": "testnet"})
    return kinds


def signal_rows(count: int) -> Iterator[list[str]]:
    kinds = signal_kinds()
    for index, at in enumerate(past_times(count)):
        kind = kinds[index % len(kinds)]
        order_id = f"tvbot-{index:024x}" if kind["Decision"] == "ACCEPTED" else ""
        row = kind | {"DateTime": at, "AlertID": f"alert-{index}", "ClientOrderID": order_id}
        yield [row.get(name, "") for name in SIGNAL_FIELDS]


def market_of(variant: int) -> tuple[str, str, Decimal, Decimal]:
    return MARKETS[variant % len(MARKETS)]


def buy_price_of(variant: int) -> Decimal:
    return market_of(variant)[2] * (1 + Decimal(variant % 41 - 20) / 1000)


@functools.cache
def buy_row(variant: int) -> dict[str, str]:
    """A filled BUY of 10 USDT, its fee taken from what it buys, in every column trades.csv has."""
    symbol, base, _, step = market_of(variant)
    price = buy_price_of(variant)
    quantity = floor_to_step(TRADE_AMOUNT / price, step)
    fee = (quantity * FEE_RATE).quantize(EIGHT_PLACES, ROUND_HALF_UP)
    return {"TradingPair": symbol, "Action": "BUY", "Status": "FILLED", "ExchangeStatus": "FILLED", "Mode": "testnet",
            "TradeAmount": plain(quantity * price), "Price": plain(price), "Quantity": plain(quantity),
            "NetQuantity": plain(quantity - fee), "Fee": plain(fee), "FeeAsset": base, "Fees": f"{plain(fee)} {base}",
            "FeeInQuote": plain((fee * price).quantize(PRICE_PLACES)), "Reason": f"BUY {symbol} filled"}


def sell_row(variant: int, held: Decimal, cost: Decimal) -> tuple[dict[str, str], tuple[Decimal, Decimal]]:
    """The SELL of all a position holds (`held`, bought for `cost`) down to the lot step, as the bot sells, at
    the variant's price move: the row, and the dust it leaves with the dust's share of the cost."""
    symbol, _, _, step = market_of(variant)
    price = buy_price_of(variant) * (1 + Decimal(variant % 7 - 3) / 100)
    sold = floor_to_step(held, step)
    dust = held - sold
    dust_cost = (cost * dust / held).quantize(PRICE_PLACES)
    proceeds = sold * price
    fee = (proceeds * FEE_RATE).quantize(EIGHT_PLACES, ROUND_HALF_UP)
    row = {"TradingPair": symbol, "Action": "SELL", "Status": "FILLED", "ExchangeStatus": "FILLED", "Mode": "testnet",
           "TradeAmount": plain(proceeds), "Price": plain(price), "Quantity": plain(sold), "NetQuantity": plain(sold),
           "Fee": plain(fee), "FeeAsset": "USDT", "Fees": f"{plain(fee)} USDT", "FeeInQuote": plain(fee),
           "Reason": f"SELL {symbol} filled", "RealizedPnL": plain(proceeds - fee - (cost - dust_cost)),
           "EntryPrice": plain((cost / held).quantize(PRICE_PLACES))}
    return row, (dust, dust_cost)


def with_ids(row: dict[str, str], number: int) -> dict[str, str]:
    """The journal's `number`th order: its exchange id and client order id."""
    return row | {"OrderID": str(number + 1), "ClientOrderID": f"tvbot-{number:024x}"}


def closed_pairs(count: int) -> int:
    return max(count - OPEN_POSITIONS, 0) // 2


def open_buys(count: int) -> list[dict[str, str]]:
    """The BUYs left open at the journal's end, after the closed pairs: one per market (and one more when
    the count is even)."""
    pairs = closed_pairs(count)
    return [with_ids(buy_row((pairs + index) % AMOUNT_VARIANTS), 2 * (pairs + index))
            for index in range(count - 2 * pairs)]


def journal_trades(count: int) -> Iterator[dict[str, str]]:
    """Closed BUY/SELL pairs, each SELL selling the whole position (its dust goes to the next BUY's), then the
    open BUYs."""
    dust: dict[str, tuple[Decimal, Decimal]] = {}
    for index in range(closed_pairs(count)):
        buy = buy_row(index % AMOUNT_VARIANTS)
        dust_quantity, dust_cost = dust.get(buy["TradingPair"], (Decimal(0), Decimal(0)))
        sell, dust[buy["TradingPair"]] = sell_row(index % AMOUNT_VARIANTS,
                                                  dust_quantity + Decimal(buy["NetQuantity"]),
                                                  dust_cost + Decimal(buy["TradeAmount"]))
        yield with_ids(buy, 2 * index)
        yield with_ids(sell, 2 * index + 1)
    yield from open_buys(count)


def trade_rows(count: int) -> Iterator[list[str]]:
    for row, at in zip(journal_trades(count), past_times(count)):
        yield [({"DateTime": at} | row).get(name, "") for name in TRADE_FIELDS]


def intent_rows(count: int) -> Iterator[list[str]]:
    """The intent the bot writes before each of those orders (same client order ids and times)."""
    for trade in trade_rows(count):
        row = dict(zip(TRADE_FIELDS, trade))
        intent = row | {"AmountUSDT": row["TradeAmount"] if row["Action"] == "BUY" else "",
                        "Quantity": row["Quantity"] if row["Action"] == "SELL" else "", "AlertID": ""}
        yield [intent.get(name, "") for name in INTENT_FIELDS]


def write_journal(logs_dir: Path, signals: int, trades: int) -> float:
    """A journal of `signals` and `trades` rows (and the trades' intents); returns its size in MB."""
    write_csv(logs_dir / "signals.csv", SIGNAL_FIELDS, signal_rows(signals))
    write_csv(logs_dir / "trades.csv", TRADE_FIELDS, trade_rows(trades))
    write_csv(logs_dir / "intents.csv", INTENT_FIELDS, intent_rows(trades))
    return sum(path.stat().st_size for path in logs_dir.iterdir()) / 1e6


def check_replay(reported: dict[str, Decimal], trades: int) -> None:
    """The written journal must replay: every market with an open BUY is reported holding what those BUYs
    delivered, plus less than one lot step (the dust the sale before left), and no other market."""
    bought: dict[str, Decimal] = {}
    for buy in open_buys(trades):
        bought[buy["TradingPair"]] = bought.get(buy["TradingPair"], Decimal(0)) + Decimal(buy["NetQuantity"])
    steps = {symbol: step for symbol, _, _, step in MARKETS}
    if reported.keys() != bought.keys() or any(not bought[s] <= reported[s] < bought[s] + steps[s] for s in bought):
        raise BenchError(f"the journal did not replay: the bot reports the positions {reported}, "
                         f"the journal's open BUYs delivered {bought}")


# ----- the measurements --------------------------------------------------------------------------

@dataclass(frozen=True)
class CpuUse:
    """CPU seconds so far: the machine's busy and total time (all cores), and this process's with its children."""
    machine_busy: float
    machine_total: float
    ours: float

    @classmethod
    def now(cls) -> CpuUse:
        ticks = os.sysconf("SC_CLK_TCK")
        user, nice, system, idle, iowait, irq, softirq, steal = (
            int(value) / ticks for value in Path("/proc/stat").read_text().split()[1:9])
        busy = user + nice + system + irq + softirq + steal
        own = os.times()
        return cls(busy, busy + idle + iowait, own.user + own.system + own.children_user + own.children_system)


def others_share(before: CpuUse, after: CpuUse) -> float:
    """The share of the machine's CPU that other processes took in between: noise in the figures."""
    others = (after.machine_busy - before.machine_busy) - (after.ours - before.ours)
    return max(others, 0.0) / (after.machine_total - before.machine_total)


@dataclass
class Report:
    plan: Plan
    machine: str
    others_cpu_share: float = 0.0
    startup_empty: list[float] = field(default_factory=list)
    startup_large: list[float] = field(default_factory=list)
    startup_first: float = 0.0
    journal_mb: float = 0.0
    replayed: dict[str, Decimal] = field(default_factory=dict)
    loads: list[LoadResult] = field(default_factory=list)
    floors: list[FloorResult] = field(default_factory=list)
    # decision -> (latencies with an empty journal, with the large one), measured alternately
    journal_latencies: dict[str, tuple[list[float], list[float]]] = field(default_factory=dict)
    cold_buy_calls: list[str] = field(default_factory=list)
    warm_buy_calls: list[str] = field(default_factory=list)
    first_sell_calls: list[str] = field(default_factory=list)
    rss_idle_kb: int = 0
    rss_after_kb: int = 0
    alerts_sent: int = 0
    rss_large_kb: int = 0
    peak_large_kb: int = 0


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def time_startups(fake: FakeBinance, logs_dir: Path, workdir: Path, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        with running_bot(fake, logs_dir, workdir) as bot:
            samples.append(bot.startup_seconds)
    return samples


def measure_trading(fake: TimedFakeBinance, workdir: Path, plan: Plan, report: Report) -> None:
    """Exchange calls (cold, warm, steady), latency, overhead, throughput, the floor and memory, on an empty
    journal. The fake holds the bot's first warm-up call, so the first BUY finds the caches cold."""
    buy, sell = itertools.islice(alert_stream("ACCEPTED", load_symbol(0)), 2)
    with running_forwarder(fake, workdir) as forwarder_process:
        fake.latency_ms = 0
        fake.forget_requests()  # the warm-ups of the bots started before
        fake.hang("GET", "/api/v3/time", seconds=plan.warm_up_hold_seconds, after_execute=True)
        with running_bot(fake, workdir / "logs", workdir) as bot_process:
            bot, forwarder = bot_target(bot_process), Target(forwarder_process.port, forwarder_outcome)
            report.startup_empty.append(bot_process.startup_seconds)
            report.rss_idle_kb = bot_process.rss_kb()
            wait_until(lambda: fake.count("/api/v3/time") > 0, 10, "the bot's warm-up")
            report.cold_buy_calls = calls_for_one(fake, bot, buy)
            wait_until(lambda: fake.has_answered("/api/v3/time"), plan.warm_up_hold_seconds + 10, "the warm-up's end")
            report.warm_buy_calls = calls_for_one(fake, bot, buy)
            report.first_sell_calls = calls_for_one(fake, bot, sell)
            report.loads = [run_load(fake, bot, load, plan.run_seconds) for load in trading_loads(plan)]
            report.floors = [run_floor(fake, bot, forwarder, load, plan.run_seconds) for load in floor_loads(plan)]
            report.rss_after_kb = bot_process.rss_kb()
    singles = 3  # the cold BUY, the warm BUY and the first SELL
    report.alerts_sent = (singles + sum(len(result.samples) for result in report.loads)
                          + sum(len(floor.bot) for floor in report.floors))


def measure_large_journal(fake: TimedFakeBinance, workdir: Path, plan: Plan, report: Report) -> None:
    """Start-up with the large journal: the first replays it all and writes the checkpoint, the next ones read
    the checkpoint; then a bot with it and a bot without, sent alerts in turn."""
    logs_dir = workdir / "journal"
    log(f"writing a journal of {plan.journal_signals:,} signals and {plan.journal_trades:,} trades")
    report.journal_mb = write_journal(logs_dir, plan.journal_signals, plan.journal_trades)
    fake.latency_ms = 0
    [report.startup_first] = time_startups(fake, logs_dir, workdir, 1)
    report.startup_large = time_startups(fake, logs_dir, workdir, plan.startup_runs - 1)
    with running_bot(fake, logs_dir, workdir) as large, running_bot(fake, workdir / "fresh", workdir) as empty:
        report.startup_large.append(large.startup_seconds)
        report.rss_large_kb, report.peak_large_kb = large.rss_kb(), large.peak_rss_kb()
        report.replayed = reported_positions(large.port)
        check_replay(report.replayed, plan.journal_trades)
        for decision in ("REJECTED", "ACCEPTED"):
            log(f"{plan.one_by_one} {decision.lower()} alerts to each bot in turn, with and without the journal")
            fake.forget_requests()
            pair, _ = send_load([bot_target(empty), bot_target(large)], client_streams(decision, 1),
                                plan.one_by_one, plan.run_seconds)
            for samples in pair:
                require_decision(samples, decision)
            without, with_journal = ([sample.seconds for sample in samples] for samples in pair)
            report.journal_latencies[decision] = (without, with_journal)


def run(plan: Plan, output: Path) -> str:
    """Measure everything, print the tables and write them to `output`."""
    report = Report(plan, describe_machine())
    before = CpuUse.now()
    with tempfile.TemporaryDirectory(prefix="bench-") as temp, TimedFakeBinance() as fake:
        open_load_markets(fake)
        workdir = Path(temp)
        log(f"{plan.name} run; starting the bot with an empty journal")
        report.startup_empty = time_startups(fake, workdir / "empty", workdir, plan.startup_runs - 1)
        measure_trading(fake, workdir, plan, report)
        measure_large_journal(fake, workdir, plan, report)
    report.others_cpu_share = others_share(before, CpuUse.now())
    text = render(report)
    print(text)
    output.write_text(text, encoding="utf-8")
    return text


# ----- the report --------------------------------------------------------------------------------

def describe_machine() -> str:
    model = "unknown CPU"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    return (f"{os.cpu_count()} cores, {model}, Python {platform.python_version()}, "
            f"{platform.system()} {platform.release()}")


def percentile(values: Sequence[float], share: float) -> float:
    """Nearest-rank percentile: the smallest value with at least `share` of the values at or below it."""
    ordered = sorted(values)
    return ordered[max(1, math.ceil(share * len(ordered))) - 1]


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.2f}"


def mb(kilobytes: int) -> str:
    return f"{kilobytes / 1024:.1f} MB"


def median(values: Sequence[float]) -> float:
    return percentile(values, 0.5)


def verdict(passed: bool) -> str:
    return "PASS" if passed else "MISS"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(row) + " |" for row in rows]


def find(results: Iterable[LoadResult], decision: str, exchange_ms: int, concurrency: int) -> LoadResult:
    return next(r for r in results if (r.load.decision, r.load.exchange_ms, r.load.concurrency)
                == (decision, exchange_ms, concurrency))


def side_label(side: str | None) -> str:
    return side or "both"


def load_label(load: Load) -> str:
    return "ACCEPTED, BUY and SELL in turn" if load.decision == "ACCEPTED" else "REJECTED"


def latency_table(report: Report) -> list[str]:
    rows = [[load_label(r.load), f"{r.load.exchange_ms} ms", str(r.load.concurrency), str(len(r.samples)),
             ms(percentile(r.latencies(), .5)), ms(percentile(r.latencies(), .95)),
             ms(percentile(r.latencies(), .99)), f"{r.per_second:.0f}"] for r in report.loads]
    return table(["alert", "exchange round trip", "concurrency", "alerts", "p50 ms", "p95 ms", "p99 ms",
                  "alerts/s"], rows)


def calls_per_alert(calls: int, alerts: int) -> str:
    return f"{calls / alerts:.2f}" if alerts else "-"


def by_side_table(report: Report) -> list[str]:
    rows = []
    for result in (r for r in report.loads if r.load.decision == "ACCEPTED"):
        for side in (*SIDES, None):
            latencies, overheads = result.latencies(side), result.overheads(side)
            rows.append([f"{result.load.exchange_ms} ms", str(result.load.concurrency), side_label(side),
                         str(len(latencies)), ms(percentile(latencies, .5)), ms(percentile(latencies, .99)),
                         calls_per_alert(len(result.alert_calls(side)), len(latencies)),
                         ms(percentile(overheads, .5)), ms(percentile(overheads, .99))])
    return table(["exchange round trip", "concurrency", "side", "alerts", "p50 ms", "p99 ms", "REST calls per alert",
                  "overhead p50 ms", "overhead p99 ms"], rows)


def floor_table(report: Report) -> list[str]:
    rows = [[f"{f.load.exchange_ms} ms", str(f.load.concurrency), str(len(f.bot)), ms(median(f.bot)),
             ms(median(f.forwarder)), f"{f.ratio:.2f}", ms(percentile(f.bot, .99)), ms(percentile(f.forwarder, .99))]
            for f in report.floors]
    return table(["exchange round trip", "concurrency", "alerts each", "bot p50 ms", "forwarder p50 ms",
                  "ratio p50", "bot p99 ms", "forwarder p99 ms"], rows)


def accepted_calls(report: Report, side: str | None) -> tuple[int, int]:
    """(exchange calls, alerts) of one side over every accepted load."""
    results = [r for r in report.loads if r.load.decision == "ACCEPTED"]
    return sum(len(r.alert_calls(side)) for r in results), sum(len(r.indexes(side)) for r in results)


def rejected_calls(report: Report) -> tuple[int, int]:
    results = [r for r in report.loads if r.load.decision == "REJECTED"]
    return sum(len(r.alert_calls()) for r in results), sum(len(r.samples) for r in results)


def endpoints(calls: Iterable[ExchangeCall]) -> str:
    counts = Counter(call.name for call in calls)
    return ", ".join(f"{name} {count}" for name, count in counts.most_common()) or "none"


def accepted_endpoints(report: Report, side: str | None) -> str:
    results = [r for r in report.loads if r.load.decision == "ACCEPTED"]
    unattributed = sum(len(r.calls.unattributed) for r in results) if side is None else 0
    text = endpoints(call for r in results for call in r.alert_calls(side))
    return text + (f" ({unattributed} made while several alerts were in flight)" if unattributed else "")


def calls_table(report: Report) -> list[str]:
    rows = [["first BUY, cold caches (before the start-up warm-up is done)", str(len(report.cold_buy_calls)),
             ", ".join(report.cold_buy_calls)],
            ["first BUY after the warm-up", str(len(report.warm_buy_calls)), ", ".join(report.warm_buy_calls)],
            ["first SELL after it", str(len(report.first_sell_calls)), ", ".join(report.first_sell_calls)]]
    for side in (*SIDES, None):
        calls, alerts = accepted_calls(report, side)
        rows.append([f"accepted {side_label(side)}, steady state", calls_per_alert(calls, alerts),
                     f"{calls} calls for {alerts} alerts: {accepted_endpoints(report, side)}"])
    calls, alerts = rejected_calls(report)
    background = [call for r in report.loads for call in r.calls.background]
    rows += [["rejected alert, steady state", calls_per_alert(calls, alerts), f"{calls} calls for {alerts} alerts"],
             ["none: the monitor's background refreshes, whatever the load", str(len(background)),
              f"{endpoints(background)}; once per MONITOR_INTERVAL_SECONDS"]]
    return table(["alert", "REST calls", "which"], rows)


def p50_and_p99(latencies: Sequence[float]) -> str:
    return f"{ms(percentile(latencies, .5))} / {ms(percentile(latencies, .99))}"


def describe_positions(positions: dict[str, Decimal]) -> str:
    return ", ".join(f"{symbol} {plain(quantity)}" for symbol, quantity in sorted(positions.items())) or "none"


def journal_table(report: Report) -> list[str]:
    plan = report.plan
    empty = [p50_and_p99(report.journal_latencies[decision][0]) for decision in ("REJECTED", "ACCEPTED")]
    large = [p50_and_p99(report.journal_latencies[decision][1]) for decision in ("REJECTED", "ACCEPTED")]
    return table(["journal", "start-up s (median)", "start-up runs", "RSS after start-up", "positions replayed",
                  "REJECTED c=1 p50 / p99 ms", "ACCEPTED c=1 p50 / p99 ms"], [
        ["empty", f"{median(report.startup_empty):.2f}", str(len(report.startup_empty)), mb(report.rss_idle_kb),
         "none", *empty],
        [f"{plan.journal_signals:,} signal rows + {plan.journal_trades:,} trade rows ({report.journal_mb:.0f} MB), "
         f"first start: no checkpoint, the whole journal replayed", f"{report.startup_first:.2f}", "1", "", "", "", ""],
        ["the same journal, a restart: its checkpoint read", f"{median(report.startup_large):.2f}",
         str(len(report.startup_large)),
         f"{mb(report.rss_large_kb)} (peak {mb(report.peak_large_kb)})", describe_positions(report.replayed),
         *large]])


def memory_table(report: Report) -> list[str]:
    return table(["bot process", "RSS (VmRSS)"], [
        ["idle, after start-up (empty journal)", mb(report.rss_idle_kb)],
        [f"after {report.alerts_sent:,} alerts", mb(report.rss_after_kb)],
        [f"after start-up with the {report.plan.journal_trades:,}-trade journal (peak during start-up)",
         f"{mb(report.rss_large_kb)} (peak {mb(report.peak_large_kb)})"]])


def calls_target(report: Report) -> list[str]:
    calls, alerts = accepted_calls(report, None)
    sides = ", ".join(f"{side} {calls_per_alert(*accepted_calls(report, side))}" for side in SIDES)
    return [f"{CALLS_PER_ACCEPTED_ALERT:.2f} exchange call per accepted alert, BUY and SELL in turn, steady state",
            f"{calls_per_alert(calls, alerts)} ({sides})", verdict(calls <= CALLS_PER_ACCEPTED_ALERT * alerts)]


def floor_targets(report: Report) -> list[list[str]]:
    rows = []
    for exchange_ms, limit in FLOOR_RATIO_LIMITS.items():
        floor = next(f for f in report.floors if (f.load.exchange_ms, f.load.concurrency) == (exchange_ms, 1))
        rows.append([f"median latency bot / forwarder <= {limit:g} (c=1, exchange {exchange_ms} ms)",
                     f"{floor.ratio:.2f} ({ms(median(floor.bot))} / {ms(median(floor.forwarder))} ms)",
                     verdict(floor.ratio <= limit)])
    return rows


def journal_growth_targets(report: Report) -> list[list[str]]:
    rows = []
    for decision in ("REJECTED", "ACCEPTED"):
        empty, large = (percentile(latencies, .5) for latencies in report.journal_latencies[decision])
        rows.append([f"no growth of {decision} latency with the journal (c=1 p50, large <= "
                     f"{JOURNAL_GROWTH_MARGIN:g} x empty)", f"{large / empty:.2f} x",
                     verdict(large <= JOURNAL_GROWTH_MARGIN * empty)])
    return rows


def target_rows(report: Report) -> list[list[str]]:
    rejected = find(report.loads, "REJECTED", 0, MANY).per_second
    startup = median(report.startup_large)
    journal = f"{report.plan.journal_signals:,} signal + {report.plan.journal_trades:,} trade rows"
    return [calls_target(report), *floor_targets(report),
            [f">= {REJECTED_PER_SECOND:,} rejected alerts/s (c={MANY})", f"{rejected:.0f}/s",
             verdict(rejected >= REJECTED_PER_SECOND)],
            [f"start-up <= {LARGE_JOURNAL_STARTUP_S:g} s with {journal}", f"{startup:.2f} s",
             verdict(startup <= LARGE_JOURNAL_STARTUP_S)],
            [f"idle RSS <= {IDLE_RSS_MB} MB", mb(report.rss_idle_kb),
             verdict(report.rss_idle_kb <= IDLE_RSS_MB * 1024)],
            *journal_growth_targets(report)]


def render(report: Report) -> str:
    plan = report.plan
    command = "python bench.py" + (" --quick" if plan is not FULL else "")
    lines = [f"# Benchmark results ({plan.name} run)", "",
             f"`{command}` on {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {report.machine}.", "",
             "The bot (`python app.py`, uvicorn, one worker, testnet mode) talks to the fake Binance of "
             "tests/fake_binance.py, served by the bench process on 127.0.0.1; the load comes from the bench "
             f"process too (keep-alive connections): the {os.cpu_count()} cores are shared by all three. "
             "Latency is the webhook round trip seen by the client. Accepted alerts alternate BUY and SELL of "
             "the same symbol (each client its own symbol, cooldown 0).", "",
             f"While it ran, other processes used {report.others_cpu_share:.0%} of the machine's CPU time"
             + (": **busy machine, the figures are disturbed; run again when it is quiet.**"
                if report.others_cpu_share > BUSY_MACHINE_SHARE else " (quiet enough)."), ""]
    if plan is not FULL:
        lines += [f"**{plan.name.capitalize()} run**: fewer alerts ({report.alerts_sent:,} to one bot, not 20,000+) "
                  f"and a smaller journal ({plan.journal_signals:,} signal and {plan.journal_trades:,} trade rows, "
                  "not 1,000,000 and 100,000): indicative figures only.", ""]
    sections = [("Targets", table(["target", "measured", "result"], target_rows(report))),
                ("Latency and throughput", latency_table(report)),
                ("Accepted alerts by side (overhead: latency less the time the exchange held the alert's calls)",
                 by_side_table(report)),
                ("The floor: the bot and a minimal forwarder, sent the same alerts in turn",
                 floor_table(report) + ["", "The forwarder (`forwarder_app` in bench.py, written for the bench, not "
                                            "the product): FastAPI handing each alert straight to python-binance's "
                                            "create_order (MARKET; quoteOrderQty for a BUY, quantity for a SELL), "
                                            "no checks, no journal; uvicorn, one worker, in its own process."]),
                ("Exchange REST calls per alert (counted by the fake)", calls_table(report)),
                ("Memory", memory_table(report)),
                ("Start-up (process start until /health answers) and journal size", journal_table(report)
                 + ["", "Positions replayed: what /status reports after the start on the generated journal (checked "
                        "against its open BUYs). Alert latencies here: two bots, one without a journal and one with "
                        "it, sent alerts in turn (exchange at 0 ms), so that both meet the same background load."])]
    for title, rows in sections:
        lines += [f"## {title}", "", *rows, ""]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer alerts and a smaller journal")
    parser.add_argument("--output", type=Path, help="where to write the tables (default: bench_results.md, "
                                                    "or bench_results_quick.md with --quick)")
    options = parser.parse_args(argv)
    plan = QUICK if options.quick else FULL
    output = options.output or HERE / ("bench_results_quick.md" if options.quick else "bench_results.md")
    try:
        run(plan, output)
    except BenchError as problem:
        sys.exit(f"bench: {problem}")


if __name__ == "__main__":
    main()
