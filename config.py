"""Settings: read once at start-up from the environment and an optional `.env`, validated, typed.

Every setting the bot has lives here and in `.env.example`. Nothing else reads the environment.
"""
from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PAPER_SECRET_MIN_LENGTH = 1
SECRET_MIN_LENGTH = 16

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PositiveMoney = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class ConfigError(Exception):
    """Start-up cannot go on: the message names every bad setting (never a secret's value)."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    trading_mode: Literal["paper", "testnet", "live"] = "paper"
    webhook_secret_key: SecretStr
    binance_api_key: SecretStr | None = None
    binance_api_secret: SecretStr | None = None
    binance_api_url: str | None = None
    logs_dir: Path = Path("./logs")
    quote_asset: Annotated[str, Field(pattern=r"^[A-Z0-9]{2,10}$")] = "USDT"
    trade_amount_usdt: PositiveMoney = Decimal("10")
    min_confidence: Annotated[Decimal, Field(ge=0, le=100, allow_inf_nan=False)] = Decimal("50")
    min_balance_usdt: Money = Decimal("10")
    max_risk_per_trade: PositiveMoney = Decimal("10")
    max_open_trades: Count = 3
    max_trades_per_day: Count = 10
    cooldown_seconds: Count = 300
    paper_balance_usdt: Money = Decimal("1000")
    max_signal_age_seconds: Count = 60
    min_risk_reward: Money = Decimal("0")
    max_daily_loss_usdt: Money = Decimal("0")
    stop_limit_gap_percent: Annotated[Decimal, Field(ge=0, lt=50, allow_inf_nan=False)] = Decimal("0.5")
    monitor_interval_seconds: Annotated[float, Field(gt=0)] = 15
    binance_timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 5
    reconcile_interval_seconds: Annotated[float, Field(gt=0)] = 30
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    host: str = "0.0.0.0"

    @field_validator("trading_mode", mode="before")
    @classmethod
    def _lower_mode(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("quote_asset", mode="before")
    @classmethod
    def _upper_asset(cls, value: object) -> object:
        return value.strip().upper() if isinstance(value, str) else value

    @field_validator("webhook_secret_key")
    @classmethod
    def _secret_long_enough(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        paper = info.data.get("trading_mode", "paper") == "paper"
        minimum = PAPER_SECRET_MIN_LENGTH if paper else SECRET_MIN_LENGTH
        if len(value.get_secret_value().strip()) < minimum:
            raise ValueError(f"must be at least {minimum} characters"
                             + ("" if paper else " outside paper mode"))
        return value

    @field_validator("binance_api_key", "binance_api_secret")
    @classmethod
    def _keys_for_real_exchange(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            value = None
        if value is None and info.data.get("trading_mode") in ("testnet", "live"):
            raise ValueError(f"is required when TRADING_MODE={info.data['trading_mode']}")
        return value

    @property
    def is_paper(self) -> bool:
        return self.trading_mode == "paper"

    @property
    def signals_csv(self) -> Path:
        return self.logs_dir / "signals.csv"

    @property
    def trades_csv(self) -> Path:
        return self.logs_dir / "trades.csv"

    @property
    def intents_csv(self) -> Path:
        return self.logs_dir / "intents.csv"


def describe_error(error: dict) -> str:
    """One line per bad setting, naming it as the user writes it; never echoes the value."""
    name = str(error["loc"][0]).upper() if error["loc"] else "settings"
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "is required"
    return f"  {name}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings or raise ConfigError listing every bad one at once."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = [describe_error(e) for e in error.errors(include_input=False)]
        raise ConfigError("Invalid settings (see .env.example):\n" + "\n".join(lines)) from None
