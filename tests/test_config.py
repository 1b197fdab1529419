"""Settings are validated at start-up: bad ones stop the bot with one message naming each of them."""
from __future__ import annotations

import logging
import os
import re
import secrets
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from config import ConfigError, journal_storage, load_settings
from tests.conftest import SECRET

ROOT = Path(__file__).resolve().parent.parent


def settings_error(**values: object) -> str:
    with pytest.raises(ConfigError) as raised:
        load_settings(_env_file=None, **values)
    return str(raised.value)


def test_defaults_are_paper_trading_with_the_documented_limits() -> None:
    settings = load_settings(_env_file=None, webhook_secret_key="x")
    assert settings.trading_mode == "paper"
    assert settings.trade_amount_usdt == Decimal("10")
    assert (settings.min_confidence, settings.min_balance_usdt, settings.max_risk_per_trade) == (50, 10, 10)
    assert (settings.max_open_trades, settings.max_trades_per_day, settings.cooldown_seconds) == (3, 10, 300)
    assert settings.paper_balance_usdt == Decimal("1000")
    assert settings.quote_asset == "USDT" and settings.port == 8000
    assert settings.logs_dir == Path("logs")


def test_every_setting_is_documented_in_env_example_with_its_default() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = dict(line.split("=", 1) for line in example.splitlines() if line and not line.startswith("#"))
    defaults = load_settings(_env_file=None, webhook_secret_key="x").model_dump()
    for name, default in defaults.items():
        assert name.upper() in documented, f"{name.upper()} missing from .env.example"
        if documented[name.upper()]:
            parsed = load_settings(_env_file=None, **({"webhook_secret_key": "x"} | {name: documented[name.upper()]}))
            assert getattr(parsed, name) == default, f"{name.upper()}: .env.example disagrees with config.py"


MAKE_ONE = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
EXCHANGE_KEYS = {"binance_api_key": "k", "binance_api_secret": "s"}


@pytest.mark.parametrize("value", [None, "", "   "], ids=["missing", "empty", "blank"])
def test_missing_or_empty_secret_is_required_and_says_how_to_make_one(value: str | None) -> None:
    message = settings_error(**({} if value is None else {"webhook_secret_key": value}))
    assert f"WEBHOOK_SECRET_KEY: is required; {MAKE_ONE}" in message
    assert "at least 1 characters" not in message


def published_secrets() -> set[str]:
    """Every secret value the documentation prints: the README's commands and alert messages, and
    .env.example's (none today: an empty value)."""
    readme = (ROOT / "README.md").read_text()
    found = set(re.findall(r'"secret": "([^"{}]+)"', readme))                       # alert messages
    found |= set(re.findall(r"_SECRET_KEY=(<[^>]+>|[\w-]{2,})", readme))            # commands, variables
    found |= set(re.findall(r"Bearer ([\w-]{2,})'", readme))                        # curl -H '...'
    found |= {line.split("=", 1)[1] for line in (ROOT / ".env.example").read_text().splitlines()
              if line.startswith(("WEBHOOK_SECRET_KEY=", "ADMIN_SECRET_KEY=")) and line.split("=", 1)[1]}
    return {value for value in found if any(character.isalnum() for character in value)}  # not "…"


def test_the_documentation_prints_placeholders_that_start_up_knows() -> None:
    assert {"change-me-to-a-long-secret", "YOUR_WEBHOOK_SECRET_KEY"} <= published_secrets()


@pytest.mark.parametrize("mode", ["testnet", "live"])
@pytest.mark.parametrize("name", ["webhook_secret_key", "admin_secret_key"])
def test_weak_secrets_are_refused_for_real_orders(mode: str, name: str) -> None:
    weak = {**{secret: "is a placeholder printed in this project's documentation"
               for secret in published_secrets()},
            "your-webhook-secret-key": "is a placeholder",                # the /example one, retyped
            "x7Kp2mQ9vL4nR8tW1zY5bC3": "must be at least 24 characters",  # 23 random characters
            "a" * 40: "has too little variety",
            "abcabcabcabcabcabcabcabcabc": "has too little variety"}
    for secret, reason in weak.items():
        values = {"webhook_secret_key": SECRET, name: secret}
        message = settings_error(trading_mode=mode, **EXCHANGE_KEYS, **values)
        assert f"{name.upper()}: {reason}" in message, secret
        assert f"when TRADING_MODE={mode}; {MAKE_ONE}" in message
        assert secret not in message


def test_strong_secrets_pass_and_paper_mode_takes_any() -> None:
    strong = secrets.token_urlsafe(18)  # 24 characters, as the start-up message suggests (at 32 bytes)
    settings = load_settings(_env_file=None, trading_mode="live", webhook_secret_key=strong,
                             admin_secret_key=secrets.token_urlsafe(32), **EXCHANGE_KEYS)
    assert settings.webhook_secret_key.get_secret_value() == strong
    assert load_settings(_env_file=None, webhook_secret_key="change-me-to-a-long-secret").is_paper
    assert load_settings(_env_file=None, webhook_secret_key="x", admin_secret_key="").admin_secret_key is None


@pytest.mark.parametrize("mode", ["testnet", "live"])
def test_exchange_keys_are_required_for_testnet_and_live(mode: str) -> None:
    message = settings_error(webhook_secret_key=SECRET, trading_mode=mode)
    assert f"BINANCE_API_KEY: is required when TRADING_MODE={mode}" in message
    assert f"BINANCE_API_SECRET: is required when TRADING_MODE={mode}" in message


def test_one_message_names_every_bad_setting() -> None:
    message = settings_error(webhook_secret_key=SECRET, trading_mode="moon", trade_amount_usdt="-5",
                             min_confidence="lots", max_open_trades="-1", cooldown_seconds="1.5",
                             max_risk_per_trade="nan", paper_balance_usdt="inf", min_balance_usdt="abc")
    for name in ["TRADING_MODE", "TRADE_AMOUNT_USDT", "MIN_CONFIDENCE", "MAX_OPEN_TRADES",
                 "COOLDOWN_SECONDS", "MAX_RISK_PER_TRADE", "PAPER_BALANCE_USDT", "MIN_BALANCE_USDT"]:
        assert f"{name}:" in message


def test_values_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET_KEY", SECRET)
    monkeypatch.setenv("TRADING_MODE", "TESTNET")
    monkeypatch.setenv("BINANCE_API_KEY", "key")
    monkeypatch.setenv("BINANCE_API_SECRET", "secret")
    monkeypatch.setenv("MAX_OPEN_TRADES", "7")
    settings = load_settings(_env_file=None)
    assert settings.trading_mode == "testnet" and settings.max_open_trades == 7


def test_values_come_from_a_dotenv_file(tmp_path: Path) -> None:
    env_file = tmp_path / ".env"
    env_file.write_text(f"WEBHOOK_SECRET_KEY={SECRET}\nMIN_CONFIDENCE=65\n")
    assert load_settings(_env_file=env_file).min_confidence == Decimal("65")


def test_secret_values_never_appear_in_the_error() -> None:
    message = settings_error(webhook_secret_key="tiny-secret", trading_mode="live",
                             binance_api_key="AKIA-SHOULD-NOT-LEAK", binance_api_secret="")
    assert "tiny-secret" not in message and "AKIA-SHOULD-NOT-LEAK" not in message


def test_paper_mode_warns_about_a_weak_secret_at_start_up(start_bot, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        start_bot("paper", webhook_secret_key="change-me-to-a-long-secret", admin_secret_key="hunter2").stop()
    warnings = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert ("WEBHOOK_SECRET_KEY is a placeholder printed in this project's documentation: anyone may use it: "
            f"accepted in paper mode only, testnet and live refuse it; {MAKE_ONE}") in warnings
    assert f"ADMIN_SECRET_KEY must be at least 24 characters: accepted in paper mode only, testnet and live " \
           f"refuse it; {MAKE_ONE}" in warnings
    assert "hunter2" not in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        start_bot("paper")
    assert "accepted in paper mode only" not in caplog.text


def test_live_mode_warns_at_start_up(start_bot, fake, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        start_bot("live", fake)
    assert "LIVE TRADING" in caplog.text


def test_python_app_py_without_a_secret_exits_with_a_clear_message(tmp_path: Path) -> None:
    environment = {k: v for k, v in os.environ.items() if k not in ("WEBHOOK_SECRET_KEY", "TRADING_MODE")}
    run = subprocess.run([sys.executable, str(ROOT / "app.py")], cwd=tmp_path, env=environment,
                         capture_output=True, text=True, timeout=60)
    assert run.returncode == 1
    assert f"WEBHOOK_SECRET_KEY: is required; {MAKE_ONE}" in run.stderr
    assert "Traceback" not in run.stderr


TOKEN = "123456789:AAE-telegram-token-for-tests_0123456789"


def test_telegram_is_off_by_default_and_on_with_token_and_chat() -> None:
    assert not load_settings(_env_file=None, webhook_secret_key="x").telegram_enabled
    settings = load_settings(_env_file=None, webhook_secret_key="x", telegram_bot_token=TOKEN,
                             telegram_chat_id="-1001234567890", telegram_api_url="http://127.0.0.1:9/")
    assert settings.telegram_enabled and settings.telegram_api_url == "http://127.0.0.1:9"


@pytest.mark.parametrize("values, named", [
    ({"telegram_bot_token": TOKEN}, "TELEGRAM_CHAT_ID: is required when TELEGRAM_BOT_TOKEN is set"),
    ({"telegram_chat_id": "12345"}, "TELEGRAM_CHAT_ID: is set but TELEGRAM_BOT_TOKEN is not"),
    ({"telegram_bot_token": "bot" + TOKEN, "telegram_chat_id": "1"}, "TELEGRAM_BOT_TOKEN: must be the token"),
    ({"telegram_bot_token": TOKEN, "telegram_chat_id": "my chat"}, "TELEGRAM_CHAT_ID: must be a numeric chat id"),
    ({"telegram_api_url": "api.telegram.org"}, "TELEGRAM_API_URL: must start with https://"),
])
def test_telegram_settings_go_together_and_are_checked(values: dict, named: str) -> None:
    message = settings_error(webhook_secret_key="x", **values)
    assert named in message
    assert TOKEN not in message


def test_empty_railway_variables_mean_not_on_railway() -> None:
    settings = load_settings(_env_file=None, webhook_secret_key="x", railway_volume_mount_path="",
                             railway_environment_name="", railway_public_domain="")
    assert settings.railway_volume_mount_path is None
    storage = journal_storage(settings)
    assert storage.persistent is None and storage.warning is None


def test_journal_on_the_railway_volume_is_persistent(tmp_path: Path) -> None:
    volume = tmp_path / "data"
    settings = load_settings(_env_file=None, webhook_secret_key="x", railway_environment_name="production",
                             railway_volume_mount_path=str(volume), logs_dir=volume / "logs")
    storage = journal_storage(settings)
    assert storage.persistent is True and storage.warning is None
    assert storage.path == (volume / "logs").resolve()


def test_journal_outside_the_railway_volume_is_called_out(tmp_path: Path) -> None:
    settings = load_settings(_env_file=None, webhook_secret_key="x", railway_environment_name="production",
                             railway_volume_mount_path=str(tmp_path / "data"), logs_dir=tmp_path / "logs")
    storage = journal_storage(settings)
    assert storage.persistent is False
    assert "outside the Railway volume" in storage.warning and "erased on every deploy" in storage.warning
    assert f"LOGS_DIR={tmp_path / 'data'}" in storage.warning


def test_railway_without_a_volume_is_called_out() -> None:
    storage = journal_storage(load_settings(_env_file=None, webhook_secret_key="x",
                                            railway_environment_name="production"))
    assert storage.persistent is False
    assert storage.warning.startswith("no Railway volume is attached")
