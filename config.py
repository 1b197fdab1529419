"""Settings: read once at start-up from the environment and an optional `.env`, validated, typed.

Every setting the bot has lives here and in `.env.example`. Nothing else reads the environment.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal
from ipaddress import IPv4Network, IPv6Network, ip_network
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_MIN_LENGTH = 24
SECRET_MIN_VARIETY = 10
HMAC_KEY_MIN_LENGTH = 16
MAKE_A_SECRET = 'make one with: python -c "import secrets; print(secrets.token_urlsafe(32))"'
# Secrets printed in this project's README, .env.example and /example: anyone may have copied them.
# Compared by their letters and digits only, so `your-webhook-secret-key` counts too.
PUBLISHED_SECRETS = ("change-me-to-a-long-secret", "YOUR_WEBHOOK_SECRET_KEY", "<the long random secret>",
                     "<another long random secret>", "<your WEBHOOK_SECRET_KEY>", "<your ADMIN_SECRET_KEY>")
TELEGRAM_TOKEN_PATTERN = re.compile(r"^[0-9]+:[A-Za-z0-9_-]+$")
TELEGRAM_CHAT_PATTERN = re.compile(r"^(-?[0-9]+|@[A-Za-z][A-Za-z0-9_]{3,})$")
# The addresses TradingView sends webhooks from (its "About webhooks" help page).
TRADINGVIEW_ADDRESSES = ("52.89.214.238", "34.212.75.30", "54.218.53.128", "52.32.178.7")

Network = IPv4Network | IPv6Network

Money = Annotated[Decimal, Field(ge=0, allow_inf_nan=False)]
PositiveMoney = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Count = Annotated[int, Field(ge=0)]


class ConfigError(Exception):
    """Start-up cannot go on: the message names every bad setting (never a secret's value)."""


@dataclass(frozen=True)
class RiskLimits:
    """The part of the settings the risk rules read (and /status shows), frozen."""
    quote_asset: str
    trade_amount_usdt: Decimal
    min_confidence: Decimal
    min_balance_usdt: Decimal
    max_risk_per_trade: Decimal
    max_open_trades: int
    max_trades_per_day: int
    cooldown_seconds: int
    max_signal_age_seconds: int
    min_risk_reward: Decimal
    max_daily_loss_usdt: Decimal

    def shown(self) -> dict[str, str | int]:
        """The limits as /status shows them: money as plain strings, counts as numbers."""
        return {name: value if isinstance(value, int) else format(value, "f")
                for name, value in self.__dict__.items() if name != "quote_asset"}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    trading_mode: Literal["paper", "testnet", "live"] = "paper"
    webhook_secret_key: SecretStr
    admin_secret_key: SecretStr | None = None
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
    telegram_bot_token: SecretStr | None = None
    telegram_chat_id: str | None = None
    telegram_api_url: str = "https://api.telegram.org"
    railway_environment_name: str | None = None
    railway_volume_mount_path: Path | None = None
    railway_public_domain: str | None = None
    trust_proxy_headers: bool | None = None
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
    def _secret_strong_enough(cls, value: SecretStr, info: ValidationInfo) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError(f"is required; {MAKE_A_SECRET}")
        return _strong_outside_paper(value, info)

    @field_validator("admin_secret_key")
    @classmethod
    def _admin_secret_strong_enough(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        return _strong_outside_paper(value, info)

    @field_validator("binance_api_key", "binance_api_secret")
    @classmethod
    def _keys_for_real_exchange(cls, value: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        if value is not None and not value.get_secret_value().strip():
            value = None
        if value is None and info.data.get("trading_mode") in ("testnet", "live"):
            raise ValueError(f"is required when TRADING_MODE={info.data['trading_mode']}")
        return value

    @field_validator("telegram_chat_id", "railway_environment_name", "railway_volume_mount_path",
                     "railway_public_domain", "trust_proxy_headers", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """An empty variable means "not set" (an empty path would otherwise mean the current directory)."""
        if isinstance(value, str):
            value = value.strip()
            return value or None
        return value

    @field_validator("telegram_bot_token")
    @classmethod
    def _token_looks_like_botfather(cls, value: SecretStr | None) -> SecretStr | None:
        token = value.get_secret_value().strip() if value is not None else ""
        if not token:
            return None
        if not TELEGRAM_TOKEN_PATTERN.match(token):
            raise ValueError("must be the token @BotFather gave, like 123456789:AAE... (without 'bot' in front)")
        return SecretStr(token)

    @field_validator("telegram_chat_id")
    @classmethod
    def _chat_goes_with_token(cls, value: str | None, info: ValidationInfo) -> str | None:
        has_token = info.data.get("telegram_bot_token") is not None
        if value is None and has_token:
            raise ValueError("is required when TELEGRAM_BOT_TOKEN is set (set both or neither)")
        if value is not None and not has_token and "telegram_bot_token" in info.data:
            raise ValueError("is set but TELEGRAM_BOT_TOKEN is not (set both or neither)")
        if value is not None and not TELEGRAM_CHAT_PATTERN.match(value):
            raise ValueError("must be a numeric chat id (like 123456789 or -1001234567890) or @channelname")
        return value

    @field_validator("telegram_api_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.strip().rstrip("/")
        if not value.startswith(("https://", "http://")):
            raise ValueError("must start with https:// (or http://)")
        return value

    @property
    def telegram_enabled(self) -> bool:
        return self.telegram_bot_token is not None and self.telegram_chat_id is not None

    @field_validator("allowed_ips", mode="before")
    @classmethod
    def _parse_allowed_ips(cls, value: object) -> object:
        return parse_ip_list(value) if isinstance(value, str) else value

    @field_validator("webhook_hmac_key")
    @classmethod
    def _hmac_key_long_enough(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None or not value.get_secret_value().strip():
            return None
        if len(value.get_secret_value().strip()) < HMAC_KEY_MIN_LENGTH:
            raise ValueError(f"must be at least {HMAC_KEY_MIN_LENGTH} characters (or empty: no signatures)")
        return value

    @property
    def is_paper(self) -> bool:
        return self.trading_mode == "paper"

    @property
    def risk_limits(self) -> RiskLimits:
        return RiskLimits(**{name: getattr(self, name) for name in RiskLimits.__dataclass_fields__})

    @property
    def on_railway(self) -> bool:
        """Railway sets RAILWAY_ENVIRONMENT_NAME in every deployment (and RAILWAY_PUBLIC_DOMAIN with a domain)."""
        return self.railway_environment_name is not None or self.railway_public_domain is not None

    @property
    def signals_csv(self) -> Path:
        return self.logs_dir / "signals.csv"

    @property
    def trades_csv(self) -> Path:
        return self.logs_dir / "trades.csv"

    @property
    def intents_csv(self) -> Path:
        return self.logs_dir / "intents.csv"


def secret_weakness(value: SecretStr) -> str | None:
    """Why a secret is not good enough to guard real orders (None when it is). Never quotes the secret."""
    text = value.get_secret_value().strip()
    if _letters_and_digits(text) in {_letters_and_digits(published) for published in PUBLISHED_SECRETS}:
        return "is a placeholder printed in this project's documentation: anyone may use it"
    if len(text) < SECRET_MIN_LENGTH:
        return f"must be at least {SECRET_MIN_LENGTH} characters"
    if len(set(text)) < SECRET_MIN_VARIETY:
        return f"has too little variety (fewer than {SECRET_MIN_VARIETY} different characters, like aaaa...)"
    return None


def _letters_and_digits(text: str) -> str:
    return "".join(character for character in text.casefold() if character.isalnum())


def _strong_outside_paper(value: SecretStr, info: ValidationInfo) -> SecretStr:
    """Testnet and live refuse a weak secret; paper mode only warns at start-up (see security.py)."""
    mode = info.data.get("trading_mode", "paper")
    weakness = secret_weakness(value)
    if weakness is not None and mode != "paper":
        raise ValueError(f"{weakness} when TRADING_MODE={mode}; {MAKE_A_SECRET}")
    return value


LOST_ON_DEPLOY = ("signals.csv and trades.csv (and with them the open positions, today's count and the "
                  "cooldowns) are erased on every deploy")


@dataclass(frozen=True)
class JournalStorage:
    """Where the journal lives and whether it survives a redeploy (None: cannot tell, e.g. not on Railway)."""
    path: Path
    persistent: bool | None
    warning: str | None


def journal_storage(settings: Settings) -> JournalStorage:
    """On Railway, only a volume survives a deploy: RAILWAY_VOLUME_MOUNT_PATH is set when one is attached."""
    path = settings.logs_dir.resolve()
    mount = settings.railway_volume_mount_path
    if mount is not None:
        if path.is_relative_to(mount.resolve()):
            return JournalStorage(path, True, None)
        return JournalStorage(path, False, f"LOGS_DIR is {path}, outside the Railway volume mounted at {mount}: "
                                           f"{LOST_ON_DEPLOY}. Set LOGS_DIR={mount}")
    if settings.railway_environment_name is not None:
        return JournalStorage(path, False, f"no Railway volume is attached: {LOST_ON_DEPLOY}. Add a volume to "
                                           f"this service and set LOGS_DIR to its mount path (e.g. /data)")
    return JournalStorage(path, None, None)


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
        message = "is required" + (f"; {MAKE_A_SECRET}" if name == "WEBHOOK_SECRET_KEY" else "")
    return f"  {name}: {message}"


def load_settings(**overrides: object) -> Settings:
    """Build the settings or raise ConfigError listing every bad one at once."""
    try:
        return Settings(**overrides)
    except ValidationError as error:
        lines = [describe_error(e) for e in error.errors(include_input=False)]
        raise ConfigError("Invalid settings (see .env.example):\n" + "\n".join(lines)) from None
