"""Settings: read once at start-up from the environment and an optional `.env`, validated, typed.

Every setting the bot has lives here and in `.env.example`. Nothing else reads the environment.
"""
from __future__ import annotations

from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PAPER_SECRET_MIN_LENGTH = 1
SECRET_MIN_LENGTH = 16
# The addresses TradingView sends webhooks from (its "About webhooks" help page).
TRADINGVIEW_ADDRESSES = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")

Network = IPv4Network | IPv6Network

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
    port: Annotated[int, Field(ge=1, le=65535)] = 8000
    host: str = "0.0.0.0"
    trust_proxy_headers: bool = False
    allowed_ips: Annotated[tuple[Network, ...], NoDecode] = ()
    webhook_hmac_key: SecretStr | None = None
    rate_limit_per_minute: Annotated[int, Field(ge=1)] = 60
    auth_failure_limit: Annotated[int, Field(ge=1)] = 5
    auth_lockout_seconds: Annotated[int, Field(ge=1)] = 900

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

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _parse_allowed_ips(cls, value: object) -> object:
        return parse_ip_list(value) if isinstance(value, str) else value

    @field_validator("webhook_hmac_key")
    @classmethod
    def _hmac_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < SECRET_MIN_LENGTH:
            raise ValueError(f"must be at least {SECRET_MIN_LENGTH} characters (or empty: no signatures)")
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


def parse_ip_list(text: str) -> tuple[Network, ...]:
    """`ALLOWED_IPS`: comma-separated addresses or networks (CIDR); `tradingview` means its four addresses."""
    networks: list[Network] = []
    bad: list[str] = []
    for entry in filter(None, (part.strip() for part in text.split(","))):
        if entry.lower() == "tradingview":
            networks += [ip_network(address) for address in TRADINGVIEW_ADDRESSES]
            continue
        try:
            networks.append(ip_network(entry))
        except ValueError:
            bad.append(entry[:50])
    if bad:
        raise ValueError("not an IP address, a network like 10.0.0.0/8, or 'tradingview': " + ", ".join(bad))
    return tuple(networks)


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
