"""Shared test harness: the bot behind FastAPI's TestClient, and a fake Binance on 127.0.0.1."""
from __future__ import annotations

import csv
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from fastapi.testclient import TestClient

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app import create_app  # noqa: E402
from config import Settings, load_settings  # noqa: E402
from tests.fake_binance import FakeBinance  # noqa: E402
from tests.loopback import free_port  # noqa: E402

SECRET = "webhook-secret-for-tests-7f3a"
SETTING_NAMES = [name.upper() for name in Settings.model_fields]


def closed_port_url() -> str:
    """A URL on 127.0.0.1 where nothing listens: 'no network' for the bot."""
    return f"http://127.0.0.1:{free_port()}/api"


def wait_until(condition: Callable[[], bool], seconds: float = 15, every: float = 0.05) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(every)


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


class RunningBot:
    """One bot process-equivalent: an app with its lifespan running, driven over HTTP."""

    def __init__(self, settings: Settings, clock: Callable[[], Any] | None = None) -> None:
        self.settings = settings
        self.app = create_app(settings, clock=clock) if clock else create_app(settings)
        self.http = TestClient(self.app)
        self.http.__enter__()
        self.running = True

    def send(self, headers: dict[str, str] | None = None, **fields: Any) -> Any:
        body = {"secret": SECRET, "symbol": "BTCUSDT", "action": "buy", "strategy": "test",
                "timeframe": "15", "confidence": 80, **fields}
        body = {k: v for k, v in body.items() if v is not None}
        return self.http.post("/webhook", json=body, headers=headers or {})

    def status(self) -> dict[str, Any]:
        answer = self.http.get("/status", headers={"Authorization": f"Bearer {SECRET}"})
        assert answer.status_code == 200, answer.text
        return answer.json()

    def tied_up(self) -> Decimal:
        """Quote asset the bot's open positions and unsold dust cost: balance = start + realized - tied_up."""
        status = self.status()
        return sum((Decimal(p["cost"]) for p in [*status["positions"].values(), *status["dust"].values()]),
                   Decimal(0))

    def signals(self) -> list[dict[str, str]]:
        return read_csv(self.settings.signals_csv)

    def trades(self) -> list[dict[str, str]]:
        return read_csv(self.settings.trades_csv)

    def stop(self) -> None:
        if self.running:
            self.running = False
            self.http.__exit__(None, None, None)


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Settings come only from what each test passes, never from the machine or a .env file."""
    for name in SETTING_NAMES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def fake() -> Iterator[FakeBinance]:
    with FakeBinance() as exchange:
        yield exchange


@pytest.fixture
def make_settings(tmp_path: Path) -> Callable[..., Settings]:
    def build(mode: str = "paper", fake: FakeBinance | None = None, **overrides: Any) -> Settings:
        values: dict[str, Any] = {"_env_file": None, "webhook_secret_key": SECRET, "trading_mode": mode,
                                  "logs_dir": tmp_path / "logs",
                                  "binance_api_url": fake.url if fake else closed_port_url()}
        if mode != "paper":
            values |= {"binance_api_key": fake.api_key if fake else "k" * 64,
                       "binance_api_secret": fake.api_secret if fake else "s" * 64}
        return load_settings(**(values | overrides))
    return build


@pytest.fixture
def start_bot(make_settings: Callable[..., Settings]) -> Iterator[Callable[..., RunningBot]]:
    """start_bot(mode="paper", fake=None, clock=None, **settings) -> a running bot; stopped after the test."""
    running: list[RunningBot] = []

    def start(mode: str = "paper", fake: FakeBinance | None = None, clock: Callable[[], Any] | None = None,
              **overrides: Any) -> RunningBot:
        bot = RunningBot(make_settings(mode, fake, **overrides), clock)
        running.append(bot)
        return bot

    yield start
    for bot in running:
        bot.stop()
